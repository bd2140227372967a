"""Binary Merkle tree over 32-byte leaves (tx root, receipts root, DAP data commitment).

    leaf node   = keccak256(0x00 || leaf)
    inner node  = keccak256(0x01 || left || right)
    odd node    = promoted unchanged to the next level
    empty tree  = 32 zero bytes

A proof is the list of (sibling, sibling_is_left) pairs from the leaf up; a promoted
level contributes no pair. The L1 verifies the same way (DAP answers, issue 6).
"""

from __future__ import annotations

from .hashing import ZERO32, keccak256

_LEAF = b"\x00"
_NODE = b"\x01"


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    level = [keccak256(_LEAF, x) for x in leaves]
    levels = [level]
    while len(level) > 1:
        nxt = [keccak256(_NODE, level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        levels.append(level)
    return levels


def merkle_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return ZERO32
    return _levels(leaves)[-1][0]


def merkle_proof(leaves: list[bytes], index: int) -> list[tuple[bytes, bool]]:
    if not 0 <= index < len(leaves):
        raise IndexError("leaf index out of range")
    proof: list[tuple[bytes, bool]] = []
    for level in _levels(leaves)[:-1]:
        sib = index ^ 1
        if sib < len(level):
            proof.append((level[sib], sib < index))
        index //= 2
    return proof


def merkle_verify(root: bytes, leaf: bytes, proof: list[tuple[bytes, bool]]) -> bool:
    h = keccak256(_LEAF, leaf)
    for sib, sib_is_left in proof:
        h = keccak256(_NODE, sib, h) if sib_is_left else keccak256(_NODE, h, sib)
    return h == root


def merkle_proofs(leaves: list[bytes]) -> list[list[bytes]]:
    """The siblings (from the leaf up) of every leaf's proof, from one pass over the tree:
    what ``merkle_proof`` gives for each index, without the flags (``merkle_verify_at`` derives
    them from the index and the leaf count)."""
    if not leaves:
        return []
    levels = _levels(leaves)[:-1]
    out: list[list[bytes]] = []
    for index in range(len(leaves)):
        sibs: list[bytes] = []
        i = index
        for level in levels:
            s = i ^ 1
            if s < len(level):
                sibs.append(level[s])
            i //= 2
        out.append(sibs)
    return out


def merkle_levels(leaves: list[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaf nodes first (for ``merkle_siblings``); [] for no leaves."""
    return _levels(leaves) if leaves else []


def merkle_siblings(levels: list[list[bytes]], index: int) -> list[bytes]:
    """One leaf's ``merkle_proofs`` entry, read off levels from ``merkle_levels``."""
    sibs: list[bytes] = []
    for level in levels[:-1]:
        s = index ^ 1
        if s < len(level):
            sibs.append(level[s])
        index //= 2
    return sibs


def merkle_verify_at(root: bytes, leaf: bytes, index: int, count: int, siblings: list[bytes]) -> bool:
    """True when ``leaf`` is leaf number ``index`` of a ``count``-leaf tree with this root.

    The path (which side each sibling is on, which levels promote the node unchanged) follows
    from ``index`` and ``count`` alone, so a proof binds the position as well as the leaf."""
    if not 0 <= index < count or count > 1 << 32:
        return False
    h = keccak256(_LEAF, leaf)
    n, i, k = count, index, 0
    while n > 1:
        s = i ^ 1
        if s < n:
            if k >= len(siblings):
                return False
            sib = siblings[k]
            k += 1
            h = keccak256(_NODE, sib, h) if s < i else keccak256(_NODE, h, sib)
        i //= 2
        n = (n + 1) // 2
    return k == len(siblings) and h == root
