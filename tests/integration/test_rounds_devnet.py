"""Rounds / view change on a real devnet (4 node processes with their enclave processes, the
embedded L1, ``allow_faults``): the hostile host is the real peer-link fault layer.

* split vote: the round-0 proposal reaches one voter and is delayed past the timeout to the
  other two; the committee times round 0 out, round 1's proposer re-proposes (or replaces) it,
  and a header is accepted within the liveness bound k x proposer_timeout (k = n - quorum + 2
  = 3 here), every acknowledged transaction gets its receipt, every node agrees with L1;
* one host delays its proposal to everyone: the same, with nobody but the proposer signing in
  round 0.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from test_faults_devnet import Sender, converged, rpc, until

from enclavenet.devnet import Devnet

pytestmark = pytest.mark.integration

T = 2.0  # proposer_timeout
K = 3  # the liveness bound's k for 4 members, quorum 3 (docs/NODE.md "Liveness bound")


@pytest.fixture(scope="module")
def net() -> Iterator[Devnet]:
    with Devnet(n=4, batch_interval=0.05, proposer_timeout=T, allow_faults=True, batch_size=200) as d:
        yield d


def rotation(net: Devnet, h: int) -> list[int]:
    """Node indices of the proposers of height h in rounds 0, 1, 2, 3."""
    members = sorted((a for a in net.addresses if a), key=lambda a: int(a, 16))
    slot = members.index(net.addresses[net.proposer_index(h)])
    return [net.addresses.index(members[(slot + r) % len(members)]) for r in range(len(members))]


def rounds_entered(net: Devnet) -> int:
    return sum(int(((net.status(i) or {}).get("rounds") or {}).get("rounds", 0)) for i in range(4))


def delayed_proposal_recovers(net: Devnet, slow_to: str) -> float:
    """Pick a height H a few ahead (its proposal not built yet) whose proposer is not node 0;
    make that proposer's host delay its proposals (to two members, or to everyone) by 3 x T;
    return the time from H becoming due (H - 1 accepted) to H accepted."""
    entry = 0
    for _ in range(30):
        target = net.l1_height() + 3  # beyond the pipeline (2): nobody has built it yet
        order = rotation(net, target)
        if order[0] != entry:
            break
        until("a fresh header", lambda t=target: net.l1_height() >= t - 2, 30, every=0.01)
    p = order[0]
    victims = order[2:] if slow_to == "two" else order[1:]
    policy = {"delay": 3 * T, "ops": ["propose"], "peers": [net.rpc_urls[i] for i in victims]}
    before = rounds_entered(net)
    net.faults(p, links=policy)
    try:
        until("height H - 1", lambda: net.l1_height() >= target - 1, 60, every=0.01)
        t0 = time.monotonic()
        assert net.l1_height() == target - 1
        until("a header after the delayed proposal", lambda: net.l1_height() >= target, 60, every=0.01)
        recovery = time.monotonic() - t0
    finally:
        net.faults(p, links=None)
    assert rounds_entered(net) > before, "the height was not finished by a later round"
    print(f"delayed to {slow_to}: height {target} accepted {recovery:.2f}s after it became due; rounds "
          f"{[(net.status(i) or {}).get('rounds') for i in range(4)]}")
    return recovery


@pytest.mark.parametrize("slow_to", ["two", "everyone"])
def test_a_delayed_proposal_is_resolved_by_the_next_round_within_the_bound(net: Devnet, slow_to: str) -> None:
    with Sender(net, 0) as s:
        time.sleep(0.5)
        recovery = delayed_proposal_recovers(net, slow_to)
        time.sleep(1.0)
    assert recovery <= K * T, f"recovery took {recovery:.2f}s, more than {K} x {T}s"
    s.all_received()  # no acknowledged transaction lost
    converged(net, list(range(4)))
    # the delayed round-0 proposal arrived after its round was over: refused, nothing else signed
    h = net.l1_height()
    assert rpc(net.rpc_urls[0], "enclavenet_getHeader", hex(h))["hash"]
