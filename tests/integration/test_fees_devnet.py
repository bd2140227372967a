"""Fees on a live committee (docs/FEES.md, issue 13 items 1-2): the client signs with the node's
``eth_gasPrice``, a transfer pays its gas from the deposit, and a spammer with a thousand fresh
keys and no balance neither gets executed nor delays an honest transaction beyond the next batch;
afterwards every node refuses the spammers at admission until they deposit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from eth_account import Account
from web3 import Web3

from enclavenet.chain import pay
from enclavenet.client import deposit, wrap
from enclavenet.client.errors import TransactionRefused
from enclavenet.devnet import Devnet

pytestmark = pytest.mark.integration

GWEI = 10**9
SPAMMERS = 1000
PIPELINE = 2  # the devnet's: heights a proposer may run ahead of L1


@pytest.fixture(scope="module")
def net() -> Iterator[Devnet]:
    with Devnet(n=4, batch_interval=0.05, min_base_fee=GWEI, batch_size=2000) as d:
        yield d


def _wait(cond, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_fees_are_paid_and_a_penniless_spammer_does_not_delay_an_honest_user(net: Devnet) -> None:
    assert net.w3 is not None
    alice, bob = Account.create(), Account.create()
    pay(net.w3, net.accounts[0], alice.address, 10**18)
    deposit(net.w3, alice, net.rollup.address, 10**17)
    node = Web3(Web3.HTTPProvider(net.rpc_urls[0], request_kwargs={"timeout": 60}))
    w3 = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[0], request_kwargs={"timeout": 60})), alice, l1=net.w3)
    _wait(lambda: w3.eth.get_balance(alice.address) == 10**17, "the deposit to be credited")
    # the node quotes the base fee with headroom; the client signs with it
    assert node.eth.gas_price == GWEI + GWEI // 4
    rc = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": alice.address, "to": bob.address, "value": 5, "gas": 21_000}), timeout=60)
    assert rc["status"] == 1 and rc["effectiveGasPrice"] == GWEI  # EIP-1559, no tip: the base fee
    assert w3.eth.get_balance(alice.address) == 10**17 - 5 - 21_000 * GWEI
    hist = node.eth.fee_history(4, "latest")
    assert hist["baseFeePerGas"][-1] >= GWEI

    # a thousand fresh keys with no balance, then the honest user
    keys = [Account.create() for _ in range(SPAMMERS)]
    spam = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[1], request_kwargs={"timeout": 60})), keys, l1=net.w3)
    def lag() -> int:
        """Heights from the accepted height at sending to the one holding an honest transfer."""
        h0 = node.eth.block_number
        tx = w3.eth.send_transaction({"from": alice.address, "to": bob.address, "value": 7, "gas": 21_000})
        r = w3.eth.wait_for_transaction_receipt(tx, timeout=60)
        assert r["status"] == 1
        return int(r["blockNumber"]) - h0

    baseline = max(lag() for _ in range(2))
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:  # all of it in the mempools when the honest one arrives
        spam_ids = list(pool.map(lambda k: spam.eth.send_transaction(
            {"from": k.address, "to": bob.address, "value": 0, "gas": 21_000, "nonce": 0,
             "maxFeePerGas": 2 * GWEI, "maxPriorityFeePerGas": 0}), keys))
    spam_s = time.monotonic() - t0
    with_spam = lag()
    # proposals are pipelined (up to 2 heights ahead of L1): the honest transfer rides the batch
    # after the ones in flight, as without spam; at most one batch later
    assert with_spam <= max(baseline, PIPELINE + 1) + 1, (with_spam, baseline, spam_s)
    # none of the spam ran: each was refused for want of a balance (nonce unused, nothing paid)
    for rid in spam_ids[:3] + spam_ids[-3:]:
        with pytest.raises(TransactionRefused, match="cannot pay gas"):
            spam.eth.wait_for_transaction_receipt(rid, timeout=60)
    # ... and now every node refuses them at admission until they deposit
    for url in net.rpc_urls:  # a voter learns it when it re-executes: give a late one a moment
        again = wrap(Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60})), keys[:1], l1=net.w3)

        def refused(again: Web3 = again) -> bool:
            try:
                again.eth.send_transaction({"from": keys[0].address, "to": bob.address, "value": 0, "gas": 21_000,
                                            "nonce": 0, "maxFeePerGas": 2 * GWEI, "maxPriorityFeePerGas": 0})
            except Exception as exc:  # the node's MempoolFull answer, as the client raises it
                assert "could not pay the fee" in str(exc), exc
                return True
            return False

        _wait(refused, f"{url} to refuse an unfunded spammer", timeout=20)
