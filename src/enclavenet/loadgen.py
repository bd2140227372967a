"""Load generation against a devnet: confidential ERC20 transfers through the JSON-RPC fast path.

Shared by ``benchmarks/throughput.py`` and the demo. Envelopes are signed and sealed up front
(outside any timed region) and sent with batched JSON-RPC; a transaction's latency runs from its
acknowledgement (receipt id returned) until the L1 block that accepted its header is seen.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import threading
import time
from typing import Any

import requests
from eth_account import Account

from .client.formats import sign_transaction
from .crypto.envelope import HintSigner, RoutingHint, SessionKeys, open_receipt, seal
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
BUSY = -32005  # node/admission.py: the committee is saturated, retry after data.retryAfter


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
        self.busy_refusals = 0
        self.sessions = SessionKeys(max_keys=1 << 20)  # what ConfidentialClient does per sender and epoch
        self._signers: dict[bytes, HintSigner] = {}
        # fees (docs/FEES.md): the max fee per gas transactions are signed with (0: fees off); a
        # flood raises the base fee ~9 % per full batch, so the headroom is generous (a sender
        # pays base + tip, not its max)
        self.max_fee = 50 * int(rpc(net.rpc_urls[0], "eth_gasPrice"), 16)
        # every SAMPLE_EVERY-th envelope's receipt key: check_sample opens those receipts, so a
        # run whose transactions were refused (a fee too low, no balance) cannot pass for fast
        self._sample: dict[bytes, bytes] = {}
        self._sent = 0

    def envelope(self, key: bytes, sender: str, nonce: int, to: str | None, data: bytes, gas: int = 200_000,
                 value: int = 0) -> bytes:
        raw = sign_transaction(key, self.chain_id, nonce, to, data, value, gas, max_fee=self.max_fee)
        hint = RoutingHint(address_bytes(sender), nonce)
        signer = self._signers.get(key)
        if signer is None:
            signer = self._signers[key] = HintSigner(key)  # nodes admit only authenticated hints
        sealed = seal(raw, self.epoch_pub, self.chain_id, self.epoch, hint,
                      self.sessions.for_hint(hint, self.epoch_pub), signer)
        env = sealed.envelope.encode()
        self._sent += 1
        if self._sent % SAMPLE_EVERY == 0 and len(self._sample) < 10_000:
            self._sample[keccak256(env)] = sealed.receipt_key
        return env

    def check_sample(self) -> dict[str, int]:
        """Open the sampled receipts: how many succeeded, paid a fee, failed, or are not there yet."""
        from .enclave.executor import Receipt

        rids = list(self._sample)
        out = {"sampled": len(rids), "succeeded": 0, "paid_fee": 0, "failed": 0, "missing": 0}
        for rid, rc in zip(rids, self.receipts(rids), strict=True):
            enc = (rc or {}).get("encryptedReceipt")
            if not enc:
                out["missing"] += 1
                continue
            try:
                r = Receipt.decode(open_receipt(self._sample[rid], bytes.fromhex(enc[2:])))
            except Exception:  # an error entry (not decrypted)
                out["failed"] += 1
                continue
            out["succeeded" if r.success else "failed"] += 1
            out["paid_fee"] += bool(r.gas_price)
        return out

    def prepare(self, envs: list[bytes], *, spread: bool = True) -> list[tuple[str, bytes, list[bytes]]]:
        """The JSON-RPC batches (``eth_sendRawTransaction`` x ``RPC_CHUNK``) that send ``envs``,
        encoded up front -- like the signing and sealing, outside any timed region: (url, body,
        receipt ids) per HTTP request, spread over the nodes."""
        urls = self.net.rpc_urls
        out = []
        for i in range(0, len(envs), RPC_CHUNK):
            chunk = envs[i : i + RPC_CHUNK]
            url = urls[(i // RPC_CHUNK) % len(urls)] if spread else urls[0]
            body = json.dumps([{"jsonrpc": "2.0", "id": k, "method": "eth_sendRawTransaction", "params": ["0x" + e.hex()]}
                               for k, e in enumerate(chunk)]).encode()
            out.append((url, body, [keccak256(e) for e in chunk]))
        return out

    def send_prepared(self, batches: list[tuple[str, bytes, list[bytes]]], *,
                      busy_wait_s: float = 300.0) -> tuple[list[bytes], list[float]]:
        """Send prepared batches; return receipt ids and acknowledgement times (in admission order).

        A transaction the node refuses as busy (-32005, node/admission.py) is sent again after the
        ``retryAfter`` it asked for, before anything sent later (so each sender's nonces stay in
        order), for up to ``busy_wait_s`` seconds in all; ``self.busy_refusals`` counts them."""
        rids: list[bytes] = []
        acks: list[float] = []
        deadline = time.monotonic() + busy_wait_s
        with requests.Session() as session:
            for url, body, ids in batches:
                while True:
                    resp = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=120)
                    t = time.monotonic()
                    out = resp.json()
                    if not isinstance(out, list) or len(out) != len(ids):
                        raise RuntimeError(f"node answered a batch of {len(ids)} with {str(out)[:200]}")
                    busy: list[int] = []
                    wait = 0.0
                    for r in sorted(out, key=lambda r: r["id"]):
                        err = r.get("error")
                        if err is None:
                            rids.append(ids[r["id"]])
                            acks.append(t)
                        elif err.get("code") == BUSY and t < deadline:
                            busy.append(r["id"])
                            wait = max(wait, float((err.get("data") or {}).get("retryAfter", 0.5)))
                        else:
                            raise RuntimeError(f"node refused a transaction: {err['message']}")
                    if not busy:
                        break
                    self.busy_refusals += len(busy)
                    calls = json.loads(body)
                    body = json.dumps([{**calls[k], "id": j} for j, k in enumerate(busy)]).encode()
                    ids = [ids[k] for k in busy]
                    time.sleep(wait)
        return rids, acks

    def send_all(self, envs: list[bytes], *, spread: bool = True) -> tuple[list[bytes], list[float]]:
        """Send envelopes in JSON-RPC batches; return receipt ids and acknowledgement times."""
        return self.send_prepared(self.prepare(envs, spread=spread))

    def receipts(self, rids: list[bytes], url: str | None = None) -> list[dict[str, Any] | None]:
        url = url or self.net.rpc_urls[0]
        out: list[dict[str, Any] | None] = []
        for i in range(0, len(rids), 2000):
            res = rpc_batch(url, [("eth_getTransactionReceipt", ["0x" + r.hex()]) for r in rids[i : i + 2000]])
            out += [r.get("result") for r in res]
        return out


class L1Height:
    """``Rollup.lastHeight()`` by a raw keep-alive ``eth_call`` (~0.1 ms of CPU instead of web3's
    ~1 ms: the benchmark asks every 20 ms, on the machine it measures)."""

    def __init__(self, net: Devnet) -> None:
        from urllib.parse import urlsplit

        assert net.rollup is not None
        u = urlsplit(net.l1_url)
        self._conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=30)
        self._path = u.path or "/"
        data = "0x" + keccak256(b"lastHeight()")[:4].hex()
        self._body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_call",
                                 "params": [{"to": net.rollup.address, "data": data}, "latest"]}).encode()

    def __call__(self) -> int:
        self._conn.request("POST", self._path, self._body, {"Content-Type": "application/json"})
        out = json.loads(self._conn.getresponse().read())
        return int(out["result"], 16)

    def close(self) -> None:
        self._conn.close()


class HeightWatch:
    """The first time each Rollup height was seen, polled every 20 ms by a thread from
    ``start()`` on: headers accepted while the client is still sending (busy answers stretch
    sending over seconds) get the time they were accepted, not the time ``wait_all`` began."""

    def __init__(self, net: Devnet) -> None:
        self._height = L1Height(net)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.seen: dict[int, float] = {}
        self.top = 0

    def start(self) -> HeightWatch:
        self.poll()
        self._thread = threading.Thread(target=self._run, name="height-watch", daemon=True)
        self._thread.start()
        return self

    def poll(self) -> int:
        with self._lock:
            h = self._height()
            now = time.monotonic()
            for x in range(self.top + 1, h + 1):
                self.seen[x] = now
            self.top = max(self.top, h)
            return self.top

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.poll()
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                self._height.close()  # reconnects on the next request
                self._stop.wait(0.1)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._height.close()


def wait_all(chain: Chain, rids: list[bytes], timeout: float, watch: HeightWatch | None = None) -> dict[int, float]:
    """Watch L1 until every transaction's header is accepted; return {height: time first seen}.

    The benchmark shares the machine with the committee, so it polls cheaply: the L1 height
    every 20 ms, and the status of the LAST few transactions sent (each sender's come in nonce
    order, senders by arrival, so they are included last) until they are in; only then every
    pending one, in one batched call, and again for any still missing."""
    own = watch is None
    w = HeightWatch(chain.net) if watch is None else watch
    try:
        return _wait_all(chain, rids, timeout, w, poll=own)
    finally:
        if own:
            w.close()


def _wait_all(chain: Chain, rids: list[bytes], timeout: float, watch: HeightWatch, *, poll: bool) -> dict[int, float]:
    """``poll``: this loop polls the height itself (no watcher thread runs)."""
    deadline = time.monotonic() + timeout
    last_check = 0.0
    pending = list(rids)
    url = chain.net.rpc_urls[0]
    probe = 16
    while True:
        if poll:
            watch.poll()
        now = time.monotonic()
        if now - last_check > 0.25:
            last_check = now
            tail = pending[-probe:]
            st = rpc_batch(url, [("enclavenet_txStatus", ["0x" + r.hex()]) for r in tail])
            if all(r.get("result", {}).get("status") == "included" for r in st):
                left: list[bytes] = []
                for i in range(0, len(pending), 4000):  # then all of them, once
                    chunk = pending[i : i + 4000]
                    st = rpc_batch(url, [("enclavenet_txStatus", ["0x" + r.hex()]) for r in chunk])
                    left += [r for r, x in zip(chunk, st, strict=True)
                             if x.get("result", {}).get("status") != "included"]
                pending = left
                if not pending:
                    watch.poll()  # the node may have seen the last header's L1 block before we did
                    with watch._lock:
                        return dict(watch.seen)
        if now > deadline:
            raise TimeoutError(f"{len(pending)} of {len(rids)} transactions not included after {timeout:.0f}s")
        time.sleep(0.02)


def _proc_cpu(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            parts = f.read().rsplit(b")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _role(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    if "tee.runner" in cmd:
        return "enclave"
    if " node " in cmd or cmd.endswith(" node"):
        return "node"
    if "anvil" in cmd or " l1 " in cmd:
        return "l1"
    return "other"


def process_tree(root: int | None = None) -> dict[int, str]:
    """{pid: role} of ``root`` (default: this process, role ``client``) and all its descendants."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out: dict[int, str] = {}
    todo = [root]
    while todo:
        p = todo.pop()
        out[p] = "client" if p == root else _role(p)
        todo += children.get(p, [])
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return float(sum(v) - idle), float(sum(v))


class CpuMeter:
    """CPU seconds used by this benchmark and every process under it (nodes, enclaves, L1),
    by role, between ``start()`` and ``stop()`` -- and how busy the whole machine was."""

    def start(self) -> CpuMeter:
        self.pids = process_tree()
        self.t0 = time.monotonic()
        self.cpu0 = {p: _proc_cpu(p) for p in self.pids}
        self.m0 = machine_busy()
        return self

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self.t0
        by_role: dict[str, float] = {}
        for p, role in self.pids.items():
            by_role[role] = by_role.get(role, 0.0) + max(0.0, _proc_cpu(p) - self.cpu0[p])
        m1 = machine_busy()
        busy, total = m1[0] - self.m0[0], m1[1] - self.m0[1]
        ncpu = os.cpu_count() or 1
        ours = sum(by_role.values())
        return {
            "wall_s": wall,
            "cpu_s": ours,
            "cpu_by_role": {k: round(v, 2) for k, v in sorted(by_role.items())},
            "machine_busy_cores": ncpu * busy / total if total else 0.0,
            "others_busy_cores": max(0.0, ncpu * busy / total - ours / wall) if total and wall else 0.0,
        }


SAMPLE_EVERY = 50
GAS_MONEY = 10**18  # wei each sender gets when fees are on (covers 200,000 gas x max fee per transaction)


def setup_token(chain: Chain, n_senders: int, per_sender: int) -> tuple[str, list[Any]]:
    """Deploy the token and fund the senders (untimed)."""
    import vyper

    out = vyper.compile_code(TOKEN_SRC, output_formats=["bytecode"])
    code = bytes.fromhex(out["bytecode"][2:])
    deployer = Account.create()
    if chain.max_fee:  # fees on: the deployer deposits, then pays every sender's gas money
        from .chain.accounts import pay
        from .client.l1 import deposit

        net = chain.net
        assert net.w3 is not None
        gas_money = GAS_MONEY
        pay(net.w3, net.accounts[0], deployer.address, (n_senders + 10) * gas_money + 10**18)
        deposit(net.w3, deployer, net.rollup.address, (n_senders + 10) * gas_money)
        count = net.rollup.functions.msgCount().call()
        deadline = time.monotonic() + 120
        while net.rollup.functions.msgConsumed().call() < count:  # a header consumed the deposit
            if time.monotonic() > deadline:
                raise RuntimeError("the deployer's deposit was not consumed by a header within 120 s")
            time.sleep(0.2)
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
    if chain.max_fee:
        envs += [chain.envelope(bytes(deployer.key), deployer.address, n_senders + 1 + i, s.address, b"", 21_000,
                                value=GAS_MONEY) for i, s in enumerate(senders)]
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
    batches = chain.prepare(envs)
    watch = HeightWatch(net).start()
    try:
        meter = CpuMeter().start()
        t0 = time.monotonic()
        rids, acks = chain.send_prepared(batches)
        t_sent = time.monotonic()
        seen = wait_all(chain, rids, timeout=60 + total / 100, watch=watch)
        cpu = meter.stop()
    finally:
        watch.close()
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
        "cpu": cpu, "tps_per_cpu_s": len(rids) / cpu["cpu_s"] if cpu["cpu_s"] else 0.0,
    }
