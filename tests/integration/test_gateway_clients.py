"""Unmodified Ethereum clients -- foundry ``cast``, ethers v6, viem -- through the EnclaveNet gateway.

One devnet with its gateway (ten funded, pre-authorised development accounts) per module. Each
tool runs the developer flow (chain id, balance, nonce, deploy an ERC20, transfer, wait for the
receipt and decode its Transfer log, balanceOf, estimateGas, a revert reason, the latest block,
new heads for ethers/viem) against a second gateway that reaches node 0 through a recording
proxy, and the test checks what an observer sees: neither the node's JSON-RPC bodies (both
ways) nor the L1 calldata contain the token address, the transfer selector, the recipient or
the amount word. ``cast`` also deposits on the embedded L1 directly.

The methods each tool called and how the gateway answered are written to
``$ENCLAVENET_GATEWAY_CALLS`` (a JSON file) when set; docs/GATEWAY.md lists them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account import Account
from web3 import Web3

from enclavenet.devnet import Devnet
from enclavenet.gateway import Gateway

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "examples" / "token_solidity" / "artifacts" / "PrivateToken.json"
# the platform binary npm installed (the package's node wrapper, .bin/cast, exits 0 when cast fails)
CAST = next(iter(sorted(ROOT.glob("node_modules/@foundry-rs/cast-*/bin/cast"))), ROOT / "node_modules" / ".bin" / "cast")
TRANSFER_SELECTOR = "a9059cbb"
TRANSFER_TOPIC = Web3.keccak(text="Transfer(address,address,uint256)").hex().removeprefix("0x")
CALLS: dict[str, Any] = {}


class RecordingProxy:
    """Forwards JSON-RPC POSTs to the node and keeps every body both ways: what the node sees."""

    def __init__(self, target: str, rewrite: Any = None) -> None:
        self.target = target
        self.rewrite = rewrite  # (request body, response body) -> response body: a lying node
        self.bodies: list[str] = []
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                r = requests.post(proxy.target, data=body, headers={"Content-Type": "application/json"}, timeout=60)
                content = proxy.rewrite(body, r.content) if proxy.rewrite else r.content
                with lock:
                    proxy.bodies.append(body.decode())
                    proxy.bodies.append(content.decode())
                self.send_response(r.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def text(self) -> str:
        return "\n".join(self.bodies).lower()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def net() -> Iterator[Devnet]:
    if not CAST.exists() or shutil.which("node") is None:
        pytest.fail("the real clients are missing: run `make install` (npm installs cast, ethers and viem)")
    with Devnet(n=4, batch_interval=0.05, gateway=True) as d:
        yield d
    out = os.environ.get("ENCLAVENET_GATEWAY_CALLS")
    if out:
        Path(out).write_text(json.dumps(CALLS, indent=1))


@pytest.fixture(scope="module")
def proxy(net: Devnet) -> Iterator[RecordingProxy]:
    p = RecordingProxy(net.rpc_urls[0])
    yield p
    p.close()


@pytest.fixture(scope="module")
def gw(net: Devnet, proxy: RecordingProxy) -> Iterator[Gateway]:
    keys = [bytes(a.key) for a in net.dev_accounts]
    g = Gateway.start_in_thread(proxy.url, l1_rpc=net.l1_url, accounts=keys)
    yield g
    g.close()


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HOME"] = str(tmp_path)  # cast and npm write under $HOME
    return env


def _rpc(url: str, method: str, *params: Any) -> Any:
    r = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=60).json()
    assert "error" not in r, r
    return r["result"]


def _record(gw: Gateway, tool: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = _rpc(gw.url, "enclavenet_gatewayCalls", True)
    CALLS[tool] = calls
    unknown = [c["method"] for c in calls if c["answer"] == "error -32601"]
    assert not unknown, f"{tool} called methods the gateway does not serve: {unknown}"
    return calls


def _check_confidential(net: Devnet, proxy: RecordingProxy, l1_start: int, token: str, recipient: str,
                        amount: int) -> None:
    """Neither the node nor the L1 saw the token, the selector, the recipient or the amount."""
    assert net.w3 is not None
    needles = {
        "token address": token[2:].lower(),
        "transfer selector": TRANSFER_SELECTOR,
        "recipient": recipient[2:].lower(),
        "amount word": amount.to_bytes(32, "big").hex(),
    }
    node_text = proxy.text()
    assert "eth_sendrawtransaction" in node_text and "enclavenet_call" in node_text
    l1_inputs = []
    for n in range(l1_start + 1, net.w3.eth.block_number + 1):
        for tx in net.w3.eth.get_block(n, full_transactions=True)["transactions"]:
            l1_inputs.append(bytes(tx["input"]).hex())
    assert l1_inputs, "no header reached L1 during the flow"
    l1_text = " ".join(l1_inputs)
    for where, text in (("node JSON-RPC bodies", node_text), ("L1 calldata", l1_text)):
        for what, needle in needles.items():
            assert needle not in text, f"the {what} appears in the {where}"


def _run_node_script(script: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    try:
        r = subprocess.run(["node", str(ROOT / "tests" / "js" / script), *args], capture_output=True, text=True,
                           env=env, timeout=120, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{script} timed out after its steps:\n{exc.stderr.decode() if exc.stderr else ''}")
    assert r.returncode == 0, f"{script} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    out: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def _check_flow(out: dict[str, Any], sender: str, recipient: str, amount: int, deposit: int) -> None:
    assert out["chainId"] == 1337
    assert int(out["balance"]) >= deposit  # the devnet's deposit, read by a signed view
    assert out["txHash"] == out["receiptHash"]  # the tool's own Ethereum hash finds the receipt
    assert out["transferLog"] == [{"from": sender, "to": recipient, "value": str(amount)}]
    assert int(out["balanceOf"]) == 1_000_000 - amount  # PrivateToken.balanceOf: only msg.sender's own
    assert 21_000 < int(out["estimate"]) < 100_000
    assert "balance too low" in out["revert"]
    assert out["latestBlock"]["number"] >= out["blockNumber"] >= 1
    assert str(amount) in out["events"]


@pytest.mark.parametrize("tool", ["ethers", "viem"])
def test_js_client_developer_flow(tool: str, net: Devnet, gw: Gateway, proxy: RecordingProxy,
                                  home: dict[str, str]) -> None:
    assert net.w3 is not None
    who = net.dev_accounts[1 if tool == "ethers" else 2]
    recipient = Account.create().address  # never sends: must appear nowhere
    amount = 0x0A5A51 + (tool == "viem")  # < the 10**6 supply; its ABI word is searched for
    _rpc(gw.url, "enclavenet_gatewayCalls", True)
    proxy.bodies.clear()
    l1_start = net.w3.eth.block_number
    out = _run_node_script(f"gateway_{tool}.mjs", home, gw.url, str(ARTIFACT), "0x" + bytes(who.key).hex(),
                           recipient, str(amount))
    _check_flow(out, who.address, recipient, amount, net.dev_deposit)
    assert out["heads"] and out["heads"][0] >= out["blockNumber"]
    assert out.get("lastStatus", 1) == 1  # ethers waits for the transfer that made the head
    calls = _record(gw, tool)
    assert {"eth_sendRawTransaction", "eth_getTransactionReceipt", "eth_call", "eth_estimateGas"} <= {
        c["method"] for c in calls if c["answer"] == "ok"}
    assert any(c["method"] == "eth_subscribe" and c["answer"] == "ok" for c in calls)
    _check_confidential(net, proxy, l1_start, out["token"], recipient, amount)


def _cast(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(CAST), *args], capture_output=True, text=True, env=env, timeout=120)
    if ok:
        assert r.returncode == 0, f"cast {' '.join(args[:2])} failed: {r.stderr[-2000:]}"
    return r


def test_cast_developer_flow(net: Devnet, gw: Gateway, proxy: RecordingProxy, home: dict[str, str]) -> None:
    assert net.w3 is not None
    who = net.dev_accounts[3]
    key = "0x" + bytes(who.key).hex()
    recipient = Account.create().address
    amount = 0x0A5A57
    art = json.loads(ARTIFACT.read_text())
    _rpc(gw.url, "enclavenet_gatewayCalls", True)
    proxy.bodies.clear()
    l1_start = net.w3.eth.block_number
    url = ["--rpc-url", gw.url]

    assert _cast(home, "chain-id", *url).stdout.strip() == "1337"
    assert int(_cast(home, "balance", who.address, *url).stdout) == net.dev_deposit
    assert int(_cast(home, "nonce", who.address, *url).stdout) == 0
    deploy = json.loads(_cast(home, "send", *url, "--private-key", key, "--json", "--create", art["bytecode"],
                              "constructor(string,string,uint256)", "Cast", "CAST", "1000000").stdout)
    assert deploy["status"] == "0x1"
    token = deploy["contractAddress"]
    assert int(_cast(home, "code", token, *url).stdout.strip(), 16) != 0
    rc = json.loads(_cast(home, "send", *url, "--private-key", key, "--json", token, "transfer(address,uint256)",
                          recipient, str(amount)).stdout)
    assert rc["status"] == "0x1" and len(rc["logs"]) == 1
    # the receipt again by the hash cast computed, and its Transfer log decoded with cast itself
    again = json.loads(_cast(home, "receipt", *url, "--json", rc["transactionHash"]).stdout)
    (lg,) = again["logs"]
    assert lg["topics"][0].removeprefix("0x") == TRANSFER_TOPIC
    assert _cast(home, "parse-bytes32-address", lg["topics"][1]).stdout.strip() == who.address
    assert _cast(home, "parse-bytes32-address", lg["topics"][2]).stdout.strip() == recipient
    assert _cast(home, "decode-abi", "--input", "f(uint256)", lg["data"]).stdout.split()[0] == str(amount)
    assert int(_cast(home, "nonce", who.address, *url).stdout) == 2
    bal = _cast(home, "call", *url, "--from", who.address, token, "balanceOf(address)(uint256)", who.address)
    assert bal.stdout.split()[0] == str(1_000_000 - amount)
    # a balance that is not the caller's own is refused by the contract, with its reason
    other = _cast(home, "call", *url, "--from", net.dev_accounts[4].address, token, "balanceOf(address)(uint256)",
                  who.address, ok=False)
    assert other.returncode != 0 and "balance is private" in other.stderr
    assert 21_000 < int(_cast(home, "estimate", *url, "--from", who.address, token, "transfer(address,uint256)",
                              recipient, "1").stdout) < 100_000
    rev = _cast(home, "send", *url, "--private-key", key, token, "transfer(address,uint256)", recipient,
                str(10**30), ok=False)
    assert rev.returncode != 0 and "execution reverted: balance too low" in rev.stderr
    blk = json.loads(_cast(home, "block", "latest", "--json", *url).stdout)
    assert int(blk["number"], 16) >= int(rc["blockNumber"], 16) and len(blk["logsBloom"]) == 2 + 512
    calls = _record(gw, "cast")
    assert {c["method"] for c in calls} >= {"eth_feeHistory", "eth_sendRawTransaction", "eth_getTransactionReceipt"}
    _check_confidential(net, proxy, l1_start, token, recipient, amount)


def test_cast_on_the_embedded_l1_deposits_into_enclavenet(net: Devnet, home: dict[str, str]) -> None:
    """The devnet's L1 speaks standard JSON-RPC to cast (estimateGas with cast's fields, receipts
    with logsBloom, feeHistory): a deposit sent with cast is credited inside EnclaveNet."""
    who = net.dev_accounts[5]
    key = "0x" + bytes(who.key).hex()
    l1 = ["--rpc-url", net.l1_url]
    rollup = net.deployment.rollup.address
    assert _cast(home, "chain-id", *l1).stdout.strip() == str(net.l1_chain_id)
    fees = json.loads(_cast(home, "rpc", *l1, "eth_feeHistory", "2", "latest", "[50]").stdout)
    assert len(fees["baseFeePerGas"]) == 3 and len(fees["reward"]) == 2
    rc = json.loads(_cast(home, "send", *l1, "--private-key", key, "--json", "--value", "0.5ether", rollup,
                          "deposit()").stdout)
    assert rc["status"] == "0x1" and len(rc["logsBloom"]) == 2 + 512 and rc["logs"]
    assert int(_cast(home, "call", *l1, rollup, "lastHeight()(uint256)").stdout.split()[0]) >= 1
    want = net.dev_deposit + 5 * 10**17
    deadline = time.monotonic() + 60
    while int(_cast(home, "balance", who.address, "--rpc-url", net.gateway_url).stdout) != want:
        assert time.monotonic() < deadline, "the cast deposit was not credited inside EnclaveNet"
        time.sleep(0.5)


def test_a_node_lying_about_the_epoch_key_is_caught_on_l1(net: Devnet, gw: Gateway) -> None:
    """The gateway seals to the epoch key only once the Rollup on L1 holds the same key: a node
    handing out its own key (to read what users seal) gets nothing sealed to it."""

    def lie(request: bytes, response: bytes) -> bytes:
        if b"enclavenet_epochKey" not in request:
            return response
        out = json.loads(response)
        out["result"]["epochKey"] = "0x" + "42" * 32  # the node operator's own X25519 key
        return json.dumps(out).encode()

    liar = RecordingProxy(net.rpc_urls[1], rewrite=lie)
    g = Gateway.start_in_thread(liar.url, l1_rpc=net.l1_url)
    try:
        user = Account.create()
        raw = user.sign_transaction({"chainId": 1337, "nonce": 0, "to": Account.create().address, "value": 0,
                                     "gas": 21_000, "maxFeePerGas": 0, "maxPriorityFeePerGas": 0}).raw_transaction
        r = requests.post(g.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
                                       "params": ["0x" + raw.hex()]}, timeout=60).json()
        assert "refusing to seal" in r.get("error", {}).get("message", ""), f"sealed to a key the node made up: {r}"
        assert "eth_sendrawtransaction" not in liar.text()  # nothing was sent to the lying node
    finally:
        g.close()
        liar.close()
    # the honest node's key is the Rollup's: the gateway checked it before sealing
    assert int(_rpc(gw.url, "eth_getBalance", net.dev_accounts[0].address, "latest"), 16) > 0  # seals a view
    assert _rpc(gw.url, "enclavenet_gatewayInfo")["epochKeyCheckedOnL1"] is True
