"""Rollup.submitHeader checks a header's msg_acc against the ring of recent L1 message
accumulators, also when newer messages are pending -- on both backends (embedded eth-tester and
anvil). The forged-deposit case: a quorum fed the same fabricated deposit by colluding hosts
signs a header crediting it while later genuine messages are still pending; the L1 refuses it."""

from __future__ import annotations

import os
from typing import Any

import pytest
from web3.contract import Contract
from web3.logs import DISCARD

from enclavenet.chain import L1, TxReverted, TxSender
from enclavenet.contracts import deploy_contracts
from enclavenet.contracts.simulate import SimEnclave, SimPlatform, sign_qc
from enclavenet.crypto.hashing import ZERO32, to_checksum
from enclavenet.crypto.header import EMPTY_WITHDRAWALS_HASH, GENESIS_PREV_HASH, Header
from enclavenet.crypto.messages import KIND_USER, MSG_GENESIS_ACC, L1Message, accumulate

DAY = 86_400
RING = 256  # Rollup.vy MSG_RING

# appends n deposits of 1 wei in one transaction (n + 1 > RING messages in a couple of seconds)
SPAMMER = """
# pragma version 0.4.3
interface Rollup:
    def deposit(): payable

@external
@payable
def spam(rollup: address, n: uint256):
    for i: uint256 in range(n, bound=512):
        extcall Rollup(rollup).deposit(value=1)
"""


class World:
    """One deployment, 3 enclaves of 3 types (quorum 2 of 2 types); every L1 message recorded."""

    def __init__(self, l1: L1) -> None:
        self.l1 = l1
        self.owner: TxSender = l1.sender(0)
        self.user: TxSender = l1.sender(1)
        self.platforms = {t: SimPlatform(t) for t in (1, 2, 3)}
        m = os.urandom(32)
        dep = deploy_contracts(
            self.owner, self.owner.address, 2, 2,
            platform_roots={t: p.root_address for t, p in self.platforms.items()},
            measurements={t: [m] for t in self.platforms},
        )
        self.rollup: Contract = dep.rollup
        self.f = dep.rollup.functions
        self.address = str(dep.rollup.address)
        self.members = [SimEnclave(t) for t in (1, 2, 3)]
        for e in self.members:
            self.owner.transact(self.f.register(*self.platforms[e.tee_type].quote(e, m, l1.timestamp() + DAY).args()))
        self.prev = GENESIS_PREV_HASH
        self.messages: list[L1Message] = []

    def send(self, sender: TxSender, fn: Any, value: int = 0) -> None:
        """Send a message-appending call and record the messages it appended."""
        rc = sender.transact(fn, value=value)
        for ev in self.rollup.events.L1Message().process_receipt(rc, errors=DISCARD):
            a = ev.args
            self.messages.append(L1Message(a.index, a.kind, to_checksum(a.sender), a.value, a.l1_block, bytes(a.payload)))

    def acc(self, n: int) -> bytes:
        """The genuine accumulator after the first ``n`` messages."""
        return accumulate(MSG_GENESIS_ACC, self.messages[:n])

    def header(self, msg_count: int, msg_acc: bytes, l1_block: int | None = None) -> Header:
        if l1_block is None:
            # whole L1 blocks (issue 14 H5): l1_block stops before the first message left pending
            l1_block = self.l1.block_number() - 1
            if msg_count < len(self.messages):
                l1_block = min(l1_block, self.messages[msg_count].l1_block - 1)
        return Header(
            height=int(self.f.lastHeight().call()) + 1, prev_hash=self.prev, epoch=0, epoch_key=b"\x11" * 32,
            l1_block=l1_block, msg_count=msg_count, msg_acc=msg_acc,
            tx_root=ZERO32, receipts_root=ZERO32, state_root=os.urandom(32), balances_root=os.urandom(32),
            withdrawals_hash=EMPTY_WITHDRAWALS_HASH, data_commitment=ZERO32,
        )

    def call(self, h: Header) -> Any:
        """submitHeader with a valid QC of the committee (the enclaves signed what they were fed)."""
        return self.f.submitHeader(h.as_tuple(), [], sign_qc(h, self.members[:2], self.l1.chain_id, self.address))

    def accept(self, msg_count: int, msg_acc: bytes, l1_block: int | None = None) -> None:
        h = self.header(msg_count, msg_acc, l1_block)
        self.owner.transact(self.call(h))
        self.prev = h.hash()

    def refused(self, msg_count: int, msg_acc: bytes, reason: str, l1_block: int | None = None) -> None:
        height = int(self.f.lastHeight().call())
        with pytest.raises(TxReverted) as info:
            self.owner.transact(self.call(self.header(msg_count, msg_acc, l1_block)))
        assert reason in info.value.reason, info.value.reason
        assert int(self.f.lastHeight().call()) == height


@pytest.fixture
def world(l1: L1) -> World:
    return World(l1)


def test_forged_deposit_with_newer_messages_pending_is_refused(world: World) -> None:
    attacker, victim = world.l1.sender(2), world.user
    world.send(victim, world.f.deposit(), 10**15)
    world.send(attacker, world.f.deposit(), 1)
    world.send(victim, world.f.submit(b"\x01sealed-envelope"))
    world.send(victim, world.f.deposit(), 2)
    total = len(world.messages)
    assert int(world.f.msgCount().call()) == total == 4
    assert bytes(world.f.msgAcc().call()) == world.acc(total)

    # the colluding hosts' fabrication: message 1 credits the attacker 100 ETH instead of 1 wei,
    # and the header consumes up to it, leaving the genuine messages 2..3 pending
    real = world.messages[1]
    forged = L1Message(real.index, KIND_USER, real.sender, 100 * 10**18, real.l1_block, b"")
    world.refused(2, accumulate(world.acc(1), [forged]), "msg_acc differs from the L1 accumulator")
    # a message inserted out of thin air (one more than the L1 has before message 2)
    world.refused(3, accumulate(world.acc(2), [forged]), "msg_acc differs from the L1 accumulator")
    # a genuine accumulator claimed at another count, and garbage
    world.refused(1, world.acc(2), "msg_acc differs from the L1 accumulator")
    world.refused(1, os.urandom(32), "msg_acc differs from the L1 accumulator")
    world.refused(total, accumulate(world.acc(3), [forged]), "msg_acc differs from the L1 accumulator")
    assert int(world.f.msgConsumed().call()) == 0

    # the genuine prefixes are accepted, pending messages or not
    world.accept(2, world.acc(2))
    assert int(world.f.msgConsumed().call()) == 2
    world.refused(3, accumulate(world.acc(2), [forged]), "msg_acc differs from the L1 accumulator")
    world.accept(3, world.acc(3))
    world.accept(total, world.acc(total))
    assert int(world.f.msgConsumed().call()) == total and int(world.f.lastHeight().call()) == 3


def test_header_lagging_more_than_the_ring_is_refused(world: World) -> None:
    import vyper

    art = vyper.compile_code(SPAMMER, output_formats=["abi", "bytecode"])
    spammer = world.l1.w3.eth.contract(address=world.owner.deploy(art["abi"], art["bytecode"]), abi=art["abi"])
    world.send(world.user, world.f.deposit(), 10**15)
    world.send(world.user, spammer.functions.spam(world.address, RING), RING)
    total = len(world.messages)
    assert total == RING + 1 == int(world.f.msgCount().call())
    assert all(m.sender == spammer.address for m in world.messages[1:])
    # the ring wrapped: the current accumulator is still the genuine one
    assert bytes(world.f.msgAcc().call()) == world.acc(total)

    # msg_count = 1 lags RING messages: refused with the reason, even with the genuine
    # accumulator, and even with what the ring slot now holds (acc after RING + 1 messages)
    for acc in (world.acc(1), world.acc(total), os.urandom(32)):
        world.refused(1, acc, "msg_count too far behind the L1 messages; consume more")
    world.refused(0, MSG_GENESIS_ACC, "msg_count too far behind the L1 messages; consume more")
    # RING - 1 behind is the furthest a header may lag; its accumulator is still checked
    world.refused(2, world.acc(1), "msg_acc differs from the L1 accumulator")
    world.accept(2, world.acc(2))
    # 100 more: the accumulator after 3 messages has left the ring; the whole chain is fine
    world.send(world.user, spammer.functions.spam(world.address, 100), 100)
    world.refused(3, world.acc(3), "msg_count too far behind the L1 messages; consume more")
    total = len(world.messages)
    world.refused(total, world.acc(total - 1), "msg_acc differs from the L1 accumulator")
    world.accept(total, world.acc(total))
    assert int(world.f.msgConsumed().call()) == total == RING + 101


SKIPS = "or skips a message of a block <= it"


def test_h5_a_header_skipping_a_pending_deposit_is_refused_and_the_deposit_consumed_later(world: World) -> None:
    """Issue 14 H5, on L1: the review's proposal -- no messages, l1_block past a pending deposit
    -- was accepted, and the enclaves then refused the deposit for good (reclaim froze the
    Rollup). The Rollup now refuses it; the header that consumes the deposit is accepted."""
    world.accept(0, MSG_GENESIS_ACC)  # height 1, nothing to consume yet
    world.send(world.user, world.f.deposit(), 10**15)
    dep_block = world.messages[0].l1_block
    world.send(world.user, world.f.deposit(), 7)  # one more, in a later block
    latest = world.l1.block_number()  # finished once the next transaction is mined
    assert latest == world.messages[1].l1_block > dep_block
    # the attack: no messages consumed, l1_block at / past the deposit's block
    for l1_block in (dep_block, latest):
        world.refused(0, MSG_GENESIS_ACC, SKIPS, l1_block=l1_block)
    # consuming only the first deposit while claiming the second's block is refused too
    world.refused(1, world.acc(1), SKIPS, l1_block=world.messages[1].l1_block)
    assert int(world.f.lastHeight().call()) == 1 and int(world.f.msgConsumed().call()) == 0
    # an empty header that stops before the deposit's block is fine (whole blocks)
    world.accept(0, MSG_GENESIS_ACC, l1_block=dep_block - 1)
    # and the deposit is consumed by the next header
    world.accept(1, world.acc(1), l1_block=dep_block)
    world.accept(2, world.acc(2), l1_block=latest)
    assert int(world.f.msgConsumed().call()) == 2 and int(world.f.lastHeight().call()) == 4
