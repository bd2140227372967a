"""The L1 contracts: Vyper sources, their committed artifacts, and a deploy helper.

    from enclavenet.contracts import load_artifact, deploy_contracts
    dep = deploy_contracts(w3, owner, quorum=7, min_types=3, platform_roots={1: root_addr})
    dep.rollup.functions.deposit().transact({"from": user, "value": 10**18})

Sources: ``Rollup.vy`` with the committee registry compiled in from the module
``registry.vy`` -- ONE deployed contract, so a header's QC check needs no external call
(docs/CONTRACTS.md says why). Artifact: ``artifacts/Rollup.json`` (rebuild with
``python -m enclavenet.contracts.build``); ``load_artifact("Registry")`` is the same artifact.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .encoding import (
    compact_signature,
    expand_signature,
    header_arg,
    qc_signatures,
    withdrawals_arg,
)

if TYPE_CHECKING:
    from .deploy import Deployment, deploy_bridge, deploy_contracts

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
CONTRACT_NAMES = ("Rollup", "DapManager", "Bridge")  # DapManager: DAP collateral and the penalty game; Bridge: ERC20s and L1 <-> L2 messages
# the registry is part of the Rollup contract: its ABI is the Rollup's
ALIASES = {"Registry": "Rollup"}


@cache
def _load(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in CONTRACT_NAMES:
        known = ", ".join((*CONTRACT_NAMES, *ALIASES))
        raise ValueError(f"unknown contract {name!r}; known: {known}")
    path = ARTIFACT_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run python -m enclavenet.contracts.build")
    return path.read_text()


def load_artifact(name: str) -> dict[str, Any]:
    """The compiled artifact of ``Rollup`` (alias ``Registry``): keys ``abi``, ``bytecode``,
    ``deployedBytecode``, ``methodIdentifiers``, ``compiler``, ``sourceSha256`` (a fresh copy)."""
    artifact: dict[str, Any] = json.loads(_load(name))
    return artifact


def __getattr__(attr: str) -> Any:
    # web3 is imported only by whoever deploys (the enclave side never needs it)
    if attr in ("deploy_contracts", "deploy_bridge", "Deployment", "attach"):
        from . import deploy

        return getattr(deploy, attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ = [
    "CONTRACT_NAMES",
    "Deployment",
    "compact_signature",
    "deploy_bridge",
    "deploy_contracts",
    "expand_signature",
    "header_arg",
    "load_artifact",
    "qc_signatures",
    "withdrawals_arg",
]
