"""Queued withdrawals count in the escape hatch: leaf value = balance + queued amounts owed."""

from __future__ import annotations

import coincurve

from enclavenet.crypto.hashing import keccak256
from enclavenet.crypto.smt import smt_key, smt_leaf, smt_verify
from enclavenet.enclave.executor import WITHDRAW_ADDRESS, BlockInfo, Executor
from enclavenet.enclave.tx import decode_tx, sign_tx

CHAIN_ID = 4242


def _user(seed: int) -> tuple[bytes, bytes]:
    secret = keccak256(b"q-user", seed.to_bytes(4, "big"))
    pub = coincurve.PrivateKey(secret).public_key.format(compressed=False)[1:]
    return secret, keccak256(pub)[12:]


def test_leaf_value_includes_queued_withdrawals_until_paid() -> None:
    ex = Executor(CHAIN_ID, salt_secret_fn=lambda: b"\x05" * 32)
    secret, alice = _user(1)
    l1 = keccak256(b"l1 recipient")[12:]
    ex.begin_batch(BlockInfo(1, 1_700_000_001))
    ex.credit(alice, 10**18)
    ex.end_batch()
    ex.begin_batch(BlockInfo(2, 1_700_000_002))
    for n in range(20):  # 16 listed in this header, 4 queued
        raw = sign_tx(secret, CHAIN_ID, n, WITHDRAW_ADDRESS, l1, 10**15, 21_000 + 16 * 20)
        assert ex.execute(decode_tx(raw, CHAIN_ID)).success
    c = ex.end_batch()
    assert c.queued_withdrawals == 4 and ex.state.queue_senders == (alice,) * 4
    left = 10**18 - 20 * 10**15
    assert ex.balance(alice) == left
    assert ex.escape_value(alice) == left + 4 * 10**15  # the queued four are still owed
    p = ex.balance_proof(alice)
    assert p.balance == left + 4 * 10**15
    assert ex.state.balances_tree.get(smt_key(alice)) == smt_leaf(smt_key(alice), p.balance, p.salt)
    assert smt_verify(ex.balances_root, p.key, p.leaf, list(p.siblings))
    # a restored member agrees (senders are in the snapshot)
    twin = Executor(CHAIN_ID, salt_secret_fn=lambda: b"\x05" * 32)
    twin.restore(ex.snapshot(), expect_state_root=ex.state_root)
    assert twin.escape_value(alice) == left + 4 * 10**15 and twin.balances_root == ex.balances_root
    root_queued = ex.balances_root
    # the next header lists them: the leaf drops to the balance
    ex.begin_batch(BlockInfo(3, 1_700_000_003))
    c = ex.end_batch()
    assert len(c.withdrawals) == 4 and c.queued_withdrawals == 0
    assert ex.escape_value(alice) == left and ex.balance_proof(alice).balance == left
    assert ex.balances_root != root_queued
    ex.undo_batch()  # and undo puts the owed amount back
    assert ex.balances_root == root_queued and ex.escape_value(alice) == left + 4 * 10**15


def test_a_sender_that_withdrew_everything_keeps_a_leaf_while_queued() -> None:
    ex = Executor(CHAIN_ID)
    secret, bob = _user(2)
    ex.begin_batch(BlockInfo(1, 1_700_000_001))
    ex.credit(bob, 17 * 10**15)
    ex.end_batch()
    ex.begin_batch(BlockInfo(2, 1_700_000_002))
    for n in range(17):
        raw = sign_tx(secret, CHAIN_ID, n, WITHDRAW_ADDRESS, b"", 10**15, 21_000)
        assert ex.execute(decode_tx(raw, CHAIN_ID)).success
    ex.end_batch()
    assert ex.balance(bob) == 0 and ex.escape_value(bob) == 10**15
    assert ex.balance_proof(bob).balance == 10**15
    ex.begin_batch(BlockInfo(3, 1_700_000_003))
    ex.end_batch()
    assert ex.escape_value(bob) == 0 and ex.state.balances_tree.get(smt_key(bob)) is None
