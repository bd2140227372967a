"""Fees inside EnclaveNet (enclave/fees.py, docs/FEES.md): an EIP-1559 base fee per batch that
follows the batch's gas, paid from the sender's confidential balance, split between the treasury
(base fee) and the batch's fee recipient (tips), in the state root; off (gas free) by default."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from tests.unit.test_program import CHAIN, L1_CHAIN, VENDORS, Net, dep, receipt_of

from enclavenet.crypto.hashing import address_bytes, keccak256, to_checksum
from enclavenet.enclave.executor import WITHDRAW_ADDRESS, BlockInfo, Executor, Receipt
from enclavenet.enclave.fees import FEES_ADDRESS, FeeRule
from enclavenet.enclave.harness import program_config
from enclavenet.enclave.tx import InboxCall, TxError, decode_tx, sign_tx

GWEI = 10**9
TREASURY = bytes.fromhex("7e" * 20)
RECIPIENT = bytes.fromhex("fe" * 20)
RULE = FeeRule(GWEI, target_gas=100_000, treasury=TREASURY)


def total(ex: Executor, *addrs: bytes) -> int:
    return sum(ex.balance(a) for a in addrs)


def transfer(acct: Any, nonce: int, to: bytes, value: int = 0, *, max_fee: int = 2 * GWEI, tip: int | None = None,
             legacy: bool = False, gas: int = 21_000) -> Any:
    raw = sign_tx(bytes(acct.key), CHAIN, nonce, to, b"", value, gas, legacy=legacy, max_fee=max_fee,
                  priority_fee=tip or 0)
    return decode_tx(raw, CHAIN)


def test_fees_off_ignore_every_gas_price() -> None:
    ex = Executor(CHAIN)
    alice = Account.create()
    ex.begin_batch(BlockInfo(1, 1000))
    r = ex.execute(transfer(alice, 0, RECIPIENT, max_fee=50 * GWEI))  # no balance at all: still runs
    c = ex.end_batch()
    assert r.success and r.gas_price == 0 and c.base_fee == c.next_base_fee == 0
    assert ex.balance(address_bytes(alice.address)) == 0 and ex.base_fee == 0


def test_a_transfer_pays_base_fee_to_the_treasury_and_the_tip_to_the_recipient() -> None:
    ex = Executor(CHAIN, fees=RULE)
    alice, bob = Account.create(), bytes.fromhex("b0" * 20)
    a = address_bytes(alice.address)
    ex.begin_batch(BlockInfo(1, 1000), RECIPIENT)
    ex.credit(a, 10**18)
    base = ex.fees.min_base_fee
    r = ex.execute(transfer(alice, 0, bob, 5, max_fee=3 * GWEI, tip=GWEI // 2))
    legacy = ex.execute(transfer(alice, 1, bob, 5, max_fee=2 * GWEI, legacy=True))
    c = ex.end_batch()
    assert r.success and r.gas_price == base + GWEI // 2  # min(max fee, base + tip)
    assert legacy.success and legacy.gas_price == 2 * GWEI  # legacy: all of its gas price
    paid = 21_000 * (r.gas_price + legacy.gas_price)
    assert ex.balance(a) == 10**18 - 10 - paid
    assert ex.balance(TREASURY) == 2 * 21_000 * base
    assert ex.balance(RECIPIENT) == paid - 2 * 21_000 * base
    assert total(ex, a, bob, TREASURY, RECIPIENT) == 10**18  # nothing minted, nothing burned
    assert c.base_fee == base and c.next_base_fee == base  # 42,000 gas < target: the floor holds
    # the receipt shows the price, through its encoding
    assert Receipt.decode(r.encode()).gas_price == r.gas_price


def test_too_low_a_fee_or_no_balance_is_refused_and_reported() -> None:
    ex = Executor(CHAIN, fees=RULE)
    rich, poor = Account.create(), Account.create()
    ex.begin_batch(BlockInfo(1, 1000))
    ex.credit(address_bytes(rich.address), 10**18)
    with pytest.raises(TxError, match="below the batch's base fee"):
        ex.execute(transfer(rich, 0, RECIPIENT, max_fee=GWEI - 1))
    with pytest.raises(TxError, match="cannot pay gas"):
        ex.execute(transfer(poor, 0, RECIPIENT))
    assert ex.execute(transfer(rich, 0, RECIPIENT)).success  # the refused one used no nonce
    c = ex.end_batch()
    assert c.unfunded == (address_bytes(poor.address),)
    assert ex.next_nonce(poor.address) == 0


def test_base_fee_follows_batch_gas_and_lives_in_the_state_root() -> None:
    ex = Executor(CHAIN, fees=RULE)
    alice = Account.create()
    a = address_bytes(alice.address)
    roots = []
    fees = []
    for n, count in enumerate([10, 10, 0, 0]):  # 210,000 gas > 100,000 target twice, then empty
        ex.begin_batch(BlockInfo(n + 1, 1000 + n))
        if n == 0:
            ex.credit(a, 10**18)
        for _ in range(count):
            ex.execute(transfer(alice, ex.next_nonce(a), RECIPIENT, max_fee=5 * GWEI))
        c = ex.end_batch()
        fees.append((c.base_fee, c.next_base_fee))
        roots.append(c.state_root)
    assert fees[0] == (GWEI, GWEI + GWEI * 110_000 // 100_000 // 8)
    assert fees[1][0] == fees[0][1] and fees[1][1] > fees[1][0]
    assert fees[2][1] < fees[2][0] and fees[3][1] >= GWEI  # empty batches lower it, to the floor
    assert ex.storage_at(FEES_ADDRESS, 0) == ex.base_fee == fees[3][1]
    # a different base fee is a different state: the fee slot is in the state root
    other = Executor(CHAIN, fees=FeeRule(2 * GWEI, target_gas=100_000, treasury=TREASURY))
    assert other.state_root != Executor(CHAIN, fees=RULE).state_root


def funded() -> tuple[Executor, Any, bytes]:
    """An executor with fees on and an open batch in which alice got 1 ether."""
    ex = Executor(CHAIN, fees=RULE)
    alice = Account.create()
    a = address_bytes(alice.address)
    ex.begin_batch(BlockInfo(1, 1000))
    ex.credit(a, 10**18)
    return ex, alice, a


def test_withdrawals_pay_their_intrinsic_gas_and_l1_paid_items_are_free() -> None:
    ex, alice, a = funded()
    w = ex.execute(decode_tx(sign_tx(bytes(alice.key), CHAIN, 0, WITHDRAW_ADDRESS, b"", 10**17, 21_000,
                                     max_fee=GWEI), CHAIN))
    nobody = bytes.fromhex("0d" * 20)
    inbox = ex.execute(InboxCall(nobody, RECIPIENT, 0, b"", 21_000, CHAIN, keccak256(b"i")))
    ex.end_batch()
    assert w.success and w.gas_price == GWEI
    assert ex.balance(a) == 10**18 - 10**17 - 21_000 * GWEI
    assert inbox.success and inbox.gas_price == 0  # paid on L1: runs without an EnclaveNet balance


def test_a_platform_miss_re_run_is_charged_once() -> None:
    from tests.unit.test_platform import artifacts, sel

    ex, alice, a = funded()
    d = ex.execute(decode_tx(sign_tx(bytes(alice.key), CHAIN, 0, None, artifacts()["PlatformUser"].bytecode, 0,
                                     3_000_000, max_fee=GWEI), CHAIN))
    assert d.success and d.contract_address is not None
    from eth_abi import encode as abi_encode

    r = ex.execute(decode_tx(sign_tx(bytes(alice.key), CHAIN, 1, d.contract_address,
                                     sel("draw(uint256)") + abi_encode(["uint256"], [2]), 0, 1_000_000, max_fee=GWEI),
                             CHAIN))
    ex.end_batch()
    assert r.success
    assert ex.balance(a) == 10**18 - (d.gas_used + r.gas_used) * GWEI  # the miss run's gas was given back


def test_members_of_three_tee_types_agree_on_a_batch_with_fees() -> None:
    cfg = {**program_config(VENDORS, chain_id=CHAIN, l1_chain_id=L1_CHAIN), "min_base_fee": GWEI,
           "fee_target_gas": 100_000}

    net = Net(cfg=cfg)
    alice, poor = Account.create(), Account.create()
    ok = net.env(alice, to_checksum(RECIPIENT), gas=21_000)  # Net.env signs max fee 0: below the base fee
    req, out = net.run(net.members[0], 1, bytes(32), l1_block=3, messages=[dep(0, alice.address, 10**18, 2)],
                       envelopes=[ok.envelope.encode()])
    assert "below the batch's base fee" in (receipt_of(out, ok).error or "")
    assert out["fees"] == {"base_fee": GWEI, "next_base_fee": GWEI, "unfunded": []}
    raw_ok = sign_tx(bytes(alice.key), CHAIN, 0, RECIPIENT, b"", 1, 21_000, max_fee=2 * GWEI)
    raw_poor = sign_tx(bytes(poor.key), CHAIN, 0, RECIPIENT, b"", 1, 21_000, max_fee=2 * GWEI)
    from enclavenet.crypto.envelope import seal

    s1, s2 = (seal(x, net.epoch_pub, CHAIN, 0) for x in (raw_ok, raw_poor))
    for m in net.members[1:]:
        m.call("verify_batch", header=out["header"], **req)
    req2, out2 = net.run(net.members[0], 2, out["header_hash"], l1_block=3,
                         envelopes=[s1.envelope.encode(), s2.envelope.encode()], fee_recipient=to_checksum(RECIPIENT))
    r1 = receipt_of(out2, s1)
    assert r1.success and r1.gas_price == GWEI
    assert out2["fees"]["unfunded"] == [address_bytes(poor.address)]
    import cbor2

    from enclavenet.enclave.batch import batch_data_items, unfunded_hash

    meta = cbor2.loads(batch_data_items(out2["batch_data"])[0])  # QC'd: binds the list nodes act on
    assert meta["unfunded_hash"] == unfunded_hash([address_bytes(poor.address)])
    assert (meta["base_fee"], meta["next_base_fee"]) == (GWEI, GWEI)
    for m in net.members[1:]:
        v = m.call("verify_batch", header=out2["header"], **req2)
        assert v["header_hash"] == out2["header_hash"] and v["fees"] == out2["fees"]
    assert net.members[0].call("status")["base_fee"] == GWEI
