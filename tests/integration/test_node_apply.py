"""Members outside the QC apply the proposer's sealed state diff instead of re-executing.

A real devnet (4 node processes with their enclave processes, quorum 3 of >= 3 types): the
proposer asks only the two voters its QC needs; the fourth member gets the batch with its QC
(``announce``) and, once the header is on L1, its enclave applies the diff (apply_batch with
``diff``). Checked: diffs were applied (and nothing had to be re-executed after a refused diff),
fewer batches were verified than 3 per height, every member finalises every header, and a member
that only applied the previous heights' diffs proposes later batches that the others accept.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from enclavenet.devnet import Devnet
from enclavenet.loadgen import TRANSFER, Chain, setup_token, wait_all

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def net() -> Iterator[Devnet]:
    with Devnet(n=4, batch_interval=0.1, proposer_timeout=5.0, batch_size=20) as d:
        yield d


def status(net: Devnet, i: int) -> dict[str, object]:
    out = requests.post(net.rpc_urls[i], json={"jsonrpc": "2.0", "id": 1, "method": "enclavenet_status", "params": []},
                        timeout=10).json()
    return out["result"]  # type: ignore[no-any-return]


def test_members_outside_the_qc_apply_diffs_and_propose_on_top(net: Devnet) -> None:
    chain = Chain(net)
    token, senders = setup_token(chain, 12, 0)
    assert net.rollup is not None
    h0 = int(net.rollup.functions.lastHeight().call())
    sink = bytes(12) + bytes.fromhex("ab" * 20)
    envs = [chain.envelope(bytes(s.key), s.address, n, token, TRANSFER + sink + (1).to_bytes(32, "big"), gas=100_000)
            for n in range(10) for s in senders]
    rids, _ = chain.send_all(envs)
    wait_all(chain, rids, timeout=120)
    h1 = int(net.rollup.functions.lastHeight().call())
    assert h1 - h0 >= 4, "the transfers should span several heights (every member proposes)"
    deadline = time.monotonic() + 30
    while True:  # every member finalises every header
        sts = [status(net, i) for i in range(net.n)]
        if all(int(s["finalized"]) >= h1 for s in sts) or time.monotonic() > deadline:  # type: ignore[call-overload]
            break
        time.sleep(0.2)
    assert all(int(s["finalized"]) >= h1 for s in sts), [s["finalized"] for s in sts]  # type: ignore[call-overload]
    counters = [s["counters"] for s in sts]
    applied = sum(int(c.get("applied_diff", 0)) for c in counters)  # type: ignore[attr-defined]
    reexec = sum(int(c.get("applied_reexec", 0)) for c in counters)  # type: ignore[attr-defined]
    proposed = [int(c["proposed"]) for c in counters]  # type: ignore[index]
    voted = sum(int(c["voted"]) for c in counters)  # type: ignore[index]
    assert applied >= 2, counters
    assert reexec == 0, counters  # no diff was refused (nor missing)
    # only the QC's voters re-executed: fewer than 3 verifications per proposed height
    assert voted < 3 * sum(proposed), counters
    # a member that applied diffs also proposed after that (its applied state is the real one)
    assert sum(1 for c, p in zip(counters, proposed, strict=True) if int(c.get("applied_diff", 0)) and p) >= 2  # type: ignore[attr-defined]
    # and the receipts are there on every node
    for i in range(net.n):
        st = requests.post(net.rpc_urls[i], json=[{"jsonrpc": "2.0", "id": k, "method": "enclavenet_txStatus",
                                                   "params": ["0x" + r.hex()]} for k, r in enumerate(rids[-5:])],
                           timeout=10).json()
        assert all(x["result"]["status"] == "included" for x in st)
