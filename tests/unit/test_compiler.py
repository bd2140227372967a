"""enclavenet.compiler: Vyper (vyper package) and Solidity (solc-js) to deployable artifacts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyrevm
import pytest
from eth_abi import decode, encode
from eth_utils import keccak

from enclavenet.compiler import (
    EVM_VERSION,
    SOLC_VERSION,
    VYPER_VERSION,
    Artifact,
    CompileError,
    compile_file,
    compile_solidity,
    compile_vyper,
    load_artifact,
)

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples import build  # noqa: E402

ME = "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"

VYPER_SRC = """
# pragma version ~=0.4.3
total: public(uint256)

@deploy
def __init__(start: uint256):
    self.total = start

@external
def add(x: uint256) -> uint256:
    assert x > 0, "add something"
    self.total += x
    return self.total
"""

SOLIDITY_SRC = """
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;
interface IAdder { function add(uint256 x) external returns (uint256); }
contract Adder is IAdder {
    uint256 public total;
    constructor(uint256 start) { total = start; }
    function add(uint256 x) external returns (uint256) {
        require(x > 0, "add something");
        total += x;
        return total;
    }
}
contract Other { function f() external pure returns (uint256) { return 7; } }
"""

# Opcodes pyrevm's default spec (SHANGHAI) does not have.
CANCUN_OPS = {0x5C: "TLOAD", 0x5D: "TSTORE", 0x5E: "MCOPY", 0x49: "BLOBHASH", 0x4A: "BLOBBASEFEE"}


def cancun_opcodes(code: bytes) -> list[str]:
    """Cancun-only opcodes in ``code``, walking instructions (PUSH data skipped, metadata cut)."""
    meta = int.from_bytes(code[-2:], "big") + 2  # solc and vyper end with CBOR metadata + length
    body = code[: len(code) - meta] if meta <= len(code) else code
    found, i = [], 0
    while i < len(body):
        op = body[i]
        if op in CANCUN_OPS:
            found.append(CANCUN_OPS[op])
        i += 1 + (op - 0x5F if 0x60 <= op <= 0x7F else 0)
    return found


def _call(evm: pyrevm.EVM, to: str, sig: str, types: list[str], args: list[object]) -> bytes:
    return evm.message_call(ME, to, keccak(sig.encode())[:4] + encode(types, args))


def _exercise_adder(art: Artifact) -> tuple[int, str]:
    """Deploy with start=40 in pyrevm, add 2; return (total, revert message of add(0))."""
    evm = pyrevm.EVM()
    evm.set_balance(ME, 10**18)
    addr = evm.deploy(ME, art.deploy_code(40))
    # no immutables: the deployed code is the runtime (pyrevm pads analysed code with zeros)
    code = evm.get_code(addr) or b""
    assert code[: len(art.runtime)] == art.runtime and not code[len(art.runtime) :].strip(b"\0")
    (total,) = decode(["uint256"], _call(evm, addr, "add(uint256)", ["uint256"], [2]))
    with pytest.raises(RuntimeError) as err:
        _call(evm, addr, "add(uint256)", ["uint256"], [0])
    return total, str(err.value)


def test_vyper_compiles_to_code_that_runs_in_pyrevm() -> None:
    art = compile_vyper(VYPER_SRC, "Adder")
    assert art.language == "vyper" and art.compiler == f"vyper {VYPER_VERSION}"
    assert art.evm_version == EVM_VERSION == "shanghai"
    assert {e.get("name") for e in art.abi} >= {"total", "add"}
    total, revert = _exercise_adder(art)
    assert total == 42
    assert b"add something".hex() in revert


def test_solidity_compiles_the_named_contract_with_solcjs() -> None:
    art = compile_solidity(SOLIDITY_SRC, "Adder")
    assert art.language == "solidity" and art.compiler.startswith(f"solc {SOLC_VERSION}+")
    assert art.name == "Adder"
    total, revert = _exercise_adder(art)
    assert total == 42
    assert b"add something".hex() in revert


def test_solidity_contract_choice_is_explicit() -> None:
    with pytest.raises(CompileError, match=r"2 deployable contracts \(Adder, Other\)"):
        compile_solidity(SOLIDITY_SRC)
    with pytest.raises(CompileError, match="no contract named 'Nope'"):
        compile_solidity(SOLIDITY_SRC, "Nope")
    with pytest.raises(CompileError, match="'IAdder' is abstract or an interface"):
        compile_solidity(SOLIDITY_SRC, "IAdder")


def test_compile_errors_say_what_and_where() -> None:
    with pytest.raises(CompileError) as v:
        compile_vyper(VYPER_SRC.replace("self.total += x", "self.totl += x"), "Broken")
    assert "Broken: Vyper compilation failed" in str(v.value) and "totl" in str(v.value)
    with pytest.raises(CompileError) as s:
        compile_solidity(SOLIDITY_SRC.replace("total += x;", "totl += x;"), "Adder")
    assert "Solidity compilation failed" in str(s.value)
    assert "Undeclared identifier" in str(s.value) and "totl" in str(s.value)
    with pytest.raises(CompileError, match="empty"):
        compile_vyper("  \n", "Empty")
    with pytest.raises(CompileError, match="empty"):
        compile_solidity("", "Empty")


def test_compile_file_dispatches_on_suffix(tmp_path: Path) -> None:
    (tmp_path / "Adder.vy").write_text(VYPER_SRC)
    assert compile_file(tmp_path / "Adder.vy").name == "Adder"
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(CompileError, match=r"expected a \.vy or \.sol file"):
        compile_file(tmp_path / "x.txt")
    with pytest.raises(CompileError, match="no contract source"):
        compile_file(tmp_path / "missing.vy")


def test_target_is_shanghai_no_cancun_opcodes() -> None:
    src = (ROOT / "examples" / "kmeans" / "KMeans.vy").read_text()
    # the check sees Cancun opcodes when they are there ...
    assert "MCOPY" in cancun_opcodes(compile_vyper(src, "KMeans", evm_version="cancun").runtime)
    # ... and none of the committed artifacts has any
    for path in sorted(ROOT.glob("examples/*/artifacts/*.json")):
        art = load_artifact(path)
        assert art.evm_version == "shanghai", path
        assert cancun_opcodes(art.runtime) == [], path
        assert cancun_opcodes(art.bytecode) == [], path


def test_committed_artifacts_match_a_fresh_build() -> None:
    sources = build.sources()
    assert {p.suffix for p in sources} == {".vy", ".sol"}
    assert len(sources) == 8
    stale = build.build(check=True)
    assert stale == [], f"rebuild with `python -m examples.build`: {stale}"


def test_artifact_json_round_trip(tmp_path: Path) -> None:
    art = compile_vyper(VYPER_SRC, "Adder")
    path = art.save(tmp_path / "a" / "Adder.json")
    again = load_artifact(path)
    assert again == art
    data = json.loads(path.read_text())
    assert data["bytecode"].startswith("0x") and data["compiler"] == f"vyper {VYPER_VERSION}"
    del data["runtime"]
    with pytest.raises(ValueError, match="lacks the field 'runtime'"):
        Artifact.from_json(data)
    with pytest.raises(FileNotFoundError, match=r"python -m examples\.build"):
        load_artifact(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid artifact JSON"):
        load_artifact(tmp_path / "bad.json")


def test_deploy_code_checks_constructor_arguments() -> None:
    art = compile_vyper(VYPER_SRC, "Adder")
    assert art.deploy_code(5) == art.bytecode + (5).to_bytes(32, "big")
    with pytest.raises(TypeError, match="constructor takes 1 argument"):
        art.deploy_code()
    assert "bytecode=" in repr(art) and art.bytecode.hex() not in repr(art)


def test_solc_pin_matches_package_json() -> None:
    pkg = json.loads((ROOT / "package.json").read_text())
    assert pkg["dependencies"]["solc"] == SOLC_VERSION
    assert pkg["dependencies"]["@foundry-rs/anvil"]  # the anvil entry stays
