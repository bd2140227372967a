"""Admission control: a flood gets a retryable "busy" answer instead of an unbounded queue (issue 9).

A transaction acknowledged now waits behind every transaction already in the mempool (pending or in
a proposal; every node holds the committee's whole queue, forwarded envelopes included). The node
refuses a new one while that queue holds more than ``queue_s`` seconds of the committee's measured
capacity, so what it does admit is included within roughly ``queue_s`` plus the pipeline's own
latency; what it refuses changes nothing and says when to retry.

Capacity = transactions per second included while the committee was saturated: over the headers
accepted in the last ``WINDOW_S`` seconds at times when the queue still held at least a full batch
(so an idle committee's low arrival rate is not mistaken for its capacity). Until it has been
measured, and as a floor, ``min_batches`` full batches may queue.

Fair share (issue 13 item 2): a full queue refuses only clients that hold at least their share
of it. A client (fairness group, ``Node.fair_group``) holding fewer than ``limit / groups``
queued transactions is still admitted, up to twice the limit in all, so one client's flood makes
itself busy, not the others; the queue stays bounded (``2 * limit``) whatever the number of clients.

The answer: JSON-RPC -32005 (EIP-1474 "limit exceeded", the code rate limits use too, so clients
that back off on one back off on both), ``data = {"retryAfter": s, "reason": "busy", "queued": n}``
and the same hint in the message.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from .jsonrpc import RpcError
from .ratelimit import RATE_LIMITED

WINDOW_S = 15.0
MIN_SPAN_S = 1.0  # capacity needs acceptances spread over at least this long
MAX_RETRY_S = 5.0
MIN_RETRY_S = 0.05


class Admission:
    def __init__(self, *, queue_s: float, min_batches: int, batch_size: Callable[[], int],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.queue_s = queue_s
        self.min_batches = min_batches
        self._batch_size = batch_size
        self._clock = clock
        self._accepted: deque[tuple[float, int]] = deque()  # (when, transactions) while saturated
        self.refused = 0

    @property
    def enabled(self) -> bool:
        return self.queue_s > 0

    def on_accepted(self, included: int, queued_after: int) -> None:
        """A header holding ``included`` transactions was accepted; ``queued_after`` remain."""
        now = self._clock()
        if queued_after >= self._batch_size():  # saturated: this acceptance measures capacity
            self._accepted.append((now, included))
        while self._accepted and self._accepted[0][0] < now - WINDOW_S:
            self._accepted.popleft()

    def capacity(self) -> float | None:
        """Measured transactions per second while saturated, or None (not measured yet)."""
        a = self._accepted
        if len(a) < 3 or a[-1][0] - a[0][0] < MIN_SPAN_S:
            return None
        return sum(n for _, n in list(a)[1:]) / (a[-1][0] - a[0][0])

    def limit(self) -> int:
        """How many transactions may queue now."""
        floor = self.min_batches * self._batch_size()
        cap = self.capacity()
        return floor if cap is None else max(floor, round(cap * self.queue_s))

    def check(self, queued: int, *, mine: int | None = None, groups: int = 0) -> None:
        """Raise the retryable busy error when ``queued`` transactions fill the queue, unless the
        client holds less than its fair share of it (``mine`` of the ``queued``, ``groups``
        clients holding some; ``mine=None``: no fair share)."""
        if not self.enabled:
            return
        limit = self.limit()
        if queued < limit:
            return
        if mine is not None and queued < 2 * limit:
            share = limit // max(1, groups + (0 if mine else 1))
            if mine < share:
                return
        self.refused += 1
        # not measured yet: take the floor's queue as queue_s of work (one batch per queue_s made
        # clients wait ~min_batches times too long, idling the committee after a first refusal)
        cap = self.capacity() or limit / max(self.queue_s, 0.1)
        wait = min(MAX_RETRY_S, max(MIN_RETRY_S, (queued - 0.75 * limit) / cap))
        raise RpcError(
            RATE_LIMITED,
            f"committee busy: {queued} transactions queued, about {queued / cap:.1f} s of work "
            f"(admitting up to {self.queue_s:g} s); retry in {wait:.2f} s",
            {"retryAfter": round(wait, 3), "reason": "busy", "queued": queued},
        )
