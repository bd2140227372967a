"""Envelopes: what a user sends, sealed to the committee's epoch key.

Wire format (bytes)::

    version (1) | flags (1) | epoch (8, big-endian) | ephemeral X25519 public key (32) | nonce (12)
    | [routing hint (28) if flags & 1] | [hint authentication if flags & 4] | AES-256-GCM ciphertext+tag

Flag 8 (``FLAG_PADDED``, set by every client of this package) pads the AEAD plaintext to a size
bucket: ``len (4) || transaction || zeros``, 256 * 2**k bytes up to 16 KiB, then multiples of
16 KiB (``envelope_bucket``); the enclave refuses a bad length or non-zero padding. The length
of an envelope then shows only its bucket: a transfer, an approve or a small contract call look
the same (docs/CONFIDENTIALITY.md).

Flag 4 (``FLAG_HINT_AUTH``, only with a hint) authenticates the routing hint by its sender's
Ethereum key, so that a node can refuse, before anything is queued or counted, an envelope whose
cleartext sender did not send it (spam under someone else's address; docs/SECURITY.md "Spam
resistance at admission"). The authentication block is::

    kind (1) | [delegation (20 + 8 + 65) if kind == 1] | signature (65, r || s || v, low s)

* kind 0: ``signature`` is by the hint's sender itself;
* kind 1: ``signature`` is by a delegate key the sender authorised with its viewing-session
  statement (``delegation = session key address (20) || expiry (8) || EIP-712 signature (65)``
  by the sender over ``ViewingSession(account = hint sender, sessionKey, expiry)``, the
  statement the gateway already holds; enclave/views.py), so a gateway that holds no user key
  can authenticate the hints of the raw transactions it seals.

The signature is over ``keccak256("EnclaveNet.hint.v1" || chain_id (8) || every byte of the
envelope but the 65 signature bytes)``: version, flags, epoch, ephemeral key, nonce, hint, kind,
delegation and the whole ciphertext, so it cannot be moved to another envelope, epoch or chain.
The node checks it (node/hintauth.py); the enclave does not need to (it refuses a hint that
differs from the decrypted transaction's sender and nonce, which no signature could change).
The flag is in the AAD; the block itself is not (the signature covers the ciphertext).

Flag 2 (``FLAG_SESSION``) marks a **session envelope**: the sender reuses one X25519 key
(``SessionKey``) for every envelope it seals to one epoch key, so the enclave does the agreement
once per sender and epoch (it caches the shared secret per ephemeral key, in the opener of that
epoch, which dies with the epoch key) instead of once per transaction. Every message still gets its own keys: the
message nonce goes into the HKDF info (``info = ... || nonce``), so no two envelopes of a session
share a key, and the receipt key is per message too. Forward secrecy stays per epoch: the epoch
private key, the enclave's cache and the client's session secret are all dropped with the epoch.

The optional routing hint is ``sender address (20) || sender nonce (8)`` in clear, bound as
associated data: it lets an untrusted node's mempool order each sender's transactions by nonce
and bound them per sender. It reveals who sends and how many (as Ethereum and Sapphire do), never
the target, function, arguments or value. The enclave refuses an envelope whose hint differs from
the decrypted transaction.

    shared  = X25519(ephemeral, epoch public key)
    keys    = HKDF-SHA256(shared, salt = eph_pub || epoch_pub, info = "EnclaveNet.envelope.v1" || chain_id(8) || epoch(8), 64)
    tx key  = keys[:32],  receipt key = keys[32:]
    aad     = "EnclaveNet.envelope.v1" || version || flags || chain_id(8) || epoch(8) || eph_pub || hint

Receipts go back under ``receipt key``,
readable only by the holder of the ephemeral private key (the sender). Receipt nonces
are derived from the plaintext so every committee member produces the same bytes; sealed
receipts are padded to size buckets (``receipt_bucket``: 512 * 2**k bytes, at most 128 KiB in
batch data) so their length does not show success, failure or the size of logs and output.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field

import sha3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_keccak256 = sha3.keccak_256

VERSION = 1
HEADER_LEN = 1 + 1 + 8 + 32 + 12
HINT_LEN = 20 + 8
FLAG_HINT = 1
FLAG_SESSION = 2  # the ephemeral key is a sender's per-epoch session key; the nonce is in the KDF info
FLAG_HINT_AUTH = 4  # the routing hint is followed by its sender's authentication (signature)
FLAG_PADDED = 8  # the plaintext is len (4) || plaintext || zeros up to a size bucket (envelope_bucket)
KNOWN_FLAGS = FLAG_HINT | FLAG_SESSION | FLAG_HINT_AUTH | FLAG_PADDED
HINT_AUTH_SENDER = 0  # authentication kinds: signed by the sender
HINT_AUTH_DELEGATE = 1  # signed by a session key the sender authorised (ViewingSession statement)
HINT_SIG_LEN = 65
DELEGATION_LEN = 20 + 8 + 65
HINT_AUTH_LEN = {HINT_AUTH_SENDER: 1 + HINT_SIG_LEN, HINT_AUTH_DELEGATE: 1 + DELEGATION_LEN + HINT_SIG_LEN}
HINT_AUTH_DOMAIN = b"EnclaveNet.hint.v1"
MAX_SESSIONS = 1 << 16  # shared secrets an opener (one epoch key, inside the enclave) keeps
TAG_LEN = 16
MAX_ENVELOPE_BYTES = 128 * 1024  # refuse larger payloads before any crypto
# Padded envelopes (flag 8): the AEAD plaintext is ``len (4) || plaintext || zeros`` of
# ENVELOPE_BUCKET_MIN * 2**k bytes up to ENVELOPE_BUCKET_STEP, then multiples of it, capped so the
# envelope stays within MAX_ENVELOPE_BYTES: an ERC20 transfer, an approve and a swap of a few
# words all seal to the same length, so the length no longer tells a transfer from a deployment.
ENVELOPE_BUCKET_MIN = 256
ENVELOPE_BUCKET_STEP = 16 * 1024


class EnvelopeError(ValueError):
    """An envelope is malformed or does not decrypt. Messages never carry secrets."""


@dataclass(frozen=True)
class RoutingHint:
    """Cleartext (sender, nonce) for mempool ordering; authenticated, checked by the enclave."""

    sender: bytes  # 20-byte address
    nonce: int

    def encode(self) -> bytes:
        if len(self.sender) != 20:
            raise EnvelopeError("a routing hint's sender has 20 bytes")
        return self.sender + struct.pack(">Q", self.nonce)

    @property
    def sender_hex(self) -> str:
        return "0x" + self.sender.hex()


@dataclass(frozen=True)
class Envelope:
    epoch: int
    eph_pub: bytes
    nonce: bytes
    ciphertext: bytes
    hint: RoutingHint | None = None
    session: bool = False
    hint_auth: bytes | None = None  # the authentication block (kind | [delegation] | signature)
    padded: bool = False  # flag 8: the plaintext carries a length prefix and zero padding

    @property
    def flags(self) -> int:
        return ((FLAG_HINT if self.hint is not None else 0) | (FLAG_SESSION if self.session else 0)
                | (FLAG_HINT_AUTH if self.hint_auth is not None else 0) | (FLAG_PADDED if self.padded else 0))

    def hint_bytes(self) -> bytes:
        return self.hint.encode() if self.hint is not None else b""

    def encode(self) -> bytes:
        return (
            bytes([VERSION, self.flags])
            + struct.pack(">Q", self.epoch)
            + self.eph_pub
            + self.nonce
            + self.hint_bytes()
            + (self.hint_auth or b"")
            + self.ciphertext
        )

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        if len(data) > MAX_ENVELOPE_BYTES:
            raise EnvelopeError(f"envelope too large: {len(data)} bytes > {MAX_ENVELOPE_BYTES}")
        if len(data) < HEADER_LEN + TAG_LEN:
            raise EnvelopeError(f"envelope too short: {len(data)} bytes")
        if data[0] != VERSION:
            raise EnvelopeError(f"unknown envelope version {data[0]} (expected {VERSION})")
        flags = data[1]
        if flags & ~KNOWN_FLAGS:
            raise EnvelopeError(f"unknown envelope flags {flags:#x}")
        (epoch,) = struct.unpack(">Q", data[2:10])
        body = data[HEADER_LEN:]
        hint = None
        if flags & FLAG_HINT:
            if len(body) < HINT_LEN + TAG_LEN:
                raise EnvelopeError(f"envelope too short for its routing hint: {len(data)} bytes")
            hint = RoutingHint(body[:20], struct.unpack(">Q", body[20:28])[0])
            body = body[HINT_LEN:]
        auth = None
        if flags & FLAG_HINT_AUTH:
            if hint is None:
                raise EnvelopeError("envelope flag 4 (hint authentication) without a routing hint (flag 1)")
            n = HINT_AUTH_LEN.get(body[0]) if body else None
            if n is None:
                raise EnvelopeError(f"unknown routing-hint authentication kind {body[0] if body else None}")
            if len(body) < n + TAG_LEN:
                raise EnvelopeError(f"envelope too short for its hint authentication: {len(data)} bytes")
            auth, body = body[:n], body[n:]
        return cls(epoch, data[10:42], data[42:54], body, hint, bool(flags & FLAG_SESSION), auth,
                   bool(flags & FLAG_PADDED))


_HINTED_MIN = HEADER_LEN + HINT_LEN + TAG_LEN
_HINT_AUTH_AT = HEADER_LEN + HINT_LEN
_HINTED_PLAIN = (FLAG_HINT, FLAG_HINT | FLAG_SESSION)
_HINTED_AUTH = (FLAG_HINT | FLAG_HINT_AUTH, FLAG_HINT | FLAG_SESSION | FLAG_HINT_AUTH)


def envelope_bucket(plaintext_len: int, cap: int = MAX_ENVELOPE_BYTES) -> int:
    """The padded AEAD plaintext length (length prefix included) for ``plaintext_len`` bytes:
    ``ENVELOPE_BUCKET_MIN * 2**k`` up to ``ENVELOPE_BUCKET_STEP``, then multiples of it; never
    above ``cap`` unless the plaintext itself is (such an envelope is refused when decoded)."""
    need = plaintext_len + 4
    size = ENVELOPE_BUCKET_MIN
    while size < need and size < ENVELOPE_BUCKET_STEP:
        size <<= 1
    if size < need:
        size = -(-need // ENVELOPE_BUCKET_STEP) * ENVELOPE_BUCKET_STEP
    return max(need, min(size, cap))


def _unpad(pt: bytes) -> bytes:
    """The plaintext of a padded envelope (flag 8); refuses a bad length or non-zero padding."""
    if len(pt) < 4:
        raise EnvelopeError("padded envelope plaintext is shorter than its length prefix")
    n = int.from_bytes(pt[:4], "big")
    if n > len(pt) - 4 or pt.count(0, 4 + n) != len(pt) - 4 - n:
        raise EnvelopeError("padded envelope has a bad length prefix or non-zero padding")
    return pt[4 : 4 + n]


def hinted_fields(raw: bytes) -> tuple[int, bytes, int] | None:
    """(epoch, hint sender, hint nonce) read at their fixed offsets when ``Envelope.decode`` would
    accept ``raw`` with a routing hint (the same checks, no copies of the ciphertext); None when
    it would refuse it or it has no hint (take the full parse for the reason)."""
    n = len(raw)
    if n < _HINTED_MIN or n > MAX_ENVELOPE_BYTES or raw[0] != VERSION:
        return None
    f = raw[1] & ~FLAG_PADDED
    if f not in _HINTED_PLAIN:
        if f not in _HINTED_AUTH:
            return None
        a = HINT_AUTH_LEN.get(raw[_HINT_AUTH_AT])
        if a is None or n < _HINTED_MIN + a:
            return None
    return (int.from_bytes(raw[2:10], "big"), raw[HEADER_LEN : HEADER_LEN + 20],
            int.from_bytes(raw[HEADER_LEN + 20 : HEADER_LEN + 28], "big"))


_SHA256 = hashes.SHA256()
_LABEL = b"EnclaveNet.envelope.v1"
_RECEIPT_AAD = b"EnclaveNet.receipt.v2"  # v2: padded to size buckets
_IPAD = bytes(b ^ 0x36 for b in range(256))  # HMAC pads, applied with bytes.translate
_OPAD = bytes(b ^ 0x5C for b in range(256))
_sha256 = hashlib.sha256
try:  # what X25519PublicKey.from_public_bytes calls once its (per-call) backend check passed
    from cryptography.hazmat.bindings._rust import openssl as _rust_openssl

    _x25519_public = _rust_openssl.x25519.from_public_bytes
except (ImportError, AttributeError):  # pragma: no cover - another cryptography build
    _x25519_public = X25519PublicKey.from_public_bytes


def _hkdf64(salt: bytes, ikm: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869) with a 64-byte salt and 64 bytes of output: the same bytes as
    ``_kdf``'s ``HKDF(...).derive`` (a unit test checks), with HMAC written out over hashlib;
    a 64-byte salt is exactly one SHA-256 block, so it is the HMAC key as it is."""
    prk = _sha256(salt.translate(_OPAD) + _sha256(salt.translate(_IPAD) + ikm).digest()).digest()
    key = prk + bytes(32)
    ki, ko = key.translate(_IPAD), key.translate(_OPAD)
    t1 = _sha256(ko + _sha256(ki + info + b"\x01").digest()).digest()
    return t1 + _sha256(ko + _sha256(ki + t1 + info + b"\x02").digest()).digest()


def _kdf(shared: bytes, eph_pub: bytes, epoch_pub: bytes, chain_id: int, epoch: int,
         nonce: bytes = b"") -> tuple[bytes, bytes]:
    """(tx key, receipt key): one HKDF call, both keys bound to chain id and epoch (and, for a
    session envelope, to the message nonce: ``nonce`` is b"" otherwise)."""
    okm = HKDF(
        algorithm=_SHA256,
        length=64,
        salt=eph_pub + epoch_pub,
        info=b"EnclaveNet.envelope.v1" + struct.pack(">QQ", chain_id, epoch) + nonce,
    ).derive(shared)
    return okm[:32], okm[32:]


def _aad(chain_id: int, epoch: int, eph_pub: bytes, flags: int, hint: bytes) -> bytes:
    return (
        b"EnclaveNet.envelope.v1"
        + bytes([VERSION, flags])
        + struct.pack(">QQ", chain_id, epoch)
        + eph_pub
        + hint
    )


@dataclass(frozen=True)
class SealedRequest:
    """What the sender keeps to read the receipt: the envelope and its receipt key."""

    envelope: Envelope
    receipt_key: bytes = field(repr=False)


class SessionKey:
    """A sender's X25519 key for one epoch public key (client side): the agreement is done once,
    here; each ``seal(..., session=...)`` then derives that message's keys from the shared secret
    and a fresh nonce. Drop it with the epoch (``ConfidentialClient`` keeps one per epoch key).
    Holds a secret: no repr of it."""

    __slots__ = ("_shared", "epoch_pub", "public")

    def __init__(self, epoch_pub: bytes) -> None:
        priv = X25519PrivateKey.generate()
        self.epoch_pub = bytes(epoch_pub)
        self.public = priv.public_key().public_bytes_raw()
        self._shared = priv.exchange(X25519PublicKey.from_public_bytes(self.epoch_pub))

    def __repr__(self) -> str:
        return f"SessionKey(public=0x{self.public.hex()})"


class SessionKeys:
    """The sealing side's session keys: one per (hint sender, epoch key), made on first use.

    Only envelopes WITH a routing hint get a session: their sender is in clear already, so the
    shared ephemeral key links nothing an observer could not link by the hint; envelopes without
    a hint (views, inbox payloads) keep a one-time key. A new epoch key drops the old sessions."""

    def __init__(self, max_keys: int = 4096) -> None:
        self._keys: dict[tuple[bytes, bytes], SessionKey] = {}
        self._max = max_keys

    def for_hint(self, hint: RoutingHint | None, epoch_pub: bytes) -> SessionKey | None:
        if hint is None:
            return None
        k = (hint.sender, bytes(epoch_pub))
        s = self._keys.get(k)
        if s is None:
            if len(self._keys) >= self._max:
                self._keys.clear()
            self._keys = {x: v for x, v in self._keys.items() if x[1] == k[1]}
            s = self._keys[k] = SessionKey(k[1])
        return s


class HintSigner:
    """Authenticates the routing hints of one sender (flag 4, module docstring): with the sender's
    own key (``HintSigner(secret)``, kind 0) or with a session key the sender authorised
    (``HintSigner.delegated(...)``, kind 1). Holds a secret: no repr of it."""

    __slots__ = ("_key", "prefix")

    def __init__(self, secret: bytes, prefix: bytes = bytes([HINT_AUTH_SENDER])) -> None:
        import coincurve  # local: only sealing clients sign

        self._key = coincurve.PrivateKey(bytes(secret))
        self.prefix = prefix

    @classmethod
    def delegated(cls, session_secret: bytes, session_key: bytes, expiry: int, statement_sig: bytes) -> HintSigner:
        """Sign with ``session_secret``, whose address ``session_key`` (20 bytes) the sender authorised
        until ``expiry`` (unix seconds) with the EIP-712 ViewingSession ``statement_sig``."""
        if len(session_key) != 20 or len(statement_sig) != HINT_SIG_LEN:
            raise EnvelopeError("a hint delegation is a 20-byte session key and a 65-byte statement signature")
        return cls(session_secret, bytes([HINT_AUTH_DELEGATE]) + session_key + struct.pack(">Q", expiry) + statement_sig)

    def __repr__(self) -> str:
        return f"HintSigner(kind={self.prefix[0]})"

    def sign(self, digest: bytes) -> bytes:
        sig = self._key.sign_recoverable(digest, hasher=None)  # libsecp256k1: always low s
        return sig[:64] + bytes([sig[64] + 27])


def hint_auth_digest(chain_id: int, raw: bytes | memoryview, sig_at: int) -> bytes:
    """What a hint signature signs: keccak256(domain || chain_id || raw without raw[sig_at:sig_at+65])."""
    m = memoryview(raw)
    h = _keccak256(HINT_AUTH_DOMAIN + struct.pack(">Q", chain_id))
    h.update(m[:sig_at])
    h.update(m[sig_at + HINT_SIG_LEN :])
    return h.digest()


def seal(
    plaintext: bytes,
    epoch_pub: bytes,
    chain_id: int,
    epoch: int,
    hint: RoutingHint | None = None,
    session: SessionKey | None = None,
    signer: HintSigner | None = None,
    pad: bool = True,
) -> SealedRequest:
    """Encrypt ``plaintext`` (a signed transaction) to the committee's epoch key: under a fresh
    ephemeral key, or under ``session`` (a session envelope; its epoch key must be ``epoch_pub``).
    ``signer`` authenticates the routing hint (flag 4): nodes admit hinted envelopes only with it.
    ``pad`` (default) pads the plaintext to its size bucket (flag 8, ``envelope_bucket``)."""
    if signer is not None and hint is None:
        raise EnvelopeError("only a routing hint can be authenticated: seal with a hint")
    nonce = os.urandom(12)
    if session is None:
        eph = X25519PrivateKey.generate()
        eph_pub = eph.public_key().public_bytes_raw()
        shared = eph.exchange(X25519PublicKey.from_public_bytes(epoch_pub))
        key, rkey = _kdf(shared, eph_pub, epoch_pub, chain_id, epoch)
    else:
        if session.epoch_pub != epoch_pub:
            raise EnvelopeError("the session key was made for another epoch key")
        eph_pub = session.public
        key, rkey = _kdf(session._shared, eph_pub, epoch_pub, chain_id, epoch, nonce)
    placeholder = None if signer is None else signer.prefix + bytes(HINT_SIG_LEN)
    env = Envelope(epoch, eph_pub, nonce, b"", hint, session is not None, placeholder, pad)
    if pad:
        room = MAX_ENVELOPE_BYTES - HEADER_LEN - len(env.hint_bytes()) - len(placeholder or b"") - TAG_LEN
        size = envelope_bucket(len(plaintext), room)
        plaintext = len(plaintext).to_bytes(4, "big") + plaintext + bytes(size - 4 - len(plaintext))
    ct = AESGCM(key).encrypt(nonce, plaintext, _aad(chain_id, epoch, eph_pub, env.flags, env.hint_bytes()))
    auth = None
    if signer is not None:
        unsigned = Envelope(epoch, eph_pub, nonce, ct, hint, session is not None, placeholder, pad).encode()
        sig_at = HEADER_LEN + HINT_LEN + len(signer.prefix)
        auth = signer.prefix + signer.sign(hint_auth_digest(chain_id, unsigned, sig_at))
    return SealedRequest(Envelope(epoch, eph_pub, nonce, ct, hint, session is not None, auth, pad), rkey)


@dataclass(frozen=True)
class OpenedEnvelope:
    plaintext: bytes
    receipt_key: bytes = field(repr=False)


def open_envelope(env: Envelope, epoch_priv: X25519PrivateKey, chain_id: int) -> OpenedEnvelope:
    """Decrypt with the epoch private key (inside the enclave). Raises EnvelopeError."""
    if len(env.eph_pub) != 32 or len(env.nonce) != 12:
        raise EnvelopeError("envelope has a malformed ephemeral key or nonce")
    epoch_pub = epoch_priv.public_key().public_bytes_raw()
    try:
        shared = epoch_priv.exchange(X25519PublicKey.from_public_bytes(env.eph_pub))
    except ValueError as exc:
        raise EnvelopeError("envelope ephemeral key is not a valid X25519 point") from exc
    key, rkey = _kdf(shared, env.eph_pub, epoch_pub, chain_id, env.epoch, env.nonce if env.session else b"")
    try:
        pt = AESGCM(key).decrypt(
            env.nonce,
            env.ciphertext,
            _aad(chain_id, env.epoch, env.eph_pub, env.flags, env.hint_bytes()),
        )
    except InvalidTag as exc:
        raise EnvelopeError(
            "envelope does not decrypt: bad tag (wrong epoch key, chain id or tampered ciphertext)"
        ) from exc
    return OpenedEnvelope(_unpad(pt) if env.padded else pt, rkey)


class EnvelopeOpener:
    """``open_envelope`` for the many envelopes of one epoch key (inside the enclave).

    The same checks, plaintext, receipt key and errors as ``open_envelope(Envelope.decode(raw),
    epoch_priv, chain_id)``; the per-key work (the epoch public key, the KDF info, the fixed
    part of the AAD) is done once here instead of once per envelope. Holds the private key:
    never logged (no repr of the key).

    Session envelopes (``FLAG_SESSION``): the shared secret of each session key is kept after its
    first envelope decrypted (at most ``MAX_SESSIONS``, oldest dropped first), so a sender's later
    envelopes cost no X25519. Only an envelope that decrypted adds an entry: random keys cannot
    push honest sessions out faster than they pay an agreement each. The cache is as secret as
    the key and lives exactly as long as this opener (one epoch key).
    """

    __slots__ = ("_aad", "_epoch_pub", "_info", "_priv", "_sessions", "chain_id", "epoch")

    def __init__(self, epoch_priv: X25519PrivateKey, chain_id: int, epoch: int) -> None:
        self._priv = epoch_priv
        self._epoch_pub = epoch_priv.public_key().public_bytes_raw()
        self.chain_id = chain_id
        self.epoch = epoch
        ce = struct.pack(">QQ", chain_id, epoch)
        self._info = _LABEL + ce
        # aad = label || version || flags || chain_id || epoch || eph_pub || hint: the fixed head
        self._aad = {f: _LABEL + bytes([VERSION, f]) + ce for f in range(KNOWN_FLAGS + 1)}
        self._sessions: dict[bytes, bytes] = {}

    def __repr__(self) -> str:
        return f"EnvelopeOpener(chain_id={self.chain_id}, epoch={self.epoch})"

    @property
    def private_key(self) -> X25519PrivateKey:
        return self._priv

    def cached_sessions(self) -> int:
        """How many session shared secrets this opener holds (the enclave's breach hook reports it)."""
        return len(self._sessions)

    def open(self, env: Envelope) -> OpenedEnvelope:
        """Decrypt ``env`` (whose ``epoch`` must be this opener's). Raises EnvelopeError."""
        if env.epoch != self.epoch:
            raise EnvelopeError(f"envelope is for epoch {env.epoch}, this key is epoch {self.epoch}")
        eph_pub = env.eph_pub
        if len(eph_pub) != 32 or len(env.nonce) != 12:
            raise EnvelopeError("envelope has a malformed ephemeral key or nonce")
        session = env.session
        shared = self._sessions.get(eph_pub) if session else None
        cached = shared is not None
        if shared is None:
            try:
                shared = self._priv.exchange(_x25519_public(eph_pub))
            except ValueError as exc:
                raise EnvelopeError("envelope ephemeral key is not a valid X25519 point") from exc
        okm = _hkdf64(eph_pub + self._epoch_pub, shared, self._info + env.nonce if session else self._info)
        hint = env.hint
        aad = self._aad[env.flags] + eph_pub + (hint.encode() if hint is not None else b"")
        try:
            pt = AESGCM(okm[:32]).decrypt(env.nonce, env.ciphertext, aad)
        except InvalidTag as exc:
            raise EnvelopeError(
                "envelope does not decrypt: bad tag (wrong epoch key, chain id or tampered ciphertext)"
            ) from exc
        if env.padded:
            pt = _unpad(pt)
        if session and not cached:
            if len(self._sessions) >= MAX_SESSIONS:
                del self._sessions[next(iter(self._sessions))]
            self._sessions[eph_pub] = shared
        return OpenedEnvelope(pt, okm[32:])


# Sealed receipts (and sealed view results) are padded to size buckets so that their length
# shows neither success or failure nor how many logs or how much output a transaction made:
# sealed length = 512 * 2**k bytes, the smallest that holds nonce (12) + length (4) + plaintext
# + tag (16); at most MAX_SEALED_RECEIPT (128 KiB, DapManager.answerData's piece bound) for
# the receipts that go into batch data; larger results (views only) take multiples of 128 KiB.
RECEIPT_BUCKET_MIN = 512
MAX_SEALED_RECEIPT = 128 * 1024
_RECEIPT_OVERHEAD = 12 + 4 + TAG_LEN
MAX_RECEIPT_PLAINTEXT = MAX_SEALED_RECEIPT - _RECEIPT_OVERHEAD  # what the executor bounds receipts to


def receipt_bucket(plaintext_len: int) -> int:
    """The sealed length of a receipt whose plaintext has ``plaintext_len`` bytes."""
    need = plaintext_len + _RECEIPT_OVERHEAD
    if need > MAX_SEALED_RECEIPT:
        return -(-need // MAX_SEALED_RECEIPT) * MAX_SEALED_RECEIPT
    size = RECEIPT_BUCKET_MIN
    while size < need:
        size <<= 1
    return size


def seal_receipt(receipt_key: bytes, plaintext: bytes) -> bytes:
    """Deterministic: nonce = keccak(key || plaintext)[:12] (SIV-style; same bytes on every member).

    The AEAD plaintext is ``len(plaintext) (4, big-endian) || plaintext || zeros`` up to the
    size bucket (``receipt_bucket``)."""
    nonce = _keccak256(receipt_key + plaintext).digest()[:12]
    return nonce + AESGCM(receipt_key).encrypt(nonce, _padded(plaintext), _RECEIPT_AAD)


def _padded(plaintext: bytes) -> bytes:
    """``len (4, big-endian) || plaintext || zeros`` up to the size bucket (``receipt_bucket``)."""
    pad = receipt_bucket(len(plaintext)) - _RECEIPT_OVERHEAD - len(plaintext)
    return struct.pack(">I", len(plaintext)) + plaintext + bytes(pad)


def seal_result(receipt_key: bytes, plaintext: bytes) -> bytes:
    """Like ``seal_receipt`` but with a RANDOM nonce: for answers only one enclave gives (view
    results), so that answering the same request twice never shows whether the answer changed.
    Padded to the same size buckets. ``open_receipt`` opens both."""
    nonce = os.urandom(12)
    return nonce + AESGCM(receipt_key).encrypt(nonce, _padded(plaintext), _RECEIPT_AAD)


def open_receipt(receipt_key: bytes, sealed: bytes) -> bytes:
    if len(sealed) < _RECEIPT_OVERHEAD:
        raise EnvelopeError("encrypted receipt too short")
    try:
        body = AESGCM(receipt_key).decrypt(sealed[:12], sealed[12:], _RECEIPT_AAD)
    except InvalidTag as exc:
        raise EnvelopeError("receipt does not decrypt with this request's key") from exc
    (n,) = struct.unpack(">I", body[:4])
    if n > len(body) - 4 or any(body[4 + n :]):
        raise EnvelopeError("receipt padding is malformed")
    return body[4 : 4 + n]
