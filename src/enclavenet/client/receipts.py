"""Receipt inclusion proofs: a receipt is final only when L1 says so (issue 14 M6).

The node serves each receipt with its position in the batch's receipt entries and the Merkle
siblings of ``keccak256(entry)`` (``receiptIndex``, ``receiptCount``, ``receiptProof``) next to
the header it names (``height``, ``headerHash``, ``l1TxHash``). The client trusts none of it:

1. the L1 transaction ``l1TxHash`` succeeded and the Rollup emitted ``HeaderAccepted(height,
   headerHash)`` in it;
2. that transaction called ``Rollup.submitHeader``: its header argument hashes to ``headerHash``
   and has that height;
3. ``keccak256(entry)`` is leaf ``receiptIndex`` of ``receiptCount`` under the header's
   ``receipts_root`` (``crypto.merkle.merkle_verify_at``: the path follows from the index).

The entry's content is bound by its decryption: only this envelope's receipt key opens it.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from web3 import Web3
from web3.logs import DISCARD

from ..contracts import load_artifact
from ..crypto.hashing import keccak256
from ..crypto.header import Header
from ..crypto.merkle import merkle_verify_at
from .errors import ReceiptUnverified

MAX_PROOF_LEN = 40
_HEADER_FIELDS = [f.name for f in fields(Header)]


def _int(v: Any, what: str) -> int:
    try:
        return int(v, 16) if isinstance(v, str) else int(v)
    except (TypeError, ValueError):
        raise ReceiptUnverified(f"the node's receipt has no valid {what}") from None


def _b32(v: Any, what: str) -> bytes:
    try:
        b = bytes.fromhex(v[2:] if v.startswith("0x") else v)
    except (AttributeError, ValueError):
        raise ReceiptUnverified(f"the node's receipt has no valid {what}") from None
    if len(b) != 32:
        raise ReceiptUnverified(f"the node's receipt has a {what} of {len(b)} bytes, expected 32")
    return b


def verify_receipt_on_l1(l1: Web3, rollup: str, node_receipt: dict[str, Any], entry: bytes) -> Header:
    """Check ``entry`` (the encrypted receipt bytes) is in the header the node names, and that
    L1 accepted that header; return the header. Raises ReceiptUnverified saying what failed."""
    height = _int(node_receipt.get("height"), "height")
    header_hash = _b32(node_receipt.get("headerHash"), "headerHash")
    l1_tx = _b32(node_receipt.get("l1TxHash"), "l1TxHash")
    index = _int(node_receipt.get("receiptIndex"), "receiptIndex")
    count = _int(node_receipt.get("receiptCount"), "receiptCount")
    raw_proof = node_receipt.get("receiptProof")
    if not isinstance(raw_proof, list) or len(raw_proof) > MAX_PROOF_LEN:
        raise ReceiptUnverified("the node's receipt carries no inclusion proof (receiptProof): not final")
    proof = [_b32(x, "receiptProof sibling") for x in raw_proof]
    rollup_cs = Web3.to_checksum_address(rollup)
    contract = l1.eth.contract(address=rollup_cs, abi=load_artifact("Rollup")["abi"])
    try:
        rc = l1.eth.get_transaction_receipt(l1_tx)
        tx = l1.eth.get_transaction(l1_tx)
    except Exception as exc:  # TransactionNotFound, transport errors
        raise ReceiptUnverified(
            f"L1 has no transaction 0x{l1_tx.hex()} that the node says accepted height {height}: "
            f"{type(exc).__name__}"
        ) from None
    if rc["status"] != 1:
        raise ReceiptUnverified(f"L1 transaction 0x{l1_tx.hex()} failed: it accepted no header")
    accepted = [
        ev for ev in contract.events.HeaderAccepted().process_receipt(rc, errors=DISCARD)
        if ev.address == rollup_cs and ev.args.height == height and bytes(ev.args.header_hash) == header_hash
    ]
    if not accepted:
        raise ReceiptUnverified(
            f"L1 transaction 0x{l1_tx.hex()} did not accept header 0x{header_hash.hex()} at height {height}"
        )
    try:
        fn, args = contract.decode_function_input(tx["input"])
    except ValueError:
        raise ReceiptUnverified(f"L1 transaction 0x{l1_tx.hex()} is not a call of Rollup.submitHeader") from None
    if fn.fn_name != "submitHeader" or tx["to"] != rollup_cs:
        raise ReceiptUnverified(f"L1 transaction 0x{l1_tx.hex()} is not a call of Rollup.submitHeader")
    h = args["header"]
    vals = [h[f] for f in _HEADER_FIELDS] if isinstance(h, dict) else list(h)
    header = Header(*(bytes(v) if isinstance(v, bytes | bytearray) else int(v) for v in vals))
    if header.hash() != header_hash or header.height != height:
        raise ReceiptUnverified(f"the header submitted in 0x{l1_tx.hex()} is not 0x{header_hash.hex()}")
    if not merkle_verify_at(header.receipts_root, keccak256(entry), index, count, proof):
        raise ReceiptUnverified(
            f"the receipt is not entry {index} of {count} under the receipts root of the header accepted "
            f"at height {height}: the node's proof is wrong"
        )
    return header

__all__ = ["verify_receipt_on_l1"]
