"""Challenge, freeze, escape hatch and reclaim on a real devnet (4 node processes with their
enclave processes + an L1: the embedded L1 process, then anvil).

The first test runs with the committee alive: a challenge resolved in time gives the bond back
inside EnclaveNet, a frivolous one forfeits it to the treasury. The second kills EVERY node and
enclave process, then: the ignored challenge's deadline passes, anyone freezes the Rollup, users
withdraw with the leaves they fetched earlier (proofs against the last accepted header, read from
L1 alone), invalid and double withdrawals are refused, and deposits nobody credited come back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import ContractLogicError

from enclavenet.chain import pay
from enclavenet.client import (
    EnclaveNetError,
    TransactionReverted,
    challenge,
    challenge_status,
    deposit,
    escape_withdraw,
    fetch_escape_leaf,
    freeze,
    load_escape_leaf,
    reclaim_deposit,
    wrap,
)
from enclavenet.client.formats import sign_transaction
from enclavenet.client.l1 import _l1_transact
from enclavenet.crypto.envelope import seal
from enclavenet.crypto.escape import DEFAULT_TREASURY, EscapeLeaf
from enclavenet.devnet import Devnet

pytestmark = pytest.mark.integration

BOND = 10**15
ETH = 10**18




def _until(what: str, fn: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _group_alive(p: Any) -> bool:
    """Is any process of this node's process group (the node and its enclave) still there?"""
    if p is None or p.popen is None:
        return False
    try:
        os.killpg(p.popen.pid, 0)
    except ProcessLookupError:
        return False
    return True


class Env:
    def __init__(self, net: Devnet) -> None:
        assert net.w3 is not None and net.owner is not None
        self.net = net
        self.l1: Web3 = net.w3
        self.rollup = net.rollup
        self.address = str(net.rollup.address)
        self.f = net.rollup.functions
        self.faucet = net.accounts[0]

    def user(self, l1_eth: int = ETH) -> LocalAccount:
        u = Account.create()
        pay(self.l1, self.faucet, u.address, l1_eth)
        return u

    def wrapped(self, u: LocalAccount, node: int = 0) -> Web3:
        return wrap(Web3(Web3.HTTPProvider(self.net.rpc_urls[node], request_kwargs={"timeout": 60})), u, l1=self.l1)

    def mine(self, n: int) -> None:
        self.l1.provider.make_request("anvil_mine", [hex(n)])  # type: ignore[arg-type]

    def all_consumed(self) -> bool:
        return bool(self.f.msgConsumed().call() == self.f.msgCount().call())


@pytest.fixture(scope="module", params=["embedded", "anvil"])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    with Devnet(n=4, l1=request.param, batch_interval=0.05) as net:
        e = Env(net)
        _l1_transact(e.l1, net.owner, e.f.setChallengeParams(1_000, BOND), 0, 60)  # type: ignore[arg-type]
        yield e


def test_challenge_resolved_in_time_gives_the_bond_back_and_a_frivolous_one_forfeits_it(env: Env) -> None:
    alice, bob, carol = env.user(), Account.create(), env.user()
    w3a, w3c = env.wrapped(alice), env.wrapped(carol, node=1)
    deposit(env.l1, alice, env.address, ETH // 10)
    _until("alice's deposit", lambda: w3a.eth.get_balance(alice.address) == ETH // 10)
    treasury0 = w3a.eth.get_balance(DEFAULT_TREASURY)

    # alice forces a payment through L1 with a bond; the committee executes it in L1 order
    ch = challenge(w3a, env.l1, {"to": bob.address, "value": 5}, gas=21_000, bond=BOND)
    assert ch.deadline == int(ch.l1_receipt["blockNumber"]) + 1_000 and ch.bond == BOND
    rc = w3a.eth.wait_for_transaction_receipt(ch.receipt_id, timeout=60)
    assert rc["status"] == 1
    st = challenge_status(env.l1, env.address, ch.index)
    assert st.resolved and not st.expired and not st.frozen
    # the bond is back inside EnclaveNet, the payment made
    assert w3a.eth.get_balance(alice.address) == ETH // 10 - 5 + BOND
    assert w3a.eth.get_balance(bob.address) == 5
    with pytest.raises(TransactionReverted, match="challenge resolved"):
        freeze(env.l1, carol, env.address, ch.index)

    # carol challenges alice's transaction again: already executed, so the bond is forfeited
    ch2 = challenge(w3c, env.l1, envelope=ch.envelope, bond=BOND)
    _until("the frivolous challenge consumed", lambda: challenge_status(env.l1, env.address, ch2.index).resolved)
    _until("the treasury credited", lambda: w3c.eth.get_balance(DEFAULT_TREASURY) == treasury0 + BOND)
    assert w3c.eth.get_balance(carol.address) == 0
    assert w3a.eth.get_balance(alice.address) == ETH // 10 - 5 + BOND  # executed once only
    # too small a bond is refused on L1 with the reason
    with pytest.raises(TransactionReverted, match="challenge bond below challengeBond"):
        challenge(w3c, env.l1, envelope=ch.envelope, bond=BOND - 1)


def test_ignored_challenge_freezes_and_users_escape_with_every_enclave_dead(env: Env, tmp_path: Path) -> None:
    alice, dave, erin, keeper = env.user(), env.user(), env.user(), env.user()
    w3a, w3d = env.wrapped(alice), env.wrapped(dave, node=2)
    deposit(env.l1, alice, env.address, 3 * ETH // 10)
    deposit(env.l1, dave, env.address, ETH // 5)
    _until("deposits credited", lambda: w3d.eth.get_balance(dave.address) == ETH // 5 and env.all_consumed())
    # a transfer, so the balances are not just the deposits
    h = w3a.eth.send_transaction({"from": alice.address, "to": dave.address, "value": 7, "gas": 21_000})
    assert w3a.eth.wait_for_transaction_receipt(h, timeout=60)["status"] == 1

    # each user keeps the latest leaf of their own balance (fetched while the nodes are up)
    def fresh(w3: Web3, path: Path) -> EscapeLeaf | None:
        leaf = fetch_escape_leaf(w3, save_to=path)
        last = bytes(env.f.lastHeaderHash().call())
        return leaf if leaf.header_hash == last and env.all_consumed() else None

    a_path, d_path = tmp_path / "alice.leaf", tmp_path / "dave.leaf"
    a_leaf = _until("alice's leaf at the last accepted header", lambda: fresh(w3a, a_path))
    d_leaf = _until("dave's leaf at the last accepted header", lambda: fresh(w3d, d_path))
    assert (a_leaf.balance, d_leaf.balance) == (3 * ETH // 10 - 7, ETH // 5 + 7)
    assert a_leaf.header_hash == d_leaf.header_hash == bytes(env.f.lastHeaderHash().call())
    # while alive, the escape hatch is closed
    with pytest.raises(EnclaveNetError, match="not frozen"):
        escape_withdraw(env.l1, alice, env.address, a_path)

    # alice prepares a transaction from L1 data alone (the epoch key the Rollup recorded)
    epoch = int(env.f.currentEpoch().call())
    epoch_key = bytes(env.f.epochKey(epoch).call())
    raw = sign_transaction(bytes(alice.key), env.net.chain_id, 1, dave.address, b"", 1, 21_000)
    envelope = seal(raw, epoch_key, env.net.chain_id, epoch).envelope.encode()

    for i in range(env.net.n):  # every node and its enclave process: SIGKILL
        env.net.kill(i)
    _until("every node and enclave process gone", lambda: not any(_group_alive(p) for p in env.net.procs), 10)

    # an ignored deposit and an ignored challenge
    deposit(env.l1, erin, env.address, 12345)
    erin_index = int(env.f.msgCount().call()) - 1
    _l1_transact(env.l1, env.net.owner, env.f.setChallengeParams(20, BOND), 0, 60)  # type: ignore[arg-type]
    ch = challenge(env.wrapped(alice), env.l1, envelope=envelope, bond=BOND, rollup=env.address)
    with pytest.raises(TransactionReverted, match="challenge deadline not passed yet"):
        freeze(env.l1, keeper, env.address, ch.index)
    env.mine(21)
    assert challenge_status(env.l1, env.address, ch.index).expired
    freeze(env.l1, keeper, env.address, ch.index)
    assert env.f.frozen().call()
    with pytest.raises(TransactionReverted, match="Rollup: frozen"):
        deposit(env.l1, erin, env.address, 1)

    # an invalid proof is refused by the Rollup, with the reason
    from enclavenet.client.escape import last_accepted_header

    header = last_accepted_header(env.l1, env.address)
    assert header is not None and header.hash() == a_leaf.header_hash
    forged = EscapeLeaf(a_leaf.address, a_leaf.balance * 2, a_leaf.salt, a_leaf.siblings,
                        a_leaf.height, a_leaf.header_hash, a_leaf.balances_root)
    with pytest.raises(ContractLogicError, match="balance proof does not match the balances root"):
        env.f.escape(*forged.escape_args(header.as_tuple())).call({"from": alice.address})
    with pytest.raises(ContractLogicError, match="balance proof does not match the balances root"):
        env.f.escape(*a_leaf.escape_args(header.as_tuple())).call({"from": dave.address})  # not dave's leaf
    with pytest.raises(EnclaveNetError, match="does not prove against"):
        escape_withdraw(env.l1, alice, env.address, forged)

    # the real proofs pay, with every enclave dead; each once
    a_to, d_to = Account.create().address, Account.create().address
    r = escape_withdraw(env.l1, alice, env.address, load_escape_leaf(a_path), recipient=a_to)
    assert r.amount == a_leaf.balance and env.l1.eth.get_balance(a_to) == a_leaf.balance
    escape_withdraw(env.l1, dave, env.address, d_path, recipient=d_to)
    assert env.l1.eth.get_balance(d_to) == d_leaf.balance
    with pytest.raises(TransactionReverted, match="already escaped, or not an EOA"):
        escape_withdraw(env.l1, alice, env.address, a_path, recipient=a_to)

    # what no header consumed comes back by the message chain: erin's deposit, alice's bond
    before = env.l1.eth.get_balance(erin.address)
    rr = reclaim_deposit(env.l1, keeper, env.address, erin_index)
    assert rr.paid and rr.sender == erin.address and rr.amount == 12345
    assert env.l1.eth.get_balance(erin.address) - before == 12345
    before = env.l1.eth.get_balance(alice.address)
    reclaim_deposit(env.l1, keeper, env.address, ch.index)
    assert env.l1.eth.get_balance(alice.address) - before == BOND
    with pytest.raises(TransactionReverted, match="already reclaimed"):
        reclaim_deposit(env.l1, keeper, env.address, erin_index)
    with pytest.raises(EnclaveNetError, match="consumed by an accepted header"):
        reclaim_deposit(env.l1, keeper, env.address, 0)
