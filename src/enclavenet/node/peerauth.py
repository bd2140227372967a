"""Authenticated peer requests (issue 14, M4; docs/NODE.md "Peer links"): the costly ops
(``peers.AUTH_OPS``) are served to committee members only. The sender's enclave signs each
request (``peer_auth`` ecall, ``crypto.peer.peer_request_digest``) into the
``peers.PEER_AUTH_HEADER`` HTTP header as ``signer:expiry:signature``; the receiver checks the
signature is for itself, unexpired, and by an active committee member on L1."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from ..crypto.hashing import address_bytes, keccak256, to_checksum
from ..crypto.peer import MAX_PEER_AUTH_AHEAD, peer_request_digest
from ..crypto.secp256k1 import SignatureError, SigningKey, recover_address
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


TXS_KEY_LABEL = b"EnclaveNet.txs-forward-key.v1"  # what a member's enclave signs for its host's forward key
TXS_BURST_LABEL = b"EnclaveNet.txs-forward.v1"  # what that key signs for each forwarded burst
TXS_KEY_TTL = 240  # seconds a forward-key delegation is good for (<= MAX_PEER_AUTH_AHEAD)
_txs_keys: dict[tuple[str, str, str, str], bool] = {}  # verified delegations (bounded)


def txs_burst_digest(node: NodeCore, body: bytes) -> bytes:
    return keccak256(TXS_BURST_LABEL + node.cfg.l1_chain_id.to_bytes(32, "big") + address_bytes(node.cfg.rollup)
                     + keccak256(body))


class TxsSigner:
    """Signs ``txs`` forwards without an ecall per burst: the member's enclave signs, once per
    ``TXS_KEY_TTL``, a delegation to a key this host made (``peer_auth``, op ``txs_key``, addressed
    to no one); the host signs each burst with it. The receiver verifies a delegation once and then
    one signature per burst (``txs_trusted``). The host decides what it forwards whoever signs, so
    this authenticates *which member* forwards, which is all a receiver believes (its ingress
    checked the hints); the enclave's queue, busy with a batch, never delays a forward."""

    def __init__(self) -> None:
        self.key = SigningKey.generate()
        self.prefix: str | None = None
        self.expiry = 0
        self._refreshing: asyncio.Task[None] | None = None

    async def _refresh(self, node: NodeCore) -> None:
        if node.host is None:
            raise PeerError("cannot sign a txs forward key: the enclave is not running")
        expiry = int(time.time()) + TXS_KEY_TTL
        out = await node.host.call("peer_auth", {
            "op": "txs_key", "to": bytes(20), "body_hash": keccak256(TXS_KEY_LABEL + address_bytes(self.key.address)),
            "expiry": expiry})
        self.prefix = f"{node.address}:{expiry}:{bytes(out['signature']).hex()}:{self.key.address}"
        self.expiry = expiry

    def _refresh_soon(self, node: NodeCore) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh(node))

    async def header(self, node: NodeCore, data: bytes) -> str | None:
        """The PEER_AUTH_HEADER value for forward ``data``, or None (not signed: receivers check
        each hint) while no delegation could be had."""
        left = self.expiry - time.time()
        if left < 60:
            self._refresh_soon(node)
        if left < 10:
            assert self._refreshing is not None
            with contextlib.suppress(Exception):  # the first one (or after a long stall): wait a little
                await asyncio.wait_for(asyncio.shield(self._refreshing), 2.0)
            if self.expiry - time.time() < 10 or self.prefix is None:
                return None
        return f"{self.prefix}:{self.key.sign(txs_burst_digest(node, data)).hex()}"


def txs_trusted(node: NodeCore, body: bytes, value: str | None) -> bool:
    """Whether a ``txs`` forward is signed by an active member (``TxsSigner``): then the member's
    ingress checked its routing hints (node/hintauth.py) and we need not. Never raises, never
    polls L1 (an unsigned or unknown forward is simply checked envelope by envelope)."""
    if not value:
        return False
    try:
        signer, exp, dsig, host_key, bsig = value.split(":")
        expiry = int(exp)
        now = time.time()
        if not now <= expiry <= now + MAX_PEER_AUTH_AHEAD or to_checksum(signer) not in node.members():
            return False
        k = (signer, exp, dsig, host_key)
        if k not in _txs_keys:
            digest = peer_request_digest(node.cfg.l1_chain_id, node.cfg.rollup, ZERO_ADDRESS, "txs_key",
                                         keccak256(TXS_KEY_LABEL + address_bytes(host_key)), expiry)
            if to_checksum(recover_address(digest, bytes.fromhex(dsig))) != to_checksum(signer):
                return False
            if len(_txs_keys) >= 4096:
                _txs_keys.clear()
            _txs_keys[k] = True
        return to_checksum(recover_address(txs_burst_digest(node, body), bytes.fromhex(bsig))) == to_checksum(host_key)
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
        if not 0 <= expiry < 2**64:  # the digest packs it in 8 bytes (struct.error otherwise: an internal error)
            raise ValueError("expiry out of range")
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
