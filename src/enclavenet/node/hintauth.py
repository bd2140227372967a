"""Routing-hint authentication at admission (issue 13 item 2; docs/NODE.md "Routing-hint
authentication", docs/SECURITY.md "Spam resistance at admission").

The node orders and bounds its mempool by the cleartext routing hint ``(sender, nonce)``; the
hint is authenticated by the sender's Ethereum key (envelope flag 4, ``crypto.envelope``), and
this module checks that before the envelope is counted against anyone's quota: one keccak over
the envelope and one secp256k1 public-key recovery (coincurve), done once, by the node the
envelope entered through (``eth_sendRawTransaction``, or a ``txs`` forward that no active
committee member signed). Forwards signed by a member are not checked again: the member's
ingress did it.

Kind 1 (a delegate key the sender authorised with its EIP-712 ``ViewingSession`` statement, the
gateway's case) costs one more recovery, once per statement: verified statements are cached
(bounded, LRU) until they expire.
"""

from __future__ import annotations

import struct
import time
from collections import OrderedDict
from collections.abc import Callable

import coincurve
import sha3

from ..crypto.envelope import (
    FLAG_HINT,
    FLAG_HINT_AUTH,
    HEADER_LEN,
    HINT_AUTH_DELEGATE,
    HINT_AUTH_LEN,
    HINT_LEN,
    HINT_SIG_LEN,
    Envelope,
    EnvelopeError,
    hint_auth_digest,
)
from ..crypto.hashing import to_checksum
from ..crypto.secp256k1 import SECP256K1_N
from ..enclave.views import ViewDomain, session_digest

HALF_N = SECP256K1_N // 2
_AUTH_AT = HEADER_LEN + HINT_LEN


class HintAuthError(ValueError):
    """The routing hint is not authenticated by its sender; the message says what is wrong."""


def _recover(digest: bytes, sig: bytes | memoryview) -> bytes:
    """The 20-byte address that made the 65-byte r||s||v ``sig`` over ``digest``; HintAuthError."""
    v = sig[64]
    if v not in (27, 28):
        raise HintAuthError(f"routing-hint signature v must be 27 or 28, got {v}")
    s = int.from_bytes(sig[32:64], "big")
    if s == 0 or s > HALF_N:
        raise HintAuthError("routing-hint signature s is zero or not in the lower half (malleable)")
    try:
        pub = coincurve.PublicKey.from_signature_and_message(bytes(sig[:64]) + bytes([v - 27]), digest, hasher=None)
    except Exception:  # coincurve raises plain Exception on bad points
        raise HintAuthError("routing-hint signature does not recover to a public key") from None
    return sha3.keccak_256(pub.format(compressed=False)[1:]).digest()[12:]


class HintVerifier:
    """``check(raw)``: the hint sender (20 bytes) of a hinted envelope whose hint is authenticated,
    None for an envelope without a hint (the mempool refuses those with its own reason); raises
    HintAuthError for a hint that is not authenticated, or not by its sender."""

    def __init__(self, chain_id: int, domain: ViewDomain | None, *, clock: Callable[[], float] = time.time,
                 max_delegations: int = 65_536) -> None:
        self.chain_id = chain_id
        self.domain = domain
        self.clock = clock
        self.max_delegations = max_delegations
        self._delegations: OrderedDict[bytes, int] = OrderedDict()  # verified statement -> expiry
        self.checked = 0
        self.refused = 0

    def check(self, raw: bytes) -> bytes | None:
        try:
            return self._check(raw)
        except HintAuthError:
            self.refused += 1
            raise

    def _check(self, raw: bytes) -> bytes | None:
        if len(raw) < _AUTH_AT + 1 or not raw[1] & FLAG_HINT:
            return None
        if not raw[1] & FLAG_HINT_AUTH:
            raise HintAuthError(
                "routing hint not authenticated: an envelope that names its sender in clear must carry "
                "the sender's signature over it (envelope flag 4, docs/NODE.md 'Routing-hint "
                "authentication'); this client seals the older format: upgrade it and re-seal")
        try:
            env = Envelope.decode(raw)  # every other malformation, with decode's reason
        except EnvelopeError as exc:
            raise HintAuthError(f"malformed envelope: {exc}") from None
        assert env.hint is not None and env.hint_auth is not None
        sender = env.hint.sender
        auth = env.hint_auth
        sig_at = _AUTH_AT + len(auth) - HINT_SIG_LEN
        signer = _recover(hint_auth_digest(self.chain_id, raw, sig_at), memoryview(raw)[sig_at : sig_at + HINT_SIG_LEN])
        self.checked += 1
        if auth[0] == HINT_AUTH_DELEGATE:
            key, expiry = auth[1:21], struct.unpack(">Q", auth[21:29])[0]
            self._check_delegation(sender, key, expiry, auth[29:94])
            if signer != key:
                raise HintAuthError(
                    f"routing hint for sender {to_checksum(sender)} is signed by {to_checksum(signer)}, "
                    f"not by the session key {to_checksum(key)} its statement authorises: refused")
        elif signer != sender:
            raise HintAuthError(
                f"routing hint names sender {to_checksum(sender)} but is signed by {to_checksum(signer)}: "
                "refused (only a hint's sender can sign it; was the envelope sealed with another account's "
                "hint, or modified after signing?)")
        assert len(auth) == HINT_AUTH_LEN[auth[0]]
        return sender

    def _check_delegation(self, sender: bytes, key: bytes, expiry: int, statement_sig: bytes) -> None:
        now = self.clock()
        if expiry <= now:
            raise HintAuthError(f"the session statement authorising this routing hint's key expired at {expiry} "
                                "(unix seconds): authorise a new session and re-seal")
        ck = sender + key + struct.pack(">Q", expiry) + statement_sig
        if ck in self._delegations:
            self._delegations.move_to_end(ck)
            return
        if self.domain is None:
            raise HintAuthError("this node cannot check delegated routing hints (no view domain)")
        who = _recover(session_digest(self.domain, to_checksum(sender), to_checksum(key), expiry), statement_sig)
        if who != sender:
            raise HintAuthError(
                f"the session statement in this routing hint is signed by {to_checksum(who)}, not by the hint's "
                f"sender {to_checksum(sender)}: refused")
        self._delegations[ck] = expiry
        while len(self._delegations) > self.max_delegations:
            self._delegations.popitem(last=False)
