"""What the rollback protection costs per header: the platform monotonic counter's advance.

    .venv/bin/python benchmarks/rollback_counter.py [--n 300] [--nv-dir DIR]

1. ``counter_advance`` alone (tee/counter.py: flock, read + MAC check, write temp, fsync, rename,
   fsync of the directory) on the machine's NV directory (default: a temporary directory under
   ``--nv-dir`` or the system temp dir), wall clock and CPU time, median and p90.
2. ``verify_batch`` of an empty batch (a voter signing one header: the hot path) in an
   in-process enclave, with the counter and with ``counter_advance`` replaced by an in-memory
   stand-in, median wall clock of each and the difference. The advance happens once per ecall
   that records a header, timeout or input -- never per transaction -- so this difference is the
   whole per-header cost; next to a 2,000-transfer batch (about 1.5 CPU-s, docs/NODE.md) it is
   the share printed last.

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from enclavenet.enclave.harness import Member, batch_request, form_committee, program_config
from enclavenet.tee import (
    DEFAULT_PROGRAM,
    CounterValue,
    InProcessEnclave,
    SimulatedVendor,
    measure_enclave,
)

BATCH_CPU_S = 1.5  # one 2,000-transfer batch, docs/NODE.md (1,288 tx per CPU-s)


def _q(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]


def bench_advance(nv: Path, n: int) -> dict[str, float]:
    machine = SimulatedVendor.generate("sgx").new_platform(nv_dir=nv)
    enclave = machine.enclave_view(measure_enclave(DEFAULT_PROGRAM, {}))
    wall: list[float] = []
    cpu: list[float] = []
    for i in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        enclave.counter_advance(b"bench", i, i)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"advance_wall_us_median": statistics.median(wall) * 1e6, "advance_wall_us_p90": _q(wall, 0.9) * 1e6,
            "advance_cpu_us_median": statistics.median(cpu) * 1e6}


class _Voter:
    """A 2-member committee (sgx proposer, tdx voter) making empty batches, one height per step."""

    def __init__(self, nv: Path, counter: bool) -> None:
        vendors = [SimulatedVendor.generate("sgx"), SimulatedVendor.generate("tdx")]
        cfg = program_config(vendors, chain_id=4242)
        handles = [InProcessEnclave(v.new_platform(nv_dir=nv / v.tee_name), DEFAULT_PROGRAM, cfg) for v in vendors]
        if not counter:  # the voter's counter in memory: what the enclave would cost without the protection
            mem: dict[bytes, CounterValue] = {}

            def in_memory(cid: bytes, expected: int, high: int) -> CounterValue:
                cur = mem.get(cid, CounterValue())
                mem[cid] = CounterValue(cur.count + 1, max(cur.high, high))
                return mem[cid]

            server = handles[1]._server
            assert server is not None and server.platform is not None
            server.platform.counter_advance = in_memory  # type: ignore[method-assign]
        self.a, self.b = (Member(h) for h in handles)
        form_committee([self.a, self.b], quorum=2, min_types=2)
        self.prev, self.h = bytes(32), 0

    def step(self) -> float:
        self.h += 1
        req = batch_request(self.h, self.prev, l1_block=1, timestamp=1_700_000_000 + self.h)
        out = self.a.call("execute_batch", **req)
        t0 = time.perf_counter()
        vote = self.b.call("verify_batch", header=out["header"], **req)
        dt = time.perf_counter() - t0
        sigs = [out["signature"], vote["signature"]]
        for m in (self.a, self.b):
            m.call("accept_header", header=out["header"], signatures=sigs)
        self.prev = out["header_hash"]
        return dt

    def close(self) -> None:
        self.a.close()
        self.b.close()


def bench_vote(nv: Path, n: int) -> dict[str, float]:
    on, off = _Voter(nv / "on", True), _Voter(nv / "off", False)
    for _ in range(5):  # warm up both
        on.step()
        off.step()
    t_on: list[float] = []
    t_off: list[float] = []
    for _ in range(n):  # interleaved, so a busy moment of the machine hits both alike
        t_on.append(on.step())
        t_off.append(off.step())
    on.close()
    off.close()
    m_on, m_off = statistics.median(t_on), statistics.median(t_off)
    return {"vote_ms_median_with_counter": m_on * 1e3, "vote_ms_median_without": m_off * 1e3,
            "per_header_ms": (m_on - m_off) * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--nv-dir", default=None, help="where the simulated NV directories go (default: system temp)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.nv_dir) as d:
        res: dict[str, Any] = {"n": args.n, "nv_dir": args.nv_dir or tempfile.gettempdir()}
        res.update(bench_advance(Path(d) / "adv", args.n))
        res.update(bench_vote(Path(d) / "vote", max(20, args.n // 3)))
    res["share_of_2000_tx_batch"] = res["per_header_ms"] / 1e3 / BATCH_CPU_S
    print(f"{'counter_advance (wall, median / p90)':42s} {res['advance_wall_us_median']:8.0f} / "
          f"{res['advance_wall_us_p90']:.0f} us")
    print(f"{'counter_advance (CPU, median)':42s} {res['advance_cpu_us_median']:8.0f} us")
    print(f"{'verify_batch, empty batch, with counter':42s} {res['vote_ms_median_with_counter']:8.2f} ms")
    print(f"{'verify_batch, empty batch, counter in memory':42s} {res['vote_ms_median_without']:8.2f} ms")
    print(f"{'per header (difference)':42s} {res['per_header_ms']:8.2f} ms "
          f"({100 * res['share_of_2000_tx_batch']:.2f}% of a 2,000-transfer batch)")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
