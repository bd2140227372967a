"""A node that stops running for a while (SIGSTOP for 1.5 s: what CPU starvation or a frozen VM
looks like from outside) must not wedge or split the committee (issue 15, docs/NODE.md "Timeouts").

Real devnet: 4 node processes with their enclaves, embedded L1, a user sending transfers all the
time. The next proposer, then a voter, then the proposer again are stopped for 1.5 s
(> proposer_timeout 1.0 s) and continued. Headers must keep coming (a fallback takes over while the
proposer is stopped), every node must follow L1 again afterwards, every acknowledged transaction
must get its receipt, and the stopped node must have seen its own stall (node/timeouts.py): it
does not count that time as its peers' silence.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests
from tests.integration._users import deposited_user

from enclavenet.devnet import Devnet

pytestmark = pytest.mark.integration

TIMEOUT = 1.0
STOP = 1.5
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


def test_a_node_stopped_for_longer_than_the_timeout_neither_wedges_nor_splits_the_committee(tmp_path: Any) -> None:
    with Devnet(n=4, proposer_timeout=TIMEOUT, batch_interval=0.05, allow_faults=True,
                base_dir=tmp_path / "net") as net:
        assert net.w3 is not None
        user, w3 = deposited_user(net, ETH // 100)

        acked: list[str] = []
        stop = threading.Event()

        def send() -> None:  # through node 0, which is never stopped
            while not stop.is_set():
                with_rid = w3.eth.send_transaction({"from": user.address, "to": user.address, "value": 1, "gas": 21_000})
                acked.append("0x" + bytes(with_rid).hex())
                stop.wait(0.1)

        t = threading.Thread(target=send, daemon=True)
        t.start()
        try:
            stopped: list[int] = []
            for role in ("proposer", "voter", "proposer"):
                h = net.l1_height()
                until("the next header", lambda h=h: net.l1_height() > h, 30, every=0.01)  # a height just became due
                p = net.proposer_index()
                victim = p if role == "proposer" else (p + 2) % net.n
                if victim == 0:  # node 0 carries the load: stop the next one instead
                    victim = 1
                h0 = net.l1_height()
                net.suspend(victim)
                time.sleep(STOP)
                h_during = net.l1_height()
                net.resume(victim)
                stopped.append(victim)
                # the others made progress while it was stopped, or do right after
                until(f"a header above {h0} ({role} node{victim} stopped {STOP}s)", lambda h0=h0: net.l1_height() > h0,
                      5 * TIMEOUT + STOP, every=0.02)
                until(f"node{victim} following L1 again", lambda v=victim: net.height(v) >= net.l1_height() - 1, 30)
                assert h_during >= h0
        finally:
            stop.set()
            t.join(15)
        h_end = net.l1_height()
        until("more headers after the stalls", lambda: net.l1_height() > h_end, 10)
        net.wait_height(h_end, 30)  # every member converged on L1's headers
        for rid in acked:
            until(f"the receipt of {rid}", lambda rid=rid: rpc(net.rpc_urls[0], "eth_getTransactionReceipt", rid), 60, 0.2)
        for v in set(stopped):
            st = rpc(net.rpc_urls[v], "enclavenet_status")
            assert st["timeouts"]["ownStalls"] >= STOP - 0.5, st["timeouts"]  # it saw its own stall
        assert len(acked) > 20
