"""Timeout votes: what a committee enclave signs to move a height to its next round.

A timeout vote for ``(height, round)`` says "this enclave has finalised ``height - 1`` at
``parent`` and no header at ``height`` reached it within round ``round``; the last header it
signed at ``height`` is ``locked`` (ZERO32: none)". ``quorum`` votes spanning ``min_types``
TEE types form a timeout certificate (TC) that opens round ``round + 1`` (docs/NODE.md).

The digest has its own domain tag and seven words, so a timeout signature can never be taken
for a header signature (four words, ``EnclaveNet.Header.v1``) or any other signed message.
"""

from __future__ import annotations

from .hashing import addr_word, b32, domain_tag, keccak256, u256

TIMEOUT_DOMAIN = domain_tag("EnclaveNet.Timeout.v1")


def timeout_digest(l1_chain_id: int, rollup: str, height: int, round_: int, parent: bytes, locked: bytes) -> bytes:
    """keccak256(DOMAIN, l1 chain id, rollup, height, round, parent hash, locked header hash)."""
    return keccak256(
        TIMEOUT_DOMAIN, u256(l1_chain_id), addr_word(rollup), u256(height), u256(round_), b32(parent), b32(locked)
    )


__all__ = ["TIMEOUT_DOMAIN", "timeout_digest"]
