"""The committee protocol: propose, vote, assemble the QC, move a stalled height to its next round.

* proposer(h, round 0) = ``members[(h // proposer_run) % n]`` (only it: a round-0 proposal by
  anyone else is refused); a voter re-executes a proposal (``verify_batch``) and signs only an
  identical header, at most one per (height, round) on one parent (the enclave enforces it).
* the proposer asks the fewest voters that complete the QC (rotation order, missing TEE types
  first), announces the batch with its QC to the rest, and submits it through the L1 link.
* rounds (``viewchange.py``): when the next height stays unaccepted for a round's timeout,
  members sign timeout votes; a TC opens the next round, whose proposer (the next member)
  re-proposes the header the TC forces or cuts its own batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import cbor2

from ..crypto.hashing import to_checksum
from ..crypto.header import Header, Withdrawal, withdrawals_hash
from ..crypto.secp256k1 import SignatureError, recover_address
from ..tee.boundary import EnclaveError
from .batch import (
    BatchRecord,
    Refused,
    msg_to_wire,
    record_from_wire,
    wire_bytes,
)
from .core import NodeCore, Role, qc_complete
from .epochs import Epochs
from .inputs import proposal_timestamp, timestamp_refusal, whole_blocks_refusal
from .l1 import L1Link
from .peers import PeerError
from .viewchange import ViewChange

log = logging.getLogger("enclavenet.node.committee")


# ---------------------------------------------------------------------- the rules (pure)
# The decisions of the protocol as functions of their inputs, testable without a node, an enclave
# or a clock (tests/unit/test_committee_rules.py). The Committee below feeds them live values.


def first_voters(have: list[str], candidates: list[str], types: dict[str, int], quorum: int,
                 min_types: int) -> list[str]:
    """The fewest voters, in rotation order after the proposer (the next proposers first: they
    need the batch anyway), whose signatures complete the QC with those already ``have``. While
    TEE types are missing, the first candidate that adds one. The others get the proposal once
    the QC is complete: their re-execution is off the critical path."""
    signed = [a for a in have if a in types]
    chosen: list[str] = []
    left = [a for a in candidates if a in types]
    while left and not qc_complete(signed + chosen, types, quorum, min_types):
        kinds = {types[x] for x in signed + chosen}
        pick = next((a for a in left if types[a] not in kinds), left[0]) if len(kinds) < min_types else left[0]
        chosen.append(pick)
        left.remove(pick)
    return chosen


class Committee(Role):
    def __init__(self, node: NodeCore, epochs: Epochs, l1: L1Link) -> None:
        super().__init__(node)
        self.epochs = epochs
        self.l1 = l1
        self.view = ViewChange(self)  # rounds / view change (node/viewchange.py)

    def proposer_slot(self, h: int) -> int:
        """The primary proposer of height h is ``members[slot % n]``: each member proposes
        ``proposer_run`` consecutive heights (1: round robin), so a proposer that just executed h
        executes h+1 at once instead of first waiting to verify someone else's batch."""
        return h // self.cfg.proposer_run

    def primary(self, h: int) -> str | None:
        """The round-0 proposer of height h (later rounds: ``ViewChange``)."""
        members = self.node.members()
        return members[self.proposer_slot(h) % len(members)] if members else None

    async def on_propose(self, msg: dict[str, Any], *, takeover: bool = False) -> dict[str, Any]:
        assert self.node.host is not None and self.node.watcher is not None
        proposer = to_checksum(msg["proposer"])
        header_bytes = wire_bytes(msg["header"], "header")
        header = Header.decode(header_bytes)
        h = header.height
        hh = header.hash()
        if h <= self.node.finalized:
            raise Refused(f"height {h} is already final here (finalized {self.node.finalized})")
        if self.node.frozen:
            raise Refused("the Rollup is frozen: no more headers")
        round_ = int(msg.get("round") or 0)
        cached = self.node.my_sigs.get(h)
        if cached is not None and cached[0] == hh:
            return {"signature": cached[1], "signer": self.node.address}
        if round_ == 0 and self._signed_other(h, hh, header.prev_hash):
            raise Refused(f"this enclave already signed a different header at height {h}")
        # 1. cheap checks first (bound the work a bad proposal costs)
        if proposer not in self.node.members():
            raise Refused(f"proposer {proposer} is not an active committee member")
        if round_ > 0 and not takeover:  # a later round: its proposer, with the TC of the round before
            why = self.view.check_proposal(header, proposer, round_, msg.get("tc"))
            if why is not None:
                raise Refused(why)
        elif round_ == 0 and not takeover and proposer != self.primary(h):
            raise Refused(f"{proposer} is not the proposer of height {h} in round 0")
        try:
            signer = recover_address(header.signing_digest(self.cfg.l1_chain_id, self.cfg.rollup), wire_bytes(msg["signature"], "signature"))
        except SignatureError as exc:
            raise Refused(f"proposal signature invalid: {exc}") from None
        if signer != proposer:
            raise Refused("proposal header is not signed by the proposer's enclave")
        rec = record_from_wire(msg)
        if withdrawals_hash([Withdrawal(to_checksum(w[0]), int(w[1])) for w in rec.withdrawals]) != header.withdrawals_hash:
            raise Refused("proposal withdrawals do not match the header's withdrawals_hash")
        rec.proposer = proposer
        rec.sigs[proposer] = wire_bytes(msg["signature"], "signature")
        for item in msg.get("sigs", [])[:64]:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                self.node.add_sig(rec, to_checksum(item[0]), wire_bytes(item[1], "signature"))
        # 2. the L1 messages must be the ones this node sees on L1; the epoch keys must be here
        await self._check_messages(rec)
        l1_time = await self.l1.block_time(int(rec.input["l1_block"]))
        await self.epochs.ensure_proposal_epoch(header, proposer)
        # 3. wait for our enclave to reach the proposal's parent
        await self._wait_for_parent(h, header.prev_hash)
        async with self.node.enclave_lock:
            cached = self.node.my_sigs.get(h)
            if cached is not None:
                if cached[0] == hh:
                    return {"signature": cached[1], "signer": self.node.address}
                if round_ == 0 and self._signed_other(h, hh, header.prev_hash):
                    raise Refused(f"this enclave already signed a different header at height {h}")
            if round_ > 0:
                await self.view.prepare(h, hh)  # drop an earlier round's header at h
            if (self.node.head_height, self.node.head_hash) not in ((h - 1, header.prev_hash), (h, hh)):
                raise Refused(f"proposal for height {h} does not extend this enclave's head at {self.node.head_height}")
            why = timestamp_refusal(int(rec.input["timestamp"]), self.node.head_timestamp, time.time(), l1_time)
            if why is not None:  # issue 14 M1: the proposer's clock is not the chain's
                raise Refused(why)
            payload = {**rec.input, "envelopes": rec.envelopes, "header": header_bytes}
            if round_ > 0:
                payload["round"], payload["tc"] = round_, msg.get("tc")
                rec.round, rec.tc = round_, msg.get("tc")
            t_v = time.monotonic()
            out = await self.node.host.call("verify_batch", payload)
            self.node.on_fees(h, out.get("fees"))
            log.debug("%s: voted height %d (%.0f ms in the enclave)", self.cfg.name, h, 1000 * (time.monotonic() - t_v))
            sig = bytes(out["signature"])
            self.node.my_sigs[h] = (hh, sig)
            self.node.chain[h] = hh
            self.node.head_height, self.node.head_hash = h, hh
            self.node.head_msg_count = header.msg_count
            self.node.head_l1_block = header.l1_block
            self.node.head_timestamp = int(rec.input["timestamp"])
            if self.cfg.persist == "sign":
                await self.node.persist()
            self.node.persist_signed(rec, sig)  # before the vote leaves: it survives a restart of everyone
        rec.sigs[self.node.address] = sig
        self.node.records.setdefault(hh, rec)
        self.node.mempool.mark_inflight(rec.rids(), h)
        self.node.counters["voted"] += 1
        await self.node.notify_head()
        self.node.work.set()
        return {"signature": sig, "signer": self.node.address}

    def _signed_other(self, h: int, hh: bytes, prev: bytes) -> bool:
        """This enclave signed a header other than ``hh`` at h on the parent ``prev`` (or on a
        parent we no longer know): the enclave refuses a second one there in round 0. One on
        another parent (a header at h - 1 that lost) does not count (enclave/guard.py)."""
        cached = self.node.my_sigs.get(h)
        if cached is None or cached[0] == hh:
            return False
        rec = self.node.records.get(cached[0])
        return rec is None or rec.header.prev_hash == prev

    async def _check_messages(self, rec: BatchRecord) -> None:
        assert self.node.watcher is not None
        msgs = rec.input.get("messages", [])
        l1_block = int(rec.input["l1_block"])
        deadline = time.monotonic() + max(2.0, self.cfg.proposer_timeout)
        while self.node.watcher.confirmed_block() < l1_block:
            if time.monotonic() > deadline:
                raise Refused(f"L1 block {l1_block} is not confirmed here yet")
            await asyncio.sleep(self.cfg.l1_poll_interval)
        for m in msgs:
            idx = int(m[0])
            mine = self.node.watcher.messages.get(idx)
            if mine is None or msg_to_wire(mine) != [idx, int(m[1]), to_checksum(m[2]), int(m[3]), int(m[4]), bytes(m[5])]:
                raise Refused(f"L1 message {idx} in the proposal differs from what this node sees on L1")
        # whole blocks: no message of a block <= l1_block may be left out -- also when the
        # proposal has no message at all (issue 14 H5: node/inputs.py)
        nxt = rec.header.msg_count
        why = whole_blocks_refusal(nxt, l1_block, self.node.watcher.messages.get(nxt))
        if why is not None:
            raise Refused(why)

    async def _wait_for_parent(self, h: int, prev_hash: bytes) -> None:
        deadline = time.monotonic() + max(5.0, 2 * self.cfg.proposer_timeout)
        async with self.node.head_changed:
            while not (self.node.head_height >= h - 1 and self.node.chain.get(h - 1) == prev_hash):
                if self.node.head_height >= h - 1 and h - 1 <= self.node.finalized and self.node.chain.get(h - 1) not in (None, prev_hash):
                    raise Refused(f"proposal for height {h} does not extend the accepted header at {h - 1}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Refused(f"this node has not reached height {h - 1} (head {self.node.head_height})")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.node.head_changed.wait(), timeout=min(remaining, 0.25))

    async def run(self) -> None:
        while not self.node.stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.node.work.wait(), timeout=0.02)
            self.node.work.clear()
            try:
                await self._maybe_takeover()
                await self._maybe_propose()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.node.last_error = f"proposer: {type(exc).__name__}: {exc}"
                log.warning("%s: %s", self.cfg.name, self.node.last_error, exc_info=not isinstance(exc, EnclaveError))
                await asyncio.sleep(0.2)

    def _has_work(self, h: int) -> tuple[bool, bool]:
        """(there is work, the batch should be cut now)."""
        now = time.monotonic()
        if h == 1 and self.node.l1_height == 0:
            return True, True  # publish the epoch key
        if h == self.node.l1_height + 1 and self.node.rotation_due() == "revocation":
            return True, True  # a member left: the next header opens a new epoch at once
        msgs = self.node.pending_messages()
        ready = self.node.mempool.pending_count if self.node.mempool.has_ready() else 0
        if not msgs and not ready:
            return False, False
        if ready + len(msgs) >= self.cfg.batch_size:
            return True, True
        age = self.node.mempool.oldest_pending_age() if ready else 0.0
        if msgs:
            age = max(age, now - self.node.msg_seen.get(msgs[0].index, now))
        return True, age >= self.cfg.batch_interval

    def _has_any_work(self, h: int) -> bool:
        """``_has_work(h)[0]`` without counting the mempool (this runs on every loop turn)."""
        if (h == 1 and self.node.l1_height == 0) or (h == self.node.l1_height + 1 and self.node.rotation_due() == "revocation"):
            return True
        return self.node.mempool.has_ready() or bool(self.node.pending_messages())

    async def _maybe_propose(self) -> None:
        if self.node.epoch is None or self.node.watcher is None or self.node.frozen or not self.ready_to_propose():
            return
        h = self.node.head_height + 1
        if h > self.node.l1_height + self.cfg.pipeline:
            return
        if any(r.height == h and r.proposer == self.node.address and r.header.prev_hash == self.node.head_hash
               for r in self.node.records.values()):
            return
        if self.view.round_at(h) > 0:
            return  # a later round's proposer proposes this height (node/viewchange.py)
        members = self.node.members()
        if self.node.address not in members or members[self.proposer_slot(h) % len(members)] != self.node.address:
            return
        work, cut = self._has_work(h)
        if not (work and cut):
            return
        await self._build_and_collect(h)

    def ready_to_propose(self) -> bool:
        return bool(self.node.members()) and self.node.finalized >= self.node.l1_height

    async def _build_and_collect(self, h: int, *, round_: int = 0, tc: list[list[bytes]] | None = None) -> None:
        assert self.node.host is not None and self.node.watcher is not None
        if self.node.frozen or not await self.epochs.prepare(h):
            return
        async with self.node.enclave_lock:
            if self.node.head_height != h - 1 or self.node.epoch is None:
                return
            if not round_ and self._signed_other(h, b"", self.node.head_hash):
                return
            msgs = self.node.pending_messages()
            l1_block = max(self.node.head_l1_block, self.node.watcher.confirmed_block())
            if msgs:
                l1_block = max(l1_block, msgs[-1].l1_block)
            room = max(0, self.cfg.batch_size - len(msgs))
            entries = self.node.mempool.select(room, h) if room else []
            inp: dict[str, Any] = {
                "height": h,
                "prev_hash": self.node.head_hash,
                "epoch": self.node.epoch,
                "l1_block": l1_block,
                "timestamp": proposal_timestamp(self.node.head_timestamp, time.time(), await self.l1.block_time(l1_block)),
                "messages": [msg_to_wire(m) for m in msgs],
            }
            if self.cfg.fee_recipient:  # the tips of this batch (enclave/fees.py)
                inp["fee_recipient"] = self.cfg.fee_recipient
            envelopes = [e.raw for e in entries]
            call = {**inp, "envelopes": envelopes, "with_diff": True}
            if round_:
                call["round"], call["tc"] = round_, tc
            try:
                out = await self.node.host.call("execute_batch", call)
            except EnclaveError:
                self.node.mempool.release(h)
                raise
            header_bytes = bytes(out["header"])
            header = Header.decode(header_bytes)
            self.node.on_fees(h, out.get("fees"))
            rec = BatchRecord(
                height=h, input=inp, envelopes=envelopes, header=header, header_bytes=header_bytes,
                hash=bytes(out["header_hash"]), batch_data=bytes(out["batch_data"]),
                withdrawals=[list(w) for w in out.get("withdrawals", [])], proposer=self.node.address,
                diff=bytes(out.get("diff") or b""), logs=bytes(out.get("logs") or b""), round=round_, tc=tc,
                unfunded=[bytes(x) for x in (out.get("fees") or {}).get("unfunded", [])],
            )
            sig = bytes(out["signature"])
            rec.sigs[self.node.address] = sig
            self.node.my_sigs[h] = (rec.hash, sig)
            self.node.chain[h] = rec.hash
            self.node.head_height, self.node.head_hash = h, rec.hash
            self.node.head_msg_count = header.msg_count
            self.node.head_l1_block = header.l1_block
            self.node.head_timestamp = int(inp["timestamp"])
            self.node.records[rec.hash] = rec
            if self.node.daps.enabled:  # to the DAPs while the voters re-execute (with a snapshot now and then)
                snap = None
                if self.node.daps.snapshot_due(h, self.node.epoch):
                    with contextlib.suppress(EnclaveError):
                        s = await self.node.host.call("snapshot")
                        snap = (int(s["epoch"]), bytes(s["shared"]))
                self.node.daps.upload(header, rec.batch_data, snap)
            if self.cfg.persist == "sign":
                await self.node.persist()
            self.node.persist_signed(rec, sig)  # before the proposal leaves: it survives a restart of everyone
        self.node.counters["proposed"] += 1
        log.info("%s: proposed height %d round %d (%d messages, %d envelopes)", self.cfg.name, h, round_, len(msgs),
                 len(envelopes))
        await self.node.notify_head()
        self.node.spawn(self._collect_and_submit(rec, sig))

    async def _collect_and_submit(self, rec: BatchRecord, my_sig: bytes) -> None:
        """Send the proposal to every other member until the QC is complete; then submit it."""
        if rec.collecting:
            return
        rec.collecting = True
        try:
            await self._collect(rec, my_sig)
            if self.node.qc_ready(rec):
                await self._submit_when_due(rec)
        finally:
            rec.collecting = False

    def _first_voters(self, rec: BatchRecord, candidates: list[str]) -> list[str]:
        """The fewest voters whose signatures complete the QC (``first_voters``)."""
        assert self.node.watcher is not None
        return first_voters(list(rec.sigs), candidates, self.node.member_types(), self.node.watcher.quorum,
                            self.node.watcher.min_types)

    async def _collect(self, rec: BatchRecord, my_sig: bytes) -> None:
        assert self.node.watcher is not None
        digest = rec.header.signing_digest(self.cfg.l1_chain_id, self.cfg.rollup)
        body = cbor2.dumps(rec.proposal(self.node.address, my_sig))  # encoded once for every peer
        order = self.node.members()
        members = set(order)
        n = len(order)
        start = order.index(self.node.address) if self.node.address in order else 0
        rotation = [order[(start + j) % n] for j in range(1, n)]
        pending: list[str] = [a for a in rotation if a not in rec.sigs]
        first = self._first_voters(rec, pending)
        deadline = time.monotonic() + max(10.0, 4 * self.cfg.proposer_timeout)
        widen_at = time.monotonic() + max(1.0, self.cfg.proposer_timeout / 3)
        refused: set[str] = set()

        async def ask(addr: str) -> None:
            p = self.node.peer_for(addr)
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
        while not self.node.stopping.is_set():
            if self.node.qc_ready(rec) or rec.height <= self.node.finalized:
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
        if rest and self.node.qc_ready(rec):  # the rest get the batch with its QC and do NOT re-execute:
            self.node.spawn(self._announce(rec, my_sig, rest))  # they apply its state diff once it is on L1
        elif rest:
            for a in rest:
                self.node.spawn(ask(a))

    async def _submit_when_due(self, rec: BatchRecord) -> None:
        assert self.node.watcher is not None
        while not self.node.stopping.is_set() and rec.height > self.node.l1_height + 1:
            if rec.hash not in self.node.records:
                return  # lost the race meanwhile
            async with self.node.head_changed:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.node.head_changed.wait(), timeout=0.05)
        if rec.height != self.node.l1_height + 1 or rec.submitted or rec.hash not in self.node.records:
            return
        await self.l1.submit(rec)

    def _stall_base(self) -> float | None:
        """Since when the next height has been due with work waiting (None: nothing to wait for)."""
        t = self.node.l1_height + 1
        waiting = any(r.height == t for r in self.node.records.values()) or self._has_any_work(t)
        if not waiting:
            self.node.work_since = None
            return None
        if self.node.work_since is None:
            self.node.work_since = time.monotonic()
        return max(self.node.due_since, self.node.work_since)

    async def _maybe_takeover(self) -> None:
        """A stalled height moves to its next round (node/viewchange.py, docs/NODE.md "Rounds"):
        once the next height has had work for the round's timeout without a header on L1, this
        member's enclave signs a timeout vote; a TC opens the next round, whose proposer
        re-proposes what the TC forces or cuts its own batch."""
        if self.node.epoch is None or self.node.watcher is None or self.node.frozen:
            return
        if self.node.finalized > self.node.l1_height:
            return  # an L1 reorganisation took accepted headers away: re-anchoring them first
        await self.l1.resubmit_vanished()
        members = self.node.members()
        if self.node.address not in members or len(members) < 2:
            return
        t = self.node.l1_height + 1
        if self.node.finalized < self.node.l1_height:
            # catching up: this enclave cannot time t out (it has not finalised t - 1), but a batch
            # it already signed at t on L1's last header can still be re-collected and submitted
            rec = self._signed_record(t)
            base = self._stall_base() if rec is not None else None
            if rec is not None and base is not None and not (rec.collecting or rec.submitted) \
                    and self.node.timeouts.elapsed(base) >= self.node.timeouts.current():
                mine = self.node.my_sigs[t]
                self.node.spawn(self._collect_and_submit(rec, mine[1]))
            return
        base = self._stall_base()
        if base is None:
            return
        await self.view.tick(base)

    def _signed_record(self, t: int) -> BatchRecord | None:
        """The batch this enclave signed at height t, if it extends L1's last header. After a
        restart from a sealed snapshot past L1's height the enclave cannot accept the headers in
        between until L1 reaches its head; re-collecting the QC of what it (and the others)
        signed is how L1 gets there."""
        mine = self.node.my_sigs.get(t)
        rec = self.node.records.get(mine[0]) if mine is not None else None
        if rec is None or self.node.watcher is None or rec.header.prev_hash != self.node.watcher.last_header_hash():
            return None
        return rec

    async def _announce(self, rec: BatchRecord, my_sig: bytes, addrs: list[str]) -> None:
        body = cbor2.dumps(rec.proposal(self.node.address, my_sig))  # with the QC's signatures now

        async def one(addr: str) -> None:
            p = self.node.peer_for(addr)
            if p is None:
                return
            try:
                await p.call_raw("announce", body, timeout=30)
            except PeerError as exc:  # it fetches the batch from a peer when it sees the header
                log.debug("%s: announce of %d to %s: %s", self.cfg.name, rec.height, addr, exc)

        await asyncio.gather(*(one(a) for a in addrs))
