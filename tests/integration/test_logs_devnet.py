"""Events the right parties can read (issue 11 item 2), on a live devnet.

A transfers the Solidity PrivateToken to B through A's own gateway. B sees the incoming Transfer
through eth_getLogs on B's gateway and through the Python client's ``get_logs``; a third party
C sees nothing for the same query; A sees it (its own receipt and the enclave's index agree, once).
A log query signed by the wrong key, a garbage envelope and a bad range are refused with a clear
message, and the node keeps serving.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from eth_account.signers.local import LocalAccount
from examples.common import artifact, send
from web3 import Web3

from enclavenet.client import wrap
from enclavenet.client.core import EnclaveNetError
from enclavenet.client.formats import build_log_query, decode_log_result
from enclavenet.crypto.envelope import open_receipt
from enclavenet.devnet import Devnet
from enclavenet.gateway import Gateway

pytestmark = pytest.mark.integration

TRANSFER = "0x" + Web3.keccak(text="Transfer(address,address,uint256)").hex().removeprefix("0x")


def _rpc(url: str, method: str, *params: Any) -> dict[str, Any]:
    r = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=60)
    out: dict[str, Any] = r.json()
    return out


def _word(a: str) -> str:
    return "0x" + "00" * 12 + a[2:].lower()


@pytest.fixture(scope="module")
def net() -> Iterator[Devnet]:
    with Devnet(n=4, batch_interval=0.05, gateway=True) as d:
        yield d


@pytest.fixture(scope="module")
def users(net: Devnet) -> list[LocalAccount]:
    return list(net.dev_accounts[:3])


@pytest.fixture(scope="module")
def gateways(net: Devnet, users: list[LocalAccount]) -> Iterator[list[Gateway]]:
    """One gateway per user (each holds only its own key and session)."""
    gws = [Gateway.start_in_thread(net.rpc_urls[i % len(net.rpc_urls)], l1_rpc=net.l1_url, accounts=[bytes(u.key)])
           for i, u in enumerate(users)]
    yield gws
    for g in gws:
        g.close()


@pytest.fixture(scope="module")
def transfer(net: Devnet, users: list[LocalAccount], gateways: list[Gateway]) -> dict[str, Any]:
    a, b, _ = users
    w3 = Web3(Web3.HTTPProvider(gateways[0].url, request_kwargs={"timeout": 60}))
    token = artifact("token_solidity", "PrivateToken").deploy(w3, "Private Token", "PRV", 1_000_000, sender=a.address)
    rc = send(w3, token.functions.transfer(b.address, 4242), a.address)
    return {"token": token.address, "height": rc["blockNumber"], "tx": rc["transactionHash"].hex()}


def _transfers(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [lg for lg in logs if lg["topics"][0].lower() == TRANSFER.lower()]


def test_receiver_sees_the_incoming_transfer_a_third_party_nothing(
    net: Devnet, users: list[LocalAccount], gateways: list[Gateway], transfer: dict[str, Any]
) -> None:
    a, b, _c = users
    h = transfer["height"]
    query = {"fromBlock": hex(max(1, h - 5)), "toBlock": "latest", "address": transfer["token"]}
    seen = {}
    for name, gw in zip("ABC", gateways, strict=True):
        res = _rpc(gw.url, "eth_getLogs", query)
        assert "result" in res, res
        seen[name] = _transfers(res["result"])
    # B: the incoming Transfer (A -> B, 4242), which B never sent
    (lg,) = [x for x in seen["B"] if x["topics"][2].lower() == _word(b.address)]
    assert lg["topics"][1].lower() == _word(a.address) and int(lg["data"], 16) == 4242
    assert int(lg["blockNumber"], 16) == h and lg["address"].lower() == transfer["token"].lower()
    # A: its own transfer, once (its receipt and the enclave's index de-duplicated), plus the mint
    a_to_b = [x for x in seen["A"] if x["topics"][2].lower() == _word(b.address)]
    assert len(a_to_b) == 1 and a_to_b[0]["transactionHash"].lower() == lg["transactionHash"].lower()
    keys = [(int(x["blockNumber"], 16), int(x["transactionIndex"], 16), int(x["logIndex"], 16)) for x in seen["A"]]
    assert keys == sorted(keys)
    # C: nothing for the same query (neither the transfer nor the mint names C)
    assert seen["C"] == []
    # a topic filter naming B as recipient: B gets it, C still nothing
    q2 = {**query, "topics": [TRANSFER, None, _word(b.address)]}
    assert len(_rpc(gateways[1].url, "eth_getLogs", q2)["result"]) == 1
    assert _rpc(gateways[2].url, "eth_getLogs", q2)["result"] == []


def test_python_client_get_logs(net: Devnet, users: list[LocalAccount], transfer: dict[str, Any]) -> None:
    _a, b, _c = users
    h = transfer["height"]
    got = {}
    for name, u in zip("ABC", users, strict=True):
        w3 = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[1], request_kwargs={"timeout": 60})), u)
        got[name] = _transfers(w3.enclavenet.get_logs(w3.manager.provider.make_request, max(1, h - 5), h,
                                                      address=transfer["token"]))
        if name == "B":  # the same through web3's eth_getLogs (the middleware signs the query)
            via_web3 = w3.eth.get_logs({"fromBlock": max(1, h - 5), "toBlock": h, "address": transfer["token"]})
            assert any(x["topics"][2].hex().removeprefix("0x") == _word(b.address)[2:] for x in via_web3)
    assert [int(x["data"], 16) for x in got["B"]] == [4242]
    assert 4242 in [int(x["data"], 16) for x in got["A"]]
    assert got["C"] == []


def test_bad_signature_garbage_and_bad_ranges_are_refused(
    net: Devnet, users: list[LocalAccount], transfer: dict[str, Any]
) -> None:
    _a, b, c = users
    url = net.rpc_urls[2]
    h = transfer["height"]
    w3 = wrap(Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60})), c)
    client = w3.enclavenet
    mk = w3.manager.provider.make_request
    # C signs a query claiming to be B: sealed answer says why, no logs
    ek = client.current_epoch_key(mk)
    pt = build_log_query(bytes(c.key), b.address, client.view_domain(mk), ek.epoch, 1, h)
    sealed = client.seal(mk, pt, None)
    res = _rpc(url, "enclavenet_getLogs", "0x" + sealed.envelope.encode().hex(), hex(1), hex(h))
    out = decode_log_result(open_receipt(sealed.receipt_key, bytes.fromhex(res["result"]["encryptedResult"][2:])))
    assert not out.ok and out.logs == [] and "not by 'from'" in out.error
    # garbage, a reversed range, a too-long range: JSON-RPC errors naming the problem
    err = _rpc(url, "enclavenet_getLogs", "0x00ff", hex(1), hex(h))["error"]
    assert err["code"] in (-32602, -32010) and "envelope" in err["message"].lower(), err
    err = _rpc(url, "enclavenet_getLogs", "0x" + sealed.envelope.encode().hex(), hex(h), hex(1))["error"]
    assert err["code"] == -32602 and "below fromBlock" in err["message"]
    err = _rpc(url, "enclavenet_getLogs", "0x" + sealed.envelope.encode().hex(), hex(1), hex(5000))["error"]
    assert err["code"] == -32602 and "smaller ranges" in err["message"]
    err = _rpc(url, "enclavenet_getLogs", "0x" + sealed.envelope.encode().hex())["error"]
    assert err["code"] == -32602 and "fromBlock" in err["message"]
    # the client raises the enclave's reason for a query the enclave refuses (a range over the bound)
    with pytest.raises(EnclaveNetError, match="smaller ranges"):
        client.get_logs(mk, 1, 5000)
    # the node keeps serving
    assert int(_rpc(url, "eth_blockNumber")["result"], 16) >= h
    assert client.get_logs(mk, max(1, h - 5), h, address=transfer["token"]) == []


def test_log_filters_push_the_incoming_transfer(
    net: Devnet, users: list[LocalAccount], gateways: list[Gateway], transfer: dict[str, Any]
) -> None:
    """eth_newFilter / eth_getFilterChanges on B's gateway: a later transfer A -> B arrives though
    B's gateway never saw the transaction; C's filter stays empty."""
    import time

    a, b, _ = users
    crit = {"address": transfer["token"], "topics": [TRANSFER]}
    deadline = time.monotonic() + 30  # both followers past the earlier transfer (a filter gets what comes after)
    while min(gateways[i].chain._emitted for i in (1, 2)) < transfer["height"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    fb = _rpc(gateways[1].url, "eth_newFilter", crit)["result"]
    fc = _rpc(gateways[2].url, "eth_newFilter", crit)["result"]
    w3 = Web3(Web3.HTTPProvider(gateways[0].url, request_kwargs={"timeout": 60}))
    token = w3.eth.contract(address=transfer["token"], abi=artifact("token_solidity", "PrivateToken").abi)
    send(w3, token.functions.transfer(b.address, 777), a.address)
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        got += _rpc(gateways[1].url, "eth_getFilterChanges", fb)["result"]
        time.sleep(0.3)
    assert [int(x["data"], 16) for x in got] == [777]
    assert got[0]["topics"][2].lower() == _word(b.address)
    time.sleep(1.5)  # C's follower has polled the same heights by now
    assert _rpc(gateways[2].url, "eth_getFilterChanges", fc)["result"] == []
    assert _rpc(gateways[1].url, "eth_getFilterChanges", fb)["result"] == []  # pushed once
