"""Inclusion proofs served with receipts (issue 14 M6; verified by client/receipts.py).

For every receipt entry of an accepted header's batch data: its index among the entries, their
count, and the Merkle siblings of ``keccak256(entry)`` under the header's ``receipts_root``
(``crypto.merkle``; the path follows from index and count). One pass over the tree per header.
"""

from __future__ import annotations

from typing import Any

from ..crypto.hashing import keccak256
from ..crypto.merkle import merkle_proofs


def receipt_proof_fields(entries: list[bytes]) -> list[dict[str, Any]]:
    """``{receiptIndex, receiptCount, receiptProof}`` (JSON-RPC hex) for each entry, in order."""
    n = len(entries)
    count = hex(n)
    return [
        {"receiptIndex": hex(i), "receiptCount": count, "receiptProof": ["0x" + s.hex() for s in sibs]}
        for i, sibs in enumerate(merkle_proofs([keccak256(e) for e in entries]))
    ]


__all__ = ["receipt_proof_fields"]
