"""Enclave identity and epoch keys: fresh per epoch, epoch-bound derivations, export/import, erasure."""

from __future__ import annotations

import logging

import cbor2
import pytest

from enclavenet.crypto.envelope import seal
from enclavenet.crypto.hashing import keccak256
from enclavenet.crypto.quote import enc_key_hash
from enclavenet.crypto.secp256k1 import recover_address
from enclavenet.enclave.keys import (
    EXPORT_SIG_DOMAIN,
    EnclaveIdentity,
    EpochKeyError,
    EpochKeyManager,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _pair(**kw: object) -> tuple[EpochKeyManager, EpochKeyManager]:
    return EpochKeyManager(EnclaveIdentity.generate(), **kw), EpochKeyManager(EnclaveIdentity.generate(), **kw)  # type: ignore[arg-type]


def test_identity_keys_and_repr() -> None:
    ident = EnclaveIdentity.generate()
    assert ident.enc_key_hash == enc_key_hash(ident.enc_pub)
    assert recover_address(b"\x11" * 32, ident.sign(b"\x11" * 32)) == ident.address
    r = repr(ident)
    assert ident.signing_key.secret.hex() not in r and ident.enc_key.private_bytes_raw().hex() not in r
    again = EnclaveIdentity.from_secret_bytes(ident.to_secret_bytes())
    assert again.address == ident.address and again.enc_pub == ident.enc_pub
    with pytest.raises(ValueError, match="not a valid"):
        EnclaveIdentity.from_secret_bytes(b"junk")


def test_each_epoch_is_fresh_and_derivations_take_the_epoch() -> None:
    m = EpochKeyManager(EnclaveIdentity.generate(), grace_epochs=5)
    pubs = [m.new_epoch(e) for e in (1, 2, 3)]
    assert len(set(pubs)) == 3
    assert m.current_epoch == 3 and m.epochs() == [1, 2, 3]
    # the same purpose under two epochs gives unrelated keys; two purposes differ too
    assert m.state_subkey(1, "storage") != m.state_subkey(2, "storage")
    assert m.state_subkey(2, "storage") != m.state_subkey(2, "salt")
    assert m.state_subkey(2, "storage") == m.state_subkey(2, b"storage")
    # two managers never produce the same epoch keys by chance (os.urandom, not a chain)
    other = EpochKeyManager(EnclaveIdentity.generate())
    assert other.new_epoch(1) != pubs[0]
    with pytest.raises(EpochKeyError, match="not newer"):
        m.new_epoch(2)


def test_open_envelope_with_the_epoch_it_names() -> None:
    m = EpochKeyManager(EnclaveIdentity.generate())
    pub1 = m.new_epoch(1)
    sealed = seal(b"signed tx", pub1, chain_id=7, epoch=1)
    assert m.open_envelope(sealed.envelope.encode(), chain_id=7).plaintext == b"signed tx"
    m.new_epoch(2)
    assert m.open_envelope(sealed.envelope, chain_id=7).plaintext == b"signed tx"  # grace: previous epoch


def test_export_import_between_members() -> None:
    a, b = _pair()
    pub = a.new_epoch(4)
    bundle = a.export_epoch(4, b.identity.address, b.identity.enc_pub)
    for secret in (a.state_subkey(4, "x"), a.tx_private_key(4).private_bytes_raw()):
        assert secret not in bundle
    assert b.import_epoch(bundle, [a.identity.address]) == 4
    assert b.tx_public_key(4) == pub
    assert b.state_subkey(4, "x") == a.state_subkey(4, "x")
    assert b.import_epoch(bundle, [a.identity.address]) == 4  # idempotent


def test_import_refusals() -> None:
    a, b = _pair()
    c = EpochKeyManager(EnclaveIdentity.generate())
    a.new_epoch(1)
    bundle = a.export_epoch(1, b.identity.address, b.identity.enc_pub)
    with pytest.raises(EpochKeyError, match="not an allowed committee member"):
        b.import_epoch(bundle, [c.identity.address])
    with pytest.raises(EpochKeyError, match="addressed to another member"):
        c.import_epoch(bundle, [a.identity.address])
    # addressed to c's address but to b's encryption key: c cannot use it
    wrong_key = a.export_epoch(1, c.identity.address, b.identity.enc_pub)
    with pytest.raises(EpochKeyError, match="another encryption key"):
        c.import_epoch(wrong_key, [a.identity.address])
    # tampering with the body breaks the signature (signer no longer allowed)
    outer = cbor2.loads(bundle)
    body = cbor2.loads(outer["body"])
    body["epoch"] = 2
    forged = cbor2.dumps({"body": cbor2.dumps(body, canonical=True), "sig": outer["sig"]})
    with pytest.raises(EpochKeyError, match="not an allowed committee member"):
        b.import_epoch(forged, [a.identity.address])
    # a re-signed forgery by an allowed member still fails the AEAD binding to the epoch
    forged_body = cbor2.dumps(body, canonical=True)
    resigned = cbor2.dumps({"body": forged_body, "sig": a.identity.sign(keccak256(EXPORT_SIG_DOMAIN, forged_body))})
    with pytest.raises(EpochKeyError, match="does not decrypt"):
        b.import_epoch(resigned, [a.identity.address])
    for junk in (b"", b"\xa0", b"x" * 5000, cbor2.dumps({"body": b"\x01", "sig": b"\x00" * 65})):
        with pytest.raises(EpochKeyError):
            b.import_epoch(junk, [a.identity.address])
    # conflicting keys for an epoch already held
    b.new_epoch(1)
    with pytest.raises(EpochKeyError, match="different keys for epoch 1"):
        b.import_epoch(bundle, [a.identity.address])


def test_erasure_by_epochs_and_clear_errors() -> None:
    m = EpochKeyManager(EnclaveIdentity.generate(), grace_epochs=1)
    for e in (1, 2, 3):
        m.new_epoch(e)
    assert m.epochs() == [2, 3]
    with pytest.raises(EpochKeyError, match=r"^epoch 1 keys were erased$"):
        m.tx_private_key(1)
    with pytest.raises(EpochKeyError, match=r"^unknown epoch 7$"):
        m.state_subkey(7, "x")
    assert m.erase_before(3) == [2]
    with pytest.raises(EpochKeyError, match="epoch 2 keys were erased"):
        m.state_subkey(2, "x")
    with pytest.raises(EpochKeyError, match="epoch 0 keys were erased"):
        m.tx_public_key(0)


def test_erasure_by_seconds_and_no_reimport_of_erased_epochs() -> None:
    clock = Clock()
    a = EpochKeyManager(EnclaveIdentity.generate(), grace_epochs=None, grace_seconds=60, clock=clock)
    b = EpochKeyManager(EnclaveIdentity.generate(), grace_epochs=None, grace_seconds=60, clock=clock)
    a.new_epoch(1)
    old_bundle = a.export_epoch(1, b.identity.address, b.identity.enc_pub)
    b.import_epoch(old_bundle, [a.identity.address])
    b.new_epoch(2)  # epoch 1 superseded at t=1000
    clock.t += 59
    assert b.has_epoch(1)
    clock.t += 1
    assert not b.has_epoch(1)
    with pytest.raises(EpochKeyError, match="epoch 1 keys were erased"):
        b.tx_private_key(1)
    # a kept bundle cannot bring the erased epoch back (forward secrecy holds on this member)
    with pytest.raises(EpochKeyError, match="epoch 1 keys were erased"):
        b.import_epoch(old_bundle, [a.identity.address])


def test_secret_state_roundtrip_and_compromise_export() -> None:
    m = EpochKeyManager(EnclaveIdentity.generate(), grace_epochs=1)
    for e in (1, 2, 3):
        m.new_epoch(e)
    blob = m.to_secret_bytes()
    n = EpochKeyManager(m.identity, grace_epochs=1)
    n.load_secret_bytes(blob)
    assert n.epochs() == [2, 3] and n.state_subkey(3, "p") == m.state_subkey(3, "p")
    with pytest.raises(EpochKeyError, match="epoch 1 keys were erased"):
        n.tx_public_key(1)
    leaked = m.compromised_export()
    assert set(leaked) == {2, 3} and len(leaked[3]["state_key"]) == 32


def test_no_secret_in_repr_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    a, b = _pair()
    a.new_epoch(1)
    keys = a._get(1)
    secrets = [keys._tx_key.private_bytes_raw().hex(), bytes(keys._state_key).hex(), a.identity.signing_key.secret.hex()]  # type: ignore[union-attr]
    texts = [repr(a), repr(keys), repr(a.identity)]
    for bad in (lambda: a.tx_private_key(9), lambda: b.import_epoch(b"\x00", [a.identity.address])):
        try:
            bad()
        except EpochKeyError as exc:
            texts.append(str(exc))
    texts.append(caplog.text)
    for t in texts:
        for s in secrets:
            assert s not in t and s[:16] not in t
