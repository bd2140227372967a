"""The confidential client on a real devnet: both ways in, deposits and withdrawals, and what
an observer sees.

One devnet per module (4 node processes + an embedded L1 process). Users are fresh keys funded
on L1 by the devnet's faucet account.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from examples.common import artifact
from web3 import Web3

from enclavenet.chain import pay
from enclavenet.client import (
    EpochKeyMismatch,
    NodeUnavailable,
    TransactionReverted,
    check_receipt,
    client_of,
    deposit,
    submit_via_l1,
    withdraw,
    wrap,
)
from enclavenet.devnet import Devnet

pytestmark = pytest.mark.integration


class RecordingProvider(Web3.HTTPProvider):
    """An HTTP provider that keeps every JSON-RPC request and response it carries: exactly what
    the node (and anyone on the path) sees of this client."""

    def __init__(self, url: str) -> None:
        super().__init__(url, request_kwargs={"timeout": 60})
        self.log: list[Any] = []

    def make_request(self, method: Any, params: Any) -> Any:
        resp = super().make_request(method, params)
        self.log.append({"method": method, "params": params, "response": resp})
        return resp




def _fresh_user(net: Devnet, l1_eth: int = 10**18) -> LocalAccount:
    assert net.w3 is not None
    u = Account.create()
    pay(net.w3, net.accounts[0], u.address, l1_eth)
    return u


def _wait_balance(w3: Web3, address: str, want: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (b := w3.eth.get_balance(address)) != want:
        assert time.monotonic() < deadline, f"balance of {address} is {b}, expected {want}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def net() -> Iterator[Devnet]:
    with Devnet(n=4, batch_interval=0.05) as d:
        yield d


@pytest.fixture(scope="module")
def l1(net: Devnet) -> Web3:
    assert net.w3 is not None
    return net.w3


def test_fast_path_to_any_node_with_l1_checked_epoch_key(net: Devnet, l1: Web3) -> None:
    alice, bob = Account.create(), Account.create()
    w3 = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[1], request_kwargs={"timeout": 60})), [alice, bob], l1=l1)
    art = artifact("token_vyper", "Token")
    token = art.deploy(w3, "T", "T", 18, 1_000, sender=alice.address)
    rc = w3.eth.wait_for_transaction_receipt(token.functions.transfer(bob.address, 300).transact(), timeout=60)
    check_receipt(rc)
    (ev,) = token.events.Transfer().process_receipt(rc)
    assert ev.args.value == 300 and ev.args.receiver == bob.address
    assert rc.blockNumber >= 1 and rc["l1TransactionHash"]
    # final: proven against the header accepted on L1 (issue 14 M6: node proof, client check)
    assert rc["l1Verified"] is True
    # the header holding it is on L1 (the receipt exists only once it is accepted there)
    l1_rc = l1.eth.get_transaction_receipt(rc["l1TransactionHash"])
    assert l1_rc.status == 1 and l1_rc.to == net.rollup.address
    assert token.functions.balanceOf(bob.address).call({"from": bob.address}) == 300
    with pytest.raises(TransactionReverted, match="balance too low"):
        token.functions.transfer(alice.address, 10**6).transact({"from": bob.address})
    c = client_of(w3)
    assert c.epoch_key is not None and c.epoch_key.checked_on_l1
    # a node lying about the epoch key is caught against the Rollup on L1
    with pytest.raises(EpochKeyMismatch, match="differs"):
        c._check_epoch_key_on_l1(w3.provider.make_request, c.epoch_key.epoch, b"\x01" * 32)
    # another node serves the same state
    w3b = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[3], request_kwargs={"timeout": 60})), bob, l1=l1)
    assert w3b.eth.contract(address=token.address, abi=art.abi).functions.balanceOf(bob.address).call() == 300


def test_deposit_then_withdraw_to_l1(net: Devnet, l1: Web3) -> None:
    user = _fresh_user(net)
    w3 = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[0], request_kwargs={"timeout": 60})), user, l1=l1)
    deposit(l1, user, net.rollup.address, 5 * 10**15)
    _wait_balance(w3, user.address, 5 * 10**15)
    recipient = Account.create().address  # a fresh L1 address: its balance is exactly what arrives
    res = withdraw(w3, l1, 2 * 10**15, recipient=recipient)
    assert res.paid and res.recipient == recipient and res.amount == 2 * 10**15
    assert l1.eth.get_balance(recipient) == 2 * 10**15
    assert w3.eth.get_balance(user.address) == 3 * 10**15


def test_l1_inbox_path(net: Devnet, l1: Web3) -> None:
    user = _fresh_user(net)
    other = Account.create().address
    w3 = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[2], request_kwargs={"timeout": 60})), user, l1=l1)
    token = artifact("token_vyper", "Token").deploy(w3, "T", "T", 18, 1_000, sender=user.address)
    # the same signed transaction, sealed the same way, but carried by an L1 transaction
    sub = submit_via_l1(w3, l1, token.functions.transfer(other, 40))
    assert sub.l1_receipt.status == 1
    rc = w3.eth.wait_for_transaction_receipt(sub.receipt_id, timeout=90)
    check_receipt(rc)
    assert rc["l1Verified"] is True  # an L1 payload's receipt is proven the same way
    (ev,) = token.events.Transfer().process_receipt(rc)
    assert ev.args.value == 40
    # an unsigned inbox call (sender = the L1 sender, no nonce), with a deposit riding along
    sub2 = submit_via_l1(w3, l1, token.functions.transfer(other, 2), inbox_call=True, deposit_value=10**12)
    check_receipt(w3.eth.wait_for_transaction_receipt(sub2.receipt_id, timeout=90))
    assert token.functions.balanceOf(user.address).call() == 1_000 - 42
    assert w3.eth.get_balance(user.address) == 10**12
    # the fast path keeps working after both (nonces stay in step)
    check_receipt(w3.eth.wait_for_transaction_receipt(token.functions.transfer(other, 1).transact(), timeout=60))


def test_observers_see_only_ciphertext(net: Devnet, l1: Web3) -> None:
    """The node's JSON-RPC traffic, the L1 calldata (submit and submitHeader) and the nodes' logs
    carry no trace of a known call's target, function selector or arguments."""
    user = _fresh_user(net)
    recipient = Account.create().address  # never sends: it must not appear anywhere
    setup = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[0], request_kwargs={"timeout": 60})), user, l1=l1)
    art = artifact("token_vyper", "Token")
    token = art.deploy(setup, "T", "T", 18, 10**12, sender=user.address)

    rec = RecordingProvider(net.rpc_urls[0])
    w3 = wrap(Web3(rec), user, l1=l1)
    tok = w3.eth.contract(address=token.address, abi=art.abi)
    amount = 0x3ADE68B1
    fn = tok.functions.transfer(recipient, amount)
    calldata = bytes.fromhex(fn._encode_transaction_data()[2:])
    start_block = l1.eth.block_number
    rc = w3.eth.wait_for_transaction_receipt(fn.transact(), timeout=60)
    check_receipt(rc)
    assert tok.functions.balanceOf(recipient).call() == amount  # a view with the same argument
    sub = submit_via_l1(w3, l1, tok.functions.transfer(recipient, amount))
    check_receipt(w3.eth.wait_for_transaction_receipt(sub.receipt_id, timeout=90))

    needles = {
        "selector": calldata[:4].hex(),
        "target": token.address[2:].lower(),
        "recipient": recipient[2:].lower(),
        "amount": amount.to_bytes(4, "big").hex(),
        "calldata": calldata.hex(),
    }
    # 1. what the node received and answered
    rpc_text = json.dumps(rec.log, default=str).lower()
    assert "eth_sendrawtransaction" in rpc_text and "enclavenet_call" in rpc_text
    # 2. every L1 transaction since: the inbox submission and the headers (submitHeader)
    l1_inputs, to_rollup = [], 0
    for n in range(start_block + 1, l1.eth.block_number + 1):
        for tx in l1.eth.get_block(n, full_transactions=True)["transactions"]:
            l1_inputs.append(bytes(tx["input"]).hex())
            to_rollup += tx["to"] == net.rollup.address
    assert to_rollup >= 2  # at least our submit and one submitHeader
    l1_text = " ".join(l1_inputs)
    # 3. what the hosts wrote in their logs
    logs_text = "\n".join(net.logs(i, tail=100_000) for i in range(net.n)).lower()
    assert logs_text
    for where, text in (("node JSON-RPC", rpc_text), ("L1 calldata", l1_text), ("node logs", logs_text)):
        for what, needle in needles.items():
            assert needle not in text, f"the {what} of the call appears in the {where}"
    # sanity: a plain transaction would have shown them
    plain = Account.sign_transaction(
        {"chainId": 1, "nonce": 0, "to": token.address, "data": calldata, "gas": 90_000, "gasPrice": 0}, user.key
    ).raw_transaction.hex()
    assert all(n in plain for n in needles.values())


def test_node_down_is_a_typed_error_and_the_client_recovers(net: Devnet, l1: Web3) -> None:
    """Last in the module: it kills and restarts node 3."""
    user = Account.create()
    w3 = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[3], request_kwargs={"timeout": 10})), user, l1=l1)
    art = artifact("counter", "Counter")
    counter = art.deploy(w3, "0x" + "00" * 20, sender=user.address)
    net.kill(3)
    with pytest.raises(NodeUnavailable, match="unreachable"):
        counter.functions.count().call()
    with pytest.raises(NodeUnavailable):
        counter.functions.bump(1).transact()
    net.restart(3)
    check_receipt(w3.eth.wait_for_transaction_receipt(counter.functions.bump(1).transact(), timeout=60))
    assert counter.functions.count().call() == 1
