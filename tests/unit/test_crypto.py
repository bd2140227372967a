"""The shared formats: each must round-trip, bind what it claims to bind, and refuse tampering."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_abi import encode as abi_encode
from eth_account import Account

from enclavenet.crypto.envelope import (
    MAX_ENVELOPE_BYTES,
    Envelope,
    EnvelopeError,
    open_envelope,
    open_receipt,
    seal,
    seal_receipt,
)
from enclavenet.crypto.hashing import keccak256
from enclavenet.crypto.header import (
    EMPTY_WITHDRAWALS_HASH,
    Header,
    Withdrawal,
    header_signing_digest,
    withdrawals_hash,
)
from enclavenet.crypto.merkle import merkle_proof, merkle_root, merkle_verify
from enclavenet.crypto.messages import MSG_GENESIS_ACC, L1Message, accumulate
from enclavenet.crypto.quote import enc_key_hash, quote_digest
from enclavenet.crypto.secp256k1 import SignatureError, SigningKey, recover_address
from enclavenet.crypto.smt import SparseMerkleTree, smt_key, smt_leaf, smt_verify

RNG = os.urandom


def _header(**kw: object) -> Header:
    base: dict[str, object] = dict(
        height=1, prev_hash=b"\0" * 32, epoch=0, epoch_key=RNG(32), l1_block=10, msg_count=0,
        msg_acc=MSG_GENESIS_ACC, tx_root=RNG(32), receipts_root=RNG(32), state_root=RNG(32),
        balances_root=RNG(32), withdrawals_hash=EMPTY_WITHDRAWALS_HASH, data_commitment=RNG(32),
    )
    base.update(kw)
    return Header(**base)  # type: ignore[arg-type]


def test_signature_recovers_signer_and_matches_eth_account() -> None:
    sk = SigningKey.generate()
    digest = keccak256(b"x")
    sig = sk.sign(digest)
    assert recover_address(digest, sig) == sk.address
    # same address and same recovery as the Ethereum tooling (ecrecover semantics)
    assert Account.from_key(sk.secret).address == sk.address
    assert Account._recover_hash(digest, signature=sig) == sk.address
    assert "secret" not in repr(sk) or sk.secret.hex() not in repr(sk)


def test_signature_refusals() -> None:
    sk = SigningKey.generate()
    digest = keccak256(b"x")
    sig = sk.sign(digest)
    with pytest.raises(SignatureError, match="65 bytes"):
        recover_address(digest, sig[:64])
    with pytest.raises(SignatureError, match="v must be 27 or 28"):
        recover_address(digest, sig[:64] + b"\x05")
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    high_s = (n - int.from_bytes(sig[32:64], "big")).to_bytes(32, "big")
    with pytest.raises(SignatureError, match="malleable"):
        recover_address(digest, sig[:32] + high_s + bytes([55 - sig[64]]))
    assert recover_address(keccak256(b"y"), sig) != sk.address


def test_header_roundtrip_and_hash_is_abi_encoding() -> None:
    h = _header()
    assert Header.decode(h.encode()) == h
    types = ["uint256", "bytes32", "uint256", "bytes32", "uint256", "uint256", "bytes32"] + ["bytes32"] * 6
    assert h.hash() == keccak256(abi_encode(types, list(h.as_tuple())))
    assert _header(height=2).hash() != h.hash()
    with pytest.raises(ValueError, match="prev_hash must be 32 bytes"):
        _header(prev_hash=b"\0")


def test_signing_digest_binds_chain_and_rollup() -> None:
    h = _header().hash()
    a, b = "0x" + "11" * 20, "0x" + "22" * 20
    assert header_signing_digest(h, 1, a) != header_signing_digest(h, 2, a)
    assert header_signing_digest(h, 1, a) != header_signing_digest(h, 1, b)


def test_withdrawals_hash_is_abi_of_tuple_array() -> None:
    ws = [Withdrawal("0x" + "ab" * 20, 5), Withdrawal("0x" + "cd" * 20, 7)]
    expected = keccak256(abi_encode(["(address,uint256)[]"], [[(w.recipient, w.amount) for w in ws]]))
    assert withdrawals_hash(ws) == expected
    assert withdrawals_hash(ws[:1]) != expected


def test_quote_digest_binds_every_claim() -> None:
    m, ek = RNG(32), enc_key_hash(RNG(32))
    base = quote_digest(1, m, "0x" + "aa" * 20, ek, 100)
    assert base != quote_digest(2, m, "0x" + "aa" * 20, ek, 100)
    assert base != quote_digest(1, RNG(32), "0x" + "aa" * 20, ek, 100)
    assert base != quote_digest(1, m, "0x" + "bb" * 20, ek, 100)
    assert base != quote_digest(1, m, "0x" + "aa" * 20, enc_key_hash(RNG(32)), 100)
    assert base != quote_digest(1, m, "0x" + "aa" * 20, ek, 101)


def test_message_chain() -> None:
    msgs = [L1Message(i, 1, "0x" + "aa" * 20, i * 10, 5 + i, RNG(i)) for i in range(4)]
    acc = accumulate(MSG_GENESIS_ACC, msgs)
    assert acc == accumulate(accumulate(MSG_GENESIS_ACC, msgs[:2]), msgs[2:])
    swapped = [msgs[1], msgs[0], *msgs[2:]]
    assert accumulate(MSG_GENESIS_ACC, swapped) != acc


def test_envelope_roundtrip_and_refusals() -> None:
    epoch_key = X25519PrivateKey.generate()
    pub = epoch_key.public_key().public_bytes_raw()
    req = seal(b"signed tx", pub, chain_id=77, epoch=3)
    wire = req.envelope.encode()
    opened = open_envelope(Envelope.decode(wire), epoch_key, 77)
    assert opened.plaintext == b"signed tx"
    assert opened.receipt_key == req.receipt_key
    # wrong chain id, wrong key, tampered ciphertext, epoch relabelled: all refused
    with pytest.raises(EnvelopeError, match="bad tag"):
        open_envelope(Envelope.decode(wire), epoch_key, 78)
    with pytest.raises(EnvelopeError, match="bad tag"):
        open_envelope(Envelope.decode(wire), X25519PrivateKey.generate(), 77)
    tampered = wire[:-1] + bytes([wire[-1] ^ 1])
    with pytest.raises(EnvelopeError, match="bad tag"):
        open_envelope(Envelope.decode(tampered), epoch_key, 77)
    relabelled = wire[:2] + (4).to_bytes(8, "big") + wire[10:]
    with pytest.raises(EnvelopeError, match="bad tag"):
        open_envelope(Envelope.decode(relabelled), epoch_key, 77)
    with pytest.raises(EnvelopeError, match="too short"):
        Envelope.decode(wire[:20])
    with pytest.raises(EnvelopeError, match="too large"):
        Envelope.decode(b"\x01" + b"\0" * MAX_ENVELOPE_BYTES)
    with pytest.raises(EnvelopeError, match="version"):
        Envelope.decode(b"\x09" + wire[1:])


def test_receipt_is_deterministic_and_private() -> None:
    epoch_key = X25519PrivateKey.generate()
    req = seal(b"tx", epoch_key.public_key().public_bytes_raw(), 1, 0)
    opened = open_envelope(req.envelope, epoch_key, 1)
    r1 = seal_receipt(opened.receipt_key, b"receipt")
    assert r1 == seal_receipt(opened.receipt_key, b"receipt")  # same bytes on every member
    assert open_receipt(req.receipt_key, r1) == b"receipt"
    other = seal(b"tx", epoch_key.public_key().public_bytes_raw(), 1, 0)
    with pytest.raises(EnvelopeError, match="does not decrypt"):
        open_receipt(other.receipt_key, r1)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_merkle_proofs(n: int) -> None:
    leaves = [RNG(32) for _ in range(n)]
    root = merkle_root(leaves)
    for i in range(n):
        assert merkle_verify(root, leaves[i], merkle_proof(leaves, i))
    assert not merkle_verify(root, RNG(32), merkle_proof(leaves, 0))


def test_smt_proofs_and_salt_hides_balance() -> None:
    tree = SparseMerkleTree()
    salts = {i: RNG(32) for i in range(40)}
    keys = {i: smt_key(RNG(20)) for i in range(40)}
    tree.update({keys[i]: smt_leaf(keys[i], 1000 + i, salts[i]) for i in range(40)})
    for i in range(40):
        proof = tree.proof(keys[i])
        assert smt_verify(tree.root, keys[i], smt_leaf(keys[i], 1000 + i, salts[i]), proof)
        assert not smt_verify(tree.root, keys[i], smt_leaf(keys[i], 1001 + i, salts[i]), proof)
        assert len(proof) < 20  # compact: ~log2(n), not 256
    # the same balance under another salt is another leaf: a leaf does not reveal the balance
    assert smt_leaf(keys[0], 1000, salts[0]) != smt_leaf(keys[0], 1000, RNG(32))


def test_routing_hint_is_bound_to_the_envelope() -> None:
    from enclavenet.crypto.envelope import RoutingHint

    epoch_key = X25519PrivateKey.generate()
    hint = RoutingHint(b"\x11" * 20, 5)
    req = seal(b"tx", epoch_key.public_key().public_bytes_raw(), 1, 2, hint=hint)
    wire = req.envelope.encode()
    env = Envelope.decode(wire)
    assert env.hint == hint
    assert open_envelope(env, epoch_key, 1).plaintext == b"tx"
    # a host that rewrites the cleartext hint (to reorder or misattribute) breaks the tag
    forged = Envelope(env.epoch, env.eph_pub, env.nonce, env.ciphertext, RoutingHint(b"\x22" * 20, 5))
    with pytest.raises(EnvelopeError, match="bad tag"):
        open_envelope(Envelope.decode(forged.encode()), epoch_key, 1)
    stripped = Envelope(env.epoch, env.eph_pub, env.nonce, env.ciphertext, None)
    with pytest.raises(EnvelopeError, match="bad tag"):
        open_envelope(Envelope.decode(stripped.encode()), epoch_key, 1)
    with pytest.raises(EnvelopeError, match="flags"):  # 16 is no flag (8 is padding, 4 hint authentication)
        Envelope.decode(wire[:1] + b"\x10" + wire[2:])


def test_envelope_opener_equals_open_envelope() -> None:
    """The enclave's per-key opener: same plaintext, receipt key and refusals as open_envelope."""
    from enclavenet.crypto.envelope import EnvelopeOpener, RoutingHint

    epoch_key = X25519PrivateKey.generate()
    pub = epoch_key.public_key().public_bytes_raw()
    opener = EnvelopeOpener(epoch_key, 77, 3)
    assert "77" in repr(opener) and pub.hex() not in repr(opener)
    for hint in (None, RoutingHint(b"\x11" * 20, 9)):
        req = seal(os.urandom(150), pub, chain_id=77, epoch=3, hint=hint)
        env = Envelope.decode(req.envelope.encode())
        a, b = opener.open(env), open_envelope(env, epoch_key, 77)
        assert (a.plaintext, a.receipt_key) == (b.plaintext, b.receipt_key)
        assert a.receipt_key == req.receipt_key
        wire = req.envelope.encode()
        for bad in (wire[:-1] + bytes([wire[-1] ^ 1]), wire[:60] + bytes([wire[60] ^ 1]) + wire[61:]):
            with pytest.raises(EnvelopeError, match="bad tag"):
                opener.open(Envelope.decode(bad))
    with pytest.raises(EnvelopeError, match="bad tag"):
        EnvelopeOpener(epoch_key, 78, 3).open(env)
    with pytest.raises(EnvelopeError, match="epoch 4"):
        opener.open(Envelope.decode(seal(b"x", pub, 77, 4).envelope.encode()))
    # its HKDF over hashlib is the cryptography HKDF of open_envelope
    import struct

    from enclavenet.crypto.envelope import _hkdf64, _kdf

    for _ in range(50):
        shared, eph, epub = RNG(32), RNG(32), RNG(32)
        chain, epoch = int.from_bytes(RNG(8), "big"), int.from_bytes(RNG(8), "big")
        info = b"EnclaveNet.envelope.v1" + struct.pack(">QQ", chain, epoch)
        assert _hkdf64(eph + epub, shared, info) == b"".join(_kdf(shared, eph, epub, chain, epoch))
    with pytest.raises(EnvelopeError, match="not a valid X25519 point"):
        opener.open(Envelope(3, bytes(32), RNG(12), RNG(40)))  # a low-order point
    # the receipt format: nonce = keccak256(key || plaintext)[:12], then AES-GCM
    key = os.urandom(32)
    sealed = seal_receipt(key, b"receipt bytes")
    assert sealed[:12] == keccak256(key, b"receipt bytes")[:12]
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    # v2: the plaintext is padded (len || plaintext || zeros) to the 512-byte size bucket
    body = len(b"receipt bytes").to_bytes(4, "big") + b"receipt bytes" + bytes(512 - 32 - 13)
    assert sealed[12:] == AESGCM(key).encrypt(sealed[:12], body, b"EnclaveNet.receipt.v2")
    assert len(sealed) == 512
