"""Compile the Vyper contracts into the committed JSON artifacts.

    python -m enclavenet.contracts.build            # rewrite artifacts/*.json
    python -m enclavenet.contracts.build --check    # exit 1 if an artifact is stale

The compiler settings are pinned here (Vyper 0.4.3, EVM prague, optimise for gas) so a
recompilation is byte-for-byte identical to the committed artifact; a unit test checks it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
# the deployable contracts; registry.vy, state.vy and dap.vy are modules compiled into the Rollup
CONTRACTS = ("Rollup", "DapManager", "Bridge")
MODULES = {"Rollup": ("registry", "state", "dap"), "DapManager": (), "Bridge": ()}
# EnclaveNet genesis contracts (the bridge's token implementation and factory, contracts/l2/):
# compiled for the enclave EVM's Cancun, into artifacts/l2/ (enclave/bridge.py loads them)
L2_CONTRACTS = ("BridgedToken", "TokenFactory")
L2_EVM_VERSION = "cancun"
VYPER_VERSION = "0.4.3"
EVM_VERSION = "prague"
OPTIMIZE = "gas"
VENOM = False


def compile_contract(name: str) -> dict[str, Any]:
    """Compile ``<name>.vy`` (or ``l2/<name>.vy``) and return its artifact (ABI, bytecode,
    runtime bytecode)."""
    import vyper
    from vyper.compiler.input_bundle import FilesystemInputBundle
    from vyper.compiler.settings import OptimizationLevel, Settings

    if vyper.__version__ != VYPER_VERSION:
        raise RuntimeError(
            f"the artifacts are built with Vyper {VYPER_VERSION}, this is {vyper.__version__}"
        )
    l2 = name in L2_CONTRACTS
    base = HERE / "l2" if l2 else HERE
    path = base / f"{name}.vy"
    source = path.read_text()
    sources = {p: (base / f"{p}.vy").read_text() for p in (name, *MODULES.get(name, ()))}
    evm_version = L2_EVM_VERSION if l2 else EVM_VERSION
    settings = Settings(
        evm_version=evm_version,
        optimize=OptimizationLevel.from_string(OPTIMIZE),
        experimental_codegen=VENOM,
    )
    out = vyper.compile_code(
        source,
        contract_path=path.name,
        input_bundle=FilesystemInputBundle([base]),
        output_formats=["abi", "bytecode", "bytecode_runtime", "method_identifiers"],
        settings=settings,
    )
    return {
        "contractName": name,
        "compiler": {"name": "vyper", "version": VYPER_VERSION, "evmVersion": evm_version,
                     "optimize": OPTIMIZE, "experimentalCodegen": VENOM},
        "sourceSha256": {
            f"{p}.vy": hashlib.sha256(text.encode()).hexdigest() for p, text in sources.items()
        },
        "abi": out["abi"],
        "bytecode": out["bytecode"],
        "deployedBytecode": out["bytecode_runtime"],
        "methodIdentifiers": out["method_identifiers"],
    }


def render(artifact: dict[str, Any]) -> str:
    """The exact text written to disk (stable key order, trailing newline)."""
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def build(check: bool = False) -> list[str]:
    """(Re)write every artifact; with ``check``, write nothing and return the stale ones."""
    stale = []
    (ARTIFACTS / "l2").mkdir(parents=True, exist_ok=True)
    for name in (*CONTRACTS, *L2_CONTRACTS):
        text = render(compile_contract(name))
        target = ARTIFACTS / ("l2" if name in L2_CONTRACTS else "") / f"{name}.json"
        if target.exists() and target.read_text() == text:
            continue
        stale.append(name)
        if not check:
            target.write_text(text)
    return stale


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--check", action="store_true", help="fail if an artifact is out of date")
    args = p.parse_args(argv)
    stale = build(check=args.check)
    if args.check:
        if stale:
            print(f"stale artifacts: {', '.join(stale)} (run python -m enclavenet.contracts.build)")
            return 1
        print("artifacts up to date")
        return 0
    print(f"rebuilt: {', '.join(stale) if stale else 'nothing (already up to date)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
