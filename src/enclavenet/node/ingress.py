"""Ingress: transactions into the committee (``eth_sendRawTransaction``, peers' ``txs``).

Admits envelopes to the mempool, logs them to ``pending.log`` (node/store.py) before they are
forwarded, forwards bursts to every peer (one task per peer: a silent one delays nobody), and
re-offers the logged ones after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import cbor2

from ..crypto.hashing import keccak256
from .core import NodeCore, Role
from .mempool import MempoolError
from .peers import PeerClient, PeerError

log = logging.getLogger("enclavenet.node.ingress")


class Ingress(Role):
    def __init__(self, node: NodeCore) -> None:
        super().__init__(node)
        self._buf: list[bytes] = []
        self._event = asyncio.Event()

    async def on_txs(self, msg: dict[str, Any]) -> dict[str, Any]:
        added = 0
        epochs = self.node.accepted_epochs()
        for raw in msg.get("envelopes", []):
            if not isinstance(raw, bytes):
                continue
            try:
                self.node.mempool.add(raw, epochs=epochs)
                added += 1
            except MempoolError:
                continue
        if added:
            self.node.work.set()
        return {"added": added}

    def submit_envelope(self, raw: bytes, origin: str = "") -> bytes:
        """eth_sendRawTransaction: admit to the mempool and forward to the committee. ``origin``:
        the JSON-RPC client (IP), whose share of the mempool is bounded (issue 14 M4)."""
        e = self.node.mempool.add(raw, epochs=self.node.accepted_epochs(), origin=origin)
        self._buf.append(raw)
        self._event.set()
        self.node.work.set()
        return e.receipt_id

    async def run(self) -> None:
        while not self.node.stopping.is_set():
            await self._event.wait()
            self._event.clear()
            await asyncio.sleep(0.005)  # gather a burst into one message
            buf, self._buf = self._buf, []
            if not buf:
                continue
            self.log_pending(buf)
            data = cbor2.dumps({"envelopes": buf})
            for p in self.node.peers:  # one task per peer: a silent peer delays nobody
                if p.inflight_forwards < 16:  # a peer that stopped answering is skipped (we keep the txs)
                    self.node.spawn(self._forward_to(p, data))

    async def _forward_to(self, p: PeerClient, data: bytes) -> None:
        p.inflight_forwards += 1
        try:
            await p.call_raw("txs", data, timeout=10)
        except PeerError as exc:
            log.debug("%s: forward to %s failed: %s", self.cfg.name, p.url, exc)
        finally:
            p.inflight_forwards -= 1

    def log_pending(self, envelopes: list[bytes]) -> None:
        """Append acknowledged envelopes to ``data_dir/pending.log``: a node restarted (even with
        every other node) offers them again until they are included."""
        try:
            self.node.store.append_pending(envelopes)
        except OSError as exc:
            log.warning("%s: pending transactions not persisted: %s", self.cfg.name, exc)

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
