"""The DAP contracts on both L1 backends: the receipt threshold in Rollup.submitHeader, the
DapManager's life cycle (register, leave after a delay, withdraw), and the laziness penalty
game's outcomes (honest, lazy, invalid answer), with every refusal's reason."""

from __future__ import annotations

import os
from typing import Any

import pytest
from eth_account import Account
from web3.logs import DISCARD

from enclavenet.chain import L1, TxReverted, TxSender
from enclavenet.contracts import deploy_contracts
from enclavenet.contracts.simulate import SimEnclave, SimPlatform, sign_qc
from enclavenet.crypto.dap import dap_receipt_digest, data_commitment, piece_path, piece_proof
from enclavenet.crypto.header import EMPTY_WITHDRAWALS_HASH, GENESIS_PREV_HASH, Header
from enclavenet.crypto.secp256k1 import SigningKey
from enclavenet.dap.l1 import deploy_dap_manager, receipts_arg, register_dap

DAY = 86_400
ETH = 10**18
MIN_COLLATERAL, LEAVE_DELAY, FEE, PERIOD, LAZY = ETH, 20, 10**15, 5, ETH // 10


class DapWorld:
    """A Rollup with a 3-member committee (quorum 2 of 2 types), a DapManager and 3 funded DAP keys."""

    def __init__(self, l1: L1, n_daps: int = 3) -> None:
        self.l1 = l1
        self.owner: TxSender = l1.sender(0)
        self.user: TxSender = l1.sender(1)
        self.platforms = {t: SimPlatform(t) for t in (1, 2)}
        self.measurement = {t: os.urandom(32) for t in (1, 2)}
        dep = deploy_contracts(
            self.owner, self.owner.address, 2, 2,
            platform_roots={t: p.root_address for t, p in self.platforms.items()},
            measurements={t: [m] for t, m in self.measurement.items()},
        )
        self.rollup = dep.rollup
        self.members = [SimEnclave(t) for t in (1, 2, 1)]
        for e in self.members:
            q = self.platforms[e.tee_type].quote(e, self.measurement[e.tee_type], l1.timestamp() + DAY)
            self.owner.transact(self.rollup.functions.register(*q.args()))
        self.manager = deploy_dap_manager(
            self.owner, self.rollup.address, min_collateral=MIN_COLLATERAL, leave_delay=LEAVE_DELAY,
            request_fee=FEE, answer_period=PERIOD, lazy_penalty=LAZY,
        )
        self.keys = sorted((SigningKey.generate() for _ in range(n_daps)), key=lambda k: k.address.lower())
        funder = l1.sender(2)
        self.daps: list[TxSender] = []
        for k in self.keys:
            funder.send_raw(k.address, value=5 * ETH)
            self.daps.append(l1.sender(Account.from_key(k.secret)))
        self.prev = GENESIS_PREV_HASH

    def f(self) -> Any:
        return self.rollup.functions

    def m(self) -> Any:
        return self.manager.functions

    def register_all(self) -> None:
        for i, d in enumerate(self.daps):
            register_dap(d, self.manager, f"http://127.0.0.1:{8600 + i}", MIN_COLLATERAL)

    def header(self, items: list[bytes] | None = None) -> Header:
        f = self.f()
        return Header(
            height=f.lastHeight().call() + 1, prev_hash=self.prev, epoch=1, epoch_key=b"\x11" * 32,
            l1_block=self.l1.block_number() - 1, msg_count=f.msgCount().call(), msg_acc=bytes(f.msgAcc().call()),
            tx_root=os.urandom(32), receipts_root=os.urandom(32), state_root=os.urandom(32),
            balances_root=os.urandom(32), withdrawals_hash=EMPTY_WITHDRAWALS_HASH,
            data_commitment=data_commitment(items) if items else os.urandom(32),
        )

    def receipts(self, dc: bytes, keys: list[SigningKey]) -> list[tuple[bytes, bytes]]:
        digest = dap_receipt_digest(self.l1.chain_id, self.rollup.address, dc)
        return receipts_arg([(k.address, k.sign(digest)) for k in keys])

    def submit(self, h: Header, receipts: list[tuple[bytes, bytes]] | None) -> Any:
        sigs = sign_qc(h, self.members[:2], self.l1.chain_id, self.rollup.address)
        call = self.f().submitHeader(h.as_tuple(), [], sigs) if receipts is None else \
            self.f().submitHeader(h.as_tuple(), [], sigs, receipts)
        rc = self.owner.transact(call)
        self.prev = h.hash()
        return rc

    def refused(self, sender: TxSender, call: Any, reason: str, value: int = 0) -> None:
        with pytest.raises(TxReverted) as info:
            sender.transact(call, value=value)
        assert reason in info.value.reason, info.value.reason

    def events(self, rc: Any, name: str) -> list[Any]:
        return list(getattr(self.manager.events, name)().process_receipt(rc, errors=DISCARD))


@pytest.fixture
def world(l1: L1) -> DapWorld:
    return DapWorld(l1)


def _items(n: int = 5) -> list[bytes]:
    return [os.urandom(40 + i) for i in range(n)]


# ---------------------------------------------------------------- threshold and receipts


def test_threshold_zero_keeps_headers_without_receipts(world: DapWorld) -> None:
    assert world.f().dapThreshold().call() == 0
    world.submit(world.header(), None)  # the 3-argument form, as before
    world.submit(world.header(), [])  # the 4-argument form with no receipts
    assert world.f().lastHeight().call() == 2


def test_headers_need_t_receipts_from_distinct_active_daps(world: DapWorld) -> None:
    world.register_all()
    world.owner.transact(world.m().setThreshold(2))
    assert world.f().dapThreshold().call() == 2
    a, b, c = world.keys
    items = _items()
    h = world.header(items)
    # the contract's receipt digest is crypto.dap's
    assert bytes(world.m().receiptDigest(h.data_commitment).call()) == dap_receipt_digest(
        world.l1.chain_id, world.rollup.address, h.data_commitment)
    sigs = sign_qc(h, world.members[:2], world.l1.chain_id, world.rollup.address)
    f = world.f()
    o = world.owner
    world.refused(o, f.submitHeader(h.as_tuple(), [], sigs), "too few storage receipts")
    world.refused(o, f.submitHeader(h.as_tuple(), [], sigs, world.receipts(h.data_commitment, [a])), "too few storage receipts")
    # a receipt over another data commitment recovers to a stranger
    wrong = world.receipts(os.urandom(32), [a, b])
    world.refused(o, f.submitHeader(h.as_tuple(), [], sigs, wrong), "receipt not by an active DAP")
    # a non-DAP key
    world.refused(o, f.submitHeader(h.as_tuple(), [], sigs, world.receipts(h.data_commitment, [a, SigningKey.generate()])),
                  "receipt not by an active DAP")
    # the same DAP twice / out of order
    ra, rb = world.receipts(h.data_commitment, [a, b])
    world.refused(o, f.submitHeader(h.as_tuple(), [], sigs, [ra, ra]), "strictly increasing signer")
    world.refused(o, f.submitHeader(h.as_tuple(), [], sigs, [rb, ra]), "strictly increasing signer")
    rc = world.submit(h, world.receipts(h.data_commitment, [a, c]))
    assert rc["status"] == 1 and f.lastHeight().call() == 1


def test_only_the_owner_and_the_manager_steer_the_rollup_side(world: DapWorld) -> None:
    world.register_all()
    world.refused(world.user, world.m().setThreshold(1), "not the Rollup's owner")
    world.refused(world.user, world.m().setParams(1, 10, 0, 5, 0), "not the Rollup's owner")
    world.refused(world.owner, world.f().dapControl(world.keys[0].address, True, 0), "not the DapManager")
    world.refused(world.owner, world.f().setDapManager(world.user.address), "already set")
    world.refused(world.owner, world.m().setThreshold(9), "threshold above 8")
    world.refused(world.owner, world.m().setParams(ETH, 3, FEE, 5, LAZY), "leave delay")
    world.refused(world.owner, world.m().setParams(ETH, 30, FEE, 5, 2 * ETH), "lazy penalty above")


def test_register_leave_withdraw_and_the_effective_threshold(world: DapWorld) -> None:
    m, f = world.m(), world.f()
    d0, d1 = world.daps[0], world.daps[1]
    world.refused(d0, m.register("http://x"), "collateral below minCollateral", value=MIN_COLLATERAL - 1)
    rc = register_dap(d0, world.manager, "http://127.0.0.1:8600", MIN_COLLATERAL)
    (ev,) = world.events(rc, "DapRegistered")
    assert ev.args.endpoint == "http://127.0.0.1:8600" and ev.args.collateral == MIN_COLLATERAL
    world.refused(d0, m.register("http://x"), "already registered", value=MIN_COLLATERAL)
    register_dap(d1, world.manager, "http://127.0.0.1:8601", 2 * ETH)
    world.owner.transact(m.setThreshold(2))
    assert m.activeCount().call() == 2 and f.dapThreshold().call() == 2
    world.refused(d0, m.withdraw(), "not leaving")
    rc = d0.transact(m.leave())
    leave_at = world.events(rc, "DapLeaving")[0].args.leave_at
    assert leave_at == rc["blockNumber"] + LEAVE_DELAY
    info = m.info(d0.address).call()
    assert info[1] and not info[2] and info[3] == leave_at  # registered, inactive, leaving
    # a leaving DAP's receipts stop counting; the Rollup still needs 2 receipts (issue 14 H3:
    # the threshold no longer falls to min(t, active), so headers wait until the owner lowers it
    # or a DAP joins)
    assert f.dapThreshold().call() == 2 and m.threshold().call() == 2
    h = world.header()
    sigs = sign_qc(h, world.members[:2], world.l1.chain_id, world.rollup.address)
    world.refused(world.owner, f.submitHeader(h.as_tuple(), [], sigs, world.receipts(h.data_commitment, [world.keys[1]])),
                  "too few storage receipts")
    world.refused(world.owner, f.submitHeader(h.as_tuple(), [], sigs, world.receipts(h.data_commitment, world.keys[:2])),
                  "receipt not by an active DAP")
    world.owner.transact(m.setThreshold(1))
    assert f.dapThreshold().call() == 1
    world.refused(world.owner, f.submitHeader(h.as_tuple(), [], sigs, world.receipts(h.data_commitment, [world.keys[0]])),
                  "receipt not by an active DAP")
    world.submit(h, world.receipts(h.data_commitment, [world.keys[1]]))
    world.owner.transact(m.setThreshold(2))
    world.refused(d0, m.withdraw(), "leave delay not over")
    world.refused(d0, m.addCollateral(), "leaving", value=1)
    world.l1.mine(LEAVE_DELAY)
    before = world.l1.w3.eth.get_balance(d0.address)
    rc = d0.transact(m.withdraw())
    gas_cost = rc["gasUsed"] * rc["effectiveGasPrice"]
    assert world.l1.w3.eth.get_balance(d0.address) == before + MIN_COLLATERAL - gas_cost
    assert not m.info(d0.address).call()[1]
    # and may come back
    register_dap(d0, world.manager, "http://127.0.0.1:8610", MIN_COLLATERAL)
    assert f.dapThreshold().call() == 2


# ---------------------------------------------------------------- the penalty game


def _accepted_with_receipts(world: DapWorld, items: list[bytes]) -> tuple[Header, list[tuple[bytes, bytes]]]:
    world.register_all()
    world.owner.transact(world.m().setThreshold(2))
    h = world.header(items)
    receipts = world.receipts(h.data_commitment, world.keys)  # all three DAPs signed
    world.submit(h, receipts)
    return h, receipts


def _request(world: DapWorld, h: Header, receipts: Any, index: int, n: int) -> tuple[int, list[str]]:
    path, _ = piece_path(index, n)
    rc = world.user.transact(world.m().requestData(h.data_commitment, path, receipts), value=FEE)
    (ev,) = world.events(rc, "DataRequested")
    assert ev.args.path == path and ev.args.fee == FEE
    return ev.args.request_id, list(ev.args.daps)


def test_honest_answer_earns_the_fee_and_non_responders_lose_the_lazy_penalty(world: DapWorld) -> None:
    items = _items(7)
    h, receipts = _accepted_with_receipts(world, items)
    m = world.m()
    rid, named = _request(world, h, receipts, 5, len(items))
    assert named == [k.address for k in world.keys]
    assert [m.info(a).call()[4] for a in named] == [1, 1, 1]  # pending
    _, siblings = piece_proof(items, 5)
    honest, also, lazy = world.daps
    rc = honest.transact(m.answerData(rid, items[5], siblings))
    assert world.events(rc, "DataAnswered")[0].args.dap == honest.address
    world.refused(honest, m.answerData(rid, items[5], siblings), "already answered")
    also.transact(m.answerData(rid, items[5], siblings))
    world.refused(world.user, m.resolveRequest(rid, named), "answer period not over")
    world.l1.mine(PERIOD + 1)
    world.refused(also, m.answerData(rid, items[5], siblings), "after the deadline")
    world.refused(world.user, m.resolveRequest(rid, named[:2]), "not the DAPs the request named")
    rc = world.user.transact(m.resolveRequest(rid, named))
    (res,) = world.events(rc, "DataRequestResolved")
    assert res.args.responders == 2 and res.args.slashed == LAZY
    (sl,) = world.events(rc, "DapSlashed")
    assert sl.args.dap == lazy.address and sl.args.amount == LAZY
    assert m.info(honest.address).call()[0] == MIN_COLLATERAL
    assert m.info(lazy.address).call()[0] == MIN_COLLATERAL - LAZY
    assert not m.info(lazy.address).call()[2]  # below the minimum: no longer active
    assert [m.info(a).call()[4] for a in named] == [0, 0, 0]
    assert m.owed(honest.address).call() == FEE and m.owed(also.address).call() == 0
    assert m.burned().call() == LAZY
    world.refused(world.user, m.resolveRequest(rid, named), "already resolved")
    honest.transact(m.claim())
    assert m.owed(honest.address).call() == 0
    # the lazy DAP no longer counts: 2 active DAPs for a threshold of 2
    assert world.f().dapThreshold().call() == 2 and m.activeCount().call() == 2


def test_nobody_answers_every_named_dap_is_slashed_fully(world: DapWorld) -> None:
    items = _items(4)
    h, receipts = _accepted_with_receipts(world, items)
    m = world.m()
    rid, named = _request(world, h, receipts[:2], 0, len(items))  # names the first two
    world.l1.mine(PERIOD + 1)
    rc = world.user.transact(m.resolveRequest(rid, named))
    assert world.events(rc, "DataRequestResolved")[0].args.slashed == 2 * MIN_COLLATERAL
    for a in named:
        collateral, registered, active, _, pending = m.info(a).call()
        assert collateral == 0 and registered and not active and pending == 0
    assert m.info(world.keys[2].address).call()[0] == MIN_COLLATERAL  # not named: untouched
    assert m.owed(world.user.address).call() == FEE  # the fee goes back
    # one active DAP left: the Rollup still asks for 2 receipts (issue 14 H3: never min(t, active))
    assert world.f().dapThreshold().call() == 2 and m.activeCount().call() == 1


def test_an_invalid_answer_counts_as_no_answer(world: DapWorld) -> None:
    items = _items(6)
    h, receipts = _accepted_with_receipts(world, items)
    m = world.m()
    rid, named = _request(world, h, receipts, 2, len(items))
    d = world.daps[0]
    _, sib2 = piece_proof(items, 2)
    _, sib3 = piece_proof(items, 3)
    bad = "do not match the data commitment"
    world.refused(d, m.answerData(rid, items[3], sib3), bad)  # another piece (valid for its own path)
    world.refused(d, m.answerData(rid, items[2] + b"x", sib2), bad)  # a corrupted piece
    world.refused(d, m.answerData(rid, items[2], sib2[:-1]), bad)  # a proof that stops early
    world.refused(d, m.answerData(rid, items[2], [os.urandom(32), *sib2[1:]]), bad)
    world.refused(world.user, m.answerData(rid, items[2], sib2), "not a registered DAP")
    world.refused(d, m.answerData(rid + 1, items[2], sib2), "no such request")
    world.l1.mine(PERIOD + 1)
    rc = world.user.transact(m.resolveRequest(rid, named))
    assert world.events(rc, "DataRequestResolved")[0].args.responders == 0
    assert all(m.info(a).call()[0] == 0 for a in named)


def test_request_refusals_and_pending_requests_hold_the_collateral(world: DapWorld) -> None:
    items = _items(3)
    h, receipts = _accepted_with_receipts(world, items)
    m, u = world.m(), world.user
    world.refused(u, m.requestData(h.data_commitment, 0, receipts), "fee below", value=FEE - 1)
    world.refused(u, m.requestData(h.data_commitment, 0, []), "at least one DAP", value=FEE)
    world.refused(u, m.requestData(h.data_commitment, 2**32, receipts), "deeper than 32", value=FEE)
    world.refused(u, m.requestData(h.data_commitment, 0, receipts[::-1]), "strictly increasing", value=FEE)
    stranger = world.receipts(h.data_commitment, [SigningKey.generate()])
    world.refused(u, m.requestData(h.data_commitment, 0, stranger), "not a registered DAP", value=FEE)
    rid, named = _request(world, h, receipts[:1], 1, len(items))
    d0 = world.daps[0]
    d0.transact(m.leave())
    world.l1.mine(LEAVE_DELAY)
    world.refused(d0, m.withdraw(), "not resolved yet")
    # the deadline has passed (LEAVE_DELAY > PERIOD): resolve; d0 did not answer and is slashed
    world.user.transact(m.resolveRequest(rid, named))
    rc = d0.transact(m.withdraw())
    assert world.events(rc, "DapWithdrawn")[0].args.amount == 0
