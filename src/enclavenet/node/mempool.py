"""The node's mempool: fast-path envelopes waiting for a batch.

The node cannot read an envelope (it is sealed to the committee's epoch key); it orders by the
cleartext **routing hint** ``(sender, nonce)`` the envelope carries (``crypto.envelope``), which
the enclave checks against the decrypted transaction.

Rules:

* Each sender's transactions leave in nonce order; across senders, in order of arrival of each
  sender's oldest pending transaction (fair, FIFO-ish) **within a fairness group**, and the
  groups take turns, one transaction each (round robin, groups in order of their oldest pending
  transaction). A group is the client an envelope came from (``Node.fair_group``: a keyed hash
  of the submitting IP, carried with forwarded envelopes), so a flood from one client under a
  thousand fresh senders delays another client's transaction by at most one turn per batch
  (issue 13 item 2; with one client, the order is the plain FIFO above). Within a batch a sender's run stops at a
  nonce gap; a gap that lasts longer than ``gap_timeout`` is let through (the enclave then refuses
  the transaction with a receipt that says why), so a lost transaction never blocks a sender.
* Bounded per sender (``max_per_sender``), per client (``max_per_origin``: the client IP of a
  JSON-RPC submission, so one client cannot squat the whole pool under made-up senders; issue 14
  M4) and in total (``max_total``); what does not fit is refused with :class:`MempoolFull`
  saying which bound.
* An exact duplicate (same envelope bytes, i.e. same receipt id) is refused, whether pending,
  in flight or already included.
* Entries move ``pending -> in flight (height h)`` when a batch proposal takes them, back to
  ``pending`` when that proposal loses (the race) or is abandoned, and are dropped only when a
  header that includes them is accepted on L1 (:meth:`Mempool.on_accepted`). So pending
  transactions survive proposer changes.

The hint is authenticated by its sender's key (envelope flag 4) and the node that admits an
envelope from a client checks that before calling :meth:`Mempool.add` (node/hintauth.py), so the
per-sender bounds here are the sender's own: nobody can spend them under another address. The
mempool itself does not check signatures (forwarded envelopes were checked by their ingress node).
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sha3

from ..crypto.envelope import Envelope, EnvelopeError, hinted_fields
from ..crypto.hashing import keccak256

UNFUNDED_HOLD_S = 60.0
MAX_UNFUNDED = 100_000


class MempoolError(ValueError):
    """A transaction was refused by the mempool; the message says why."""


class MempoolFull(MempoolError):
    pass


class DuplicateTransaction(MempoolError):
    pass


@dataclass
class Entry:
    receipt_id: bytes
    raw: bytes = field(repr=False)
    sender: bytes
    nonce: int
    epoch: int
    seq: int
    arrived: float
    inflight: int = 0  # height of the proposal holding it, 0 when pending
    origin: str = ""  # the submitting client (IP), "" for forwarded / reloaded envelopes
    group: str = ""  # fairness group (the client, keyed hash; forwarded with the envelope)

    @property
    def size(self) -> int:
        return len(self.raw)


def receipt_id(raw: bytes) -> bytes:
    """The id a user sees for a transaction: keccak256 of the envelope bytes."""
    return keccak256(raw)


def parse_envelope(raw: bytes, *, max_bytes: int | None = None) -> Envelope:
    """Decode an envelope, requiring a routing hint; raises MempoolError saying what is wrong."""
    if max_bytes is not None and len(raw) > max_bytes:
        raise MempoolError(f"transaction too large: {len(raw)} bytes > {max_bytes}")
    try:
        env = Envelope.decode(raw)
    except EnvelopeError as exc:
        raise MempoolError(f"malformed envelope: {exc}") from None
    if env.hint is None:
        raise MempoolError(
            "envelope has no routing hint (sender, nonce); the fast path needs one to order "
            "transactions (seal with a RoutingHint, or submit through the L1 inbox Rollup.submit)"
        )
    return env


_keccak = sha3.keccak_256
def _hinted_fields(raw: bytes, max_bytes: int) -> tuple[int, bytes, int] | None:
    """(epoch, hint sender, hint nonce) at their fixed offsets when ``Envelope.decode`` would
    accept ``raw`` with a routing hint (``crypto.envelope.hinted_fields``); None: the full parse."""
    return None if len(raw) > max_bytes else hinted_fields(raw)


class _Turn:
    """One fairness group's place in a round-robin batch selection: its runs, and how far into the
    first one it is."""

    __slots__ = ("i", "runs")

    def __init__(self, runs: deque[list[Entry]]) -> None:
        self.runs = runs
        self.i = 0

    def give(self, out: list[Entry], total: int, max_bytes: int | None) -> int:
        """Append this group's next entry to ``out`` (skipping a run that does not fit ``max_bytes``:
        its later nonces wait); returns the new byte total."""
        while self.runs:
            run = self.runs[0]
            e = run[self.i]
            if max_bytes is not None and total + e.size > max_bytes:
                self.runs.popleft()
                self.i = 0
                continue
            out.append(e)
            self.i += 1
            if self.i == len(run):
                self.runs.popleft()
                self.i = 0
            return total + e.size
        return total


class Mempool:
    """Pending fast-path envelopes, ordered per sender by nonce. Not thread-safe (one event loop)."""

    def __init__(
        self,
        *,
        max_total: int = 100_000,
        max_per_sender: int = 4_096,
        max_bytes: int = 64 * 1024,
        gap_timeout: float = 2.0,
        included_memory: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
        max_per_origin: int | None = None,
    ) -> None:
        self.max_total = max_total
        self.max_per_sender = max_per_sender
        self.max_per_origin = max_per_origin if max_per_origin is not None else max(1, max_total // 2)
        self._by_origin: dict[str, int] = {}  # client -> entries it submitted that are still here
        self._by_group: dict[str, int] = {}  # fairness group -> its entries here (local and forwarded)
        self.max_bytes = max_bytes
        self.gap_timeout = gap_timeout
        self._clock = clock
        self._seq = itertools.count()
        self._by_id: dict[bytes, Entry] = {}
        # sender -> {receipt_id: entry}; insertion order = arrival
        self._by_sender: dict[bytes, dict[bytes, Entry]] = {}
        # senders the enclave refused because they could not pay the fee (fees.py): -> until when
        # (clock) their envelopes are refused at admission; a deposit from them clears it
        self._unfunded: dict[bytes, float] = {}
        # receipt ids included in accepted headers -> height (bounded memory, oldest forgotten)
        self._included: OrderedDict[bytes, int] = OrderedDict()
        self._included_memory = included_memory
        # sender -> highest nonce seen in an accepted header (gap detection)
        self._included_nonce: dict[bytes, int] = {}
        # gets the arrival-to-acceptance seconds of the entries an accepted header dropped
        # (node/metrics.py); recent: (when, height, count, p50, p99) of the last accepted headers
        self.on_included: Callable[[list[float]], None] | None = None
        self.recent: deque[tuple[float, int, int, float, float]] = deque(maxlen=600)

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, rid: object) -> bool:
        return rid in self._by_id

    @property
    def pending_count(self) -> int:
        return sum(1 for e in self._by_id.values() if not e.inflight)

    @property
    def inflight_count(self) -> int:
        return sum(1 for e in self._by_id.values() if e.inflight)

    def stats(self) -> dict[str, Any]:
        inflight = self.inflight_count
        return {
            "pending": len(self._by_id) - inflight,
            "inflight": inflight,
            "senders": len(self._by_sender),
            "maxTotal": self.max_total,
            "maxPerSender": self.max_per_sender,
            "inclusion": self.latency(),  # the last minute's inclusion latency (explorer chart)
        }

    def group_count(self, group: str) -> int:
        """Entries of fairness group ``group`` here (pending or in flight)."""
        return self._by_group.get(group, 0)

    def group_total(self) -> int:
        """How many fairness groups have entries here."""
        return len(self._by_group)

    def get(self, rid: bytes) -> Entry | None:
        return self._by_id.get(rid)

    def included_height(self, rid: bytes) -> int | None:
        return self._included.get(rid)

    # ------------------------------------------------------------------ admission
    def add(self, raw: bytes, *, epochs: Iterable[int] | None = None, origin: str = "", group: str = "") -> Entry:
        """Admit an envelope; returns its entry. Raises MempoolError (or a subclass).

        ``epochs`` -- the key epochs the committee currently accepts; an envelope for another
        epoch is refused (it could not be decrypted). ``origin`` -- the submitting client (its
        IP), bounded by ``max_per_origin``; "" (forwarded by a peer, reloaded) is not counted.
        ``group`` -- the fairness group batch selection takes turns between ("" is one group).
        """
        fast = _hinted_fields(raw, self.max_bytes)  # every node adds every transaction: the hot path
        if fast is None:
            env = parse_envelope(raw, max_bytes=self.max_bytes)  # the full parse (and its errors)
            assert env.hint is not None
            fast = (env.epoch, env.hint.sender, env.hint.nonce)
        epoch, sender, nonce = fast
        if self._unfunded and sender in self._unfunded:
            if self._clock() < self._unfunded[sender]:
                raise MempoolFull(
                    f"sender 0x{sender.hex()} could not pay the fee of a recent transaction (its EnclaveNet "
                    "balance is too low): deposit first, then retry"
                )
            del self._unfunded[sender]
        if epochs is not None and epoch not in epochs:
            raise MempoolError(
                f"envelope sealed to epoch {epoch}, but the committee accepts epochs "
                f"{sorted(set(epochs))}: fetch the current key with enclavenet_epochKey and re-seal"
            )
        rid = _keccak(raw).digest()
        if rid in self._by_id:
            raise DuplicateTransaction(f"duplicate: transaction 0x{rid.hex()} is already pending")
        h = self._included.get(rid)
        if h is not None:
            raise DuplicateTransaction(
                f"duplicate: transaction 0x{rid.hex()} was already included at height {h} (replay)"
            )
        bucket = self._by_sender.get(sender)
        if bucket is not None and len(bucket) >= self.max_per_sender:
            raise MempoolFull(
                f"mempool full for sender 0x{sender.hex()}: {len(bucket)} pending "
                f"(limit {self.max_per_sender} per sender); wait for inclusion and retry"
            )
        if len(self._by_id) >= self.max_total:
            raise MempoolFull(
                f"mempool full: {len(self._by_id)} transactions pending (limit {self.max_total}); "
                "retry later"
            )
        if origin:
            mine = self._by_origin.get(origin, 0)
            if mine >= self.max_per_origin:
                raise MempoolFull(
                    f"mempool full for this client: {mine} of its transactions pending (limit "
                    f"{self.max_per_origin} per client); wait for inclusion and retry"
                )
            self._by_origin[origin] = mine + 1
        e = Entry(rid, raw, sender, nonce, epoch, next(self._seq), self._clock(), origin=origin, group=group)
        self._by_id[rid] = e
        self._by_group[group] = self._by_group.get(group, 0) + 1
        if bucket is None:
            bucket = self._by_sender[sender] = {}
        bucket[rid] = e
        return e

    # ------------------------------------------------------------------ batch selection
    def select(self, limit: int, height: int, *, max_bytes: int | None = None) -> list[Entry]:
        """Take up to ``limit`` pending entries for the proposal at ``height`` (marks them in flight).

        Per sender in nonce order (stopping at a nonce gap younger than ``gap_timeout``), senders
        in order of their oldest pending entry within each fairness group, the groups taking turns
        (one entry each per round; groups in order of their oldest pending entry).
        """
        now = self._clock()
        runs: list[tuple[int, list[Entry]]] = []
        for sender, bucket in self._by_sender.items():
            pend = [e for e in bucket.values() if not e.inflight]
            if not pend:
                continue
            pend.sort(key=lambda e: (e.nonce, e.seq))
            # the nonce the sender should continue from: after what is in flight / included
            inflight_n = [e.nonce for e in bucket.values() if e.inflight]
            base = max(inflight_n) + 1 if inflight_n else None
            inc = self._included_nonce.get(sender)
            if inc is not None:
                base = max(base or 0, inc + 1)
            run: list[Entry] = []
            expect = base
            for e in pend:
                if expect is not None and e.nonce > expect and now - e.arrived < self.gap_timeout:
                    break  # wait for the missing nonce(s) a little
                run.append(e)
                expect = e.nonce + 1 if expect is None or e.nonce >= expect else expect
            if run:
                runs.append((min(e.seq for e in pend), run))
        runs.sort(key=lambda r: r[0])
        groups: dict[str, deque[list[Entry]]] = {}  # in order of each group's oldest run
        for _, run in runs:
            q = groups.get(run[0].group)
            if q is None:
                q = groups[run[0].group] = deque()
            q.append(run)
        out: list[Entry] = []
        total = 0
        if len(groups) == 1:  # one client: plain FIFO across senders (the throughput case)
            for run in next(iter(groups.values())):
                for e in run:
                    if len(out) >= limit:
                        break
                    if max_bytes is not None and total + e.size > max_bytes:
                        break
                    out.append(e)
                    total += e.size
                if len(out) >= limit:
                    break
        else:
            # round robin: each group gives its next entry (its runs in order, each run whole and in
            # nonce order; a run cut by max_bytes is left there, its later nonces wait)
            turns = [_Turn(q) for q in groups.values()]
            while turns and len(out) < limit:
                keep: list[_Turn] = []
                for t in turns:
                    if len(out) < limit:
                        total = t.give(out, total, max_bytes)
                    if t.runs:
                        keep.append(t)
                turns = keep
        for e in out:
            e.inflight = height
        return out

    def has_ready(self) -> bool:
        """Whether any pending entry could be selected now."""
        return any(not e.inflight for e in self._by_id.values())

    def oldest_pending_age(self) -> float:
        now = self._clock()
        ages = [now - e.arrived for e in self._by_id.values() if not e.inflight]
        return max(ages) if ages else 0.0

    def mark_inflight(self, rids: Iterable[bytes], height: int) -> int:
        """A proposal for ``height`` (ours or a peer's) holds these ids: don't propose them again."""
        n = 0
        for rid in rids:
            e = self._by_id.get(rid)
            if e is not None:
                e.inflight = height
                n += 1
        return n

    def release(self, from_height: int) -> int:
        """Proposals at heights >= ``from_height`` were abandoned or lost: their entries are pending again."""
        n = 0
        for e in self._by_id.values():
            if e.inflight and e.inflight >= from_height:
                e.inflight = 0
                n += 1
        return n

    def remove(self, rid: bytes) -> bool:
        """Forget an entry that was never acknowledged (its ``pending.log`` write failed:
        node/ingress.py). A proposal already holding it may still include it."""
        return self._drop(rid) is not None

    def _drop(self, rid: bytes) -> Entry | None:
        e = self._by_id.pop(rid, None)
        if e is None:
            return None
        bucket = self._by_sender.get(e.sender)
        if bucket is not None:
            bucket.pop(rid, None)
            if not bucket:
                del self._by_sender[e.sender]
        g = self._by_group.get(e.group, 1) - 1
        if g > 0:
            self._by_group[e.group] = g
        else:
            self._by_group.pop(e.group, None)
        if e.origin:
            left = self._by_origin.get(e.origin, 1) - 1
            if left > 0:
                self._by_origin[e.origin] = left
            else:
                self._by_origin.pop(e.origin, None)
        return e

    # ------------------------------------------------------------------ L1 acceptance
    def refuse_unfunded(self, senders: Iterable[bytes], hold_s: float = UNFUNDED_HOLD_S) -> None:
        """Refuse new envelopes of ``senders`` for ``hold_s`` (the enclave reported they cannot pay
        the fee). Their envelopes already acknowledged stay: acknowledged is never dropped (a
        deposit may land before they run)."""
        until = self._clock() + hold_s
        for sender in senders:
            if len(self._unfunded) >= MAX_UNFUNDED and sender not in self._unfunded:
                self._unfunded.pop(next(iter(self._unfunded)))
            self._unfunded[sender] = until

    def funded(self, sender: bytes) -> None:
        """A deposit for ``sender``: admit it again."""
        self._unfunded.pop(sender, None)

    def on_accepted(self, height: int, rids: Iterable[bytes], hints: Iterable[tuple[bytes, int]] = ()) -> int:
        """A header at ``height`` was accepted on L1 holding ``rids``: drop them, remember them.

        Entries that were in flight at ``height`` but are not in the accepted header go back to
        pending (our proposal lost the race). ``hints`` -- (sender, nonce) of the included
        envelopes, for nonce-gap detection.
        """
        dropped = 0
        now = self._clock()
        waited: list[float] = []
        for rid in rids:
            e = self._drop(rid)
            if e is not None:
                waited.append(now - e.arrived)
                dropped += 1
            self._included[rid] = height
        while len(self._included) > self._included_memory:
            self._included.popitem(last=False)
        for sender, nonce in hints:
            if nonce > self._included_nonce.get(sender, -1):
                self._included_nonce[sender] = nonce
        for e in self._by_id.values():
            if e.inflight and e.inflight <= height:
                e.inflight = 0
        if waited:
            waited.sort()
            self.recent.append((time.time(), height, len(waited), waited[len(waited) // 2],
                                waited[min(len(waited) - 1, (len(waited) * 99) // 100)]))
            if self.on_included is not None:
                self.on_included(waited)
        return dropped

    def latency(self, since: float = 60.0) -> dict[str, float | int]:
        """Inclusion latency over the headers accepted in the last ``since`` seconds (as seen by
        this node: arrival here to acceptance on L1): ``{headers, txs, p50, p99}`` (the worst
        header's p50/p99, 0 when none)."""
        cut = time.time() - since
        rows = [r for r in self.recent if r[0] >= cut]
        return {"headers": len(rows), "txs": sum(r[2] for r in rows),
                "p50": round(max((r[3] for r in rows), default=0.0), 4),
                "p99": round(max((r[4] for r in rows), default=0.0), 4)}

    def entries(self) -> list[Entry]:
        return list(self._by_id.values())
