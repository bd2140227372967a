"""Event logs the right parties can read (issue 11 item 2): the visibility rule, the per-batch
log index the enclave seals for the untrusted node, and the authenticated log query.

**The rule** (TEN's). A log is private by default. It is visible to

a. the sender of the transaction that emitted it;
b. every address that appears in an indexed topic of the event: ``topics[1..3]`` that are 32
   bytes whose top 12 bytes are zero (and which are not the zero address), read as an address
   -- so the receiver of ``Transfer(address indexed from, address indexed to, uint256 value)``
   sees it, and so does ``from``;
c. everyone, when the emitting contract declares the event public: the contract answers the view
   ``publicEvents() returns (bytes32[])`` (selector ``PUBLIC_EVENTS_SELECTOR``) with the event
   signatures (``topics[0]``) it makes public. The enclave asks it once per emitting contract per
   batch, on the post-batch state, as the zero address with ``PUBLIC_EVENTS_GAS`` gas; no such
   function, a revert, or a malformed answer means "none public". Only the contract's own code
   decides, nothing needs to be stored, and a contract that wants to change its rule is upgraded
   the same way as any other behaviour of it.

An indexed non-address value whose top 12 bytes happen to be zero (a small ``uint256`` token id)
also names an "address"; nobody holds the key of such an address, so that costs nothing.

**The index.** Per executed batch the enclave seals the batch's logs with their visibility
(``LogBlob``) under the batch epoch's state subkey ``LOGS_SUBKEY``, bound to the header hash,
height and epoch (AAD, all in the clear prefix). Only committee enclaves holding that epoch's
keys open it. The node stores one blob per accepted height and hands the blobs of a queried range
to the ``logs`` ecall.

**The commitment.** The index is built inside the batch run, by the proposer and by every voter,
and the batch data meta carries ``logs_hash = logs_commitment(K, plaintext)`` (K: the epoch's
``LOGS_COMMIT_SUBKEY``), so the header's ``data_commitment`` -- which every QC signer recomputes
-- covers it. The ``logs`` ecall opens a blob only with the header (QC'd), the meta and the
meta's Merkle proof, and only uses it when its plaintext gives that ``logs_hash``: a broken
proposer enclave holding the epoch key cannot have a fabricated index served (other heights are
reported ``missing``).

**Forward secrecy.** A blob is sealed under its epoch's key: when the enclave erases that epoch
(the grace window after a rotation), the blobs of that epoch cannot be opened any more. The query
then reports those heights as ``unavailable``; senders still read their own logs from their
receipts (sealed to their own receipt keys), and receivers must have read them while the epoch
was live. Re-sealing old blobs under each new epoch would keep them readable but would make a
compromise of any later epoch key reveal every old log: no.

**The query.** A ``ViewCall`` (enclave/views.py: EIP-712, viewing sessions, replay guard, all
unchanged) to the reserved address ``LOG_QUERY_ADDRESS`` whose ``data`` is the CBOR filter
``{"from": int, "to": int, "address": [20-byte...], "topics": [null | [32-byte...]] }``. The
answer is sealed to the request's receipt key (``seal_result``).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..crypto.hashing import keccak256
from .codec import Request, decode_map, encode
from .errors import EnclaveRefusal

LOGS_MAGIC = b"ENLG\x01"
LOGS_SUBKEY = "batch-logs-v1"
#: the key of the index commitment ``logs_hash`` in the batch data meta (``logs_commitment``)
LOGS_COMMIT_SUBKEY = "batch-logs-commit-v1"
LOGS_COMMIT_DOMAIN = b"EnclaveNet.LogIndexCommitment.v1"
#: view requests to this reserved address are log queries (0x...57d4; 57d0 withdraw, 57d1 key policy, 57d2 the platform contract, 57d3 its system caller)
LOG_QUERY_ADDRESS = bytes.fromhex("00000000000000000000000000000000000057d4")
PUBLIC_EVENTS_SELECTOR = keccak256(b"publicEvents()")[:4]
PUBLIC_EVENTS_GAS = 100_000
MAX_PUBLIC_EVENTS = 64  # event signatures one contract may declare public
MAX_ASKED_CONTRACTS = 256  # contracts asked per batch; logs of further contracts stay private
MAX_QUERY_HEIGHTS = 1024  # heights one log query may span
MAX_QUERY_RESULTS = 10_000  # logs one answer may carry
MAX_FILTER_ADDRESSES = 64
MAX_FILTER_OPTIONS = 64  # alternatives per topic position
_PREFIX = struct.Struct(">QQ32s")  # epoch, height, header hash (after the magic)
PREFIX_LEN = len(LOGS_MAGIC) + _PREFIX.size
_ZERO20 = b"\x00" * 20


def topic_addresses(topics: Iterable[bytes]) -> list[bytes]:
    """The addresses named by an event's indexed topics (``topics[1..3]``): 32-byte words whose
    top 12 bytes are zero, other than the zero address."""
    out: list[bytes] = []
    for t in list(topics)[1:4]:
        if len(t) == 32 and t[:12] == b"\x00" * 12 and t[12:] != _ZERO20 and t[12:] not in out:
            out.append(bytes(t[12:]))
    return out


def readers_of(sender: bytes, topics: Iterable[bytes]) -> list[bytes]:
    """Who may read a (private) log: its transaction's sender and the addresses in its indexed topics."""
    out = [bytes(sender)]
    for a in topic_addresses(topics):
        if a not in out:
            out.append(a)
    return out


def may_read(caller: bytes, readers: Iterable[bytes], public: bool) -> bool:
    return public or bytes(caller) in {bytes(r) for r in readers}


def decode_public_events(output: bytes) -> frozenset[bytes]:
    """ABI ``bytes32[]`` (the return of ``publicEvents()``); anything malformed is no event."""
    if len(output) < 64 or int.from_bytes(output[:32], "big") != 32:
        return frozenset()
    n = int.from_bytes(output[32:64], "big")
    if n > MAX_PUBLIC_EVENTS or len(output) < 64 + 32 * n:
        return frozenset()
    return frozenset(output[64 + 32 * i : 96 + 32 * i] for i in range(n))


@dataclass(frozen=True)
class IndexedLog:
    """One log of a batch with what the query needs (positions, ids, who may read it)."""

    tx_index: int  # the entry's position in the batch (the node's receiptIndex)
    log_index: int  # position among the batch's logs (Ethereum's block-wide logIndex)
    tx_log_index: int  # position among its transaction's logs (the receipt's logIndex)
    address: bytes
    topics: tuple[bytes, ...]
    data: bytes
    tx_hash: bytes  # keccak256 of the raw transaction (the Ethereum tx hash)
    receipt_id: bytes  # keccak256 of the envelope (the node's receipt id)
    readers: tuple[bytes, ...]
    public: bool

    def to_cbor(self) -> list[Any]:
        return [self.tx_index, self.log_index, self.tx_log_index, self.address, list(self.topics), self.data,
                self.tx_hash, self.receipt_id, list(self.readers), self.public]

    @classmethod
    def from_cbor(cls, v: Any) -> IndexedLog:
        ti, li, tli, a, ts, d, th, rid, rd, pub = v
        return cls(int(ti), int(li), int(tli), bytes(a), tuple(bytes(t) for t in ts), bytes(d), bytes(th),
                   bytes(rid), tuple(bytes(r) for r in rd), bool(pub))


def index_batch_logs(
    items: Iterable[tuple[int, bytes, bytes, bytes, Iterable[Any]]],
    public_events: Callable[[bytes], frozenset[bytes]],
) -> list[IndexedLog]:
    """The batch's logs, in order. ``items``: (tx_index, receipt id, tx hash, sender, logs) of each
    executed transaction; ``public_events(contract)`` the event signatures it declares public
    (asked at most once per contract, at most ``MAX_ASKED_CONTRACTS`` contracts)."""
    asked: dict[bytes, frozenset[bytes]] = {}
    out: list[IndexedLog] = []
    for tx_index, rid, tx_hash, sender, logs in items:
        for j, lg in enumerate(logs):
            addr = bytes(lg.address)
            if addr not in asked:
                asked[addr] = public_events(addr) if len(asked) < MAX_ASKED_CONTRACTS else frozenset()
            topics = tuple(bytes(t) for t in lg.topics)
            public = bool(topics) and topics[0] in asked[addr]
            out.append(IndexedLog(tx_index, len(out), j, addr, topics, bytes(lg.data), tx_hash, rid,
                                  tuple(readers_of(sender, topics)), public))
    return out


def log_index_plaintext(logs: list[IndexedLog]) -> bytes:
    """The canonical CBOR of a batch's log index (what a blob seals and ``logs_hash`` commits)."""
    return encode({"v": 1, "logs": [lg.to_cbor() for lg in logs]})


def logs_commitment(commit_key: bytes, plain: bytes) -> bytes:
    """``logs_hash`` of the batch data meta: keccak256(domain || the epoch's ``LOGS_COMMIT_SUBKEY``
    || the index plaintext). Keyed so that the public batch data reveals nothing about the index
    (no guess of "this index" can be checked against it); every committee enclave of the epoch
    computes it, so the voters recompute it by re-execution like any other header input."""
    return keccak256(LOGS_COMMIT_DOMAIN + commit_key + plain)


def seal_log_blob(key: bytes, epoch: int, height: int, header_hash: bytes, logs: list[IndexedLog] | bytes) -> bytes:
    """Seal the index (``logs``, or its plaintext ``log_index_plaintext(logs)``)."""
    prefix = LOGS_MAGIC + _PREFIX.pack(epoch, height, header_hash)
    nonce = os.urandom(12)
    plain = logs if isinstance(logs, bytes) else log_index_plaintext(logs)
    return prefix + nonce + AESGCM(key).encrypt(nonce, plain, prefix)


def blob_prefix(blob: bytes) -> tuple[int, int, bytes]:
    """(epoch, height, header hash) of a sealed log blob (its clear prefix); EnclaveRefusal if not one."""
    if len(blob) < PREFIX_LEN + 12 + 16 or blob[: len(LOGS_MAGIC)] != LOGS_MAGIC:
        raise EnclaveRefusal("logs: a blob is not a sealed log index")
    epoch, height, hh = _PREFIX.unpack(blob[len(LOGS_MAGIC) : PREFIX_LEN])
    return epoch, height, hh


def open_log_blob_plain(key: bytes, blob: bytes) -> bytes:
    """The index plaintext of a sealed blob (AEAD checked, prefix as AAD)."""
    prefix, nonce, ct = blob[:PREFIX_LEN], blob[PREFIX_LEN : PREFIX_LEN + 12], blob[PREFIX_LEN + 12 :]
    try:
        return AESGCM(key).decrypt(nonce, ct, prefix)
    except InvalidTag:
        raise EnclaveRefusal(
            "logs: a log blob does not decrypt under its epoch's key (tampered, or not from this committee)"
        ) from None


def decode_log_index(plain: bytes) -> list[IndexedLog]:
    m = cbor2.loads(plain)
    return [IndexedLog.from_cbor(v) for v in m["logs"]]


def open_log_blob(key: bytes, blob: bytes) -> list[IndexedLog]:
    return decode_log_index(open_log_blob_plain(key, blob))


@dataclass(frozen=True)
class LogFilter:
    lo: int
    hi: int
    addresses: frozenset[bytes]  # empty: any
    topics: tuple[frozenset[bytes] | None, ...]

    def matches(self, lg: IndexedLog) -> bool:
        if self.addresses and lg.address not in self.addresses:
            return False
        for i, want in enumerate(self.topics):
            if want is None:
                continue
            if i >= len(lg.topics) or lg.topics[i] not in want:
                return False
        return True


def parse_log_filter(data: bytes) -> LogFilter:
    """The CBOR filter in a log query's ``data``; EnclaveRefusal naming what is wrong."""
    what = "log query"
    r = Request(decode_map(data, what), what)
    lo = r.integer("from", hi=(1 << 63))
    hi = r.integer("to", hi=(1 << 63))
    if hi < lo:
        raise EnclaveRefusal(f"{what}: 'to' ({hi}) is below 'from' ({lo})")
    if hi - lo + 1 > MAX_QUERY_HEIGHTS:
        raise EnclaveRefusal(f"{what}: {hi - lo + 1} heights is over {MAX_QUERY_HEIGHTS}; ask in smaller ranges")
    raw_addrs = r.items("address", MAX_FILTER_ADDRESSES, default=[])
    addrs = frozenset(_blob(a, 20, "address") for a in raw_addrs)
    topics: list[frozenset[bytes] | None] = []
    for pos in r.items("topics", 4, default=[]):
        if pos is None:
            topics.append(None)
        elif isinstance(pos, list) and 0 < len(pos) <= MAX_FILTER_OPTIONS:
            topics.append(frozenset(_blob(t, 32, "topic") for t in pos))
        else:
            raise EnclaveRefusal(f"{what}: each topic position is null or a list of 1..{MAX_FILTER_OPTIONS} topics")
    return LogFilter(lo, hi, addrs, tuple(topics))


def _blob(v: Any, n: int, name: str) -> bytes:
    if not isinstance(v, bytes) or len(v) != n:
        raise EnclaveRefusal(f"log query: each {name} must be {n} bytes")
    return v


def encode_log_filter(lo: int, hi: int, addresses: Iterable[bytes] = (), topics: Iterable[Any] = ()) -> bytes:
    """The ``data`` of a log query (what a client signs)."""
    tl: list[Any] = []
    for pos in topics:
        if pos is None:
            tl.append(None)
        elif isinstance(pos, bytes | bytearray):
            tl.append([bytes(pos)])
        else:
            tl.append([bytes(t) for t in pos])
    while tl and tl[-1] is None:
        tl.pop()
    return encode({"from": lo, "to": hi, "address": [bytes(a) for a in addresses], "topics": tl})


__all__ = [
    "LOGS_COMMIT_SUBKEY",
    "LOGS_SUBKEY",
    "LOG_QUERY_ADDRESS",
    "MAX_QUERY_HEIGHTS",
    "MAX_QUERY_RESULTS",
    "PUBLIC_EVENTS_SELECTOR",
    "IndexedLog",
    "LogFilter",
    "blob_prefix",
    "decode_log_index",
    "decode_public_events",
    "encode_log_filter",
    "index_batch_logs",
    "log_index_plaintext",
    "logs_commitment",
    "may_read",
    "open_log_blob",
    "open_log_blob_plain",
    "parse_log_filter",
    "readers_of",
    "seal_log_blob",
    "topic_addresses",
]
