"""Admission control on a live devnet (node/admission.py): while the committee cannot keep up,
new transactions get a retryable "busy" answer that changes nothing; the load generator and the
confidential client back off and everything acknowledged is included.

Real processes: 4 node processes with their enclave processes and the L1. To hold the queue full
for as long as the test needs, two of the four members are stopped (SIGSTOP): no quorum, no
header, so the queue cannot drain until they are resumed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from tests.integration._users import deposited_user
from web3 import Web3

from enclavenet.client import client_of
from enclavenet.devnet import Devnet
from enclavenet.loadgen import BUSY, TRANSFER, Chain, setup_token, wait_all

pytestmark = pytest.mark.integration
BATCH = 20


@pytest.fixture(scope="module")
def net() -> Iterator[Devnet]:
    with Devnet(n=4, batch_interval=0.1, proposer_timeout=5.0, batch_size=BATCH,
                node_options={"admission_queue_s": 0.5, "admission_min_batches": 2}) as d:
        yield d


def _post(url: str, envs: list[bytes]) -> list[dict[str, object]]:
    body = [{"jsonrpc": "2.0", "id": k, "method": "eth_sendRawTransaction", "params": ["0x" + e.hex()]}
            for k, e in enumerate(envs)]
    out = requests.post(url, data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=30).json()
    return sorted(out, key=lambda r: r["id"])  # type: ignore[no-any-return]


def _status(net: Devnet, rid: bytes) -> str:
    out = requests.post(net.rpc_urls[0], json={"jsonrpc": "2.0", "id": 1, "method": "enclavenet_txStatus",
                                               "params": ["0x" + rid.hex()]}, timeout=10).json()
    return str(out["result"]["status"])


def test_a_flood_is_told_busy_changes_nothing_and_backs_off_until_included(net: Devnet) -> None:
    chain = Chain(net)
    token, senders = setup_token(chain, 20, 0)
    _user, w3 = deposited_user(net)
    sink = bytes(12) + bytes.fromhex("ab" * 20)
    envs = [chain.envelope(bytes(s.key), s.address, n, token, TRANSFER + sink + (1).to_bytes(32, "big"), gas=100_000)
            for n in range(10) for s in senders]
    net.suspend(1)
    net.suspend(2)  # 2 of 4 members: no quorum, the queue cannot drain
    resumed = threading.Event()
    try:
        out = _post(net.rpc_urls[0], envs[:100])
        ok = [envs[r["id"]] for r in out if "result" in r]  # type: ignore[index]
        busy = [r for r in out if "error" in r]
        assert ok and busy, "a queue of 2 batches must refuse part of 100 transactions"
        assert len(ok) <= 3 * BATCH
        for r in busy:
            err = r["error"]
            assert err["code"] == BUSY and err["data"]["reason"] == "busy" and err["data"]["retryAfter"] > 0  # type: ignore[index]
            assert "committee busy" in err["message"] and "retry in" in err["message"]  # type: ignore[index]
        refused = envs[busy[0]["id"]]  # type: ignore[index]
        assert _status(net, chain_rid(refused)) == "unknown"  # refused: nothing was queued
        # the confidential client is told busy too, waits and sends again once the queue drains
        client = client_of(w3)

        def resume_later() -> None:
            time.sleep(3.0)
            net.resume(1)
            net.resume(2)
            resumed.set()

        threading.Thread(target=resume_later, daemon=True).start()
        t0 = time.monotonic()
        tx = w3.eth.send_transaction({"to": Web3.to_checksum_address("0x" + "cd" * 20), "value": 1, "gas": 21_000})
        assert client.busy_retries >= 1 and time.monotonic() - t0 > 1.0
        assert w3.eth.wait_for_transaction_receipt(tx, timeout=60)["status"] == 1
    finally:
        if not resumed.is_set():
            net.resume(1)
            net.resume(2)
    # the load generator backs off the same way: every transaction of the flood is included
    admitted = set(ok)
    rids, _ = chain.send_all([e for e in envs if e not in admitted])
    assert chain.busy_refusals > 0 or len(envs) - len(admitted) <= 2 * BATCH
    wait_all(chain, rids + [chain_rid(e) for e in ok], timeout=120)
    assert all(_status(net, chain_rid(e)) == "included" for e in envs)


def chain_rid(env: bytes) -> bytes:
    from enclavenet.crypto.hashing import keccak256

    return keccak256(env)
