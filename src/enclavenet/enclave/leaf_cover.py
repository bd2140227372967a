"""Cover re-salts: which unchanged balance leaves a batch re-salts along with the changed ones.

The balances tree's leaf hashes are public (the DAPs serve them for the escape hatch, and any
two leaf sets differ exactly where leaves changed). Without cover, a diff names
``keccak(address)`` of exactly the accounts whose balance a batch changed -- the recipients of
confidential transfers included. So every batch that changes ``c`` leaves also re-salts
``max(COVER_MIN, c)`` other leaves (as many as there are): their value stays, their salt
becomes ``balance_salt(secret, address, version)`` of this batch, so their leaf hashes change
like the real ones and an observer cannot tell which of the ``c + cover`` changed keys had a
balance change. The cover is drawn from the pre-batch tree with keys derived from the salt
secret (which only the committee holds) and the batch's version: unpredictable outside,
the same on every member.

What remains: the number of changed leaves shows within a factor of about 2, and an account
that changes in many batches still shows up more often than chance over many batches.
"""

from __future__ import annotations

from collections.abc import Container

from ..crypto.hashing import keccak256
from ..crypto.smt import SparseMerkleTree

COVER_MIN = 8
_COVER_DOMAIN = b"EnclaveNet.LeafCover.v1"


def cover_keys(
    tree: SparseMerkleTree, secret: bytes, version: int, changed: Container[bytes], n_changed: int, available: int
) -> list[bytes]:
    """Keys of up to ``max(COVER_MIN, n_changed)`` distinct leaves of ``tree`` not in
    ``changed`` (``available`` of them), in draw order (deterministic in ``tree``, ``secret``
    and ``version``); at most ``4 * want + 16`` draws, so it may return fewer."""
    want = min(max(COVER_MIN, n_changed), max(0, available))
    out: list[bytes] = []
    seen: set[bytes] = set()
    seed = keccak256(_COVER_DOMAIN, secret, version.to_bytes(32, "big"))
    tries = 0
    while len(out) < want and tries < 4 * want + 16:
        k = tree.leaf_near(keccak256(seed, tries.to_bytes(8, "big")))
        tries += 1
        if k is None:
            break
        if k in seen or k in changed:
            continue
        seen.add(k)
        out.append(k)
    return out


__all__ = ["COVER_MIN", "cover_keys"]
