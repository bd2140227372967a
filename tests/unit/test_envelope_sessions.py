"""Session envelopes (crypto/envelope.py FLAG_SESSION): one X25519 agreement per sender and epoch,
a key per message, the enclave's cache bounded and dropped with the epoch key."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from enclavenet.crypto import envelope as envmod
from enclavenet.crypto.envelope import (
    FLAG_HINT,
    FLAG_PADDED,
    FLAG_SESSION,
    Envelope,
    EnvelopeError,
    EnvelopeOpener,
    RoutingHint,
    SessionKey,
    SessionKeys,
    open_envelope,
    seal,
)

HINT = RoutingHint(b"\x22" * 20, 5)


def _epoch() -> tuple[X25519PrivateKey, bytes]:
    k = X25519PrivateKey.generate()
    return k, k.public_key().public_bytes_raw()


def test_session_envelopes_open_like_one_time_ones_with_a_key_per_message() -> None:
    priv, pub = _epoch()
    session = SessionKey(pub)
    assert pub.hex() not in repr(session)
    a = seal(b"first tx", pub, 77, 3, HINT, session)
    b = seal(b"second tx", pub, 77, 3, HINT, session)
    wa, wb = a.envelope.encode(), b.envelope.encode()
    assert wa[1] == wb[1] == FLAG_HINT | FLAG_SESSION | FLAG_PADDED
    assert a.envelope.eph_pub == b.envelope.eph_pub == session.public  # linkable only like the hint is
    assert a.receipt_key != b.receipt_key  # the nonce is in the KDF: no key is used twice
    opener = EnvelopeOpener(priv, 77, 3)
    for req, wire, pt in ((a, wa, b"first tx"), (b, wb, b"second tx")):
        env = Envelope.decode(wire)
        assert env.session
        o1, o2 = opener.open(env), open_envelope(env, priv, 77)
        assert o1.plaintext == o2.plaintext == pt
        assert o1.receipt_key == o2.receipt_key == req.receipt_key
    # clearing the session flag (or setting it on a one-time envelope) breaks the tag
    for wire in (wa, seal(b"x", pub, 77, 3, HINT).envelope.encode()):
        flipped = wire[:1] + bytes([wire[1] ^ FLAG_SESSION]) + wire[2:]
        with pytest.raises(EnvelopeError, match="bad tag"):
            opener.open(Envelope.decode(flipped))
    with pytest.raises(EnvelopeError, match="another epoch key"):
        seal(b"x", _epoch()[1], 77, 3, HINT, session)
    with pytest.raises(EnvelopeError, match="unknown envelope flags"):
        Envelope.decode(wa[:1] + bytes([16 | FLAG_HINT]) + wa[2:])  # 4 is hint authentication, 8 padding


def test_the_opener_agrees_once_per_session_and_caches_only_what_decrypted(monkeypatch: pytest.MonkeyPatch) -> None:
    priv, pub = _epoch()
    opener = EnvelopeOpener(priv, 77, 3)
    calls = []
    real = envmod._x25519_public
    monkeypatch.setattr(envmod, "_x25519_public", lambda b: calls.append(b) or real(b))
    session = SessionKey(pub)
    for i in range(5):
        opener.open(Envelope.decode(seal(b"tx %d" % i, pub, 77, 3, HINT, session).envelope.encode()))
    assert len(calls) == 1  # one agreement for five envelopes of one session
    for i in range(3):  # one-time envelopes: one agreement each, nothing cached
        opener.open(Envelope.decode(seal(b"tx %d" % i, pub, 77, 3, HINT).envelope.encode()))
    assert len(calls) == 4
    # a forged session envelope (valid point, wrong tag) is refused and not cached
    other = SessionKey(pub)
    forged = seal(b"x", pub, 77, 3, HINT, other).envelope.encode()
    forged = forged[:-1] + bytes([forged[-1] ^ 1])
    for _ in range(2):
        with pytest.raises(EnvelopeError, match="bad tag"):
            opener.open(Envelope.decode(forged))
    assert len(calls) == 6
    # bounded: the oldest session is dropped first
    monkeypatch.setattr(envmod, "MAX_SESSIONS", 2)
    s2, s3 = SessionKey(pub), SessionKey(pub)
    for s in (s2, s3):
        opener.open(Envelope.decode(seal(b"y", pub, 77, 3, HINT, s).envelope.encode()))
    n = len(calls)
    opener.open(Envelope.decode(seal(b"z", pub, 77, 3, HINT, session).envelope.encode()))  # evicted: agrees again
    opener.open(Envelope.decode(seal(b"z", pub, 77, 3, HINT, s3).envelope.encode()))  # still cached
    assert len(calls) == n + 1


def test_session_keys_per_sender_and_epoch_key() -> None:
    _, pub = _epoch()
    _, pub2 = _epoch()
    keys = SessionKeys()
    assert keys.for_hint(None, pub) is None  # no hint: a one-time key (nothing to link it by)
    a = keys.for_hint(HINT, pub)
    assert a is not None and keys.for_hint(RoutingHint(HINT.sender, 99), pub) is a
    assert keys.for_hint(RoutingHint(b"\x33" * 20, 0), pub) is not a  # two accounts are not linked
    b = keys.for_hint(HINT, pub2)  # a new epoch key: a new session, the old ones dropped
    assert b is not None and b is not a and b.epoch_pub == pub2
    assert keys.for_hint(HINT, pub) is not a
