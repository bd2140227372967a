"""Restarts that never wedge (issue 15, docs/NODE.md "Stall causes"), on a real devnet: 4 node
processes with their enclave processes, the embedded L1, faults injected for real.

Cause 1 -- every node killed at once while a height was signed but not yet on L1: the batch
lived only in the hosts' memory, while the enclaves (sealed before they signed) remembered
having signed it. After the restart nobody could re-collect its QC, and no other header at that
height could get one (an enclave never signs two): the rollup stopped for good. The test forces
that state deterministically (every node holds its QCs back: ``l1: hold_submits``), kills every
node, restarts them all and wants the held height on L1 within the liveness bound, with the
transaction acknowledged before the crash included.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from tests.integration._users import deposited_user
from web3 import Web3

from enclavenet.client import wrap
from enclavenet.devnet import Devnet

pytestmark = pytest.mark.integration

TIMEOUT = 1.0
SLOW = 4.0  # cause 5: the setup must finish inside one round
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
    out = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
                        timeout=10).json()
    assert "error" not in out, out
    return out["result"]


def test_every_node_killed_with_a_signed_height_not_on_l1_recovers_it(tmp_path: Any) -> None:
    with Devnet(n=4, proposer_timeout=TIMEOUT, batch_interval=0.05, allow_faults=True,
                base_dir=tmp_path / "net") as net:
        assert net.w3 is not None
        user, w3 = deposited_user(net, ETH // 100)
        net.wait_height(net.l1_height())

        h0 = net.l1_height()
        for i in range(net.n):
            net.faults(i, l1={"hold_submits": True})
        rid = "0x" + bytes(w3.eth.send_transaction(
            {"from": user.address, "to": user.address, "value": 1, "gas": 21_000})).hex()
        # a quorum signed h0+1 (the enclaves sealed it), nobody submitted it
        until("a quorum of heads at the held height",
              lambda: sum((net.status(i) or {}).get("head", 0) > h0 for i in range(net.n)) >= 3, 30)
        held = [net.faults(i)["l1"]["injected"]["held"] for i in range(net.n)]
        assert sum(held) >= 1 and net.l1_height() == h0, (held, net.l1_height())

        for i in range(net.n):
            net.kill(i)
        for i in range(net.n):
            p = net._node_proc(i)
            p.start(wait_ready=False)
            net.procs[i] = p
        until("every node serving again", lambda: all(net.status(i) is not None for i in range(net.n)), 120)
        t_back = time.monotonic()
        until(f"a header above {h0} after the restart", lambda: net.l1_height() > h0, 60, every=0.05)
        recovery = time.monotonic() - t_back
        # start-up (L1 follow-up, peer discovery) + the takeover of a proposal already signed
        assert recovery < 20 * TIMEOUT, recovery
        until("the transaction acknowledged before the crash", lambda: rpc(net.rpc_urls[1], "eth_getTransactionReceipt",
                                                                             rid), 60, every=0.2)
        net.wait_healthy(60)
        net.wait_height(h0 + 1, 60)  # every member follows L1 again


def test_members_restored_past_an_accepted_height_they_cannot_check_resync(tmp_path: Any) -> None:
    """Cause 5 (chaos seed 35 of ``benchmarks/chaos.py --seed 1 --schedules 50``): two members'
    enclaves come back from sealed state with a tentative head two heights above their finalised
    one, while L1 accepted only the height between. A sealed snapshot keeps no pre-batch states,
    so they cannot accept that header one by one; they waited for L1 to reach their head -- and
    refused to time out the next height (their finalised height behind L1), so with two of four
    members like that no timeout certificate formed: no header, ever. Forced here: h0+1's QC is
    held back (``l1: hold_submits`` at its proposer), h0+2 is proposed only to one member besides
    its proposer (``links: cut``: no QC); those two are killed (sealed at head h0+2, final h0),
    the hold is lifted, both restart; h0+1 reaches L1 by a later round, and then h0+2 must."""
    with Devnet(n=4, proposer_timeout=SLOW, batch_interval=0.05, allow_faults=True,
                base_dir=tmp_path / "net") as net:
        assert net.w3 is not None
        user, _ = deposited_user(net, ETH // 100)
        f = net.rollup.functions

        def settled() -> bool:  # the deposit's header on L1, every member final there, nothing tentative
            h = net.l1_height()
            sts = [net.status(i) or {} for i in range(net.n)]
            return f.msgConsumed().call() == f.msgCount().call() and all(
                st.get("height") == st.get("head") == h for st in sts)

        until("every member final at L1's head", settled, 30)
        h0 = net.l1_height()
        order = sorted(range(net.n), key=lambda i: int(net.addresses[i], 16))  # proposer(h) = order[h % n]
        p1, p2 = order[(h0 + 1) % net.n], order[(h0 + 2) % net.n]
        a, b = [i for i in range(net.n) if i not in (p1, p2)]
        w3p = [wrap(Web3(Web3.HTTPProvider(net.rpc_urls[i], request_kwargs={"timeout": 10})), user, l1=net.w3)
               for i in (p1, p2)]
        for i in range(net.n):  # h0+1 gets its QC; L1 does not see it yet
            net.faults(i, l1={"hold_submits": True})
        # h0+2 (the pipeline runs 2 heights ahead of L1): its proposer reaches only member a
        net.faults(p2, links={"cut": 1.0, "ops": ["propose"], "peers": [net.rpc_urls[p1], net.rpc_urls[b]]})
        send = lambda w, v: "0x" + bytes(w.eth.send_transaction(  # noqa: E731
            {"from": user.address, "to": user.address, "value": v, "gas": 21_000})).hex()
        rid1 = send(w3p[0], 1)
        until("h0+1 signed by a quorum",
              lambda: sum((net.status(i) or {}).get("head", 0) >= h0 + 1 for i in range(net.n)) >= 3, 10, every=0.02)
        rid2 = send(w3p[1], 2)
        until("h0+2 at its proposer and one member",
              lambda: all((net.status(i) or {}).get("head", 0) >= h0 + 2 for i in (p2, a)), 10, every=0.02)
        net.kill(p2)  # sealed at head h0+2, finalised h0
        net.kill(a)
        assert net.l1_height() == h0
        for i in (p1, b):  # h0+1 reaches L1 by a later round (re-proposed with a timeout certificate)
            net.faults(i, l1={"hold_submits": False})
        net.restart(p2, wait=False)
        net.restart(a, wait=False)
        t_back = time.monotonic()
        until(f"a header above {h0 + 1} after the restart", lambda: net.l1_height() > h0 + 1, 90, every=0.05)
        recovery = time.monotonic() - t_back
        assert recovery < 20 * SLOW, recovery
        for rid in (rid1, rid2):
            until(f"the receipt of {rid}", lambda rid=rid: rpc(net.rpc_urls[b], "eth_getTransactionReceipt", rid),
                  60, every=0.2)
        net.wait_height(net.l1_height(), 60)  # every member follows L1 again, the restored two included
