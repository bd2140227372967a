"""Takeover, hostile hosts and the freeze on a real devnet (4 node processes with their enclave
processes, embedded L1, ``allow_faults``): faults are injected for real (SIGKILL, a hung enclave
process, a per-node link policy that drops / delays / reorders / replays peer messages and replays
stale inputs to the enclaves), never mocked.

* a crashed or hung proposer is replaced within 2 x proposer_timeout (fault -> next accepted
  header), and every acknowledged transaction gets its receipt;
* under a hostile host on every node, headers keep coming, the enclaves refuse every stale input
  (or give the identical answer of an idempotent retry: never anything else), and every node
  agrees with L1 header by header;
* once the Rollup is frozen, nodes say so in their status and stop proposing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from eth_account import Account
from web3 import Web3

from enclavenet.client import deposit, wrap
from enclavenet.client.l1 import _l1_transact
from enclavenet.crypto.envelope import seal
from enclavenet.devnet import Devnet

pytestmark = pytest.mark.integration

TIMEOUT = 1.5
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
    out = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=10).json()
    assert "error" not in out, out
    return out["result"]


class Sender:
    """One user sending a transfer every ``period`` s through node ``i``, in a thread."""

    def __init__(self, net: Devnet, i: int, period: float = 0.15) -> None:
        assert net.w3 is not None
        self.net, self.i, self.period = net, i, period
        self.user = Account.create()
        tx = {"to": self.user.address, "value": ETH // 10, "gas": 21_000, "chainId": net.w3.eth.chain_id,
              "nonce": net.w3.eth.get_transaction_count(net.accounts[0].address, "pending"),
              "maxFeePerGas": 2 * net.w3.eth.get_block("latest")["baseFeePerGas"] + 10**9, "maxPriorityFeePerGas": 10**9}
        net.w3.eth.wait_for_transaction_receipt(net.w3.eth.send_raw_transaction(
            net.accounts[0].sign_transaction(tx).raw_transaction))
        deposit(net.w3, self.user, net.rollup.address, ETH // 100)
        self.w3 = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[i], request_kwargs={"timeout": 10})), self.user, l1=net.w3)
        until("the deposit", lambda: self.w3.eth.get_balance(self.user.address) == ETH // 100)
        self.acked: list[str] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            h = self.w3.eth.send_transaction({"from": self.user.address, "to": self.user.address, "value": 1, "gas": 21_000})
            self.acked.append("0x" + bytes(h).hex())
            self._stop.wait(self.period)

    def __enter__(self) -> Sender:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(20)

    def all_received(self, timeout: float = 60.0) -> None:
        assert self.acked, "nothing was sent"
        for rid in self.acked:
            until(f"receipt {rid}", lambda rid=rid: rpc(self.net.rpc_urls[self.i], "eth_getTransactionReceipt", rid), timeout)


@pytest.fixture(scope="module")
def net() -> Iterator[Devnet]:
    with Devnet(n=4, batch_interval=0.05, proposer_timeout=TIMEOUT, allow_faults=True, batch_size=200) as d:
        yield d


def converged(net: Devnet, nodes: list[int]) -> None:
    until("nodes at L1's height", lambda: all(net.height(i) == net.l1_height() for i in nodes), 60)
    h = net.l1_height()
    last = "0x" + bytes(net.rollup.functions.lastHeaderHash().call()).hex()
    for i in nodes:
        assert rpc(net.rpc_urls[i], "enclavenet_getHeader", hex(h))["hash"] == last


def fault_then_next_header(net: Devnet, fault: Any, spare: int) -> float:
    """Right after a header is accepted (the next height just became due), fault the next
    proposer (never ``spare``, the node the client talks to); time until the next header."""
    for _ in range(20):
        h0 = net.l1_height()
        until("a fresh header", lambda h0=h0: net.l1_height() > h0, 30, every=0.01)
        h0 = net.l1_height()
        victim = net.proposer_index(h0 + 1)
        if victim != spare:
            break
    fault(victim)
    t0 = time.monotonic()
    until("the takeover", lambda: net.l1_height() > h0, 30, every=0.01)
    return time.monotonic() - t0


@pytest.mark.parametrize("kind", ["crash", "hang"])
def test_a_crashed_or_hung_proposer_is_replaced_within_two_timeouts(net: Devnet, kind: str) -> None:
    victims: list[int] = []

    def fault(p: int) -> None:
        victims.append(p)
        if kind == "crash":
            net.kill(p)
        else:
            net.hang_enclave(p)  # the node is up, its enclave never answers again

    entry = 0
    with Sender(net, entry) as s:
        time.sleep(0.5)
        recovery = fault_then_next_header(net, fault, entry)
        time.sleep(1.0)
    assert victims[0] != entry
    assert recovery <= 2 * TIMEOUT, f"recovery took {recovery:.2f}s, more than 2 x {TIMEOUT}s"
    s.all_received()  # no acknowledged transaction lost
    alive = [i for i in range(4) if i != victims[0]]
    converged(net, alive)
    net.kill(victims[0])
    net.restart(victims[0])
    converged(net, list(range(4)))


def test_hostile_hosts_drop_delay_reorder_replay_safety_holds_and_progress_continues(net: Devnet) -> None:
    h0 = net.l1_height()
    with Sender(net, 1) as s:
        for i in range(4):
            net.faults(i, links={"drop": 0.15, "delay": 0.05, "reorder": 0.5, "replay": 0.4, "seed": i},
                       enclave_link={"replay": 0.5, "seed": i})
        time.sleep(3.0)
        during = net.l1_height() - h0
        stats = [net.faults(i) for i in range(4)]
        for i in range(4):
            net.faults(i, links=None, enclave_link=None)
    assert during >= 2, "no progress under the hostile hosts"
    injected = {k: sum(st["links"]["injected"][k] for st in stats) for k in ("drop", "delay", "reorder", "replay")}
    assert all(v > 0 for v in injected.values()), injected
    replays = {k: sum(st["enclaveLink"]["replays"][k] for st in stats) for k in ("refused", "identical", "violations")}
    assert replays["refused"] > 0 and replays["violations"] == 0, replays
    s.all_received()
    converged(net, list(range(4)))
    for i in range(4):  # every node followed every header (same hashes as L1 at each height)
        for h in range(h0 + 1, net.l1_height() + 1):
            assert rpc(net.rpc_urls[i], "enclavenet_getHeader", hex(h)) == rpc(net.rpc_urls[0], "enclavenet_getHeader", hex(h))


def test_nodes_stop_proposing_and_say_so_when_the_rollup_is_frozen(net: Devnet) -> None:
    assert net.w3 is not None and net.owner is not None
    f = net.rollup.functions
    _l1_transact(net.w3, net.owner, f.setChallengeParams(3, 10**15), 0, 60)  # type: ignore[arg-type]
    user = Account.create()
    for i in range(4):  # hosts that ignore everything (SIGSTOP) while a challenge runs out
        net.suspend(i)
    try:
        tx = {"to": user.address, "value": ETH // 10, "gas": 21_000, "chainId": net.w3.eth.chain_id,
              "nonce": net.w3.eth.get_transaction_count(net.accounts[0].address, "pending"),
              "maxFeePerGas": 2 * net.w3.eth.get_block("latest")["baseFeePerGas"] + 10**9, "maxPriorityFeePerGas": 10**9}
        net.w3.eth.wait_for_transaction_receipt(net.w3.eth.send_raw_transaction(net.accounts[0].sign_transaction(tx).raw_transaction))
        epoch = int(f.currentEpoch().call())
        env = seal(b"\x01garbage", bytes(f.epochKey(epoch).call()), net.chain_id, epoch).envelope.encode()
        r = _l1_transact(net.w3, user, f.challenge(env), 10**15, 60)  # type: ignore[arg-type]
        (ev,) = net.rollup.events.ChallengeStarted().process_receipt(r)
        for _ in range(4):
            net.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        _l1_transact(net.w3, user, f.freeze(int(ev["args"]["index"])), 0, 60)  # type: ignore[arg-type]
        assert f.frozen().call()
    finally:
        for i in range(4):
            net.resume(i)
    h = net.l1_height()
    until("every node reporting the freeze",
          lambda: all((net.status(i) or {}).get("frozen") and (net.status(i) or {}).get("role") == "frozen" for i in range(4)), 30)
    time.sleep(2 * TIMEOUT)  # the challenge message is pending work: nobody proposes it
    assert net.l1_height() == h
    assert all((net.status(i) or {}).get("counters", {}).get("submitted", 0) >= 0 for i in range(4))
