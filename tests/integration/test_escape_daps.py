"""The escape hatch from DAP data alone, on a real devnet (4 node processes with their enclave
processes, 2 DAP processes, an L1): users deposit and transact; the nodes upload each accepted
header's leaf-hash diff and the users' (balance, salt) sealed to them (their public keys recovered
from their L1 deposit transactions). Then EVERY node and enclave process is killed, an ignored
challenge freezes the Rollup, and each user rebuilds their proof from the DAPs only (root checked
against L1) and withdraws; a DAP with corrupted leaf hashes is detected and the next one used.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from enclavenet.chain import pay
from enclavenet.client import EnclaveNetError, challenge, deposit, escape_withdraw, freeze, wrap
from enclavenet.client.escape import fetch_escape_from_daps
from enclavenet.client.formats import sign_transaction
from enclavenet.client.l1 import _l1_transact
from enclavenet.crypto.envelope import seal
from enclavenet.crypto.smt import smt_key
from enclavenet.devnet import Devnet

pytestmark = pytest.mark.integration

BOND = 10**15
ETH = 10**18


def _until(what: str, fn: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = fn()
        except EnclaveNetError:
            v = None
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _group_alive(p: Any) -> bool:
    if p is None or p.popen is None:
        return False
    try:
        os.killpg(p.popen.pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_users_escape_with_data_from_the_daps_alone(tmp_path: Path) -> None:
    with Devnet(n=4, daps=2, dap_threshold=1, batch_interval=0.05, base_dir=tmp_path / "net") as net:
        assert net.w3 is not None and net.owner is not None
        l1, f, rollup = net.w3, net.rollup.functions, str(net.rollup.address)
        urls = [d.url for d in net.dap_procs]
        faucet = net.accounts[0]
        alice, dave, keeper = Account.create(), Account.create(), Account.create()
        for u in (alice, dave, keeper):
            pay(l1, faucet, u.address, ETH)
        deposit(l1, alice, rollup, 3 * ETH // 10)
        deposit(l1, dave, rollup, ETH // 5)
        w3a = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[0], request_kwargs={"timeout": 60})), alice, l1=l1)
        _until("deposits credited", lambda: w3a.eth.get_balance(dave.address) == ETH // 5
               and f.msgConsumed().call() == f.msgCount().call())
        h = w3a.eth.send_transaction({"from": alice.address, "to": dave.address, "value": 7, "gas": 21_000})
        assert w3a.eth.wait_for_transaction_receipt(h, timeout=60)["status"] == 1
        want = {alice.address: 3 * ETH // 10 - 7, dave.address: ETH // 5 + 7}

        # the DAPs catch up with the last accepted header (nodes export once their head is it)
        def from_daps(u: Any) -> Any:
            leaf = fetch_escape_from_daps(l1, u, rollup, urls)
            ok = leaf.header_hash == bytes(f.lastHeaderHash().call()) and leaf.balance == want[u.address]
            return leaf if ok else None

        for u in (alice, dave):
            _until(f"{u.address}'s escape data on the DAPs", lambda u=u: from_daps(u), 60)

        # a transaction the dead committee will ignore, prepared from L1 data alone
        epoch = int(f.currentEpoch().call())
        raw = sign_transaction(bytes(alice.key), net.chain_id, 1, dave.address, b"", 1, 21_000)
        envelope = seal(raw, bytes(f.epochKey(epoch).call()), net.chain_id, epoch).envelope.encode()

        for i in range(net.n):  # every node and its enclave process: SIGKILL
            net.kill(i)
        _until("every node and enclave process gone", lambda: not any(_group_alive(p) for p in net.procs), 10)

        _l1_transact(l1, net.owner, f.setChallengeParams(5, BOND), 0, 60)  # type: ignore[arg-type]
        ch = challenge(wrap(Web3(Web3.HTTPProvider(net.rpc_urls[0])), alice, l1=l1), l1, envelope=envelope,
                       bond=BOND, rollup=rollup)
        for _ in range(6):
            pay(l1, faucet, keeper.address, 1)  # L1 blocks pass: the challenge's deadline
        freeze(l1, keeper, rollup, ch.index)
        assert f.frozen().call()

        # DAP 0's leaf hashes are corrupted: its tree misses the accepted root; DAP 1 is used
        db = sqlite3.connect(net.dap_procs[0].store.removeprefix("sqlite://"))
        with db:
            n_rows = db.execute("UPDATE leafdiff_rows SET leaf = ? WHERE key = ? AND length(leaf) = 32",
                                (b"\x42" * 32, smt_key(alice.address))).rowcount
        assert n_rows >= 1
        db.close()
        with pytest.raises(EnclaveNetError, match="do not give the accepted balances root"):
            fetch_escape_from_daps(l1, alice, rollup, urls[:1])
        with pytest.raises(EnclaveNetError, match="no balance leaf"):
            fetch_escape_from_daps(l1, keeper, rollup, urls)

        for u in (alice, dave):
            leaf = fetch_escape_from_daps(l1, u, rollup, urls)
            assert leaf.balance == want[u.address] and leaf.height == int(f.lastHeight().call())
            to = Account.create().address
            r = escape_withdraw(l1, u, rollup, leaf, recipient=to)
            assert r.amount == want[u.address] and l1.eth.get_balance(to) == want[u.address]
