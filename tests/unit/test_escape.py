"""Escape-hatch formats (crypto.escape) and the enclave's side of challenges and escape leaves:
the challenge bond settled in the signed state, and each user's own leaf sealed to their key."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from eth_account import Account

from enclavenet.crypto.envelope import open_receipt, seal
from enclavenet.crypto.escape import (
    DEFAULT_TREASURY,
    PAD_TO,
    EscapeError,
    EscapeLeaf,
    escape_request_digest,
    open_escape_leaf,
    public_key_address,
    recover_public_key,
    seal_escape_leaf,
)
from enclavenet.crypto.hashing import keccak256, to_checksum
from enclavenet.crypto.header import Header
from enclavenet.crypto.messages import KIND_CHALLENGE, KIND_USER
from enclavenet.crypto.secp256k1 import SigningKey
from enclavenet.crypto.smt import SparseMerkleTree, smt_key, smt_leaf
from enclavenet.enclave.executor import Receipt
from enclavenet.enclave.harness import Member, batch_request, form_committee, program_config
from enclavenet.enclave.program import ProgramConfig
from enclavenet.enclave.tx import encode_inbox_call, sign_tx
from enclavenet.tee import DEFAULT_PROGRAM, EnclaveError, InProcessEnclave, SimulatedVendor

CHAIN, L1_CHAIN = 4242, 31337
BOND = 10**16
ETH = 10**18
VENDORS = [SimulatedVendor.generate(n) for n in ("sgx", "tdx")]
TREASURY = Account.create()
CFG = {**program_config(VENDORS, chain_id=CHAIN, l1_chain_id=L1_CHAIN), "treasury": TREASURY.address}
ROLLUP = CFG["rollup"]


# ---------------------------------------------------------------- formats


def _tree(n: int) -> tuple[SparseMerkleTree, list[tuple[SigningKey, int, bytes]]]:
    accts = [(SigningKey.generate(), 10**15 + i, os.urandom(32)) for i in range(n)]
    t = SparseMerkleTree()
    t.update({smt_key(k.address): smt_leaf(smt_key(k.address), b, s) for k, b, s in accts})
    return t, accts


def test_leaf_encodes_verifies_and_seals_to_its_owner_only() -> None:
    t, accts = _tree(30)
    k, bal, salt = accts[4]
    hh = os.urandom(32)
    leaf = EscapeLeaf(k.address, bal, salt, tuple(t.proof(smt_key(k.address))), 9, hh, t.root)
    assert leaf.verify() and EscapeLeaf.decode(leaf.encode()) == leaf
    assert not EscapeLeaf(k.address, bal + 1, salt, leaf.siblings, 9, hh, t.root).verify()
    assert not leaf.verify(os.urandom(32))
    assert salt.hex() not in repr(leaf) and "siblings" not in repr(leaf)
    sealed = seal_escape_leaf(leaf, k._key.public_key.format(compressed=False))
    assert open_escape_leaf(sealed, k.secret) == leaf
    with pytest.raises(EscapeError, match="does not decrypt with this key"):
        open_escape_leaf(sealed, accts[5][0].secret)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(EscapeError, match="does not decrypt"):
        open_escape_leaf(bytes(tampered), k.secret)
    with pytest.raises(EscapeError, match="bad magic"):
        open_escape_leaf(b"nope" + sealed, k.secret)
    # the sealed length says nothing: an account without a leaf looks the same
    empty = EscapeLeaf.empty(accts[6][0].address, 9, hh, t.root)
    assert not empty.has_leaf and not empty.verify()
    sealed_empty = seal_escape_leaf(empty, accts[6][0]._key.public_key.format(compressed=True))
    assert len(sealed_empty) == len(sealed) == 5 + 33 + 12 + PAD_TO + 16


def test_leaf_refuses_malformed_fields_with_reasons() -> None:
    with pytest.raises(EscapeError, match="salt must be 32 bytes"):
        EscapeLeaf(DEFAULT_TREASURY, 1, b"x", (), 1, bytes(32), bytes(32))
    with pytest.raises(EscapeError, match="at most 256 siblings"):
        EscapeLeaf(DEFAULT_TREASURY, 1, bytes(32), (bytes(32),) * 257, 1, bytes(32), bytes(32))
    with pytest.raises(EscapeError, match="not an ABI-encoded leaf"):
        EscapeLeaf.decode(b"\x01" * 40)


def test_request_signature_recovers_the_users_key() -> None:
    k = SigningKey.generate()
    d = escape_request_digest(CHAIN, L1_CHAIN, ROLLUP, k.address, 1234)
    assert d != escape_request_digest(CHAIN, L1_CHAIN, ROLLUP, k.address, 1235)
    assert d != escape_request_digest(CHAIN + 1, L1_CHAIN, ROLLUP, k.address, 1234)
    assert public_key_address(recover_public_key(d, k.sign(d))) == k.address
    with pytest.raises(EscapeError, match="65 bytes"):
        recover_public_key(d, b"\x00" * 64)
    with pytest.raises(EscapeError, match="v must be 27/28"):
        recover_public_key(d, b"\x01" * 64 + b"\x05")


def test_program_config_takes_a_treasury() -> None:
    assert ProgramConfig.from_mapping(program_config(VENDORS)).treasury == DEFAULT_TREASURY
    assert ProgramConfig.from_mapping(CFG).treasury == to_checksum(TREASURY.address)


# ---------------------------------------------------------------- the enclave


class Net:
    def __init__(self) -> None:
        self.members = [Member(InProcessEnclave(v.new_platform(), DEFAULT_PROGRAM, CFG)) for v in VENDORS]
        self.epoch_pub = form_committee(self.members, 2, 2)
        self.prev = bytes(32)
        self.height = 0
        self.msg = 0
        self.l1_block = 1

    def batch(self, messages: list[list[Any]]) -> dict[str, Any]:
        """Execute on member 0, verify on member 1 (same header), accept on both."""
        msgs = []
        for kind, sender, value, payload in messages:
            msgs.append([self.msg, kind, sender, value, self.l1_block, payload])
            self.msg += 1
        self.height += 1
        req = batch_request(self.height, self.prev, l1_block=self.l1_block, messages=msgs)
        out = self.members[0].call("execute_batch", **req)
        v = self.members[1].call("verify_batch", header=out["header"], **req)
        assert v["header_hash"] == out["header_hash"]
        for m in self.members:
            m.call("accept_header", header=out["header"], signatures=[out["signature"], v["signature"]])
        self.prev = out["header_hash"]
        self.l1_block += 1
        return out

    def leaf(self, acct: Any, member: int = 0, *, expiry: int | None = None, signer: Any = None) -> tuple[EscapeLeaf, dict[str, Any]]:
        exp = int(time.time()) + 600 if expiry is None else expiry
        d = escape_request_digest(CHAIN, L1_CHAIN, ROLLUP, acct.address, exp)
        sig = SigningKey(bytes((signer or acct).key)).sign(d)
        out = self.members[member].call("escape_leaf", address=acct.address, expiry=exp, signature=sig)
        return open_escape_leaf(out["sealed"], bytes(acct.key)), out


def _receipt(out: dict[str, Any], sealed: Any) -> Receipt:
    return Receipt.decode(open_receipt(sealed.receipt_key, out["receipts"][keccak256(sealed.envelope.encode())]))


def test_challenge_bond_goes_back_when_executed_and_to_the_treasury_when_frivolous() -> None:
    net = Net()
    alice, bob, carol = Account.create(), Account.create(), Account.create()
    net.batch([[KIND_USER, alice.address, ETH, b""], [KIND_USER, carol.address, ETH, b""]])
    pay = seal(sign_tx(bytes(alice.key), CHAIN, 0, bob.address, value=5, gas=21_000), net.epoch_pub, CHAIN, 0)
    # alice's payment was ignored: she challenges it on L1 with a bond; the committee executes it
    out = net.batch([[KIND_CHALLENGE, alice.address, BOND, pay.envelope.encode()]])
    r = _receipt(out, pay)
    assert r.success
    assert net.leaf(alice)[0].balance == ETH - 5 + BOND  # the bond is back, inside EnclaveNet
    assert net.leaf(bob)[0].balance == 5
    assert net.leaf(TREASURY)[0].balance == 0
    # frivolous: the same transaction again (already executed), garbage, an unsigned inbox call
    inbox = seal(encode_inbox_call(CHAIN, bob.address, b"", 1, 50_000), net.epoch_pub, CHAIN, 0)
    out = net.batch([
        [KIND_CHALLENGE, carol.address, BOND, pay.envelope.encode()],
        [KIND_CHALLENGE, carol.address, BOND + 1, b"\x01\x02garbage"],
        [KIND_CHALLENGE, carol.address, BOND + 2, inbox.envelope.encode()],
    ])
    assert "nonce 0 already used" in str(_receipt(out, pay).error)
    assert "refused" in str(_receipt(out, inbox).error)
    assert net.leaf(TREASURY)[0].balance == 3 * BOND + 3
    assert net.leaf(carol)[0].balance == ETH
    assert net.leaf(bob)[0].balance == 5  # the inbox call did not run: challenges take signed txs only
    # a transaction that executes but reverts is still an execution: the bond comes back
    bad = seal(sign_tx(bytes(carol.key), CHAIN, 0, None, b"\xfe", 0, 100_000), net.epoch_pub, CHAIN, 0)
    out = net.batch([[KIND_CHALLENGE, carol.address, BOND, bad.envelope.encode()]])
    assert _receipt(out, bad).status == 0
    assert net.leaf(carol)[0].balance == ETH + BOND


def test_escape_leaf_is_the_users_own_proof_against_the_head() -> None:
    net = Net()
    users = [Account.create() for _ in range(12)]
    out = net.batch([[KIND_USER, u.address, ETH + i, b""] for i, u in enumerate(users)])
    header = Header.decode(out["header"])
    for i in (0, 7):
        for m in (0, 1):  # any member serves the same leaf
            leaf, raw = net.leaf(users[i], m)
            assert leaf.address == to_checksum(users[i].address) and leaf.balance == ETH + i
            assert leaf.verify(header.balances_root)
            assert (leaf.height, leaf.header_hash) == (header.height, header.hash()) == (raw["height"], raw["header_hash"])
            assert raw["balances_root"] == header.balances_root and raw["finalized"] is True
            # nothing in clear but where it proves against
            assert (ETH + i).to_bytes(32, "big") not in raw["sealed"]
    nobody = Account.create()
    leaf, raw = net.leaf(nobody)
    assert not leaf.has_leaf and leaf.balances_root == header.balances_root
    assert len(raw["sealed"]) == len(net.leaf(users[0])[1]["sealed"])


def test_escape_leaf_refusals_say_why() -> None:
    net = Net()
    alice, bob = Account.create(), Account.create()
    net.batch([[KIND_USER, alice.address, ETH, b""]])
    with pytest.raises(EnclaveError, match="not signed by"):
        net.leaf(alice, signer=bob)
    with pytest.raises(EnclaveError, match="expired"):
        net.leaf(alice, expiry=int(time.time()) - 5)
    m = net.members[0]
    with pytest.raises(EnclaveError, match="signature"):
        m.call("escape_leaf", address=alice.address, expiry=2**40, signature=b"\x00" * 64)
    with pytest.raises(EnclaveError, match="v must be 27/28"):
        m.call("escape_leaf", address=alice.address, expiry=2**40, signature=b"\x01" * 65)
    with pytest.raises(EnclaveError, match="address"):
        m.call("escape_leaf", address="alice", expiry=2**40, signature=b"\x01" * 65)
