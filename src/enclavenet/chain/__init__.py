"""L1 access: one interface over web3.py, two backends on the same code path.

* :class:`EmbeddedL1` -- in-process eth-tester on py-evm, the default; nothing to start.
* :class:`RpcL1` -- any JSON-RPC node at a URL (``--l1-rpc``); :func:`start_anvil` /
  :class:`AnvilProcess` run a local anvil for it.

Both are an :class:`L1` (``w3``, ``chain_id``, funded ``accounts``, ``block_number()``,
``mine()``, ``increase_time()``, ``snapshot()/revert()``, ``rollback()/reorg()``, ``close()``).
On top of any ``L1``:

* :class:`TxSender` -- locally signed transactions: nonces, gas, retries, and
  :class:`TxReverted` with the decoded revert reason;
* :class:`EventFollower` -- contract events at a confirmation depth, exactly once, in chain
  order, surviving reorganisations, resumable from a :class:`Cursor`.

:func:`open_l1` turns a command-line choice ("embedded", "anvil" or a URL) into an ``L1``.
This package is untrusted glue (see docs/ARCHITECTURE.md): it imports web3 and crypto only.
"""

from __future__ import annotations

from typing import Any

from .accounts import DEV_MNEMONIC, dev_accounts, eth_tester_accounts, pay
from .anvil import AnvilProcess, anvil_available, find_anvil, start_anvil
from .base import DEFAULT_CHAIN_ID, L1, SnapshotId
from .embedded import EmbeddedL1
from .errors import (
    AnvilError,
    ChainError,
    InsufficientFunds,
    L1Unavailable,
    ReorgTooDeep,
    TxRejected,
    TxReverted,
    TxTimeout,
)
from .follower import Cursor, Event, EventFollower, Reorg
from .rpc import RpcL1
from .sender import TxSender


def open_l1(spec: str = "embedded", **options: Any) -> L1:
    """``"embedded"`` -> :class:`EmbeddedL1`; ``"anvil"`` -> a fresh anvil
    (:func:`start_anvil`); anything else is a JSON-RPC URL -> :class:`RpcL1`."""
    if spec == "embedded":
        return EmbeddedL1(**options)
    if spec == "anvil":
        return start_anvil(**options)
    if "://" not in spec:
        raise ValueError(
            f"L1 must be 'embedded', 'anvil' or a URL like http://host:8545, got {spec!r}"
        )
    return RpcL1(spec, **options)


__all__ = [
    "DEFAULT_CHAIN_ID",
    "DEV_MNEMONIC",
    "L1",
    "AnvilError",
    "AnvilProcess",
    "ChainError",
    "Cursor",
    "EmbeddedL1",
    "Event",
    "EventFollower",
    "InsufficientFunds",
    "L1Unavailable",
    "Reorg",
    "ReorgTooDeep",
    "RpcL1",
    "SnapshotId",
    "TxRejected",
    "TxReverted",
    "TxSender",
    "TxTimeout",
    "anvil_available",
    "dev_accounts",
    "eth_tester_accounts",
    "find_anvil",
    "open_l1",
    "pay",
    "start_anvil",
]
