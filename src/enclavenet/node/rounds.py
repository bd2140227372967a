"""The committee protocol's rounds as a pure state machine (no I/O, no clock of its own).

What the host decides (the enclave enforces the rules that matter for safety, enclave/guard.py):

* who proposes ``(height, round)``: ``members[(height // proposer_run + round) % n]`` --
  round 0 is the usual rotation, each later round moves to the next member;
* when to time out: ``timeout(round)`` seconds after the round started (height due, or the
  TC that opened the round arrived) while L1 has no header at that height;
* when a timeout certificate (TC) or a QC is complete: >= quorum distinct members spanning
  >= min_types TEE types;
* what round ``r + 1`` must carry: the header a TC says may hold a QC (``forced``), else
  anything (the round's proposer cuts its own batch or adopts a pending one).

``Rounds`` follows one height at a time: the next height L1 needs (``L1 height + 1``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..crypto.hashing import ZERO32
from ..crypto.secp256k1 import SignatureError, recover_address
from ..crypto.timeout import timeout_digest


@dataclass(frozen=True)
class CommitteeRule:
    """The committee as the host sees it (Registry view): members sorted by address, types, QC rule."""

    members: tuple[str, ...]
    types: Mapping[str, int]
    quorum: int
    min_types: int
    proposer_run: int = 1

    def proposer(self, height: int, round_: int = 0) -> str:
        n = len(self.members)
        return self.members[(height // max(1, self.proposer_run) + round_) % n]

    def complete(self, signers: Sequence[str]) -> bool:
        """>= quorum distinct members spanning >= min_types TEE types (a QC or a TC)."""
        who = {s for s in signers if s in self.types}
        return len(who) >= self.quorum and len({self.types[s] for s in who}) >= self.min_types

    def forced(self, locks: Mapping[str, bytes]) -> frozenset[bytes] | None:
        """The headers a TC with these locks (signer -> locked header hash) makes round r + 1
        carry -- one of them -- or None when it may carry any (the enclave's rule, guard.py)."""
        outside = len(self.members) - len(locks)
        counts: dict[bytes, int] = {}
        for h in locks.values():
            if h != ZERO32:
                counts[h] = counts.get(h, 0) + 1
        out = frozenset(h for h, c in counts.items() if c + outside >= self.quorum)
        return out or None


@dataclass(frozen=True)
class TimeoutVote:
    height: int
    round: int
    parent: bytes
    locked: bytes
    signature: bytes
    signer: str


def check_timeout_vote(
    rule: CommitteeRule, vote: TimeoutVote, l1_chain_id: int, rollup: str
) -> str | None:
    """None when ``vote`` is a member's signature over its fields, else why not."""
    try:
        who = recover_address(
            timeout_digest(l1_chain_id, rollup, vote.height, vote.round, vote.parent, vote.locked), vote.signature
        )
    except SignatureError as exc:
        return f"malformed timeout signature: {exc}"
    if who != vote.signer:
        return f"the timeout vote recovers to {who}, not {vote.signer}"
    if who not in rule.types:
        return f"{who} is not a committee member"
    return None


@dataclass
class _Round:
    started: float
    votes: dict[str, TimeoutVote] = field(default_factory=dict)  # signer -> vote (one parent)
    timed_out: bool = False  # this member's enclave signed its timeout for this round


class Rounds:
    """Rounds at the height L1 needs next. ``timeout(r)`` gives round r's timeout in seconds
    (the node's timeout policy); times are the caller's monotonic clock."""

    def __init__(self, rule: CommitteeRule, timeout: Callable[[int], float]) -> None:
        self.rule = rule
        self.timeout = timeout
        self.height = 0
        self.parent = ZERO32
        self.round = 0
        self._rounds: dict[int, _Round] = {}

    def due(self, height: int, parent: bytes, now: float) -> None:
        """``height`` (extending ``parent``) is the one L1 needs now; a new height starts at round 0."""
        if (height, parent) != (self.height, self.parent):
            self.height, self.parent, self.round = height, parent, 0
            self._rounds = {0: _Round(now)}

    def restart_clock(self, now: float) -> None:
        """Work appeared only now: the current round's timeout counts from here."""
        r = self._rounds.get(self.round)
        if r is not None and not r.timed_out and not r.votes:
            r.started = max(r.started, now)

    def proposer(self) -> str:
        return self.rule.proposer(self.height, self.round)

    def should_time_out(self, now: float, elapsed: Callable[[float], float] | None = None) -> bool:
        """True once the current round has run its timeout and this member has not timed it out.
        ``elapsed(since)`` (default ``now - since``) lets the node leave its own stalls out."""
        r = self._rounds.get(self.round)
        if r is None or r.timed_out:
            return False
        spent = elapsed(r.started) if elapsed is not None else now - r.started
        return spent >= self.timeout(self.round)

    def timed_out(self) -> None:
        """This member's enclave signed its timeout vote for the current round."""
        self._rounds.setdefault(self.round, _Round(0.0)).timed_out = True

    def add_timeout(self, vote: TimeoutVote, now: float) -> list[list[bytes]] | None:
        """Count a (checked) timeout vote; return the TC ``[[locked, signature]]`` when its round's
        votes are complete. Votes for another height or parent, or an old round, are ignored."""
        if vote.height != self.height or vote.parent != self.parent or vote.round < self.round:
            return None
        r = self._rounds.setdefault(vote.round, _Round(now))
        r.votes.setdefault(vote.signer, vote)
        return self.tc(vote.round)

    def tc(self, round_: int) -> list[list[bytes]] | None:
        r = self._rounds.get(round_)
        if r is None or not self.rule.complete(list(r.votes)):
            return None
        return [[v.locked, v.signature] for v in r.votes.values()]

    def votes(self, round_: int) -> list[TimeoutVote]:
        r = self._rounds.get(round_)
        return [] if r is None else list(r.votes.values())

    def forced(self, round_: int) -> frozenset[bytes] | None:
        """What round ``round_ + 1`` must carry, by round ``round_``'s TC (see CommitteeRule.forced)."""
        r = self._rounds.get(round_)
        return None if r is None else self.rule.forced({s: v.locked for s, v in r.votes.items()})

    def enter(self, round_: int, now: float) -> bool:
        """Move to ``round_`` (a TC for ``round_ - 1`` is complete); False if not newer."""
        if round_ <= self.round:
            return False
        self.round = round_
        r = self._rounds.setdefault(round_, _Round(now))
        r.started = now
        for old in [k for k in self._rounds if k < round_ - 1]:
            del self._rounds[old]  # the TC of round_ - 1 is kept: proposals of round_ carry it
        return True

    def deadline(self) -> float:
        """When the current round times out (monotonic)."""
        r = self._rounds.get(self.round)
        return (r.started if r is not None else 0.0) + self.timeout(self.round)


__all__ = ["CommitteeRule", "Rounds", "TimeoutVote", "check_timeout_vote"]
