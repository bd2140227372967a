"""The embedded L1 and the transaction sender, in process (no anvil)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import vyper
from eth_account import Account
from web3.exceptions import TransactionNotFound
from web3.middleware import Web3Middleware

from enclavenet.chain import (
    ChainError,
    EmbeddedL1,
    InsufficientFunds,
    L1Unavailable,
    RpcL1,
    TxReverted,
    dev_accounts,
    open_l1,
)
from enclavenet.chain.errors import with_retries

PING = """
event Ping:
    who: indexed(address)
    n: uint256

counter: public(uint256)

@external
def ping(n: uint256):
    assert n != 13, "unlucky number"
    assert n != 14
    self.counter += n
    log Ping(who=msg.sender, n=n)

@external
@view
def now() -> uint256:
    return block.timestamp
"""


@pytest.fixture(scope="module")
def ping_artifact() -> dict:
    return vyper.compile_code(PING, output_formats=["abi", "bytecode"])


def test_dev_accounts_match_anvil() -> None:
    accounts = dev_accounts(11)
    assert accounts[0].address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert accounts[10].address == "0xBcd4042DE499D14e55001CcbB24a551F3b954096"  # derived


def test_embedded_basics(embedded_l1: EmbeddedL1) -> None:
    l1 = embedded_l1
    assert l1.chain_id == l1.w3.eth.chain_id == 31337
    assert l1.w3.eth.get_balance(l1.accounts[0].address) == 10_000 * 10**18
    assert l1.w3.eth.get_block("latest")["gasLimit"] == 60_000_000
    assert l1.block_number() == 0
    l1.mine(3)
    assert l1.block_number() == 3
    before = l1.timestamp()
    l1.increase_time(3600)
    assert l1.block_number() == 4
    assert l1.timestamp() >= before + 3600


def test_embedded_chain_id_settable() -> None:
    with EmbeddedL1(chain_id=5, accounts=2, balance_eth=1) as l1:
        assert l1.w3.eth.chain_id == 5
        assert len(l1.accounts) == 2
        receipt = l1.sender(0).send_raw(l1.accounts[1].address, value=123)
        assert receipt["status"] == 1
        assert l1.w3.eth.get_balance(l1.accounts[1].address) == 10**18 + 123


def test_embedded_snapshot_revert_rollback_reorg(embedded_l1: EmbeddedL1) -> None:
    l1 = embedded_l1
    l1.mine(5)
    snap = l1.snapshot()
    h5 = l1.w3.eth.get_block(5)["hash"]
    l1.mine(3)
    l1.revert(snap)
    assert l1.block_number() == 5
    with pytest.raises(ChainError, match="unknown snapshot"):
        l1.revert(snap)
    l1.reorg(2)
    assert l1.block_number() == 5
    assert l1.w3.eth.get_block(5)["hash"] != h5
    assert l1.w3.eth.get_block(3)["hash"] == l1.w3.eth.get_block(3)["hash"]
    l1.rollback(2)
    assert l1.block_number() == 3


def test_sender_deploy_transact_revert(embedded_l1: EmbeddedL1, ping_artifact: dict) -> None:
    l1 = embedded_l1
    sender = l1.sender(0)
    address = sender.deploy(ping_artifact["abi"], ping_artifact["bytecode"])
    ping = l1.w3.eth.contract(address=address, abi=ping_artifact["abi"])
    receipt = sender.transact(ping.functions.ping(5))
    assert receipt["status"] == 1
    assert ping.functions.counter().call() == 5
    with pytest.raises(TxReverted, match=r"ping\(13\) on 0x\w+ reverted: unlucky number"):
        sender.transact(ping.functions.ping(13))
    with pytest.raises(TxReverted, match="no reason given"):
        sender.transact(ping.functions.ping(14))


def test_sender_reason_of_a_mined_revert(embedded_l1: EmbeddedL1, ping_artifact: dict) -> None:
    """With gas given, nothing is estimated: the tx is mined with status 0 and replayed."""
    l1 = embedded_l1
    sender = l1.sender(0)
    ping = l1.w3.eth.contract(
        address=sender.deploy(ping_artifact["abi"], ping_artifact["bytecode"]),
        abi=ping_artifact["abi"],
    )
    with pytest.raises(TxReverted, match="unlucky number") as info:
        sender.transact(ping.functions.ping(13), gas=200_000)
    assert info.value.receipt["status"] == 0 and info.value.tx_hash
    with pytest.raises(TxReverted, match="out of gas"):
        sender.transact(ping.functions.ping(1), gas=22_000)
    assert sender.transact(ping.functions.ping(1))["status"] == 1  # nonce still in step


def test_sender_nonce_resync(embedded_l1: EmbeddedL1) -> None:
    l1 = embedded_l1
    a, b = l1.sender(0), l1.sender(0)  # two senders, one account: each sees the other's nonce
    for _ in range(3):
        a.send_raw(l1.accounts[1].address, value=1)
        b.send_raw(l1.accounts[1].address, value=1)
    assert l1.w3.eth.get_transaction_count(l1.accounts[0].address) == 6
    snap = l1.snapshot()
    a.send_raw(l1.accounts[1].address, value=1)
    l1.revert(snap)  # the L1 tells its senders that history changed
    a.send_raw(l1.accounts[1].address, value=1)
    assert l1.w3.eth.get_transaction_count(l1.accounts[0].address) == 7


def test_sender_insufficient_funds(embedded_l1: EmbeddedL1) -> None:
    poor = embedded_l1.sender(Account.create())
    with pytest.raises(InsufficientFunds, match="cannot pay"):
        poor.send_raw(embedded_l1.accounts[0].address, value=1, gas=21_000)


def test_unreachable_rpc_says_so() -> None:
    with pytest.raises(
        L1Unavailable, match=r"cannot reach L1 at http://127.0.0.1:9: connection refused"
    ):
        RpcL1("http://127.0.0.1:9", connect_attempts=1)


def test_open_l1() -> None:
    with open_l1("embedded") as l1:
        assert isinstance(l1, EmbeddedL1)
    with pytest.raises(ValueError, match="URL"):
        open_l1("nonsense")


def test_embedded_transaction_index_follows_history(embedded_l1: EmbeddedL1) -> None:
    """Receipts come from py-evm's hash index (fast): it must follow reverts and rollbacks."""
    l1 = embedded_l1
    sender = l1.sender(0)
    to = l1.accounts[1].address
    snap = l1.snapshot()
    kept = [sender.send_raw(to, value=1)["transactionHash"] for _ in range(3)]
    dropped = [sender.send_raw(to, value=2)["transactionHash"] for _ in range(2)]
    l1.rollback(2)
    moved = sender.send_raw(to, value=3)
    for tx_hash in dropped:
        with pytest.raises(TransactionNotFound):
            l1.w3.eth.get_transaction_receipt(tx_hash)
    for number in range(1, l1.block_number() + 1):
        for tx_hash in l1.w3.eth.get_block(number)["transactions"]:
            assert l1.w3.eth.get_transaction_receipt(tx_hash)["blockNumber"] == number
    assert {bytes(h) for h in kept} <= {
        bytes(h) for n in (1, 2, 3) for h in l1.w3.eth.get_block(n)["transactions"]
    }
    assert moved["blockNumber"] == 4
    l1.revert(snap)  # back to genesis
    for tx_hash in [*kept, moved["transactionHash"]]:
        with pytest.raises(TransactionNotFound):
            l1.w3.eth.get_transaction(tx_hash)


def test_with_retries_backs_off_then_gives_up() -> None:
    failures = iter([requests.ConnectionError("Connection refused")] * 2)

    def flaky() -> int:
        for exc in failures:
            raise exc
        return 7

    assert with_retries(flaky, what="x", endpoint="http://n", backoff=0.001) == 7

    def dead() -> int:
        raise requests.ConnectionError("[Errno 111] Connection refused")

    with pytest.raises(L1Unavailable, match="cannot reach L1 at http://n: connection refused"):
        with_retries(dead, what="x", endpoint="http://n", attempts=3, backoff=0.001)

    def bug() -> int:
        raise KeyError("not transient")

    with pytest.raises(KeyError):  # other errors are not retried
        with_retries(bug, what="x", endpoint="http://n", backoff=0.001)


class LoseSendResponses(Web3Middleware):
    """The node gets eth_sendRawTransaction, but the answer is lost on the way back."""

    remaining = 0

    def wrap_make_request(self, make_request: Any) -> Any:
        def middleware(method: str, params: Any) -> Any:
            response = make_request(method, params)
            if method == "eth_sendRawTransaction" and LoseSendResponses.remaining > 0:
                LoseSendResponses.remaining -= 1
                raise requests.ConnectionError("Connection reset by peer")
            return response

        return middleware


def test_sender_survives_a_lost_send_response(embedded_l1: EmbeddedL1) -> None:
    """Resending after a lost answer hits the node's nonce check; the sender sees that its
    own transaction got in, and carries on without a gap or a duplicate."""
    l1 = embedded_l1
    l1.w3.middleware_onion.add(LoseSendResponses)
    sender = l1.sender(0, backoff=0.001)
    LoseSendResponses.remaining = 1
    receipt = sender.send_raw(l1.accounts[1].address, value=5)
    assert receipt["status"] == 1
    assert sender.send_raw(l1.accounts[1].address, value=5)["status"] == 1
    assert l1.w3.eth.get_transaction_count(l1.accounts[0].address) == 2


def test_sender_is_thread_safe(embedded_l1: EmbeddedL1) -> None:
    l1 = embedded_l1
    sender = l1.sender(0)
    with ThreadPoolExecutor(4) as pool:
        receipts = list(
            pool.map(lambda _: sender.send_raw(l1.accounts[1].address, value=1), range(20))
        )
    assert all(r["status"] == 1 for r in receipts)
    assert l1.w3.eth.get_transaction_count(l1.accounts[0].address) == 20
