"""node/timeouts.py: the proposer timeout leaves out this node's own stalls and adapts to a slow
committee within a bound, driven by a fake clock (no processes, no sleeping)."""

from __future__ import annotations

import pytest

from enclavenet.node.timeouts import LATENCY_FACTOR, MAX_FACTOR, TICK, TimeoutPolicy


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def run(self, seconds: float, pol: TimeoutPolicy) -> None:
        """This process runs for ``seconds``: the monitor ticks on time."""
        end = self.t + seconds
        while self.t < end:
            self.t = min(end, self.t + TICK)
            pol.tick()


def test_a_stall_of_this_process_is_not_counted_as_the_proposers_silence() -> None:
    c = Clock()
    pol = TimeoutPolicy(1.0, clock=c)
    since = c()
    c.run(0.4, pol)
    c.t += 2.0  # SIGSTOP / CPU starvation: no tick for 2 s
    # the first thing the node does when it runs again is look at the elapsed time
    assert pol.elapsed(since) == pytest.approx(0.4 + TICK, abs=1e-6)
    assert pol.elapsed(since) < pol.current()  # so no takeover: the proposer had 0.45 s, not 2.45 s
    c.run(1.0, pol)
    assert pol.elapsed(since) == pytest.approx(1.4 + TICK, abs=1e-6)
    assert pol.stalled_s == pytest.approx(2.0 - TICK, abs=1e-6)


def test_a_stall_before_the_height_was_due_does_not_shorten_the_wait() -> None:
    c = Clock()
    pol = TimeoutPolicy(1.0, clock=c)
    c.t += 3.0  # stalled, then the height becomes due
    pol.tick()
    since = c()
    c.run(0.5, pol)
    assert pol.elapsed(since) == pytest.approx(0.5, abs=1e-6)


def test_the_timeout_follows_slow_headers_but_never_past_the_bound() -> None:
    pol = TimeoutPolicy(1.5, clock=Clock())
    assert pol.current() == 1.5
    for _ in range(16):
        pol.observe(0.3)  # fast headers: the floor
    assert pol.current() == 1.5
    for _ in range(16):
        pol.observe(0.55)  # a loaded machine: 3 x the median
    assert pol.current() == pytest.approx(LATENCY_FACTOR * 0.55)
    for _ in range(16):
        pol.observe(30.0)  # a dead proposer's height must not stretch the wait without bound
    assert pol.current() == pytest.approx(MAX_FACTOR * 1.5)
    with pytest.raises(ValueError, match="> 0"):
        TimeoutPolicy(0.0)
