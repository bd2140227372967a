"""Admission control (node/admission.py): a flood is told to come back instead of queueing."""

from __future__ import annotations

import pytest

from enclavenet.node.admission import Admission
from enclavenet.node.jsonrpc import RpcError
from enclavenet.node.ratelimit import RATE_LIMITED


class Clock:
    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t


def test_the_queue_is_bounded_by_measured_capacity_with_a_floor_of_full_batches() -> None:
    clock = Clock()
    batch = [500]
    a = Admission(queue_s=1.5, min_batches=4, batch_size=lambda: batch[0], clock=clock)
    assert a.capacity() is None and a.limit() == 2000  # not measured yet: four full batches
    a.check(1999)
    with pytest.raises(RpcError) as info:
        a.check(2000)
    err = info.value.to_json()
    assert err["code"] == RATE_LIMITED and err["data"]["reason"] == "busy" and err["data"]["queued"] == 2000
    assert "committee busy: 2000 transactions queued" in err["message"] and "retry in" in err["message"]
    # unmeasured: the floor's 2000 taken as 1.5 s of work, so a quarter of it drains in 0.375 s
    assert err["data"]["retryAfter"] == pytest.approx(0.375)
    # saturated acceptances: 500 tx every 0.1 s = 5,000 tx/s -> 1.5 s of it = 7,500 may queue
    for _ in range(11):
        clock.t += 0.1
        a.on_accepted(500, queued_after=6000)
    assert a.capacity() == pytest.approx(5000)
    assert a.limit() == 7500
    a.check(7499)
    with pytest.raises(RpcError, match=r"about 1\.5 s of work"):
        a.check(7500)
    # an idle committee's acceptances (queue below a batch) do not count as capacity ...
    clock.t += 20  # ... and old measurements age out of the window
    for _ in range(5):
        clock.t += 1.0
        a.on_accepted(10, queued_after=0)
    assert a.capacity() is None and a.limit() == 2000
    batch[0] = 50  # the batch size can change at run time (enclavenet_adminSetBatch)
    assert a.limit() == 200
    assert a.refused == 2


def test_off_admits_everything() -> None:
    a = Admission(queue_s=0, min_batches=1, batch_size=lambda: 1)
    a.check(10**9)
