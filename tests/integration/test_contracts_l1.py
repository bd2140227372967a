"""The L1 contract on both backends (embedded eth-tester and anvil): every refusal with its
reason, and the positive paths checked against the Python formats in enclavenet.crypto."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from web3.contract import Contract
from web3.logs import DISCARD

from enclavenet.chain import L1, TxReverted, TxSender
from enclavenet.contracts import deploy_contracts, load_artifact, qc_signatures
from enclavenet.contracts.encoding import compact_signature
from enclavenet.contracts.simulate import Quote, SimEnclave, SimPlatform, sign_qc
from enclavenet.crypto.hashing import ZERO32, keccak256, to_checksum
from enclavenet.crypto.header import (
    EMPTY_WITHDRAWALS_HASH,
    GENESIS_PREV_HASH,
    Header,
    Withdrawal,
    header_signing_digest,
    withdrawals_hash,
)
from enclavenet.crypto.messages import KIND_USER, MSG_GENESIS_ACC, L1Message, accumulate
from enclavenet.crypto.quote import enc_key_hash, quote_digest
from enclavenet.crypto.secp256k1 import SigningKey

DAY = 86_400
TYPES = (1, 2, 3)  # sgx, tdx, sev-snp
QUORUM, MIN_TYPES = 3, 2


class World:
    """One deployment: 3 simulated platforms, 5 registered enclaves (types 1,2,3,1,2),
    quorum 3 of at least 2 types. Sends with account 0 (the owner)."""

    def __init__(self, l1: L1) -> None:
        self.l1 = l1
        self.w3 = l1.w3
        self.owner: TxSender = l1.sender(0)
        self.user: TxSender = l1.sender(1)
        self.platforms = {t: SimPlatform(t) for t in TYPES}
        self.measurement = {t: os.urandom(32) for t in TYPES}
        dep = deploy_contracts(
            self.owner, self.owner.address, QUORUM, MIN_TYPES,
            platform_roots={t: p.root_address for t, p in self.platforms.items()},
            measurements={t: [m] for t, m in self.measurement.items()},
        )
        self.rollup: Contract = dep.rollup
        self.address = str(dep.rollup.address)
        self.members = [SimEnclave(t) for t in (1, 2, 3, 1, 2)]
        for e in self.members:
            self.owner.transact(self.rollup.functions.register(*self.quote(e).args()))
        self.prev = GENESIS_PREV_HASH

    def quote(self, e: SimEnclave, expiry: int | None = None, measurement: bytes | None = None) -> Quote:
        exp = expiry if expiry is not None else self.l1.timestamp() + DAY
        return self.platforms[e.tee_type].quote(e, measurement or self.measurement[e.tee_type], exp)

    def fn(self) -> Any:
        return self.rollup.functions

    def header(self, **kw: Any) -> Header:
        f = self.fn()
        base: dict[str, Any] = dict(
            height=f.lastHeight().call() + 1, prev_hash=self.prev, epoch=1, epoch_key=b"\x11" * 32,
            l1_block=self.l1.block_number() - 1, msg_count=f.msgCount().call(),
            msg_acc=bytes(f.msgAcc().call()), tx_root=os.urandom(32), receipts_root=os.urandom(32),
            state_root=os.urandom(32), balances_root=os.urandom(32),
            withdrawals_hash=EMPTY_WITHDRAWALS_HASH, data_commitment=os.urandom(32),
        )
        base.update(kw)
        return Header(**base)

    def sigs(self, header: Header, signers: Sequence[SimEnclave] | None = None) -> list[tuple[bytes, bytes]]:
        return sign_qc(header, signers if signers is not None else self.members[:3], self.l1.chain_id, self.address)

    def submit_header(self, header: Header, sigs: Any = None, withdrawals: Sequence[Withdrawal] = ()) -> Any:
        ws = [(w.recipient, w.amount) for w in withdrawals]
        receipt = self.owner.transact(
            self.fn().submitHeader(header.as_tuple(), ws, self.sigs(header) if sigs is None else sigs)
        )
        self.prev = header.hash()
        return receipt

    def accept(self, signers: Sequence[SimEnclave], **kw: Any) -> Any:
        """Build the next header, have ``signers`` sign it, and submit it."""
        h = self.header(**kw)
        return self.submit_header(h, self.sigs(h, signers))

    def refused(self, sender: TxSender, call: Any, reason: str, value: int = 0) -> None:
        with pytest.raises(TxReverted) as info:
            sender.transact(call, value=value)
        assert reason in info.value.reason, info.value.reason

    def events(self, receipt: Any, name: str) -> list[Any]:
        return list(getattr(self.rollup.events, name)().process_receipt(receipt, errors=DISCARD))


@pytest.fixture
def world(l1: L1) -> World:
    return World(l1)


# ---------------------------------------------------------------- registry: registration


def test_registration_records_the_enclave_and_emits_an_event(world: World) -> None:
    e = SimEnclave(3)
    q = world.quote(e)
    receipt = world.user.transact(world.fn().register(*q.args()))  # anyone may carry a quote
    (ev,) = world.events(receipt, "EnclaveRegistered")
    assert ev.args.enclave == e.address and ev.args.tee_type == 3
    assert ev.args.measurement == world.measurement[3] and ev.args.expiry == q.expiry
    assert ev.args.enc_key_hash == enc_key_hash(e.enc_public_key)
    info = world.fn().enclaveInfo(e.address).call()
    assert info == (3, world.measurement[3], q.expiry, False, enc_key_hash(e.enc_public_key), True)
    assert world.fn().isActive(e.address).call()
    assert not world.fn().isActive(SimEnclave(1).address).call()


def test_bad_quote_signature_is_refused(world: World) -> None:
    e = SimEnclave(1)
    q = world.quote(e)
    forged = replace(q, signature=SigningKey.generate().sign(
        quote_digest(1, q.measurement, e.address, q.enc_key_hash, q.expiry)))
    world.refused(world.user, world.fn().register(*forged.args()), "bad quote signature")
    # a genuine signature over other fields (here: another enclave key) is just as bad
    other = replace(q, enclave=SimEnclave(1).address)
    world.refused(world.user, world.fn().register(*other.args()), "bad quote signature")
    # a root of another TEE type does not vouch for this one
    wrong_root = world.platforms[2].quote(e, world.measurement[1], q.expiry)
    world.refused(world.user, world.fn().register(1, *wrong_root.args()[1:]), "bad quote signature")
    world.refused(world.user, world.fn().register(*q.args()[:5], q.signature[:64]), "must be 65 bytes")
    assert not world.fn().isActive(e.address).call()


def test_quote_for_a_disallowed_measurement_is_refused(world: World) -> None:
    e = SimEnclave(1)
    q = world.quote(e, measurement=os.urandom(32))
    world.refused(world.user, world.fn().register(*q.args()), "measurement is not allowed")
    # allowed for tdx only: not a valid sgx measurement
    q2 = world.quote(e, measurement=world.measurement[2])
    world.refused(world.user, world.fn().register(*q2.args()), "not allowed for this TEE type")


def test_replayed_registration_is_refused_and_reattestation_needs_a_later_expiry(world: World) -> None:
    e = world.members[0]
    old = world.fn().enclaveInfo(e.address).call()[2]
    q = world.quote(e, expiry=old)
    world.refused(world.user, world.fn().register(*q.args()), "replayed or not newer")
    later = world.quote(e, expiry=old + DAY)
    world.user.transact(world.fn().register(*later.args()))
    assert world.fn().enclaveInfo(e.address).call()[2] == old + DAY
    world.refused(world.user, world.fn().register(*later.args()), "replayed or not newer")


def test_expired_quote_unknown_and_revoked_types_are_refused(world: World) -> None:
    e = SimEnclave(1)
    past = world.quote(e, expiry=world.l1.timestamp() - 1)
    world.refused(world.user, world.fn().register(*past.args()), "quote expired")
    q = world.quote(e)
    world.refused(world.user, world.fn().register(9, *q.args()[1:]), "unknown TEE type")
    world.refused(world.user, world.fn().register(0, *q.args()[1:]), "must be in 1..255")
    world.owner.transact(world.fn().revokeType(1))
    world.refused(world.user, world.fn().register(*q.args()), "TEE type is revoked")


def test_revoked_enclave_cannot_register_again(world: World) -> None:
    e = world.members[0]
    world.owner.transact(world.fn().revokeEnclave(e.address))
    later = world.quote(e, expiry=world.l1.timestamp() + 2 * DAY)
    world.refused(world.user, world.fn().register(*later.args()), "enclave is revoked")
    world.refused(world.owner, world.fn().revokeEnclave(e.address), "already revoked")


def test_non_owner_admin_calls_are_refused(world: World) -> None:
    f, u = world.fn(), world.user
    root = SigningKey.generate().address
    for call in (
        f.setPlatformRoot(4, root), f.allowMeasurement(1, os.urandom(32)),
        f.revokeMeasurement(1, world.measurement[1]), f.revokeType(1),
        f.revokeEnclave(world.members[0].address), f.setPolicy(2, 1), f.transferOwnership(u.address),
    ):
        world.refused(u, call, "caller is not the owner")
    # after a transfer the old owner is refused too
    world.owner.transact(f.transferOwnership(u.address))
    assert f.owner().call() == u.address
    world.refused(world.owner, f.setPolicy(2, 1), "caller is not the owner")
    u.transact(f.setPolicy(2, 1))
    assert (f.quorum().call(), f.minTypes().call()) == (2, 1)


def test_admin_input_is_checked(world: World) -> None:
    f, o = world.fn(), world.owner
    world.refused(o, f.setPolicy(0, 0), "quorum must be in 1..32")
    world.refused(o, f.setPolicy(33, 1), "quorum must be in 1..32")
    world.refused(o, f.setPolicy(3, 4), "min_types must be in 1..quorum")
    world.refused(o, f.setPlatformRoot(256, SigningKey.generate().address), "must be in 1..255")
    world.refused(o, f.setPlatformRoot(4, "0x" + "00" * 20), "zero address")
    world.refused(o, f.allowMeasurement(4, os.urandom(32)), "unknown TEE type")
    world.refused(o, f.allowMeasurement(1, ZERO32), "measurement is zero")
    world.refused(o, f.allowMeasurement(1, world.measurement[1]), "already allowed")
    world.refused(o, f.revokeMeasurement(2, world.measurement[1]), "not allowed for this TEE type")
    world.refused(o, f.revokeEnclave(SimEnclave(1).address), "not registered")
    world.refused(o, f.transferOwnership("0x" + "00" * 20), "zero address")
    o.transact(f.revokeType(3))
    world.refused(o, f.revokeType(3), "already revoked")
    world.refused(o, f.setPlatformRoot(3, SigningKey.generate().address), "TEE type is revoked")
    assert f.typeRevoked(3).call() and not f.typeRevoked(2).call()


# ---------------------------------------------------------------- rollup: L1 messages


def test_deposits_and_submissions_form_the_python_message_chain(world: World) -> None:
    f = world.fn()
    assert bytes(f.msgAcc().call()) == MSG_GENESIS_ACC and f.msgCount().call() == 0
    a, b = world.user, world.l1.sender(2)
    big = os.urandom(20_000)
    receipts = [
        a.transact(f.deposit(), value=10**18),
        b.transact(f.submit(b"\x01envelope"), value=0),
        a.transact(f.submit(os.urandom(300)), value=5),
        b.transact(f.submitLarge(big)),
        a.transact(f.deposit(), value=7),
    ]
    msgs = []
    for r in receipts:
        (ev,) = world.events(r, "L1Message")
        assert ev.args.l1_block == r["blockNumber"] and ev.args.kind == KIND_USER
        msgs.append(L1Message(ev.args.index, ev.args.kind, ev.args.sender, ev.args.value,
                              ev.args.l1_block, bytes(ev.args.payload)))
    assert [m.index for m in msgs] == list(range(5))
    assert [m.sender for m in msgs] == [a.address, b.address, a.address, b.address, a.address]
    assert [m.value for m in msgs] == [10**18, 0, 5, 0, 7]
    assert msgs[1].payload == b"\x01envelope" and msgs[3].payload == big and msgs[0].payload == b""
    assert bytes(f.msgAcc().call()) == accumulate(MSG_GENESIS_ACC, msgs)
    assert f.msgCount().call() == 5
    assert world.w3.eth.get_balance(world.address) == 10**18 + 12


def test_bad_deposits_and_submissions_are_refused(world: World) -> None:
    f = world.fn()
    world.refused(world.user, f.deposit(), "deposit needs a value")
    world.refused(world.user, f.submit(b""), "empty payload")
    world.refused(world.user, f.submitLarge(b""), "empty payload")
    with pytest.raises(TxReverted):  # over the 8 KiB bound of submit (Vyper refuses the calldata)
        world.user.transact(f.submit(os.urandom(8193)))
    assert f.msgCount().call() == 0


# ---------------------------------------------------------------- rollup: headers


def test_a_qcd_header_is_accepted_and_records_the_epoch_key(world: World) -> None:
    f = world.fn()
    world.user.transact(f.deposit(), value=1000)
    h = world.header(epoch=1, epoch_key=b"\x42" * 32)
    r = world.submit_header(h)
    (acc,) = world.events(r, "HeaderAccepted")
    assert acc.args.height == 1 and bytes(acc.args.header_hash) == h.hash()
    (ek,) = world.events(r, "EpochKeySet")
    assert ek.args.epoch == 1 and bytes(ek.args.epoch_key) == b"\x42" * 32
    assert bytes(f.lastHeaderHash().call()) == h.hash() == bytes(f.headerHash(h.as_tuple()).call())
    assert bytes(f.headerDigest(h.hash()).call()) == header_signing_digest(h.hash(), world.l1.chain_id, world.address)
    assert (f.lastHeight().call(), f.msgConsumed().call(), f.currentEpoch().call()) == (1, 1, 1)
    assert bytes(f.epochKey(1).call()) == b"\x42" * 32
    # same epoch: the key is not rewritten; a new epoch records its key
    h2 = world.header(epoch=1, epoch_key=b"\x42" * 32)
    assert not world.events(world.submit_header(h2, world.sigs(h2, world.members[2:5])), "EpochKeySet")
    h3 = world.header(epoch=2, epoch_key=b"\x43" * 32)
    r3 = world.submit_header(h3)
    assert [e.args.epoch for e in world.events(r3, "EpochKeySet")] == [2]
    assert bytes(f.epochKey(2).call()) == b"\x43" * 32 and f.currentEpoch().call() == 2


def test_wrong_height_and_broken_prev_link_are_refused(world: World) -> None:
    world.submit_header(world.header())
    for h, reason in (
        (world.header(height=3), "wrong height"),
        (world.header(height=1, prev_hash=GENESIS_PREV_HASH), "wrong height"),
        (world.header(prev_hash=os.urandom(32)), "prev_hash does not link"),
        (world.header(prev_hash=GENESIS_PREV_HASH), "prev_hash does not link"),
    ):
        world.refused(world.owner, world.fn().submitHeader(h.as_tuple(), [], world.sigs(h)), reason)


def test_message_count_and_accumulator_are_checked(world: World) -> None:
    f, o = world.fn(), world.owner
    world.user.transact(f.deposit(), value=1)
    acc1 = bytes(f.msgAcc().call())
    world.user.transact(f.deposit(), value=2)
    for h, reason in (
        (world.header(msg_count=3), "beyond the L1 messages"),
        (world.header(msg_acc=os.urandom(32)), "msg_acc differs"),
        (world.header(l1_block=world.l1.block_number() + 5), "not a finished L1 block"),
        (world.header(withdrawals_hash=os.urandom(32)), "withdrawals do not match"),
    ):
        world.refused(o, f.submitHeader(h.as_tuple(), [], world.sigs(h)), reason)
    # consuming only some messages: the accumulator after them is checked too (the ring;
    # tests/integration/test_msg_ring_l1.py has the forged-deposit and lag cases)
    h = world.header(msg_count=1, msg_acc=os.urandom(32))
    world.refused(o, f.submitHeader(h.as_tuple(), [], world.sigs(h)), "msg_acc differs")
    world.submit_header(world.header(msg_count=1, msg_acc=acc1))
    h = world.header(msg_count=0)
    world.refused(o, f.submitHeader(h.as_tuple(), [], world.sigs(h)), "msg_count goes backwards")
    h = world.header(l1_block=0)
    world.refused(o, f.submitHeader(h.as_tuple(), [], world.sigs(h)), "l1_block goes backwards")
    world.submit_header(world.header(epoch=5))
    h = world.header(epoch=4)
    world.refused(o, f.submitHeader(h.as_tuple(), [], world.sigs(h)), "epoch goes backwards")


def _refuse_qc(world: World, sigs: Any, reason: str) -> None:
    h = world.header()
    call = world.fn().submitHeader(h.as_tuple(), [], sigs(h) if callable(sigs) else sigs)
    world.refused(world.owner, call, reason)


def test_qc_signer_checks(world: World) -> None:
    m = world.members
    # duplicate signer: the same signature twice is not strictly increasing
    def dup(h: Header) -> list[Any]:
        s = world.sigs(h, m[:3])
        return [s[0], s[0], s[1], s[2]]
    _refuse_qc(world, dup, "not strictly increasing")
    # out of order
    _refuse_qc(world, lambda h: list(reversed(world.sigs(h, m[:3]))), "not strictly increasing")
    # an unregistered key
    _refuse_qc(world, lambda h: world.sigs(h, [*m[:2], SimEnclave(3)]), "not a registered enclave")
    # a signature over another header (recovers to some random address)
    _refuse_qc(world, lambda h: world.sigs(replace(h, tx_root=os.urandom(32)), m[:3]), "not a registered enclave")
    # garbage that does not recover at all
    _refuse_qc(world, lambda h: [(b"\0" * 32, b"\0" * 32), *world.sigs(h, m[:3])], "does not recover")
    # too few signatures / too few types (members 0 and 3 are both sgx)
    _refuse_qc(world, lambda h: world.sigs(h, m[:2]), "too few signatures")
    _refuse_qc(world, lambda h: world.sigs(h, [m[0], m[3]]), "too few signatures")
    world.owner.transact(world.fn().setPolicy(2, 2))
    _refuse_qc(world, lambda h: world.sigs(h, [m[0], m[3]]), "spans too few TEE types")
    world.accept([m[0], m[1]])


def test_revoked_enclave_type_and_measurement_stop_counting(world: World) -> None:
    f, o, m = world.fn(), world.owner, world.members
    o.transact(f.revokeEnclave(m[2].address))  # the only sev-snp member
    assert not f.isActive(m[2].address).call()
    _refuse_qc(world, lambda h: world.sigs(h, m[:3]), "revoked enclave")
    world.accept([m[0], m[1], m[3]])

    o.transact(f.revokeMeasurement(2, world.measurement[2]))  # tdx members 1 and 4
    assert f.measurementInfo(2, world.measurement[2]).call()[1]
    assert not f.isActive(m[1].address).call() and not f.isActive(m[4].address).call()
    _refuse_qc(world, lambda h: world.sigs(h, [m[0], m[1], m[3]]), "measurement is revoked")

    # revoke sgx as a whole: members 0 and 3
    world2 = World(world.l1)
    o2, f2, n = world2.owner, world2.fn(), world2.members
    world2.accept(n[:3])
    o2.transact(f2.revokeType(1))
    assert not f2.isActive(n[0].address).call() and f2.isActive(n[1].address).call()
    _refuse_qc(world2, lambda h: world2.sigs(h, n[:3]), "TEE type is revoked")
    # the others are re-checked against the bitmaps once (the record is brought up to
    # date, so the next QC is back on the fast path), then count again
    assert f2.revocationGeneration().call() == 1
    first = world2.accept([n[1], n[2], n[4]])
    second = world2.accept([n[1], n[2], n[4]])
    assert first["gasUsed"] > second["gasUsed"] + 3 * 2_000


def test_expired_enclave_stops_counting_and_reattestation_restores_it(world: World) -> None:
    f, m = world.fn(), world.members
    world.l1.increase_time(DAY + 10)
    assert not f.isActive(m[0].address).call()
    _refuse_qc(world, lambda h: world.sigs(h, m[:3]), "attestation expired")
    for e in m[:3]:
        world.user.transact(f.register(*world.quote(e).args()))
    assert f.isActive(m[0].address).call()
    world.accept(m[:3])


# ---------------------------------------------------------------- rollup: withdrawals


def test_withdrawals_are_paid_and_a_reverting_recipient_is_owed(world: World) -> None:
    f, w3 = world.fn(), world.w3
    world.user.transact(f.deposit(), value=10**18)
    alice, bob = to_checksum(os.urandom(20)), to_checksum(os.urandom(20))
    # a contract without a payable fallback cannot take the push: it is owed instead
    art = load_artifact("Rollup")
    refuser = world.owner.deploy(art["abi"], art["bytecode"], world.owner.address, 1, 1)
    ws = [Withdrawal(alice, 3 * 10**17), Withdrawal(bob, 1), Withdrawal(refuser, 5)]
    h = world.header(withdrawals_hash=withdrawals_hash(ws))
    r = world.submit_header(h, withdrawals=ws)
    paid = [(e.args.recipient, e.args.amount) for e in world.events(r, "WithdrawalPaid")]
    assert paid == [(alice, 3 * 10**17), (bob, 1)]
    assert [(e.args.recipient, e.args.amount) for e in world.events(r, "WithdrawalOwed")] == [(refuser, 5)]
    assert w3.eth.get_balance(alice) == 3 * 10**17 and w3.eth.get_balance(bob) == 1
    assert f.owed(refuser).call() == 5 and f.owedTotal().call() == 5
    assert w3.eth.get_balance(world.address) == 10**18 - 3 * 10**17 - 1
    world.refused(world.user, f.claim(), "nothing owed")


HUNGRY = """
# pragma version 0.4.3
interface Rollup:
    def claim(): nonpayable

got: public(uint256)

@external
@payable
def __default__():
    assert msg.gas > 40000, "needs more gas than a withdrawal push gives"
    self.got += msg.value

@external
def pull(rollup: address):
    extcall Rollup(rollup).claim()
"""


def test_a_recipient_needing_more_gas_claims_what_it_is_owed(world: World) -> None:
    import vyper

    art = vyper.compile_code(HUNGRY, output_formats=["abi", "bytecode"])
    hungry = world.w3.eth.contract(address=world.owner.deploy(art["abi"], art["bytecode"]), abi=art["abi"])
    f = world.fn()
    world.user.transact(f.deposit(), value=1000)
    ws = [Withdrawal(str(hungry.address), 400)]
    r = world.submit_header(world.header(withdrawals_hash=withdrawals_hash(ws)), withdrawals=ws)
    assert [e.args.amount for e in world.events(r, "WithdrawalOwed")] == [400]
    assert f.owed(hungry.address).call() == 400 and hungry.functions.got().call() == 0
    r = world.user.transact(hungry.functions.pull(world.address))
    assert [(e.args.recipient, e.args.amount) for e in world.events(r, "Claimed")] == [(hungry.address, 400)]
    assert hungry.functions.got().call() == 400
    assert f.owed(hungry.address).call() == 0 and f.owedTotal().call() == 0
    assert world.w3.eth.get_balance(world.address) == 600


def test_withdrawal_larger_than_the_rollup_holds_is_refused(world: World) -> None:
    f = world.fn()
    world.user.transact(f.deposit(), value=100)
    ws = [Withdrawal(to_checksum(os.urandom(20)), 60), Withdrawal(to_checksum(os.urandom(20)), 41)]
    h = world.header(withdrawals_hash=withdrawals_hash(ws))
    call = f.submitHeader(h.as_tuple(), [(w.recipient, w.amount) for w in ws], world.sigs(h))
    world.refused(world.owner, call, "withdrawal larger than the Rollup holds")
    # the withdrawals passed must be the ones the header commits to
    h2 = world.header(withdrawals_hash=withdrawals_hash(ws[:1]))
    call = f.submitHeader(h2.as_tuple(), [(w.recipient, w.amount) for w in ws], world.sigs(h2))
    world.refused(world.owner, call, "withdrawals do not match")
    assert f.lastHeight().call() == 0


def test_qc_signatures_helper_orders_and_compacts(world: World) -> None:
    h = world.header()
    digest = header_signing_digest(h.hash(), world.l1.chain_id, world.address)
    raw = [e.key.sign(digest) for e in world.members[:3]]
    by_pairs = qc_signatures([(e.address, s) for e, s in zip(world.members[:3], raw, strict=True)])
    assert qc_signatures(raw, digest) == by_pairs == world.sigs(h)
    assert by_pairs[0] in [compact_signature(s) for s in raw]
    world.submit_header(h, by_pairs)
    assert bytes(world.fn().lastHeaderHash().call()) == keccak256(h.encode())
