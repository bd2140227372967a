"""`enclavenet devnet` and `enclavenet l1` as a user runs them: they come up, serve, and on
SIGINT stop every process they started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from web3 import Web3

from enclavenet.cli import describe_devnet

pytestmark = pytest.mark.integration

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid,ppid"], capture_output=True, text=True).stdout.split("\n")[1:]
    children: dict[int, list[int]] = {}
    for line in out:
        parts = line.split()
        if len(parts) == 2:
            children.setdefault(int(parts[1]), []).append(int(parts[0]))
    seen: set[int] = set()
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return seen


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_devnet_command_serves_and_stops_everything_on_sigint(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "enclavenet.cli", "devnet", "-n", "2", "--tee", "sgx,tdx", "--quorum", "2",
         "--min-types", "2", "--json", "--dir", str(tmp_path / "dn")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "no output"
        info = json.loads(line)
        assert len(info["nodes"]) == 2 and info["quorum"] == 2
        # `enclavenet devnet` starts the explorer too (issue 12)
        assert info["explorer"].startswith("http://127.0.0.1:")
        assert "EnclaveNet explorer" in requests.get(info["explorer"] + "/", timeout=10).text
        for nd in info["nodes"]:
            r = requests.post(nd["url"], json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
                              timeout=10).json()
            assert int(r["result"], 16) >= 1
        w3 = Web3(Web3.HTTPProvider(info["l1"]))
        assert w3.eth.chain_id == info["l1ChainId"]
        assert int(w3.eth.get_code(info["rollup"]).hex() or "0", 16) != 0
        # the gateway in front of node 0, with the ten funded development accounts (anvil's, same keys)
        assert info["gateway"] and len(info["devAccounts"]) == 10
        assert info["devAccounts"][0]["address"] == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        r = requests.post(info["gateway"], json={"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance",
                                                 "params": [info["devAccounts"][9]["address"], "latest"]}, timeout=30).json()
        assert int(r["result"], 16) == info["devDeposit"] > 0  # deposited on L1, credited inside EnclaveNet
        text = describe_devnet(info)
        assert f"\ngateway     {info['gateway']}" in text and "(9) 0x" in text
        kids = _descendants(proc.pid)
        assert len(kids) >= 6  # the L1, two nodes and their enclaves, the gateway
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        assert proc.returncode == 0
        deadline = time.monotonic() + 10
        while any(_alive(k) for k in kids):
            assert time.monotonic() < deadline, f"left running: {[k for k in kids if _alive(k)]}"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_l1_command_serves_json_rpc_batches(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "enclavenet.cli", "l1", "--port", "0"], stdout=subprocess.PIPE,
                            env=_env(), text=True)
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        url = ready["url"]
        out = requests.post(url, json=[{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"},
                                       {"jsonrpc": "2.0", "id": 2, "method": "eth_getLogs", "params": [{"fromBlock": "0x0"}]},
                                       {"jsonrpc": "2.0", "id": 3, "method": "eth_nope"}], timeout=10).json()
        assert out[0]["result"] == hex(31337) and out[1]["result"] == [] and out[2]["error"]["code"] == -32601
        w3 = Web3(Web3.HTTPProvider(url))
        a = w3.eth.accounts[0]
        h = w3.eth.send_transaction({"from": a, "to": w3.eth.accounts[1], "value": 1})  # auto-mined
        assert w3.eth.wait_for_transaction_receipt(h, timeout=10).status == 1
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_script_holding_a_devnet_stops_every_process_on_sigterm() -> None:
    """``kill`` (SIGTERM) of a benchmark or script inside ``with Devnet(...)`` used to leave its
    L1, node and enclave processes running (they start in sessions of their own): a killed chaos
    run kept loading the machine. Now SIGTERM unwinds the ``with`` like Ctrl-C."""
    code = ("import time\nfrom enclavenet.devnet import Devnet\n"
            "with Devnet(n=1, tee_types=['sgx'], min_types=1):\n    print('up', flush=True)\n    time.sleep(300)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "up"
        kids = _descendants(p.pid)
        assert len(kids) >= 3, kids  # the L1, the node, its enclave
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 20
        while any(_alive(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [k for k in kids if _alive(k)], "processes left running after SIGTERM"
    finally:
        if p.poll() is None:
            p.kill()
