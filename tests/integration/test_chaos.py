"""The fixed chaos set of make test (benchmarks/chaos.py --quick): a restart of every node; hostile
links with stale enclave inputs plus a hung proposer; the L1 RPC down for every node plus a crashed
voter -- over a running load, on a real devnet. Invariants: no stall, every member on L1's header
after each schedule, no acknowledged transaction lost, none executed twice, deposits credited once.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _chaos() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chaos_bench", ROOT / "benchmarks" / "chaos.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_fixed_chaos_schedules_keep_every_invariant() -> None:
    chaos = _chaos()
    out = chaos.main(["--quick", "--timeout", "1.0"])
    assert out["schedules"] == len(chaos.QUICK)
    assert out["stalls"] == 0, out
    assert out["diverged"] == 0, out
    assert out["transactions_lost"] == 0, out
    assert out["executed_twice"] == 0, out
    assert out["deposits_ok"], out
    assert out["transfers_included"] > 0 and out["sink_balance"] == out["transfers_included"], out
    assert out["max_recovery_over_timeout"] is not None
    assert out["max_recovery_over_timeout"] <= chaos.STALL_FACTOR
