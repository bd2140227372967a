"""Bad input at a real node: every malformed request gets a JSON-RPC error that says what was
wrong, and the node keeps serving (bounded fuzz: a few thousand requests, a few seconds).

One single-member devnet (quorum 1) is enough: the JSON-RPC front, the mempool and the
enclave's view path are the same code as in a committee.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account
from web3 import Web3

from enclavenet.client import check_receipt, wrap
from enclavenet.crypto.envelope import HintSigner, RoutingHint, seal
from enclavenet.crypto.hashing import address_bytes
from enclavenet.crypto.secp256k1 import SigningKey
from enclavenet.devnet import Devnet

pytestmark = pytest.mark.integration

METHODS = [
    "eth_chainId", "net_version", "eth_blockNumber", "eth_gasPrice", "eth_sendRawTransaction",
    "eth_getTransactionReceipt", "enclavenet_call", "enclavenet_estimateGas", "enclavenet_epochKey",
    "enclavenet_status", "enclavenet_contracts", "enclavenet_getHeader", "enclavenet_txStatus",
]


@pytest.fixture(scope="module")
def net() -> Iterator[Devnet]:
    with Devnet(n=1, tee_types=["sgx"], batch_interval=0.05) as d:
        yield d


def post(url: str, body: bytes | str, **kw: Any) -> requests.Response:
    data = body.encode() if isinstance(body, str) else body
    return requests.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=30, **kw)


def call(url: str, method: str, *params: Any) -> dict[str, Any]:
    out: dict[str, Any] = requests.post(
        url, json={"jsonrpc": "2.0", "id": 7, "method": method, "params": list(params)}, timeout=30
    ).json()
    return out


def err(out: dict[str, Any]) -> tuple[int, str]:
    assert "error" in out, f"expected an error, got {out}"
    return out["error"]["code"], out["error"]["message"]


def current_epoch(url: str) -> tuple[int, bytes]:
    k = call(url, "enclavenet_epochKey")["result"]
    return int(k["epoch"], 16), bytes.fromhex(k["epochKey"][2:])


def test_each_kind_of_bad_input_gets_a_clear_error(net: Devnet) -> None:
    url = net.rpc_urls[0]
    assert err(json.loads(post(url, "{not json").text)) [0] == -32700
    assert "not valid JSON" in err(json.loads(post(url, b"\xff\xfe\x00").text))[1]
    assert err(json.loads(post(url, "[]").text)) == (-32600, "invalid request: empty batch")
    assert "jsonrpc" in err(json.loads(post(url, '{"id":1,"method":"eth_chainId"}').text))[1]
    assert err(call(url, "eth_nope")) == (-32601, "unknown method 'eth_nope'")
    assert "params must be an array" in err(json.loads(post(url, '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":5}').text))[1]
    code, msg = err(call(url, "eth_sendRawTransaction"))
    assert code == -32602 and "expected params" in msg
    code, msg = err(call(url, "eth_sendRawTransaction", "zz"))
    assert code == -32602 and "0x-prefixed" in msg
    code, msg = err(call(url, "eth_sendRawTransaction", "0xabc"))
    assert code == -32602 and "not valid hex" in msg
    code, msg = err(call(url, "eth_sendRawTransaction", "0x" + "00" * 40))
    assert code == -32602 and "malformed envelope" in msg
    code, msg = err(call(url, "eth_sendRawTransaction", "0x" + "ab" * 200_000))
    assert code == -32602 and "too large" in msg
    epoch, pub = current_epoch(url)
    no_hint = seal(b"tx", pub, net.chain_id, epoch).envelope.encode()
    code, msg = err(call(url, "eth_sendRawTransaction", "0x" + no_hint.hex()))
    assert "routing hint" in msg
    unsigned = seal(b"tx", pub, net.chain_id, epoch, RoutingHint(os.urandom(20), 0)).envelope.encode()
    code, msg = err(call(url, "eth_sendRawTransaction", "0x" + unsigned.hex()))
    assert code == -32007 and "routing hint not authenticated" in msg
    key = SigningKey.generate()
    hint, signer = RoutingHint(address_bytes(key.address), 0), HintSigner(key.secret)
    wrong_epoch = seal(b"tx", pub, net.chain_id, epoch + 5, hint, signer=signer).envelope.encode()
    code, msg = err(call(url, "eth_sendRawTransaction", "0x" + wrong_epoch.hex()))
    assert code == -32003 and f"epoch {epoch + 5}" in msg
    # a well-formed envelope the node accepts once; the replay is refused
    env = seal(b"garbage inside", pub, net.chain_id, epoch, hint, signer=signer).envelope.encode()
    rid = call(url, "eth_sendRawTransaction", "0x" + env.hex())["result"]
    code, msg = err(call(url, "eth_sendRawTransaction", "0x" + env.hex()))
    assert code == -32002 and "duplicate" in msg
    # ... and its (error) receipt arrives: the enclave could not decode the signed tx inside
    deadline = time.monotonic() + 30
    while (r := call(url, "eth_getTransactionReceipt", rid)["result"]) is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert r["receiptId"] == rid and r["encryptedReceipt"].startswith("0x")
    code, msg = err(call(url, "eth_sendRawTransaction", "0x" + env.hex()))
    assert code == -32002 and "already included" in msg
    # a view request sealed to a key nobody holds does not decrypt: refused
    stranger = X25519PrivateKey.generate().public_key().public_bytes_raw()
    view = seal(b"x", stranger, net.chain_id, epoch).envelope.encode()
    code, msg = err(call(url, "enclavenet_call", "0x" + view.hex()))
    assert code == -32010 and "does not decrypt" in msg
    code, msg = err(call(url, "eth_getTransactionReceipt", "0x1234"))
    assert code == -32602 and "32 bytes" in msg
    # oversized body: refused before parsing
    r = post(url, b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":["' + b"a" * (9 * 1024 * 1024) + b'"]}')
    assert r.status_code == 413 and "too large" in r.json()["error"]["message"]
    # peer links refuse garbage too
    r = requests.post(url + "/peer/propose", data=b"\x00garbage", timeout=10)
    assert r.status_code == 400
    r = requests.post(url + "/peer/nope", data=b"\xa0", timeout=10)
    assert r.status_code == 400


def _junk(rng: random.Random, pub: bytes, epoch: int, chain_id: int) -> Any:
    kind = rng.randrange(12)
    method = rng.choice([*METHODS, "eth_nope", "", "x" * 300])
    if kind == 0:
        return rng.choice([None, 1, "s", [], [1, 2], True, {"a": 1}])
    if kind == 1:
        return {"jsonrpc": rng.choice(["1.0", 2, None]), "id": 1, "method": method}
    if kind == 2:
        return {"jsonrpc": "2.0", "id": rng.choice([[1], {"a": 1}, True]), "method": method}
    if kind == 3:
        return {"jsonrpc": "2.0", "id": 1, "method": rng.choice([1, None, [], {}])}
    if kind == 4:
        return {"jsonrpc": "2.0", "id": 1, "method": method, "params": rng.choice([{"a": 1}, "x", 3])}
    if kind == 5:
        n = rng.randrange(0, 6)
        return {"jsonrpc": "2.0", "id": 1, "method": method,
                "params": [rng.choice([None, -1, 2**300, "0x", "0xzz", "0x" + os.urandom(rng.randrange(1, 64)).hex(),
                                       [], {}, 1.5, "latest"]) for _ in range(n)]}
    if kind in (6, 7):
        raw = bytearray(seal(os.urandom(rng.randrange(1, 300)), pub, chain_id, epoch,
                             RoutingHint(os.urandom(20), rng.randrange(2**16))).envelope.encode())
        for _ in range(rng.randrange(0, 4)):
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        if rng.random() < 0.3:
            raw = raw[: rng.randrange(len(raw))]
        return {"jsonrpc": "2.0", "id": 1, "method": rng.choice(["eth_sendRawTransaction", "enclavenet_call",
                                                                  "enclavenet_estimateGas"]),
                "params": ["0x" + bytes(raw).hex()]}
    if kind == 8:
        return {"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionReceipt", "params": ["0x" + os.urandom(32).hex()]}
    if kind == 9:
        return {"jsonrpc": "2.0", "id": 1, "method": "enclavenet_getHeader", "params": [rng.choice(["0x0", "0xffff", "-1", -5, "zz"])]}
    if kind == 10:
        return {"jsonrpc": "2.0", "method": method}  # a notification: no answer
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": []}


def test_fuzz_thousands_of_malformed_requests_and_the_node_keeps_serving(net: Devnet) -> None:
    url = net.rpc_urls[0]
    epoch, pub = current_epoch(url)
    rng = random.Random(4242)
    t0 = time.monotonic()
    answered = 0
    for _ in range(30):  # 30 batches x 100 = 3000 requests
        batch = [_junk(rng, pub, epoch, net.chain_id) for _ in range(100)]
        r = post(url, json.dumps(batch))
        assert r.status_code in (200, 204)
        if r.status_code == 200:
            out = r.json()
            assert isinstance(out, list)
            for item in out:
                assert "result" in item or ("message" in item["error"] and item["error"]["message"])
                assert "Traceback" not in json.dumps(item)
            answered += len(out)
    for _ in range(300):  # raw bodies one by one
        body = rng.choice([os.urandom(rng.randrange(1, 200)), b"[" * 5000, b'{"a":' * 3000, b"null", b"0", b'"x"'])
        r = post(url, body)
        assert r.status_code in (200, 204, 413)
        if r.status_code == 200:
            out = r.json()
            assert "error" in out or isinstance(out, list)
    assert time.monotonic() - t0 < 120
    assert answered > 2000
    assert "Traceback" not in net.logs(0, tail=100_000), "a handler crashed on bad input"
    # the node still serves, and still executes a real transaction
    assert call(url, "eth_chainId")["result"] == hex(net.chain_id)
    st = call(url, "enclavenet_status")["result"]
    assert st["epoch"] == epoch
    user = Account.create()
    w3 = wrap(Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60})), user)
    to = Account.create().address
    rc = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": user.address, "to": to, "value": 0, "gas": 50_000}), timeout=60)
    check_receipt(rc)


def test_costly_peer_ops_are_served_to_committee_members_only(net: Devnet) -> None:
    """Issue 14 M4: anyone could ask a node for a sealed snapshot (an enclave ecall on the one
    ecall thread the votes use), stored batches, an epoch bundle or push. Now the request must be
    signed by an active member's enclave (crypto/peer.py), for this node, unexpired."""
    import cbor2

    from enclavenet.crypto.hashing import keccak256
    from enclavenet.crypto.peer import peer_request_digest
    from enclavenet.crypto.secp256k1 import SigningKey
    from enclavenet.node.peers import PEER_AUTH_HEADER

    url = net.rpc_urls[0]
    node = call(url, "enclavenet_status")["result"]
    member = node["address"]
    body = cbor2.dumps({})
    for op in ("snapshot", "batch", "epoch_push", "announce", "epoch_bundle"):
        r = requests.post(f"{url}/peer/{op}", data=body, timeout=10)
        assert r.status_code == 400 and "committee members only" in cbor2.loads(r.content)["error"], op
    # a stranger's key, correctly formed: not a member on L1
    stranger = SigningKey.generate()
    exp = int(time.time()) + 30
    d = peer_request_digest(net.l1_chain_id, net.rollup.address, member, "snapshot", keccak256(body), exp)
    hdr = {PEER_AUTH_HEADER: f"{stranger.address}:{exp}:{stranger.sign(d).hex()}"}
    r = requests.post(f"{url}/peer/snapshot", data=body, headers=hdr, timeout=10)
    assert r.status_code == 400 and "not active on L1" in cbor2.loads(r.content)["error"]
    # claiming to be the member with the stranger's signature, or an expired request
    hdr = {PEER_AUTH_HEADER: f"{member}:{exp}:{stranger.sign(d).hex()}"}
    r = requests.post(f"{url}/peer/snapshot", data=body, headers=hdr, timeout=10)
    assert r.status_code == 400 and "not by" in cbor2.loads(r.content)["error"]
    hdr = {PEER_AUTH_HEADER: f"{member}:{int(time.time()) - 5}:{stranger.sign(d).hex()}"}
    r = requests.post(f"{url}/peer/snapshot", data=body, headers=hdr, timeout=10)
    assert r.status_code == 400 and "expired" in cbor2.loads(r.content)["error"]
    r = requests.post(f"{url}/peer/snapshot", data=body, headers={PEER_AUTH_HEADER: "junk"}, timeout=10)
    assert r.status_code == 400 and "malformed" in cbor2.loads(r.content)["error"]
    # identity stays open (discovery)
    r = requests.post(f"{url}/peer/identity", data=body, timeout=10)
    assert r.status_code == 200 and cbor2.loads(r.content)["address"] == member
