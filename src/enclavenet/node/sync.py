"""Sync / catch-up: bring the enclave to every header accepted on L1, in height order.

For each accepted height: accept the enclave's own head, or fetch the batch (peers, then the
DAPs) and apply it (the proposer's state diff, else re-execution), rolling back a branch that
lost; after a restore from a sealed snapshot, skip ahead or resynchronise from a peer's sealed
snapshot of a final height. Also serves what peers need to catch up (``batch``, ``snapshot``),
keeps announced QC'd batches (``announce``) and the receipts of accepted ones.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from ..crypto.hashing import keccak256, to_checksum
from ..crypto.header import Header, Withdrawal, withdrawals_hash
from ..crypto.secp256k1 import SignatureError, recover_address
from ..enclave.batch import batch_data_items, unfunded_hash
from ..tee.boundary import EnclaveError
from .batch import (
    BatchRecord,
    Refused,
    record_from_wire,
    routing_hints,
    split_batch_data,
    wire_bytes,
)
from .core import NodeCore, Role
from .daps import record_inputs
from .l1watch import AcceptedHeader
from .logindex import LogIndex, meta_proof
from .peers import PeerError
from .receipts import ReceiptIndex
from .store import KEEP_FINAL

log = logging.getLogger("enclavenet.node.sync")

KEEP_RECORDS = 256  # accepted batches kept in memory for peers catching up


class Sync(Role):
    def __init__(self, node: NodeCore) -> None:
        super().__init__(node)
        self._batch_gone_since: dict[int, float] = {}  # accepted height -> when its batch was first missing

    async def process_accepted(self) -> None:
        """Bring the enclave to every header accepted on L1, in height order."""
        assert self.node.watcher is not None
        if self.node.daps.enabled and self.node.watcher.height - self.node.finalized >= 2:
            await self.node.daps.restore_snapshot()  # far behind: the newest accepted snapshot first
        while self.node.finalized < self.node.watcher.height and not self.node.stopping.is_set():
            h = self.node.finalized + 1
            acc = self.node.watcher.headers.get(h)
            if acc is None:
                return
            ok = await self._accept_one(acc)
            if not ok:
                return

    async def _accept_one(self, acc: AcceptedHeader) -> bool:
        assert self.node.host is not None
        h = acc.header.height
        jumped: list[int] = []
        async with self.node.enclave_lock:
            rec = self.node.records.get(acc.hash)
            try:
                done = False
                if self.node.head_height >= h and self.node.chain.get(h) in (acc.hash, None):
                    try:
                        await self.node.host.call(
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
                    if self.node.head_height >= h:
                        log.info("%s: lost the race at height %d: rolling back to %d and applying the winner",
                                 self.cfg.name, h, h - 1)
                        await self.node.host.call("rollback", {"height": h - 1})
                        self.node.mempool.release(h)
                    await self._apply_record(rec, acc)
                await self.node.refresh_status()
            except EnclaveError as exc:
                if "no longer knows" in str(exc) or "not kept" in str(exc):
                    # restored from a sealed snapshot past h: jump to the head if L1 agrees, else resync
                    with contextlib.suppress(EnclaveError):
                        jumped = await self._skip_ahead()
                if not jumped:
                    self.node.last_error = f"accept {h}: {exc}"
                    log.warning("%s: cannot bring the enclave to accepted header %d: %s", self.cfg.name, h, exc)
                    with contextlib.suppress(EnclaveError):
                        await self.node.refresh_status()
                    return False
        if jumped:
            for hh in jumped:
                a = self.node.watcher.headers[hh] if self.node.watcher else acc
                r = self.node.records.get(a.hash) or await self._fetch_record(hh, a.hash)
                self._on_finalized(a, r)
            await self.node.notify_head()
            return True
        if rec is None:
            rec = self.node.records.get(acc.hash)
        self._on_finalized(acc, rec)
        await self.node.notify_head()
        if self.cfg.persist == "accept":
            await self.node.persist()
        return True

    async def _skip_ahead(self) -> list[int]:
        """The enclave was restored past heights it can no longer check one by one (no pre-batch
        states in a sealed snapshot). If L1 accepted the enclave's own head, accept that (its hash
        chain covers the heights between); if L1 took another branch, restore the state from a
        peer's sealed (shared) snapshot at a final height. Returns the heights now final."""
        assert self.node.host is not None and self.node.watcher is not None
        start = self.node.finalized
        st = await self.node.refresh_status()
        acc = self.node.watcher.headers.get(self.node.head_height)
        if acc is not None and acc.hash == self.node.head_hash:
            await self.node.host.call("accept_header", {"header": acc.header.encode(), "signatures": acc.signatures})
            await self.node.refresh_status()
            log.info("%s: restored enclave: accepted its head at height %d directly", self.cfg.name, self.node.head_height)
        elif acc is not None or self.node.watcher.height >= int(st["height"]):
            if not await self._restore_from_peer():
                return []
        elif self.node.watcher.height > start:
            # L1 accepted a height between this enclave's finalised height and its tentative head
            # that it can no longer check one by one (the pre-batch states are not sealed). Waiting
            # for L1 to reach the tentative head can wait forever: such an enclave refuses to time
            # out the next height (its finalised height is behind L1), and with two such members
            # of four no timeout certificate forms (chaos seed 35: every node restarted). Take a
            # peer's snapshot of the accepted height instead (pinned by its QC'd header on L1);
            # the enclave's sign guard keeps what it signed above it.
            if not await self._restore_from_peer():
                return []
        else:
            return []  # the enclave's tentative head is ahead of L1, which accepted nothing new: wait
        return list(range(start + 1, self.node.finalized + 1))

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
        start = self.node.finalized
        if not await self._restore_from_peer():
            log.info("%s: batch of accepted height %d unavailable and no peer snapshot fits yet", self.cfg.name, h)
            return []
        self._batch_gone_since.clear()
        log.info("%s: batch of height %d unavailable: resynchronised to height %d from a peer's snapshot",
                 self.cfg.name, h, self.node.finalized)
        return list(range(start + 1, self.node.finalized + 1))

    async def _restore_from_peer(self) -> bool:
        assert self.node.host is not None and self.node.watcher is not None
        for p in self.node.peers:
            try:
                out = await p.call("snapshot", {}, timeout=60)
            except PeerError as exc:
                log.info("%s: no snapshot from %s: %s", self.cfg.name, p.url, exc)
                continue
            h = int(out["height"])
            acc = self.node.watcher.headers.get(h)
            if acc is None or acc.hash != bytes(out["head_hash"]):
                continue
            try:
                # a shared blob is restored against the accepted header and its QC (the enclave
                # requires the state to be that header's); the roots are compared with it again
                await self.node.host.call("restore", {"blob": bytes(out["shared"]), "header": acc.header.encode(),
                                                      "signatures": acc.signatures})
                st = await self.node.refresh_status()
            except EnclaveError as exc:
                log.warning("%s: restoring %s's snapshot failed: %s", self.cfg.name, p.url, exc)
                continue
            roots = (bytes(st["state_root"]), bytes(st["balances_root"]))
            if self.node.head_hash == acc.hash and roots == (acc.header.state_root, acc.header.balances_root):
                log.info("%s: enclave resynchronised from %s's sealed snapshot at height %d", self.cfg.name, p.url, h)
                self.node.my_sigs = {k: v for k, v in self.node.my_sigs.items() if k > h}
                return True
        return False

    async def on_snapshot(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A sealed (epoch state key) snapshot of a FINAL state, for a member that must resync."""
        assert self.node.host is not None
        async with self.node.enclave_lock:
            if self.node.head_height != self.node.finalized:
                raise Refused(f"this enclave has tentative heights above {self.node.finalized}; ask again later")
            out = await self.node.host.call("snapshot")
        return {"height": int(out["height"]), "head_hash": bytes(out["head_hash"]), "shared": bytes(out["shared"])}

    def _on_finalized(self, acc: AcceptedHeader, rec: BatchRecord | None) -> None:
        h = acc.header.height
        self.node.counters["accepted"] += 1
        self.node.final_headers[h] = acc
        for old in [x for x in self.node.final_headers if x <= h - KEEP_RECORDS]:
            del self.node.final_headers[old]
        if rec is not None:
            self.node.accepted_records[h] = rec
            for old in [x for x in self.node.accepted_records if x <= h - KEEP_RECORDS]:
                del self.node.accepted_records[old]
            self._store_receipts(acc, rec)
            rids = rec.rids()
            self.node.mempool.on_accepted(h, rids, routing_hints(rec.envelopes))
            self.node.admission.on_accepted(len(rids), len(self.node.mempool))
        else:
            self.node.mempool.on_accepted(h, [], [])
        # forget records at or below h, and those built on a branch that lost
        valid = {acc.hash}
        for r in sorted(self.node.records.values(), key=lambda r: r.height):
            if r.height <= h or r.header.prev_hash not in valid:
                del self.node.records[r.hash]
            else:
                valid.add(r.hash)
        for x in [x for x in self.node.my_sigs if x <= h]:
            del self.node.my_sigs[x]
        self.node.store.forget_signed(h - KEEP_FINAL)
        for x in [x for x in self.node.msg_seen if x < acc.header.msg_count]:
            del self.node.msg_seen[x]
        self.node.chain = {k: v for k, v in self.node.chain.items() if k >= h}

    def _store_receipts(self, acc: AcceptedHeader, rec: BatchRecord) -> None:
        try:
            meta, envelopes, entries = split_batch_data(rec.batch_data)
        except Exception as exc:
            log.warning("%s: batch data of height %d unreadable: %s", self.cfg.name, acc.header.height, exc)
            return
        assert self.node.watcher is not None
        if "next_base_fee" in meta:  # fees (docs/FEES.md), from the QC'd meta: every node, however it got the height
            bound = meta.get("unfunded_hash")
            ok = isinstance(bound, bytes) and rec.unfunded and unfunded_hash(rec.unfunded) == bound
            self.node.on_fees(acc.header.height, {**meta, "unfunded": rec.unfunded if ok else []})
        start = int(meta["msg_start"])
        count = int(meta["msg_count"]) - start
        payload_ids = []
        for i in range(start, start + count):
            m = self.node.watcher.messages.get(i)
            if m is not None and m.payload:
                payload_ids.append(keccak256(m.payload))
        ids = payload_ids + [keccak256(e) for e in envelopes]
        base = {
            "height": hex(acc.header.height),
            "headerHash": "0x" + acc.hash.hex(),
            "l1TxHash": acc.l1_tx,
            "l1BlockNumber": hex(acc.l1_block_number),
        }
        # kept as they are; the JSON-RPC form and Merkle proof (issue 14 M6) are built when asked
        if self.node.receipts.add(base, ids, entries):
            self.node.store.append_receipts(ReceiptIndex.frame(base, ids, entries))
        # the enclave's sealed log index of this height (enclavenet_getLogs); the node cannot read it
        # with the header, its QC and the meta's proof: the enclave trusts only a blob matching the
        # meta's logs_hash of a QC'd header (node/logindex.py)
        if rec.logs:
            meta_item, proof = meta_proof(batch_data_items(rec.batch_data))
            hdr, sigs = acc.header.encode(), list(acc.signatures)
            if self.node.log_index.add(acc.header.height, acc.hash, rec.logs, hdr, sigs, meta_item, proof):
                self.node.store.append_logs(
                    LogIndex.frame(acc.header.height, acc.hash, rec.logs, hdr, sigs, meta_item, proof))

    async def on_batch(self, msg: dict[str, Any]) -> dict[str, Any]:
        h = int(msg["height"])
        if msg.get("pending"):
            cands = [r for r in self.node.records.values() if r.height == h and r.proposer in r.sigs
                     and (msg.get("hash") is None or r.hash == msg.get("hash"))]
            if not cands:
                raise Refused(f"no proposal at height {h} here")
            r = max(cands, key=lambda r: len(r.sigs))
            return r.proposal(r.proposer, r.sigs[r.proposer])
        rec = self.node.accepted_records.get(h)
        if rec is None:
            want = msg.get("hash")
            for r in self.node.records.values():
                if r.height == h and (want is None or r.hash == want):
                    rec = r
                    break
        if rec is None:
            raise Refused(f"no batch at height {h} here")
        return rec.to_wire()

    async def _fetch_record(self, h: int, header_hash: bytes) -> BatchRecord | None:
        for p in self.node.peers:
            try:
                out = await p.call("batch", {"height": h, "hash": header_hash}, timeout=30)
                rec = record_from_wire(out)
            except (PeerError, ValueError, KeyError, TypeError) as exc:
                log.debug("%s: batch %d from %s: %s", self.cfg.name, h, p.url, exc)
                continue
            if rec.hash == header_hash:
                return rec
        return await self._fetch_record_from_daps(h, header_hash)

    async def _fetch_record_from_daps(self, h: int, header_hash: bytes) -> BatchRecord | None:
        """No peer has it (a new node, or every node restarted): the DAPs (node/daps.py)."""
        acc = self.node.watcher.headers.get(h) if self.node.watcher else None
        if not self.node.daps.enabled or acc is None or acc.hash != header_hash or self.node.watcher is None:
            return None
        b = await self.node.daps.fetch_batch(header_hash)
        if b is None:
            return None
        try:
            inp = record_inputs(b, self.node.watcher.messages)
            rec = record_from_wire({"input": inp, "header": b.header.encode(), "batch_data": b.batch_data,
                                          "withdrawals": [[w.recipient, w.amount] for w in acc.withdrawals]})
            log.info("%s: batch of accepted height %d from the DAPs", self.cfg.name, h)
            return rec
        except (KeyError, ValueError, TypeError) as exc:
            log.info("%s: DAP batch of height %d unusable yet: %s", self.cfg.name, h, exc)
            return None

    async def on_announce(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A QC'd batch this node's enclave is not asked to vote on: keep it (checked like a
        proposal, without re-execution) to apply its state diff when the header is on L1."""
        proposer = to_checksum(msg["proposer"])
        sigs = msg.get("sigs", [])
        if not isinstance(sigs, list):  # checked before the record is kept (a refusal changes nothing)
            raise Refused("announce: sigs must be a list of [signer, signature]")
        header_bytes = wire_bytes(msg["header"], "header")
        header = Header.decode(header_bytes)
        hh = header.hash()
        if header.height <= self.node.finalized:
            return {"stored": False}
        if proposer not in self.node.members():
            raise Refused(f"proposer {proposer} is not an active committee member")
        try:
            signer = recover_address(header.signing_digest(self.cfg.l1_chain_id, self.cfg.rollup), wire_bytes(msg["signature"], "signature"))
        except SignatureError as exc:
            raise Refused(f"announced header signature invalid: {exc}") from None
        if signer != proposer:
            raise Refused("announced header is not signed by the proposer's enclave")
        rec = self.node.records.get(hh)
        if rec is None:
            rec = record_from_wire(msg)
            ws = [Withdrawal(to_checksum(w[0]), int(w[1])) for w in rec.withdrawals]
            if withdrawals_hash(ws) != header.withdrawals_hash:
                raise Refused("announced withdrawals do not match the header's withdrawals_hash")
            rec.proposer = proposer
            rec.sigs[proposer] = wire_bytes(msg["signature"], "signature")
            self.node.records[hh] = rec
        else:
            if not rec.diff and isinstance(msg.get("diff"), bytes):
                rec.diff = bytes(msg["diff"])
            if not rec.logs and isinstance(msg.get("logs"), bytes):
                rec.logs = bytes(msg["logs"])
        for item in sigs[:64]:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                self.node.add_sig(rec, to_checksum(item[0]), wire_bytes(item[1], "signature"))
        self.node.mempool.mark_inflight(rec.rids(), header.height)
        return {"stored": True}

    async def _apply_record(self, rec: BatchRecord, acc: AcceptedHeader) -> None:
        """Bring the enclave (head at h-1) to the accepted header h: its state diff if the record
        has one (no re-execution), else -- or if the enclave refuses the diff -- re-execution.
        Called with the enclave lock held."""
        assert self.node.host is not None
        base = {"header": rec.header_bytes, "signatures": acc.signatures}
        if rec.diff:
            try:
                await self.node.host.call("apply_batch", {**base, "diff": rec.diff, "batch_data": rec.batch_data})
                log.debug("%s: applied the state diff of height %d", self.cfg.name, rec.height)
                self.node.counters["applied_diff"] = self.node.counters.get("applied_diff", 0) + 1
                return
            except EnclaveError as exc:
                log.warning("%s: state diff of height %d refused (%s); re-executing it", self.cfg.name, rec.height, exc)
        await self.node.host.call("apply_batch", {**rec.input, "envelopes": rec.envelopes, **base})
        self.node.counters["applied_reexec"] = self.node.counters.get("applied_reexec", 0) + 1
