"""How long the committee waits for a silent proposer, on a machine that may be busy (docs/NODE.md).

``proposer_timeout`` from the config is the floor. Two things make a plain wall-clock timeout
wrong on 2 busy cores:

* **This node's own stalls.** A process that was SIGSTOPped, starved of CPU or blocked for a
  second sees, when it runs again, a proposer "silent" for that second -- though the proposer
  may have been fine and its proposal is waiting in this node's socket. Acting on that creates a
  second proposal at the height (a split vote risk) for nothing. The policy measures its own
  event loop's stalls (a tick that comes late) and ``elapsed()`` leaves them out: only time
  this node was running counts as the proposer's silence.
* **A slow committee.** When every header takes longer (load), a fixed timeout fires on
  proposers that are merely slow. The timeout adapts: ``current()`` = max(floor, ``LATENCY_FACTOR``
  x the median of the last ``WINDOW`` due->accepted latencies of headers), capped at
  ``MAX_FACTOR`` (1.25) x floor: a little slack for a slow committee, while a crashed proposer is
  still replaced within 2 x the configured timeout (tests/integration/test_faults_devnet.py).

Pure bookkeeping (a clock function in, numbers out): tests/unit/test_timeouts.py drives it with a
fake clock.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable

WINDOW = 16
LATENCY_FACTOR = 3.0
MAX_FACTOR = 1.25
TICK = 0.05  # the monitor's period (seconds)
LAG = 0.25  # a tick later than this is a stall of this process, not of its peers


class TimeoutPolicy:
    def __init__(self, floor: float, *, clock: Callable[[], float] = time.monotonic,
                 max_factor: float = MAX_FACTOR, lag: float = LAG) -> None:
        if floor <= 0:
            raise ValueError("the proposer timeout must be > 0 seconds")
        self.floor = floor
        self.max_factor = max_factor
        self.lag = lag
        self._clock = clock
        self._last_tick = clock()
        self._stalls: deque[tuple[float, float]] = deque(maxlen=256)  # (end, length) of own stalls
        self._latencies: deque[float] = deque(maxlen=WINDOW)
        self.stalled_s = 0.0  # total own stall time seen (status)

    # ------------------------------------------------------------------ own stalls
    def tick(self) -> None:
        """Called every ``TICK`` s by the node's monitor task (and by every ``elapsed``): a gap
        much longer than that is time this process did not run."""
        now = self._clock()
        gap = now - self._last_tick
        if gap > self.lag:
            length = gap - TICK
            self._stalls.append((now, length))
            self.stalled_s += length
        self._last_tick = now

    def elapsed(self, since: float) -> float:
        """Seconds since ``since`` (a clock value) during which this process was running."""
        self.tick()
        now = self._clock()
        own = 0.0
        for end, length in self._stalls:
            if end > since:
                own += min(length, end - since)
        return max(0.0, now - since - own)

    # ------------------------------------------------------------------ a slow committee
    def observe(self, latency: float) -> None:
        """A header was accepted ``latency`` s after its height became due (own stalls excluded)."""
        if latency >= 0:
            self._latencies.append(latency)

    def current(self) -> float:
        """The proposer timeout now: the floor, or more when headers have been slow lately."""
        if not self._latencies:
            return self.floor
        adaptive = LATENCY_FACTOR * statistics.median(self._latencies)
        return min(max(self.floor, adaptive), self.max_factor * self.floor)

    def to_dict(self) -> dict[str, float]:
        return {"floor": self.floor, "current": round(self.current(), 3), "ownStalls": round(self.stalled_s, 3)}
