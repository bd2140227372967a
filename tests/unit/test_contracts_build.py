"""The committed artifact is exactly what the committed sources compile to."""

from __future__ import annotations

import pytest

from enclavenet.contracts import ARTIFACT_DIR, load_artifact
from enclavenet.contracts.build import CONTRACTS, compile_contract, render


@pytest.mark.parametrize("name", CONTRACTS)
def test_artifact_matches_a_fresh_compilation_byte_for_byte(name: str) -> None:
    committed = (ARTIFACT_DIR / f"{name}.json").read_text()
    fresh = render(compile_contract(name))
    assert fresh == committed, f"{name}.json is stale: run python -m enclavenet.contracts.build"


def test_load_artifact_has_abi_and_bytecode() -> None:
    art = load_artifact("Rollup")
    names = {e.get("name") for e in art["abi"]}
    # the registry module is compiled into the Rollup: both halves are in one ABI
    assert {"deposit", "submit", "submitHeader", "register", "setPlatformRoot"} <= names
    assert art["bytecode"].startswith("0x") and len(art["bytecode"]) > 1000
    assert art["deployedBytecode"][2:] in art["bytecode"]  # init code + runtime
    assert load_artifact("Registry") == art  # alias: the registry lives in the Rollup
    art["abi"].clear()  # callers get a copy
    assert load_artifact("Rollup")["abi"]


def test_unknown_artifact_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match="known: Rollup"):
        load_artifact("Token")
