"""What "acknowledged means durable" costs: ``eth_sendRawTransaction`` latency with and without fsync.

    .venv/bin/python benchmarks/ack_latency.py [--quick] [--dir DIR]

A node's ingress path alone -- the JSON-RPC server over HTTP on 127.0.0.1, the mempool, the
group commit into ``pending.log`` (node/ingress.py, node/groupcommit.py) -- in a child process
with its ``data_dir`` in ``--dir`` (default: a temporary directory under benchmarks/out, i.e.
this checkout's disk: a tmpfs would make fsync free). No enclave, no L1, no peers: the envelopes
are well-formed but sealed to a throwaway key (the mempool does not open them).

Three servers, the same code except where noted:

* ``fsync``     -- the node as shipped: the id is returned once the envelope is fsynced.
* ``no-fsync``  -- ``os.fsync`` of node/store.py replaced by a no-op IN THIS BENCHMARK'S CHILD
  ONLY (the group commit still writes before answering): the cost of the fsync itself. There is
  no such switch in the node: durability cannot be turned off.
* ``ack-first`` -- the answer does not wait for the write (the behaviour before this change,
  reproduced by the same kind of patch of the child): the baseline.

Loads: one client sending one transaction per request (sequential), 8 concurrent clients doing
the same, and JSON-RPC batches of 500. Prints p50/p99 per load and server, and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

MODES = ("fsync", "no-fsync", "ack-first")


# ---------------------------------------------------------------------------- the child: a node's ingress
def serve(data_dir: str, mode: str) -> None:
    import asyncio

    from aiohttp import web

    from enclavenet.node import store as store_mod
    from enclavenet.node.api import install_rpc_methods
    from enclavenet.node.config import NodeConfig
    from enclavenet.node.core import NodeCore
    from enclavenet.node.ingress import Ingress

    if mode == "no-fsync":
        store_mod.os.fsync = lambda fd: None  # measurement only
    if mode == "ack-first":
        async def at_once(self: Ingress, rid: bytes, logged: Any) -> bytes:
            return rid

        Ingress._acknowledge = at_once  # type: ignore[method-assign]  # measurement only

    zero = "0x" + "00" * 20
    node = NodeCore(NodeConfig(name="bench", data_dir=data_dir, l1_rpc="http://127.0.0.1:9", rollup=zero,
                               registry=zero, l1_chain_id=31337, chain_id=1337, platform={"tee": "sgx"}, enclave={},
                               rate_tx_per_ip=0, rate_tx_per_sender=0))
    ingress = Ingress(node)
    node.epoch, node.epochs_held = 0, [0]
    node.store.ensure()
    install_rpc_methods(node, submit_envelope=ingress.submit_envelope, node_status=dict)

    async def main() -> None:
        runner = web.AppRunner(node.rpc.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(json.dumps({"port": port}), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# ---------------------------------------------------------------------------- the parent: clients
def envelopes(n: int, tag: int) -> list[str]:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from enclavenet.crypto.envelope import HintSigner, RoutingHint, seal
    from enclavenet.crypto.hashing import address_bytes
    from enclavenet.crypto.secp256k1 import SigningKey

    pub = X25519PrivateKey.generate().public_key().public_bytes_raw()
    out = []
    for i in range(n):  # a fresh sender each, signing its hint (nodes admit only authenticated hints)
        k = SigningKey.generate()
        out.append("0x" + seal(b"bench %d" % i, pub, 1337, 0, RoutingHint(address_bytes(k.address), tag),
                               signer=HintSigner(k.secret)).envelope.encode().hex())
    return out


def pct(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"n": len(xs), "p50_ms": round(1000 * statistics.median(xs), 3),
            "p99_ms": round(1000 * xs[min(len(xs) - 1, int(0.99 * len(xs)))], 3)}


def singles(url: str, envs: list[str], clients: int) -> dict[str, Any]:
    import requests

    lat: list[float] = []
    lock = threading.Lock()
    it = iter(envs)

    def run() -> None:
        with requests.Session() as s:
            while True:
                with lock:
                    e = next(it, None)
                if e is None:
                    return
                t = time.perf_counter()
                out = s.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
                                        "params": [e]}, timeout=30).json()
                dt = time.perf_counter() - t
                assert "result" in out, out
                with lock:
                    lat.append(dt)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=run) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {**pct(lat), "tx_per_s": round(len(lat) / (time.perf_counter() - t0))}


def batches(url: str, envs: list[str], size: int) -> dict[str, Any]:
    import requests

    lat: list[float] = []
    with requests.Session() as s:
        for i in range(0, len(envs), size):
            body = json.dumps([{"jsonrpc": "2.0", "id": k, "method": "eth_sendRawTransaction", "params": [e]}
                               for k, e in enumerate(envs[i : i + size])])
            t = time.perf_counter()
            out = s.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=60).json()
            lat.append(time.perf_counter() - t)
            assert all("result" in o for o in out), out[:2]
    return pct(lat)


def measure(mode: str, base: Path, n_single: int, n_batches: int, warm: int) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"ack-{mode}-", dir=base))
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(data_dir), "--mode", mode],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = f"http://127.0.0.1:{json.loads(proc.stdout.readline())['port']}/"
        singles(url, envelopes(warm, 0), 1)  # warm up (imports, first file creation)
        return {
            "sequential": singles(url, envelopes(n_single, 1), 1),
            "8_clients": singles(url, envelopes(2 * n_single, 2), 8),
            "batch_500": batches(url, envelopes(500 * n_batches, 3), 500),
        }
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer requests (about 20 s)")
    ap.add_argument("--dir", help="where the data dirs go (default benchmarks/out: this checkout's disk)")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.mode)
        return 0
    base = Path(args.dir or ROOT / "benchmarks" / "out")
    base.mkdir(parents=True, exist_ok=True)
    n_single, n_batches = (300, 6) if args.quick else (1000, 20)
    res: dict[str, Any] = {}
    for mode in MODES:
        res[mode] = measure(mode, base, n_single, n_batches, 50)
        for load, r in res[mode].items():
            extra = f"  {r['tx_per_s']:6d} tx/s" if "tx_per_s" in r else ""
            print(f"{mode:10s} {load:11s} n={r['n']:5d}  p50 {r['p50_ms']:8.3f} ms  p99 {r['p99_ms']:8.3f} ms{extra}",
                  flush=True)
    print(json.dumps({"bench": "ack_latency", "quick": args.quick, "dir": str(base), **res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
