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

Updates are incremental: ``update`` changes the structure along each changed key's path
and then rehashes each touched inner node once, deepest first, so a batch touching k leaves
costs O(k log n) keccaks (paths shared near the root are hashed once). Memory: one dict
entry per node -- an inner node (~1.44 n of them) holds its 32-byte hash, a leaf position
holds ``key || leaf hash`` -- keyed by the node's heap index ``(1 << depth) | prefix``.
"""

from __future__ import annotations

import builtins

import sha3

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
    """Leaves keyed by 32-byte keys; incremental root; proofs for the escape hatch.

    ``_nodes`` maps the heap index ``i = (1 << depth) | prefix`` of every non-empty node of the
    collapsed tree (children of ``i`` are ``2i`` and ``2i + 1``) to either
    * 32 bytes: an inner node (>= 2 leaves below) and its hash, or
    * 64 bytes: ``key || leaf_hash`` -- the only leaf of this subtree, collapsed here.
    """

    __slots__ = ("_count", "_nodes")

    def __init__(self) -> None:
        self._nodes: dict[int, bytes] = {}
        self._count = 0

    @property
    def root(self) -> bytes:
        e = self._nodes.get(1)
        if e is None:
            return ZERO32
        return e[32:] if len(e) == 64 else e

    def __len__(self) -> int:
        return self._count

    def _find(self, key: bytes) -> int:
        """Heap index of the leaf ``key``, or 0 when absent."""
        k = int.from_bytes(key, "big")
        nodes = self._nodes
        i, d = 1, 0
        while True:
            e = nodes.get(i)
            if e is None:
                return 0
            if len(e) == 64:
                return i if e[:32] == key else 0
            i = (i << 1) | ((k >> (DEPTH - 1 - d)) & 1)
            d += 1

    def get(self, key: bytes) -> bytes | None:
        i = self._find(key)
        return self._nodes[i][32:] if i else None

    def set(self, key: bytes, leaf_hash: bytes | None) -> None:
        """Insert, replace or (``None``) delete the leaf at ``key``."""
        self.update({key: leaf_hash})

    def update(self, changes: dict[bytes, bytes | None]) -> None:
        """Apply inserts/replacements/deletions (``None``), then rehash touched nodes once."""
        dirty: builtins.set[int] = set()
        for key, leaf in changes.items():
            if len(key) != 32:
                raise ValueError("a key has 32 bytes")
            if leaf is None:
                self._delete(key, dirty)
            else:
                if len(leaf) != 32:
                    raise ValueError("a leaf hash has 32 bytes")
                self._insert(key, leaf, dirty)
        self._rehash(dirty)

    # --- internals -------------------------------------------------------------------
    def _insert(self, key: bytes, leaf: bytes, dirty: builtins.set[int]) -> None:
        nodes = self._nodes
        k = int.from_bytes(key, "big")
        i, d = 1, 0
        while True:
            e = nodes.get(i)
            if e is None:
                nodes[i] = key + leaf
                self._count += 1
                return
            if len(e) == 64:
                if e[:32] == key:
                    nodes[i] = key + leaf
                    return
                # split: push both leaves down to where their keys diverge
                k2 = int.from_bytes(e[:32], "big")
                while True:
                    nodes[i] = b""  # inner node, hashed in _rehash
                    dirty.add(i)
                    b1 = (k >> (DEPTH - 1 - d)) & 1
                    b2 = (k2 >> (DEPTH - 1 - d)) & 1
                    if b1 != b2:
                        nodes[(i << 1) | b1] = key + leaf
                        nodes[(i << 1) | b2] = e
                        self._count += 1
                        return
                    i = (i << 1) | b1
                    d += 1
            dirty.add(i)
            i = (i << 1) | ((k >> (DEPTH - 1 - d)) & 1)
            d += 1

    def _delete(self, key: bytes, dirty: builtins.set[int]) -> None:
        nodes = self._nodes
        k = int.from_bytes(key, "big")
        i, d = 1, 0
        path: list[int] = []
        while True:
            e = nodes.get(i)
            if e is None:
                return
            if len(e) == 64:
                if e[:32] != key:
                    return
                break
            path.append(i)
            i = (i << 1) | ((k >> (DEPTH - 1 - d)) & 1)
            d += 1
        del nodes[i]
        self._count -= 1
        dirty.update(path)
        # A parent left with exactly one leaf below it becomes that leaf (repeat upwards).
        while i > 1:
            p = i >> 1
            a = nodes.get(p << 1)
            b = nodes.get((p << 1) | 1)
            if a is None and b is not None and len(b) == 64:
                nodes[p] = b
                del nodes[(p << 1) | 1]
            elif b is None and a is not None and len(a) == 64:
                nodes[p] = a
                del nodes[p << 1]
            else:
                break
            i = p

    def _rehash(self, dirty: builtins.set[int]) -> None:
        nodes = self._nodes
        get = nodes.get
        keccak = sha3.keccak_256
        for i in sorted(dirty, key=int.bit_length, reverse=True):
            e = get(i)
            if e is None or len(e) == 64:
                continue  # collapsed into a leaf or removed since
            left = get(i << 1)
            right = get((i << 1) | 1)
            lh = ZERO32 if left is None else (left[32:] if len(left) == 64 else left)
            rh = ZERO32 if right is None else (right[32:] if len(right) == 64 else right)
            nodes[i] = keccak(_NODE + lh + rh).digest()

    def proof(self, key: bytes) -> list[bytes]:
        """Siblings from the leaf's level up to the root."""
        k = int.from_bytes(key, "big")
        nodes = self._nodes
        sibs: list[bytes] = []
        i, d = 1, 0
        while True:
            e = nodes.get(i)
            if e is None or (len(e) == 64 and e[:32] != key):
                raise KeyError("no leaf at this key")
            if len(e) == 64:
                break
            b = (k >> (DEPTH - 1 - d)) & 1
            s = nodes.get((i << 1) | (1 - b))
            sibs.append(ZERO32 if s is None else (s[32:] if len(s) == 64 else s))
            i = (i << 1) | b
            d += 1
        sibs.reverse()
        return sibs
