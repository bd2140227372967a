"""The gateway's own parts without a committee: viewing sessions signed as a wallet signs them,
who may reach it (no web page, no DNS rebinding), refusals that say why, and the code probe on a
real EVM. The whole gateway against a devnet and real clients: tests/integration/test_gateway_clients.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from eth_account import Account
from eth_account.messages import encode_typed_data

from enclavenet.chain.embedded import EmbeddedL1
from enclavenet.chain.l1server import L1Server
from enclavenet.enclave.views import ViewDomain
from enclavenet.gateway import Gateway
from enclavenet.gateway.core import code_probe
from enclavenet.gateway.sessions import SessionError, SessionStore
from enclavenet.node.jsonrpc import RpcError

CHAIN = 1337
DOMAIN = ViewDomain(CHAIN, 31337, "0x" + "5e" * 20)


class Running:
    """A gateway's HTTP app on a free port, on its own loop (no node behind it: only what needs none)."""

    def __init__(self) -> None:
        self.gw = Gateway("http://127.0.0.1:9")  # nothing listens there
        self.gw.core.chain_id = CHAIN
        self.gw.core.domain = DOMAIN
        self.gw.core.sessions.domain = DOMAIN
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(self.gw.app(), access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.gw.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = self.gw.url

    def post(self, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        async def go() -> tuple[int, Any, dict[str, str]]:
            async with aiohttp.ClientSession() as s, s.post(self.url, json=body, headers=headers or {}) as r:
                return r.status, await r.json(content_type=None), dict(r.headers)

        return self.loop.run_until_complete(go())

    def call(self, method: str, *params: Any) -> Any:
        _, out, _ = self.post({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        return out

    def ws_status(self, headers: dict[str, str]) -> int:
        async def go() -> int:
            async with aiohttp.ClientSession() as s:
                try:
                    async with s.ws_connect(self.gw.ws_url, headers=headers) as ws:
                        await ws.close()
                        return 101
                except aiohttp.WSServerHandshakeError as exc:
                    return exc.status

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()


@pytest.fixture
def running() -> Iterator[Running]:
    r = Running()
    yield r
    r.close()


def test_viewing_session_authorised_by_a_wallet_signature(running: Running) -> None:
    alice, mallory = Account.create(), Account.create()
    req = running.call("enclavenet_requestSession", alice.address)["result"]
    assert req["account"] == alice.address and req["typedData"]["primaryType"] == "ViewingSession"
    # mallory signs alice's statement: refused, and nothing is stored
    bad = Account.sign_message(encode_typed_data(full_message=req["typedData"]), mallory.key).signature
    out = running.call("enclavenet_authorise", {"account": alice.address, "sessionKey": req["sessionKey"],
                                                "signature": "0x" + bad.hex()})
    assert out["error"]["code"] == -32602 and f"signed by {mallory.address}, not by {alice.address}" in out["error"]["message"]
    assert running.call("eth_accounts")["result"] == []
    # alice's wallet signs the typed data exactly as returned (eth_signTypedData_v4)
    sig = Account.sign_message(encode_typed_data(full_message=req["typedData"]), alice.key).signature
    ok = running.call("enclavenet_authorise", {"account": alice.address, "sessionKey": req["sessionKey"],
                                               "signature": "0x" + sig.hex()})["result"]
    assert ok["account"] == alice.address and ok["expiry"] == req["expiry"]
    assert running.call("eth_accounts")["result"] == [alice.address]
    # a session key nobody requested
    out = running.call("enclavenet_authorise", {"account": alice.address, "sessionKey": mallory.address,
                                                "signature": "0x" + sig.hex()})
    assert "no pending session key" in out["error"]["message"]


def test_session_store_refusals() -> None:
    now = [1_800_000_000.0]
    store = SessionStore(DOMAIN, clock=lambda: now[0])
    with pytest.raises(SessionError, match="ttl"):
        store.request(Account.create().address, ttl=10)
    with pytest.raises(SessionError, match="20-byte"):
        store.request("0x1234")
    alice = Account.create()
    req = store.request(alice.address, ttl=120)
    sig = Account.sign_message(encode_typed_data(full_message=req["typedData"]), alice.key).signature
    now[0] += 121  # signed too late
    with pytest.raises(SessionError, match="expired"):
        store.authorise(alice.address, req["sessionKey"], bytes(sig))
    s = store.authorise_with_key(bytes(alice.key), ttl=60)
    assert store.get(alice.address) is s and store.accounts() == [alice.address]
    now[0] += 60
    assert store.get(alice.address) is None and store.accounts() == []


def test_a_web_page_cannot_read_through_the_gateway(running: Running) -> None:
    """A page on another origin (or on a rebinding domain resolving to 127.0.0.1) would read the
    user's confidential data with the sessions the gateway holds: refused, over HTTP and WebSocket."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_accounts", "params": []}
    status, out, _ = running.post(body, {"Origin": "https://evil.example"})
    assert status == 403 and "cross-origin request from 'https://evil.example' refused" in out["error"]["message"]
    status, out, _ = running.post(body, {"Host": "evil.example"})
    assert status == 403 and "Host 'evil.example' refused" in out["error"]["message"]
    assert running.ws_status({"Origin": "https://evil.example"}) == 403
    # the gateway's own page, a wallet extension and command-line tools (no Origin) are served
    status, out, headers = running.post(body, {"Origin": running.url})
    assert status == 200 and out["result"] == [] and headers["Access-Control-Allow-Origin"] == running.url
    status, _, _ = running.post(body, {"Origin": "chrome-extension://nkbihfbeogaeaoehlefnkodbefgpgknn"})
    assert status == 200
    assert running.post(body)[0] == 200
    assert running.ws_status({}) == 101


def test_methods_that_cannot_be_answered_say_why(running: Running) -> None:
    out = running.call("eth_getStorageAt", "0x" + "11" * 20, "0x0", "latest")["error"]
    assert out["code"] == -32004 and "contract storage is confidential" in out["message"] and "eth_call" in out["message"]
    out = running.call("eth_subscribe", "newHeads")["error"]
    assert out["code"] == -32004 and "WebSocket" in out["message"]
    out = running.call("eth_fillTransaction", {})["error"]
    assert out["code"] == -32004  # viem then fills the transaction itself
    out = running.call("eth_noSuchMethod")["error"]
    assert out["code"] == -32601 and "docs/GATEWAY.md" in out["message"]
    # a read as an account with no session: what to do, not a bare failure
    out = running.call("eth_call", {"from": Account.create().address, "to": "0x" + "11" * 20, "data": "0x"})
    assert out["error"]["code"] == -32000 and "need a viewing session" in out["error"]["message"]
    assert "/authorise" in out["error"]["message"] and "--account" in out["error"]["message"]
    calls = running.call("enclavenet_gatewayCalls")["result"]
    assert {"method": "eth_getStorageAt", "answer": "error -32004", "count": 1} in calls
    # a batch (ethers sends one when calls come within 10 ms) is counted and answered call by call
    _, out, _ = running.post([{"jsonrpc": "2.0", "id": 7, "method": "eth_chainId", "params": []},
                              {"jsonrpc": "2.0", "id": 8, "method": "eth_noSuchMethod", "params": []}])
    assert [r["id"] for r in out] == [7, 8] and "result" in out[0]
    assert out[1]["error"]["code"] == -32601 and "docs/GATEWAY.md" in out[1]["error"]["message"]
    calls = running.call("enclavenet_gatewayCalls")["result"]
    assert {"method": "eth_chainId", "answer": "ok", "count": 1} in calls
    assert {"method": "eth_noSuchMethod", "answer": "error -32601", "count": 2} in calls


def test_code_probe_reverts_with_the_code_on_a_real_evm() -> None:
    l1 = EmbeddedL1()
    # a contract whose runtime is 0x602a60005260206000f3 (returns 42)
    init = bytes.fromhex("600a600c600039600a6000f3602a60005260206000f3")
    acct = l1.accounts[0]
    tx = {"data": init, "gas": 200_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 1, "nonce": 0,
          "chainId": l1.chain_id, "value": 0}
    h = l1.w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
    address = l1.w3.eth.get_transaction_receipt(h)["contractAddress"]
    srv = L1Server(l1)
    with pytest.raises(RpcError) as e:
        srv._call("eth_call", [{"data": "0x" + code_probe(address).hex()}, "latest"])
    # eth-tester reports the revert data as the bytes' repr: it is the runtime code
    assert e.value.code == 3 and e.value.message == f"execution reverted: {bytes.fromhex('602a60005260206000f3')!r}"


def test_a_wallet_authorised_session_authenticates_the_routing_hints_the_gateway_seals(running: Running) -> None:
    """A wallet gives the gateway signed raw transactions, never a key: the hint of each is signed by
    the account's viewing-session key, whose statement (the wallet's EIP-712 signature) travels in
    the envelope (kind 1); a node verifies both (node/hintauth.py). No session: a clear refusal."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from enclavenet.crypto.envelope import HINT_AUTH_DELEGATE, Envelope, RoutingHint, seal
    from enclavenet.crypto.hashing import address_bytes
    from enclavenet.node.hintauth import HintVerifier

    alice, bob = Account.create(), Account.create()
    req = running.call("enclavenet_requestSession", alice.address)["result"]
    sig = Account.sign_message(encode_typed_data(full_message=req["typedData"]), alice.key).signature
    assert "result" in running.call("enclavenet_authorise", {"account": alice.address, "sessionKey": req["sessionKey"],
                                                             "signature": "0x" + sig.hex()})
    hint = RoutingHint(address_bytes(alice.address), 0)
    signer = running.gw.core.hint_signer(hint)
    assert signer is not None and signer.prefix[0] == HINT_AUTH_DELEGATE
    pub = X25519PrivateKey.generate().public_key().public_bytes_raw()
    raw = seal(b"alice's raw tx", pub, CHAIN, 0, hint, signer=signer).envelope.encode()
    assert Envelope.decode(raw).hint == hint
    assert HintVerifier(CHAIN, DOMAIN).check(raw) == address_bytes(alice.address)
    with pytest.raises(RpcError, match="need a viewing session"):
        running.gw.core.hint_signer(RoutingHint(address_bytes(bob.address), 0))
