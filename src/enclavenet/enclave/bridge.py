"""The enclave's side of the L1 bridge: genesis contracts, inbound commands, the outbox.

Formats: ``crypto/bridge.py``; flows and trust argument: docs/BRIDGE.md.

* **Genesis contracts** (installed with the withdrawal and platform contracts):
  ``OUTBOX_ADDRESS`` holds ``OUTBOX_CODE`` (below), ``TOKEN_IMPL_ADDRESS`` the bridged-token
  implementation and ``TOKEN_FACTORY_ADDRESS`` the factory (contracts/l2/*.vy, compiled into
  the committed artifacts ``contracts/artifacts/l2/*.json``: part of the measured package).
* **Inbound commands**: ``command_call`` turns a parsed command from the configured L1 Bridge
  into the ``InboxCall`` the executor runs: a deposit calls the factory from ``BRIDGE_CALLER``
  (no key signs for it, so only this path mints); an L1 call runs from ``l1_alias(from)``.
* **Outbox**: ``OUTBOX_CODE`` reverts on value, on calldata under 20 bytes or over
  20 + ``MAX_MESSAGE_DATA``, else logs ``LOG1(OUTBOX_TOPIC, caller (32 bytes) || calldata)``.
  Only code at ``OUTBOX_ADDRESS`` can emit a log from that address, so the executor reads the
  messages of a *successful* transaction from its logs (a reverted one has none): the sender
  is the contract that called the outbox, never a value a caller chose.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from ..crypto.bridge import (
    BRIDGE_CALLER,
    DEPOSIT_GAS,
    MAX_MESSAGE_DATA,
    OUTBOX_ADDRESS,
    OUTBOX_TOPIC,
    TOKEN_FACTORY_ADDRESS,
    TOKEN_IMPL_ADDRESS,
    Erc20Deposit,
    L1Call,
    l1_alias,
)
from ..crypto.hashing import keccak256
from .tx import InboxCall

_ARTIFACTS = Path(__file__).resolve().parent.parent / "contracts" / "artifacts" / "l2"
# the batch data entry of an executed bridge command: constant, so the public batch data does
# not say whether the confidential call it made succeeded
BRIDGE_ENTRY = b"EnclaveNet.bridge:v1"

_MAX = 20 + MAX_MESSAGE_DATA
assert _MAX < 1 << 16
OUTBOX_CODE = (
    bytes.fromhex(
        "34" "15"  # CALLVALUE ISZERO
        "36" "6014" "11" "15" "16"  # && !(20 > CALLDATASIZE)
        f"61{_MAX:04x}" "36" "11" "15" "16"  # && !(CALLDATASIZE > 20 + MAX_MESSAGE_DATA)
        "6017" "57"  # JUMPI ok
        "6000" "6000" "fd"  # REVERT(0, 0)
        "5b"  # ok: JUMPDEST
        "33" "6000" "52"  # MSTORE(0, CALLER)
        "36" "6000" "6020" "37"  # CALLDATACOPY(32, 0, CALLDATASIZE)
        "7f"  # PUSH32 OUTBOX_TOPIC
    )
    + OUTBOX_TOPIC
    + bytes.fromhex("36" "6020" "01" "6000" "a1" "00")  # LOG1(0, 32 + CALLDATASIZE, topic) STOP
)
assert OUTBOX_CODE[0x17] == 0x5B


@cache
def _runtime(name: str) -> bytes:
    art = json.loads((_ARTIFACTS / f"{name}.json").read_text())
    return bytes.fromhex(art["deployedBytecode"].removeprefix("0x"))


def genesis_code() -> dict[bytes, bytes]:
    """The bridge's genesis contracts: address -> runtime code."""
    return {
        OUTBOX_ADDRESS: OUTBOX_CODE,
        TOKEN_IMPL_ADDRESS: _runtime("BridgedToken"),
        TOKEN_FACTORY_ADDRESS: _runtime("TokenFactory"),
    }


# TokenFactory.deposit(address,address,uint8,address,uint256)
_DEPOSIT_SELECTOR = keccak256(b"deposit(address,address,uint8,address,uint256)")[:4]


def command_call(cmd: Erc20Deposit | L1Call, l1_bridge: bytes, payload_hash: bytes, chain_id: int,
                 gas_cap: int) -> InboxCall:
    """The call the executor runs for a bridge command (``payload_hash``: its receipt id)."""
    if isinstance(cmd, Erc20Deposit):
        data = _DEPOSIT_SELECTOR + b"".join(
            x.rjust(32, b"\x00")
            for x in (cmd.token, l1_bridge, cmd.decimals.to_bytes(1, "big"), cmd.to, cmd.amount.to_bytes(32, "big"))
        )
        return InboxCall(BRIDGE_CALLER, TOKEN_FACTORY_ADDRESS, 0, data, DEPOSIT_GAS, chain_id, payload_hash)
    gas = max(0, min(cmd.gas_limit, gas_cap))
    return InboxCall(l1_alias(cmd.sender), cmd.target, 0, cmd.data, gas, chain_id, payload_hash)


def outbox_message(address: bytes, topics: tuple[bytes, ...], data: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(sender, target, data) if a log is an outbox message, else None."""
    if address != OUTBOX_ADDRESS or topics != (OUTBOX_TOPIC,) or len(data) < 52:
        return None
    return data[12:32], data[32:52], data[52:]
