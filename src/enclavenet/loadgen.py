"""Load generation against a devnet: confidential ERC20 transfers through the JSON-RPC fast path.

Shared by ``benchmarks/throughput.py`` and the demo. Envelopes are signed and sealed up front
(outside any timed region) and sent with batched JSON-RPC; a transaction's latency runs from its
acknowledgement (receipt id returned) until the L1 block that accepted its header is seen.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import requests
from eth_account import Account

from .client.formats import sign_transaction
from .crypto.envelope import RoutingHint, seal
from .crypto.hashing import address_bytes, keccak256
from .devnet import Devnet

TOKEN_SRC = """
balanceOf: public(HashMap[address, uint256])
@deploy
def __init__(supply: uint256):
    self.balanceOf[msg.sender] = supply
@external
def transfer(to: address, amount: uint256) -> bool:
    assert self.balanceOf[msg.sender] >= amount, "balance too low"
    self.balanceOf[msg.sender] -= amount
    self.balanceOf[to] += amount
    return True
"""
TRANSFER = keccak256(b"transfer(address,uint256)")[:4]
RPC_CHUNK = 500


def rpc_batch(url: str, calls: list[tuple[str, list[Any]]], timeout: float = 120) -> list[Any]:
    body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
    out = requests.post(url, json=body, timeout=timeout).json()
    out = sorted(out, key=lambda r: r["id"])
    return out


def rpc(url: str, method: str, *params: Any) -> Any:
    out = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=60).json()
    if "error" in out:
        raise RuntimeError(f"{method}: {out['error']['message']}")
    return out["result"]


class Chain:
    """The pieces of a devnet the benchmark needs."""

    def __init__(self, net: Devnet) -> None:
        self.net = net
        k = rpc(net.rpc_urls[0], "enclavenet_epochKey")
        self.epoch = int(k["epoch"], 16)
        self.epoch_pub = bytes.fromhex(k["epochKey"][2:])
        self.chain_id = net.chain_id

    def envelope(self, key: bytes, sender: str, nonce: int, to: str | None, data: bytes, gas: int = 200_000) -> bytes:
        raw = sign_transaction(key, self.chain_id, nonce, to, data, 0, gas)
        return seal(raw, self.epoch_pub, self.chain_id, self.epoch, RoutingHint(address_bytes(sender), nonce)).envelope.encode()

    def send_all(self, envs: list[bytes], *, spread: bool = True) -> tuple[list[bytes], list[float]]:
        """Send envelopes in JSON-RPC batches; return receipt ids and acknowledgement times."""
        urls = self.net.rpc_urls
        rids: list[bytes] = []
        acks: list[float] = []
        for i in range(0, len(envs), RPC_CHUNK):
            chunk = envs[i : i + RPC_CHUNK]
            url = urls[(i // RPC_CHUNK) % len(urls)] if spread else urls[0]
            out = rpc_batch(url, [("eth_sendRawTransaction", ["0x" + e.hex()]) for e in chunk])
            t = time.monotonic()
            for e, r in zip(chunk, out, strict=True):
                if "error" in r:
                    raise RuntimeError(f"node refused a transaction: {r['error']['message']}")
                rids.append(keccak256(e))
                acks.append(t)
        return rids, acks

    def receipts(self, rids: list[bytes], url: str | None = None) -> list[dict[str, Any] | None]:
        url = url or self.net.rpc_urls[0]
        out: list[dict[str, Any] | None] = []
        for i in range(0, len(rids), 2000):
            res = rpc_batch(url, [("eth_getTransactionReceipt", ["0x" + r.hex()]) for r in rids[i : i + 2000]])
            out += [r.get("result") for r in res]
        return out


def wait_all(chain: Chain, rids: list[bytes], timeout: float) -> dict[int, float]:
    """Watch L1 until every transaction's header is accepted; return {height: time first seen}."""
    rollup = chain.net.rollup
    seen: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    last_check = 0.0
    pending = list(rids)
    url = chain.net.rpc_urls[0]
    while True:
        h = int(rollup.functions.lastHeight().call())
        now = time.monotonic()
        for x in range(max(seen, default=0) + 1, h + 1):
            seen[x] = now
        if now - last_check > 0.5:  # which transactions are in by now (cheap status call)
            last_check = now
            st = rpc_batch(url, [("enclavenet_txStatus", ["0x" + r.hex()]) for r in pending[:4000]])
            done = {i for i, r in enumerate(st) if r.get("result", {}).get("status") == "included"}
            pending = [r for i, r in enumerate(pending) if i not in done]
            if not pending:
                return seen
        if now > deadline:
            raise TimeoutError(f"{len(pending)} of {len(rids)} transactions not included after {timeout:.0f}s")
        time.sleep(0.02)


def setup_token(chain: Chain, n_senders: int, per_sender: int) -> tuple[str, list[Any]]:
    """Deploy the token and fund the senders (untimed)."""
    import vyper

    out = vyper.compile_code(TOKEN_SRC, output_formats=["bytecode"])
    code = bytes.fromhex(out["bytecode"][2:])
    deployer = Account.create()
    ctor = code + (10**30).to_bytes(32, "big")
    env = chain.envelope(bytes(deployer.key), deployer.address, 0, None, ctor, gas=3_000_000)
    rids, _ = chain.send_all([env], spread=False)
    wait_all(chain, rids, 120)
    (rc,) = chain.receipts(rids)
    assert rc is not None
    # the contract address: CREATE from (deployer, nonce 0)
    import rlp

    token = "0x" + keccak256(rlp.encode([address_bytes(deployer.address), 0]))[12:].hex()
    senders = [Account.create() for _ in range(n_senders)]
    envs = [
        chain.envelope(bytes(deployer.key), deployer.address, i + 1, token,
                       TRANSFER + address_bytes(s.address).rjust(32, b"\0") + (10**9).to_bytes(32, "big"))
        for i, s in enumerate(senders)
    ]
    rids, _ = chain.send_all(envs, spread=False)
    wait_all(chain, rids, 300)
    return token, senders


def run_cell(chain: Chain, token: str, senders: list[Any], nonces: dict[str, int], batch: int, total: int) -> dict[str, Any]:
    net = chain.net
    for url in net.rpc_urls:
        rpc(url, "enclavenet_adminSetBatch", batch, 0.25)
    per = -(-total // len(senders))
    sink = address_bytes(Account.create().address).rjust(32, b"\0")
    envs: list[bytes] = []
    for _ in range(per):  # interleave senders: nonce order inside each, round robin across
        for s in senders:
            if len(envs) >= total:
                break
            n = nonces[s.address]
            nonces[s.address] = n + 1
            envs.append(chain.envelope(bytes(s.key), s.address, n, token, TRANSFER + sink + (1).to_bytes(32, "big"),
                                       gas=100_000))
    h0 = int(net.rollup.functions.lastHeight().call())
    t0 = time.monotonic()
    rids, acks = chain.send_all(envs)
    t_sent = time.monotonic()
    seen = wait_all(chain, rids, timeout=60 + total / 100)
    rcs = chain.receipts(rids)
    lat, heights = [], set()
    for rc, ack in zip(rcs, acks, strict=True):
        assert rc is not None, "included but no receipt"
        h = int(rc["height"], 16)
        heights.add(h)
        lat.append(max(0.0, seen.get(h, ack) - ack))
    t_end = max(seen[h] for h in heights)
    # L1 gas of the headers that carried them
    w3 = net.w3
    assert w3 is not None
    gas = 0
    counted = set()
    for h in sorted(heights):
        hdr = rpc(net.rpc_urls[0], "enclavenet_getHeader", hex(h))
        if hdr and hdr["l1TxHash"] not in counted:
            counted.add(hdr["l1TxHash"])
            gas += int(w3.eth.get_transaction_receipt(hdr["l1TxHash"])["gasUsed"])
    lat.sort()
    return {
        "members": net.n, "batch": batch, "txs": len(rids), "headers": len(heights), "first_height": h0 + 1,
        "tps": len(rids) / (t_end - t0), "send_s": t_sent - t0, "p50_s": statistics.median(lat),
        "p99_s": lat[min(len(lat) - 1, int(0.99 * len(lat)))], "l1_gas_per_tx": gas / len(rids),
    }
