"""The committee on a real devnet: 4 node processes (sgx, tdx, sev-snp, csv; quorum 3 of >= 3
types) each with its enclave process, on the embedded L1 served over JSON-RPC.

Both ways in (JSON-RPC fast path to any node, and the L1 inbox), deposits and withdrawals, a
killed proposer replaced without losing an acknowledged transaction, the race converging, and
the nodes agreeing with L1 header by header. One devnet for the module; short timeouts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from tests.integration._users import fund
from web3 import Web3

from enclavenet.client import check_receipt, deposit, submit_via_l1, wrap
from enclavenet.devnet import Devnet

pytestmark = pytest.mark.integration

# a minimal token: balances, transfer (the examples have richer ones)
TOKEN_SRC = """
balanceOf: public(HashMap[address, uint256])
event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256
@deploy
def __init__(supply: uint256):
    self.balanceOf[msg.sender] = supply
@external
def transfer(to: address, amount: uint256) -> bool:
    assert self.balanceOf[msg.sender] >= amount, "balance too low"
    self.balanceOf[msg.sender] -= amount
    self.balanceOf[to] += amount
    log Transfer(sender=msg.sender, receiver=to, value=amount)
    return True
"""


@pytest.fixture(scope="module")
def token_artifact() -> dict[str, object]:
    import vyper

    out = vyper.compile_code(TOKEN_SRC, output_formats=["abi", "bytecode"], settings=None)
    return {"abi": out["abi"], "bytecode": out["bytecode"]}


@pytest.fixture(scope="module")
def net() -> Iterator[Devnet]:
    with Devnet(n=4, batch_interval=0.05, proposer_timeout=1.0, batch_size=200) as d:
        yield d


def rpc(url: str, method: str, *params: object) -> object:
    out = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=10).json()
    assert "error" not in out, out
    return out["result"]


def connect(net: Devnet, i: int, acct: LocalAccount | list[LocalAccount]) -> Web3:
    return wrap(Web3(Web3.HTTPProvider(net.rpc_urls[i], request_kwargs={"timeout": 60})), acct, l1=net.w3)


def deploy_token(w3: Web3, art: dict[str, object], supply: int, sender: str) -> object:
    c = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    rc = w3.eth.wait_for_transaction_receipt(c.constructor(supply).transact({"from": sender}), timeout=60)
    check_receipt(rc)
    return w3.eth.contract(address=rc.contractAddress, abi=art["abi"])


def wait_converged(net: Devnet, nodes: list[int], timeout: float = 60) -> int:
    """Every node reports the same L1 height as the Rollup and the same header hash at each height."""
    deadline = time.monotonic() + timeout
    while True:
        l1h = net.l1_height()
        heights = [net.height(i) for i in nodes]
        if all(h == l1h for h in heights):
            break
        assert time.monotonic() < deadline, f"nodes at {heights}, L1 at {l1h}"
        time.sleep(0.1)
    last = net.rollup.functions.lastHeaderHash().call()
    for i in nodes:
        hdr = rpc(net.rpc_urls[i], "enclavenet_getHeader", hex(l1h))
        assert hdr is not None and bytes.fromhex(hdr["hash"][2:]) == bytes(last), f"node{i} disagrees with L1"
        st = net.status(i)
        assert st is not None and st["finalized"] == l1h, f"node{i}: {st}"
    return l1h


def test_devnet_is_healthy_and_published_the_epoch_key(net: Devnet) -> None:
    assert net.l1_height() >= 1
    keys = [rpc(u, "enclavenet_epochKey") for u in net.rpc_urls]
    assert all(k == keys[0] for k in keys) and keys[0] is not None
    on_l1 = net.rollup.functions.epochKey(int(keys[0]["epoch"], 16)).call()
    assert "0x" + bytes(on_l1).hex() == keys[0]["epochKey"]
    st = net.status(0)
    assert st is not None and len(st["members"]) == 4 and st["teeType"] in ("sgx", "tdx", "sev-snp", "csv")
    assert rpc(net.rpc_urls[0], "eth_chainId") == hex(net.chain_id)


def test_fast_path_and_inbox_and_deposit_withdraw(net: Devnet, token_artifact: dict[str, object]) -> None:
    alice, bob = Account.create(), Account.create()
    fund(net, alice.address, 10**18)
    w3 = connect(net, 1, alice)
    token = deploy_token(w3, token_artifact, 1_000, alice.address)
    check_receipt(w3.eth.wait_for_transaction_receipt(token.functions.transfer(bob.address, 100).transact(), timeout=60))
    # fast path through another node, from another user
    w3b = connect(net, 2, bob)
    tok_b = w3b.eth.contract(address=token.address, abi=token_artifact["abi"])
    check_receipt(w3b.eth.wait_for_transaction_receipt(tok_b.functions.transfer(alice.address, 10).transact(), timeout=60))
    # the L1 inbox path: the same kind of envelope, carried by Rollup.submit
    sub = submit_via_l1(w3, net.w3, token.functions.transfer(bob.address, 7))
    check_receipt(w3.eth.wait_for_transaction_receipt(sub.receipt_id, timeout=60))
    assert tok_b.functions.balanceOf(bob.address).call() == 97
    assert token.functions.balanceOf(alice.address).call() == 903
    # deposit on L1 -> credited in EnclaveNet; withdraw -> paid by the Rollup on L1
    deposit(net.w3, alice, net.rollup.address, 3 * 10**15)
    deadline = time.monotonic() + 60
    while w3.eth.get_balance(alice.address) != 3 * 10**15:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    dest = Account.create().address
    wd = {"from": alice.address, "to": "0x00000000000000000000000000000000000057D0", "value": 10**15,
          "data": bytes.fromhex(dest[2:]), "gas": 100_000}
    rc = w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(wd), timeout=60)
    check_receipt(rc)
    assert net.w3.eth.get_balance(dest) == 10**15  # paid in the L1 transaction that accepted the header
    assert w3.eth.get_balance(alice.address) == 2 * 10**15
    wait_converged(net, list(range(4)))


def test_killed_proposer_is_replaced_and_no_acknowledged_tx_is_lost(
    net: Devnet, token_artifact: dict[str, object]
) -> None:
    alice, bob = Account.create(), Account.create()
    entry = 0
    w3 = connect(net, entry, alice)
    token = deploy_token(w3, token_artifact, 10**6, alice.address)
    victim = net.proposer_index()
    if victim == entry:  # send through a node that stays up
        entry = (victim + 1) % 4
        w3 = connect(net, entry, alice)
        token = w3.eth.contract(address=token.address, abi=token_artifact["abi"])
    acked = []
    for k in range(30):
        if k == 10:
            net.kill(victim)
        acked.append(token.functions.transfer(bob.address, k + 1).transact())  # acknowledged: id returned
    for h in acked:
        check_receipt(w3.eth.wait_for_transaction_receipt(h, timeout=90, poll_latency=0.1))
    assert token.functions.balanceOf(bob.address).call() == sum(range(1, 31))
    alive = [i for i in range(4) if i != victim]
    wait_converged(net, alive)
    # the killed node comes back with its sealed enclave (same identity) and catches up
    addr = net.addresses[victim]
    net.restart(victim)
    assert net.addresses[victim] == addr
    check_receipt(w3.eth.wait_for_transaction_receipt(token.functions.transfer(bob.address, 1).transact(), timeout=60))
    wait_converged(net, list(range(4)))
    w3v = connect(net, victim, bob)
    assert w3v.eth.contract(address=token.address, abi=token_artifact["abi"]).functions.balanceOf(
        bob.address).call() == sum(range(1, 31)) + 1


def test_race_converges_when_a_suspended_proposer_returns(net: Devnet, token_artifact: dict[str, object]) -> None:
    alice, bob = Account.create(), Account.create()
    token = deploy_token(connect(net, 0, alice), token_artifact, 10**6, alice.address)
    before = {i: (net.status(i) or {}).get("counters", {}).get("takeovers", 0) for i in range(4)}
    p = net.proposer_index()
    entry = (p + 2) % 4  # the client talks to a node that stays up
    w3 = connect(net, entry, alice)
    token = w3.eth.contract(address=token.address, abi=token_artifact["abi"])
    net.suspend(p)  # silent, but not dead: it comes back with whatever it had in flight
    try:
        ids = [token.functions.transfer(bob.address, 1).transact() for _ in range(10)]
        for h in ids[:3]:
            check_receipt(w3.eth.wait_for_transaction_receipt(h, timeout=60, poll_latency=0.1))
    finally:
        net.resume(p)
    ids += [token.functions.transfer(bob.address, 1).transact() for _ in range(10)]
    for h in ids:
        check_receipt(w3.eth.wait_for_transaction_receipt(h, timeout=60, poll_latency=0.1))
    after = {i: (net.status(i) or {}).get("counters", {}).get("takeovers", 0) for i in range(4)}
    assert sum(after.values()) > sum(before.values()), "nobody took over from the silent proposer"
    wait_converged(net, list(range(4)))
    assert token.functions.balanceOf(bob.address).call() == 20
