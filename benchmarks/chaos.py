"""Seeded chaos (Jepsen-style, bounded): random fault schedules over a running load, invariants after each.

    .venv/bin/python benchmarks/chaos.py [--seed S] [--schedules N] [--quick] [--timeout T]

One devnet: the embedded L1, 4 node processes (sgx, tdx, sev-snp, csv; quorum 3 of >= 3 types),
each with its enclave process, ``allow_faults``. One user per node sends a transfer (value 1, to
one sink account) through that node every 0.25 s for the whole run.

Schedule i draws 1-2 faults from ``random.Random(seed + i)`` -- so a failing row (it prints its
seed) is reproduced alone with ``--seed <its seed> --schedules 1``:

* ``crash`` the next proposer or a voter (SIGKILL), restart it 0.5-2 s later;
* ``hang``: SIGSTOP a node 0.5-2 s, then SIGCONT;
* ``restart_all`` / ``restart_some``: kill every node (or 2) at once, start them again;
* ``links``: drop / delay / replay / reorder peer messages on every node for 2-3 s (the fault
  layer of node/peers.py), with stale / replayed enclave inputs (``enclaveLink.replay``);
* ``l1_down``: the L1 RPC unavailable 1-4 s for one node or all (``l1.down_s``);
* ``cpu_starve``: one node gets 1/3 of the CPU for 2-3 s (SIGSTOP 80 ms / SIGCONT 40 ms).

A deposit (a distinct amount, from one depositor) is made during every schedule. After the
faults clear: the next header is awaited (recovery, counted from the moment every restarted node
serves again and has read L1 once: process start-up is not the protocol's doing); a schedule whose recovery
exceeds ``STALL_FACTOR`` x proposer_timeout is a stall. Then every member must follow L1 with the
same finalised header hash (so the same state root: the header commits to it).

At the end: every acknowledged transaction has a receipt (``transactions_lost``), the sink holds
exactly one unit per transfer that succeeded (``executed_twice``: more), the depositor's balance is
exactly the sum of its deposits (``deposits_ok``). One row per schedule, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from eth_account import Account  # noqa: E402
from web3 import Web3  # noqa: E402

from enclavenet.client import deposit, wrap  # noqa: E402
from enclavenet.devnet import Devnet  # noqa: E402
from faults import ETH, Load, l1_pay, rpc, until  # noqa: E402

STALL_FACTOR = 10.0
KINDS = ("crash", "hang", "restart_all", "restart_some", "links", "l1_down", "cpu_starve")
QUICK = [  # the fixed set of make test (tests/integration/test_chaos.py): one of each family
    [("restart_all", {})],
    [("links", {"drop": 0.2, "replay": 0.3, "reorder": 0.4, "enclave_replay": 0.5, "window": 2.0}),
     ("hang", {"who": "proposer", "s": 1.2})],
    [("l1_down", {"all": True, "s": 2.0}), ("crash", {"who": "voter", "s": 1.0})],
]


def draw(rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for _ in range(rng.choice((1, 1, 2))):
        kind = rng.choice(KINDS)
        p: dict[str, Any] = {}
        if kind in ("crash", "hang"):
            p = {"who": rng.choice(("proposer", "voter")), "s": round(rng.uniform(0.5, 2.0), 2)}
        elif kind == "restart_some":
            p = {"k": 2}
        elif kind == "links":
            p = {k: round(rng.uniform(lo, hi), 2) for k, lo, hi in
                 (("drop", 0.0, 0.25), ("delay", 0.0, 0.15), ("replay", 0.0, 0.5), ("reorder", 0.0, 0.6))
                 if rng.random() < 0.6}
            p["enclave_replay"] = round(rng.uniform(0.0, 0.5), 2) if rng.random() < 0.5 else 0.0
            p["window"] = round(rng.uniform(2.0, 3.0), 2)
        elif kind == "l1_down":
            p = {"all": rng.random() < 0.5, "s": round(rng.uniform(1.0, 4.0), 2)}
        elif kind == "cpu_starve":
            p = {"s": round(rng.uniform(2.0, 3.0), 2)}
        out.append((kind, p))
    return out


class Chaos:
    def __init__(self, net: Devnet, load: Load, timeout: float) -> None:
        self.net, self.load, self.timeout = net, load, timeout
        self.restarted = False

    def pick(self, who: str, rng: random.Random) -> int:
        p = self.net.proposer_index()
        return p if who == "proposer" else (p + rng.randrange(1, self.net.n)) % self.net.n

    def serve_again(self, idx: list[int]) -> None:
        net = self.net
        for i in idx:
            p = net._node_proc(i)
            p.start(wait_ready=False)
            net.procs[i] = p
        until("restarted nodes serving", lambda: all(net.status(i) is not None for i in idx), 120, every=0.05)
        # ... and having read L1 once (its first poll ends the start-up: seconds on a loaded machine)
        h = net.l1_height()
        until("restarted nodes following L1", lambda: all((net.status(i) or {}).get("height", -1) >= h for i in idx),
              120, every=0.05)
        for i in idx:
            self.load.paused.discard(i)
        self.restarted = True

    def apply(self, kind: str, p: dict[str, Any], rng: random.Random) -> None:
        net = self.net
        if kind == "crash":
            v = self.pick(p["who"], rng)
            self.load.paused.add(v)
            net.kill(v)
            time.sleep(p["s"])
            self.serve_again([v])
        elif kind == "hang":
            v = self.pick(p["who"], rng)
            net.suspend(v)
            time.sleep(p["s"])
            net.resume(v)
        elif kind in ("restart_all", "restart_some"):
            idx = list(range(net.n)) if kind == "restart_all" else rng.sample(range(net.n), p["k"])
            self.load.paused.update(idx)
            for i in idx:
                net.kill(i)
            self.serve_again(idx)
        elif kind == "links":
            links = {k: v for k, v in p.items() if k in ("drop", "delay", "replay", "reorder") and v}
            el = {"replay": p["enclave_replay"], "seed": rng.randrange(1 << 30)} if p.get("enclave_replay") else None
            for i in range(net.n):
                net.faults(i, links={**links, "seed": rng.randrange(1 << 30)} if links else None, enclave_link=el)
            time.sleep(p["window"])
            for i in range(net.n):
                net.faults(i, links=None, enclave_link=None)
        elif kind == "l1_down":
            idx = list(range(net.n)) if p["all"] else [rng.randrange(net.n)]
            for i in idx:
                net.faults(i, l1={"down_s": p["s"]})
            time.sleep(p["s"])
        elif kind == "cpu_starve":
            v = rng.randrange(net.n)
            end = time.monotonic() + p["s"]
            while time.monotonic() < end:  # a third of the CPU, in slices: starvation, not a pause
                net.suspend(v)
                time.sleep(0.08)
                net.resume(v)
                time.sleep(0.04)
        else:  # pragma: no cover
            raise ValueError(kind)

    def converged(self, h_min: int) -> tuple[bool, str]:
        """Every member finalised a height >= ``h_min`` with the header hash L1 accepted there (the
        header commits to the state root: same hash, same state). The load keeps running, so each
        member is compared at its own finalised height."""
        net = self.net
        deadline = time.monotonic() + 60
        why = ""
        while time.monotonic() < deadline:
            bad = []
            for i in range(net.n):
                st = net.status(i) or {}
                f = st.get("finalized")
                if not isinstance(f, int) or f < h_min:
                    bad.append(f"node{i} finalised {f} < {h_min}")
                    continue
                acc = None
                for j in range(net.n):  # L1's header at f, as the nodes' L1 followers read it from the logs
                    try:
                        acc = rpc(net.rpc_urls[(i + 1 + j) % net.n], "enclavenet_getHeader", hex(f))
                        break
                    except Exception:
                        continue
                if acc is None or acc.get("hash") != st.get("finalizedHash"):
                    bad.append(f"node{i} at {f}: {str(st.get('finalizedHash'))[:12]} vs L1 {str((acc or {}).get('hash'))[:12]}")
            if not bad:
                return True, ""
            why = "; ".join(bad)
            time.sleep(0.3)
        return False, why


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--schedules", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="the fixed set of 3 schedules of make test")
    ap.add_argument("--timeout", type=float, default=1.5, help="proposer_timeout of the devnet (seconds)")
    args = ap.parse_args(argv)
    timeout = args.timeout
    plans: list[tuple[int | None, list[tuple[str, dict[str, Any]]]]] = [(None, s) for s in QUICK] if args.quick else \
        [(args.seed + i, draw(random.Random(args.seed + i))) for i in range(args.schedules)]
    opts = {"batch_interval": 0.05, "proposer_timeout": timeout, "allow_faults": True, "batch_size": 200}
    rows: list[dict[str, Any]] = []
    t_start = time.monotonic()
    with Devnet(n=4, **opts) as net:  # type: ignore[arg-type]
        assert net.w3 is not None
        depositor = Account.create()
        l1_pay(net.w3, net.accounts[0], depositor.address, ETH)
        sink = Account.create()
        load = Load(net)
        load.sink = sink.address
        load.start()
        chaos = Chaos(net, load, timeout)
        deposited = 0
        print(f"{len(plans)} schedules, proposer_timeout {timeout}s, seed {args.seed}", flush=True)
        print(f"{'#':>3} {'seed':>6} {'recovery':>8} {'/timeout':>8}  faults", flush=True)
        for n_row, (seed, plan) in enumerate(plans):
            rng = random.Random(seed if seed is not None else 10_000 + n_row)
            amount = (n_row + 1) * 10**12
            dep = threading.Thread(target=deposit, args=(net.w3, depositor, net.rollup.address, amount), daemon=True)
            dep.start()
            chaos.restarted = False
            for kind, p in plan:
                chaos.apply(kind, p, rng)
            dep.join(60)
            deposited += amount
            t_clear, h_clear = time.monotonic(), net.l1_height()
            try:
                until("a header after the faults", lambda h=h_clear: net.l1_height() > h, 60, every=0.02)
                rec: float | None = time.monotonic() - t_clear
            except TimeoutError:
                rec = None
            ok, why = chaos.converged(h_clear)
            row = {"schedule": n_row, "seed": seed, "faults": plan, "recovery_s": None if rec is None else round(rec, 3),
                   "recovery_over_timeout": None if rec is None else round(rec / timeout, 3),
                   "stall": rec is None or rec > STALL_FACTOR * timeout, "converged": ok}
            if not ok:
                row["divergence"] = why
            rows.append(row)
            desc = ", ".join(f"{k}{p}" if p else k for k, p in plan)
            rs = "-" if rec is None else f"{rec:.2f}"
            ro = "-" if rec is None else f"{rec / timeout:.2f}"
            print(f"{n_row:>3} {seed!s:>6} {rs:>8} {ro:>8}  {desc}{'  STALL' if row['stall'] else ''}"
                  f"{'' if ok else '  DIVERGED ' + why}", flush=True)
        load.stop()
        lost = load.lost()
        # exactly-once: the sink holds one unit per transfer that succeeded
        viewer = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[0], request_kwargs={"timeout": 30})), sink, l1=net.w3)
        ok_transfers = 0
        for i, u in enumerate(load.users):
            w = load.w3(0, i)
            ok_transfers += int(w.eth.get_transaction_count(u.address))  # each included transfer used one nonce
        sink_balance = int(viewer.eth.get_balance(sink.address))
        wd = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[1], request_kwargs={"timeout": 30})), depositor, l1=net.w3)
        until("the deposits", lambda: int(wd.eth.get_balance(depositor.address)) >= deposited, 60, every=0.3)
        dep_balance = int(wd.eth.get_balance(depositor.address))
    timed = [r["recovery_over_timeout"] for r in rows if r["recovery_over_timeout"] is not None]
    out = {
        "schedules": len(rows),
        "stalls": sum(r["stall"] for r in rows),
        "diverged": sum(not r["converged"] for r in rows),
        "transactions_lost": lost,
        "executed_twice": max(0, sink_balance - ok_transfers),
        "transfers_included": ok_transfers,
        "sink_balance": sink_balance,
        "deposits_ok": dep_balance == deposited,
        "max_recovery_over_timeout": max(timed) if timed else None,
        "seed": args.seed,
        "quick": args.quick,
        "proposer_timeout_s": timeout,
        "stall_seeds": [r["seed"] for r in rows if r["stall"]],
        "seconds": round(time.monotonic() - t_start, 1),
    }
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
