"""Relaying L2 -> L1 messages through the L1 ``Bridge`` (untrusted glue: the Bridge checks it all).

* :func:`batch_messages` -- the meta and the L2 -> L1 message items of a batch's data (the
  items after the receipt entries; the meta's ``n_messages`` says how many).
* :func:`relay_args` -- the arguments of ``Bridge.relayMessage`` for message ``index`` of the
  batch of ``headers[0]``: the header chain up to a header the Rollup accepted last (or one
  ``Bridge.anchor()`` recorded), the meta with its siblings as item 0 of the data commitment,
  and the item's path and siblings in the messages tree (``crypto.bridge.message_proof``).
* :func:`bridge_contract` / :func:`relay` -- bind the Bridge and send the relay.

Anyone holding the batch data (a DAP, a node, the message's recipient) may relay; a message
runs once (its id is ``keccak256(item)``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import cbor2
from web3 import Web3
from web3.contract import Contract

from ..contracts import load_artifact
from ..crypto.bridge import (
    META_COUNT_KEY,
    META_ROOT_KEY,
    L2ToL1Message,
    l2_token_address,
    message_proof,
    messages_root,
    root_of_meta,
)
from ..crypto.dap import piece_proof, piece_root
from ..crypto.hashing import to_checksum
from ..crypto.header import Header


class RelayError(ValueError):
    """The batch data or the header chain cannot prove the message."""


@dataclass(frozen=True)
class BatchMessages:
    items: list[bytes]  # every item of the batch data (meta first)
    meta: bytes
    fields: dict[str, Any]  # the decoded meta
    messages: list[bytes]  # the L2 -> L1 message items, in batch order


@dataclass(frozen=True)
class RelayArgs:
    headers: list[Header]
    meta: bytes
    meta_siblings: list[bytes]
    message: L2ToL1Message
    msg_path: int
    msg_siblings: list[bytes]

    @property
    def id(self) -> bytes:
        return self.message.id

    def args(self) -> tuple[Any, ...]:
        """``Bridge.relayMessage``'s arguments, as web3.py passes them."""
        m = self.message
        return (
            [h.as_tuple() for h in self.headers], self.meta, self.meta_siblings, m.index,
            to_checksum(m.sender), to_checksum(m.target), m.data, self.msg_path, self.msg_siblings,
        )


def batch_messages(batch_data: bytes) -> BatchMessages:
    """Split batch data (``enclave.batch.commit_batch_data``'s CBOR array) into its parts."""
    try:
        items = cbor2.loads(batch_data)
    except (cbor2.CBORError, ValueError, RecursionError) as exc:
        raise RelayError(f"batch data is not CBOR ({type(exc).__name__})") from None
    if not isinstance(items, list) or not items or not all(isinstance(x, bytes) for x in items):
        raise RelayError("batch data must be a non-empty CBOR array of byte strings")
    meta = items[0]
    try:
        fields = cbor2.loads(meta)
    except (cbor2.CBORError, ValueError, RecursionError) as exc:
        raise RelayError(f"the batch meta is not CBOR ({type(exc).__name__})") from None
    if not isinstance(fields, dict):
        raise RelayError("the batch meta is not a CBOR map")
    n_msgs = fields.get(META_COUNT_KEY, 0)
    counts = (fields.get("n_envelopes"), fields.get("n_entries"), n_msgs)
    if not all(isinstance(c, int) and c >= 0 for c in counts):
        raise RelayError("the batch meta lacks n_envelopes / n_entries / n_messages")
    start = 1 + counts[0] + counts[1]  # type: ignore[operator]
    if start + n_msgs != len(items):
        raise RelayError(f"the batch data has {len(items)} items, its meta says {start + n_msgs}")
    return BatchMessages(items, meta, fields, items[start:])


def relay_args(headers: Sequence[Header], batch_data: bytes, index: int) -> RelayArgs:
    """Arguments for relaying message ``index`` of the batch of ``headers[0]``; the last
    header must be the Rollup's ``lastHeaderHash`` or anchored (the Bridge checks)."""
    if not headers:
        raise RelayError("need at least the message's header")
    for prev, nxt in pairwise(headers):
        if nxt.prev_hash != prev.hash():
            raise RelayError(f"header {nxt.height} does not follow header {prev.height}")
    b = batch_messages(batch_data)
    root = root_of_meta(b.meta)
    if root is None or b.fields.get(META_ROOT_KEY) != root:
        raise RelayError("the batch meta carries no messages root at its end")
    if not 0 <= index < len(b.messages):
        raise RelayError(f"the batch has {len(b.messages)} messages, no message {index}")
    if messages_root(b.messages) != root:
        raise RelayError("the batch's message items do not match the meta's messages root")
    _, meta_siblings = piece_proof(b.items, 0)
    if piece_root(b.meta, 0, meta_siblings) != headers[0].data_commitment:
        raise RelayError("the batch data is not that of headers[0] (data commitment)")
    msg = L2ToL1Message.decode(b.messages[index])
    if msg.height != headers[0].height or msg.index != index:
        raise RelayError(f"message item {index} says height {msg.height}, index {msg.index}")
    path, siblings = message_proof(b.messages, index)
    return RelayArgs(list(headers), b.meta, meta_siblings, msg, path, siblings)


def bridge_contract(w3: Web3, address: str) -> Contract:
    """A web3 contract object for the Bridge at ``address``."""
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact("Bridge")["abi"])


def is_relayed(bridge: Contract, message: L2ToL1Message) -> bool:
    return bool(bridge.functions.relayed(message.id).call())


def relay(bridge: Contract, sender: Any, args: RelayArgs) -> Any:
    """Send ``relayMessage`` with ``sender`` (anything with ``transact(fn)``, e.g.
    ``chain.TxSender``); returns its receipt."""
    return sender.transact(bridge.functions.relayMessage(*args.args()))


__all__ = [
    "BatchMessages",
    "RelayArgs",
    "RelayError",
    "batch_messages",
    "bridge_contract",
    "bridged_token",
    "deposit_erc20",
    "is_relayed",
    "l2_token_abi",
    "relay",
    "relay_args",
    "send_message",
]


# ---------------------------------------------------------------- users: deposits, calls, tokens


def l2_token_abi() -> list[dict[str, Any]]:
    """The ABI of a canonical bridged token (contracts/l2/BridgedToken.vy): ERC20 + ``withdraw``."""
    from importlib.resources import files

    art = json.loads((files("enclavenet.contracts") / "artifacts" / "l2" / "BridgedToken.json").read_text())
    abi: list[dict[str, Any]] = art["abi"]
    return abi


def bridged_token(w3: Web3, l1_token: str) -> Contract:
    """The canonical EnclaveNet token of ``l1_token`` as a contract of ``w3`` (a confidential
    ``Web3`` from ``client.wrap``: its calls and transactions are sealed like any other)."""
    return w3.eth.contract(address=Web3.to_checksum_address(l2_token_address(l1_token)), abi=l2_token_abi())


def deposit_erc20(l1_w3: Web3, account: Any, bridge: str, token: str, amount: int, *, to: str | None = None,
                  timeout: float = 60.0) -> Any:
    """Approve the Bridge and deposit ``amount`` of the L1 ERC20 ``token``; it is minted to ``to``
    (default: the depositor) inside EnclaveNet once a header consumes the L1 message. Returns the
    ``depositERC20`` receipt."""
    from .errors import EnclaveNetError
    from .l1 import _l1_transact

    if amount <= 0:
        raise EnclaveNetError("an ERC20 deposit needs a positive amount")
    erc20 = l1_w3.eth.contract(address=Web3.to_checksum_address(token), abi=_ERC20_APPROVE_ABI)
    _l1_transact(l1_w3, account, erc20.functions.approve(Web3.to_checksum_address(bridge), amount), 0, timeout)
    fn = bridge_contract(l1_w3, bridge).functions.depositERC20(
        Web3.to_checksum_address(token), Web3.to_checksum_address(to or account.address), amount)
    return _l1_transact(l1_w3, account, fn, 0, timeout)


def send_message(l1_w3: Web3, account: Any, bridge: str, target: str, data: bytes, gas_limit: int,
                 *, timeout: float = 60.0) -> Any:
    """Call EnclaveNet contract ``target`` from L1 (it runs from ``crypto.bridge.l1_alias`` of
    the account). The command is public on L1; what the contract does with it is not."""
    from .l1 import _l1_transact

    fn = bridge_contract(l1_w3, bridge).functions.sendMessage(Web3.to_checksum_address(target), data, gas_limit)
    return _l1_transact(l1_w3, account, fn, 0, timeout)


_ERC20_APPROVE_ABI = [{
    "name": "approve", "type": "function", "stateMutability": "nonpayable",
    "inputs": [{"name": "spender", "type": "address"}, {"name": "amount", "type": "uint256"}],
    "outputs": [{"name": "", "type": "bool"}],
}]
