"""Batch input, its binding to the enclave's head, and the batch data the DAPs store.

A batch at height h is executed only on top of the enclave's head at h-1: same prev hash,
a known epoch, L1 messages continuing the head's message chain (crypto/messages.py) by index,
in L1 order, none after the batch's ``l1_block`` (one from a block the head already covers is
accepted: L1 and the voters check that a header consumes whole blocks), and a timestamp not
before the head's nor after ``MAX_TIMESTAMP``.

Batch data (what the DAPs store, committed by ``Header.data_commitment``) is a CBOR array of
byte strings ``[meta, envelope_1 .. envelope_n, entry_1 .. entry_m, message_1 .. message_k]``:

* ``meta`` = canonical CBOR map ``{v: 1, height, prev_hash, epoch, l1_block, timestamp,
  msg_start, msg_count, msg_acc, n_envelopes, n_entries, logs_hash}`` (plus ``fee_recipient``,
  20 bytes, when the batch input named one; ``base_fee``, ``next_base_fee`` and -- if some
  senders were refused for want of funds -- ``unfunded_hash`` = keccak256 of their sorted
  addresses when fees are on: fees.py; the list itself travels with the batch record, and a node
  uses it only if it matches the QC'd hash); ``logs_hash`` (32 bytes)
  commits the batch's log index (enclave/logs.py ``logs_commitment``: keccak256 of a domain, the
  epoch's ``LOGS_COMMIT_SUBKEY`` and the index plaintext; present for every batch, an empty
  index included; ``ZERO32`` when the enclave could not build the index, so the height has none).
  Every voter computes it by re-execution, so ``data_commitment`` -- and the QC -- cover the
  index; the ``logs`` ecall opens only a blob whose plaintext gives the ``logs_hash`` of a meta
  proven (leaf 0) against a QC'd header. Meta without the key (batch data of an earlier version)
  still decodes: its height has no provable index (log queries report it ``missing``);
* ``envelope_i`` = the fast-path envelopes as received, in execution order;
* ``entry_j`` = one receipt entry per executed item, in execution order (L1 payloads first,
  then envelopes): the sealed receipt (``crypto.envelope.seal_receipt``, padded to a size
  bucket) when the item decrypted, ``b"EnclaveNet.bridge:v1"`` for a command of the L1 Bridge
  (enclave/bridge.py), else ``b"EnclaveNet.error:" + code``: one of ``ERROR_CODES`` (no reason
  text: batch data is public to DAPs and L1 observers).
* ``message_k`` (only when the batch sent any) = the L2 -> L1 messages (crypto/bridge.py items),
  counted by the meta's ``n_messages`` and committed by its ``l2_to_l1_messages_root``, which
  the L1 Bridge reads from the meta's last bytes.

Every item is at most ``MAX_BATCH_ITEM`` = 128 KiB, what ``DapManager.answerData`` accepts (so
a DAP can always answer a request for any piece it signed): envelopes above it are refused
(``BatchInput.parse``), sealed receipts are bounded by the executor (``bound_receipt``).

``data_commitment = merkle_root([keccak256(item) for item in items])``: a DAP challenged for
item i answers with the item and its ``merkle_proof``. ``tx_root`` is the Merkle root over
``keccak256(envelope)`` of the fast-path envelopes (their receipt ids), ``receipts_root`` over
``keccak256(entry)`` of the entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2
import sha3

from ..crypto.bridge import META_COUNT_KEY, META_ROOT_KEY, messages_root, root_of_meta
from ..crypto.dap import MAX_PIECE_BYTES
from ..crypto.envelope import MAX_ENVELOPE_BYTES
from ..crypto.hashing import ZERO32, keccak256
from ..crypto.header import GENESIS_PREV_HASH
from ..crypto.messages import KIND_CHALLENGE, KIND_USER, MSG_GENESIS_ACC, L1Message
from .codec import U64_MAX, Request, as_address, as_bytes, encode
from .errors import EnclaveRefusal

MAX_BATCH_ENVELOPES = 20_000
MAX_BATCH_MESSAGES = 20_000
MAX_MESSAGE_PAYLOAD = 128 * 1024
ERROR_ENTRY_PREFIX = b"EnclaveNet.error:"
MAX_BATCH_ITEM = MAX_PIECE_BYTES  # = DapManager.MAX_PIECE (a unit test reads the contract)
assert MAX_ENVELOPE_BYTES <= MAX_BATCH_ITEM
# The codes an error entry may carry (what the node and client show for each).
ERROR_CODES = {
    "malformed": "the envelope is malformed (length, version or flags): seal it again with the client",
    "epoch": "the envelope's epoch key is not accepted in this batch (unknown, erased or outside the "
    "grace window): seal it again to the current epoch key",
    "decrypt": "the envelope does not decrypt (wrong epoch key, chain id or tampered ciphertext)",
    "inbox_sender": "an inbox call submitted on L1 by another account than the one its envelope is sealed "
    "for (its routing hint); it runs only when that account submits it",
    "bridge": "a command from the L1 Bridge that does not parse (crypto/bridge.py formats)",
}
MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z: the EVM timestamp never goes past it
BATCH_DATA_VERSION = 1


@dataclass(frozen=True)
class ChainHead:
    """What the enclave's tentative chain ends with (height 0 = genesis, before any batch)."""

    height: int = 0
    hash: bytes = GENESIS_PREV_HASH
    l1_block: int = 0
    msg_count: int = 0
    msg_acc: bytes = MSG_GENESIS_ACC
    timestamp: int = 0

    def to_cbor(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "hash": self.hash,
            "l1_block": self.l1_block,
            "msg_count": self.msg_count,
            "msg_acc": self.msg_acc,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_cbor(cls, m: dict[str, Any]) -> ChainHead:
        r = Request(m, "head")
        return cls(
            r.integer("height", hi=U64_MAX),
            r.blob("hash", 32),
            r.integer("l1_block", hi=U64_MAX),
            r.integer("msg_count", hi=U64_MAX),
            r.blob("msg_acc", 32),
            r.integer("timestamp", hi=U64_MAX),
        )


@dataclass(frozen=True)
class BatchInput:
    height: int
    prev_hash: bytes
    epoch: int
    l1_block: int
    timestamp: int
    messages: list[L1Message]
    envelopes: list[bytes]
    fee_recipient: bytes | None = None  # gets the batch's tips (fees.py); None: the treasury

    @classmethod
    def parse(cls, r: Request) -> BatchInput:
        msgs_raw = r.items("messages", MAX_BATCH_MESSAGES, default=[])
        envs_raw = r.items("envelopes", MAX_BATCH_ENVELOPES, default=[])
        messages = [_parse_message(m, i, r) for i, m in enumerate(msgs_raw)]
        envelopes = [as_bytes(e, f"envelopes[{i}]", "batch", max_len=MAX_ENVELOPE_BYTES) for i, e in enumerate(envs_raw)]
        return cls(
            height=r.integer("height", lo=1, hi=U64_MAX),
            prev_hash=r.blob("prev_hash", 32),
            epoch=r.integer("epoch", hi=U64_MAX),
            l1_block=r.integer("l1_block", hi=U64_MAX),
            timestamp=r.integer("timestamp", hi=U64_MAX),
            messages=messages,
            envelopes=envelopes,
            fee_recipient=bytes.fromhex(r.address("fee_recipient")[2:]) if r.has("fee_recipient") else None,
        )

    def check_continues(self, head: ChainHead) -> None:
        """Refuse a batch that does not extend ``head`` (stale, replayed or out of order)."""
        if self.height != head.height + 1:
            raise EnclaveRefusal(
                f"batch height {self.height} does not extend the enclave's head at height "
                f"{head.height} (expected {head.height + 1})"
            )
        if self.prev_hash != head.hash:
            raise EnclaveRefusal(
                f"batch prev_hash 0x{self.prev_hash.hex()} is not the hash of the enclave's head "
                f"0x{head.hash.hex()} at height {head.height}"
            )
        if self.l1_block < head.l1_block:
            raise EnclaveRefusal(
                f"batch l1_block {self.l1_block} is before the head's l1_block {head.l1_block}"
            )
        if self.timestamp < head.timestamp:
            raise EnclaveRefusal(
                f"batch timestamp {self.timestamp} is before the head's timestamp {head.timestamp}"
            )
        if self.timestamp > MAX_TIMESTAMP:
            # M1: a far-future timestamp (2^64-1) would freeze block.timestamp for good, since it
            # never goes back; the voters' hosts bound it tighter (L1 time of l1_block + drift)
            raise EnclaveRefusal(
                f"batch timestamp {self.timestamp} is beyond {MAX_TIMESTAMP} (year 9999): "
                "use the L1 time of the batch's l1_block"
            )
        # H5: messages continue the head's chain by index (the L1 accumulator in the header proves
        # them); one from an L1 block <= head.l1_block is accepted in order -- a header that left
        # it out (an empty proposal past a pending deposit) must not strand it for good
        prev_block = 0
        for i, m in enumerate(self.messages):
            if m.index != head.msg_count + i:
                raise EnclaveRefusal(
                    f"L1 message {i} has index {m.index}, expected {head.msg_count + i} "
                    "(messages must continue the head's message chain without gaps)"
                )
            if m.l1_block < prev_block or m.l1_block > self.l1_block:
                raise EnclaveRefusal(
                    f"L1 message {m.index} is from L1 block {m.l1_block}: out of L1 order or after "
                    f"the batch's l1_block {self.l1_block}"
                )
            prev_block = m.l1_block


def _parse_message(m: Any, i: int, r: Request) -> L1Message:
    if not isinstance(m, list | dict):
        raise EnclaveRefusal(f"batch: messages[{i}] must be an array [index, kind, sender, value, l1_block, payload]")
    if isinstance(m, dict):
        mm = Request(m, f"batch.messages[{i}]")
        vals = [mm.raw(k) for k in ("index", "kind", "sender", "value", "l1_block", "payload")]
    else:
        if len(m) != 6:
            raise EnclaveRefusal(f"batch: messages[{i}] must have 6 items [index, kind, sender, value, l1_block, payload]")
        vals = list(m)
    what = f"batch.messages[{i}]"
    q = Request(dict(zip(("index", "kind", "sender", "value", "l1_block", "payload"), vals, strict=True)), what)
    kind = q.integer("kind", hi=255)
    if kind not in (KIND_USER, KIND_CHALLENGE):
        raise EnclaveRefusal(f"{what}: unknown message kind {kind}")
    return L1Message(
        index=q.integer("index", hi=U64_MAX),
        kind=kind,
        sender=as_address(q.raw("sender"), "sender", what),
        value=q.integer("value"),
        l1_block=q.integer("l1_block", hi=U64_MAX),
        payload=q.blob("payload", max_len=MAX_MESSAGE_PAYLOAD),
    )


def error_entry(code: str) -> bytes:
    """The receipt entry of an item that did not decrypt (nobody could read a sealed one): a
    code from ``ERROR_CODES``, never the reason's text (which may quote sizes or epochs)."""
    if code not in ERROR_CODES:
        raise ValueError(f"unknown error entry code {code!r}")
    return ERROR_ENTRY_PREFIX + code.encode()


@dataclass(frozen=True)
class BatchCommitments:
    tx_root: bytes
    receipts_root: bytes
    data_commitment: bytes
    batch_data: bytes


def commit_batch_data(
    inp: BatchInput,
    msg_start: int,
    msg_count: int,
    msg_acc: bytes,
    envelope_ids: list[bytes],
    entries: list[bytes],
    logs_hash: bytes | None = None,
    messages: list[bytes] | None = None,
    fees: dict[str, Any] | None = None,
) -> BatchCommitments:
    """tx root, receipts root, the batch data bytes and its data commitment (``logs_hash``: the
    log index commitment of the meta, left out when None; ``messages``: the L2 -> L1 message
    items, crypto/bridge.py)."""
    fields: dict[str, Any] = {
        "v": BATCH_DATA_VERSION,
        "height": inp.height,
        "prev_hash": inp.prev_hash,
        "epoch": inp.epoch,
        "l1_block": inp.l1_block,
        "timestamp": inp.timestamp,
        "msg_start": msg_start,
        "msg_count": msg_count,
        "msg_acc": msg_acc,
        "n_envelopes": len(inp.envelopes),
        "n_entries": len(entries),
    }
    if logs_hash is not None:
        fields["logs_hash"] = logs_hash
    if inp.fee_recipient is not None:  # the proposer's choice; recovery replays with it
        fields["fee_recipient"] = inp.fee_recipient
    if fees is not None:  # fees.py: base fees and the senders refused for want of funds (public)
        fields["base_fee"], fields["next_base_fee"] = fees["base_fee"], fees["next_base_fee"]
        if fees["unfunded"]:  # the list travels with the record; the QC'd meta binds it
            fields["unfunded_hash"] = unfunded_hash(fees["unfunded"])
    messages = messages or []
    if messages:
        fields[META_COUNT_KEY] = len(messages)
        fields[META_ROOT_KEY] = messages_root(messages)
    meta = encode(fields)
    assert not messages or root_of_meta(meta) == fields[META_ROOT_KEY]
    k = sha3.keccak_256
    entry_hashes = [k(e).digest() for e in entries]
    # crypto.merkle's leaf hashes, computed once and shared by the three trees
    id_nodes = [k(b"\x00" + x).digest() for x in envelope_ids]
    entry_nodes = [k(b"\x00" + x).digest() for x in entry_hashes]
    tx_root = _root_of_leaf_nodes(id_nodes)
    receipts_root = _root_of_leaf_nodes(entry_nodes)
    msg_nodes = [k(b"\x00" + k(x).digest()).digest() for x in messages]
    data_commitment = _root_of_leaf_nodes([k(b"\x00" + keccak256(meta)).digest(), *id_nodes, *entry_nodes, *msg_nodes])
    batch_data = cbor2.dumps([meta, *inp.envelopes, *entries, *messages])
    return BatchCommitments(tx_root, receipts_root, data_commitment, batch_data)


def unfunded_hash(senders: list[bytes]) -> bytes:
    """What the meta's ``unfunded_hash`` commits: keccak256 of the sorted 20-byte addresses."""
    return keccak256(b"".join(sorted(senders)))


def _root_of_leaf_nodes(level: list[bytes]) -> bytes:
    """``crypto.merkle.merkle_root`` given the already-hashed leaf level (same rules: 0x01 nodes,
    odd node promoted, empty = ZERO32); a unit test checks they agree."""
    if not level:
        return ZERO32
    k = sha3.keccak_256
    while len(level) > 1:
        nxt = [k(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def batch_data_roots(items: list[bytes]) -> tuple[bytes, bytes, bytes, dict[str, Any]]:
    """(tx_root, receipts_root, data_commitment, meta) of batch data split into its items, the
    same trees as ``commit_batch_data``; refuses (EnclaveRefusal) items that are not batch data."""
    try:
        meta = cbor2.loads(items[0])
    except Exception:
        raise EnclaveRefusal("batch data: the first item is not a CBOR meta map") from None
    if not isinstance(meta, dict) or meta.get("v") != BATCH_DATA_VERSION:
        raise EnclaveRefusal(f"batch data: the meta item must be a map with v={BATCH_DATA_VERSION}")
    r = Request(meta, "batch data meta")
    n_env = r.integer("n_envelopes", hi=MAX_BATCH_ENVELOPES)
    n_ent = r.integer("n_entries", hi=MAX_BATCH_ENVELOPES + MAX_BATCH_MESSAGES)
    n_out = r.integer(META_COUNT_KEY, hi=1 << 32, default=0)
    if len(items) != 1 + n_env + n_ent + n_out:
        raise EnclaveRefusal(
            f"batch data has {len(items)} items, its meta says 1 + {n_env} + {n_ent} + {n_out} messages"
        )
    k = sha3.keccak_256
    id_nodes = [k(b"\x00" + k(e).digest()).digest() for e in items[1 : 1 + n_env]]
    entry_nodes = [k(b"\x00" + k(e).digest()).digest() for e in items[1 + n_env : 1 + n_env + n_ent]]
    msg_nodes = [k(b"\x00" + k(e).digest()).digest() for e in items[1 + n_env + n_ent :]]
    data_commitment = _root_of_leaf_nodes(
        [k(b"\x00" + keccak256(items[0])).digest(), *id_nodes, *entry_nodes, *msg_nodes]
    )
    return _root_of_leaf_nodes(id_nodes), _root_of_leaf_nodes(entry_nodes), data_commitment, meta


def data_commitment_of_items(items: list[bytes]) -> bytes:
    """``merkle_root([keccak256(item) for item in items])`` (the data commitment), fast."""
    k = sha3.keccak_256
    return _root_of_leaf_nodes([k(b"\x00" + k(x).digest()).digest() for x in items])


def batch_data_items(batch_data: bytes) -> list[bytes]:
    """Split stored batch data into its items (for DAPs and audits)."""
    try:
        items = cbor2.loads(batch_data)
    except (cbor2.CBORError, ValueError, RecursionError) as exc:  # cbor2's decode errors are no ValueErrors
        raise ValueError(f"batch data is not CBOR ({type(exc).__name__})") from None
    if not isinstance(items, list) or not all(isinstance(x, bytes) for x in items) or not items:
        raise ValueError("batch data must be a non-empty CBOR array of byte strings")
    return items
