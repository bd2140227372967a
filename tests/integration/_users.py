"""A user with ETH inside a live devnet: paid on L1 by the devnet's first account, deposited
into EnclaveNet, and connected to a node through the confidential client."""

from __future__ import annotations

import time

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from enclavenet.client import deposit, wrap
from enclavenet.devnet import Devnet

ETH = 10**18


def fund(net: Devnet, to: str, value: int) -> None:
    """Pay ``value`` wei on L1 from the devnet's first account to ``to`` (mined, succeeded)."""
    assert net.w3 is not None
    frm = net.accounts[0]
    l1 = net.w3
    tx = {"to": to, "value": value, "gas": 21_000, "chainId": l1.eth.chain_id,
          "nonce": l1.eth.get_transaction_count(frm.address, "pending"),
          "maxFeePerGas": 2 * l1.eth.get_block("latest")["baseFeePerGas"] + 10**9, "maxPriorityFeePerGas": 10**9}
    assert l1.eth.wait_for_transaction_receipt(l1.eth.send_raw_transaction(frm.sign_transaction(tx).raw_transaction)).status


def deposited_user(net: Devnet, amount: int = ETH // 100, *, l1_value: int = ETH // 10, node: int = 0,
                   timeout: float = 60.0) -> tuple[LocalAccount, Web3]:
    """A fresh account holding ``amount`` wei inside EnclaveNet (credited: the wait is included),
    and a Web3 on node ``node`` that seals its transactions."""
    assert net.w3 is not None
    user = Account.create()
    fund(net, user.address, l1_value)
    deposit(net.w3, user, net.rollup.address, amount)
    w3 = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[node], request_kwargs={"timeout": 10})), user, l1=net.w3)
    deadline = time.monotonic() + timeout
    while w3.eth.get_balance(user.address) != amount:
        assert time.monotonic() < deadline, "timed out waiting for the deposit"
        time.sleep(0.05)
    return user, w3
