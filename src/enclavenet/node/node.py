"""The untrusted node: enclave host, L1 follower, mempool, proposer/voter, QC and submitter.

One node per enclave, its own OS process (``enclavenet node --config FILE``). The host is a
courier and a scheduler; a bug here may cost liveness, never safety or secrecy: every header
that reaches L1 carries a QC of enclave signatures, and every enclave re-executes what it signs.

Protocol (docs/NODE.md):

* **Committee**: the registered, unexpired, unrevoked enclaves (Registry), sorted by address.
  ``proposer(h) = members[(h // proposer_run) % n]``. Each enclave learns the others' quotes from their nodes
  (``committee`` ecall) and checks them under the platform roots itself.
* **Epoch bootstrap**: once ``expected_members`` are registered, ``members[0]`` runs
  ``epoch_genesis``; the others pull the epoch keys (``epoch_export`` to their attested quote,
  ``epoch_import``). Height 1 publishes the epoch key on L1.
* **Batches**: the proposer of h (whose enclave head is at h-1) cuts a batch (whole L1 blocks of
  messages up to the confirmed L1 block, then mempool envelopes) at ``batch_size`` or after
  ``batch_interval``, executes it (``execute_batch``) and sends the proposal to every other
  member; each re-executes (``verify_batch``) and signs only an identical header. The proposer
  assembles the QC and submits ``Rollup.submitHeader``. Proposers may run ``pipeline`` heights
  ahead of L1.
* **Acceptance**: every node follows ``HeaderAccepted`` and tells its enclave (``accept_header``);
  an enclave that followed another branch rolls back and applies the winner (``rollback`` +
  ``apply_batch``); the mempool gives back what the loser held.
* **Race**: when the next height stays unaccepted ``proposer_timeout`` seconds, the next member
  (then the one after...) may propose it; with a proposal it already signed it re-collects that
  one's QC (signatures are re-served from cache), otherwise it builds its own; first on L1 wins.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import cbor2
import sha3
from aiohttp import web
from web3 import Web3

from ..chain.errors import ChainError, TxReverted
from ..chain.rpc import RpcL1
from ..chain.sender import TxSender
from ..contracts import qc_signatures
from ..crypto.envelope import FLAG_HINT, HINT_LEN, MAX_ENVELOPE_BYTES, TAG_LEN
from ..crypto.envelope import HEADER_LEN as ENVELOPE_HEADER_LEN
from ..crypto.envelope import VERSION as ENVELOPE_VERSION
from ..crypto.hashing import keccak256, to_checksum
from ..crypto.header import Header, Withdrawal, withdrawals_hash
from ..crypto.merkle import merkle_root
from ..crypto.messages import L1Message
from ..crypto.peer import MAX_PEER_AUTH_AHEAD, peer_request_digest
from ..crypto.quote import TEE_NAMES
from ..crypto.secp256k1 import SignatureError, recover_address
from ..dap.client import DapError
from ..enclave.batch import ERROR_ENTRY_PREFIX, batch_data_items, data_commitment_of_items
from ..tee.boundary import EnclaveError
from .config import NodeConfig
from .daps import NodeDaps, record_inputs
from .host import EnclaveHost
from .inputs import proposal_timestamp, timestamp_refusal, whole_blocks_refusal
from .jsonrpc import JsonRpcServer
from .l1probe import L1Probe
from .l1watch import AcceptedHeader, L1Watcher
from .mempool import Mempool, MempoolError
from .peers import (
    AUTH_OPS,
    MAX_PEER_BODY,
    PEER_AUTH_HEADER,
    PEER_AUTH_TTL,
    LinkFaults,
    PeerClient,
    PeerError,
)

log = logging.getLogger("enclavenet.node")

KEEP_RECORDS = 256  # accepted batches kept in memory for peers catching up



def _append_frame(path: Path, obj: Any) -> None:
    """Append one ``u32 length | CBOR`` frame to an append-only log (raises OSError)."""
    frame = cbor2.dumps(obj)
    with open(path, "ab") as fh:
        fh.write(len(frame).to_bytes(4, "big") + frame)


def _read_frames(path: Path) -> Iterator[Any]:
    """The frames of an append-only log, up to a torn last write or an undecodable frame."""
    data = path.read_bytes()
    pos = 0
    while pos + 4 <= len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        if pos + 4 + n > len(data):
            return  # a torn last write
        try:
            obj = cbor2.loads(data[pos + 4 : pos + 4 + n])
        except Exception:
            return
        yield obj
        pos += 4 + n

class Refused(Exception):
    """A peer request this node refuses; the message goes back to the peer."""


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
    rid_cache: list[bytes] | None = field(default=None, repr=False)

    def proposal(self, proposer: str, signature: bytes) -> dict[str, Any]:
        return {
            "proposer": proposer,
            "signature": signature,
            "header": self.header_bytes,
            "input": self.input,
            "batch_data": self.batch_data,
            "withdrawals": self.withdrawals,
            "sigs": [[a, s] for a, s in self.sigs.items()],
            "diff": self.diff,
        }

    def to_wire(self) -> dict[str, Any]:
        return {"input": self.input, "header": self.header_bytes, "batch_data": self.batch_data,
                "withdrawals": self.withdrawals, "diff": self.diff}

    def rids(self) -> list[bytes]:
        if self.rid_cache is None or len(self.rid_cache) != len(self.envelopes):
            k = sha3.keccak_256
            self.rid_cache = [k(e).digest() for e in self.envelopes]
        return self.rid_cache


def split_batch_data(batch_data: bytes) -> tuple[dict[str, Any], list[bytes], list[bytes]]:
    """(meta, envelopes, entries) of stored batch data (enclave/batch.py format)."""
    items = batch_data_items(batch_data)
    meta = cbor2.loads(items[0])
    if not isinstance(meta, dict):
        raise ValueError("batch data meta is not a map")
    n_env = int(meta["n_envelopes"])
    n_ent = int(meta["n_entries"])
    if len(items) != 1 + n_env + n_ent:
        raise ValueError(f"batch data has {len(items)} items, meta says 1 + {n_env} + {n_ent}")
    return meta, items[1 : 1 + n_env], items[1 + n_env :]


def _routing_hints(envelopes: list[bytes]) -> list[tuple[bytes, int]]:
    """(sender, nonce) of each envelope's routing hint: ``Envelope.decode(e).hint`` for the
    envelopes that decode (fixed offsets: version, flags, epoch, ephemeral key, nonce, hint)."""
    out = []
    hint_at = ENVELOPE_HEADER_LEN
    min_len = ENVELOPE_HEADER_LEN + HINT_LEN + TAG_LEN
    for e in envelopes:
        if min_len <= len(e) <= MAX_ENVELOPE_BYTES and e[0] == ENVELOPE_VERSION and e[1] == FLAG_HINT:
            out.append((e[hint_at : hint_at + 20], int.from_bytes(e[hint_at + 20 : hint_at + 28], "big")))
    return out


def data_commitment_of(batch_data: bytes) -> bytes:
    return merkle_root([keccak256(x) for x in batch_data_items(batch_data)])


def msg_to_wire(m: L1Message) -> list[Any]:
    return [m.index, m.kind, m.sender, m.value, m.l1_block, m.payload]


class Node:
    def __init__(self, cfg: NodeConfig, *, enclave: Any = None) -> None:
        self.cfg = cfg
        self._enclave_obj = enclave
        self.host: EnclaveHost | None = None
        self.data_dir = Path(cfg.data_dir)
        self.mempool = Mempool(
            max_total=cfg.mempool_max_total, max_per_sender=cfg.mempool_max_per_sender,
            max_per_origin=cfg.mempool_max_per_origin or None,
        )
        self.rpc = JsonRpcServer(name=cfg.name, max_body=cfg.max_body)
        self.address = ""
        self.tee_type = 0
        self.quote = b""
        self.quotes: dict[str, bytes] = {}  # member address -> quote bytes (verified by the enclave)
        self.committee_key: tuple[Any, ...] = ()
        self.peers: list[PeerClient] = []
        self.session: aiohttp.ClientSession | None = None
        self.watcher: L1Watcher | None = None
        self.sender: TxSender | None = None
        self._l1_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="l1-watch")
        self._tx_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="l1-send")
        self.enclave_lock = asyncio.Lock()
        self.head_changed = asyncio.Condition()
        # the enclave's tentative chain (heights above finalized) and what it signed
        self.head_height = 0
        self.head_hash = b"\x00" * 32
        self.head_msg_count = 0
        self.head_l1_block = 0
        self.head_timestamp = 0
        self.finalized = 0
        self.chain: dict[int, bytes] = {}
        self.my_sigs: dict[int, tuple[bytes, bytes]] = {}
        self.epoch: int | None = None
        self.epochs_held: list[int] = []
        # batches
        self.records: dict[bytes, BatchRecord] = {}
        self._batch_gone_since: dict[int, float] = {}  # accepted height -> when its batch was first missing
        self.accepted_records: dict[int, BatchRecord] = {}
        self.receipts: dict[bytes, dict[str, Any]] = {}
        self.l1_height = 0
        self.due_since = time.monotonic()
        self.work_since: float | None = None
        self._takeover_busy = False
        self.msg_seen: dict[int, float] = {}  # first time a pending message's block was confirmed
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._forward_buf: list[bytes] = []
        self._forward_event = asyncio.Event()
        self._work = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = cfg.rpc_port
        self.started = time.time()
        self.ready = False
        self.last_error = ""
        self.rate_limiters: dict[str, Any] = {}  # api.py: public JSON-RPC limits (issue 14 M4)
        self.counters: dict[str, int] = {"proposed": 0, "voted": 0, "submitted": 0, "accepted": 0, "takeovers": 0,
                                         "rotations": 0, "reanchored": 0, "resubmitted": 0}
        # faults, epochs and reorgs (docs/FAULTS.md)
        self.link_faults = LinkFaults()  # a hostile host's policy for peer messages (admin RPC)
        self.frozen = False
        self.final_headers: dict[int, AcceptedHeader] = {}  # QC'd headers this enclave finalised
        self._reanchoring = False
        self.enc_pubs: dict[str, bytes] = {}  # member address -> attested X25519 key (from identity)
        self.daps = NodeDaps(self)  # data availability providers (node/daps.py); off without dap_manager

    # ================================================================== lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.cfg.rpc_host}:{self.port}"

    def members(self) -> list[str]:
        return [m.address for m in self.watcher.active_members()] if self.watcher else []

    def member_types(self) -> dict[str, int]:
        return {m.address: m.tee_type for m in self.watcher.active_members()} if self.watcher else {}

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._load_receipts()
        await self._start_enclave()
        self._reload_pending()
        await self._start_server()
        self.session = aiohttp.ClientSession()
        self.peers = [PeerClient(u, self.session, self.link_faults) for u in self.cfg.peers if u.rstrip("/") != self.url]
        for p in self.peers:
            p.authenticate = self._sign_peer_request
        await self._connect_l1()
        await self._register()
        await self.daps.start()
        await self._poll_l1()
        self._tasks = [
            asyncio.create_task(self._l1_loop(), name="l1"),
            asyncio.create_task(self._peer_loop(), name="peers"),
            asyncio.create_task(self._proposer_loop(), name="proposer"),
            asyncio.create_task(self._forward_loop(), name="forward"),
        ]

    async def run(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stopping.set)
        print(f'{{"ready": true, "name": "{self.cfg.name}", "url": "{self.url}", "address": "{self.address}"}}', flush=True)
        try:
            await self._stopping.wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        self._stopping.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        with contextlib.suppress(Exception):
            await self.daps.close()
        if self.session is not None:
            await self.session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.host is not None:
            self.host.close()
        self._l1_pool.shutdown(wait=False, cancel_futures=True)
        self._tx_pool.shutdown(wait=False, cancel_futures=True)

    async def _start_enclave(self) -> None:
        from ..tee.boundary import ProcessEnclave
        from ..tee.platform import platform_from_spec

        enclave = self._enclave_obj
        if enclave is None:
            platform = platform_from_spec(self.cfg.platform)
            loop = asyncio.get_running_loop()
            enclave = await loop.run_in_executor(
                None,
                lambda: ProcessEnclave(
                    platform, self.cfg.program, self.cfg.enclave, allow_faults=self.cfg.allow_faults,
                    timeout=self.cfg.enclave_timeout,
                ),
            )
        self.host = EnclaveHost(enclave, timeout=self.cfg.enclave_timeout)
        blob_path = self.data_dir / "enclave.sealed"
        if blob_path.exists():
            try:
                st = await self.host.call("restore", {"blob": blob_path.read_bytes()})
                log.info("%s: restored the enclave from its sealed snapshot (height %d)", self.cfg.name, st["height"])
            except EnclaveError as exc:
                log.warning("%s: could not restore the sealed snapshot (%s); starting fresh", self.cfg.name, exc)
        ident = await self.host.call("identity")
        self.address = to_checksum(ident["address"])
        self.tee_type = int(ident["tee_type"])
        self.quote = bytes(ident["quote"])
        self.enc_pub = bytes(ident["enc_pub"])
        self.quotes[self.address] = self.quote
        await self._refresh_status()
        log.info("%s: enclave %s (%s) up", self.cfg.name, self.address, TEE_NAMES.get(self.tee_type, self.tee_type))

    async def _refresh_status(self) -> dict[str, Any]:
        assert self.host is not None
        st = await self.host.call("status")
        self._set_head(st)
        return st

    def _set_head(self, st: dict[str, Any]) -> None:
        self.head_height = int(st["height"])
        self.head_hash = bytes(st["head_hash"])
        self.head_msg_count = int(st["msg_count"])
        self.head_l1_block = int(st["l1_block"])
        self.head_timestamp = int(st["timestamp"])
        self.finalized = int(st["finalized_height"])
        self.epoch = st.get("epoch")
        self.epochs_held = list(st.get("epochs_held") or [])
        self.chain[self.head_height] = self.head_hash
        self.chain[self.finalized] = bytes(st["finalized_hash"])
        for h in [h for h in self.chain if h > self.head_height]:
            del self.chain[h]

    async def _notify_head(self) -> None:
        async with self.head_changed:
            self.head_changed.notify_all()

    async def _start_server(self) -> None:
        from .api import install_rpc_methods

        install_rpc_methods(self)
        app = web.Application(client_max_size=max(self.cfg.max_body, MAX_PEER_BODY) + 1024)
        self.rpc.app(app)
        app.router.add_post("/peer/{op}", self._peer_http)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.rpc_host, self.cfg.rpc_port)
        await site.start()
        if self.port == 0 and site._server is not None:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("%s: JSON-RPC on %s", self.cfg.name, self.url)

    async def _connect_l1(self) -> None:
        cfg = self.cfg
        loop = asyncio.get_running_loop()

        def connect() -> None:
            w3 = Web3(Web3.HTTPProvider(cfg.l1_rpc, request_kwargs={"timeout": 30}))
            self.watcher = L1Watcher(
                w3, cfg.rollup, cfg.registry, confirmations=cfg.confirmations, start_block=cfg.start_block
            )
            if cfg.l1_key:
                l1 = RpcL1(cfg.l1_rpc, accounts=[cfg.l1_key])
                self.sender = TxSender(l1, l1.accounts[0], receipt_timeout=60.0)

        for attempt in range(50):
            try:
                await loop.run_in_executor(self._l1_pool, connect)
                return
            except Exception as exc:  # L1 not up yet
                if attempt == 49:
                    raise
                log.info("%s: waiting for the L1 at %s (%s)", cfg.name, cfg.l1_rpc, type(exc).__name__)
                await asyncio.sleep(0.2)

    async def _register(self) -> None:
        """Registry.register with the enclave's quote, unless already active."""
        assert self.watcher is not None
        loop = asyncio.get_running_loop()
        active = await loop.run_in_executor(self._l1_pool, self.watcher.is_active, self.address)
        if active:
            return
        if self.sender is None:
            raise RuntimeError("this node has no L1 key (l1_key) to register its enclave with")
        from ..tee.platform import Quote

        q = Quote.decode(self.quote)
        fn = self.watcher.registry.functions.register(*q.registration_args())
        sender = self.sender
        await loop.run_in_executor(self._tx_pool, lambda: sender.transact(fn))
        log.info("%s: registered enclave %s on L1", self.cfg.name, self.address)

    # ================================================================== L1 following
    async def _poll_l1(self) -> None:
        assert self.watcher is not None
        loop = asyncio.get_running_loop()
        res = await loop.run_in_executor(self._l1_pool, self.watcher.poll)
        now = time.monotonic()
        w = self.watcher
        if res.reorg:
            await self._after_reorg(res.removed_headers)
        if w.frozen and not self.frozen:
            log.warning("%s: the Rollup is frozen: no more headers; this node stops proposing", self.cfg.name)
        self.frozen = w.frozen
        # first sight of pending (unconsumed) messages, for the batch interval
        for idx in range(self.head_msg_count, w.message_count()):
            self.msg_seen.setdefault(idx, now)
        if res.members_changed or res.new_headers:
            await self._update_committee()
        for h in sorted(set(res.new_headers) | set(res.replaced_headers)):
            if h > self.l1_height:
                self.l1_height = h
                self.due_since = now
                self.work_since = None
        if res.new_headers or res.replaced_headers or self.finalized < w.height:
            await self._process_accepted()
        if res.new_messages or res.new_headers:
            self._work.set()

    async def _l1_loop(self) -> None:
        # a full poll only when L1's tip changed, when behind, or every second (node/l1probe.py)
        probe = L1Probe(self.cfg.l1_rpc)
        loop = asyncio.get_running_loop()
        seen: tuple[int, str] | None = None
        last_full = 0.0
        try:
            while not self._stopping.is_set():
                try:
                    tip = await loop.run_in_executor(self._l1_pool, probe.tip)
                    behind = self.watcher is not None and self.finalized < self.watcher.height
                    if tip is None or tip != seen or behind or time.monotonic() - last_full > 1.0:
                        await self._poll_l1()
                        seen, last_full = tip, time.monotonic()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.last_error = f"L1 poll: {type(exc).__name__}: {exc}"
                    log.warning("%s: %s", self.cfg.name, self.last_error)
                    await asyncio.sleep(0.5)
                await asyncio.sleep(self.cfg.l1_poll_interval)
        finally:
            probe.close()

    async def _process_accepted(self) -> None:
        """Bring the enclave to every header accepted on L1, in height order."""
        assert self.watcher is not None
        if self.daps.enabled and self.watcher.height - self.finalized >= 2:
            await self.daps.restore_snapshot()  # far behind: the newest accepted snapshot first
        while self.finalized < self.watcher.height and not self._stopping.is_set():
            h = self.finalized + 1
            acc = self.watcher.headers.get(h)
            if acc is None:
                return
            ok = await self._accept_one(acc)
            if not ok:
                return

    async def _accept_one(self, acc: AcceptedHeader) -> bool:
        assert self.host is not None
        h = acc.header.height
        jumped: list[int] = []
        async with self.enclave_lock:
            rec = self.records.get(acc.hash)
            try:
                done = False
                if self.head_height >= h and self.chain.get(h) in (acc.hash, None):
                    try:
                        await self.host.call(
                            "accept_header", {"header": acc.header.encode(), "signatures": acc.signatures}
                        )
                        done = True
                    except EnclaveError as exc:
                        if "diverged" not in str(exc):
                            raise
                if not done:
                    if rec is None:
                        rec = await self._fetch_record(h, acc.hash)
                        if rec is None:
                            jumped = await self._resync_when_batch_is_gone(h)
                            if not jumped:
                                return False
                if not done and rec is not None:
                    if self.head_height >= h:
                        log.info("%s: lost the race at height %d: rolling back to %d and applying the winner",
                                 self.cfg.name, h, h - 1)
                        await self.host.call("rollback", {"height": h - 1})
                        self.mempool.release(h)
                    await self._apply_record(rec, acc)
                await self._refresh_status()
            except EnclaveError as exc:
                if "no longer knows" in str(exc) or "not kept" in str(exc):
                    # restored from a sealed snapshot past h: jump to the head if L1 agrees, else resync
                    with contextlib.suppress(EnclaveError):
                        jumped = await self._skip_ahead()
                if not jumped:
                    self.last_error = f"accept {h}: {exc}"
                    log.warning("%s: cannot bring the enclave to accepted header %d: %s", self.cfg.name, h, exc)
                    with contextlib.suppress(EnclaveError):
                        await self._refresh_status()
                    return False
        if jumped:
            for hh in jumped:
                a = self.watcher.headers[hh] if self.watcher else acc
                r = self.records.get(a.hash) or await self._fetch_record(hh, a.hash)
                self._on_finalized(a, r)
            await self._notify_head()
            return True
        if rec is None:
            rec = self.records.get(acc.hash)
        self._on_finalized(acc, rec)
        await self._notify_head()
        if self.cfg.persist == "accept":
            await self._persist()
        return True

    async def _skip_ahead(self) -> list[int]:
        """The enclave was restored past heights it can no longer check one by one (no pre-batch
        states in a sealed snapshot). If L1 accepted the enclave's own head, accept that (its hash
        chain covers the heights between); if L1 took another branch, restore the state from a
        peer's sealed (shared) snapshot at a final height. Returns the heights now final."""
        assert self.host is not None and self.watcher is not None
        start = self.finalized
        st = await self._refresh_status()
        acc = self.watcher.headers.get(self.head_height)
        if acc is not None and acc.hash == self.head_hash:
            await self.host.call("accept_header", {"header": acc.header.encode(), "signatures": acc.signatures})
            await self._refresh_status()
            log.info("%s: restored enclave: accepted its head at height %d directly", self.cfg.name, self.head_height)
        elif acc is not None or self.watcher.height >= int(st["height"]):
            if not await self._restore_from_peer():
                return []
        else:
            return []  # the enclave's tentative head is ahead of L1: wait
        return list(range(start + 1, self.finalized + 1))

    async def _resync_when_batch_is_gone(self, h: int) -> list[int]:
        """No peer (or DAP) can give the batch of accepted height ``h`` -- e.g. every peer was
        restored from a sealed snapshot past it. Wait ``proposer_timeout`` for it to turn up,
        then resynchronise from a peer's sealed snapshot of a final height (the QC'd header on
        L1 pins it). Returns the heights now final (empty: keep waiting). Holds enclave_lock."""
        now = time.monotonic()
        since = self._batch_gone_since.setdefault(h, now)
        if now - since < max(2.0, self.cfg.proposer_timeout):
            log.info("%s: waiting for the batch of accepted height %d from peers", self.cfg.name, h)
            return []
        start = self.finalized
        if not await self._restore_from_peer():
            log.info("%s: batch of accepted height %d unavailable and no peer snapshot fits yet", self.cfg.name, h)
            return []
        self._batch_gone_since.clear()
        log.info("%s: batch of height %d unavailable: resynchronised to height %d from a peer's snapshot",
                 self.cfg.name, h, self.finalized)
        return list(range(start + 1, self.finalized + 1))

    async def _restore_from_peer(self) -> bool:
        assert self.host is not None and self.watcher is not None
        for p in self.peers:
            try:
                out = await p.call("snapshot", {}, timeout=60)
            except PeerError as exc:
                log.info("%s: no snapshot from %s: %s", self.cfg.name, p.url, exc)
                continue
            h = int(out["height"])
            acc = self.watcher.headers.get(h)
            if acc is None or acc.hash != bytes(out["head_hash"]):
                continue
            try:
                await self.host.call("restore", {"blob": bytes(out["shared"])})
                await self._refresh_status()
            except EnclaveError as exc:
                log.warning("%s: restoring %s's snapshot failed: %s", self.cfg.name, p.url, exc)
                continue
            if self.head_hash == acc.hash:
                log.info("%s: enclave resynchronised from %s's sealed snapshot at height %d", self.cfg.name, p.url, h)
                self.my_sigs = {k: v for k, v in self.my_sigs.items() if k > h}
                return True
        return False

    async def _on_snapshot(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A sealed (epoch state key) snapshot of a FINAL state, for a member that must resync."""
        assert self.host is not None
        async with self.enclave_lock:
            if self.head_height != self.finalized:
                raise Refused(f"this enclave has tentative heights above {self.finalized}; ask again later")
            out = await self.host.call("snapshot")
        return {"height": int(out["height"]), "head_hash": bytes(out["head_hash"]), "shared": bytes(out["shared"])}

    def _on_finalized(self, acc: AcceptedHeader, rec: BatchRecord | None) -> None:
        h = acc.header.height
        self.counters["accepted"] += 1
        self.final_headers[h] = acc
        for old in [x for x in self.final_headers if x <= h - KEEP_RECORDS]:
            del self.final_headers[old]
        if rec is not None:
            self.accepted_records[h] = rec
            for old in [x for x in self.accepted_records if x <= h - KEEP_RECORDS]:
                del self.accepted_records[old]
            self._store_receipts(acc, rec)
            self.mempool.on_accepted(h, rec.rids(), _routing_hints(rec.envelopes))
        else:
            self.mempool.on_accepted(h, [], [])
        # forget records at or below h, and those built on a branch that lost
        valid = {acc.hash}
        for r in sorted(self.records.values(), key=lambda r: r.height):
            if r.height <= h or r.header.prev_hash not in valid:
                del self.records[r.hash]
            else:
                valid.add(r.hash)
        for x in [x for x in self.my_sigs if x <= h]:
            del self.my_sigs[x]
        for x in [x for x in self.msg_seen if x < acc.header.msg_count]:
            del self.msg_seen[x]
        self.chain = {k: v for k, v in self.chain.items() if k >= h}

    def _store_receipts(self, acc: AcceptedHeader, rec: BatchRecord) -> None:
        try:
            meta, envelopes, entries = split_batch_data(rec.batch_data)
        except Exception as exc:
            log.warning("%s: batch data of height %d unreadable: %s", self.cfg.name, acc.header.height, exc)
            return
        assert self.watcher is not None
        start = int(meta["msg_start"])
        count = int(meta["msg_count"]) - start
        payload_ids = []
        for i in range(start, start + count):
            m = self.watcher.messages.get(i)
            if m is not None and m.payload:
                payload_ids.append(keccak256(m.payload))
        ids = payload_ids + [keccak256(e) for e in envelopes]
        base = {
            "height": hex(acc.header.height),
            "headerHash": "0x" + acc.hash.hex(),
            "l1TxHash": acc.l1_tx,
            "l1BlockNumber": hex(acc.l1_block_number),
        }
        fresh: dict[bytes, dict[str, Any]] = {}
        for rid, entry in zip(ids, entries, strict=False):
            prior = self.receipts.get(rid)
            if prior is not None and ("error" not in prior or entry.startswith(ERROR_ENTRY_PREFIX)):
                # first inclusion wins -- but a sealed receipt replaces an error entry: a copy of an
                # inbox call submitted by another account is refused before its sender's own
                # submission runs (issue 14 H1), and the sender waits for the real receipt
                continue
            r = dict(base)
            r["receiptId"] = "0x" + rid.hex()
            r["encryptedReceipt"] = "0x" + entry.hex()
            if entry.startswith(ERROR_ENTRY_PREFIX):
                r["error"] = entry[len(ERROR_ENTRY_PREFIX) :].decode(errors="replace")
            self.receipts[rid] = r
            fresh[rid] = r
        self._log_receipts(fresh)

    async def _persist(self, *, force: bool = True) -> None:
        """Keep the enclave's newest sealed local snapshot (identity, keys, never-sign-twice record)."""
        if self.cfg.persist == "none" or self.host is None or self.epoch is None:
            return
        try:
            snap = await self.host.call("snapshot")
        except EnclaveError as exc:
            log.debug("snapshot failed: %s", exc)
            return
        path = self.data_dir / "enclave.sealed"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(bytes(snap["local"]))
        os.replace(tmp, path)

    # ================================================================== committee and epochs
    async def _update_committee(self) -> None:
        """Tell the enclave the committee (quotes of the active members it can get)."""
        assert self.host is not None and self.watcher is not None
        members = self.members()
        quotes = [self.quotes[a] for a in members if a in self.quotes]
        key = (tuple(a for a in members if a in self.quotes), self.watcher.quorum, self.watcher.min_types)
        if key == self.committee_key or not quotes or not self.watcher.quorum:
            return
        try:
            await self.host.call(
                "committee", {"members": quotes, "quorum": self.watcher.quorum, "min_types": self.watcher.min_types}
            )
            self.committee_key = key
        except EnclaveError as exc:
            log.warning("%s: committee update refused: %s", self.cfg.name, exc)

    async def _peer_loop(self) -> None:
        """Learn peers' identities (quotes), keep the committee current, get the epoch keys."""
        while not self._stopping.is_set():
            try:
                await self._discover_peers()
                await self._update_committee()
                if self.epoch is None:
                    await self._obtain_epoch()
                else:
                    await self._catch_up_epoch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: peer loop: %s: %s", self.cfg.name, type(exc).__name__, exc)
            known = all(p.address for p in self.peers)
            await asyncio.sleep(0.2 if (not known or self.epoch is None) else 2.0)

    async def _discover_peers(self) -> None:
        async def one(p: PeerClient) -> None:
            try:
                info = await p.call("identity", {}, timeout=5)
            except PeerError:
                return
            addr = to_checksum(info["address"])
            p.address = addr
            p.tee_type = int(info["tee_type"])
            p.quote = bytes(info["quote"])
            self.quotes[addr] = p.quote
            if isinstance(info.get("enc_pub"), bytes):
                self.enc_pubs[addr] = bytes(info["enc_pub"])

        await asyncio.gather(*(one(p) for p in self.peers if p.address is None or p.failures))

    def peer_for(self, address: str) -> PeerClient | None:
        for p in self.peers:
            if p.address == address:
                return p
        return None

    async def _obtain_epoch(self) -> None:
        assert self.host is not None and self.watcher is not None
        members = self.members()
        if self.address not in members:
            return
        for p in self.peers:
            if p.address not in members:
                continue
            try:
                out = await p.call("epoch_bundle", {"quote": self.quote, "enc_pub": self.enc_pub}, timeout=10)
            except PeerError as exc:
                log.info("%s: no epoch from %s yet: %s", self.cfg.name, p.url, exc)
                continue
            async with self.enclave_lock:
                res = await self.host.call("epoch_import", {"bundle": out["bundle"]})
                await self._refresh_status()
            log.info("%s: imported epoch %s keys from %s", self.cfg.name, res.get("epoch"), p.address)
            self.due_since = time.monotonic()
            await self._persist()
            self._work.set()
            return
        expected = self.cfg.expected_members or len(self.cfg.peers)
        if (
            self.watcher.height == 0
            and members
            and members[0] == self.address
            and len(members) >= max(expected, self.watcher.quorum)
            and all(a in self.quotes for a in members)
        ):
            async with self.enclave_lock:
                res = await self.host.call("epoch_genesis")
                await self._refresh_status()
            log.info("%s: created epoch %s (genesis)", self.cfg.name, res.get("epoch"))
            self.due_since = time.monotonic()
            await self._persist()
            self._work.set()

    # ================================================================== peer auth (issue 14 M4)
    async def _sign_peer_request(self, p: PeerClient, op: str, data: bytes) -> str:
        """The PEER_AUTH_HEADER value for ``op`` to ``p``: signed by this member's enclave."""
        if self.host is None:
            raise PeerError(f"cannot sign a {op} request to {p.url}: the enclave is not running")
        to = p.address or "0x" + "00" * 20
        expiry = int(time.time()) + PEER_AUTH_TTL
        out = await self.host.call(
            "peer_auth", {"op": op, "to": bytes.fromhex(to[2:]), "body_hash": keccak256(data), "expiry": expiry}
        )
        return f"{self.address}:{expiry}:{bytes(out['signature']).hex()}"

    async def _check_peer_auth(self, op: str, body: bytes, value: str | None) -> None:
        """Refuse ``op`` unless an active committee member's enclave signed this very request."""
        if not value:
            raise Refused(f"peer op {op} is served to committee members only: sign the request ({PEER_AUTH_HEADER})")
        try:
            signer, exp, sig_hex = value.split(":")
            expiry, sig = int(exp), bytes.fromhex(sig_hex)
            digest = peer_request_digest(self.cfg.l1_chain_id, self.cfg.rollup, self.address, op, keccak256(body), expiry)
            ok = to_checksum(recover_address(digest, sig)) == to_checksum(signer)
        except (ValueError, SignatureError):
            raise Refused(f"peer op {op}: malformed {PEER_AUTH_HEADER} (signer:expiry:signature)") from None
        now = time.time()
        if not now <= expiry <= now + MAX_PEER_AUTH_AHEAD:
            raise Refused(f"peer op {op}: the signed request expired or expires too far ahead; sign a fresh one")
        if not ok:
            raise Refused(f"peer op {op}: the request's signature is not by {signer} for this member")
        if to_checksum(signer) not in self.members():
            await self._poll_l1()  # maybe it registered just now
            if to_checksum(signer) not in self.members():
                raise Refused(f"peer op {op} is served to committee members only: {signer} is not active on L1")

    # ================================================================== peer server
    async def _peer_http(self, request: web.Request) -> web.Response:
        op = request.match_info["op"]
        try:
            body = await request.read()
            if op in AUTH_OPS:
                await self._check_peer_auth(op, body, request.headers.get(PEER_AUTH_HEADER))
            msg = cbor2.loads(body) if body else {}
            if not isinstance(msg, dict):
                raise Refused("a peer request is a CBOR map")
            handler = {
                "identity": self._on_identity,
                "epoch_bundle": self._on_epoch_bundle,
                "txs": self._on_txs,
                "propose": self._on_propose,
                "batch": self._on_batch,
                "snapshot": self._on_snapshot,
                "epoch_push": self._on_epoch_push,
                "announce": self._on_announce,
            }.get(op)
            if handler is None:
                raise Refused(f"unknown peer op {op[:32]!r}")
            out = await handler(msg)
            return web.Response(body=cbor2.dumps(out), content_type="application/cbor")
        except (Refused, EnclaveError, ValueError, KeyError, TypeError) as exc:
            text = str(exc) if not isinstance(exc, KeyError) else f"missing field {exc}"
            return web.Response(status=400, body=cbor2.dumps({"error": text[:2000]}), content_type="application/cbor")
        except Exception as exc:  # pragma: no cover - bug guard: keep serving
            log.exception("%s: peer op %s failed", self.cfg.name, op)
            return web.Response(status=500, body=cbor2.dumps({"error": f"internal error ({type(exc).__name__})"}),
                                content_type="application/cbor")

    async def _on_identity(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {"address": self.address, "tee_type": self.tee_type, "quote": self.quote,
                "enc_pub": self.enc_pub, "height": self.finalized, "epoch": self.epoch}

    async def _on_epoch_bundle(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.host is not None and self.watcher is not None
        if self.epoch is None:
            raise Refused("this node's enclave holds no epoch yet")
        epoch = int(msg.get("epoch", self.epoch))
        if epoch not in self.epochs_held:
            raise Refused(f"this node's enclave does not hold epoch {epoch} (holds {self.epochs_held})")
        quote = bytes(msg["quote"])
        from ..tee.platform import Quote

        q = Quote.decode(quote)
        if q.enclave not in self.members():
            # maybe it registered just now
            await self._poll_l1()
            if q.enclave not in self.members():
                raise Refused(f"enclave {q.enclave} is not an active committee member on L1")
        self.quotes[q.enclave] = quote
        await self._update_committee()
        out = await self.host.call(
            "epoch_export", {"epoch": epoch, "member": quote, "member_enc_pub": bytes(msg["enc_pub"])}
        )
        return {"bundle": out["bundle"], "epoch": epoch}

    async def _on_txs(self, msg: dict[str, Any]) -> dict[str, Any]:
        added = 0
        epochs = self.accepted_epochs()
        for raw in msg.get("envelopes", []):
            if not isinstance(raw, bytes):
                continue
            try:
                self.mempool.add(raw, epochs=epochs)
                added += 1
            except MempoolError:
                continue
        if added:
            self._work.set()
        return {"added": added}

    async def _on_batch(self, msg: dict[str, Any]) -> dict[str, Any]:
        h = int(msg["height"])
        if msg.get("pending"):
            cands = [r for r in self.records.values() if r.height == h and r.proposer in r.sigs]
            if not cands:
                raise Refused(f"no proposal at height {h} here")
            r = max(cands, key=lambda r: len(r.sigs))
            return r.proposal(r.proposer, r.sigs[r.proposer])
        rec = self.accepted_records.get(h)
        if rec is None:
            want = msg.get("hash")
            for r in self.records.values():
                if r.height == h and (want is None or r.hash == want):
                    rec = r
                    break
        if rec is None:
            raise Refused(f"no batch at height {h} here")
        return rec.to_wire()

    async def _fetch_record(self, h: int, header_hash: bytes) -> BatchRecord | None:
        for p in self.peers:
            try:
                out = await p.call("batch", {"height": h, "hash": header_hash}, timeout=30)
                rec = self._record_from_wire(out)
            except (PeerError, ValueError, KeyError, TypeError) as exc:
                log.debug("%s: batch %d from %s: %s", self.cfg.name, h, p.url, exc)
                continue
            if rec.hash == header_hash:
                return rec
        return await self._fetch_record_from_daps(h, header_hash)

    async def _fetch_record_from_daps(self, h: int, header_hash: bytes) -> BatchRecord | None:
        """No peer has it (a new node, or every node restarted): the DAPs (node/daps.py)."""
        acc = self.watcher.headers.get(h) if self.watcher else None
        if not self.daps.enabled or acc is None or acc.hash != header_hash or self.watcher is None:
            return None
        b = await self.daps.fetch_batch(header_hash)
        if b is None:
            return None
        try:
            inp = record_inputs(b, self.watcher.messages)
            rec = self._record_from_wire({"input": inp, "header": b.header.encode(), "batch_data": b.batch_data,
                                          "withdrawals": [[w.recipient, w.amount] for w in acc.withdrawals]})
            log.info("%s: batch of accepted height %d from the DAPs", self.cfg.name, h)
            return rec
        except (KeyError, ValueError, TypeError) as exc:
            log.info("%s: DAP batch of height %d unusable yet: %s", self.cfg.name, h, exc)
            return None

    def _record_from_wire(self, out: dict[str, Any]) -> BatchRecord:
        header_bytes = bytes(out["header"])
        header = Header.decode(header_bytes)
        batch_data = bytes(out["batch_data"])
        items = batch_data_items(batch_data)  # decoded and hashed once (the enclave's tree code)
        if data_commitment_of_items(items) != header.data_commitment:
            raise ValueError("batch data does not match the header's data commitment")
        meta = cbor2.loads(items[0])
        n_env = int(meta["n_envelopes"])
        if not 0 <= n_env < len(items):
            raise ValueError("batch data meta: n_envelopes out of range")
        envelopes = items[1 : 1 + n_env]
        inp = dict(out["input"])
        inp.pop("envelopes", None)
        if int(inp["height"]) != header.height or bytes(inp["prev_hash"]) != header.prev_hash:
            raise ValueError("batch input does not match its header (height / prev_hash)")
        ws = [list(w) for w in out.get("withdrawals", [])]
        diff = out.get("diff")
        return BatchRecord(
            height=header.height, input=inp, envelopes=envelopes, header=header, header_bytes=header_bytes,
            hash=header.hash(), batch_data=batch_data, withdrawals=ws, diff=diff if isinstance(diff, bytes) else b"",
        )

    # ------------------------------------------------------------------ voting
    def proposer_slot(self, h: int) -> int:
        """The primary proposer of height h is ``members[slot % n]``: each member proposes
        ``proposer_run`` consecutive heights (1: round robin), so a proposer that just executed h
        executes h+1 at once instead of first waiting to verify someone else's batch."""
        return h // self.cfg.proposer_run

    def allowed_proposers(self, h: int) -> list[str]:
        """Who may propose height h now: the primary, plus fallbacks once it was silent too long."""
        members = self.members()
        if not members:
            return []
        n = len(members)
        k = 0
        if h == self.l1_height + 1:
            base = self.due_since if self.work_since is None else max(self.due_since, self.work_since)
            k = int((time.monotonic() - base) / self.cfg.proposer_timeout) + 1  # +1: clock/poll slack
        slot = self.proposer_slot(h)
        return [members[(slot + j) % n] for j in range(min(k, n - 1) + 1)]

    async def _on_propose(self, msg: dict[str, Any], *, takeover: bool = False) -> dict[str, Any]:
        assert self.host is not None and self.watcher is not None
        proposer = to_checksum(msg["proposer"])
        header_bytes = bytes(msg["header"])
        header = Header.decode(header_bytes)
        h = header.height
        hh = header.hash()
        if h <= self.finalized:
            raise Refused(f"height {h} is already final here (finalized {self.finalized})")
        if self.frozen:
            raise Refused("the Rollup is frozen: no more headers")
        cached = self.my_sigs.get(h)
        if cached is not None and cached[0] == hh:
            return {"signature": cached[1], "signer": self.address}
        if cached is not None:
            raise Refused(f"this enclave already signed a different header at height {h}")
        # 1. cheap checks first (bound the work a bad proposal costs)
        if proposer not in self.members():
            raise Refused(f"proposer {proposer} is not an active committee member")
        if not takeover and proposer not in self.allowed_proposers(h):
            raise Refused(f"{proposer} is not an expected proposer for height {h} now")
        try:
            signer = recover_address(header.signing_digest(self.cfg.l1_chain_id, self.cfg.rollup), bytes(msg["signature"]))
        except SignatureError as exc:
            raise Refused(f"proposal signature invalid: {exc}") from None
        if signer != proposer:
            raise Refused("proposal header is not signed by the proposer's enclave")
        rec = self._record_from_wire(msg)
        if withdrawals_hash([Withdrawal(to_checksum(w[0]), int(w[1])) for w in rec.withdrawals]) != header.withdrawals_hash:
            raise Refused("proposal withdrawals do not match the header's withdrawals_hash")
        rec.proposer = proposer
        rec.sigs[proposer] = bytes(msg["signature"])
        for item in msg.get("sigs", [])[:64]:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                self._add_sig(rec, to_checksum(item[0]), bytes(item[1]))
        # 2. the L1 messages must be the ones this node sees on L1; the epoch keys must be here
        await self._check_messages(rec)
        l1_time = await self._l1_block_time(int(rec.input["l1_block"]))
        await self._ensure_proposal_epoch(header, proposer)
        # 3. wait for our enclave to reach the proposal's parent
        await self._wait_for_parent(h, header.prev_hash)
        async with self.enclave_lock:
            cached = self.my_sigs.get(h)
            if cached is not None:
                if cached[0] == hh:
                    return {"signature": cached[1], "signer": self.address}
                raise Refused(f"this enclave already signed a different header at height {h}")
            if self.head_height != h - 1 or self.head_hash != header.prev_hash:
                raise Refused(f"proposal for height {h} does not extend this enclave's head at {self.head_height}")
            why = timestamp_refusal(int(rec.input["timestamp"]), self.head_timestamp, time.time(), l1_time)
            if why is not None:  # issue 14 M1: the proposer's clock is not the chain's
                raise Refused(why)
            payload = {**rec.input, "envelopes": rec.envelopes, "header": header_bytes}
            t_v = time.monotonic()
            out = await self.host.call("verify_batch", payload)
            log.debug("%s: voted height %d (%.0f ms in the enclave)", self.cfg.name, h, 1000 * (time.monotonic() - t_v))
            sig = bytes(out["signature"])
            self.my_sigs[h] = (hh, sig)
            self.chain[h] = hh
            self.head_height, self.head_hash = h, hh
            self.head_msg_count = header.msg_count
            self.head_l1_block = header.l1_block
            self.head_timestamp = int(rec.input["timestamp"])
            if self.cfg.persist == "sign":
                await self._persist()
        rec.sigs[self.address] = sig
        self.records.setdefault(hh, rec)
        self.mempool.mark_inflight(rec.rids(), h)
        self.counters["voted"] += 1
        await self._notify_head()
        self._work.set()
        return {"signature": sig, "signer": self.address}

    async def _check_messages(self, rec: BatchRecord) -> None:
        assert self.watcher is not None
        msgs = rec.input.get("messages", [])
        l1_block = int(rec.input["l1_block"])
        deadline = time.monotonic() + max(2.0, self.cfg.proposer_timeout)
        while self.watcher.confirmed_block() < l1_block:
            if time.monotonic() > deadline:
                raise Refused(f"L1 block {l1_block} is not confirmed here yet")
            await asyncio.sleep(self.cfg.l1_poll_interval)
        for m in msgs:
            idx = int(m[0])
            mine = self.watcher.messages.get(idx)
            if mine is None or msg_to_wire(mine) != [idx, int(m[1]), to_checksum(m[2]), int(m[3]), int(m[4]), bytes(m[5])]:
                raise Refused(f"L1 message {idx} in the proposal differs from what this node sees on L1")
        # whole blocks: no message of a block <= l1_block may be left out -- also when the
        # proposal has no message at all (issue 14 H5: node/inputs.py)
        nxt = rec.header.msg_count
        why = whole_blocks_refusal(nxt, l1_block, self.watcher.messages.get(nxt))
        if why is not None:
            raise Refused(why)

    async def _l1_block_time(self, block: int) -> int:
        """The L1 timestamp of ``block`` (cached by the watcher; else read on the L1 thread)."""
        assert self.watcher is not None
        return await asyncio.get_running_loop().run_in_executor(self._l1_pool, self.watcher.block_time, block)

    async def _wait_for_parent(self, h: int, prev_hash: bytes) -> None:
        deadline = time.monotonic() + max(5.0, 2 * self.cfg.proposer_timeout)
        async with self.head_changed:
            while not (self.head_height >= h - 1 and self.chain.get(h - 1) == prev_hash):
                if self.head_height >= h - 1 and h - 1 <= self.finalized and self.chain.get(h - 1) not in (None, prev_hash):
                    raise Refused(f"proposal for height {h} does not extend the accepted header at {h - 1}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Refused(f"this node has not reached height {h - 1} (head {self.head_height})")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.head_changed.wait(), timeout=min(remaining, 0.25))

    # ================================================================== proposing
    def accepted_epochs(self) -> list[int] | None:
        """Epochs a new envelope may be sealed to: the one on L1 (what clients read) and newer.
        An envelope of an epoch L1 already superseded is refused at once (the client re-seals):
        after the next rotation it would fall out of the batches' grace window."""
        if self.epoch is None:
            return None
        floor = min(self.l1_epoch(), self.epoch)
        return [e for e in self.epochs_held if e >= floor] or [self.epoch]

    def pending_messages(self) -> list[L1Message]:
        assert self.watcher is not None
        return self.watcher.messages_between(self.head_msg_count, self.watcher.confirmed_block())

    async def _proposer_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._work.wait(), timeout=0.02)
            self._work.clear()
            try:
                await self._maybe_takeover()
                await self._maybe_propose()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"proposer: {type(exc).__name__}: {exc}"
                log.warning("%s: %s", self.cfg.name, self.last_error, exc_info=not isinstance(exc, EnclaveError))
                await asyncio.sleep(0.2)

    def _has_work(self, h: int) -> tuple[bool, bool]:
        """(there is work, the batch should be cut now)."""
        now = time.monotonic()
        if h == 1 and self.l1_height == 0:
            return True, True  # publish the epoch key
        if h == self.l1_height + 1 and self.rotation_due() == "revocation":
            return True, True  # a member left: the next header opens a new epoch at once
        msgs = self.pending_messages()
        ready = self.mempool.pending_count if self.mempool.has_ready() else 0
        if not msgs and not ready:
            return False, False
        if ready + len(msgs) >= self.cfg.batch_size:
            return True, True
        age = self.mempool.oldest_pending_age() if ready else 0.0
        if msgs:
            age = max(age, now - self.msg_seen.get(msgs[0].index, now))
        return True, age >= self.cfg.batch_interval

    def _has_any_work(self, h: int) -> bool:
        """``_has_work(h)[0]`` without counting the mempool (this runs on every loop turn)."""
        if (h == 1 and self.l1_height == 0) or (h == self.l1_height + 1 and self.rotation_due() == "revocation"):
            return True
        return self.mempool.has_ready() or bool(self.pending_messages())

    async def _maybe_propose(self) -> None:
        if self.epoch is None or self.watcher is None or self.frozen or not self.ready_to_propose():
            return
        h = self.head_height + 1
        if h > self.l1_height + self.cfg.pipeline:
            return
        if any(r.height == h and r.proposer == self.address for r in self.records.values()):
            return
        members = self.members()
        if self.address not in members or members[self.proposer_slot(h) % len(members)] != self.address:
            return
        work, cut = self._has_work(h)
        if not (work and cut):
            return
        await self._build_and_collect(h)

    def ready_to_propose(self) -> bool:
        return bool(self.members()) and self.finalized >= self.l1_height

    async def _build_and_collect(self, h: int) -> None:
        assert self.host is not None and self.watcher is not None
        if self.frozen or not await self._prepare_epoch(h):
            return
        async with self.enclave_lock:
            if self.head_height != h - 1 or self.epoch is None or h in self.my_sigs:
                return
            msgs = self.pending_messages()
            l1_block = max(self.head_l1_block, self.watcher.confirmed_block())
            if msgs:
                l1_block = max(l1_block, msgs[-1].l1_block)
            room = max(0, self.cfg.batch_size - len(msgs))
            entries = self.mempool.select(room, h) if room else []
            inp = {
                "height": h,
                "prev_hash": self.head_hash,
                "epoch": self.epoch,
                "l1_block": l1_block,
                "timestamp": proposal_timestamp(self.head_timestamp, time.time(), await self._l1_block_time(l1_block)),
                "messages": [msg_to_wire(m) for m in msgs],
            }
            envelopes = [e.raw for e in entries]
            try:
                out = await self.host.call("execute_batch", {**inp, "envelopes": envelopes, "with_diff": True})
            except EnclaveError:
                self.mempool.release(h)
                raise
            header_bytes = bytes(out["header"])
            header = Header.decode(header_bytes)
            rec = BatchRecord(
                height=h, input=inp, envelopes=envelopes, header=header, header_bytes=header_bytes,
                hash=bytes(out["header_hash"]), batch_data=bytes(out["batch_data"]),
                withdrawals=[list(w) for w in out.get("withdrawals", [])], proposer=self.address,
                diff=bytes(out.get("diff") or b""),
            )
            sig = bytes(out["signature"])
            rec.sigs[self.address] = sig
            self.my_sigs[h] = (rec.hash, sig)
            self.chain[h] = rec.hash
            self.head_height, self.head_hash = h, rec.hash
            self.head_msg_count = header.msg_count
            self.head_l1_block = header.l1_block
            self.head_timestamp = int(inp["timestamp"])
            self.records[rec.hash] = rec
            if self.daps.enabled:  # to the DAPs while the voters re-execute (with a snapshot now and then)
                snap = None
                if self.daps.snapshot_due(h, self.epoch):
                    with contextlib.suppress(EnclaveError):
                        s = await self.host.call("snapshot")
                        snap = (int(s["epoch"]), bytes(s["shared"]))
                self.daps.upload(header, rec.batch_data, snap)
            if self.cfg.persist == "sign":
                await self._persist()
        self.counters["proposed"] += 1
        log.info("%s: proposed height %d (%d messages, %d envelopes, %d ok)", self.cfg.name, h, len(msgs),
                 len(envelopes), int(out.get("n_ok", 0)))
        await self._notify_head()
        self._spawn(self._collect_and_submit(rec, sig))

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self._tasks.append(t)
        t.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    def qc_ready(self, rec: BatchRecord) -> bool:
        assert self.watcher is not None
        types = self.member_types()
        signers = [a for a in rec.sigs if a in types]
        return len(signers) >= self.watcher.quorum and len({types[a] for a in signers}) >= self.watcher.min_types

    async def _collect_and_submit(self, rec: BatchRecord, my_sig: bytes) -> None:
        """Send the proposal to every other member until the QC is complete; then submit it."""
        if rec.collecting:
            return
        rec.collecting = True
        try:
            await self._collect(rec, my_sig)
            if self.qc_ready(rec):
                await self._submit_when_due(rec)
        finally:
            rec.collecting = False

    def _first_voters(self, rec: BatchRecord, candidates: list[str]) -> list[str]:
        """The fewest voters, in rotation order after the proposer (the next proposers first: they
        need the batch anyway), whose signatures complete the QC. The others get the proposal once
        the QC is complete: their re-execution is off the critical path."""
        assert self.watcher is not None
        types = self.member_types()
        have = [a for a in rec.sigs if a in types]
        chosen: list[str] = []
        left = [a for a in candidates if a in types]
        while left:
            signers = have + chosen
            kinds = {types[x] for x in signers}
            if len(signers) >= self.watcher.quorum and len(kinds) >= self.watcher.min_types:
                break
            # while types are missing, the first member (rotation order) that adds one
            pick = next((a for a in left if types[a] not in kinds), left[0]) if len(kinds) < self.watcher.min_types else left[0]
            chosen.append(pick)
            left.remove(pick)
        return chosen

    async def _collect(self, rec: BatchRecord, my_sig: bytes) -> None:
        assert self.watcher is not None
        digest = rec.header.signing_digest(self.cfg.l1_chain_id, self.cfg.rollup)
        body = cbor2.dumps(rec.proposal(self.address, my_sig))  # encoded once for every peer
        order = self.members()
        members = set(order)
        n = len(order)
        start = order.index(self.address) if self.address in order else 0
        rotation = [order[(start + j) % n] for j in range(1, n)]
        pending: list[str] = [a for a in rotation if a not in rec.sigs]
        first = self._first_voters(rec, pending)
        deadline = time.monotonic() + max(10.0, 4 * self.cfg.proposer_timeout)
        widen_at = time.monotonic() + max(1.0, self.cfg.proposer_timeout / 3)
        refused: set[str] = set()

        async def ask(addr: str) -> None:
            p = self.peer_for(addr)
            if p is None:
                refused.add(addr)
                return
            try:
                out = await p.call_raw("propose", body, timeout=60)
            except PeerError as exc:
                refused.add(addr)
                log.debug("%s: vote from %s for %d: %s", self.cfg.name, addr, rec.height, exc)
                return
            sig = bytes(out["signature"])
            try:
                signer = recover_address(digest, sig)
            except SignatureError:
                return
            if signer == addr and signer in members:
                rec.sigs[signer] = sig
                if addr in pending:
                    pending.remove(addr)

        asked: set[str] = set(first)
        tasks = {asyncio.create_task(ask(a)) for a in first}
        while not self._stopping.is_set():
            if self.qc_ready(rec) or rec.height <= self.finalized:
                break
            if refused or time.monotonic() > widen_at:  # a first voter failed or is slow: ask everyone
                fresh = [a for a in pending if a not in asked]
                asked.update(fresh)
                tasks |= {asyncio.create_task(ask(a)) for a in fresh}
            if not tasks:
                if time.monotonic() > deadline or not pending:
                    break
                await asyncio.sleep(0.2)  # retry the silent ones
                refused.clear()
                tasks = {asyncio.create_task(ask(a)) for a in pending}
                continue
            _done, tasks = await asyncio.wait(tasks, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
        rest = [a for a in pending if a not in asked]
        if rest and self.qc_ready(rec):  # the rest get the batch with its QC and do NOT re-execute:
            self._spawn(self._announce(rec, my_sig, rest))  # they apply its state diff once it is on L1
        elif rest:
            for a in rest:
                self._spawn(ask(a))
        # stragglers keep going in the background (their enclaves need the batch too)

    async def _submit_when_due(self, rec: BatchRecord) -> None:
        assert self.watcher is not None
        while not self._stopping.is_set() and rec.height > self.l1_height + 1:
            if rec.hash not in self.records:
                return  # lost the race meanwhile
            async with self.head_changed:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.head_changed.wait(), timeout=0.05)
        if rec.height != self.l1_height + 1 or rec.submitted or rec.hash not in self.records:
            return
        await self._submit(rec)

    async def _submit(self, rec: BatchRecord) -> None:
        assert self.watcher is not None
        if self.sender is None:
            log.warning("%s: no L1 key: cannot submit height %d", self.cfg.name, rec.height)
            return
        rec.submitted = True
        rec.submitted_at = time.monotonic()
        sigs = qc_signatures([(a, s) for a, s in rec.sigs.items() if a in self.member_types()])
        ws = [(to_checksum(w[0]), int(w[1])) for w in rec.withdrawals]
        receipts: list[Any] = []
        if self.daps.enabled:  # at least Rollup.dapThreshold() DAP storage receipts
            try:
                receipts = qc_signatures(await self.daps.receipts_for(rec))
            except DapError as exc:
                rec.submitted = False
                log.warning("%s: cannot submit height %d: %s", self.cfg.name, rec.height, exc)
                return
        if receipts:
            fn = self.watcher.rollup.functions.submitHeader(rec.header.as_tuple(), ws, sigs, receipts)
        else:
            fn = self.watcher.rollup.functions.submitHeader(rec.header.as_tuple(), ws, sigs)
        sender = self.sender
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        try:
            receipt = await loop.run_in_executor(self._tx_pool, lambda: sender.transact(fn, gas=2_000_000))
            self.counters["submitted"] += 1
            log.info("%s: header %d accepted on L1 (gas %d, %.0f ms)", self.cfg.name, rec.height,
                     receipt["gasUsed"], 1000 * (time.monotonic() - t0))
            self.last_gas = int(receipt["gasUsed"])
        except TxReverted as exc:
            log.info("%s: submitHeader %d reverted (lost the race?): %s", self.cfg.name, rec.height, exc)
            with contextlib.suppress(ChainError):
                await loop.run_in_executor(self._tx_pool, sender.resync_nonce)
        except ChainError as exc:
            rec.submitted = False
            log.warning("%s: submitHeader %d failed: %s", self.cfg.name, rec.height, exc)
        await self._poll_soon()

    async def _poll_soon(self) -> None:
        try:
            await self._poll_l1()
        except Exception as exc:  # the L1 loop will retry
            log.debug("poll after submit failed: %s", exc)

    def _stall_base(self) -> float | None:
        """Since when the next height has been due with work waiting (None: nothing to wait for)."""
        t = self.l1_height + 1
        waiting = any(r.height == t for r in self.records.values()) or self._has_any_work(t)
        if not waiting:
            self.work_since = None
            return None
        if self.work_since is None:
            self.work_since = time.monotonic()
        return max(self.due_since, self.work_since)

    async def _maybe_takeover(self) -> None:
        """The race: the next height stayed unaccepted too long; fallback proposers step in, one at a time.

        The member at offset j after the primary may act after j timeouts. It first finishes a
        proposal it already signed; else it asks its peers for any proposal at that height and
        adopts it (so votes do not split between two headers: an enclave never signs two);
        only when nobody has one does it build its own batch.
        """
        if self.epoch is None or self.watcher is None or self._takeover_busy or self.frozen:
            return
        if self.finalized > self.l1_height:
            return  # an L1 reorganisation took accepted headers away: re-anchoring them first
        await self._resubmit_vanished()
        members = self.members()
        n = len(members)
        if self.address not in members or n < 2 or self.finalized < self.l1_height:
            return
        base = self._stall_base()
        if base is None:
            return
        t = self.l1_height + 1
        elapsed = time.monotonic() - base
        offset = (members.index(self.address) - self.proposer_slot(t)) % n
        if offset == 0 or elapsed < offset * self.cfg.proposer_timeout:
            return
        self._takeover_busy = True
        self._spawn(self._takeover(t, elapsed))

    async def _takeover(self, t: int, elapsed: float) -> None:
        assert self.watcher is not None
        try:
            prev = self.watcher.last_header_hash()
            known = [r for r in self.records.values() if r.height == t and r.header.prev_hash == prev]
            mine = self.my_sigs.get(t)
            rec = next((r for r in known if mine is not None and r.hash == mine[0]), None)
            if rec is None and mine is None:
                rec = await self._adopt_peer_proposal(t, prev)
                mine = self.my_sigs.get(t)
            if rec is not None and mine is not None and mine[0] == rec.hash:
                if rec.collecting or rec.submitted:
                    return
                self.counters["takeovers"] += 1
                log.info("%s: height %d stalled %.1fs: taking over proposal 0x%s", self.cfg.name, t, elapsed,
                         rec.hash.hex()[:12])
                await self._collect_and_submit(rec, mine[1])
                return
            if mine is not None or self.head_height != t - 1:
                return  # we signed something else at t: only its QC can complete now
            self.counters["takeovers"] += 1
            log.info("%s: height %d stalled %.1fs and no proposal around: proposing it", self.cfg.name, t, elapsed)
            await self._build_and_collect(t)
        except (PeerError, EnclaveError, Refused) as exc:
            log.info("%s: takeover of height %d failed: %s", self.cfg.name, t, exc)
        finally:
            self._takeover_busy = False

    async def _adopt_peer_proposal(self, t: int, prev: bytes) -> BatchRecord | None:
        """Ask every peer at once (a silent one must not delay the takeover) for a proposal at
        height t; verify and sign the first valid one."""
        wait = max(0.5, min(2.0, self.cfg.proposer_timeout))

        async def ask(p: PeerClient) -> dict[str, Any] | None:
            try:
                out = await p.call("batch", {"height": t, "pending": True}, timeout=wait)
                return {**out, "proposer": to_checksum(out["proposer"]), "signature": bytes(out["signature"])}
            except (PeerError, KeyError, TypeError, ValueError):
                return None

        answers = [a for a in await asyncio.gather(*(ask(p) for p in self.peers)) if a is not None]
        answers.sort(key=lambda a: -len(a.get("sigs", [])))
        for msg in answers:
            try:
                await self._on_propose(msg, takeover=True)
            except (Refused, EnclaveError, ValueError) as exc:
                log.info("%s: proposal at %d not adopted: %s", self.cfg.name, t, exc)
                continue
            rec = self.records.get(Header.decode(bytes(msg["header"])).hash())
            if rec is not None and rec.header.prev_hash == prev:
                for a, sig in msg.get("sigs", []):
                    self._add_sig(rec, to_checksum(a), bytes(sig))
                return rec
        return None

    def _add_sig(self, rec: BatchRecord, signer: str, sig: bytes) -> None:
        if signer not in self.member_types():
            return
        try:
            if recover_address(rec.header.signing_digest(self.cfg.l1_chain_id, self.cfg.rollup), sig) == signer:
                rec.sigs[signer] = sig
        except SignatureError:
            return

    # ================================================================== members outside the QC
    # The proposer asks only the voters its QC needs (_first_voters); the other members get the
    # batch with its QC and the proposer enclave's sealed state diff (``announce``) and do not
    # re-execute it: once the header is accepted on L1 their enclave applies the diff, checking
    # it against the QC'd header (apply_batch with ``diff``; docs/ENCLAVE.md), and re-executes
    # only if that is refused.

    async def _announce(self, rec: BatchRecord, my_sig: bytes, addrs: list[str]) -> None:
        body = cbor2.dumps(rec.proposal(self.address, my_sig))  # with the QC's signatures now

        async def one(addr: str) -> None:
            p = self.peer_for(addr)
            if p is None:
                return
            try:
                await p.call_raw("announce", body, timeout=30)
            except PeerError as exc:  # it fetches the batch from a peer when it sees the header
                log.debug("%s: announce of %d to %s: %s", self.cfg.name, rec.height, addr, exc)

        await asyncio.gather(*(one(a) for a in addrs))

    async def _on_announce(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A QC'd batch this node's enclave is not asked to vote on: keep it (checked like a
        proposal, without re-execution) to apply its state diff when the header is on L1."""
        proposer = to_checksum(msg["proposer"])
        header_bytes = bytes(msg["header"])
        header = Header.decode(header_bytes)
        hh = header.hash()
        if header.height <= self.finalized:
            return {"stored": False}
        if proposer not in self.members():
            raise Refused(f"proposer {proposer} is not an active committee member")
        try:
            signer = recover_address(header.signing_digest(self.cfg.l1_chain_id, self.cfg.rollup), bytes(msg["signature"]))
        except SignatureError as exc:
            raise Refused(f"announced header signature invalid: {exc}") from None
        if signer != proposer:
            raise Refused("announced header is not signed by the proposer's enclave")
        rec = self.records.get(hh)
        if rec is None:
            rec = self._record_from_wire(msg)
            ws = [Withdrawal(to_checksum(w[0]), int(w[1])) for w in rec.withdrawals]
            if withdrawals_hash(ws) != header.withdrawals_hash:
                raise Refused("announced withdrawals do not match the header's withdrawals_hash")
            rec.proposer = proposer
            rec.sigs[proposer] = bytes(msg["signature"])
            self.records[hh] = rec
        elif not rec.diff and isinstance(msg.get("diff"), bytes):
            rec.diff = bytes(msg["diff"])
        for item in msg.get("sigs", [])[:64]:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                self._add_sig(rec, to_checksum(item[0]), bytes(item[1]))
        self.mempool.mark_inflight(rec.rids(), header.height)
        return {"stored": True}

    async def _apply_record(self, rec: BatchRecord, acc: AcceptedHeader) -> None:
        """Bring the enclave (head at h-1) to the accepted header h: its state diff if the record
        has one (no re-execution), else -- or if the enclave refuses the diff -- re-execution.
        Called with the enclave lock held."""
        assert self.host is not None
        base = {"header": rec.header_bytes, "signatures": acc.signatures}
        if rec.diff:
            try:
                await self.host.call("apply_batch", {**base, "diff": rec.diff, "batch_data": rec.batch_data})
                log.debug("%s: applied the state diff of height %d", self.cfg.name, rec.height)
                self.counters["applied_diff"] = self.counters.get("applied_diff", 0) + 1
                return
            except EnclaveError as exc:
                log.warning("%s: state diff of height %d refused (%s); re-executing it", self.cfg.name, rec.height, exc)
        await self.host.call("apply_batch", {**rec.input, "envelopes": rec.envelopes, **base})
        self.counters["applied_reexec"] = self.counters.get("applied_reexec", 0) + 1

    # ================================================================== fast path
    def submit_envelope(self, raw: bytes, origin: str = "") -> bytes:
        """eth_sendRawTransaction: admit to the mempool and forward to the committee."""
        e = self.mempool.add(raw, epochs=self.accepted_epochs(), origin=origin)
        self._forward_buf.append(raw)
        self._forward_event.set()
        self._work.set()
        return e.receipt_id

    async def _forward_loop(self) -> None:
        while not self._stopping.is_set():
            await self._forward_event.wait()
            self._forward_event.clear()
            await asyncio.sleep(0.005)  # gather a burst into one message
            buf, self._forward_buf = self._forward_buf, []
            if not buf:
                continue
            self._log_pending(buf)
            data = cbor2.dumps({"envelopes": buf})
            for p in self.peers:  # one task per peer: a silent peer delays nobody
                if p.inflight_forwards < 16:  # a peer that stopped answering is skipped (we keep the txs)
                    self._spawn(self._forward_to(p, data))

    async def _forward_to(self, p: PeerClient, data: bytes) -> None:
        p.inflight_forwards += 1
        try:
            await p.call_raw("txs", data, timeout=10)
        except PeerError as exc:
            log.debug("%s: forward to %s failed: %s", self.cfg.name, p.url, exc)
        finally:
            p.inflight_forwards -= 1

    # ================================================================== status
    def status(self) -> dict[str, Any]:
        members = self.members()
        nxt = self.l1_height + 1
        proposer = members[self.proposer_slot(nxt) % len(members)] if members else None
        return {
            "name": self.cfg.name,
            "height": self.l1_height,
            "finalized": self.finalized,
            "head": self.head_height,
            "epoch": self.epoch,
            "role": "frozen" if self.frozen else ("proposer" if proposer == self.address else "voter"),
            "proposer": proposer,
            "members": members,
            "mempool": self.mempool.stats(),
            "peers": [{"url": p.url, "address": p.address, "up": p.failures == 0 and p.address is not None} for p in self.peers],
            "l1Block": self.watcher.latest_block if self.watcher else None,
            "address": self.address,
            "teeType": TEE_NAMES.get(self.tee_type, str(self.tee_type)),
            "counters": dict(self.counters),
            "ecalls": self.host.stats_summary() if self.host else {},
            "lastError": self.last_error,
            "dapSnapshot": self.daps.restored_from,  # height of a DAP snapshot this node restored (node/daps.py)
            **self._fault_status(),
        }

    # ================================================================== faults, epochs, reorgs
    # (docs/FAULTS.md) kept apart from the batch pipeline above

    def _log_pending(self, envelopes: list[bytes]) -> None:
        """Append acknowledged envelopes to ``data_dir/pending.log``: a node restarted (even with
        every other node) offers them again until they are included."""
        try:
            _append_frame(self.data_dir / "pending.log", envelopes)
        except OSError as exc:
            log.warning("%s: pending transactions not persisted: %s", self.cfg.name, exc)

    def _reload_pending(self) -> None:
        """At start (epoch known): re-admit logged envelopes without a receipt; compact the log."""
        path = self.data_dir / "pending.log"
        if not path.exists():
            return
        keep = [
            e
            for frame in _read_frames(path)
            if isinstance(frame, list)
            for e in frame
            if isinstance(e, bytes) and keccak256(e) not in self.receipts
        ]
        added = 0
        for e in keep:
            with contextlib.suppress(MempoolError):
                self.mempool.add(e, epochs=None)
                added += 1
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(b"")
        os.replace(tmp, path)
        if keep:
            self._log_pending(keep)
            self._forward_buf.extend(keep)
            self._forward_event.set()
        log.info("%s: %d pending transactions offered again after the restart", self.cfg.name, added)

    def _log_receipts(self, fresh: dict[bytes, dict[str, Any]]) -> None:
        """Append an accepted header's (encrypted) receipts to ``data_dir/receipts.log``, so a
        receipt stays servable after this node restarts (even when every node restarted)."""
        if not fresh:
            return
        try:
            _append_frame(self.data_dir / "receipts.log", fresh)
        except OSError as exc:
            log.warning("%s: receipts not persisted: %s", self.cfg.name, exc)

    def _load_receipts(self) -> None:
        path = self.data_dir / "receipts.log"
        if not path.exists():
            return
        for part in _read_frames(path):
            if isinstance(part, dict):
                self.receipts.update(part)
        log.info("%s: %d receipts reloaded from %s", self.cfg.name, len(self.receipts), path)

    def _fault_status(self) -> dict[str, Any]:
        w = self.watcher
        out: dict[str, Any] = {
            "frozen": self.frozen,
            "epochsHeld": list(self.epochs_held),
            "rotationDue": self.rotation_due(),
            "l1Reorgs": w.reorgs if w else 0,
        }
        if self.cfg.allow_faults:
            out["faults"] = {
                "links": self.link_faults.to_dict(),
                "enclaveLink": self.host.faults.to_dict() if self.host and self.host.faults else None,
            }
        return out

    def l1_epoch(self) -> int:
        last = self.watcher.last_header() if self.watcher else None
        return last.header.epoch if last is not None else 0

    def rotation_due(self) -> str | None:
        """Why the next header must open a new epoch: ``"schedule"`` (``epoch_every`` headers in
        the current epoch) or ``"revocation"`` (a member left the committee since the current
        epoch opened); None: not due. Every node computes it from L1 alone."""
        w = self.watcher
        last = w.last_header() if w is not None else None
        if w is None or last is None:
            return None
        opened_h, opened_block = w.epoch_opened(last.header.epoch)
        if self.cfg.epoch_every and last.header.height - opened_h + 1 >= self.cfg.epoch_every:
            return "schedule"
        if opened_block >= 0 and w.last_revocation_block >= opened_block:
            return "revocation"
        return None

    async def _prepare_epoch(self, h: int) -> bool:
        """Make the enclave's current epoch right for a batch at ``h``; rotate first when due.
        False: not now (the proposer waits for L1 to reach its head, or for keys)."""
        assert self.host is not None and self.watcher is not None
        l1_epoch = self.l1_epoch()
        if self.epoch is not None and self.epoch < l1_epoch:
            await self._catch_up_epoch()
            if self.epoch is None or self.epoch < l1_epoch:
                return False
        why = self.rotation_due()
        if why is None or (self.epoch is not None and self.epoch > l1_epoch):
            return True
        if self.head_height != self.l1_height or self.finalized != self.l1_height or h != self.l1_height + 1:
            return False  # rotate on the accepted head only (one pipeline bubble per rotation)
        await self._update_committee()  # the enclave exports new keys only to the members still trusted
        # a member that rotated before us (e.g. a proposer that lost the race): take its keys
        if await self._fetch_epoch(l1_epoch + 1, timeout=1.0):
            return True
        async with self.enclave_lock:
            if self.epoch is not None and self.epoch > l1_epoch:
                return True
            out = await self.host.call("epoch_rotate")
            await self._refresh_status()
        self.counters["rotations"] += 1
        new = int(out["epoch"])
        log.info("%s: rotated to epoch %d (%s); its key goes to L1 with height %d", self.cfg.name, new, why, h)
        await self._persist()
        self._spawn(self._push_epoch(new))
        return True

    async def _push_epoch(self, epoch: int) -> None:
        """Send the new epoch's keys to every ACTIVE member, each encrypted by our enclave to that
        member's attested key (the enclave refuses anyone outside its committee)."""
        assert self.host is not None
        members = set(self.members())

        async def one(p: PeerClient) -> None:
            if p.address is None or p.address not in members or p.address not in self.enc_pubs:
                return
            try:
                out = await self.host.call("epoch_export", {"epoch": epoch, "member": self.quotes[p.address],  # type: ignore[union-attr]
                                                            "member_enc_pub": self.enc_pubs[p.address]})
                await p.call("epoch_push", {"epoch": epoch, "bundle": out["bundle"]}, timeout=10)
            except (PeerError, EnclaveError, KeyError) as exc:
                log.info("%s: epoch %d not pushed to %s: %s", self.cfg.name, epoch, p.url, exc)

        await asyncio.gather(*(one(p) for p in self.peers))

    async def _on_epoch_push(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.host is not None
        epoch = int(msg["epoch"])
        if epoch in self.epochs_held:
            return {"imported": False, "epoch": epoch}
        async with self.enclave_lock:
            await self.host.call("epoch_import", {"bundle": bytes(msg["bundle"])})
            await self._refresh_status()
        log.info("%s: imported epoch %d keys (pushed)", self.cfg.name, epoch)
        await self._persist()
        return {"imported": True, "epoch": epoch}

    async def _fetch_epoch(
        self, epoch: int, *, replace: bool = False, peers: list[PeerClient] | None = None, timeout: float = 5.0
    ) -> bool:
        """Ask peers (all at once) for ``epoch``'s keys and import the first bundle that works."""
        assert self.host is not None
        members = set(self.members())
        cands = [p for p in (peers if peers is not None else self.peers) if p.address in members]

        async def ask(p: PeerClient) -> bytes | None:
            try:
                out = await p.call("epoch_bundle", {"quote": self.quote, "enc_pub": self.enc_pub, "epoch": epoch},
                                   timeout=timeout)
                return bytes(out["bundle"])
            except (PeerError, KeyError, TypeError) as exc:
                log.debug("%s: epoch %d from %s: %s", self.cfg.name, epoch, p.url, exc)
                return None

        for bundle in await asyncio.gather(*(ask(p) for p in cands)):
            if bundle is None:
                continue
            try:
                async with self.enclave_lock:
                    await self.host.call("epoch_import", {"bundle": bundle, "replace": replace})
                    await self._refresh_status()
            except EnclaveError as exc:
                log.info("%s: epoch %d bundle refused by the enclave: %s", self.cfg.name, epoch, exc)
                continue
            log.info("%s: imported epoch %d keys%s", self.cfg.name, epoch, " (replacing a candidate)" if replace else "")
            await self._persist()
            return True
        return False

    async def _catch_up_epoch(self) -> None:
        """After a restart or a missed rotation: fetch the epochs L1 uses (and the grace window)."""
        if self.epoch is None or self.watcher is None:
            return
        target = self.l1_epoch()
        if self.epoch >= target:
            return
        grace = int(self.cfg.enclave.get("epoch_grace", 1))
        for e in range(max(self.epoch + 1, target - grace), target + 1):
            if e not in self.epochs_held:
                await self._fetch_epoch(e)

    async def _ensure_proposal_epoch(self, header: Header, proposer: str) -> None:
        """A voter: hold the keys of the epoch the proposal uses (fetched from its proposer when
        it rotated; a different candidate for an unanchored epoch is replaced by the proposal's)."""
        assert self.host is not None
        e = header.epoch
        if e < self.l1_epoch():
            raise Refused(f"proposal uses epoch {e}, older than epoch {self.l1_epoch()} on L1")
        if e in self.epochs_held and e <= self.l1_epoch():
            return
        held = await self.host.call("epochs")
        pub = (held.get("held") or {}).get(e)
        if pub is not None and bytes(pub) == header.epoch_key:
            return
        p = self.peer_for(proposer)
        ok = await self._fetch_epoch(e, replace=pub is not None, peers=[p] if p is not None else None)
        if not ok:
            raise Refused(f"this enclave does not hold the keys of epoch {e} that the proposal uses")

    async def _resubmit_vanished(self) -> None:
        """A header we submitted that L1 still lacks long after (its transaction was lost, e.g. in
        an L1 reorganisation shallower than ``confirmations``): submit it again."""
        t = self.l1_height + 1
        limit = 2 * self.cfg.proposer_timeout + 2.0
        for rec in list(self.records.values()):
            if rec.height == t and rec.submitted and time.monotonic() - rec.submitted_at > limit and self.qc_ready(rec):
                log.info("%s: header %d submitted %.1fs ago is not on L1: submitting it again", self.cfg.name, t,
                         time.monotonic() - rec.submitted_at)
                rec.submitted = False
                self.counters["resubmitted"] += 1
                if self.sender is not None:
                    with contextlib.suppress(ChainError):
                        await asyncio.get_running_loop().run_in_executor(self._tx_pool, self.sender.resync_nonce)
                self._spawn(self._submit(rec))

    async def _after_reorg(self, removed: list[int]) -> None:
        """An L1 reorganisation: follow L1's new height; headers this enclave finalised that are no
        longer on L1 are submitted again with their QC (same header, same L1 messages: nothing is
        lost or executed twice; if the reorganisation changed those messages, L1 refuses them and
        the committee waits: ``confirmations`` exists to make that unlikely)."""
        assert self.watcher is not None
        self.l1_height = self.watcher.height
        self.due_since = time.monotonic()
        if self.sender is not None:
            with contextlib.suppress(ChainError):
                await asyncio.get_running_loop().run_in_executor(self._tx_pool, self.sender.resync_nonce)
        if removed:
            log.warning("%s: L1 reorganisation removed accepted header(s) %s", self.cfg.name, removed)
        if self.finalized > self.watcher.height and not self._reanchoring:
            self._spawn(self._reanchor())

    async def _reanchor(self) -> None:
        assert self.watcher is not None
        self._reanchoring = True
        try:
            deadline = time.monotonic() + 120
            while not self._stopping.is_set() and self.watcher.height < self.finalized and time.monotonic() < deadline:
                h = self.watcher.height + 1
                acc = self.final_headers.get(h)
                if acc is None or self.sender is None:
                    log.warning("%s: cannot re-anchor height %d (no record or no L1 key)", self.cfg.name, h)
                    return
                digest = acc.header.signing_digest(self.cfg.l1_chain_id, self.cfg.rollup)
                args: list[Any] = [acc.header.as_tuple(), [(w.recipient, w.amount) for w in acc.withdrawals],
                                   qc_signatures(acc.signatures, digest)]
                rec = self.accepted_records.get(h)
                if self.daps.enabled and rec is not None:
                    with contextlib.suppress(DapError):
                        receipts = await self.daps.receipts_for(rec)
                        if receipts:
                            args.append(qc_signatures(receipts))
                fn = self.watcher.rollup.functions.submitHeader(*args)
                sender = self.sender
                try:
                    await asyncio.get_running_loop().run_in_executor(
                        self._tx_pool, functools.partial(sender.transact, fn, gas=2_000_000))
                    self.counters["reanchored"] += 1
                    log.info("%s: re-anchored header %d on L1 after the reorganisation", self.cfg.name, h)
                except TxReverted as exc:
                    log.info("%s: re-anchoring header %d: %s", self.cfg.name, h, exc)
                    with contextlib.suppress(ChainError):
                        await asyncio.get_running_loop().run_in_executor(self._tx_pool, sender.resync_nonce)
                    await asyncio.sleep(0.5)
                except ChainError as exc:
                    log.warning("%s: re-anchoring header %d failed: %s", self.cfg.name, h, exc)
                    await asyncio.sleep(0.5)
                await self._poll_soon()
        finally:
            self._reanchoring = False


def run_node(config_path: str) -> None:
    """Entry point of ``enclavenet node --config FILE`` (blocks until SIGINT/SIGTERM)."""
    cfg = NodeConfig.load(config_path)
    logging.basicConfig(
        level=getattr(logging, cfg.log_level.upper(), logging.INFO),
        format=f"%(asctime)s {cfg.name} %(levelname)s %(name)s: %(message)s",
    )
    node = Node(cfg)
    asyncio.run(node.run())
