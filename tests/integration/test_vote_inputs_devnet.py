"""Issue 14 H5 / M1 at a live voter: a compromised proposer (its enclave's signing key leaked
through the fault hook) sends proposals straight to the other member's peer port.

* H5: a proposal with no messages and ``l1_block`` past a pending deposit -- voters skipped the
  whole-blocks check for empty message lists -- is refused before any enclave work.
* M1: a proposal that consumes the deposit properly but says ``timestamp = 2^64-1`` is refused
  by the voter's host (L1 time of ``l1_block`` + drift), before its enclave sees it.

Batches are cut only after ``batch_interval`` (600 s here), so the deposit stays pending while
the test runs; two members (sgx, tdx), quorum 2.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import cbor2
import pytest
import requests
from web3.logs import DISCARD

from enclavenet.client.l1 import deposit
from enclavenet.crypto.hashing import ZERO32, to_checksum
from enclavenet.crypto.header import EMPTY_WITHDRAWALS_HASH, Header
from enclavenet.crypto.secp256k1 import SigningKey
from enclavenet.devnet import Devnet
from enclavenet.enclave.batch import data_commitment_of_items

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def net() -> Iterator[Devnet]:
    with Devnet(n=2, tee_types=["sgx", "tdx"], allow_faults=True, batch_interval=600.0, proposer_timeout=600.0) as d:
        yield d


def rpc(url: str, method: str, *params: Any) -> Any:
    out = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=30).json()
    assert "result" in out, out
    return out["result"]


def _wait(cond: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _proposal(net: Devnet, key: SigningKey, msg_count: int, l1_block: int, timestamp: int,
              messages: list[list[Any]]) -> bytes:
    f = net.rollup.functions
    h = int(f.lastHeight().call()) + 1
    prev = bytes(f.lastHeaderHash().call())
    epoch = int(f.currentEpoch().call())
    meta = cbor2.dumps({"n_envelopes": 0})
    header = Header(
        height=h, prev_hash=prev, epoch=epoch, epoch_key=bytes(f.epochKey(epoch).call()), l1_block=l1_block,
        msg_count=msg_count, msg_acc=ZERO32, tx_root=ZERO32, receipts_root=ZERO32, state_root=ZERO32,
        balances_root=ZERO32, withdrawals_hash=EMPTY_WITHDRAWALS_HASH, data_commitment=data_commitment_of_items([meta]),
    )
    sig = key.sign(header.signing_digest(net.l1_chain_id, net.rollup.address))
    inp = {"height": h, "prev_hash": prev, "epoch": epoch, "l1_block": l1_block, "timestamp": timestamp,
           "messages": messages}
    return cbor2.dumps({"proposer": key.address, "header": header.encode(), "signature": sig, "input": inp,
                        "batch_data": cbor2.dumps([meta]), "withdrawals": []})


def test_a_compromised_proposer_cannot_skip_a_deposit_or_freeze_the_timestamp(net: Devnet) -> None:
    _wait(lambda: int(net.rollup.functions.lastHeight().call()) >= 1, "height 1 (the epoch key on L1)")
    # compromise the round-0 proposer of the next height (members sorted by address, round robin):
    # enclave keys are fresh per run, so which node that is changes from run to run
    h = int(net.rollup.functions.lastHeight().call()) + 1
    addr = {u: to_checksum(rpc(u, "enclavenet_status")["address"]) for u in net.rpc_urls}
    members = sorted(addr.values(), key=lambda x: x.lower())
    a = next(u for u in net.rpc_urls if addr[u] == members[h % len(members)])
    b = next(u for u in net.rpc_urls if u != a)
    leaked = rpc(a, "enclavenet_adminCompromise")
    key = SigningKey(bytes.fromhex(leaked["signingKey"][2:]))
    assert to_checksum(key.address) == to_checksum(rpc(a, "enclavenet_status")["address"])
    _wait(lambda: rpc(b, "enclavenet_status")["head"] >= 1, "the voter at height 1")

    consumed = int(net.rollup.functions.msgConsumed().call())
    rc = deposit(net.w3, net.accounts[0], net.rollup.address, 10**15)
    ev = net.rollup.events.L1Message().process_receipt(rc, errors=DISCARD)[0].args
    assert ev.index == consumed  # the one pending message
    dep_block = int(ev.l1_block)
    # one more (empty) L1 block, so the deposit's block is finished: a plain transfer
    other = net.accounts[1]
    tx = other.sign_transaction({
        "to": other.address, "value": 0, "gas": 21_000, "gasPrice": net.w3.eth.gas_price, "chainId": net.l1_chain_id,
        "nonce": net.w3.eth.get_transaction_count(other.address),
    })
    net.w3.eth.wait_for_transaction_receipt(net.w3.eth.send_raw_transaction(tx.raw_transaction), timeout=30)
    l1_block = dep_block
    assert net.w3.eth.block_number > l1_block
    l1_time = int(net.w3.eth.get_block(l1_block)["timestamp"])

    voted = rpc(b, "enclavenet_status")["counters"]["voted"]

    def propose(body: bytes) -> tuple[int, str]:
        r = requests.post(f"{b}/peer/propose", data=body, timeout=60)
        out = cbor2.loads(r.content)
        return r.status_code, str(out.get("error", out))

    # H5: no messages, l1_block past the pending deposit
    status, why = propose(_proposal(net, key, consumed, l1_block, l1_time, []))
    assert status == 400 and f"leaves out L1 message {consumed} of block {dep_block}" in why, why
    # M1: the deposit consumed (whole blocks), the timestamp 2^64-1
    wire = [ev.index, ev.kind, to_checksum(ev.sender), ev.value, dep_block, bytes(ev.payload)]
    status, why = propose(_proposal(net, key, consumed + 1, l1_block, 2**64 - 1, [wire]))
    assert status == 400 and "after the L1 time" in why, why
    # the voter signed nothing, and the deposit is still pending on L1
    assert rpc(b, "enclavenet_status")["counters"]["voted"] == voted
    assert int(net.rollup.functions.msgConsumed().call()) == consumed
