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
