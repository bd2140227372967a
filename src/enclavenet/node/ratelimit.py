"""Token-bucket rate limits for the node's public JSON-RPC (issue 14, M4).

One :class:`RateLimiter` per kind of request (raw transactions per client IP, per sender; views
per client IP). Each key (an IP, a routing-hint sender) has a bucket of ``burst`` tokens refilled
at ``rate`` per second; a request takes one. A refused request gets a clear, retryable error
(:data:`RATE_LIMITED`, with ``retryAfter`` seconds in its data) and changes nothing.

Keys are kept in LRU order and at most ``max_keys`` of them (memory stays bounded whatever the
number of addresses an attacker uses; an evicted key starts with a full bucket again).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from .jsonrpc import RpcError

RATE_LIMITED = -32005


class RateLimiter:
    """``take(key)`` -> None if allowed, else raises :class:`RpcError` (-32005, retryable)."""

    def __init__(
        self,
        rate: float,
        what: str,
        *,
        burst: float | None = None,
        max_keys: int = 65_536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate < 0:
            raise ValueError("a rate limit is >= 0 per second (0: off)")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, 2 * rate))
        self.what = what
        self.max_keys = max_keys
        self.clock = clock
        self.refused = 0
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, kind: str) -> None:
        """Spend one token of ``key`` (``kind`` names it in the error: "IP", "sender")."""
        if not self.enabled:
            return
        now = self.clock()
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            self.refused += 1
            wait = (1.0 - tokens) / self.rate
            raise RpcError(
                RATE_LIMITED,
                f"rate limited: more than {self.rate:g} {self.what} per second from this {kind} "
                f"(burst {self.burst:g}); retry in {wait:.2f} s",
                {"retryAfter": round(wait, 3)},
            )
        self._buckets[key] = (tokens - 1.0, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
