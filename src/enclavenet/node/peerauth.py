"""Authenticated peer requests (issue 14, M4; docs/NODE.md "Peer links"): the costly ops
(``peers.AUTH_OPS``) are served to committee members only. The sender's enclave signs each
request (``peer_auth`` ecall, ``crypto.peer.peer_request_digest``) into the
``peers.PEER_AUTH_HEADER`` HTTP header as ``signer:expiry:signature``; the receiver checks the
signature is for itself, unexpired, and by an active committee member on L1."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from ..crypto.hashing import keccak256, to_checksum
from ..crypto.peer import MAX_PEER_AUTH_AHEAD, peer_request_digest
from ..crypto.secp256k1 import SignatureError, recover_address
from .batch import Refused
from .core import NodeCore
from .peers import PEER_AUTH_HEADER, PEER_AUTH_TTL, PeerClient, PeerError

ZERO_ADDRESS = "0x" + "00" * 20


async def sign_request(node: NodeCore, p: PeerClient, op: str, data: bytes) -> str:
    """The PEER_AUTH_HEADER value for ``op`` with body ``data`` to ``p``, signed by our enclave."""
    if node.host is None:
        raise PeerError(f"cannot sign a {op} request to {p.url}: the enclave is not running")
    to = p.address or ZERO_ADDRESS
    expiry = int(time.time()) + PEER_AUTH_TTL
    out = await node.host.call(
        "peer_auth", {"op": op, "to": bytes.fromhex(to[2:]), "body_hash": keccak256(data), "expiry": expiry}
    )
    return f"{node.address}:{expiry}:{bytes(out['signature']).hex()}"


async def sign_txs(node: NodeCore, data: bytes) -> str:
    """The PEER_AUTH_HEADER value for a ``txs`` forward ``data`` to every member (addressed to
    the zero address): one enclave signature per burst, whatever the committee's size."""
    if node.host is None:
        raise PeerError("cannot sign a txs forward: the enclave is not running")
    expiry = int(time.time()) + PEER_AUTH_TTL
    out = await node.host.call(
        "peer_auth", {"op": "txs", "to": bytes(20), "body_hash": keccak256(data), "expiry": expiry}
    )
    return f"{node.address}:{expiry}:{bytes(out['signature']).hex()}"


def txs_trusted(node: NodeCore, body: bytes, value: str | None) -> bool:
    """Whether a ``txs`` forward is signed by an active member's enclave (``sign_txs``): then the
    member's ingress checked its routing hints (node/hintauth.py) and we need not. Never raises,
    never polls L1 (an unsigned or unknown forward is simply checked envelope by envelope)."""
    if not value:
        return False
    try:
        signer, exp, sig_hex = value.split(":")
        expiry, sig = int(exp), bytes.fromhex(sig_hex)
        now = time.time()
        if not now <= expiry <= now + MAX_PEER_AUTH_AHEAD or to_checksum(signer) not in node.members():
            return False
        digest = peer_request_digest(node.cfg.l1_chain_id, node.cfg.rollup, ZERO_ADDRESS, "txs", keccak256(body), expiry)
        return to_checksum(recover_address(digest, sig)) == to_checksum(signer)
    except (ValueError, SignatureError):
        return False


async def check_request(
    node: NodeCore, op: str, body: bytes, value: str | None, poll_l1: Callable[[], Awaitable[None]]
) -> None:
    """Refuse ``op`` (raise Refused) unless an active member's enclave signed this very request."""
    if not value:
        raise Refused(f"peer op {op} is served to committee members only: sign the request ({PEER_AUTH_HEADER})")
    try:
        signer, exp, sig_hex = value.split(":")
        expiry, sig = int(exp), bytes.fromhex(sig_hex)
        digest = peer_request_digest(node.cfg.l1_chain_id, node.cfg.rollup, node.address, op, keccak256(body), expiry)
        ok = to_checksum(recover_address(digest, sig)) == to_checksum(signer)
    except (ValueError, SignatureError):
        raise Refused(f"peer op {op}: malformed {PEER_AUTH_HEADER} (signer:expiry:signature)") from None
    now = time.time()
    if not now <= expiry <= now + MAX_PEER_AUTH_AHEAD:
        raise Refused(f"peer op {op}: the signed request expired or expires too far ahead; sign a fresh one")
    if not ok:
        raise Refused(f"peer op {op}: the request's signature is not by {signer} for this member")
    if to_checksum(signer) not in node.members():
        await poll_l1()  # maybe it registered just now
        if to_checksum(signer) not in node.members():
            raise Refused(f"peer op {op} is served to committee members only: {signer} is not active on L1")
