"""Fuzz: envelopes (crypto/envelope.py) and the mempool's admission (node/mempool.py).

Random bytes and mutations of valid sealed envelopes. Properties:

* ``Envelope.decode`` either refuses with ``EnvelopeError`` or returns an envelope that encodes
  back to the same bytes; ``Mempool.add`` either refuses with ``MempoolError`` (and the pool is
  unchanged) or admits exactly what the full parse accepts (its fast path agrees with it);
* every mutation of a valid envelope is refused by the opener (``EnvelopeError``), the same way
  by ``open_envelope`` and the cached ``EnvelopeOpener``, and no session secret is cached for it;
* no error message carries the epoch private key, the plaintext or the receipt key.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit._fuzz import assert_no_secret, examples, mutated

from enclavenet.crypto.envelope import (
    FLAG_HINT,
    FLAG_SESSION,
    HEADER_LEN,
    HINT_LEN,
    TAG_LEN,
    VERSION,
    Envelope,
    EnvelopeError,
    EnvelopeOpener,
    RoutingHint,
    SessionKey,
    open_envelope,
    open_receipt,
    seal,
)
from enclavenet.node.mempool import Mempool, MempoolError, parse_envelope

CHAIN = 4242
EPOCH = 3
PRIV = X25519PrivateKey.generate()
PUB = PRIV.public_key().public_bytes_raw()
PRIV_HEX = PRIV.private_bytes_raw().hex()
ALICE = bytes.fromhex("a1" * 20)
PLAIN = os.urandom(48)  # stands for a signed transaction: as secret as the key
SESSION = SessionKey(PUB)
VALID = {
    "plain": seal(PLAIN, PUB, CHAIN, EPOCH),
    "hinted": seal(PLAIN, PUB, CHAIN, EPOCH, RoutingHint(ALICE, 7)),
    "session": seal(PLAIN, PUB, CHAIN, EPOCH, RoutingHint(ALICE, 8), SESSION),
}
SECRETS = [PRIV_HEX, PLAIN, SESSION._shared] + [s.receipt_key for s in VALID.values()]


def _header(flags: int) -> st.SearchStrategy[bytes]:
    """Bytes that start like an envelope (so fuzzing reaches past the version/flags checks)."""
    return st.builds(
        lambda v, f, rest: bytes([v, f]) + rest,
        st.sampled_from([VERSION, VERSION, 0, 2, 255]),
        st.sampled_from([flags, FLAG_HINT, FLAG_HINT | FLAG_SESSION, 0, 4, 0xFF]),
        st.binary(min_size=0, max_size=HEADER_LEN + HINT_LEN + TAG_LEN + 40),
    )


raw_envelopes = st.one_of(st.binary(max_size=200), _header(FLAG_HINT), _header(0))
mutations = st.sampled_from(sorted(VALID)).flatmap(
    lambda k: st.tuples(st.just(k), mutated(VALID[k].envelope.encode()))
)


@settings(max_examples=examples(400))
@given(raw_envelopes)
def test_decode_refuses_cleanly_or_round_trips(raw: bytes) -> None:
    try:
        env = Envelope.decode(raw)
    except EnvelopeError as exc:
        assert str(exc)
        return
    assert env.encode() == raw


@settings(max_examples=examples(400))
@given(st.one_of(raw_envelopes, mutations.map(lambda km: km[1])), st.sampled_from([None, [EPOCH], [0, 1]]))
def test_mempool_add_refuses_without_a_change_or_admits_what_parses(raw: bytes, epochs: list[int] | None) -> None:
    mp = Mempool(max_bytes=1024)
    mp.add(VALID["hinted"].envelope.encode())
    before = (len(mp), mp.pending_count, mp.stats()["senders"])
    try:
        full = parse_envelope(raw, max_bytes=mp.max_bytes)
    except MempoolError:
        full = None
    try:
        e = mp.add(raw, epochs=epochs, origin="10.0.0.1")
    except MempoolError as exc:
        assert str(exc)
        assert_no_secret(str(exc), SECRETS)
        assert (len(mp), mp.pending_count, mp.stats()["senders"]) == before
        assert full is None or (epochs is not None and full.epoch not in epochs) or raw == VALID["hinted"].envelope.encode()
        return
    assert full is not None and full.hint is not None, "the fast path admitted what the full parse refuses"
    assert (e.sender, e.nonce, e.epoch) == (full.hint.sender, full.hint.nonce, full.epoch)
    assert len(mp) == before[0] + 1


@settings(max_examples=examples(300))
@given(mutations)
def test_every_mutation_of_a_valid_envelope_is_refused_by_the_opener(km: tuple[str, bytes]) -> None:
    kind, raw = km
    opener = EnvelopeOpener(PRIV, CHAIN, EPOCH)
    errors: list[str] = []
    try:
        env = Envelope.decode(raw)
    except EnvelopeError as exc:
        errors.append(str(exc))
    else:
        for open_ in (lambda: opener.open(env), lambda: open_envelope(env, PRIV, CHAIN)):
            try:
                out = open_()
            except EnvelopeError as exc:
                errors.append(str(exc))
            else:  # every byte is authenticated (header and hint as AAD, epoch in the KDF too)
                raise AssertionError(f"a mutated {kind} envelope opened: {out.plaintext!r}")
        assert opener.cached_sessions() == 0, "a refused envelope left a cached session secret"
    assert errors
    for msg in errors:
        assert_no_secret(msg, SECRETS)


def test_the_valid_envelopes_open() -> None:
    opener = EnvelopeOpener(PRIV, CHAIN, EPOCH)
    for s in VALID.values():
        out = opener.open(Envelope.decode(s.envelope.encode()))
        assert out.plaintext == PLAIN and out.receipt_key == s.receipt_key


@settings(max_examples=examples(200))
@given(st.binary(max_size=700))
def test_open_receipt_refuses_random_blobs(blob: bytes) -> None:
    try:
        open_receipt(VALID["plain"].receipt_key, blob)
    except EnvelopeError as exc:
        assert_no_secret(str(exc), SECRETS)
    else:
        raise AssertionError("a random blob opened as a receipt")
