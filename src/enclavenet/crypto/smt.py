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

Updates are incremental: ``update`` finds each changed key's position (a binary search over
the depths of its path, ~6 dict lookups), changes the structure there, then rehashes the
touched inner nodes level by level, deepest first, each once -- so a batch touching k leaves
costs O(k log n) keccaks, and the paths it shares near the root are hashed once. An empty
tree is built in one pass from the sorted leaves. Memory: one dict entry per node -- an inner
node (~1.44 n of them) holds its 32-byte hash, a leaf position holds ``key || leaf hash`` --
keyed by the node's heap index ``(1 << depth) | prefix``: ~460 bytes per leaf in all.
"""

from __future__ import annotations

import builtins
from bisect import bisect_left

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
    The nodes on a key's path that exist are exactly those at depths 0..D for some D, which
    is what makes the binary search in ``_locate`` valid.
    """

    __slots__ = ("_count", "_max_depth", "_nodes")

    def __init__(self) -> None:
        self._nodes: dict[int, bytes] = {}
        self._count = 0
        self._max_depth = 0  # no node is deeper than this

    @property
    def root(self) -> bytes:
        e = self._nodes.get(1)
        if e is None:
            return ZERO32
        return e[32:] if len(e) == 64 else e

    def __len__(self) -> int:
        return self._count

    def _locate(self, k: int) -> tuple[int, int]:
        """(depth, index) of the deepest existing node on key ``k``'s path; (-1, 0) if empty."""
        nodes = self._nodes
        if 1 not in nodes:
            return -1, 0
        lo, hi = 0, self._max_depth
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if ((1 << mid) | (k >> (DEPTH - mid))) in nodes:
                lo = mid
            else:
                hi = mid - 1
        return lo, (1 << lo) | (k >> (DEPTH - lo))

    def get(self, key: bytes) -> bytes | None:
        _, i = self._locate(int.from_bytes(key, "big"))
        e = self._nodes.get(i)
        return e[32:] if e is not None and len(e) == 64 and e[:32] == key else None

    def leaf_near(self, key: bytes) -> bytes | None:
        """The key of the leaf reached by following ``key``'s bits from the root, taking the
        only child where the bit's side is empty (None for an empty tree). Every leaf is
        reachable; with random ``key`` it picks a leaf at random (not uniformly)."""
        nodes = self._nodes
        e = nodes.get(1)
        if e is None:
            return None
        k = int.from_bytes(key, "big")
        i, depth = 1, 0
        while len(e) != 64:
            b = (k >> (DEPTH - 1 - depth)) & 1
            c = (i << 1) | b
            nxt = nodes.get(c)
            if nxt is None:
                c ^= 1
                nxt = nodes[c]
            i, e, depth = c, nxt, depth + 1
        return e[:32]

    def set(self, key: bytes, leaf_hash: bytes | None) -> None:
        """Insert, replace or (``None``) delete the leaf at ``key``."""
        self.update({key: leaf_hash})

    def update(self, changes: dict[bytes, bytes | None]) -> None:
        """Apply inserts/replacements/deletions (``None``), then rehash touched nodes once."""
        for key, leaf in changes.items():
            if len(key) != 32:
                raise ValueError("a key has 32 bytes")
            if leaf is not None and len(leaf) != 32:
                raise ValueError("a leaf hash has 32 bytes")
        if not self._nodes and len(changes) > 64:
            self._build_from({k: v for k, v in changes.items() if v is not None})
            return
        dirty: builtins.set[int] = set()
        for key, leaf in changes.items():
            if leaf is None:
                self._delete(key, dirty)
            else:
                self._insert(key, leaf, dirty)
        self._rehash(dirty)

    # --- internals -------------------------------------------------------------------
    def _insert(self, key: bytes, leaf: bytes, dirty: builtins.set[int]) -> None:
        nodes = self._nodes
        k = int.from_bytes(key, "big")
        d, i = self._locate(k)
        if d < 0:
            nodes[1] = key + leaf
            self._count += 1
            return
        e = nodes[i]
        if len(e) == 32:  # inner node whose child on our side is empty
            c = (i << 1) | ((k >> (DEPTH - 1 - d)) & 1)
            nodes[c] = key + leaf
            self._count += 1
            dirty.add(i)
            if d + 1 > self._max_depth:
                self._max_depth = d + 1
            return
        if e[:32] == key:
            nodes[i] = key + leaf
            if i > 1:
                dirty.add(i >> 1)
            return
        # split: push both leaves down to where their keys diverge
        k2 = int.from_bytes(e[:32], "big")
        while True:
            nodes[i] = ZERO32  # inner node, hashed in _rehash
            b1 = (k >> (DEPTH - 1 - d)) & 1
            b2 = (k2 >> (DEPTH - 1 - d)) & 1
            if b1 != b2:
                nodes[(i << 1) | b1] = key + leaf
                nodes[(i << 1) | b2] = e
                dirty.add(i)
                self._count += 1
                if d + 1 > self._max_depth:
                    self._max_depth = d + 1
                return
            i = (i << 1) | b1
            d += 1

    def _delete(self, key: bytes, dirty: builtins.set[int]) -> None:
        nodes = self._nodes
        _, i = self._locate(int.from_bytes(key, "big"))
        e = nodes.get(i)
        if e is None or len(e) != 64 or e[:32] != key:
            return
        del nodes[i]
        self._count -= 1
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
        if i > 1:
            dirty.add(i >> 1)

    def _rehash(self, dirty: builtins.set[int]) -> None:
        """Rehash ``dirty`` inner nodes and all their ancestors, deepest level first, once each."""
        if not dirty:
            return
        nodes = self._nodes
        get = nodes.get
        keccak = sha3.keccak_256
        levels: dict[int, builtins.set[int]] = {}
        for i in dirty:
            levels.setdefault(i.bit_length(), set()).add(i)
        level = max(levels)
        while level >= 1:
            cur = levels.pop(level, None)
            if cur:
                parents = levels.setdefault(level - 1, set()) if level > 1 else None
                for i in cur:
                    e = get(i)
                    if e is not None and len(e) == 32:
                        left = get(i << 1)
                        right = get((i << 1) | 1)
                        lh = ZERO32 if left is None else (left[32:] if len(left) == 64 else left)
                        rh = ZERO32 if right is None else (right[32:] if len(right) == 64 else right)
                        nodes[i] = keccak(_NODE + lh + rh).digest()
                    if parents is not None:
                        parents.add(i >> 1)
            level -= 1

    def _build_from(self, leaves: dict[bytes, bytes]) -> None:
        """Build an empty tree from scratch in one pass over the sorted leaves."""
        items = sorted((int.from_bytes(k, "big"), k, v) for k, v in leaves.items())
        ks = [it[0] for it in items]
        nodes = self._nodes
        keccak = sha3.keccak_256
        max_depth = 0

        def build(lo: int, hi: int, depth: int, idx: int) -> bytes:
            nonlocal max_depth
            if depth > max_depth:
                max_depth = depth
            if hi - lo == 1:
                _, key, leaf = items[lo]
                nodes[idx] = key + leaf
                return leaf
            prefix = idx ^ (1 << depth)
            mid = bisect_left(ks, ((prefix << 1) | 1) << (DEPTH - 1 - depth), lo, hi)
            lh = build(lo, mid, depth + 1, idx << 1) if mid > lo else ZERO32
            rh = build(mid, hi, depth + 1, (idx << 1) | 1) if hi > mid else ZERO32
            h = keccak(_NODE + lh + rh).digest()
            nodes[idx] = h
            return h

        if items:
            build(0, len(items), 0, 1)
        self._count = len(items)
        self._max_depth = max_depth

    def proof(self, key: bytes) -> list[bytes]:
        """Siblings from the leaf's level up to the root."""
        _, i = self._locate(int.from_bytes(key, "big"))
        e = self._nodes.get(i)
        if e is None or len(e) != 64 or e[:32] != key:
            raise KeyError("no leaf at this key")
        nodes = self._nodes
        sibs: list[bytes] = []
        while i > 1:
            s = nodes.get(i ^ 1)
            sibs.append(ZERO32 if s is None else (s[32:] if len(s) == 64 else s))
            i >>= 1
        return sibs
