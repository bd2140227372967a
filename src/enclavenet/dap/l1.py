"""The DAPs on L1: deploy the DapManager, register a DAP, find the DAPs, build receipt arguments.

    manager = deploy_dap_manager(owner_sender, rollup_address, threshold=2)
    register_dap(dap_sender, manager, "http://127.0.0.1:8600", collateral=10**18)
    daps = active_daps(w3, manager)                  # {address: endpoint}
    receipts = receipts_arg([(dap_address, sig65), ...])   # Rollup.submitHeader(..., receipts)

The Rollup keeps the threshold and one flag per active DAP (contracts/dap.vy); the DapManager
(contracts/DapManager.vy) holds the collateral and runs the penalty game (docs/DAP.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from web3 import Web3
from web3.contract import Contract

from ..contracts import load_artifact, qc_signatures
from ..crypto.dap import dap_receipt_digest
from ..crypto.hashing import to_checksum

SigTuple = tuple[bytes, bytes]


class DapL1Error(RuntimeError):
    """A DAP contract call or lookup failed; the message says which and why."""


def manager_contract(w3: Web3, address: str) -> Contract:
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact("DapManager")["abi"])


def rollup_contract(w3: Web3, address: str) -> Contract:
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact("Rollup")["abi"])


def deploy_dap_manager(
    owner: Any,
    rollup: str,
    *,
    threshold: int | None = None,
    min_collateral: int | None = None,
    leave_delay: int | None = None,
    request_fee: int | None = None,
    answer_period: int | None = None,
    lazy_penalty: int | None = None,
) -> Contract:
    """Deploy a DapManager for ``rollup`` and name it in the Rollup (``owner`` = a TxSender of
    the Rollup's owner). Parameters left out keep the contract defaults; ``threshold`` (the
    receipts every header needs) can only be met once that many DAPs registered, so set it
    later with :func:`set_threshold` when the DAPs are not up yet."""
    art = load_artifact("DapManager")
    address = owner.deploy(art["abi"], art["bytecode"], Web3.to_checksum_address(rollup))
    manager = manager_contract(owner.w3, address)
    owner.transact(rollup_contract(owner.w3, rollup).functions.setDapManager(manager.address))
    params = (min_collateral, leave_delay, request_fee, answer_period, lazy_penalty)
    if any(p is not None for p in params):
        f = manager.functions
        cur = (f.minCollateral().call(), f.leaveDelay().call(), f.requestFee().call(),
               f.answerPeriod().call(), f.lazyPenalty().call())
        owner.transact(f.setParams(*(c if p is None else p for p, c in zip(params, cur, strict=True))))
    if threshold is not None:
        set_threshold(owner, manager, threshold)
    return manager


def set_threshold(owner: Any, manager: Contract, threshold: int) -> None:
    owner.transact(manager.functions.setThreshold(threshold))


def register_dap(sender: Any, manager: Contract, endpoint: str, collateral: int | None = None) -> Any:
    """Register ``sender``'s account (the DAP's receipt key) with ``collateral`` (default: the minimum)."""
    if collateral is None:
        collateral = int(manager.functions.minCollateral().call())
    return sender.transact(manager.functions.register(endpoint), value=collateral)


def receipts_arg(signed: Iterable[tuple[str, bytes]]) -> list[SigTuple]:
    """``(dap address, 65-byte receipt)`` pairs -> the compact, signer-ordered on-chain form."""
    return qc_signatures(list(signed))


@dataclass(frozen=True)
class DapRecord:
    address: str
    endpoint: str
    collateral: int
    active: bool
    leave_at: int
    pending: int


def list_daps(w3: Web3, manager: Contract, from_block: int = 0) -> dict[str, DapRecord]:
    """Every currently registered DAP with its latest endpoint (from the manager's events)."""
    endpoints: dict[str, str] = {}
    ordered: list[tuple[int, int, str, str]] = []
    for name in ("DapRegistered", "DapEndpointSet"):
        for log in getattr(manager.events, name).get_logs(from_block=from_block):
            ordered.append((log.blockNumber, log.logIndex, to_checksum(log.args.dap), str(log.args.endpoint)))
    for _, _, dap, url in sorted(ordered):  # the latest announcement wins
        endpoints[dap] = url
    out: dict[str, DapRecord] = {}
    for dap, url in endpoints.items():
        info = manager.functions.info(dap).call()
        collateral, registered, active, leave_at, pending = info
        if registered:
            out[dap] = DapRecord(dap, url, int(collateral), bool(active), int(leave_at), int(pending))
    return out


def active_daps(w3: Web3, manager: Contract, from_block: int = 0) -> dict[str, str]:
    """``{address: endpoint}`` of the DAPs whose receipts count now."""
    return {a: r.endpoint for a, r in list_daps(w3, manager, from_block).items() if r.active}


def receipt_digest(l1_chain_id: int, rollup: str, data_commitment: bytes) -> bytes:
    return dap_receipt_digest(l1_chain_id, rollup, data_commitment)


__all__ = [
    "DapL1Error",
    "DapRecord",
    "active_daps",
    "deploy_dap_manager",
    "list_daps",
    "manager_contract",
    "receipt_digest",
    "receipts_arg",
    "register_dap",
    "rollup_contract",
    "set_threshold",
]
