"""Batches as the node handles them: the record of a proposed batch and its wire forms.

Pure data and parsing shared by every role of the node (committee, sync, ingress, DAPs); it
imports no other part of the node, so every role module can use it without an import circle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cbor2
import sha3

from ..crypto.bridge import META_COUNT_KEY
from ..crypto.envelope import hinted_fields
from ..crypto.hashing import keccak256
from ..crypto.header import Header
from ..crypto.merkle import merkle_root
from ..crypto.messages import L1Message
from ..enclave.batch import batch_data_items, data_commitment_of_items


class Refused(Exception):
    """A peer request this node refuses; the message goes back to the peer."""


def wire_bytes(v: Any, name: str) -> bytes:
    """A byte string field of a peer message. ``bytes(v)`` would take a CBOR integer for a length
    (``{"header": 2**33}``: 9 bytes on the wire, 8 GB allocated; 2**64: OverflowError)."""
    if isinstance(v, bytes):
        return v
    if isinstance(v, bytearray | memoryview):
        return bytes(v)
    raise ValueError(f"{name} must be a byte string, not {type(v).__name__}")


@dataclass
class BatchRecord:
    """A proposed batch: enough to verify, apply or re-propose it, and its known signatures."""

    height: int
    input: dict[str, Any]  # execute_batch fields without "envelopes"
    envelopes: list[bytes] = field(repr=False)
    header: Header = field(repr=False)
    header_bytes: bytes = field(repr=False)
    hash: bytes = b""
    batch_data: bytes = field(default=b"", repr=False)
    withdrawals: list[list[Any]] = field(default_factory=list)
    proposer: str = ""
    sigs: dict[str, bytes] = field(default_factory=dict)  # signer -> 65-byte signature
    created: float = field(default_factory=time.monotonic)
    submitted: bool = False
    submitted_at: float = 0.0
    collecting: bool = False
    diff: bytes = field(default=b"", repr=False)  # the proposer enclave's sealed state diff (apply_batch)
    logs: bytes = field(default=b"", repr=False)  # the proposer enclave's sealed log index (node/logindex.py)
    rid_cache: list[bytes] | None = field(default=None, repr=False)
    round: int = 0  # the round it is proposed in (node/viewchange.py)
    tc: list[list[bytes]] | None = field(default=None, repr=False)  # the TC that opened that round
    # senders the enclave refused for want of funds (fees on): bound by the meta's unfunded_hash
    unfunded: list[bytes] = field(default_factory=list, repr=False)

    def proposal(self, proposer: str, signature: bytes) -> dict[str, Any]:
        out = {
            "proposer": proposer,
            "signature": signature,
            "header": self.header_bytes,
            "input": self.input,
            "batch_data": self.batch_data,
            "withdrawals": self.withdrawals,
            "sigs": [[a, s] for a, s in self.sigs.items()],
            "diff": self.diff,
            "logs": self.logs,
        }
        if self.unfunded:
            out["unfunded"] = self.unfunded
        if self.round:
            out["round"], out["tc"] = self.round, self.tc
        return out

    def to_wire(self) -> dict[str, Any]:
        out = {"input": self.input, "header": self.header_bytes, "batch_data": self.batch_data,
               "withdrawals": self.withdrawals, "diff": self.diff, "logs": self.logs}
        if self.unfunded:
            out["unfunded"] = self.unfunded
        return out

    def rids(self) -> list[bytes]:
        if self.rid_cache is None or len(self.rid_cache) != len(self.envelopes):
            k = sha3.keccak_256
            self.rid_cache = [k(e).digest() for e in self.envelopes]
        return self.rid_cache


MAX_UNFUNDED_WIRE = 20_000  # a batch's envelopes at most


def split_batch_data(batch_data: bytes) -> tuple[dict[str, Any], list[bytes], list[bytes]]:
    """(meta, envelopes, entries) of stored batch data (enclave/batch.py format)."""
    meta, envelopes, entries, _ = split_batch_items(batch_data_items(batch_data))
    return meta, envelopes, entries


def split_batch_items(items: list[bytes]) -> tuple[dict[str, Any], list[bytes], list[bytes], list[bytes]]:
    """(meta, envelopes, entries, L2 -> L1 message items) of batch data split into its items."""
    meta = cbor2.loads(items[0])
    if not isinstance(meta, dict):
        raise ValueError("batch data meta is not a map")
    n_env = int(meta["n_envelopes"])
    n_ent = int(meta["n_entries"])
    n_out = int(meta.get(META_COUNT_KEY, 0))
    if min(n_env, n_ent, n_out) < 0 or len(items) != 1 + n_env + n_ent + n_out:
        raise ValueError(f"batch data has {len(items)} items, meta says 1 + {n_env} + {n_ent} + {n_out}")
    return meta, items[1 : 1 + n_env], items[1 + n_env : 1 + n_env + n_ent], items[1 + n_env + n_ent :]


def routing_hints(envelopes: list[bytes]) -> list[tuple[bytes, int]]:
    """(sender, nonce) of each envelope's routing hint: ``Envelope.decode(e).hint`` for the
    envelopes that decode (fixed offsets: version, flags, epoch, ephemeral key, nonce, hint)."""
    out = []
    for e in envelopes:
        f = hinted_fields(e)
        if f is not None:
            out.append((f[1], f[2]))
    return out


def data_commitment_of(batch_data: bytes) -> bytes:
    return merkle_root([keccak256(x) for x in batch_data_items(batch_data)])


def msg_to_wire(m: L1Message) -> list[Any]:
    return [m.index, m.kind, m.sender, m.value, m.l1_block, m.payload]


def record_from_wire(out: dict[str, Any]) -> BatchRecord:
    """A batch record from its wire form (a proposal, an announce or a peer's ``batch`` answer),
    checked against its header (data commitment, height, prev_hash); ValueError if it does not fit."""
    header_bytes = wire_bytes(out["header"], "header")
    header = Header.decode(header_bytes)
    batch_data = wire_bytes(out["batch_data"], "batch_data")
    items = batch_data_items(batch_data)  # decoded and hashed once (the enclave's tree code)
    if data_commitment_of_items(items) != header.data_commitment:
        raise ValueError("batch data does not match the header's data commitment")
    try:
        meta = cbor2.loads(items[0])
    except (cbor2.CBORError, ValueError, RecursionError):
        raise ValueError("batch data meta is not CBOR") from None
    if not isinstance(meta, dict):
        raise ValueError("batch data meta is not a map")
    n_env = int(meta["n_envelopes"])
    if not 0 <= n_env < len(items):
        raise ValueError("batch data meta: n_envelopes out of range")
    envelopes = items[1 : 1 + n_env]
    inp = dict(out["input"])
    inp.pop("envelopes", None)
    if int(inp["height"]) != header.height or wire_bytes(inp["prev_hash"], "input prev_hash") != header.prev_hash:
        raise ValueError("batch input does not match its header (height / prev_hash)")
    ws = [list(w) for w in out.get("withdrawals", [])]
    diff = out.get("diff")
    logs = out.get("logs")
    raw_unfunded = out.get("unfunded")
    unfunded = [bytes(x) for x in raw_unfunded[:MAX_UNFUNDED_WIRE] if isinstance(x, bytes) and len(x) == 20] \
        if isinstance(raw_unfunded, list) else []
    return BatchRecord(
        height=header.height, input=inp, envelopes=envelopes, header=header, header_bytes=header_bytes,
        hash=header.hash(), batch_data=batch_data, withdrawals=ws, diff=diff if isinstance(diff, bytes) else b"",
        logs=logs if isinstance(logs, bytes) else b"", unfunded=unfunded,
    )
