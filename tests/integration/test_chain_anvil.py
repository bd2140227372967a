"""The anvil process: options, stopping, a node that goes away, a missing binary."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from enclavenet.chain import AnvilError, AnvilProcess, L1Unavailable, RpcL1, start_anvil

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) counts as gone
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def test_options_and_stop(anvil_available: str) -> None:
    with AnvilProcess(chain_id=1234, accounts=3, balance_eth=5, block_time=0.2) as node:
        l1 = node.connect()
        assert l1.chain_id == l1.w3.eth.chain_id == 1234
        assert [a.address for a in l1.accounts] == [a.address for a in node.accounts]
        assert l1.w3.eth.get_balance(l1.accounts[2].address) == 5 * 10**18
        start = l1.block_number()
        time.sleep(0.7)  # interval mining: a block every 0.2 s
        assert l1.block_number() >= start + 2
        pid = node.pid
        assert pid is not None and _alive(pid)
    assert not _alive(pid)


def test_transactions_to_a_node_that_went_away(anvil_available: str) -> None:
    l1 = start_anvil()
    sender = l1.sender(0, backoff=0.001)
    assert sender.send_raw(l1.accounts[1].address, value=1)["status"] == 1
    l1.close()
    started = time.monotonic()
    with pytest.raises(L1Unavailable, match=rf"cannot reach L1 at {l1.url}: connection refused"):
        sender.send_raw(l1.accounts[1].address, value=1)
    assert time.monotonic() - started < 5


def test_sender_threads_share_one_nonce_counter(anvil_l1: RpcL1) -> None:
    sender = anvil_l1.sender(6)
    start = anvil_l1.w3.eth.get_transaction_count(sender.address)
    with ThreadPoolExecutor(4) as pool:
        receipts = list(
            pool.map(lambda _: sender.send_raw(anvil_l1.accounts[7].address, value=1), range(24))
        )
    assert all(r["status"] == 1 for r in receipts)
    assert anvil_l1.w3.eth.get_transaction_count(sender.address) == start + 24


def test_anvil_is_killed_at_interpreter_exit(anvil_available: str) -> None:
    code = (
        "from enclavenet.chain import AnvilProcess\n"
        "node = AnvilProcess().start()\n"
        "print(node.pid, flush=True)\n"
    )  # exits without stopping it
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    pid = int(out.stdout.split()[0])
    for _ in range(100):
        if not _alive(pid):
            break
        time.sleep(0.05)
    assert not _alive(pid)


def test_missing_anvil_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENCLAVENET_ANVIL", str(tmp_path / "no-such-anvil"))
    with pytest.raises(AnvilError, match=r"ENCLAVENET_ANVIL=.* is not an executable file"):
        start_anvil()


def test_anvil_available_fails_rather_than_skips(tmp_path: Path) -> None:
    """Without anvil, a test needing it FAILS with the install hint (it is never skipped)."""
    env = {**os.environ, "ENCLAVENET_ANVIL": str(tmp_path / "no-such-anvil")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/integration/test_chain_backends.py::test_anvil_reorg_with_transactions"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout
    assert "1 error" in result.stdout and "skipped" not in result.stdout
    assert "is not an executable file" in result.stdout


def test_a_test_may_roll_back_below_its_snapshot_1(anvil_l1: RpcL1) -> None:
    """anvil cannot revert to a snapshot whose block is gone: the fixture restarts anvil."""
    anvil_l1.sender(8).send_raw(anvil_l1.accounts[9].address, value=1)
    anvil_l1.rollback(anvil_l1.block_number())


def test_a_test_may_roll_back_below_its_snapshot_2(anvil_l1: RpcL1) -> None:
    assert anvil_l1.w3.eth.get_transaction_count(anvil_l1.accounts[8].address) == 0
    assert anvil_l1.sender(8).send_raw(anvil_l1.accounts[9].address, value=1)["status"] == 1
