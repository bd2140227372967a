"""Throughput and latency of the committee: confidential ERC20 transfers through the JSON-RPC fast path.

    .venv/bin/python benchmarks/throughput.py [--quick] [--l1 embedded|anvil]

For committees of 4, 7 and 10 members (sgx, tdx, sev-snp, csv, ...; quorum > 2/3 spanning >= 3
types) and batch sizes 500, 1000 and 2000: every member is its own node process with its own
enclave process, all on this machine's 2 cores, with the L1 (anvil by default: the embedded
eth-tester is slow per header) in a process of its own.

Per cell: signed ERC20 transfers from many senders, sealed into envelopes OUTSIDE the timed region,
are sent with batched JSON-RPC (``eth_sendRawTransaction`` x 500 per HTTP request) spread over
the nodes. A transaction's latency runs from the moment the node acknowledged it (receipt id
returned) until the L1 block that accepted the header holding it was seen by the benchmark;
throughput = transactions / (last acceptance - first submission). L1 gas per transaction =
the gas of the ``submitHeader`` transactions / the transactions they carried.

Node settings (same on every node): each member proposes ``--proposer-run`` consecutive heights
(default 4), proposers run up to ``--pipeline`` heights ahead of L1 (default 4); only the QC's
voters re-execute, the other members apply the proposer's sealed state diff (docs/NODE.md).

CPU accounting (the machine is shared): per cell, the CPU seconds used between the first
submission and the last acceptance by this process and every process under it (nodes, enclaves,
the L1), by role, from /proc; ``tx per CPU-s`` = transactions / those seconds, a figure that does
not depend on what else the machine was doing; "others" = cores kept busy by processes outside
the benchmark meanwhile (/proc/stat). On 2 cores the wall TPS is at most 2 x tx per CPU-s.

Prints a table, writes benchmarks/out/throughput.png (like TeeRollup's Fig. 4: TPS and latency
against committee size, one line per batch size) and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from eth_account import Account  # noqa: E402

from enclavenet.crypto.hashing import address_bytes  # noqa: E402
from enclavenet.devnet import Devnet  # noqa: E402
from enclavenet.loadgen import TRANSFER, Chain, run_cell, setup_token, wait_all  # noqa: E402


def run_paced(chain: Chain, token: str, senders: list[Any], nonces: dict[str, int], batch: int, rate: float,
              waves: int = 4) -> dict[str, Any]:
    """Latency at a sustainable load: waves of ``batch`` transfers sent every batch/rate seconds."""
    sink = address_bytes(Account.create().address).rjust(32, b"\0")
    per_wave: list[list[bytes]] = []
    it = iter(senders * (1 + batch * waves // len(senders)))
    for _ in range(waves):
        wave = []
        for _ in range(batch):
            s = next(it)
            n = nonces[s.address]
            nonces[s.address] = n + 1
            wave.append(chain.envelope(bytes(s.key), s.address, n, token, TRANSFER + sink + (1).to_bytes(32, "big"),
                                       gas=100_000))
        per_wave.append(wave)
    interval = batch / rate
    rids: list[bytes] = []
    acks: list[float] = []
    prepared = [chain.prepare(wave) for wave in per_wave]
    t0 = time.monotonic()
    seen: dict[int, float] = {}
    for k, wave in enumerate(prepared):
        while time.monotonic() < t0 + k * interval:
            time.sleep(0.005)
        r, a = chain.send_prepared(wave)
        rids += r
        acks += a
    seen = wait_all(chain, rids, timeout=120)
    rcs = chain.receipts(rids)
    lat = sorted(max(0.0, seen[int(rc["height"], 16)] - ack) for rc, ack in zip(rcs, acks, strict=True) if rc)
    return {"rate": rate, "p50_s": statistics.median(lat), "p99_s": lat[min(len(lat) - 1, int(0.99 * len(lat)))]}


def node_breakdown(net: Devnet) -> dict[str, Any]:
    """Where the enclaves' time went (ecall seconds per node) -- for the notes."""
    out = {}
    for i in range(net.n):
        st = net.status(i) or {}
        out[f"node{i}"] = {m: v["seconds"] for m, v in st.get("ecalls", {}).items() if v["seconds"] > 0.5}
    return out


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for batch in sorted({r["batch"] for r in results}):
        rs = sorted((r for r in results if r["batch"] == batch), key=lambda r: r["members"])
        a.plot([r["members"] for r in rs], [r["tps"] for r in rs], marker="o", label=f"batch {batch}")
        b.plot([r["members"] for r in rs], [r["p50_s"] for r in rs], marker="o", label=f"batch {batch}")
    a.set_xlabel("committee members")
    a.set_ylabel("throughput (tx/s)")
    a.set_title("Throughput (confidential ERC20 transfers)")
    b.set_xlabel("committee members")
    b.set_ylabel("p50 latency (s)")
    b.set_title("Latency: acknowledged -> header on L1")
    for ax in (a, b):
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 members only, fewer transactions")
    ap.add_argument("--l1", choices=["anvil", "embedded"], default="anvil")
    ap.add_argument("--members", default=None, help="comma-separated committee sizes (default 4,7,10)")
    ap.add_argument("--batches", default="500,1000,2000")
    ap.add_argument("--rounds", type=float, default=None, help="transactions per cell = rounds x batch")
    ap.add_argument("--proposer-run", type=int, default=4,
                    help="consecutive heights per proposer (node config proposer_run; 1 = round robin)")
    ap.add_argument("--pipeline", type=int, default=4, help="heights a proposer may run ahead of L1 (node config)")
    args = ap.parse_args()
    members = [int(x) for x in (args.members or ("4" if args.quick else "4,7,10")).split(",")]
    batches = [int(x) for x in args.batches.split(",")]
    rounds = args.rounds or (3 if args.quick else 5)
    results: list[dict[str, Any]] = []
    notes: dict[str, Any] = {}
    print(f"# throughput: committees {members}, batches {batches}, {rounds} x batch transactions per cell, L1 {args.l1}")
    for n in members:
        t = time.monotonic()
        with Devnet(n=n, l1=args.l1, batch_size=max(batches), batch_interval=0.25, proposer_timeout=20.0,
                    persist="accept", progress=True, start_timeout=300,
                    node_options={"admin_rpc": True, "mempool_max_total": 400_000, "proposer_run": args.proposer_run,
                                  "pipeline": args.pipeline},
                    log_level="WARNING") as net:
            print(f"# devnet of {n} up in {time.monotonic() - t:.1f}s (quorum {net.quorum}, >= {net.min_types} types)")
            chain = Chain(net)
            n_senders = 400
            token, senders = setup_token(chain, n_senders, 0)
            nonces = {s.address: 0 for s in senders}
            for batch in batches:
                r = run_cell(chain, token, senders, nonces, batch, int(rounds * batch))
                results.append(r)
                print(f"members {n:2d}  batch {batch:4d}  txs {r['txs']:6d}  headers {r['headers']:3d}  "
                      f"TPS {r['tps']:7.0f}  p50 {r['p50_s']:6.2f}s  p99 {r['p99_s']:6.2f}s  "
                      f"L1 gas/tx {r['l1_gas_per_tx']:6.1f}  (sending took {r['send_s']:.2f}s)", flush=True)
                c = r["cpu"]
                print(f"    cpu {c['cpu_s']:.1f}s over {c['wall_s']:.1f}s wall = {c['cpu_s'] / c['wall_s']:.2f} cores "
                      f"({', '.join(f'{k} {v:.1f}' for k, v in c['cpu_by_role'].items())}); "
                      f"{r['tps_per_cpu_s']:.0f} tx per CPU-second; other processes kept "
                      f"{c['others_busy_cores']:.2f} cores busy", flush=True)
                if batch == min(batches):
                    pr = run_paced(chain, token, senders, nonces, batch, rate=0.7 * r["tps"])
                    r["paced"] = pr
                    print(f"members {n:2d}  batch {batch:4d}  paced at {pr['rate']:.0f} tx/s (70% of the flood TPS): "
                          f"p50 {pr['p50_s']:.2f}s  p99 {pr['p99_s']:.2f}s", flush=True)
            notes[f"ecall_seconds_{n}_members"] = node_breakdown(net)
    print("\n| members | batch | TPS | p50 (s) | p99 (s) | L1 gas/tx | tx per CPU-s | cores used (ours + others) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        c = r["cpu"]
        print(f"| {r['members']} | {r['batch']} | {r['tps']:.0f} | {r['p50_s']:.2f} | {r['p99_s']:.2f} | "
              f"{r['l1_gas_per_tx']:.1f} | {r['tps_per_cpu_s']:.0f} | {c['cpu_s'] / c['wall_s']:.2f} + "
              f"{c['others_busy_cores']:.2f} |")
    out = ROOT / "benchmarks" / "out" / "throughput.png"
    plot(results, out)
    print(f"plot: {out}")
    if os.environ.get("ENCLAVENET_BENCH_NOTES"):
        print(json.dumps(notes))

    def cell(m: int, b: int, key: str) -> float | None:
        for r in results:
            if r["members"] == m and r["batch"] == b:
                return round(float(r[key]), 3)
        return None

    paced = next((r["paced"] for r in results if r["members"] == 4 and r["batch"] == 500 and "paced" in r), None)
    summary = {
        "tps_4_members_batch_2000": cell(4, 2000, "tps"),
        "p50_latency_s_batch_500": cell(4, 500, "p50_s"),  # under a flood of 5 batches (queueing included)
        "l1_gas_per_tx_batch_2000": cell(4, 2000, "l1_gas_per_tx"),
        "p50_latency_s_batch_500_paced": round(paced["p50_s"], 3) if paced else None,  # at 70% of that TPS
    }
    for r in results:
        summary[f"tps_{r['members']}_members_batch_{r['batch']}"] = round(r["tps"], 1)
        summary[f"tx_per_cpu_s_{r['members']}_members_batch_{r['batch']}"] = round(r["tps_per_cpu_s"], 1)
        summary[f"p50_s_{r['members']}_members_batch_{r['batch']}"] = round(r["p50_s"], 3)
        summary[f"p99_s_{r['members']}_members_batch_{r['batch']}"] = round(r["p99_s"], 3)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
