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

Where the CPU goes (issue 9): per cell, every enclave's CPU per transfer split by ecall
(execute_batch, verify_batch, apply_batch, other ecalls), measured by each node around each ecall
from the enclave process's /proc/PID/schedstat (node/host.py), and how many members executed each
height (proposer + voters) versus applied the proposer's diff. ``enclave_us_per_tx`` = all
enclaves' CPU per transfer; ``enclave_floor_us_per_tx`` = quorum x one execution's CPU per
transfer (execute_batch CPU per call x headers / transfers), the least a QC of verifying signers
can cost.

Admission (node/admission.py): the batch-500 cell is a flood; its p99 is that of the transactions
the nodes admitted (the client retries "busy" answers after the hinted delay; counted as
``busy_refusals``). Then the same committee is paced at 70 % of that flood's TPS.

The peer in the same run: the same ERC20 transfers from the same senders on plain anvil
(benchmarks/plain_anvil.py): ``plain_anvil_tps`` and ``confidential_over_plain`` (the 4-member
batch-2000 cell's TPS over it; also per CPU-second).

``--repeat N`` runs everything N times, each on fresh devnets and a fresh anvil, prints each run's
JSON line, and reports medians with the spread ((max - min) / median) of the headline figures.

Prints a table, writes benchmarks/out/throughput.png (like TeeRollup's Fig. 4: TPS and latency
against committee size, one line per batch size) and benchmarks/out/throughput_cpu.png (stacked
bars: CPU microseconds per transfer by role and enclave ecall), and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
from enclavenet.loadgen import TRANSFER, Chain, HeightWatch, rpc, run_cell, setup_token, wait_all  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from plain_anvil import run_plain  # noqa: E402


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
    watch = HeightWatch(chain.net).start()  # headers accepted between waves get their own time
    try:
        t0 = time.monotonic()
        for k, wave in enumerate(prepared):
            while time.monotonic() < t0 + k * interval:
                time.sleep(0.005)
            r, a = chain.send_prepared(wave)
            rids += r
            acks += a
        seen = wait_all(chain, rids, timeout=120, watch=watch)
    finally:
        watch.close()
    rcs = chain.receipts(rids)
    lat = sorted(max(0.0, seen[int(rc["height"], 16)] - ack) for rc, ack in zip(rcs, acks, strict=True) if rc)
    return {"rate": rate, "p50_s": statistics.median(lat), "p99_s": lat[min(len(lat) - 1, int(0.99 * len(lat)))]}


SPLIT = ("execute_batch", "verify_batch", "apply_batch")
COUNTERS = ("proposed", "voted", "applied_diff", "applied_reexec")


def snapshot(net: Devnet) -> list[dict[str, Any]]:
    """Every node's ecall statistics and counters now (node status)."""
    out = []
    for i in range(net.n):
        st = net.status(i) or {}
        out.append({"ecalls": st.get("ecalls", {}), "counters": st.get("counters", {})})
    return out


def enclave_split(before: list[dict[str, Any]], after: list[dict[str, Any]], r: dict[str, Any],
                  quorum: int) -> dict[str, Any]:
    """Where the enclaves' CPU went during a cell, per transfer: by member and by ecall."""
    txs = r["txs"]
    per_member: list[dict[str, float]] = []
    calls: dict[str, int] = {}
    for b, a in zip(before, after, strict=True):
        row = dict.fromkeys((*SPLIT, "other"), 0.0)
        for m, v in a["ecalls"].items():
            v0 = b["ecalls"].get(m, {})
            d = float(v.get("cpu_seconds", 0.0)) - float(v0.get("cpu_seconds", 0.0))
            row[m if m in SPLIT else "other"] += d
            calls[m] = calls.get(m, 0) + int(v.get("calls", 0)) - int(v0.get("calls", 0))
        per_member.append({k: round(1e6 * v / txs, 1) for k, v in row.items()})
    by_ecall = {k: round(sum(m[k] for m in per_member), 1) for k in (*SPLIT, "other")}
    counters = {c: sum(int(a["counters"].get(c, 0)) - int(b["counters"].get(c, 0)) for b, a in zip(before, after, strict=True))
                for c in COUNTERS}
    measured = 1e6 * r["cpu"]["cpu_by_role"].get("enclave", 0.0) / txs
    execs = calls.get("execute_batch", 0)
    # one execution of every accepted batch: mean execute_batch CPU per call x headers
    one = by_ecall["execute_batch"] * r["headers"] / execs if execs else 0.0
    headers = max(1, r["headers"])
    return {
        "enclave_us_per_tx": round(measured, 1),
        "enclave_attributed_us_per_tx": round(sum(by_ecall.values()), 1),
        "enclave_floor_us_per_tx": round(quorum * one, 1),
        "one_execution_us_per_tx": round(one, 1),
        "by_ecall_us_per_tx": by_ecall,
        "by_member_us_per_tx": per_member,
        "ecall_calls": {k: calls.get(k, 0) for k in SPLIT},
        "counters": counters,
        # per accepted height: members that executed it (proposer + voters that re-ran it) vs applied a diff
        "reexecuted_per_height": round((counters["proposed"] + counters["voted"] + counters["applied_reexec"]) / headers, 2),
        "applied_diff_per_height": round(counters["applied_diff"] / headers, 2),
    }


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


def plot_cpu(results: list[dict[str, Any]], plain: dict[str, Any] | None, path: Path) -> None:
    """Stacked bars: CPU microseconds per transfer, by role, the enclaves' share split by ecall."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = ["enclave: execute_batch", "enclave: verify_batch", "enclave: apply_batch", "enclave: other",
             "node", "l1", "client", "other"]
    labels, stacks = [], []
    for r in results:
        e, c, t = r["enclave"], r["cpu"]["cpu_by_role"], r["txs"]
        ecalls = e["by_ecall_us_per_tx"]
        rest = max(0.0, e["enclave_us_per_tx"] - e["enclave_attributed_us_per_tx"])
        stacks.append([ecalls["execute_batch"], ecalls["verify_batch"], ecalls["apply_batch"], ecalls["other"] + rest,
                       *(1e6 * c.get(k, 0.0) / t for k in ("node", "l1", "client", "other"))])
        labels.append(f"{r['members']}m/{r['batch']}")
    if plain:
        c = plain["cpu"]["cpu_by_role"]
        stacks.append([0, 0, 0, 0, 0, 1e6 * c.get("l1", 0.0) / plain["txs"], 1e6 * c.get("client", 0.0) / plain["txs"],
                       1e6 * c.get("other", 0.0) / plain["txs"]])
        labels.append("plain anvil")
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(labels) + 5), 4.5))
    bottom = [0.0] * len(labels)
    for k, name in enumerate(parts):
        vals = [s[k] for s in stacks]
        ax.bar(labels, vals, bottom=bottom, label=name)
        bottom = [x + y for x, y in zip(bottom, vals, strict=True)]
    floors = [r["enclave"]["enclave_floor_us_per_tx"] for r in results]
    ax.scatter(labels[: len(floors)], floors, marker="_", s=600, color="black", zorder=3,
               label="enclave floor (quorum x one execution)")
    ax.set_ylabel("CPU microseconds per transfer")
    ax.set_title("Where the CPU goes per confidential transfer (members/batch)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def run_once(args: argparse.Namespace, members: list[int], batches: list[int], rounds: float,
             notes: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One full run: a fresh devnet per committee size, every batch size, then the plain peer."""
    results: list[dict[str, Any]] = []
    peer_senders: list[Any] = []
    admission = {k: v for k, v in (("admission_queue_s", args.admission_queue_s),
                                   ("admission_min_batches", args.admission_min_batches)) if v is not None}
    for n in members:
        t = time.monotonic()
        with Devnet(n=n, l1=args.l1, batch_size=max(batches), batch_interval=0.25, proposer_timeout=20.0,
                    min_base_fee=args.min_base_fee,
                    persist="accept", progress=True, start_timeout=300,
                    node_options={"admin_rpc": True, "mempool_max_total": 400_000, "proposer_run": args.proposer_run,
                                  "pipeline": args.pipeline, **admission},
                    log_level="WARNING") as net:
            print(f"# devnet of {n} up in {time.monotonic() - t:.1f}s (quorum {net.quorum}, >= {net.min_types} types)")
            chain = Chain(net)
            token, senders = setup_token(chain, args.senders, 0)
            if args.min_base_fee:
                print(f"# fees on: base fee {int(rpc(net.rpc_urls[0], 'eth_gasPrice'), 16) * 4 // 5:,} wei/gas "
                      f"after setup; transactions signed with max fee {chain.max_fee:,}")
            if not peer_senders:
                peer_senders = senders
            nonces = {s.address: 0 for s in senders}
            for batch in batches:
                before, busy0 = snapshot(net), chain.busy_refusals
                try:
                    r = run_cell(chain, token, senders, nonces, batch, int(rounds * batch))
                except Exception:
                    keep = ROOT / "benchmarks" / "out" / f"throughput-failed-{n}m-{batch}"
                    shutil.copytree(net.base_dir, keep, dirs_exist_ok=True,
                                    ignore=lambda _d, names: [x for x in names if x.endswith(".json")])
                    print(f"# the cell failed: the devnet's logs are kept in {keep}", flush=True)
                    raise
                r["busy_refusals"] = chain.busy_refusals - busy0
                r["enclave"] = e = enclave_split(before, snapshot(net), r, net.quorum)
                results.append(r)
                print(f"members {n:2d}  batch {batch:4d}  txs {r['txs']:6d}  headers {r['headers']:3d}  "
                      f"TPS {r['tps']:7.0f}  p50 {r['p50_s']:6.2f}s  p99 {r['p99_s']:6.2f}s  "
                      f"L1 gas/tx {r['l1_gas_per_tx']:6.1f}  (sending took {r['send_s']:.2f}s, "
                      f"{r['busy_refusals']} busy answers)", flush=True)
                c = r["cpu"]
                print(f"    cpu {c['cpu_s']:.1f}s over {c['wall_s']:.1f}s wall = {c['cpu_s'] / c['wall_s']:.2f} cores "
                      f"({', '.join(f'{k} {v:.1f}' for k, v in c['cpu_by_role'].items())}); "
                      f"{r['tps_per_cpu_s']:.0f} tx per CPU-second; other processes kept "
                      f"{c['others_busy_cores']:.2f} cores busy", flush=True)
                print(f"    enclaves {e['enclave_us_per_tx']:.0f} us/tx (floor {e['enclave_floor_us_per_tx']:.0f} = "
                      f"{net.quorum} x {e['one_execution_us_per_tx']:.0f}); by ecall "
                      f"{', '.join(f'{k} {v:.0f}' for k, v in e['by_ecall_us_per_tx'].items())}; per height "
                      f"{e['reexecuted_per_height']:.2f} executed, {e['applied_diff_per_height']:.2f} applied a diff",
                      flush=True)
                print("    by member (us/tx): " + "; ".join(
                    f"node{i} " + "/".join(f"{v:.0f}" for v in m.values()) for i, m in enumerate(e["by_member_us_per_tx"]))
                    + "  (execute/verify/apply/other)", flush=True)
                if batch == min(batches):
                    pr = run_paced(chain, token, senders, nonces, batch, rate=0.7 * r["tps"])
                    r["paced"] = pr
                    print(f"members {n:2d}  batch {batch:4d}  paced at {pr['rate']:.0f} tx/s (70% of the flood TPS): "
                          f"p50 {pr['p50_s']:.2f}s  p99 {pr['p99_s']:.2f}s", flush=True)
            notes[f"ecall_seconds_{n}_members"] = {f"node{i}": s["ecalls"] for i, s in enumerate(snapshot(net))}
            # opened receipts of a sample (1 in 50): refused or failed transfers must not pass for throughput
            smp = chain.check_sample()
            smp["base_fee_end"] = int(rpc(net.rpc_urls[0], "eth_gasPrice"), 16) * 4 // 5
            notes[f"sampled_receipts_{n}_members"] = smp
            print(f"# sampled receipts ({n} members): {smp}", flush=True)
            if smp["failed"]:
                raise RuntimeError(f"{smp['failed']} of {smp['sampled']} sampled transactions failed or were refused")
    plain = None
    if not args.no_plain and peer_senders:
        total = int(rounds * max(batches))
        plain = run_plain(peer_senders, total)
        print(f"plain anvil: {total} transfers from the same {len(peer_senders)} senders: TPS {plain['tps']:.0f}, "
              f"{plain['tps_per_cpu_s']:.0f} tx per CPU-second "
              f"({', '.join(f'{k} {v:.1f}' for k, v in plain['cpu']['cpu_by_role'].items())})", flush=True)
    return results, plain


def summarize(results: list[dict[str, Any]], plain: dict[str, Any] | None) -> dict[str, Any]:
    def cell(m: int, b: int) -> dict[str, Any] | None:
        return next((r for r in results if r["members"] == m and r["batch"] == b), None)

    head = cell(4, 2000)
    small = cell(4, 500)
    out: dict[str, Any] = {
        "tps_4_members_batch_2000": head and round(head["tps"], 1),
        "tx_per_cpu_s_4_members_batch_2000": head and round(head["tps_per_cpu_s"], 1),
        "enclave_us_per_tx": head and head["enclave"]["enclave_us_per_tx"],
        "enclave_floor_us_per_tx": head and head["enclave"]["enclave_floor_us_per_tx"],
        "enclave_over_floor": head and head["enclave"]["enclave_floor_us_per_tx"]
        and round(head["enclave"]["enclave_us_per_tx"] / head["enclave"]["enclave_floor_us_per_tx"], 3),
        "l1_gas_per_tx_batch_2000": head and round(head["l1_gas_per_tx"], 1),
        "p50_latency_s_batch_500": small and round(small["p50_s"], 3),  # a flood of rounds x 500
        "p99_admitted_s_batch_500_flood": small and round(small["p99_s"], 3),
        "busy_refusals_batch_500_flood": small and small["busy_refusals"],
        "p50_latency_s_batch_500_paced": small and "paced" in small and round(small["paced"]["p50_s"], 3),
        "p99_latency_s_batch_500_paced": small and "paced" in small and round(small["paced"]["p99_s"], 3),
        "plain_anvil_tps": plain and round(plain["tps"], 1),
        "plain_anvil_tx_per_cpu_s": plain and round(plain["tps_per_cpu_s"], 1),
        "confidential_over_plain": plain and head and round(head["tps"] / plain["tps"], 3),
        "confidential_over_plain_per_cpu_s": plain and head and round(head["tps_per_cpu_s"] / plain["tps_per_cpu_s"], 3),
    }
    for r in results:
        k = f"{r['members']}_members_batch_{r['batch']}"
        out[f"tps_{k}"] = round(r["tps"], 1)
        out[f"tx_per_cpu_s_{k}"] = round(r["tps_per_cpu_s"], 1)
        out[f"p50_s_{k}"] = round(r["p50_s"], 3)
        out[f"p99_s_{k}"] = round(r["p99_s"], 3)
        out[f"enclave_us_per_tx_{k}"] = r["enclave"]["enclave_us_per_tx"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 members only, fewer transactions")
    ap.add_argument("--l1", choices=["anvil", "embedded"], default="anvil")
    ap.add_argument("--members", default=None, help="comma-separated committee sizes (default 4,7,10)")
    ap.add_argument("--batches", default="500,1000,2000")
    ap.add_argument("--rounds", type=float, default=None, help="transactions per cell = rounds x batch")
    ap.add_argument("--senders", type=int, default=400, help="distinct senders (fresh keys)")
    ap.add_argument("--repeat", type=int, default=1, help="full runs, each on fresh devnets; medians + spread")
    ap.add_argument("--no-plain", action="store_true", help="skip the plain-anvil peer")
    ap.add_argument("--min-base-fee", type=int, default=0,
                    help="fees on (docs/FEES.md): the enclaves' base-fee floor in wei per gas (0: off)")
    ap.add_argument("--proposer-run", type=int, default=4,
                    help="consecutive heights per proposer (node config proposer_run; 1 = round robin)")
    ap.add_argument("--pipeline", type=int, default=4, help="heights a proposer may run ahead of L1 (node config)")
    ap.add_argument("--admission-queue-s", type=float, default=None, help="node config admission_queue_s (default: the node's)")
    ap.add_argument("--admission-min-batches", type=int, default=None, help="node config admission_min_batches")
    args = ap.parse_args()
    members = [int(x) for x in (args.members or ("4" if args.quick else "4,7,10")).split(",")]
    batches = [int(x) for x in args.batches.split(",")]
    rounds = args.rounds or (3 if args.quick else 5)
    notes: dict[str, Any] = {}
    print(f"# throughput: committees {members}, batches {batches}, {rounds} x batch transactions per cell, "
          f"L1 {args.l1}, {args.repeat} run(s)")
    runs: list[dict[str, Any]] = []
    last: tuple[list[dict[str, Any]], dict[str, Any] | None] = ([], None)
    for k in range(args.repeat):
        if args.repeat > 1:
            print(f"## run {k + 1} of {args.repeat}", flush=True)
        last = run_once(args, members, batches, rounds, notes)
        runs.append(summarize(*last))
        print(json.dumps(runs[-1]), flush=True)
    results, plain = last
    print("\n| members | batch | TPS | p50 (s) | p99 (s) | L1 gas/tx | tx per CPU-s | enclave us/tx (floor) | cores used (ours + others) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        c, e = r["cpu"], r["enclave"]
        print(f"| {r['members']} | {r['batch']} | {r['tps']:.0f} | {r['p50_s']:.2f} | {r['p99_s']:.2f} | "
              f"{r['l1_gas_per_tx']:.1f} | {r['tps_per_cpu_s']:.0f} | {e['enclave_us_per_tx']:.0f} "
              f"({e['enclave_floor_us_per_tx']:.0f}) | {c['cpu_s'] / c['wall_s']:.2f} + {c['others_busy_cores']:.2f} |")
    if plain:
        print(f"| plain anvil | - | {plain['tps']:.0f} | - | - | - | {plain['tps_per_cpu_s']:.0f} | - | - |")
    out = ROOT / "benchmarks" / "out"
    plot(results, out / "throughput.png")
    plot_cpu(results, plain, out / "throughput_cpu.png")
    print(f"plots: {out / 'throughput.png'}, {out / 'throughput_cpu.png'}")
    if os.environ.get("ENCLAVENET_BENCH_NOTES"):
        print(json.dumps(notes))
    summary: dict[str, Any] = {}
    for key in runs[0]:
        vals = [r[key] for r in runs if isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool)]
        summary[key] = round(statistics.median(vals), 3) if len(vals) == len(runs) else runs[-1][key]
    if len(runs) > 1:
        print("\n| figure | median | runs | spread |")
        print("|---|---|---|---|")
        for key in ("tx_per_cpu_s_4_members_batch_2000", "tps_4_members_batch_2000", "enclave_us_per_tx",
                    "enclave_over_floor", "p99_admitted_s_batch_500_flood", "p50_latency_s_batch_500_paced",
                    "p99_latency_s_batch_500_paced", "plain_anvil_tps", "confidential_over_plain"):
            vals = [r[key] for r in runs if isinstance(r.get(key), int | float)]
            if vals and statistics.median(vals):
                spread = (max(vals) - min(vals)) / statistics.median(vals)
                summary[f"spread_{key}"] = round(spread, 3)
                print(f"| {key} | {statistics.median(vals):.3f} | {', '.join(f'{v:.3f}' for v in vals)} | "
                      f"{100 * spread:.1f} % |")
        summary["runs"] = len(runs)
        summary["runs_tx_per_cpu_s_4_members_batch_2000"] = [r["tx_per_cpu_s_4_members_batch_2000"] for r in runs]
    summary["min_base_fee"] = args.min_base_fee
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
