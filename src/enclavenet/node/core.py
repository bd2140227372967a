"""The state a node's roles share, and the small helpers every role uses (docs/NODE.md map).

Nothing here runs a loop or talks to peers: it is the host's view of its own enclave (head,
what it signed, the batches it holds), of L1 (through the watcher) and of the committee.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ..chain.errors import ChainError
from ..chain.sender import TxSender
from ..crypto.messages import L1Message
from ..crypto.secp256k1 import SignatureError, recover_address
from ..enclave.views import ViewDomain
from ..tee.boundary import EnclaveError
from .admission import Admission
from .batch import BatchRecord, record_from_wire
from .config import NodeConfig
from .daps import NodeDaps
from .hintauth import HintVerifier
from .host import EnclaveHost
from .jsonrpc import JsonRpcServer
from .l1watch import AcceptedHeader, L1Watcher
from .logindex import LogIndex
from .mempool import Mempool
from .metrics import NodeMetrics
from .peers import LinkFaults, PeerClient
from .receipts import ReceiptIndex
from .store import KEEP_FINAL, NodeStore
from .timeouts import TimeoutPolicy

log = logging.getLogger("enclavenet.node")


def qc_complete(signers: list[str], types: dict[str, int], quorum: int, min_types: int) -> bool:
    """Enough active members' signatures (``quorum``; ``types``: active member -> TEE type)
    spanning at least ``min_types`` TEE types: what Rollup.submitHeader accepts as a QC."""
    valid = [a for a in signers if a in types]
    return len(valid) >= quorum and len({types[a] for a in valid}) >= min_types


@dataclass
class L1Faults:
    """A hostile host's (or a broken RPC provider's) policy for this node's L1 link (docs/FAULTS.md,
    admin RPC ``enclavenet_adminFaults {"l1": ...}``, only with ``allow_faults``): every L1 read
    and write fails until ``down_until`` (time.monotonic()); ``hold_submits``: the node collects
    QCs but never sends ``submitHeader`` (a host sitting on its QCs)."""

    down_until: float = 0.0
    hold_submits: bool = False
    injected: dict[str, int] = field(default_factory=lambda: {"down": 0, "held": 0})

    @classmethod
    def from_dict(cls, d: dict[str, Any], old: L1Faults | None = None) -> L1Faults:
        """Parse an admin request (``{down_s?, hold_submits?}``); ValueError names the bad field."""
        if not isinstance(d, dict):
            raise ValueError("an L1 fault policy is an object {down_s?, hold_submits?}")
        unknown = sorted(set(d) - {"down_s", "hold_submits"})
        if unknown:
            raise ValueError(f"unknown L1 fault field(s): {', '.join(unknown)}")
        down = d.get("down_s", 0.0)
        if not isinstance(down, int | float) or isinstance(down, bool) or not 0.0 <= down <= 120.0:
            raise ValueError("L1 fault 'down_s' must be a number of seconds in [0, 120]")
        hold = d.get("hold_submits", False)
        if not isinstance(hold, bool):
            raise ValueError("L1 fault 'hold_submits' must be true or false")
        out = cls(down_until=time.monotonic() + float(down) if down else 0.0, hold_submits=hold)
        if old is not None:
            out.injected = old.injected
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"down_s": round(max(0.0, self.down_until - time.monotonic()), 3), "hold_submits": self.hold_submits,
                "injected": dict(self.injected)}

    def check(self) -> None:
        """Raise ChainError while the L1 is 'down'."""
        if time.monotonic() < self.down_until:
            self.injected["down"] += 1
            raise ChainError("the L1 RPC is unavailable (fault injection)")


class NodeCore:
    """The state every role of a node shares: configuration, the enclave host, the L1 watcher,
    the peers, the mempool, and the host's view of its enclave's chain (head, what it signed,
    the batches it holds). The roles (committee, sync, epochs, ingress, L1 link) read and
    update it; ``Node`` (node.py) composes them."""

    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        self.host: EnclaveHost | None = None
        self.data_dir = Path(cfg.data_dir)
        self.store = NodeStore(self.data_dir, cfg.name)
        self.mempool = Mempool(
            max_total=cfg.mempool_max_total, max_per_sender=cfg.mempool_max_per_sender,
            max_per_origin=cfg.mempool_max_per_origin or None,
        )
        # routing-hint authentication at admission (node/hintauth.py); fairness groups: the
        # client (IP) behind each envelope, as a keyed hash that travels with forwarded envelopes
        self.hint_verifier = HintVerifier(cfg.chain_id, ViewDomain(cfg.chain_id, cfg.l1_chain_id, cfg.rollup))
        self._group_key = os.urandom(16)
        self.admission = Admission(queue_s=cfg.admission_queue_s, min_batches=cfg.admission_min_batches,
                                   batch_size=lambda: cfg.batch_size)  # node/admission.py
        self.rpc = JsonRpcServer(name=cfg.name, max_body=cfg.max_body)
        self.address = ""
        self.tee_type = 0
        self.quote = b""
        self.enc_pub = b""
        self.quotes: dict[str, bytes] = {}  # member address -> quote bytes (verified by the enclave)
        self.peers: list[PeerClient] = []
        self.session: aiohttp.ClientSession | None = None
        self.watcher: L1Watcher | None = None
        self.sender: TxSender | None = None
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
        self.accepted_records: dict[int, BatchRecord] = {}
        self.receipts = ReceiptIndex()  # node/receipts.py
        self.log_index = LogIndex()  # node/logindex.py: the enclave's sealed log blobs per height
        self.l1_height = 0
        # fees (enclave/fees.py, docs/FEES.md), from the enclave's batch outputs: the next batch's
        # base fee and the base fee of each recent height (eth_gasPrice, eth_feeHistory)
        self.base_fee = 0
        self.fee_history: OrderedDict[int, int] = OrderedDict()
        self.due_since = time.monotonic()
        self.work_since: float | None = None
        self.msg_seen: dict[int, float] = {}  # first time a pending message's block was confirmed
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task[Any]] = []
        self.work = asyncio.Event()  # wakes the proposer loop
        self.timeouts = TimeoutPolicy(cfg.proposer_timeout)  # proposer timeout: own stalls left out, adaptive
        self.port = cfg.rpc_port
        self.started = time.time()
        self.ready = False
        self.last_error = ""
        self.last_gas = 0
        self.metrics: NodeMetrics | None = None  # Prometheus /metrics (node/metrics.py), installed by api.py
        self.rate_limiters: dict[str, Any] = {}  # api.py: public JSON-RPC limits (issue 14 M4)
        self.counters: dict[str, int] = {"proposed": 0, "voted": 0, "submitted": 0, "accepted": 0, "takeovers": 0,
                                         "rotations": 0, "reanchored": 0, "resubmitted": 0}
        # faults, epochs and reorgs (docs/FAULTS.md)
        self.link_faults = LinkFaults()  # a hostile host's policy for peer messages (admin RPC)
        self.l1_faults = L1Faults()  # ... and for its L1 link
        self.frozen = False
        self.final_headers: dict[int, AcceptedHeader] = {}  # QC'd headers this enclave finalised
        self.enc_pubs: dict[str, bytes] = {}  # member address -> attested X25519 key (from identity)
        self.daps = NodeDaps(self)  # data availability providers (node/daps.py); off without dap_manager

    def fair_group(self, ip: str) -> str:
        """The fairness group of a JSON-RPC client: a keyed hash of its IP (peers learn no IP)."""
        return hmac.new(self._group_key, ip.encode(), hashlib.sha256).hexdigest()[:16] if ip else ""

    @property
    def url(self) -> str:
        return f"http://{self.cfg.rpc_host}:{self.port}"

    def members(self) -> list[str]:
        return [m.address for m in self.watcher.active_members()] if self.watcher else []

    def member_types(self) -> dict[str, int]:
        return {m.address: m.tee_type for m in self.watcher.active_members()} if self.watcher else {}

    async def refresh_status(self) -> dict[str, Any]:
        assert self.host is not None
        st = await self.host.call("status")
        self.set_head(st)
        return st

    def set_head(self, st: dict[str, Any]) -> None:
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

    def on_fees(self, height: int, fees: Any) -> None:
        """A batch's public fee facts (execute_batch / verify_batch ``fees``, present when fees
        are on): remember the base fees; stop admitting senders that could not pay."""
        if not isinstance(fees, dict):
            return
        self.base_fee = int(fees.get("next_base_fee", 0))
        self.fee_history[height] = int(fees.get("base_fee", 0))
        self.fee_history.move_to_end(height)
        while len(self.fee_history) > 1024:
            self.fee_history.popitem(last=False)
        unfunded = [bytes(x) for x in fees.get("unfunded", []) if isinstance(x, bytes) and len(x) == 20]
        if unfunded:
            self.mempool.refuse_unfunded(unfunded)

    async def notify_head(self) -> None:
        async with self.head_changed:
            self.head_changed.notify_all()

    async def persist(self, *, force: bool = True) -> None:
        """Keep the enclave's newest sealed local snapshot (identity, keys, never-sign-twice record)."""
        if self.cfg.persist == "none" or self.host is None or self.epoch is None:
            return
        try:
            snap = await self.host.call("snapshot")
        except EnclaveError as exc:
            log.debug("snapshot failed: %s", exc)
            return
        self.store.write_sealed(bytes(snap["local"]))

    def persist_signed(self, rec: BatchRecord, my_sig: bytes) -> None:
        """Keep a batch this enclave just signed (above its finalised height) on disk before the
        signature leaves the host (node/store.py ``signed/``): after a restart of every node it
        is still there to re-serve the vote and re-collect the QC."""
        if self.cfg.persist == "none":
            return
        self.store.save_signed(rec.height, rec.hash, {
            **rec.to_wire(), "proposer": rec.proposer, "sigs": [[a, s] for a, s in rec.sigs.items()], "mine": my_sig,
        })

    def load_signed(self) -> int:
        """At start: the batches this enclave signed above its finalised height, back into
        ``records`` and ``my_sigs``. Returns how many."""
        n = 0
        for obj in self.store.load_signed(max(0, self.finalized - KEEP_FINAL)):
            try:
                rec = record_from_wire(obj)
                rec.proposer = str(obj["proposer"])
                rec.sigs = {str(a): bytes(sig) for a, sig in obj.get("sigs", [])}
                mine = bytes(obj["mine"])
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("%s: a saved signed batch is unusable: %s", self.cfg.name, exc)
                continue
            rec.sigs[self.address] = mine
            self.records[rec.hash] = rec  # (final ones too: sync moves them to accepted_records, peers fetch them)
            if rec.height > self.finalized:
                self.my_sigs[rec.height] = (rec.hash, mine)
                n += 1
        return n

    def peer_for(self, address: str) -> PeerClient | None:
        for p in self.peers:
            if p.address == address:
                return p
        return None

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

    def spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self.tasks.append(t)
        t.add_done_callback(lambda t: self.tasks.remove(t) if t in self.tasks else None)

    def qc_ready(self, rec: BatchRecord) -> bool:
        """The record's signatures form a QC (quorum of active members spanning min_types types)."""
        assert self.watcher is not None
        return qc_complete(list(rec.sigs), self.member_types(), self.watcher.quorum, self.watcher.min_types)

    def add_sig(self, rec: BatchRecord, signer: str, sig: bytes) -> None:
        if signer not in self.member_types():
            return
        try:
            if recover_address(rec.header.signing_digest(self.cfg.l1_chain_id, self.cfg.rollup), sig) == signer:
                rec.sigs[signer] = sig
        except SignatureError:
            return

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


class Role:
    """One role of the node (committee, sync, epochs, ingress, L1 link): a unit with its own
    loop or peer handlers over the shared ``NodeCore``."""

    def __init__(self, node: NodeCore) -> None:
        self.node = node
        self.cfg = node.cfg
