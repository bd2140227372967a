"""View change on a live node: rounds (node/rounds.py) wired to the enclave and the peers.

When the height L1 needs next (t = L1 height + 1) has had work for the round's timeout and no
header is on L1, this member's enclave signs a timeout vote (``timeout`` ecall), which goes to
every peer (peer op ``timeout``). Once quorum votes spanning min_types types for one round are
in (a TC), every member enters the next round; its proposer (``proposer(t, r)``) re-proposes
the header the TC forces, or cuts its own batch, and sends the proposal with the TC. Voters
check the proposer and the TC, roll back a header they hold at t from an earlier round, and
verify (the enclave checks the TC itself). Nothing here runs in the fault-free case: round 0
needs no vote, no TC, no extra ecall.

A member that sees votes for a later round from more members than can be faulty
(n - quorum + 1) times that round out at once, so members that fell behind (restarted,
starved of CPU) rejoin the round the others are in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from ..crypto.hashing import to_checksum
from ..crypto.header import Header
from ..crypto.secp256k1 import SignatureError, recover_address
from ..crypto.timeout import timeout_digest
from ..tee.boundary import EnclaveError
from .batch import BatchRecord, Refused, record_from_wire, wire_bytes
from .peers import PeerError
from .rounds import CommitteeRule, Rounds, TimeoutVote, check_timeout_vote

if TYPE_CHECKING:
    from .committee import Committee

log = logging.getLogger("enclavenet.node.viewchange")

MAX_BACKOFF = 8  # a round's timeout grows to at most 8 x proposer_timeout


def round_timeout(base: float, round_: int) -> float:
    """Round r's timeout: ``base`` for rounds 0 and 1, then doubling up to MAX_BACKOFF x base (a
    loaded machine whose batches take longer than ``base`` still finishes a round eventually)."""
    return base * min(MAX_BACKOFF, 1 << max(0, round_ - 1))


class ViewChange:
    def __init__(self, committee: Committee) -> None:
        self.committee = committee
        self.node = committee.node
        self.rounds: Rounds | None = None
        self._busy = False
        self._mine: TimeoutVote | None = None  # this member's newest timeout vote (re-sent while stuck)
        self._sent_at = 0.0
        self.counters = {"timeouts": 0, "rounds": 0, "round_proposals": 0}

    # ------------------------------------------------------------------ the rule and the state
    def rule(self) -> CommitteeRule | None:
        n = self.node
        if n.watcher is None or not n.watcher.quorum:
            return None
        types = n.member_types()
        members = tuple(n.members())
        if len(members) < 2:
            return None
        return CommitteeRule(members, types, n.watcher.quorum, n.watcher.min_types, n.cfg.proposer_run)

    def state(self) -> Rounds | None:
        rule = self.rule()
        if rule is None:
            return None
        if self.rounds is None or self.rounds.rule != rule:
            old = self.rounds
            self.rounds = Rounds(rule, lambda r: round_timeout(self._base_timeout(), r))
            if old is not None:  # keep the height's progress across a committee refresh
                self.rounds.height, self.rounds.parent, self.rounds.round = old.height, old.parent, old.round
                self.rounds._rounds = old._rounds
        return self.rounds

    def _base_timeout(self) -> float:
        """T: the node's timeout policy's current timeout (node/timeouts.py: adaptive to slow
        headers, at least ``proposer_timeout``)."""
        return self.node.timeouts.current()

    def round_at(self, h: int) -> int:
        rs = self.rounds
        return rs.round if rs is not None and rs.height == h else 0

    # ------------------------------------------------------------------ the timer (proposer loop)
    async def tick(self, base: float) -> None:
        """Called on every proposer-loop turn while t = L1 height + 1 has work waiting since
        ``base`` (monotonic) and this member has finalised t - 1."""
        n = self.node
        rs = self.state()
        if rs is None or n.watcher is None or n.address not in rs.rule.types:
            return
        t = n.l1_height + 1
        rs.due(t, n.watcher.last_header_hash(), base)
        if rs.round == 0:
            rs.restart_clock(base)
        now = time.monotonic()
        if not self._busy and rs.should_time_out(now, n.timeouts.elapsed):  # own stalls left out
            self._busy = True
            n.spawn(self._time_out(t, rs.round))
            return
        # votes are sent once; a lost one must not stall the round: re-send ours while it is current
        mine = self._mine
        if (mine is not None and (mine.height, mine.parent) == (t, rs.parent) and mine.round >= rs.round
                and now - self._sent_at >= max(0.5, n.cfg.proposer_timeout / 2)):
            self._sent_at = now
            n.spawn(self._broadcast(mine))

    async def _time_out(self, t: int, r: int) -> None:
        n = self.node
        assert n.host is not None
        try:
            out = await n.host.call("timeout", {"height": t, "round": r})
        except EnclaveError as exc:
            log.info("%s: no timeout vote for height %d round %d: %s", n.cfg.name, t, r, exc)
            rs = self.state()
            if "finalised height" not in str(exc) and rs is not None and rs.height == t and rs.round == r:
                rs.timed_out()  # e.g. a restored enclave is past that round: rejoin on the others' votes
            await asyncio.sleep(0.2)
            return
        finally:
            self._busy = False
        if n.cfg.persist == "sign":
            await n.persist()  # the timeout (and the lock it reports) is sealed before the vote leaves
        rs = self.state()
        if rs is None:
            return
        vote = TimeoutVote(int(out["height"]), int(out["round"]), bytes(out["parent"]), bytes(out["locked"]),
                           bytes(out["signature"]), to_checksum(out["signer"]))
        if rs.height == t and rs.round == r:
            rs.timed_out()
        self.counters["timeouts"] += 1
        log.info("%s: height %d round %d timed out (lock 0x%s)", n.cfg.name, t, r, vote.locked.hex()[:12])
        self._mine, self._sent_at = vote, time.monotonic()
        n.spawn(self._broadcast(vote))
        await self._count(vote)

    async def _broadcast(self, vote: TimeoutVote) -> None:
        body = {"height": vote.height, "round": vote.round, "parent": vote.parent, "locked": vote.locked,
                "signature": vote.signature, "signer": vote.signer}
        wait = max(1.0, self.node.cfg.proposer_timeout)

        async def one(p: Any) -> None:
            with contextlib.suppress(PeerError):
                out = await p.call("timeout", body, timeout=wait)
                theirs = out.get("vote")  # the peer's own vote for that round, if it has one
                if isinstance(theirs, dict):
                    with contextlib.suppress(Refused, KeyError, TypeError, ValueError):
                        await self.on_timeout(theirs)

        await asyncio.gather(*(one(p) for p in self.node.peers))

    # ------------------------------------------------------------------ votes from peers
    async def on_timeout(self, msg: dict[str, Any]) -> dict[str, Any]:
        rs = self.state()
        if rs is None or self.node.watcher is None:
            raise Refused("no committee yet")
        vote = TimeoutVote(int(msg["height"]), int(msg["round"]), wire_bytes(msg["parent"], "parent"),
                           wire_bytes(msg["locked"], "locked"), wire_bytes(msg["signature"], "signature"),
                           to_checksum(msg["signer"]))
        why = check_timeout_vote(rs.rule, vote, self.node.cfg.l1_chain_id, self.node.cfg.rollup)
        if why is not None:
            raise Refused(f"timeout vote refused: {why}")
        await self._count(vote)
        out: dict[str, Any] = {"round": self.round_at(vote.height)}
        mine = self._mine
        if mine is not None and (mine.height, mine.round, mine.parent) == (vote.height, vote.round, vote.parent):
            out["vote"] = {"height": mine.height, "round": mine.round, "parent": mine.parent, "locked": mine.locked,
                           "signature": mine.signature, "signer": mine.signer}
        return out

    async def _count(self, vote: TimeoutVote) -> None:
        n = self.node
        rs = self.state()
        if rs is None or n.watcher is None:
            return
        t = n.l1_height + 1
        if vote.height != t or vote.parent != n.watcher.last_header_hash():
            return  # another height (we are behind or ahead): the proposal's TC will carry it
        rs.due(t, vote.parent, time.monotonic())
        now = time.monotonic()
        tc = rs.add_timeout(vote, now)
        if tc is not None and rs.enter(vote.round + 1, now):
            self.counters["rounds"] += 1
            log.info("%s: height %d enters round %d (TC of %d votes)", n.cfg.name, t, rs.round, len(tc))
            if rs.proposer() == n.address:
                n.spawn(self._propose(t, rs.round, tc))
            return
        # rejoin: more members than can be faulty are in a later round already
        if vote.round > rs.round or (vote.round == rs.round and not self._timed_out(rs)):
            ahead = {v.signer for v in rs.votes(vote.round)}
            if len(ahead) >= len(rs.rule.members) - rs.rule.quorum + 1 and not self._busy:
                if vote.round > rs.round:
                    rs.round = vote.round  # time out that round directly (the enclave allows r >= its round)
                self._busy = True
                n.spawn(self._time_out(t, vote.round))

    @staticmethod
    def _timed_out(rs: Rounds) -> bool:
        r = rs._rounds.get(rs.round)
        return r is not None and r.timed_out

    # ------------------------------------------------------------------ the round's proposer
    async def _propose(self, t: int, r: int, tc: list[list[bytes]]) -> None:
        n = self.node
        rs = self.state()
        if rs is None or n.watcher is None:
            return
        forced = rs.forced(r - 1)
        self.counters["round_proposals"] += 1
        n.counters["takeovers"] += 1
        try:
            if forced:
                rec = await self._find(t, forced)
                if rec is None:
                    log.info("%s: round %d at height %d must carry 0x%s, which no peer serves", n.cfg.name, r, t,
                             min(forced).hex()[:12])
                    return
                log.info("%s: round %d at height %d re-proposes 0x%s", n.cfg.name, r, t, rec.hash.hex()[:12])
                msg = {**rec.proposal(rec.proposer, rec.sigs[rec.proposer]), "round": r, "tc": tc}
                await self.committee.on_propose(msg, takeover=True)  # our enclave verifies it in round r (checks the TC)
                mine = n.my_sigs.get(t)
                if mine is None or mine[0] != rec.hash:
                    return
                rec = n.records.get(rec.hash, rec)
                rec.round, rec.tc = r, tc
                rec.proposer = n.address
                await self.committee._collect_and_submit(rec, mine[1])
            else:
                log.info("%s: round %d at height %d: proposing a batch", n.cfg.name, r, t)
                async with n.enclave_lock:
                    await self.prepare(t, None)
                await self.committee._build_and_collect(t, round_=r, tc=tc)
        except (PeerError, EnclaveError, ValueError, Refused) as exc:
            log.info("%s: round %d proposal at height %d failed: %s", n.cfg.name, r, t, exc)

    async def _find(self, t: int, wanted: frozenset[bytes]) -> BatchRecord | None:
        n = self.node
        for rec in n.records.values():
            if rec.height == t and rec.hash in wanted and rec.proposer in rec.sigs:
                return rec
        wait = max(0.5, min(2.0, n.cfg.proposer_timeout))

        async def ask(p: Any, want: bytes) -> dict[str, Any] | None:
            try:
                return await p.call("batch", {"height": t, "pending": True, "hash": want}, timeout=wait)
            except PeerError:
                return None

        for want in sorted(wanted):
            for out in await asyncio.gather(*(ask(p, want) for p in n.peers)):
                if out is None:
                    continue
                try:
                    rec = record_from_wire(out)
                except (ValueError, KeyError, TypeError):
                    continue
                if rec.hash != want:
                    continue
                rec.proposer = to_checksum(out["proposer"])
                n.add_sig(rec, rec.proposer, bytes(out["signature"]))  # kept only if it verifies
                for a, sig in out.get("sigs", []):
                    n.add_sig(rec, to_checksum(a), bytes(sig))
                if rec.proposer in rec.sigs:
                    return rec
        return None

    # ------------------------------------------------------------------ voters
    def check_proposal(self, header: Header, proposer: str, r: int, tc: Any) -> str | None:
        """None when a round-r proposal by ``proposer`` carries a complete TC for round r - 1."""
        rs = self.state()
        if rs is None:
            return "no committee yet"
        if proposer != rs.rule.proposer(header.height, r):
            return f"{proposer} is not the proposer of height {header.height} round {r}"
        if not isinstance(tc, list):
            return f"a round-{r} proposal needs the timeout certificate of round {r - 1}"
        signers: list[str] = []
        for v in tc[:256]:
            try:
                d = timeout_digest(self.node.cfg.l1_chain_id, self.node.cfg.rollup, header.height, r - 1,
                                   header.prev_hash, wire_bytes(v[0], "locked"))
                signers.append(recover_address(d, wire_bytes(v[1], "signature")))
            except (SignatureError, TypeError, ValueError, IndexError):
                return "a timeout vote in the certificate is malformed"
        if not rs.rule.complete(signers):
            return f"the timeout certificate of round {r - 1} is not complete"
        return None

    async def prepare(self, h: int, keep: bytes | None) -> None:
        """Before voting or proposing at h in a later round: if this enclave's head holds another
        header at h (an earlier round's), roll back to h - 1 (nothing at h is final)."""
        n = self.node
        assert n.host is not None
        if n.head_height >= h and n.chain.get(h) != keep and n.finalized < h:
            log.info("%s: rolling back to %d for a later round at height %d", n.cfg.name, h - 1, h)
            await n.host.call("rollback", {"height": h - 1})
            n.mempool.release(h)
            for x in [x for x in n.my_sigs if x >= h]:
                del n.my_sigs[x]
            await n.refresh_status()
            await n.notify_head()

    def status(self) -> dict[str, Any]:
        rs = self.rounds
        return {**self.counters, "height": rs.height if rs else 0, "round": rs.round if rs else 0}


__all__ = ["ViewChange", "round_timeout"]
