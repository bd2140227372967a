"""Data availability providers: ingest throughput on SQLite and PostgreSQL, and recovery time.

    .venv/bin/python benchmarks/dap.py [--quick]

1. **Ingest.** One ``enclavenet dap`` process per backend (SQLite file; a real PostgreSQL
   server started here with initdb/pg_ctl, fsync on). A client uploads batches of realistic
   shape (CBOR array of 1,000 items of 600 bytes: ~0.6 MB) through the DAP's HTTP API,
   4 uploads in flight; each upload is checked against its data commitment, stored in one
   committed transaction, then receipted (secp256k1). MB/s = batch-data bytes / wall seconds.

2. **Recovery.** A 2-member committee of in-process enclaves builds a chain of real accepted
   heights (each: 20 L1 deposits into a fixed set of 400 accounts, so the history grows and the
   state does not: a snapshot's cost depends on the state's size, not on the history), uploads every batch
   and, every 16 heights, a sealed snapshot to a DAP (SQLite). A fresh member (new enclave,
   admitted to the committee, given the epoch key) then recovers from the DAP alone to
   heights H of that chain (each 8 past a snapshot): (a) replaying every batch from height 1,
   (b) restoring the newest snapshot at or below H and replaying the 8 after it. (a) must grow no faster than linearly in H;
   (b) must not depend on the history before the snapshot.

Ends with one JSON line: sqlite_ingest_mb_s, postgres_ingest_mb_s,
recovery_s_per_1000_headers (replay without a snapshot, fitted slope), recovery_snapshot_s
(the snapshot path at the longest chain), and the series.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cbor2
from tqdm import tqdm

from enclavenet.crypto.dap import data_commitment
from enclavenet.crypto.header import EMPTY_WITHDRAWALS_HASH, Header
from enclavenet.dap.client import DapPool
from enclavenet.dap.pgserver import TempPostgres
from enclavenet.dap.process import DapProcess
from enclavenet.dap.recovery import recover
from enclavenet.dap.simchain import SimChain

OUT = Path(__file__).resolve().parent / "out"
CHAIN_ID = 31337
ROLLUP = "0x" + "5e" * 20
ITEMS, ITEM_BYTES = 1000, 600  # ~0.6 MB per batch (a 1,000-tx batch: envelopes + sealed receipts)
IN_FLIGHT = 4
ACCOUNTS = 400  # deposits go to a fixed set of accounts: the state stays the same size as history grows


def synthetic_batches(n: int) -> list[tuple[Header, bytes]]:
    out = []
    prev = b"\x00" * 32
    for h in range(1, n + 1):
        items = [cbor2.dumps({"v": 1, "height": h})] + [os.urandom(ITEM_BYTES) for _ in range(ITEMS)]
        hd = Header(h, prev, 0, os.urandom(32), h, 0, os.urandom(32), os.urandom(32), os.urandom(32),
                    os.urandom(32), os.urandom(32), EMPTY_WITHDRAWALS_HASH, data_commitment(items))
        prev = hd.hash()
        out.append((hd, cbor2.dumps(items)))
    return out


async def _ingest(proc: DapProcess, batches: list[tuple[Header, bytes]]) -> float:
    async with DapPool({proc.address or "": proc.url or ""}, CHAIN_ID, ROLLUP, timeout=120) as pool:
        await pool.store(*batches[0])  # warm up (connection, schema)
        sem = asyncio.Semaphore(IN_FLIGHT)

        async def one(h: Header, d: bytes) -> None:
            async with sem:
                await pool.store(h, d)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(h, d) for h, d in batches[1:]))
        return time.perf_counter() - t0


def ingest(kind: str, store: str, tmp: Path, batches: list[tuple[Header, bytes]]) -> dict[str, Any]:
    proc = DapProcess(tmp / f"{kind}.key", store, ROLLUP, CHAIN_ID, log_path=tmp / f"{kind}.log").start()
    try:
        secs = asyncio.run(_ingest(proc, batches))
    finally:
        proc.stop()
    total = sum(len(d) for _, d in batches[1:])
    return {"backend": kind, "batches": len(batches) - 1, "mb": total / 1e6, "seconds": secs,
            "mb_s": total / 1e6 / secs, "batches_s": (len(batches) - 1) / secs}


async def _recovery(chain: SimChain, proc: DapProcess, heights: list[int], reps: int) -> list[dict[str, Any]]:
    rows = []
    async with DapPool({proc.address or "": proc.url or ""}, CHAIN_ID, chain.cfg["rollup"], timeout=120) as pool:
        for h in tqdm(heights, desc="recovery", file=sys.stderr):
            row: dict[str, Any] = {"height": h}
            for mode in ("replay", "snapshot"):
                times, last = [], None
                for _ in range(reps):
                    member = chain.new_member()
                    st = await recover(member, pool, chain.accepted, use_snapshot=mode == "snapshot", to_height=h)
                    member.close()
                    times.append(st.total_s)
                    last = st
                assert last is not None
                row[f"{mode}_s"] = statistics.median(times)
                row[f"{mode}_replayed"] = last.replayed
                row[f"{mode}_snapshot_height"] = last.snapshot_height
                row[f"{mode}_fetch_s"] = last.fetch_s
            rows.append(row)
    return rows


def recovery(tmp: Path, max_height: int, heights: list[int], reps: int) -> tuple[list[dict[str, Any]], float]:
    chain = SimChain(snapshot_every=16)
    proc = DapProcess(tmp / "rec.key", f"sqlite://{tmp}/rec.db", chain.cfg["rollup"], CHAIN_ID,
                      log_path=tmp / "rec.log").start()

    async def build() -> None:
        async with DapPool({proc.address or "": proc.url or ""}, CHAIN_ID, chain.cfg["rollup"]) as pool:
            for _ in tqdm(range(max_height), desc="building the chain", file=sys.stderr):
                step = chain.next(deposits=20, accounts=ACCOUNTS)
                await pool.store(step.accepted.header, step.batch_data, snapshot=step.snapshot)

    try:
        t0 = time.perf_counter()
        asyncio.run(build())
        build_s = time.perf_counter() - t0
        rows = asyncio.run(_recovery(chain, proc, heights, reps))
    finally:
        proc.stop()
        chain.close()
    return rows, build_s


def slope(xs: list[float], ys: list[float]) -> float:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def plot(ing: list[dict[str, Any]], rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.bar([r["backend"] for r in ing], [r["mb_s"] for r in ing], color=["tab:blue", "tab:orange"])
    a.set_ylabel("MB/s (batch data, receipted)")
    a.set_title(f"DAP ingest ({IN_FLIGHT} uploads in flight)")
    hs = [r["height"] for r in rows]
    b.plot(hs, [r["replay_s"] for r in rows], "o-", label="replay every batch from height 1")
    b.plot(hs, [r["snapshot_s"] for r in rows], "s-", label="newest snapshot + replay the rest")
    b.set_xlabel("chain length (accepted headers)")
    b.set_ylabel("seconds to recover a new member")
    b.set_xlim(left=0)
    b.set_ylim(bottom=0)
    b.set_title("recovery from the DAPs")
    b.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer batches and a shorter chain")
    args = p.parse_args(argv)
    n_batches = 61 if args.quick else 201
    # heights 8 past a snapshot (every 16): the snapshot path always replays 8 batches
    ks = (1, 3, 5, 6) if args.quick else (6, 14, 22, 30)
    heights = [16 * k + 8 for k in ks]
    max_height = heights[-1]
    reps = 3
    tmp = Path(tempfile.mkdtemp(prefix="enclavenet-dap-bench-"))
    batches = synthetic_batches(n_batches)
    ing = [ingest("sqlite", f"sqlite://{tmp}/ingest.db", tmp, batches)]
    with TempPostgres() as pg:
        ing.append(ingest("postgresql", pg.create_database("ingest"), tmp, batches))
    rows, build_s = recovery(tmp, max_height, heights, reps)

    print(f"ingest: {n_batches - 1} batches of {ITEMS} x {ITEM_BYTES} B items, {IN_FLIGHT} in flight")
    print(f"{'backend':<12} {'MB':>8} {'seconds':>8} {'MB/s':>8} {'batches/s':>10}")
    for r in ing:
        print(f"{r['backend']:<12} {r['mb']:>8.1f} {r['seconds']:>8.2f} {r['mb_s']:>8.2f} {r['batches_s']:>10.1f}")
    print(f"\nrecovery of a fresh member from one DAP (chain of {max_height} heights x 20 deposits into {ACCOUNTS} "
          f"accounts, built in "
          f"{build_s:.1f} s; snapshot every 16 heights):")
    print(f"{'height':>7} {'replay s':>9} {'replayed':>9} {'snapshot s':>11} {'from snap':>10} {'replayed':>9}")
    for r in rows:
        print(f"{r['height']:>7} {r['replay_s']:>9.3f} {r['replay_replayed']:>9} {r['snapshot_s']:>11.3f} "
              f"{r['snapshot_snapshot_height']:>10} {r['snapshot_replayed']:>9}")
    hs = [float(r["height"]) for r in rows]
    per_header = slope(hs, [r["replay_s"] for r in rows])
    # linear or better: time per header at the longest chain is no more than ~1.5x the shortest's
    ratio = (rows[-1]["replay_s"] / rows[-1]["height"]) / (rows[0]["replay_s"] / rows[0]["height"])
    snap_spread = max(r["snapshot_s"] for r in rows) / max(1e-9, min(r["snapshot_s"] for r in rows))
    print(f"\nreplay: {1000 * per_header:.2f} s per 1,000 headers (fitted slope); per-header cost at "
          f"H={rows[-1]['height']} vs H={rows[0]['height']}: x{ratio:.2f} (<= ~1 means no worse than linear)")
    print(f"snapshot path: {min(r['snapshot_s'] for r in rows):.3f}..{max(r['snapshot_s'] for r in rows):.3f} s "
          f"over all H (spread x{snap_spread:.2f}; it restores one state and replays 8 heights whatever the history)")
    png = OUT / "dap.png"
    plot(ing, rows, png)
    print(f"\nplot: {png}")
    print(json.dumps({
        "sqlite_ingest_mb_s": round(ing[0]["mb_s"], 2),
        "postgres_ingest_mb_s": round(ing[1]["mb_s"], 2),
        "sqlite_ingest_batches_s": round(ing[0]["batches_s"], 1),
        "postgres_ingest_batches_s": round(ing[1]["batches_s"], 1),
        "recovery_s_per_1000_headers": round(1000 * per_header, 2),
        "recovery_snapshot_s": round(rows[-1]["snapshot_s"], 3),
        "recovery_replay_per_header_ratio": round(ratio, 2),
        "recovery_heights": [r["height"] for r in rows],
        "recovery_replay_s": [round(r["replay_s"], 3) for r in rows],
        "recovery_snapshot_series_s": [round(r["snapshot_s"], 3) for r in rows],
        "deposits_per_header": 20,
        "quick": args.quick,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
