"""The confidential EVM: real Vyper/Solidity bytecode on pyrevm, receipts, roots, snapshots."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import cbor2
import coincurve
import pytest
import vyper
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode

from enclavenet.crypto.hashing import keccak256, to_checksum
from enclavenet.crypto.header import EMPTY_WITHDRAWALS_HASH, withdrawals_hash
from enclavenet.crypto.smt import smt_verify
from enclavenet.enclave.errors import EnclaveRefusal
from enclavenet.enclave.executor import (
    MAX_WITHDRAWALS_PER_HEADER,
    WITHDRAW_ADDRESS,
    BlockInfo,
    Executor,
    Receipt,
)
from enclavenet.enclave.state import balance_salt
from enclavenet.enclave.tx import InboxCall, TxError, decode_tx, sign_tx

CHAIN_ID = 4242

ERC20 = """
event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256
event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
totalSupply: public(uint256)

@deploy
def __init__(supply: uint256):
    self.balanceOf[msg.sender] = supply
    self.totalSupply = supply
    log Transfer(sender=empty(address), receiver=msg.sender, value=supply)

@external
def transfer(to: address, amount: uint256) -> bool:
    assert self.balanceOf[msg.sender] >= amount, "insufficient balance"
    self.balanceOf[msg.sender] -= amount
    self.balanceOf[to] += amount
    log Transfer(sender=msg.sender, receiver=to, value=amount)
    return True

@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True

@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    assert self.allowance[owner][msg.sender] >= amount, "allowance exceeded"
    assert self.balanceOf[owner] >= amount, "insufficient balance"
    self.allowance[owner][msg.sender] -= amount
    self.balanceOf[owner] -= amount
    self.balanceOf[to] += amount
    log Transfer(sender=owner, receiver=to, value=amount)
    return True

@external
def burn_gas(n: uint256) -> uint256:
    acc: uint256 = 0
    for i: uint256 in range(n, bound=1000000):
        acc = acc + i * i
    return acc
"""

# A constant-product-free "DEX": swaps token A for token B 1:1 out of its own reserves.
# It calls both tokens (confidential contracts calling each other inside the enclave).
DEX = """
interface IERC20:
    def transferFrom(owner: address, to: address, amount: uint256) -> bool: nonpayable
    def transfer(to: address, amount: uint256) -> bool: nonpayable

token_a: public(IERC20)
token_b: public(IERC20)
swaps: public(uint256)

@deploy
def __init__(a: address, b: address):
    self.token_a = IERC20(a)
    self.token_b = IERC20(b)

@external
def swap(amount: uint256):
    assert extcall self.token_a.transferFrom(msg.sender, self, amount)
    assert extcall self.token_b.transfer(msg.sender, amount)
    self.swaps += 1
"""

# Native value: a vault that forwards deposits and may try to fake a withdrawal.
VAULT = """
@external
@payable
def deposit():
    pass

@external
def sweep_to(target: address, amount: uint256):
    send(target, amount)

@external
def fake_withdraw(amount: uint256) -> bool:
    return raw_call(0x00000000000000000000000000000000000057D0, b"", value=amount, revert_on_failure=False)
"""


def _compile(src: str) -> bytes:
    out = vyper.compile_code(src, output_formats=["bytecode"])
    return bytes.fromhex(out["bytecode"].removeprefix("0x"))


@pytest.fixture(scope="module")
def code() -> dict[str, bytes]:
    return {"erc20": _compile(ERC20), "dex": _compile(DEX), "vault": _compile(VAULT)}


def sel(sig: str) -> bytes:
    return keccak256(sig.encode())[:4]


def call_data(sig: str, types: list[str], args: list[Any]) -> bytes:
    return sel(sig) + abi_encode(types, args)


class User:
    def __init__(self, seed: int) -> None:
        self.secret = keccak256(b"user", seed.to_bytes(4, "big"))
        pub = coincurve.PrivateKey(self.secret).public_key.format(compressed=False)[1:]
        self.address = keccak256(pub)[12:]
        self.nonce = 0

    def tx(self, to: bytes | None, data: bytes = b"", value: int = 0, gas: int = 2_000_000, **kw: Any) -> bytes:
        raw = sign_tx(self.secret, CHAIN_ID, self.nonce, to, data, value, gas, **kw)
        self.nonce += 1
        return raw


def run(ex: Executor, raw: bytes) -> Receipt:
    return ex.execute(decode_tx(raw, CHAIN_ID))


def setup_tokens(ex: Executor, code: dict[str, bytes], users: list[User], height: int = 1) -> tuple[bytes, bytes, bytes]:
    ex.begin_batch(BlockInfo(height, 1_700_000_000))
    for u in users:
        ex.credit(u.address, 10**18)
    owner = users[0]
    a = run(ex, owner.tx(None, code["erc20"] + abi_encode(["uint256"], [10**24]), gas=3_000_000))
    b = run(ex, owner.tx(None, code["erc20"] + abi_encode(["uint256"], [10**24]), gas=3_000_000))
    assert a.success and b.success and a.contract_address and b.contract_address
    dex = run(ex, owner.tx(None, code["dex"] + abi_encode(["address", "address"], [a.contract_address, b.contract_address]), gas=3_000_000))
    assert dex.success and dex.contract_address
    ex.end_batch()
    return a.contract_address, b.contract_address, dex.contract_address


def balance_of(ex: Executor, token: bytes, who: bytes) -> int:
    r = ex.call(b"\x99" * 20, token, call_data("balanceOf(address)", ["address"], [who]))
    assert r.success
    return int(abi_decode(["uint256"], r.output)[0])


def test_erc20_transfer_receipt_logs_and_views(code: dict[str, bytes]) -> None:
    ex = Executor(CHAIN_ID)
    users = [User(i) for i in range(3)]
    tok, _, _ = setup_tokens(ex, code, users)
    owner, alice = users[0], users[1]
    ex.begin_batch(BlockInfo(2, 1_700_000_012))
    r = run(ex, owner.tx(tok, call_data("transfer(address,uint256)", ["address", "uint256"], [alice.address, 700])))
    assert r.status == 1 and r.error is None
    assert abi_decode(["bool"], r.output) == (True,)
    (log,) = r.logs
    assert log.address == tok
    assert log.topics[0] == keccak256(b"Transfer(address,address,uint256)")
    assert log.topics[2] == b"\x00" * 12 + alice.address
    assert int.from_bytes(log.data, "big") == 700
    # a view inside the batch sees the batch's writes
    assert balance_of(ex, tok, alice.address) == 700
    commit = ex.end_batch()
    assert commit.tx_count == 1 and commit.slots_touched == 2
    assert balance_of(ex, tok, alice.address) == 700
    assert balance_of(ex, tok, owner.address) == 10**24 - 700
    # receipts round-trip through their canonical encoding
    assert Receipt.decode(r.encode()) == r


def test_revert_reason_out_of_gas_and_nonces(code: dict[str, bytes]) -> None:
    ex = Executor(CHAIN_ID)
    users = [User(i) for i in range(3)]
    tok, _, _ = setup_tokens(ex, code, users)
    alice, bob = users[1], users[2]
    ex.begin_batch(BlockInfo(2, 1_700_000_012))
    r = run(ex, alice.tx(tok, call_data("transfer(address,uint256)", ["address", "uint256"], [bob.address, 1])))
    assert r.status == 0 and r.error == "execution reverted: insufficient balance"
    assert r.output[:4] == bytes.fromhex("08c379a0") and r.logs == ()
    r = run(ex, alice.tx(tok, call_data("burn_gas(uint256)", ["uint256"], [100_000]), gas=60_000))
    assert r.status == 0 and r.error == "out of gas" and r.gas_used == 60_000
    # both failed transactions consumed their nonce
    assert ex.next_nonce(alice.address) == 2
    stale = sign_tx(alice.secret, CHAIN_ID, 1, tok, b"")
    with pytest.raises(TxError, match=f"nonce 1 already used by {to_checksum(alice.address)}; next is 2"):
        run(ex, stale)
    gap = sign_tx(alice.secret, CHAIN_ID, 5, tok, b"")
    with pytest.raises(TxError, match="nonce gap: expected 2, got 5"):
        run(ex, gap)
    with pytest.raises(TxError, match="exceeds the per-transaction limit"):
        run(ex, sign_tx(alice.secret, CHAIN_ID, 2, tok, b"", gas=10**9))
    with pytest.raises(TxError, match="below the intrinsic gas"):
        run(ex, sign_tx(alice.secret, CHAIN_ID, 2, tok, b"\x01" * 100, gas=21_000))
    with pytest.raises(TxError, match="insufficient funds"):
        run(ex, sign_tx(alice.secret, CHAIN_ID, 2, bob.address, b"", value=10**19))
    assert ex.next_nonce(alice.address) == 2  # refused transactions consume nothing
    ex.end_batch()
    assert ex.state.nonce(alice.address) == 2


def test_dex_calls_two_tokens(code: dict[str, bytes]) -> None:
    ex = Executor(CHAIN_ID)
    users = [User(i) for i in range(3)]
    tok_a, tok_b, dex = setup_tokens(ex, code, users)
    owner, alice = users[0], users[1]
    ex.begin_batch(BlockInfo(2, 1_700_000_012))
    transfer = "transfer(address,uint256)"
    assert run(ex, owner.tx(tok_a, call_data(transfer, ["address", "uint256"], [alice.address, 1000]))).success
    assert run(ex, owner.tx(tok_b, call_data(transfer, ["address", "uint256"], [dex, 5000]))).success
    assert run(ex, alice.tx(tok_a, call_data("approve(address,uint256)", ["address", "uint256"], [dex, 400]))).success
    r = run(ex, alice.tx(dex, call_data("swap(uint256)", ["uint256"], [300])))
    assert r.success, r.error
    assert len(r.logs) == 2 and {lg.address for lg in r.logs} == {tok_a, tok_b}
    bad = run(ex, alice.tx(dex, call_data("swap(uint256)", ["uint256"], [300])))
    assert bad.status == 0 and bad.error == "execution reverted: allowance exceeded"
    ex.end_batch()
    assert balance_of(ex, tok_a, alice.address) == 700
    assert balance_of(ex, tok_b, alice.address) == 300
    assert balance_of(ex, tok_b, dex) == 4700


def test_deposit_transfer_withdraw_and_balance_proofs(code: dict[str, bytes]) -> None:
    secret = b"\x42" * 32
    ex = Executor(CHAIN_ID, salt_secret_fn=lambda: secret)
    alice, bob = User(1), User(2)
    l1_target = bytes.fromhex("cafe" * 10)
    ex.begin_batch(BlockInfo(7, 1_700_000_000))
    ex.credit(alice.address, 5 * 10**18)
    assert run(ex, alice.tx(bob.address, value=10**18)).success
    r1 = run(ex, alice.tx(WITHDRAW_ADDRESS, b"", value=2 * 10**18))
    r2 = run(ex, bob.tx(WITHDRAW_ADDRESS, l1_target, value=4 * 10**17))
    bad = run(ex, bob.tx(WITHDRAW_ADDRESS, b"\x01\x02", value=1))
    assert r1.success and r2.success and bad.status == 0 and "20-byte" in (bad.error or "")
    assert r1.withdrawal is not None and r1.withdrawal.recipient == to_checksum(alice.address)
    assert r2.withdrawal is not None and r2.withdrawal.recipient == to_checksum(l1_target)
    # a contract cannot fake a withdrawal: value sent to the withdrawal address bounces
    v = run(ex, alice.tx(None, code["vault"], gas=1_000_000))
    assert v.success and v.contract_address
    assert run(ex, alice.tx(v.contract_address, call_data("deposit()", [], []), value=10**17)).success
    fake = run(ex, alice.tx(v.contract_address, call_data("fake_withdraw(uint256)", ["uint256"], [10**17])))
    assert fake.success and abi_decode(["bool"], fake.output) == (False,)
    commit = ex.end_batch()
    assert [w.amount for w in commit.withdrawals] == [2 * 10**18, 4 * 10**17]
    assert commit.withdrawals_hash == withdrawals_hash(list(commit.withdrawals))
    assert ex.balance(alice.address) == 5 * 10**18 - 10**18 - 2 * 10**18 - 10**17
    assert ex.balance(bob.address) == 10**18 - 4 * 10**17
    assert ex.balance(v.contract_address) == 10**17
    for who in (alice.address, bob.address, v.contract_address):
        p = ex.balance_proof(who)
        assert p.root == commit.balances_root
        assert smt_verify(commit.balances_root, p.key, p.leaf, list(p.siblings))
        assert p.salt == balance_salt(secret, who, 7)  # deterministic, stored with the account
    with pytest.raises(EnclaveRefusal, match="no balance leaf"):
        ex.balance_proof(User(99).address)


def test_rollup_cap_matches_the_contract() -> None:
    from pathlib import Path

    import enclavenet

    src = (Path(enclavenet.__file__).parent / "contracts" / "Rollup.vy").read_text()
    assert f"MAX_WITHDRAWALS: constant(uint256) = {MAX_WITHDRAWALS_PER_HEADER}" in src


def test_withdrawals_beyond_the_rollup_cap_carry_over() -> None:
    """At most 16 withdrawals per header (the Rollup's cap); the rest queue FIFO in the state."""
    ex = Executor(CHAIN_ID, salt_secret_fn=lambda: b"\x05" * 32)
    alice = User(1)
    targets = [keccak256(b"l1", i.to_bytes(2, "big"))[12:] for i in range(34)]

    def withdraw(i: int) -> bytes:
        return alice.tx(WITHDRAW_ADDRESS, targets[i], value=10**9 * (i + 1), gas=21_000 + 16 * 20)

    ex.begin_batch(BlockInfo(1, 1_700_000_001))
    ex.credit(alice.address, 10**18)
    ex.end_batch()
    commits = []
    for h, first, n in ((2, 0, 20), (3, 20, 14), (4, 0, 0), (5, 0, 0)):
        ex.begin_batch(BlockInfo(h, 1_700_000_000 + h))
        assert all(run(ex, withdraw(i)).success for i in range(first, first + n))
        commits.append(ex.end_batch())
        if h == 2:
            snap, root = ex.snapshot(), ex.state_root
    paid = [[(w.recipient, w.amount) for w in c.withdrawals] for c in commits]
    expected = [(to_checksum(targets[i]), 10**9 * (i + 1)) for i in range(34)]
    assert paid == [expected[:16], expected[16:32], expected[32:], []]  # 20 -> 16 + 4 (+12 new), FIFO
    assert [c.queued_withdrawals for c in commits] == [4, 2, 0, 0]
    for c in commits:
        assert len(c.withdrawals) <= MAX_WITHDRAWALS_PER_HEADER
        assert c.withdrawals_hash == withdrawals_hash(list(c.withdrawals))
    assert commits[-1].withdrawals_hash == EMPTY_WITHDRAWALS_HASH and ex.withdrawal_queue == ()
    assert ex.balance(alice.address) == 10**18 - sum(a for _, a in expected)  # burnt once, when made
    # the queue is in the snapshot and the state root: a restored executor drains it identically
    twin = Executor(CHAIN_ID, salt_secret_fn=lambda: b"\x05" * 32)
    twin.restore(snap, expect_state_root=root)
    assert [(w.recipient, w.amount) for w in twin.withdrawal_queue] == expected[16:20]
    twin.begin_batch(BlockInfo(3, 1_700_000_003))
    alice.nonce = 20
    for i in range(20, 34):
        run(twin, withdraw(i))
    assert twin.end_batch() == commits[1]
    m = cbor2.loads(snap)
    m["withdrawal_queue"] = m["withdrawal_queue"][1:]  # drop a queued withdrawal: the root says no
    with pytest.raises(EnclaveRefusal, match="does not match the expected state root"):
        Executor(CHAIN_ID).restore(cbor2.dumps(m, canonical=True), expect_state_root=root)
    # undo_batch puts the queue back too
    for _ in range(3):
        ex.undo_batch()
    assert ex.snapshot() == snap and ex.state_root == root


def test_a_full_withdrawal_queue_refuses_more_withdrawals() -> None:
    """The queue is bounded: past the bound a withdrawal fails (value kept, nonce used)."""
    ex = Executor(CHAIN_ID, max_queued_withdrawals=18)
    alice = User(1)
    ex.begin_batch(BlockInfo(1, 1_700_000_001))
    ex.credit(alice.address, 10**18)
    rs = [run(ex, alice.tx(WITHDRAW_ADDRESS, value=10**9, gas=21_000)) for _ in range(20)]
    commit = ex.end_batch()
    assert [r.status for r in rs] == [1] * 18 + [0, 0]
    assert "withdrawal queue is full" in (rs[-1].error or "")
    assert len(commit.withdrawals) == 16 and commit.queued_withdrawals == 2
    assert ex.balance(alice.address) == 10**18 - 18 * 10**9 and ex.next_nonce(alice.address) == 20
    ex.begin_batch(BlockInfo(2, 1_700_000_002))  # room again once headers drained the queue
    assert run(ex, alice.tx(WITHDRAW_ADDRESS, value=10**9, gas=21_000)).success
    assert len(ex.end_batch().withdrawals) == 3


def test_inbox_call_takes_sender_from_l1(code: dict[str, bytes]) -> None:
    ex = Executor(CHAIN_ID)
    users = [User(i) for i in range(3)]
    tok, _, _ = setup_tokens(ex, code, users)
    owner = users[0]
    ex.begin_batch(BlockInfo(2, 1_700_000_012))
    data = call_data("transfer(address,uint256)", ["address", "uint256"], [users[2].address, 9])
    r = ex.execute(InboxCall(owner.address, tok, 0, data, 200_000, CHAIN_ID, keccak256(b"inbox")))
    assert r.success and r.sender == owner.address
    assert ex.next_nonce(owner.address) == owner.nonce  # inbox calls do not use nonces
    ex.end_batch()
    assert balance_of(ex, tok, users[2].address) == 9


def _workload(users: list[User], tok_a: bytes, tok_b: bytes, dex: bytes, rnd: random.Random, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        u = rnd.choice(users)
        v = rnd.choice(users)
        kind = rnd.random()
        if kind < 0.6:
            out.append(u.tx(rnd.choice([tok_a, tok_b]), call_data("transfer(address,uint256)", ["address", "uint256"], [v.address, rnd.randrange(0, 3000)])))
        elif kind < 0.75:
            out.append(u.tx(tok_a, call_data("approve(address,uint256)", ["address", "uint256"], [dex, rnd.randrange(0, 3000)])))
        elif kind < 0.9:
            out.append(u.tx(dex, call_data("swap(uint256)", ["uint256"], [rnd.randrange(0, 500)])))
        else:
            out.append(u.tx(v.address, value=rnd.randrange(0, 10**15)))
    return out


def test_snapshot_restore_then_compare(code: dict[str, bytes]) -> None:
    """Snapshot after some batches, restore into a fresh executor, run more batches on both."""
    rnd = random.Random(7)
    users = [User(i) for i in range(12)]
    ex = Executor(CHAIN_ID, salt_secret_fn=lambda: b"\x07" * 32)
    tok_a, tok_b, dex = setup_tokens(ex, code, users)
    transfer = "transfer(address,uint256)"
    ex.begin_batch(BlockInfo(2, 1_700_000_010))
    for u in users[1:]:
        assert run(ex, users[0].tx(tok_a, call_data(transfer, ["address", "uint256"], [u.address, 10_000]))).success
    assert run(ex, users[0].tx(tok_b, call_data(transfer, ["address", "uint256"], [dex, 10**6]))).success
    ex.end_batch()
    for h in (3, 4):
        ex.begin_batch(BlockInfo(h, 1_700_000_000 + h))
        for raw in _workload(users, tok_a, tok_b, dex, rnd, 40):
            run(ex, raw)
        ex.end_batch()
    snap = ex.snapshot()
    twin = Executor(CHAIN_ID, salt_secret_fn=lambda: b"\x07" * 32)
    twin.restore(snap, expect_state_root=ex.state_root)
    assert twin.snapshot() == snap
    assert (twin.state_root, twin.balances_root) == (ex.state_root, ex.balances_root)
    for h in (5, 6, 7):
        batch = _workload(users, tok_a, tok_b, dex, rnd, 60)
        results = []
        for e in (ex, twin):
            e.begin_batch(BlockInfo(h, 1_700_000_000 + h))
            receipts = [run(e, raw).encode() for raw in batch]
            results.append((receipts, e.end_batch()))
        assert results[0] == results[1]
        assert any(Receipt.decode(r).status == 0 for r in results[0][0])  # failures included
    assert ex.snapshot() == twin.snapshot()


def test_restore_refuses_a_snapshot_that_does_not_match_the_root(code: dict[str, bytes]) -> None:
    ex = Executor(CHAIN_ID)
    setup_tokens(ex, code, [User(1)])
    snap = ex.snapshot()
    with pytest.raises(EnclaveRefusal, match="does not match the expected state root"):
        Executor(CHAIN_ID).restore(snap, expect_state_root=b"\x00" * 32)
    with pytest.raises(EnclaveRefusal, match="chain id"):
        Executor(CHAIN_ID + 1).restore(snap)
    with pytest.raises(EnclaveRefusal, match="not valid CBOR"):
        Executor(CHAIN_ID).restore(snap[:-5])


def test_gas_does_not_depend_on_history(code: dict[str, bytes]) -> None:
    """pyrevm keeps slots warm forever; the executor cools them per batch (same gas after restore)."""
    ex = Executor(CHAIN_ID)
    users = [User(i) for i in range(3)]
    tok, _, _ = setup_tokens(ex, code, users)
    data: Callable[[int], bytes] = lambda n: call_data("transfer(address,uint256)", ["address", "uint256"], [users[1].address, n])  # noqa: E731
    gas = []
    for h in (2, 3, 4):
        ex.begin_batch(BlockInfo(h, 1_700_000_000 + h))
        gas.append(run(ex, users[0].tx(tok, data(1))).gas_used)
        ex.end_batch()
    assert gas[1] == gas[2]  # cold every batch, not warm from the batch before
    # within a batch the second transfer finds the slots warm
    ex.begin_batch(BlockInfo(5, 1_700_000_005))
    first = run(ex, users[0].tx(tok, data(1))).gas_used
    second = run(ex, users[0].tx(tok, data(1))).gas_used
    ex.abort_batch()
    assert second < first == gas[2]


def test_undo_batch_puts_everything_back(code: dict[str, bytes]) -> None:
    """undo_batch (O(changes)) equals restoring the pre-batch snapshot, several batches deep."""
    rnd = random.Random(11)
    users = [User(i) for i in range(10)]
    ex = Executor(CHAIN_ID, salt_secret_fn=lambda: b"\x09" * 32)
    tok_a, tok_b, dex = setup_tokens(ex, code, users)
    transfer = "transfer(address,uint256)"
    ex.begin_batch(BlockInfo(2, 1_700_000_010))
    for u in users[1:]:
        assert run(ex, users[0].tx(tok_a, call_data(transfer, ["address", "uint256"], [u.address, 10_000]))).success
    assert run(ex, users[0].tx(tok_b, call_data(transfer, ["address", "uint256"], [dex, 10**6]))).success
    ex.end_batch()
    before = ex.snapshot()
    # pre-signed: each batch deploys a contract (new code) and runs a random workload
    batches = [[users[h].tx(None, code["vault"], gas=1_000_000), *_workload(users, tok_a, tok_b, dex, rnd, 40)] for h in (3, 4, 5)]
    first: list[tuple[list[bytes], Any]] = []
    for h, batch in zip((3, 4, 5), batches, strict=True):
        ex.begin_batch(BlockInfo(h, 1_700_000_000 + h))
        ex.credit(users[h].address, 10**15)  # a deposit written straight to the database
        first.append(([run(ex, raw).encode() for raw in batch], ex.end_batch()))
    assert ex.undo_depth == 5  # setup, funding, and the three above
    for _ in range(3):
        ex.undo_batch()
    assert ex.snapshot() == before
    # re-executing gives byte-identical receipts and roots: pyrevm's database was put back too
    for (receipts, commit), h, batch in zip(first, (3, 4, 5), batches, strict=True):
        ex.begin_batch(BlockInfo(h, 1_700_000_000 + h))
        ex.credit(users[h].address, 10**15)
        assert ([run(ex, raw).encode() for raw in batch], ex.end_batch()) == (receipts, commit)
    with pytest.raises(EnclaveRefusal, match="between batches"):
        ex.begin_batch(BlockInfo(9, 1))
        ex.undo_batch()


# Solidity, compiled by solc-js 0.8.37+commit.f401782d.Emscripten.clang (evmVersion cancun, optimizer 200 runs) from:
SOLIDITY_SOURCE = """
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

interface ICounter {
    function bump(uint256 by) external returns (uint256);
}

contract Counter {
    uint256 public count;
    mapping(address => uint256) public byUser;
    event Bumped(address indexed who, uint256 newCount);
    error TooBig(uint256 by);

    function bump(uint256 by) external returns (uint256) {
        if (by > 100) revert TooBig(by);
        require(by != 0, "zero bump");
        count += by;
        byUser[tx.origin] += by;
        emit Bumped(msg.sender, count);
        return count;
    }
}

contract Caller {
    function bumpTwice(address c, uint256 by) external returns (uint256) {
        ICounter(c).bump(by);
        return ICounter(c).bump(by);
    }
}
"""
SOL_COUNTER = bytes.fromhex(
    "6080604052348015600e575f5ffd5b506102058061001c5f395ff3fe608060405234801561000f575f5ffd5b50600436"
    "1061003f575f3560e01c806306661abd1461004357806371c7432a1461005d578063b20eb4c41461007c575b5f5ffd5b"
    "61004b5f5481565b60405190815260200160405180910390f35b61004b61006b366004610166565b60016020525f9081"
    "52604090205481565b61004b61008a366004610193565b5f60648211156100b5576040516370544d1d60e11b81526004"
    "81018390526024015b60405180910390fd5b815f036100f05760405162461bcd60e51b81526020600482015260096024"
    "8201526807a65726f2062756d760bc1b60448201526064016100ac565b815f5f82825461010091906101aa565b909155"
    "5050325f90815260016020526040812080548492906101239084906101aa565b90915550505f5460405190815233907f"
    "5311a32e1bc07c65f9f3c57e845d29af6c46065a94add70de6af009b370c33899060200160405180910390a250505f54"
    "90565b5f60208284031215610176575f5ffd5b81356001600160a01b038116811461018c575f5ffd5b9392505050565b"
    "5f602082840312156101a3575f5ffd5b5035919050565b808201808211156101c957634e487b7160e01b5f5260116004"
    "5260245ffd5b9291505056fea264697066735822122002440f26d74db614c39dd3a36d1f61075393bb243e9e169c0de4"
    "624355c6c4e264736f6c63430008250033"
)
SOL_CALLER = bytes.fromhex(
    "6080604052348015600e575f5ffd5b506101ae8061001c5f395ff3fe608060405234801561000f575f5ffd5b50600436"
    "10610029575f3560e01c80633cc114551461002d575b5f5ffd5b61004061003b36600461012c565b610052565b604051"
    "90815260200160405180910390f35b604051632c83ad3160e21b8152600481018290525f906001600160a01b03841690"
    "63b20eb4c4906024016020604051808303815f875af1158015610098573d5f5f3e3d5ffd5b505050506040513d601f19"
    "601f820116820180604052508101906100bc9190610161565b50604051632c83ad3160e21b8152600481018390526001"
    "600160a01b0384169063b20eb4c4906024016020604051808303815f875af1158015610101573d5f5f3e3d5ffd5b5050"
    "50506040513d601f19601f820116820180604052508101906101259190610161565b9392505050565b5f5f6040838503"
    "121561013d575f5ffd5b82356001600160a01b0381168114610153575f5ffd5b946020939093013593505050565b5f60"
    "208284031215610171575f5ffd5b505191905056fea2646970667358221220823f2c515c5f03deccf97a60c974388fd5"
    "27c8e95fef2fb82a368c8c08cd61c964736f6c63430008250033"
)


def test_solidity_bytecode_custom_errors_and_cross_contract_calls() -> None:
    ex = Executor(CHAIN_ID)
    alice = User(1)
    ex.begin_batch(BlockInfo(1, 1_700_000_000))
    counter = run(ex, alice.tx(None, SOL_COUNTER, gas=1_000_000))
    caller = run(ex, alice.tx(None, SOL_CALLER, gas=1_000_000))
    assert counter.success and caller.success and counter.contract_address and caller.contract_address
    r = run(ex, alice.tx(caller.contract_address, call_data("bumpTwice(address,uint256)", ["address", "uint256"], [counter.contract_address, 7])))
    assert r.success and abi_decode(["uint256"], r.output) == (14,)
    assert [lg.address for lg in r.logs] == [counter.contract_address] * 2
    assert r.logs[0].topics[1] == b"\x00" * 12 + caller.contract_address  # msg.sender is the caller contract
    too_big = run(ex, alice.tx(counter.contract_address, call_data("bump(uint256)", ["uint256"], [101])))
    assert too_big.status == 0 and too_big.output == sel("TooBig(uint256)") + abi_encode(["uint256"], [101])
    assert too_big.error == "execution reverted"  # a custom error: the data is in the receipt
    zero = run(ex, alice.tx(counter.contract_address, call_data("bump(uint256)", ["uint256"], [0])))
    assert zero.error == "execution reverted: zero bump"
    ex.end_batch()
    by_user = ex.call(alice.address, counter.contract_address, call_data("byUser(address)", ["address"], [alice.address]))
    assert abi_decode(["uint256"], by_user.output) == (14,)  # tx.origin is the signer


def test_contract_addresses_follow_ethereum(code: dict[str, bytes]) -> None:
    import rlp

    ex = Executor(CHAIN_ID)
    alice, bob = User(1), User(2)
    ex.begin_batch(BlockInfo(1, 1_700_000_000))
    assert run(ex, alice.tx(bob.address)).success  # nonce 0: a plain call (pyrevm does not count it)
    r = run(ex, alice.tx(None, code["vault"], gas=1_000_000))  # nonce 1: a creation
    assert r.contract_address == keccak256(rlp.encode([alice.address, 1]))[12:]
    ex.end_batch()
    assert ex.code_at(r.contract_address) and ex.state.nonce(alice.address) == 2


def test_receipt_encoding_is_cbor2_canonical_byte_for_byte() -> None:
    """Receipt.encode writes CBOR by hand (hot path): the same bytes as cbor2's canonical encoding."""
    from enclavenet.crypto.header import Withdrawal
    from enclavenet.enclave.executor import Log

    rnd = random.Random(3)

    def rb(n: int) -> bytes:
        return rnd.randbytes(n)

    for _ in range(500):
        logs = tuple(
            Log(rb(20), tuple(rb(32) for _ in range(rnd.randrange(5))), rb(rnd.choice([0, 1, 23, 24, 255, 256, 70_000])))
            for _ in range(rnd.choice([0, 1, 2, 24]))
        )
        error = rnd.choice([None, "", "out of gas", "execution reverted: é ü ∑ " * rnd.randrange(1, 30)])
        w = rnd.choice([None, Withdrawal(to_checksum(rb(20)), rnd.choice([1, 2**64 - 1, 2**64, 2**255]))])
        r = Receipt(rnd.choice([0, 1]), rnd.choice([0, 23, 24, 255, 256, 65_536, 2**32, 2**63]),
                    rb(rnd.choice([0, 32, 300])), logs, error, rnd.choice([None, rb(20)]), rb(32), rb(20), w)
        assert r.encode() == cbor2.dumps(r.to_cbor(), canonical=True)
        assert Receipt.decode(r.encode()) == r
