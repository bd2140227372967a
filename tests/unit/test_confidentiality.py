"""Issue 11 item 3: what each observer can learn, one test per row of docs/CONFIDENTIALITY.md.

Rows tested here: envelope sizes (bucketed), what the routing hint shows (sender and nonce,
nothing of the call), batch data (what DAPs store and the L1 data commitment covers: no target,
selector, argument or amount), and the padding checks inside the enclave. Receipt sizes, error
entries and leaf diffs are tested in test_leaks.py; which contract a transaction calls, seen on
the wire and on L1 with unmodified clients, in tests/integration/test_gateway_clients.py.

Real in-process enclaves, real EVM, real crypto.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_abi import encode as abi_encode
from eth_account import Account

from enclavenet.crypto import envelope as envmod
from enclavenet.crypto.envelope import (
    ENVELOPE_BUCKET_MIN,
    ENVELOPE_BUCKET_STEP,
    FLAG_PADDED,
    MAX_ENVELOPE_BYTES,
    Envelope,
    EnvelopeError,
    EnvelopeOpener,
    RoutingHint,
    envelope_bucket,
    open_envelope,
    seal,
)
from enclavenet.crypto.hashing import keccak256
from enclavenet.enclave.harness import Member, batch_request, form_committee, program_config
from enclavenet.enclave.tx import sign_tx
from enclavenet.tee import DEFAULT_PROGRAM, InProcessEnclave, SimulatedVendor

CHAIN = 4243
TOKEN = "0x" + "ab" * 20


def _epoch() -> tuple[X25519PrivateKey, bytes]:
    k = X25519PrivateKey.generate()
    return k, k.public_key().public_bytes_raw()


def _calls(key: bytes) -> dict[str, bytes]:
    """Signed transactions of different kinds and sizes, one sender."""
    bob = Account.create().address
    sel = lambda sig: keccak256(sig.encode())[:4]  # noqa: E731
    return {
        "eth transfer": sign_tx(key, CHAIN, 0, bob, b"", 10**15, 21_000),
        "erc20 transfer": sign_tx(key, CHAIN, 1, TOKEN, sel("transfer(address,uint256)") + abi_encode(["address", "uint256"], [bob, 5]), 0, 60_000),
        "erc20 approve": sign_tx(key, CHAIN, 2, TOKEN, sel("approve(address,uint256)") + abi_encode(["address", "uint256"], [bob, 2**255]), 0, 60_000),
        "swap, 4 words": sign_tx(key, CHAIN, 3, TOKEN, sel("swap(uint256,uint256,address,uint256)") + bytes(128), 0, 200_000),
    }


def test_envelope_sizes_show_only_their_bucket() -> None:
    """Row "size of a transaction": a transfer, an approve, a swap and a plain ETH transfer seal
    to one length; without padding each would have its own (so this test can fail)."""
    _, pub = _epoch()
    alice = Account.create()
    calls = _calls(bytes(alice.key))
    hint = RoutingHint(bytes.fromhex(alice.address[2:]), 0)
    padded = {k: len(seal(raw, pub, CHAIN, 0, hint).envelope.encode()) for k, raw in calls.items()}
    bare = {k: len(seal(raw, pub, CHAIN, 0, hint, pad=False).envelope.encode()) for k, raw in calls.items()}
    assert len(set(padded.values())) == 1, padded
    assert len(set(bare.values())) == 3, bare  # what an observer would otherwise see (transfer = approve)
    # a deployment of a few KiB lands in a larger bucket: the size class shows, not the size
    code = os.urandom(3000)
    deploy = seal(sign_tx(bytes(alice.key), CHAIN, 4, None, code, 0, 3_000_000), pub, CHAIN, 0, hint).envelope
    deploy2 = seal(sign_tx(bytes(alice.key), CHAIN, 4, None, code[:2500], 0, 3_000_000), pub, CHAIN, 0, hint).envelope
    assert len(deploy.encode()) == len(deploy2.encode()) > max(padded.values())


def test_bucket_sizes() -> None:
    assert [envelope_bucket(n) for n in (0, 252, 253, 1000, 16380)] == [256, 256, 512, 1024, ENVELOPE_BUCKET_STEP]
    assert envelope_bucket(16381) == 2 * ENVELOPE_BUCKET_STEP
    assert envelope_bucket(16381, cap=20_000) == 20_000  # never past what fits in an envelope
    assert envelope_bucket(30_000, cap=20_000) == 30_004  # too big anyway: refused when decoded
    # the biggest transaction that fits still seals (padding is capped by the envelope limit)
    _, pub = _epoch()
    room = MAX_ENVELOPE_BYTES - envmod.HEADER_LEN - envmod.TAG_LEN - 4
    env = seal(bytes(room), pub, CHAIN, 0).envelope.encode()
    assert len(env) == MAX_ENVELOPE_BYTES and Envelope.decode(env).padded
    assert ENVELOPE_BUCKET_MIN == 256


def _padded_envelope(priv_pub: bytes, body: bytes) -> tuple[Envelope, bytes]:
    """An envelope with flag 8 whose AEAD plaintext is ``body`` as given (bad padding included)."""
    eph = X25519PrivateKey.generate()
    eph_pub = eph.public_key().public_bytes_raw()
    shared = eph.exchange(envmod.X25519PublicKey.from_public_bytes(priv_pub))
    key, rkey = envmod._kdf(shared, eph_pub, priv_pub, CHAIN, 0)
    nonce = os.urandom(12)
    ct = AESGCM(key).encrypt(nonce, body, envmod._aad(CHAIN, 0, eph_pub, FLAG_PADDED, b""))
    return Envelope(0, eph_pub, nonce, ct, None, False, None, True), rkey


@pytest.mark.parametrize("body,why", [
    (struct.pack(">I", 5) + b"hello" + b"\x00" * 247 + b"\x01", "non-zero padding"),
    (struct.pack(">I", 300) + bytes(252), "bad length prefix"),
    (b"\x00\x01", "shorter than its length prefix"),
])
def test_the_enclave_refuses_bad_padding(body: bytes, why: str) -> None:
    priv, pub = _epoch()
    env, _ = _padded_envelope(pub, body)
    with pytest.raises(EnvelopeError, match=why):
        open_envelope(env, priv, CHAIN)
    with pytest.raises(EnvelopeError, match=why):
        EnvelopeOpener(priv, CHAIN, 0).open(Envelope.decode(env.encode()))
    good, _ = _padded_envelope(pub, struct.pack(">I", 5) + b"hello" + bytes(247))
    assert EnvelopeOpener(priv, CHAIN, 0).open(good).plaintext == b"hello"
    # the padding flag is in the AAD: stripping it (to make the enclave read the prefix as data) fails
    stripped = Envelope(good.epoch, good.eph_pub, good.nonce, good.ciphertext)
    with pytest.raises(EnvelopeError, match="bad tag"):
        open_envelope(stripped, priv, CHAIN)


def test_the_routing_hint_shows_sender_and_nonce_and_nothing_of_the_call() -> None:
    """Row "routing hint": a host reads (sender, nonce); the target, selector, recipient and
    amount are in no byte of the envelope."""
    _, pub = _epoch()
    alice, bob = Account.create(), Account.create()
    amount = 123_456_789
    data = keccak256(b"transfer(address,uint256)")[:4] + abi_encode(["address", "uint256"], [bob.address, amount])
    raw = sign_tx(bytes(alice.key), CHAIN, 7, TOKEN, data, 0, 60_000)
    hint = RoutingHint(bytes.fromhex(alice.address[2:]), 7)
    wire = seal(raw, pub, CHAIN, 0, hint).envelope.encode()
    env = Envelope.decode(wire)
    assert env.hint == hint and env.padded
    for secret in (bytes.fromhex(TOKEN[2:]), data[:4], bytes.fromhex(bob.address[2:]), amount.to_bytes(32, "big")[-4:]):
        assert secret not in wire
    assert raw not in wire and raw[-65:] not in wire  # not even the transaction's signature


def _members() -> tuple[list[Member], bytes]:
    vendors = [SimulatedVendor.generate(n) for n in ("sgx", "tdx")]
    conf = program_config(vendors, chain_id=CHAIN)
    members = [Member(InProcessEnclave(v.new_platform(), DEFAULT_PROGRAM, conf)) for v in vendors]
    return members, form_committee(members, 2, 2)


def test_batch_data_names_no_target_selector_or_amount() -> None:
    """Row "which contract, which function, how much" for DAPs and L1: the batch data the DAPs
    store (and the header's data commitment covers) holds envelopes and sealed receipts only.
    Padded envelopes also execute: the enclave strips the padding before decoding."""
    members, pub = _members()
    alice, bob = Account.create(), Account.create()
    amount = 987_654_321
    envs: list[Any] = []
    for n, pad in ((0, True), (1, False)):  # an unpadded envelope (another client) still works
        raw = sign_tx(bytes(alice.key), CHAIN, n, bob.address, b"", 0, 21_000)
        envs.append(seal(raw, pub, CHAIN, 0, pad=pad))
    data = keccak256(b"transfer(address,uint256)")[:4] + abi_encode(["address", "uint256"], [bob.address, amount])
    envs.append(seal(sign_tx(bytes(alice.key), CHAIN, 2, TOKEN, data, 0, 60_000), pub, CHAIN, 0))
    req = batch_request(1, bytes(32), envelopes=[s.envelope.encode() for s in envs])
    out = members[0].call("execute_batch", with_diff=True, **req)
    assert len(out["receipts"]) == 3
    # row "write set" (hosts of members that apply the proposer's diff): sealed, it names nobody
    for name, blob in (("batch data", out["batch_data"]), ("state diff", out["diff"])):
        for secret in (bytes.fromhex(TOKEN[2:]), data[:4], bytes.fromhex(bob.address[2:]),
                       bytes.fromhex(alice.address[2:]), amount.to_bytes(32, "big")[-4:]):
            assert secret not in blob, name
    assert members[1].call("verify_batch", header=out["header"], **req)["header_hash"] == out["header_hash"]
