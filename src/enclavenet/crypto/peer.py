"""Authenticated peer requests (issue 14, M4): a committee member's host asks its enclave to
sign each costly peer request (a snapshot, stored batches, an epoch bundle or push, an announce),
and the receiving host serves it only if the signer is an active committee member on L1.

    digest = keccak256("EnclaveNet.PeerRequest.v1" || l1_chain_id (32) || rollup (20)
                       || to (20) || keccak256(op) || body_hash (32) || expiry (8)),
    body_hash = keccak256(the request's CBOR body)

``to`` is the receiving member's enclave address (a request cannot be replayed to another
member), ``expiry`` a unix time a short while ahead. The label keeps it apart from every other
enclave signature (headers, quotes, epoch exports, DAP receipts, EIP-712 views): none of those
digests is a keccak of a byte string that starts with it.
"""

from __future__ import annotations

import struct

from .hashing import address_bytes, keccak256

PEER_REQUEST_LABEL = b"EnclaveNet.PeerRequest.v1"
MAX_PEER_AUTH_AHEAD = 300  # seconds: an expiry further ahead is refused (by the enclave and peers)


def peer_request_digest(
    l1_chain_id: int, rollup: str | bytes, to: str | bytes, op: str, body_hash: bytes, expiry: int
) -> bytes:
    if len(body_hash) != 32:
        raise ValueError("a peer request's body hash has 32 bytes")
    return keccak256(
        PEER_REQUEST_LABEL
        + l1_chain_id.to_bytes(32, "big")
        + address_bytes(rollup)
        + address_bytes(to)
        + keccak256(op.encode())
        + body_hash
        + struct.pack(">Q", expiry)
    )
