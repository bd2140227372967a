"""L1 reorganisations on anvil: a devnet (4 node processes and their enclaves) following L1 one
block deep (``confirmations=1``).

* a deposit whose block is replaced (the transaction re-included in the new block) is credited
  exactly once;
* a reorganisation deeper than ``confirmations`` that takes an accepted header off L1: the nodes
  submit the same QC'd header again (re-anchoring), nothing is executed twice, and the committee
  carries on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from enclavenet.client import check_receipt, wrap
from enclavenet.devnet import Devnet

pytestmark = pytest.mark.integration

ETH = 10**18


def until(what: str, fn: Any, timeout: float = 60.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


@pytest.fixture(scope="module")
def net() -> Iterator[Devnet]:
    with Devnet(n=4, l1="anvil", confirmations=1, batch_interval=0.05, proposer_timeout=1.0) as d:
        yield d


def test_reorganisations_lose_nothing_and_execute_nothing_twice(net: Devnet) -> None:
    assert net.w3 is not None
    l1 = net.w3
    f = net.rollup.functions
    user = Account.create()
    tx = {"to": user.address, "value": ETH // 10, "gas": 21_000, "chainId": l1.eth.chain_id,
          "nonce": l1.eth.get_transaction_count(net.accounts[0].address, "pending"),
          "maxFeePerGas": 2 * l1.eth.get_block("latest")["baseFeePerGas"] + 10**9, "maxPriorityFeePerGas": 10**9}
    l1.eth.wait_for_transaction_receipt(l1.eth.send_raw_transaction(net.accounts[0].sign_transaction(tx).raw_transaction))
    w3 = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[0], request_kwargs={"timeout": 30})), user, l1=l1)

    # 1. the deposit's block is replaced; the transaction lands in the new block: credited once
    dep = f.deposit().build_transaction({"from": user.address, "value": 10**16, "gas": 200_000, "chainId": l1.eth.chain_id,
                                         "nonce": l1.eth.get_transaction_count(user.address)})
    raw = bytes(user.sign_transaction(dep).raw_transaction)
    block = int(l1.eth.wait_for_transaction_receipt(l1.eth.send_raw_transaction(raw))["blockNumber"])
    n_msgs = int(f.msgCount().call())
    net.l1_reorg(transactions=[(raw, 0)], from_block=block)
    assert int(f.msgCount().call()) == n_msgs
    until("the deposit credited", lambda: w3.eth.get_balance(user.address) == 10**16)
    l1.provider.make_request("anvil_mine", ["0x3"])  # type: ignore[arg-type]
    time.sleep(1.0)
    assert w3.eth.get_balance(user.address) == 10**16  # not twice
    until("all L1 messages consumed", lambda: f.msgConsumed().call() == f.msgCount().call())

    # 2. a reorganisation deeper than confirmations takes an accepted header away
    sink = Account.create().address
    h = w3.eth.send_transaction({"from": user.address, "to": sink, "value": 7, "gas": 21_000})
    check_receipt(w3.eth.wait_for_transaction_receipt(h, timeout=60, poll_latency=0.05))
    top = int(f.lastHeight().call())
    until("every node following the header", lambda: all(net.height(i) >= top for i in range(4)), 30)
    first = min(int(l1.eth.get_transaction_receipt(net.rpc(0, "enclavenet_getHeader", hex(h))["l1TxHash"])["blockNumber"])
                for h in range(top, int(f.lastHeight().call()) + 1))
    depth = net.l1_reorg(from_block=first)  # the block holding submitHeader(top) and every later one: gone
    assert depth > 1 and int(f.lastHeight().call()) < top
    until("the header re-anchored", lambda: int(f.lastHeight().call()) >= top, 60)
    l1.provider.make_request("anvil_mine", ["0x2"])  # type: ignore[arg-type]
    reanchored = sum(int((net.status(i) or {}).get("counters", {}).get("reanchored", 0)) for i in range(4))
    assert reanchored >= 1
    assert sum(int((net.status(i) or {}).get("l1Reorgs", 0)) for i in range(4)) >= 1
    # executed once: the transfer happened exactly once, and the committee goes on
    assert w3.eth.get_balance(sink) == 7
    h2 = w3.eth.send_transaction({"from": user.address, "to": sink, "value": 1, "gas": 21_000})
    check_receipt(w3.eth.wait_for_transaction_receipt(h2, timeout=60, poll_latency=0.05))
    assert w3.eth.get_balance(sink) == 8
    assert w3.eth.get_balance(user.address) == 10**16 - 8
    until("nodes agree with L1", lambda: all(net.height(i) == int(f.lastHeight().call()) for i in range(4)), 30)
