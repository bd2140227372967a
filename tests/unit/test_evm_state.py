"""The storage commitment against a from-scratch reference, and snapshot canonicality."""

from __future__ import annotations

import random

from enclavenet.crypto.hashing import ZERO32, keccak256
from enclavenet.enclave.state import AccountChange, StateCommitment, WorldState


def reference_root(entries: dict[bytes, bytes]) -> bytes:
    buckets: dict[int, list[tuple[bytes, bytes]]] = {}
    for k, body in entries.items():
        buckets.setdefault(int.from_bytes(k[:2], "big"), []).append((k, body))
    level = [
        keccak256(b"\x05", *[k + v for k, v in sorted(buckets[i])]) if i in buckets else ZERO32
        for i in range(1 << 16)
    ]
    while len(level) > 1:
        level = [
            ZERO32 if all(h == ZERO32 for h in level[i : i + 16]) else keccak256(b"\x06", *level[i : i + 16])
            for i in range(0, len(level), 16)
        ]
    return level[0]


def test_commitment_matches_reference_under_random_changes() -> None:
    rnd = random.Random(3)
    c = StateCommitment()
    model: dict[bytes, bytes] = {}
    assert c.root == ZERO32
    # a few keys share a bucket (same first two bytes) to exercise sorting inside buckets
    shared = [b"\xaa\xbb" + rnd.randbytes(30) for _ in range(5)]
    for step in range(12):
        changes: dict[bytes, bytes | None] = {}
        for _ in range(rnd.randrange(1, 400)):
            r = rnd.random()
            if r < 0.5 or not model:
                k = rnd.choice(shared) if rnd.random() < 0.1 else rnd.randbytes(32)
                changes[k] = b"\x20" + rnd.randbytes(32)
            elif r < 0.8:
                changes[rnd.choice(list(model))] = b"\x40" + rnd.randbytes(64)
            else:
                changes[rnd.choice(list(model))] = None
        c.update(changes)
        for k, v in changes.items():
            if v is None:
                model.pop(k, None)
            else:
                model[k] = v
        assert len(c) == len(model)
        if step % 4 == 3:
            assert c.root == reference_root(model)
    for k in list(model):
        c.update({k: None})
    assert c.root == ZERO32 and len(c) == 0


def test_state_root_binds_balances_and_snapshot_is_canonical() -> None:
    a, b = b"\x01" * 20, b"\x02" * 20
    s1, s2 = WorldState(), WorldState()
    # the same changes in a different order give the same bytes and roots
    s1.apply({a: AccountChange(1, 5, keccak256(b"")), b: AccountChange(0, 7, keccak256(b""))}, {}, [], b"k" * 32, 3)
    s2.apply({b: AccountChange(0, 7, keccak256(b"")), a: AccountChange(1, 5, keccak256(b""))}, {}, [], b"k" * 32, 3)
    assert s1.snapshot(1, 3) == s2.snapshot(1, 3) and s1.state_root == s2.state_root
    # a balance-only change (b has no nonce, so no commitment entry) still moves the state root
    before = s1.state_root
    s1.apply({b: AccountChange(0, 8, keccak256(b""))}, {}, [], b"k" * 32, 4)
    assert s1.state_root != before and s1.commitment.root == s2.commitment.root
    restored, version = WorldState.from_snapshot(s1.snapshot(1, 4), 1)
    assert version == 4 and restored.state_root == s1.state_root
