"""Challenge, freeze, escape hatch and reclaim on the L1 contract, on both backends (embedded
eth-tester and anvil): every refusal with its reason, and the positive paths checked against the
Python formats (crypto.messages chain, crypto.smt proofs, crypto.escape leaves)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pytest
from web3.contract import Contract
from web3.logs import DISCARD

from enclavenet.chain import L1, TxReverted, TxSender
from enclavenet.contracts import deploy_contracts
from enclavenet.contracts.simulate import SimEnclave, SimPlatform, sign_qc
from enclavenet.crypto.escape import EscapeLeaf
from enclavenet.crypto.hashing import ZERO32, keccak256, to_checksum
from enclavenet.crypto.header import EMPTY_WITHDRAWALS_HASH, GENESIS_PREV_HASH, Header
from enclavenet.crypto.messages import (
    KIND_CHALLENGE,
    KIND_USER,
    MSG_GENESIS_ACC,
    L1Message,
    accumulate,
)
from enclavenet.crypto.smt import SparseMerkleTree, smt_key, smt_leaf, smt_verify

DAY = 86_400
PERIOD = 5  # blocks
BOND = 10**15


class World:
    """One deployment, 3 enclaves of 3 types (quorum 2 of 2 types), challenge period 5 blocks."""

    def __init__(self, l1: L1) -> None:
        self.l1 = l1
        self.w3 = l1.w3
        self.owner: TxSender = l1.sender(0)
        self.users: list[TxSender] = [l1.sender(i) for i in (1, 2, 3)]
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
            q = self.platforms[e.tee_type].quote(e, m, l1.timestamp() + DAY)
            self.owner.transact(self.f.register(*q.args()))
        self.owner.transact(self.f.setChallengeParams(PERIOD, BOND))
        self.prev = GENESIS_PREV_HASH
        self.messages: list[L1Message] = []

    def accept(self, *, pending: int = 0, balances_root: bytes | None = None) -> Header:
        """Accept the next header consuming all messages but the ``pending`` newest."""
        total = int(self.f.msgCount().call())
        n = total - pending
        h = Header(
            height=int(self.f.lastHeight().call()) + 1, prev_hash=self.prev, epoch=0, epoch_key=b"\x11" * 32,
            l1_block=self.l1.block_number() - 1, msg_count=n,
            msg_acc=accumulate(MSG_GENESIS_ACC, self.messages[:n]),
            tx_root=ZERO32, receipts_root=ZERO32, state_root=os.urandom(32),
            balances_root=balances_root if balances_root is not None else os.urandom(32),
            withdrawals_hash=EMPTY_WITHDRAWALS_HASH, data_commitment=ZERO32,
        )
        sigs = sign_qc(h, self.members[:2], self.l1.chain_id, self.address)
        self.owner.transact(self.f.submitHeader(h.as_tuple(), [], sigs))
        self.prev = h.hash()
        return h

    def send(self, sender: TxSender, fn: Any, value: int = 0) -> Any:
        """Send a message-appending call and record the message it appended."""
        rc = sender.transact(fn, value=value)
        for ev in self.rollup.events.L1Message().process_receipt(rc, errors=DISCARD):
            a = ev.args
            self.messages.append(L1Message(a.index, a.kind, to_checksum(a.sender), a.value, a.l1_block, bytes(a.payload)))
        return rc

    def deposit(self, sender: TxSender, value: int) -> L1Message:
        self.send(sender, self.f.deposit(), value)
        return self.messages[-1]

    def challenge(self, sender: TxSender, payload: bytes = b"\x01sealed-tx", value: int = BOND) -> Any:
        return self.send(sender, self.f.challenge(payload), value)

    def segment(self, start: int, end: int | None = None) -> tuple[bytes, list[tuple[Any, ...]]]:
        msgs = self.messages[start:end]
        return accumulate(MSG_GENESIS_ACC, self.messages[:start]), [
            (m.kind, m.sender, m.value, m.l1_block, m.payload_hash) for m in msgs
        ]

    def refused(self, sender: TxSender, call: Any, reason: str, value: int = 0) -> None:
        with pytest.raises(TxReverted) as info:
            sender.transact(call, value=value)
        assert reason in info.value.reason, info.value.reason

    def events(self, receipt: Any, name: str) -> list[Any]:
        return list(getattr(self.rollup.events, name)().process_receipt(receipt, errors=DISCARD))

    def balance(self, a: str) -> int:
        return int(self.w3.eth.get_balance(a))

    def frozen(self) -> bool:
        return bool(self.f.frozen().call())


@pytest.fixture
def world(l1: L1) -> World:
    return World(l1)


def test_challenge_params_are_the_owners(world: World) -> None:
    assert world.f.challengePeriod().call() == PERIOD and world.f.challengeBond().call() == BOND
    world.refused(world.users[0], world.f.setChallengeParams(1, 0), "caller is not the owner")
    world.refused(world.owner, world.f.setChallengeParams(0, 0), "challenge period out of range")
    rc = world.owner.transact(world.f.setChallengeParams(9, 7))
    (ev,) = world.events(rc, "ChallengeParamsSet")
    assert (ev.args.period, ev.args.bond) == (9, 7)


def test_a_challenge_is_a_kind_2_message_with_a_bond_and_a_deadline(world: World) -> None:
    u = world.users[0]
    world.refused(u, world.f.challenge(b"x"), "challenge bond below challengeBond", value=BOND - 1)
    world.refused(u, world.f.challenge(b""), "empty challenge payload", value=BOND)
    world.deposit(u, 5)
    rc = world.challenge(u, b"\x07envelope", BOND + 3)
    (ev,) = world.events(rc, "ChallengeStarted")
    assert ev.args.index == 1 and ev.args.challenger == u.address and ev.args.bond == BOND + 3
    assert ev.args.deadline == rc["blockNumber"] + PERIOD == world.f.challengeDeadline(1).call()
    m = world.messages[1]
    assert (m.kind, m.value, m.payload) == (KIND_CHALLENGE, BOND + 3, b"\x07envelope")
    assert world.messages[0].kind == KIND_USER
    # one chain: the Rollup's accumulator is crypto.messages' over both kinds
    assert bytes(world.f.msgAcc().call()) == accumulate(MSG_GENESIS_ACC, world.messages)
    assert world.f.msgCount().call() == 2


def test_freeze_needs_an_unresolved_challenge_past_its_deadline(world: World) -> None:
    u, anyone = world.users[0], world.users[1]
    world.refused(anyone, world.f.freeze(0), "no challenge at this message index")
    world.challenge(u)  # message 0
    world.refused(anyone, world.f.freeze(0), "challenge deadline not passed yet")
    world.accept()  # a header consumes it: resolved
    world.l1.mine(PERIOD + 1)
    world.refused(anyone, world.f.freeze(0), "challenge resolved (an accepted header consumed it)")
    world.challenge(u)  # message 1: the committee ignores it
    world.accept(pending=1)  # a header that leaves it pending does not resolve it
    world.l1.mine(PERIOD - 2)
    world.refused(anyone, world.f.freeze(1), "challenge deadline not passed yet")
    world.l1.mine(2)  # anvil estimates gas in the latest block, not the next: one more
    assert not world.frozen()
    rc = anyone.transact(world.f.freeze(1))
    (ev,) = world.events(rc, "Frozen")
    assert ev.args.index == 1 and ev.args.by == anyone.address
    assert world.frozen()
    # frozen: no more headers, deposits, submissions or challenges
    world.refused(anyone, world.f.freeze(1), "already frozen")
    world.refused(u, world.f.deposit(), "Rollup: frozen", value=1)
    world.refused(u, world.f.submit(b"x"), "Rollup: frozen")
    world.refused(u, world.f.challenge(b"x"), "Rollup: frozen", value=BOND)
    with pytest.raises(TxReverted) as info:
        world.accept()
    assert "Rollup: frozen" in info.value.reason


def _tree(accounts: Sequence[tuple[str, int]]) -> tuple[SparseMerkleTree, dict[str, bytes]]:
    salts = {a: os.urandom(32) for a, _ in accounts}
    t = SparseMerkleTree()
    t.update({smt_key(a): smt_leaf(smt_key(a), bal, salts[a]) for a, bal in accounts})
    return t, salts


def _leaf(t: SparseMerkleTree, salts: dict[str, bytes], a: str, bal: int, h: Header) -> EscapeLeaf:
    return EscapeLeaf(a, bal, salts[a], tuple(t.proof(smt_key(a))), h.height, h.hash(), h.balances_root)


def test_escape_hatch_pays_a_proven_balance_once_after_the_freeze(world: World) -> None:
    alice, bob, carol = world.users
    # 40 random accounts plus alice and bob: proofs of ~6 siblings
    others = [(to_checksum(os.urandom(20)), 10**12 + i) for i in range(40)]
    mine = [(alice.address, 3 * 10**15 + 1), (bob.address, 2 * 10**15)]
    t, salts = _tree(others + mine)
    for u in (alice, bob):
        world.deposit(u, 4 * 10**15)
    h = world.accept(balances_root=t.root)
    a_leaf = _leaf(t, salts, alice.address, mine[0][1], h)
    assert a_leaf.verify() and smt_verify(h.balances_root, a_leaf.key, a_leaf.leaf_hash, list(a_leaf.siblings))
    rcpt = to_checksum(os.urandom(20))

    world.refused(alice, world.f.escape(*a_leaf.escape_args(h.as_tuple(), rcpt)), "not frozen")
    world.challenge(carol)
    world.l1.mine(PERIOD + 1)
    carol.transact(world.f.freeze(len(world.messages) - 1))

    stale = Header(**{**h.__dict__, "state_root": os.urandom(32)})
    world.refused(alice, world.f.escape(*a_leaf.escape_args(stale.as_tuple(), rcpt)), "header is not the last accepted header")
    for bad in (
        EscapeLeaf(alice.address, a_leaf.balance + 1, a_leaf.salt, a_leaf.siblings, h.height, h.hash(), h.balances_root),
        EscapeLeaf(alice.address, a_leaf.balance, os.urandom(32), a_leaf.siblings, h.height, h.hash(), h.balances_root),
        EscapeLeaf(alice.address, a_leaf.balance, a_leaf.salt, a_leaf.siblings[:-1], h.height, h.hash(), h.balances_root),
        EscapeLeaf(alice.address, a_leaf.balance, a_leaf.salt, (os.urandom(32), *a_leaf.siblings[1:]), h.height, h.hash(), h.balances_root),
    ):
        assert not bad.verify()
        world.refused(alice, world.f.escape(*bad.escape_args(h.as_tuple(), rcpt)), "balance proof does not match the balances root")
    # bob cannot use alice's leaf: the key is keccak(msg.sender)
    world.refused(bob, world.f.escape(*a_leaf.escape_args(h.as_tuple(), rcpt)), "balance proof does not match the balances root")
    world.refused(alice, world.f.escape(h.as_tuple(), 0, ZERO32, [], rcpt), "a zero balance has no leaf")
    world.refused(alice, world.f.escape(*a_leaf.escape_args(h.as_tuple(), "0x" + "00" * 20)), "recipient is the zero address")

    rc = alice.transact(world.f.escape(*a_leaf.escape_args(h.as_tuple(), rcpt)))
    (ev,) = world.events(rc, "Escaped")
    assert (ev.args.account, ev.args.recipient, ev.args.amount) == (alice.address, rcpt, a_leaf.balance)
    assert world.balance(rcpt) == a_leaf.balance
    assert world.f.escaped(alice.address).call()
    world.refused(alice, world.f.escape(*a_leaf.escape_args(h.as_tuple(), rcpt)), "already escaped, or not an EOA")
    b_leaf = _leaf(t, salts, bob.address, mine[1][1], h)
    before = world.balance(rcpt)
    bob.transact(world.f.escape(*b_leaf.escape_args(h.as_tuple(), rcpt)))
    assert world.balance(rcpt) - before == b_leaf.balance


def test_escape_needs_an_accepted_header(world: World) -> None:
    u = world.users[0]
    world.challenge(u)
    world.l1.mine(PERIOD + 1)
    u.transact(world.f.freeze(0))
    world.refused(u, world.f.escape(_zero_header(), 1, ZERO32, [], u.address), "no header was ever accepted")


def _zero_header() -> tuple[Any, ...]:
    return Header(0, ZERO32, 0, ZERO32, 0, 0, ZERO32, ZERO32, ZERO32, ZERO32, ZERO32, ZERO32, ZERO32).as_tuple()


def test_reclaim_pays_back_an_unconsumed_deposit_after_its_deadline_and_freezes(world: World) -> None:
    alice, bob, keeper = world.users
    world.deposit(alice, 7)  # 0: consumed below
    world.accept()
    d = world.deposit(bob, 10**15 + 11)  # 1: never consumed
    world.send(alice, world.f.submit(b"\x01no-value"))  # 2: no value
    acc, seg = world.segment(1)
    world.refused(keeper, world.f.reclaim(acc, seg, 0), "not past its deadline (l1_block + challengePeriod) and not frozen")
    world.l1.mine(PERIOD)
    # a tampered segment does not lead to the accumulator
    bad = [(*seg[0][:2], seg[0][2] + 1, *seg[0][3:]), *seg[1:]]
    world.refused(keeper, world.f.reclaim(acc, bad, 0), "do not lead to the L1 accumulator")
    world.refused(keeper, world.f.reclaim(acc, seg, 5), "position outside the segment")
    world.refused(keeper, world.f.reclaim(acc, seg, 1), "carries no value")
    acc0, seg0 = world.segment(0)
    world.refused(keeper, world.f.reclaim(acc0, seg0, 0), "consumed by an accepted header")
    before = world.balance(bob.address)
    rc = keeper.transact(world.f.reclaim(acc, seg, 0))  # anyone may; the sender is paid
    (fz,) = world.events(rc, "Frozen")
    assert fz.args.index == 1 and fz.args.deadline == d.l1_block + PERIOD
    (ev,) = world.events(rc, "Reclaimed")
    assert (ev.args.index, ev.args.sender, ev.args.amount, ev.args.paid) == (1, bob.address, d.value, True)
    assert world.balance(bob.address) - before == d.value
    assert world.frozen() and world.f.reclaimed(1).call()
    world.refused(keeper, world.f.reclaim(acc, seg, 0), "already reclaimed")


def test_reclaim_after_a_freeze_covers_challenge_bonds_and_long_segments(world: World) -> None:
    alice, bob, keeper = world.users
    world.challenge(alice, value=BOND + 1)  # 0: the ignored challenge
    for i in range(5):
        world.deposit(bob, 1000 + i)  # 1..5
    world.l1.mine(PERIOD + 1)
    keeper.transact(world.f.freeze(0))
    # after the freeze no deadline applies: the challenge bond comes back by the same proof
    acc, seg = world.segment(0)
    before = world.balance(alice.address)
    keeper.transact(world.f.reclaim(acc, seg, 0))
    assert world.balance(alice.address) - before == BOND + 1
    # a checkpoint: prove the accumulator before message 4 with the segment 4..5, then reclaim
    # message 2 with the segment 2..3 only, which ends at that proven accumulator
    acc4, seg4 = world.segment(4)
    world.refused(keeper, world.f.reclaim(*world.segment(2, 4), 0), "do not lead to the L1 accumulator or a proven one")
    rc = keeper.transact(world.f.proveMessages(acc4, seg4))
    (ev,) = world.events(rc, "MessagesProven")
    assert ev.args.index == 4 and bytes(ev.args.acc) == acc4
    acc2, seg2 = world.segment(2, 4)
    before = world.balance(bob.address)
    keeper.transact(world.f.reclaim(acc2, seg2, 1))  # message 3
    assert world.balance(bob.address) - before == 1002
    assert world.f.reclaimed(3).call() and not world.f.reclaimed(2).call()
    world.refused(keeper, world.f.proveMessages(acc4, []), "empty segment")
    forged = keccak256(b"not on the chain")
    world.refused(keeper, world.f.proveMessages(forged, seg4), "do not lead to the L1 accumulator")


def test_client_escapes_and_reclaims_from_the_l1_alone(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client functions against the contract, no node anywhere: escape_withdraw reads the
    last header from the submitHeader calldata; reclaim_deposit rebuilds the message chain and,
    for a message further from the end than a segment holds, proves checkpoints first."""
    import enclavenet.client.escape as escape_mod
    from enclavenet.client import (
        EnclaveNetError,
        TransactionReverted,
        escape_withdraw,
        reclaim_deposit,
    )

    alice, bob, keeper = world.users
    a_acct, k_acct = world.l1.accounts[1], world.l1.accounts[3]
    assert a_acct.address == alice.address and k_acct.address == keeper.address
    t, salts = _tree([(alice.address, 10**15), (to_checksum(os.urandom(20)), 5)])
    world.deposit(alice, 2 * 10**15)
    h1 = world.accept(balances_root=os.urandom(32))
    old_leaf = EscapeLeaf(alice.address, 10**15, salts[alice.address], tuple(t.proof(smt_key(alice.address))),
                          h1.height, h1.hash(), t.root)
    h2 = world.accept(balances_root=t.root)
    leaf = _leaf(t, salts, alice.address, 10**15, h2)
    for i in range(7):
        world.deposit(bob, 100 + i)  # messages 1..7, never consumed
    with pytest.raises(EnclaveNetError, match="not frozen"):
        escape_withdraw(world.w3, a_acct, world.address, leaf)
    with pytest.raises(EnclaveNetError, match="consumed by an accepted header"):
        reclaim_deposit(world.w3, k_acct, world.address, 0)
    with pytest.raises(TransactionReverted, match="not past its deadline"):
        reclaim_deposit(world.w3, k_acct, world.address, 7)  # the newest
    world.l1.mine(PERIOD + 1)
    monkeypatch.setattr(escape_mod, "MAX_SEGMENT", 2)  # short segments: exercise the checkpoints
    before = world.balance(bob.address)
    r = reclaim_deposit(world.w3, k_acct, world.address, 2)  # 8 messages; 2 is 6 from the end
    assert (r.index, r.sender, r.amount, r.paid, r.checkpoints) == (2, bob.address, 101, True, 2)
    assert world.balance(bob.address) - before == 101 and world.frozen()

    with pytest.raises(EnclaveNetError, match="is for the header at height 1"):
        escape_withdraw(world.w3, a_acct, world.address, old_leaf)
    rcpt = to_checksum(os.urandom(20))
    res = escape_withdraw(world.w3, a_acct, world.address, leaf, recipient=rcpt)
    assert res.amount == 10**15 and world.balance(rcpt) == 10**15
    with pytest.raises(TransactionReverted, match="already escaped"):
        escape_withdraw(world.w3, a_acct, world.address, leaf, recipient=rcpt)
