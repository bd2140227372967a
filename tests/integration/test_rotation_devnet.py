"""Epoch rotation on a real devnet (4 node processes and their enclave processes, embedded L1,
``epoch_every = 3``, ``allow_faults`` for the compromise hook).

* the epoch changes every 3 headers; each new key reaches L1 with the header that opens the
  epoch (``Rollup.epochKey``); clients keep working across the changes (they re-seal);
* with the keys of epoch k leaked (an enclave compromised at k), a transaction sealed to epoch
  k+1 does not open; after the grace window no surviving enclave holds epoch k-1;
* revoking an enclave opens a new epoch on the very next header, and the revoked enclave never
  receives it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account
from web3 import Web3

from enclavenet.client import check_receipt, deposit, wrap
from enclavenet.crypto.envelope import EnvelopeError, open_envelope, seal
from enclavenet.devnet import Devnet
from enclavenet.enclave.tx import sign_tx

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
    with Devnet(n=4, batch_interval=0.05, proposer_timeout=1.0, allow_faults=True,
                node_options={"epoch_every": 3}) as d:
        yield d


@pytest.fixture(scope="module")
def user(net: Devnet) -> tuple[Any, Web3]:
    assert net.w3 is not None
    u = Account.create()
    tx = {"to": u.address, "value": ETH // 10, "gas": 21_000, "chainId": net.w3.eth.chain_id,
          "nonce": net.w3.eth.get_transaction_count(net.accounts[0].address, "pending"),
          "maxFeePerGas": 2 * net.w3.eth.get_block("latest")["baseFeePerGas"] + 10**9, "maxPriorityFeePerGas": 10**9}
    net.w3.eth.wait_for_transaction_receipt(net.w3.eth.send_raw_transaction(net.accounts[0].sign_transaction(tx).raw_transaction))
    deposit(net.w3, u, net.rollup.address, ETH // 100)
    w3 = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[0], request_kwargs={"timeout": 30})), u, l1=net.w3)
    until("the deposit", lambda: w3.eth.get_balance(u.address) == ETH // 100)
    return u, w3


def pay(w3: Web3, u: Any, n: int = 1) -> None:
    for _ in range(n):
        h = w3.eth.send_transaction({"from": u.address, "to": u.address, "value": 1, "gas": 21_000})
        check_receipt(w3.eth.wait_for_transaction_receipt(h, timeout=60, poll_latency=0.05))


def test_epochs_rotate_on_schedule_keys_reach_l1_and_clients_carry_on(net: Devnet, user: tuple[Any, Web3]) -> None:
    u, w3 = user
    f = net.rollup.functions
    e0 = int(f.currentEpoch().call())
    pay(w3, u, 7)  # 7 more headers: at least two rotations
    e1 = int(f.currentEpoch().call())
    assert e1 >= e0 + 2, (e0, e1)
    for e in range(e0, e1 + 1):
        assert bytes(f.epochKey(e).call()) != bytes(32), f"no key of epoch {e} on L1"
    heights = [net.rpc(0, "enclavenet_getHeader", hex(h)) for h in range(1, net.l1_height() + 1)]
    assert all(h is not None for h in heights)
    for i in range(4):
        st = net.status(i)
        assert st is not None and len(st["epochsHeld"]) <= 2 and st["epochsHeld"][-1] >= e1


def test_leaked_epoch_reads_nothing_later_and_survivors_forget_older(net: Devnet, user: tuple[Any, Web3]) -> None:
    u, w3 = user
    f = net.rollup.functions
    k = int(f.currentEpoch().call())
    leaked = net.compromise(2)["epochs"]  # node 2's enclave is breached at epoch k
    assert str(k) in leaked
    until("epoch k+1 on L1", lambda: (pay(w3, u), int(f.currentEpoch().call()) > k)[1], 60, every=0)
    k1 = int(f.currentEpoch().call())
    env = seal(sign_tx(bytes(u.key), net.chain_id, 0, u.address, b"", 0, 21_000), bytes(f.epochKey(k1).call()),
               net.chain_id, k1).envelope
    for keys in leaked.values():  # backward secrecy: nothing of k or before opens k+1
        with pytest.raises(EnvelopeError):
            open_envelope(env, X25519PrivateKey.from_private_bytes(bytes.fromhex(keys["txKey"][2:])), net.chain_id)
    until("epoch k+2 on L1", lambda: (pay(w3, u), int(f.currentEpoch().call()) > k1)[1], 60, every=0)
    for i in (0, 1, 3):  # forward secrecy: after the grace window, no survivor holds epoch k
        held = {int(e) for e in net.compromise(i)["epochs"]}
        assert k not in held and max(held) > k1, (i, held)


def test_revocation_opens_a_new_epoch_at_once_and_the_revoked_enclave_gets_nothing(
    net: Devnet, user: tuple[Any, Web3]
) -> None:
    u, w3 = user
    f = net.rollup.functions
    until("all nodes at L1's height", lambda: all(net.height(i) == net.l1_height() for i in range(4)), 30)
    e = int(f.currentEpoch().call())
    h = net.l1_height()
    victim = 3
    net.revoke_enclave(victim)
    # the next header opens a new epoch, with no transaction waiting
    until("a header opening a new epoch", lambda: int(f.currentEpoch().call()) > e, 30)
    assert net.l1_height() == h + 1
    new = int(f.currentEpoch().call())
    time.sleep(1.0)
    st = net.status(victim)
    assert st is not None and new not in st["epochsHeld"]
    assert new not in {int(x) for x in net.compromise(victim)["epochs"]}
    for i in (0, 1, 2):
        s = net.status(i)
        assert s is not None and new in s["epochsHeld"] and len(s["members"]) == 3
    pay(w3, u, 2)  # the three remaining members carry on
    assert int(f.currentEpoch().call()) >= new
