"""The same L1 code path on both backends: embedded eth-tester and anvil."""

from __future__ import annotations

import pytest
import rlp
import vyper
from eth_utils import keccak, to_checksum_address

from enclavenet.chain import L1, ChainError, RpcL1, TxReverted

PING = """
event Ping:
    who: indexed(address)
    n: uint256

counter: public(uint256)

@external
def ping(n: uint256):
    assert n != 13, "unlucky number"
    assert n != 14
    if n == 15:
        raise "raised with a reason"
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


def test_same_accounts_chain_id_and_addresses(l1: L1, ping_artifact: dict) -> None:
    assert l1.chain_id == l1.w3.eth.chain_id == 31337
    assert l1.accounts[0].address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert l1.w3.eth.get_balance(l1.accounts[9].address) >= 9_999 * 10**18
    assert l1.w3.eth.get_block("latest")["gasLimit"] == 60_000_000
    sender = l1.sender(5)
    first = sender.deploy(ping_artifact["abi"], ping_artifact["bytecode"])
    # account 5 is used by this test only, so its first deployment has the same address
    nonce = l1.w3.eth.get_transaction_count(l1.accounts[5].address) - 1
    expected = keccak(rlp.encode([bytes.fromhex(l1.accounts[5].address[2:]), nonce]))[12:]
    assert first == to_checksum_address(expected)


def test_revert_reasons_are_the_same(l1: L1, ping_artifact: dict) -> None:
    sender = l1.sender(0)
    ping = l1.w3.eth.contract(
        address=sender.deploy(ping_artifact["abi"], ping_artifact["bytecode"]),
        abi=ping_artifact["abi"],
    )
    messages = []
    for n, gas in [(13, None), (14, None), (15, None), (13, 100_000), (15, 100_000), (1, 22_000)]:
        with pytest.raises(TxReverted) as info:
            sender.transact(ping.functions.ping(n), gas=gas)
        messages.append(info.value.reason)
    assert messages == [
        "unlucky number",
        "no reason given (a bare `assert` or `revert`)",
        "raised with a reason",
        "unlucky number",
        "raised with a reason",
        "out of gas (gas limit 22000)",
    ]
    assert sender.transact(ping.functions.ping(2))["status"] == 1
    assert ping.functions.counter().call() == 2


def test_mine_time_snapshot_reorg(l1: L1, ping_artifact: dict) -> None:
    start = l1.block_number()
    l1.mine(4)
    assert l1.block_number() == start + 4
    before = l1.timestamp()
    l1.increase_time(7 * 24 * 3600)
    assert l1.block_number() == start + 5
    assert l1.timestamp() >= before + 7 * 24 * 3600
    sender = l1.sender(1)
    ping = l1.w3.eth.contract(
        address=sender.deploy(ping_artifact["abi"], ping_artifact["bytecode"]),
        abi=ping_artifact["abi"],
    )
    assert ping.functions.now().call() >= before + 7 * 24 * 3600
    snap = l1.snapshot()
    sender.transact(ping.functions.ping(3))
    head = l1.block_number()
    old_hash = l1.w3.eth.get_block(head)["hash"]
    l1.reorg(1)  # drops the ping
    assert l1.block_number() == head
    assert l1.w3.eth.get_block(head)["hash"] != old_hash
    assert ping.functions.counter().call() == 0
    sender.transact(ping.functions.ping(4))  # nonce resynchronised after the reorg
    assert ping.functions.counter().call() == 4
    l1.rollback(1)
    assert ping.functions.counter().call() == 0
    l1.revert(snap)
    assert l1.block_number() == head - 1
    with pytest.raises(ChainError, match="unknown snapshot"):
        l1.revert(snap)


@pytest.mark.integration
def test_anvil_reorg_with_transactions(anvil_l1: RpcL1) -> None:
    """anvil_reorg can put signed transactions into the new blocks."""
    l1 = anvil_l1
    acct = l1.accounts[2]
    l1.mine(3)
    nonce = l1.w3.eth.get_transaction_count(acct.address)
    raw = acct.sign_transaction(
        {"to": l1.accounts[3].address, "value": 7, "gas": 21_000, "nonce": nonce,
         "chainId": l1.chain_id, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9}
    ).raw_transaction  # fmt: skip
    head = l1.block_number()
    l1.reorg(2, [(raw, 1)])
    assert l1.block_number() == head
    assert len(l1.w3.eth.get_block(head)["transactions"]) == 1
    assert l1.w3.eth.get_transaction_count(acct.address) == nonce + 1
