"""The incremental compact sparse Merkle tree against a from-scratch reference build."""

from __future__ import annotations

import random
from typing import Any

import pytest
import sha3

from enclavenet.crypto import smt as smt_module
from enclavenet.crypto.hashing import ZERO32, keccak256
from enclavenet.crypto.smt import DEPTH, SparseMerkleTree, smt_key, smt_leaf, smt_verify


def reference_root(leaves: dict[bytes, bytes]) -> bytes:
    """The format, built from scratch: single-leaf subtrees collapse, empty = ZERO32."""
    items = sorted((int.from_bytes(k, "big"), h) for k, h in leaves.items())

    def build(depth: int, items: list[tuple[int, bytes]]) -> bytes:
        if not items:
            return ZERO32
        if len(items) == 1:
            return items[0][1]
        left = [it for it in items if not (it[0] >> (DEPTH - 1 - depth)) & 1]
        right = [it for it in items if (it[0] >> (DEPTH - 1 - depth)) & 1]
        return keccak256(b"\x01", build(depth + 1, left), build(depth + 1, right))

    return build(0, items)


def rand32(rnd: random.Random) -> bytes:
    return rnd.randbytes(32)


def test_empty_and_single_leaf() -> None:
    t = SparseMerkleTree()
    assert t.root == ZERO32 and len(t) == 0
    k = smt_key(b"\x01" * 20)
    leaf = smt_leaf(k, 5, b"\x02" * 32)
    t.set(k, leaf)
    assert t.root == leaf and t.proof(k) == [] and t.get(k) == leaf
    assert smt_verify(t.root, k, leaf, [])
    t.set(k, None)
    assert t.root == ZERO32 and len(t) == 0 and t.get(k) is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_inserts_updates_deletes_match_reference(seed: int) -> None:
    rnd = random.Random(seed)
    t = SparseMerkleTree()
    model: dict[bytes, bytes] = {}
    if seed == 3:  # start from a tree built in one pass (the empty-tree fast path)
        model = {rand32(rnd): rand32(rnd) for _ in range(300)}
        t.update(dict(model))
    for _ in range(25):
        changes: dict[bytes, bytes | None] = {}
        for _ in range(rnd.randrange(1, 60)):
            op = rnd.random()
            if op < 0.5 or not model:
                changes[rand32(rnd)] = rand32(rnd)  # insert
            elif op < 0.75:
                changes[rnd.choice(list(model))] = rand32(rnd)  # update
            else:
                changes[rnd.choice(list(model))] = None  # delete
        if rnd.random() < 0.2:
            changes[rand32(rnd)] = None  # deleting an absent key is a no-op
        t.update(changes)
        for k, v in changes.items():
            if v is None:
                model.pop(k, None)
            else:
                model[k] = v
        assert len(t) == len(model)
        assert t.root == reference_root(model)
    for k, v in rnd.sample(sorted(model.items()), min(20, len(model))):
        assert t.get(k) == v
        assert smt_verify(t.root, k, v, t.proof(k))
        assert not smt_verify(t.root, k, rand32(rnd), t.proof(k))


def test_keys_sharing_long_prefixes_and_collapse_on_delete() -> None:
    base = int.from_bytes(b"\xab" * 32, "big")
    keys = [(base ^ (1 << b)).to_bytes(32, "big") for b in (0, 1, 2, 200)] + [base.to_bytes(32, "big")]
    t = SparseMerkleTree()
    model = {k: keccak256(k) for k in keys}
    t.update(dict(model))
    assert t.root == reference_root(model)
    assert len(t.proof(keys[0])) == 256  # the two keys differ only in their last bit
    for k in keys[:-1]:
        t.set(k, None)
        del model[k]
        assert t.root == reference_root(model)
    assert t.root == model[keys[-1]]  # one leaf left: the tree collapses to it
    assert t._nodes.keys() == {1}  # no stale inner nodes remain


def test_update_cost_is_logarithmic(monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(5)
    t = SparseMerkleTree()
    t.update({rand32(rnd): rand32(rnd) for _ in range(4000)})
    calls = 0

    class Counting:
        @staticmethod
        def keccak_256(data: bytes = b"") -> Any:
            nonlocal calls
            calls += 1
            return sha3.keccak_256(data)

    monkeypatch.setattr(smt_module, "sha3", Counting)
    keys = list(rnd.sample([k for k in _keys(t)], 10))
    t.update({k: rand32(rnd) for k in keys})
    # ~log2(4000) = 12 levels per changed leaf; a rebuild would hash ~4000 nodes
    assert 0 < calls <= 10 * 30
    before = calls
    t.update({rand32(rnd): rand32(rnd)})
    assert calls - before <= 30


def _keys(t: SparseMerkleTree) -> list[bytes]:
    return [e[:32] for e in t._nodes.values() if len(e) == 64]


def test_validates_sizes() -> None:
    t = SparseMerkleTree()
    with pytest.raises(ValueError, match="32 bytes"):
        t.update({b"\x01" * 31: b"\x00" * 32})
    with pytest.raises(ValueError, match="32 bytes"):
        t.update({b"\x01" * 32: b"\x00" * 31})
    with pytest.raises(KeyError):
        t.proof(b"\x01" * 32)
