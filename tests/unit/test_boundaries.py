"""The trust boundary is visible in the code: trusted rooms import nothing untrusted."""

from __future__ import annotations

import ast
from pathlib import Path

import enclavenet

PKG = Path(enclavenet.__file__).parent
TRUSTED = ("crypto", "enclave", "tee")
UNTRUSTED = ("node", "chain", "client", "dap", "gateway", "cli", "devnet", "compiler")
# What each trusted room may import from enclavenet (DESIGN.md: enclave uses crypto only + its EVM).
ALLOWED = {"crypto": {"crypto"}, "tee": {"crypto", "tee", "enclave"}, "enclave": {"crypto", "enclave", "tee"}}


def _imports(path: Path) -> set[str]:
    mods: set[str] = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = path.relative_to(PKG.parent).with_suffix("").parts[: -node.level]
                mods.add(".".join((*base, node.module or "")).rstrip("."))
            elif node.module:
                mods.add(node.module)
    return mods


def test_trusted_code_imports_nothing_untrusted() -> None:
    offences = []
    for room in TRUSTED:
        for path in sorted((PKG / room).rglob("*.py")):
            for mod in _imports(path):
                parts = mod.split(".")
                if parts[0] != "enclavenet" or len(parts) < 2:
                    if parts[0] in ("web3", "aiohttp", "psycopg"):
                        offences.append(f"{path.relative_to(PKG)} imports {mod}")
                    continue
                if parts[1] not in ALLOWED[room]:
                    offences.append(f"{path.relative_to(PKG)} imports {mod}")
    assert not offences, "trusted code reaches into untrusted rooms:\n" + "\n".join(offences)


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    # guard against a vacuous pass: the parser must notice both import forms
    f = PKG / "crypto" / "hashing.py"
    mods = _imports(f)
    assert "sha3" in mods
    fake = tmp_path / "x.py"
    fake.write_text("from enclavenet.node import server\nimport enclavenet.chain.rpc\n")
    assert {"enclavenet.node", "enclavenet.chain.rpc"} <= _imports(fake)


def _runtime_node_imports(path: Path) -> set[str]:
    """Sibling modules of node/ that ``path`` imports at run time (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip: set[int] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
            skip.update(id(x) for b in n.body for x in ast.walk(b))
    out: set[str] = set()
    for n in ast.walk(tree):
        if id(n) in skip or not isinstance(n, ast.ImportFrom):
            continue
        if n.level == 1 and n.module:
            out.add(n.module.split(".")[0])
        elif n.module and n.module.startswith("enclavenet.node."):
            out.add(n.module.split(".")[2])
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> list[str] | None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return [*stack, m, d]
            if d not in state and (found := visit(d, [*stack, m])):
                return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m, [])):
            return found
    return None


def test_node_modules_import_each_other_without_a_circle() -> None:
    # the node is split by role (docs/NODE.md): the roles import the shared core, never node.py
    graph = {p.stem: _runtime_node_imports(p) for p in sorted((PKG / "node").glob("*.py"))}
    assert not any("node" in deps for m, deps in graph.items() if m != "node"), graph
    assert _cycle(graph) is None, f"import circle in node/: {' -> '.join(_cycle(graph) or [])}"
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check sees one
