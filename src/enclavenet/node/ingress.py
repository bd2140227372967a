"""Ingress: transactions into the committee (``eth_sendRawTransaction``, peers' ``txs``).

Admits envelopes to the mempool, logs them to ``pending.log`` (node/store.py) before they are
acknowledged or forwarded, forwards bursts to every peer (one task per peer: a silent one delays
nobody), and re-offers the logged ones after a restart.

Acknowledged means durable: ``eth_sendRawTransaction`` returns the receipt id only once the
envelope is appended to ``pending.log`` and fsynced. One writer (node/groupcommit.py) appends
everything submitted while its previous fsync ran in one frame and fsyncs once, in a thread, so
the event loop keeps serving; a failed write answers each of its submissions with an error
(-32006) and takes the envelope out of the mempool. Envelopes from peers (``txs``) are not
logged: this node acknowledged them to nobody (the peer that did has them on its disk).

Routing hints (node/hintauth.py) are checked once, where an envelope enters the committee: by
the JSON-RPC method (api.py) and here for a ``txs`` forward that no active member signed. A
burst is signed once, for every member, by a key our enclave delegated to this host for a few
minutes (``peerauth.TxsSigner``: no ecall per burst), and a member receiving it believes the
ingress's check, and the
fairness groups that travel with the envelopes (node/mempool.py). Replaying a signed burst
only offers the same, already checked envelopes again (duplicates are refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

import cbor2

from ..crypto.hashing import keccak256
from ..tee.boundary import EnclaveError
from .core import NodeCore, Role
from .groupcommit import GroupCommit
from .hintauth import HintAuthError
from .mempool import MempoolError
from .peerauth import TxsSigner
from .peers import PeerClient, PeerError

log = logging.getLogger("enclavenet.node.ingress")


class NotPersisted(Exception):
    """The envelope could not be written to ``pending.log``: it was not acknowledged."""


class Ingress(Role):
    def __init__(self, node: NodeCore) -> None:
        super().__init__(node)
        self._buf: list[bytes] = []  # logged, to forward
        self._groups: dict[bytes, str] = {}  # envelope -> its fairness group, until forwarded
        self._signer = TxsSigner()
        self.forwards = {"forwardsTrusted": 0, "forwardsChecked": 0}  # txs bursts signed by a member / not
        self._event = asyncio.Event()
        self.pending_log: GroupCommit[bytes] = GroupCommit(self.log_pending, on_written=self._forward)

    async def on_txs(self, msg: dict[str, Any], *, trusted: bool = False, remote: str = "") -> dict[str, Any]:
        """A peer's forward. ``trusted``: signed by an active member (its ingress checked the hints
        and its fairness groups are believed); otherwise every hint is checked here and the
        envelopes form one group per forwarding address ``remote``."""
        added = refused = 0
        epochs = self.node.accepted_epochs()
        envs = msg.get("envelopes", [])
        groups = msg.get("groups") if trusted else None
        if not isinstance(envs, list):
            return {"added": 0}
        if not isinstance(groups, list) or len(groups) != len(envs):
            groups = None
        fallback = "" if trusted else "peer:" + self.node.fair_group(remote)
        self.forwards["forwardsTrusted" if trusted else "forwardsChecked"] += 1
        for k, raw in enumerate(envs):
            if not isinstance(raw, bytes):
                continue
            if not trusted:
                try:
                    self.node.hint_verifier.check(raw)
                except HintAuthError:
                    refused += 1
                    continue
            g = groups[k] if groups is not None else fallback
            try:
                self.node.mempool.add(raw, epochs=epochs, group=g if isinstance(g, str) else fallback)
                added += 1
            except MempoolError:
                continue
        if refused:
            log.debug("%s: %d forwarded envelopes with unauthenticated hints refused", self.cfg.name, refused)
        if added:
            self.node.work.set()
        return {"added": added}

    def submit_envelope(self, raw: bytes, origin: str = "") -> Awaitable[bytes]:
        """eth_sendRawTransaction: admit to the mempool now (raises MempoolError), then the
        returned awaitable gives the receipt id once the envelope is on disk (raises
        NotPersisted if the write failed); it is forwarded to the committee after that.
        ``origin``: the JSON-RPC client (IP), whose share of the mempool is bounded (issue 14 M4)."""
        group = self.node.fair_group(origin)
        e = self.node.mempool.add(raw, epochs=self.node.accepted_epochs(), origin=origin, group=group)
        self._groups[raw] = group
        self.node.work.set()
        return self._acknowledge(e.receipt_id, raw, self.pending_log.submit(raw))

    async def _acknowledge(self, rid: bytes, raw: bytes, logged: asyncio.Future[None]) -> bytes:
        try:
            await logged
        except OSError as exc:
            self.node.mempool.remove(rid)
            self._groups.pop(raw, None)
            log.warning("%s: transaction 0x%s not acknowledged: pending.log write failed: %s", self.cfg.name,
                        rid.hex(), exc)
            raise NotPersisted(f"the node could not write the transaction to its disk ({exc.strerror or exc}); "
                               "it was not acknowledged: retry (here or at another node)") from None
        return rid

    def _forward(self, logged: list[bytes]) -> None:
        """On disk: forward to the committee (even if the client stopped waiting for its answer)."""
        self._buf.extend(logged)
        self._event.set()

    async def run(self) -> None:
        while not self.node.stopping.is_set():
            await self._event.wait()
            self._event.clear()
            await asyncio.sleep(0.005)  # gather a burst into one message
            buf, self._buf = self._buf, []
            if not buf:
                continue
            groups = [self._groups.pop(e, "") for e in buf]
            data = cbor2.dumps({"envelopes": buf, "groups": groups})
            auth = None
            if self.node.host is not None and self.node.peers:
                try:  # once per burst, for every member, without an ecall (node/peerauth.py)
                    auth = await self._signer.header(self.node, data)
                except (EnclaveError, PeerError, OSError) as exc:
                    log.debug("%s: forward not signed (%s): members check its hints", self.cfg.name, exc)
            for p in self.node.peers:  # one task per peer: a silent peer delays nobody
                if p.inflight_forwards < 16:  # a peer that stopped answering is skipped (we keep the txs)
                    self.node.spawn(self._forward_to(p, data, auth))

    async def _forward_to(self, p: PeerClient, data: bytes, auth: str | None = None) -> None:
        p.inflight_forwards += 1
        try:
            await p.call_raw("txs", data, timeout=10, auth=auth)
        except PeerError as exc:
            log.debug("%s: forward to %s failed: %s", self.cfg.name, p.url, exc)
        finally:
            p.inflight_forwards -= 1

    def log_pending(self, envelopes: list[bytes]) -> None:
        """Append envelopes to ``data_dir/pending.log``, fsynced (blocking; the group commit runs
        it in a thread): a node restarted (even with every other node) offers them again until
        they are included. Raises OSError."""
        self.node.store.append_pending(envelopes)

    def reload_pending(self) -> None:
        """At start (epoch known): re-admit logged envelopes without a receipt; compact the log
        (atomically: a crash mid-way keeps the old log whole)."""
        logged = self.node.store.read_pending()
        if logged is None:
            return
        keep = [e for e in logged if keccak256(e) not in self.node.receipts]
        added = 0
        for e in keep:
            with contextlib.suppress(MempoolError):
                self.node.mempool.add(e, epochs=None)
                added += 1
        try:
            self.node.store.compact_pending(keep)
        except OSError as exc:  # the old log stays: it holds every entry of keep (and more)
            log.warning("%s: pending.log not compacted: %s", self.cfg.name, exc)
        if keep:
            self._buf.extend(keep)
            self._event.set()
        log.info("%s: %d pending transactions offered again after the restart", self.cfg.name, added)
