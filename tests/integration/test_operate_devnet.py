"""Operating a live devnet (issue 12): the explorer in a real browser (Debian's chromium driven by
selenium), Prometheus metrics scraped from a node and a DAP, JSON logs without secrets, and
``enclavenet status``. One devnet for the module: 4 members (sgx, tdx, sev-snp, csv), one DAP,
the explorer started by the devnet as ``enclavenet devnet`` starts it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account import Account
from web3.logs import DISCARD

from enclavenet.chain.rpc import RpcL1
from enclavenet.chain.sender import TxSender
from enclavenet.devnet import Devnet
from enclavenet.loadgen import Chain

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SRC = str(Path(__file__).resolve().parents[2] / "src")
OUT = Path(__file__).resolve().parents[2] / "benchmarks" / "out"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    base = tmp_path_factory.mktemp("operate")
    with Devnet(n=4, daps=1, explorer=True, base_dir=base / "dn", node_options={"log_format": "json"}) as d:
        yield d


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 60.0, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def send_transfers(net: Devnet, n: int) -> list[bytes]:
    """n value-0 calls from fresh accounts (each its own sender, nonce 0): real sealed envelopes."""
    chain = Chain(net)
    envs = []
    for _ in range(n):
        a = Account.create()
        envs.append(chain.envelope(bytes(a.key), a.address, 0, Account.create().address, b"", gas=50_000))
    rids, _ = chain.send_all(envs)
    return rids


def scrape(url: str) -> dict[str, float]:
    text = requests.get(url + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_of_a_live_node_and_dap_move(net: Devnet) -> None:
    node, dap = net.rpc_urls[0], net.dap_procs[0].url
    m0, d0 = scrape(node), scrape(dap)
    for name in ("enclavenet_l1_height", "enclavenet_head_height", "enclavenet_finalized_height", "enclavenet_epoch",
                 "enclavenet_mempool_pending", "enclavenet_proposals_total", "enclavenet_votes_total",
                 "enclavenet_takeovers_total", "enclavenet_round_changes_total", "enclavenet_committee_members",
                 'enclavenet_mempool_refused_total{reason="duplicate"}', "enclavenet_peers_up",
                 "enclavenet_enclave_expiry_timestamp_seconds"):
        assert name in m0, f"{name} missing from the node's /metrics"
    assert m0["enclavenet_committee_members"] == 4 and m0["enclavenet_committee_types"] == 4
    assert m0["enclavenet_policy_quorum"] == 3 and m0["enclavenet_policy_min_types"] == 3
    rids = send_transfers(net, 40)
    h0 = int(m0["enclavenet_l1_height"])
    wait_for("the transfers to be included", lambda: all(
        r is not None for r in Chain(net).receipts(rids)), timeout=90)
    # a refused duplicate is counted by reason
    chain = Chain(net)
    a = Account.create()
    env_hex = "0x" + chain.envelope(bytes(a.key), a.address, 0, a.address, b"").hex()
    for _ in range(2):
        requests.post(node, json={"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [env_hex]}, timeout=10)
    m1 = wait_for("node metrics to show the new headers",
                  lambda: (lambda m: m if m["enclavenet_finalized_height"] > h0 else None)(scrape(node)))
    d1 = scrape(dap)
    assert m1["enclavenet_l1_height"] > m0["enclavenet_l1_height"]
    assert m1["enclavenet_headers_accepted_total"] > m0["enclavenet_headers_accepted_total"]
    assert m1['enclavenet_mempool_refused_total{reason="duplicate"}'] == m0['enclavenet_mempool_refused_total{reason="duplicate"}'] + 1
    # every member saw the 40 transactions arrive and leave with an accepted header
    assert m1["enclavenet_tx_inclusion_seconds_count"] >= m0.get("enclavenet_tx_inclusion_seconds_count", 0) + 40
    # the enclave did work for those headers (execute, verify, apply or accept: its role decides)
    def ecalls(m: dict[str, float]) -> float:
        return sum(v for k, v in m.items() if k.startswith("enclavenet_ecall_seconds_count{") and "status" not in k)

    assert ecalls(m1) > ecalls(m0)
    # the DAP stored and receipted the new batches; the proposers' uploads are timed
    assert d1["enclavenet_dap_batches_stored_total"] > d0["enclavenet_dap_batches_stored_total"]
    assert d1["enclavenet_dap_receipts_signed_total"] > d0["enclavenet_dap_receipts_signed_total"]
    assert d1["enclavenet_dap_max_height"] >= h0 + 1
    assert m1["enclavenet_dap_active"] == 1
    assert 1.0 in [scrape(u).get("enclavenet_dap_threshold") for u in net.rpc_urls]  # read by each proposer
    uploads = sum(scrape(u).get("enclavenet_dap_upload_seconds_count", 0) for u in net.rpc_urls)
    assert uploads >= 1
    submits = sum(scrape(u).get("enclavenet_qcs_submitted_total", 0) for u in net.rpc_urls)
    assert submits >= m1["enclavenet_l1_height"] - 1  # header 1 may be anyone's; all later ones counted


def _browser(tmp: Path) -> Any:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail(f"{CHROMIUM} / {CHROMEDRIVER} missing: `make install` installs Debian's chromium and chromium-driver",
                    pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'chromium-profile'}", "--window-size=1400,2200"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=str(tmp / "chromedriver.log")), options=opts)


def _shot(driver: Any, tmp: Path, name: str) -> Path:
    p = tmp / f"explorer-{name}.png"
    driver.save_screenshot(str(p))
    assert p.stat().st_size > 10_000, f"screenshot {p} looks empty"
    return p


def test_explorer_in_a_real_browser(net: Devnet, tmp_path: Path) -> None:
    assert net.explorer_url.startswith("http://127.0.0.1:")
    driver = _browser(tmp_path)
    try:
        driver.set_page_load_timeout(30)
        driver.get(net.explorer_url + "/")

        # the page swaps its live part every second: read through one script call each time
        # (atomic with respect to the page's own script), never through element handles
        def text(css: str) -> str:
            return str(driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", css))

        def cells(css: str) -> list[list[str]]:
            out: list[list[str]] = driver.execute_script(
                "return Array.from(document.querySelectorAll(arguments[0])).map(r => Array.from(r.cells).map(c => c.innerText));",
                css)
            return out

        # the committee: 4 members, their TEE types, reachable, with a head and a role
        rows = wait_for("4 members in the committee table", lambda: (lambda r: r if len(r) == 4 else None)(
            cells("#members tbody tr")))
        assert sorted(r[1] for r in rows) == ["csv", "sev-snp", "sgx", "tdx"]
        assert all(r[5].startswith("up") for r in rows), rows
        assert all(r[6].isdigit() and r[7] in ("proposer", "voter") for r in rows), rows
        assert text("#quorum") == "3" and text("#min-types") == "3"
        # a header's QC signers with their TEE types (3 of the 4, 3 types)
        first = wait_for("a header row", lambda: cells("#header-table tbody tr"))[0]
        assert len(set(re.findall(r"sgx|tdx|sev-snp|csv", first[3]))) >= 3, first
        _shot(driver, tmp_path, "dashboard")
        h_before = int(text("#last-height"))

        # a new header lands: the open page updates by itself (no reload)
        send_transfers(net, 30)
        def height() -> int:  # the live part is swapped every second: read the text once
            t = text("#last-height")
            return int(t) if t.isdigit() else -1

        h_new = wait_for("the page to show a higher last height", lambda: (lambda h: h if h > h_before else 0)(height()),
                         timeout=90)
        assert cells("#header-table tbody tr")[0] != first

        # a stable page per height, with the QC decoded from the submitHeader calldata
        driver.get(f"{net.explorer_url}/header/{h_new}")
        signers = cells("#qc-signers tbody tr")
        assert len(signers) >= 3 and all(re.fullmatch(r"0x[0-9a-fA-F]{40}", a) for a, _ in signers), signers
        assert len({t for _, t in signers}) >= 3 and {t for _, t in signers} <= {"sgx", "tdx", "sev-snp", "csv"}
        assert text("#header-hash").startswith("0x") and len(text("#header-hash")) == 66
        _shot(driver, tmp_path, "header")

        # a challenge on L1: listed on the dashboard, then its own page with deadline and outcome
        user = net.accounts[0]
        sender = TxSender(RpcL1(net.l1_url, accounts=[user]), user)
        bond = int(net.rollup.functions.challengeBond().call())
        rc = sender.transact(net.rollup.functions.challenge(b"\x01not-a-real-envelope"), value=bond)
        ev = net.rollup.events.ChallengeStarted().process_receipt(rc, errors=DISCARD)[0]  # (the L1Message log too)
        idx = int(ev.args.index)
        driver.get(net.explorer_url + "/")
        wait_for("the challenge on the dashboard", lambda: f"#{idx}" in text("#challenge-table"), timeout=60)
        # the committee consumes it with the next header: the outcome moves to "consumed"
        wait_for("the challenge to be consumed", lambda: "consumed" in text("#challenge-table"), timeout=90)
        _shot(driver, tmp_path, "challenge-dashboard")
        driver.get(f"{net.explorer_url}/challenge/{idx}")
        assert "consumed" in text("#outcome")
        assert str(int(ev.args.deadline)) in driver.page_source
        shot = _shot(driver, tmp_path, "challenge")
        with __import__("contextlib").suppress(OSError):
            OUT.mkdir(parents=True, exist_ok=True)
            for p in tmp_path.glob("explorer-*.png"):
                shutil.copy(p, OUT / p.name)
        assert shot.exists()
    finally:
        driver.quit()


def test_node_logs_are_json_lines_without_secrets(net: Devnet) -> None:
    secrets: list[str] = []
    for cfg in net.configs:
        secrets.append(cfg.l1_key.removeprefix("0x").lower())
        for k, v in cfg.platform.items():
            if isinstance(v, bytes) and len(v) >= 16:
                secrets.append(v.hex())
            elif isinstance(v, str) and k != "tee" and len(v) >= 16:
                secrets.append(v.removeprefix("0x").lower())
    assert len(secrets) >= 8  # every node's operator key and its simulated machine's secrets
    logs = sorted(net.base_dir.glob("*.log"))
    assert len(logs) >= 6
    for p in logs:
        body = p.read_text(errors="replace").lower()
        for s in secrets:
            assert s not in body, f"a secret appears in {p.name}"
    for i in range(net.n):
        lines = [ln for ln in (net.base_dir / f"node{i}.log").read_text().splitlines() if ln.strip()]
        assert len(lines) >= 5
        for ln in lines:
            obj = json.loads(ln)  # every line one JSON object (the ready line on stdout is JSON too)
            assert isinstance(obj, dict)
        assert any(json.loads(ln).get("process") == f"node{i}" and "level" in json.loads(ln) for ln in lines)


def test_status_command_prints_one_screen(net: Devnet) -> None:
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-m", "enclavenet.cli", "status", net.rpc_urls[1]], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "node1" in out.stdout and "HEALTHY" in out.stdout and "peers       3/3 up" in out.stdout
    assert len(out.stdout.splitlines()) <= 24
    down = subprocess.run([sys.executable, "-m", "enclavenet.cli", "status", "http://127.0.0.1:9"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert down.returncode == 2 and "did not answer" in down.stderr
