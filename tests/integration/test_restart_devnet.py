"""Restarts that never wedge (issue 15, docs/NODE.md "Stall causes"), on a real devnet: 4 node
processes with their enclave processes, the embedded L1, faults injected for real.

Cause 1 -- every node killed at once while a height was signed but not yet on L1: the batch
lived only in the hosts' memory, while the enclaves (sealed before they signed) remembered
having signed it. After the restart nobody could re-collect its QC, and no other header at that
height could get one (an enclave never signs two): the rollup stopped for good. The test forces
that state deterministically (every node holds its QCs back: ``l1: hold_submits``), kills every
node, restarts them all and wants the held height on L1 within the liveness bound, with the
transaction acknowledged before the crash included.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from eth_account import Account
from web3 import Web3

from enclavenet.client import deposit, wrap
from enclavenet.devnet import Devnet

pytestmark = pytest.mark.integration

TIMEOUT = 1.0
ETH = 10**18


def until(what: str, fn: Any, timeout: float = 60.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def rpc(url: str, method: str, *params: Any) -> Any:
    out = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
                        timeout=10).json()
    assert "error" not in out, out
    return out["result"]


def test_every_node_killed_with_a_signed_height_not_on_l1_recovers_it(tmp_path: Any) -> None:
    with Devnet(n=4, proposer_timeout=TIMEOUT, batch_interval=0.05, allow_faults=True,
                base_dir=tmp_path / "net") as net:
        assert net.w3 is not None
        user = Account.create()
        tx = {"to": user.address, "value": ETH // 10, "gas": 21_000, "chainId": net.w3.eth.chain_id,
              "nonce": net.w3.eth.get_transaction_count(net.accounts[0].address, "pending"),
              "maxFeePerGas": 2 * net.w3.eth.get_block("latest")["baseFeePerGas"] + 10**9,
              "maxPriorityFeePerGas": 10**9}
        net.w3.eth.wait_for_transaction_receipt(net.w3.eth.send_raw_transaction(
            net.accounts[0].sign_transaction(tx).raw_transaction))
        deposit(net.w3, user, net.rollup.address, ETH // 100)
        w3 = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[0], request_kwargs={"timeout": 10})), user, l1=net.w3)
        until("the deposit", lambda: w3.eth.get_balance(user.address) == ETH // 100)
        net.wait_height(net.l1_height())

        h0 = net.l1_height()
        for i in range(net.n):
            net.faults(i, l1={"hold_submits": True})
        rid = "0x" + bytes(w3.eth.send_transaction(
            {"from": user.address, "to": user.address, "value": 1, "gas": 21_000})).hex()
        # a quorum signed h0+1 (the enclaves sealed it), nobody submitted it
        until("a quorum of heads at the held height",
              lambda: sum((net.status(i) or {}).get("head", 0) > h0 for i in range(net.n)) >= 3, 30)
        held = [net.faults(i)["l1"]["injected"]["held"] for i in range(net.n)]
        assert sum(held) >= 1 and net.l1_height() == h0, (held, net.l1_height())

        for i in range(net.n):
            net.kill(i)
        for i in range(net.n):
            p = net._node_proc(i)
            p.start(wait_ready=False)
            net.procs[i] = p
        until("every node serving again", lambda: all(net.status(i) is not None for i in range(net.n)), 120)
        t_back = time.monotonic()
        until(f"a header above {h0} after the restart", lambda: net.l1_height() > h0, 60, every=0.05)
        recovery = time.monotonic() - t_back
        # start-up (L1 follow-up, peer discovery) + the takeover of a proposal already signed
        assert recovery < 20 * TIMEOUT, recovery
        until("the transaction acknowledged before the crash", lambda: rpc(net.rpc_urls[1], "eth_getTransactionReceipt",
                                                                             rid), 60, every=0.2)
        net.wait_healthy(60)
        net.wait_height(h0 + 1, 60)  # every member follows L1 again
