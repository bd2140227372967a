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


def deposited_user(net: Devnet, amount: int = ETH // 100, *, l1_value: int = ETH // 10, node: int = 0,
                   timeout: float = 60.0) -> tuple[LocalAccount, Web3]:
    """A fresh account holding ``amount`` wei inside EnclaveNet (credited: the wait is included),
    and a Web3 on node ``node`` that seals its transactions."""
    assert net.w3 is not None
    user = Account.create()
    tx = {"to": user.address, "value": l1_value, "gas": 21_000, "chainId": net.w3.eth.chain_id,
          "nonce": net.w3.eth.get_transaction_count(net.accounts[0].address, "pending"),
          "maxFeePerGas": 2 * net.w3.eth.get_block("latest")["baseFeePerGas"] + 10**9,
          "maxPriorityFeePerGas": 10**9}
    net.w3.eth.wait_for_transaction_receipt(net.w3.eth.send_raw_transaction(
        net.accounts[0].sign_transaction(tx).raw_transaction))
    deposit(net.w3, user, net.rollup.address, amount)
    w3 = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[node], request_kwargs={"timeout": 10})), user, l1=net.w3)
    deadline = time.monotonic() + timeout
    while w3.eth.get_balance(user.address) != amount:
        assert time.monotonic() < deadline, "timed out waiting for the deposit"
        time.sleep(0.05)
    return user, w3
