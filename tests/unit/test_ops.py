"""Operator ergonomics (issue 12): node config errors name the field, logs are JSON lines and
never carry a secret, the explorer escapes what nodes report, the status summary warns."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from enclavenet.cli import main as cli_main
from enclavenet.explorer import pages
from enclavenet.explorer.data import Challenge, HeaderRow, View
from enclavenet.logs import REDACTED, setup_logging
from enclavenet.node.config import ConfigError, NodeConfig
from enclavenet.opstatus import health_warnings, render_status

KEY = "0x" + "ab12" * 16
PLATFORM_SECRET = bytes(range(32))


def good_config() -> dict[str, Any]:
    return {
        "name": "node0", "data_dir": "/tmp/x", "l1_rpc": "http://127.0.0.1:8545", "l1_key": KEY,
        "rollup": "0x" + "11" * 20, "registry": "0x" + "11" * 20, "l1_chain_id": 31337, "chain_id": 1337,
        "platform": {"tee": "sgx", "secret": {"$hex": PLATFORM_SECRET.hex()}}, "enclave": {},
        "peers": ["http://127.0.0.1:9001"],
    }


@pytest.mark.parametrize(("field", "value", "says"), [
    ("batch_size", "500", "'batch_size' must be an integer, got '500' (str)"),
    ("batch_interval", "fast", "'batch_interval' must be a number"),
    ("peers", "http://127.0.0.1:9001", "'peers' must be a list of strings"),
    ("peers", ["127.0.0.1:9001"], "'peers' entry 0 must be an http(s) URL"),
    ("l1_rpc", "localhost:8545", "'l1_rpc' must be an http(s) URL"),
    ("rollup", "0x1234", "'rollup' must be a 0x-prefixed 20-byte hex address"),
    ("rpc_port", 70000, "'rpc_port' must be in 0..65535"),
    ("log_level", "LOUD", "'log_level' must be one of DEBUG, INFO, WARNING, ERROR"),
    ("log_format", "xml", "'log_format' must be 'text' or 'json'"),
    ("allow_faults", "yes", "'allow_faults' must be true or false"),
    ("mempool_max_total", -1, "'mempool_max_total' must be >= 0"),
    ("rpc_host", "0.0.0.0", "'rpc_host': a node serves on 127.0.0.1 or a private"),
    ("rpc_host", "8.8.8.8", "'rpc_host': a node serves on 127.0.0.1 or a private"),
])
def test_config_errors_name_the_field(field: str, value: Any, says: str) -> None:
    d = good_config()
    d[field] = value
    with pytest.raises(ConfigError) as exc:
        NodeConfig.from_dict(d)
    assert says in str(exc.value)
    NodeConfig.from_dict(good_config())  # the good one loads
    NodeConfig.from_dict(dict(good_config(), rpc_host="10.213.0.7"))  # a namespace's private address


def test_config_errors_never_echo_the_operator_key() -> None:
    for bad in ("0x" + "zz" * 32, KEY[:-2], 12345):
        d = good_config()
        d["l1_key"] = bad
        with pytest.raises(ConfigError) as exc:
            NodeConfig.from_dict(d)
        assert "l1_key" in str(exc.value) and "not shown" in str(exc.value)
        assert str(bad).removeprefix("0x") not in str(exc.value)


def test_node_check_flag_validates_without_starting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "node.json"
    d = good_config()
    p.write_text(json.dumps(d))
    assert cli_main(["node", "--config", str(p), "--check"]) == 0
    d["batch_size"] = 0
    p.write_text(json.dumps(d))
    assert cli_main(["node", "--config", str(p), "--check"]) == 2
    assert "batch_size must be >= 1" in capsys.readouterr().err
    d["typo_field"] = 1
    p.write_text(json.dumps(d))
    assert cli_main(["node", "--config", str(p), "--check"]) == 2
    assert "unknown node config field(s): typo_field" in capsys.readouterr().err


def _capture(fmt: str, secrets: list[Any]) -> tuple[logging.Logger, io.StringIO]:
    buf = io.StringIO()
    setup_logging("node0", level="DEBUG", fmt=fmt, secrets=secrets, stream=buf)
    return logging.getLogger("enclavenet.test"), buf


def test_a_secret_logged_by_mistake_is_redacted_in_every_form() -> None:
    cfg = NodeConfig.from_dict(good_config())
    log, buf = _capture("text", cfg.secrets())
    try:
        log.info("operator key is %s", cfg.l1_key)  # the mistake: code logging the key
        log.warning("key upper %s", cfg.l1_key.upper().replace("0X", "0x"))
        log.info("platform secret bytes %r and hex %s", PLATFORM_SECRET, PLATFORM_SECRET.hex())
        try:
            raise ValueError(f"bad key {cfg.l1_key}")
        except ValueError:
            log.exception("failed")
        out = buf.getvalue()
        assert KEY[2:] not in out.lower() and PLATFORM_SECRET.hex() not in out.lower()
        assert out.count(REDACTED) >= 4
        assert "operator key is" in out and "failed" in out
    finally:
        setup_logging("test", level="WARNING")


def test_json_logs_are_one_object_per_line() -> None:
    log, buf = _capture("json", [KEY])
    try:
        log.info("height %d accepted", 7)
        log.info("multi\nline with %s", KEY)
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            log.exception("boom")
        lines = buf.getvalue().splitlines()
        assert len(lines) == 3
        objs = [json.loads(ln) for ln in lines]
        assert objs[0]["msg"] == "height 7 accepted" and objs[0]["level"] == "INFO" and objs[0]["process"] == "node0"
        assert objs[1]["msg"] == f"multi\nline with 0x{REDACTED}"
        assert "ZeroDivisionError" in objs[2]["exc"]
    finally:
        setup_logging("test", level="WARNING")


def _view() -> View:
    evil = "<script>alert('x')</script>"
    row = HeaderRow(height=3, hash="0x" + "aa" * 32, l1_tx="0x" + "bb" * 32, l1_block=9, timestamp=0, epoch=0,
                    msg_count=1, signers=(("0x" + "cc" * 20, "sgx"), ("0x" + "dd" * 20, evil)), gas=70_000,
                    tx_count=5, withdrawals=((evil, 10),), dap_receipts=1, submitter=evil, fields=(("height", "3"),))
    v = View(node_url="http://127.0.0.1:1", rollup=evil, headers=[row],
             challenges=[Challenge(0, evil, 10**16, 100, 5, "open", None)])
    v.nodes = [{"url": "http://127.0.0.1:1", "up": True, "status": {"name": evil, "lastError": evil, "mempool": {}}}]
    v.members = [{"address": evil, "tee": evil, "measurement": evil, "expiry": 0, "revoked": False, "active": True,
                  "url": evil, "reachable": True, "ms": 1, "head": evil, "finalized": 0, "role": evil, "name": evil,
                  "round": None}]
    v.daps = [{"address": evil, "endpoint": evil, "collateral": 1, "active": True, "leave_at": 0, "pending": 0}]
    v.dap_threshold = 1
    return v


def test_explorer_escapes_what_nodes_and_l1_report() -> None:
    """A node's status (lastError, name) or an L1 string (a DAP's endpoint) is attacker-chosen:
    rendered, it must stay text, never markup or script."""
    v = _view()
    for html in (pages.dashboard(v), pages.header_page(v, v.headers[0], 3), pages.challenge_page(v, v.challenges[0], 0)):
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert" in html
    # the page's own script is the only one
    assert pages.dashboard(v).count("<script>") == 1


def test_status_summary_warns() -> None:
    st = {"name": "node2", "height": 9, "head": 9, "finalized": 9, "epoch": 0, "role": "voter", "frozen": False,
          "peers": [{"url": "http://a", "up": True}, {"url": "http://b", "up": True}],
          "mempool": {"pending": 1, "inflight": 0, "maxTotal": 100}, "counters": {"voted": 3}, "lastError": ""}
    text, warn = render_status("http://n", st)
    assert warn == [] and "HEALTHY" in text and "peers       2/2 up" in text
    st2 = dict(st, frozen=True, peers=[{"url": "http://a", "up": False}], lastError="accept 9: diverged",
               mempool={"pending": 90, "inflight": 0, "maxTotal": 100}, finalized=7)
    w = health_warnings(st2)
    assert any("FROZEN" in x for x in w) and any("unreachable: http://a" in x for x in w)
    assert any("mempool 90 of 100" in x for x in w) and any("behind L1 height 9" in x for x in w)
    assert any("diverged" in x for x in w)


def _row(h: int, epoch: int, msg_count: int, block: int, ts: int, txs: int | None) -> HeaderRow:
    return HeaderRow(height=h, hash="0x" + f"{h:064x}", l1_tx="0x" + "00" * 32, l1_block=block, timestamp=ts,
                     epoch=epoch, msg_count=msg_count, signers=(), gas=1, tx_count=txs, withdrawals=(),
                     dap_receipts=0, submitter="0x" + "00" * 20, fields=())


class _FakeWatcher:
    revocations = [(15, "EnclaveRevoked")]


def test_explorer_challenge_outcomes_epoch_reasons_and_throughput() -> None:
    from enclavenet.explorer.data import ExplorerData

    d = ExplorerData("http://127.0.0.1:1", None)
    d._rows = {1: _row(1, 0, 0, 10, 1000, 0), 2: _row(2, 0, 2, 12, 1002, 50), 3: _row(3, 1, 2, 16, 1004, 100),
               4: _row(4, 2, 3, 30, 1011, 25)}
    # challenge 1 consumed by height 2 (msg_count 2 > 1); 3 open; 4 overdue; 5 froze the Rollup
    d._challenges = {1: ("0xa", 1, 100, 11), 3: ("0xb", 1, 200, 25), 4: ("0xc", 1, 20, 13), 5: ("0xd", 1, 21, 14)}
    v = View(l1_block=40, frozen=True)
    d._frozen_index = 5
    rows = {c.index: c for c in d._challenge_rows(v)}
    assert (rows[1].outcome, rows[1].consumed_at) == ("consumed", 2)
    assert (rows[3].outcome, rows[3].consumed_at) == ("open", None)  # msg_count 3: messages 0..2 only
    assert rows[4].outcome == "overdue"  # deadline 20 passed, no header consumed it
    assert rows[5].outcome == "frozen"
    eps = d._epochs(_FakeWatcher())
    assert [(e["epoch"], e["height"]) for e in eps] == [(2, 4), (1, 3), (0, 1)]
    assert eps[2]["why"] == "genesis (first header)"
    assert eps[1]["why"] == "after a revocation: EnclaveRevoked"  # block 15 in (12, 16]
    assert eps[0]["why"] == "scheduled rotation"
    tps = d._tps(now=2000.0, bin_s=5.0)
    assert sum(t * 5.0 for _, t in tps) == 175  # every transaction counted once, by L1 time
