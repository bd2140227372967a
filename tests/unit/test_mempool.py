"""The node's mempool: nonce order per sender, bounds, duplicates, in-flight and L1 acceptance."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from enclavenet.crypto.envelope import Envelope, RoutingHint, seal
from enclavenet.node.mempool import DuplicateTransaction, Mempool, MempoolError, MempoolFull

EPOCH_PUB = X25519PrivateKey.generate().public_key().public_bytes_raw()
ALICE = bytes.fromhex("aa" * 20)
BOB = bytes.fromhex("bb" * 20)


def env(sender: bytes, nonce: int, epoch: int = 0, size: int = 40) -> bytes:
    return seal(os.urandom(size), EPOCH_PUB, 1337, epoch, RoutingHint(sender, nonce)).envelope.encode()


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_orders_each_sender_by_nonce_and_senders_by_arrival() -> None:
    mp = Mempool()
    a2, a0, b0, a1 = env(ALICE, 2), env(ALICE, 0), env(BOB, 0), env(ALICE, 1)
    for raw in (a2, a0, b0, a1):
        mp.add(raw)
    got = mp.select(10, height=1)
    order = [(e.sender, e.nonce) for e in got]
    assert order == [(ALICE, 0), (ALICE, 1), (ALICE, 2), (BOB, 0)]
    assert all(e.inflight == 1 for e in got)
    assert mp.select(10, height=2) == []  # in flight: not proposed twice


def test_batch_limit_and_continuation_in_next_batch() -> None:
    mp = Mempool()
    for n in range(5):
        mp.add(env(ALICE, n))
    first = mp.select(3, height=1)
    assert [e.nonce for e in first] == [0, 1, 2]
    second = mp.select(3, height=2)
    assert [e.nonce for e in second] == [3, 4]


def test_nonce_gap_waits_then_goes_through() -> None:
    clock = Clock()
    mp = Mempool(gap_timeout=2.0, clock=clock)
    mp.add(env(ALICE, 0))
    mp.select(10, height=1)
    mp.on_accepted(1, [e.receipt_id for e in mp.entries()], [(ALICE, 0)])
    mp.add(env(ALICE, 2))  # nonce 1 missing
    assert mp.select(10, height=2) == []
    clock.t += 2.5
    got = mp.select(10, height=2)
    assert [e.nonce for e in got] == [2]


def test_bounds_per_sender_and_total_with_clear_errors() -> None:
    mp = Mempool(max_total=3, max_per_sender=2)
    mp.add(env(ALICE, 0))
    mp.add(env(ALICE, 1))
    with pytest.raises(MempoolFull, match="per sender"):
        mp.add(env(ALICE, 2))
    mp.add(env(BOB, 0))
    with pytest.raises(MempoolFull, match=r"mempool full: 3 transactions pending \(limit 3\)"):
        mp.add(env(bytes(20), 0))
    assert len(mp) == 3


def test_duplicates_pending_and_included_are_refused() -> None:
    mp = Mempool()
    raw = env(ALICE, 0)
    e = mp.add(raw)
    with pytest.raises(DuplicateTransaction, match="already pending"):
        mp.add(raw)
    mp.select(10, height=1)
    assert mp.on_accepted(1, [e.receipt_id], [(ALICE, 0)]) == 1
    assert len(mp) == 0
    with pytest.raises(DuplicateTransaction, match="already included at height 1"):
        mp.add(raw)
    assert mp.included_height(e.receipt_id) == 1


def test_malformed_hintless_oversized_and_wrong_epoch_are_refused() -> None:
    mp = Mempool(max_bytes=1000)
    with pytest.raises(MempoolError, match="malformed envelope"):
        mp.add(b"\x01\x00garbage")
    no_hint = seal(b"x" * 10, EPOCH_PUB, 1337, 0).envelope.encode()
    with pytest.raises(MempoolError, match="no routing hint"):
        mp.add(no_hint)
    with pytest.raises(MempoolError, match="too large"):
        mp.add(env(ALICE, 0, size=2000))
    with pytest.raises(MempoolError, match=r"epoch 5.*accepts epochs \[0, 1\]"):
        mp.add(env(ALICE, 0, epoch=5), epochs=[0, 1])
    assert len(mp) == 0
    assert Envelope.decode(env(ALICE, 0)).hint == RoutingHint(ALICE, 0)


def test_lost_proposal_returns_entries_to_pending_and_keeps_them() -> None:
    """The race: our proposal at height 1 lost to another header; nothing is dropped."""
    mp = Mempool()
    ours = [mp.add(env(ALICE, n)) for n in range(3)]
    theirs = mp.add(env(BOB, 0))
    mp.select(3, height=1)  # Alice's three go into our proposal
    mp.mark_inflight([theirs.receipt_id], 1)  # seen in the rival proposal
    # the rival header at height 1 wins on L1 with only Bob's transaction
    mp.on_accepted(1, [theirs.receipt_id], [(BOB, 0)])
    assert len(mp) == 3
    assert mp.pending_count == 3
    again = mp.select(10, height=2)
    assert [e.receipt_id for e in again] == [e.receipt_id for e in ours]


def test_release_abandoned_proposals() -> None:
    mp = Mempool()
    for n in range(4):
        mp.add(env(ALICE, n))
    mp.select(2, height=5)
    mp.select(2, height=6)
    assert mp.release(6) == 2
    assert [e.nonce for e in mp.select(10, height=6)] == [2, 3]
    assert mp.stats()["inflight"] == 4


def test_one_client_cannot_squat_the_pool_under_made_up_senders() -> None:
    """Issue 14 M4: routing hints are not signed, so a spammer files envelopes under fresh
    addresses; the per-client share (the JSON-RPC client IP) bounds what it can hold."""
    mp = Mempool(max_total=10, max_per_sender=10, max_per_origin=4)
    squat = [env(os.urandom(20), 0) for _ in range(6)]
    for raw in squat[:4]:
        mp.add(raw, origin="10.0.0.66")
    with pytest.raises(MempoolFull, match="for this client: 4 of its transactions pending"):
        mp.add(squat[4], origin="10.0.0.66")
    # an honest client, and envelopes forwarded by peers (no origin), still get in
    mp.add(env(ALICE, 0), origin="10.0.0.7")
    mp.add(env(BOB, 0))
    assert len(mp) == 6
    # once the squatter's entries are included, its share is free again
    from enclavenet.crypto.hashing import keccak256

    mp.on_accepted(1, [keccak256(r) for r in squat[:2]])
    mp.add(squat[4], origin="10.0.0.66")
    assert Mempool(max_total=100).max_per_origin == 50
