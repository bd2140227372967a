"""benchmarks/wan.py's network: namespaces joined by a bridge, the delay on every link really
delays (LAN vs WAN), a service in one namespace is reached from another by URL only, and
everything is removed afterwards -- also when the run fails inside. Needs root (ip netns)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

WAN = Path(__file__).resolve().parents[2] / "benchmarks" / "wan.py"


def _wan() -> Any:
    spec = importlib.util.spec_from_file_location("wan_bench", WAN)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _ours(tag: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(tag)]


def _get_ms(nets: Any, src: str, dst: str) -> float:
    ms = nets.ping_ms(src, dst)
    assert ms == ms, "the GET across namespaces failed"  # not NaN
    return float(ms)


def test_namespaces_delay_and_cleanup() -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root for ip netns (the benchmark does too)", pytrace=False)
    wan = _wan()
    nets = wan.Namespaces(["client", "node0", "node1"])
    server: subprocess.Popen[bytes] | None = None
    with nets:
        assert sorted(_ours(nets.tag)) == sorted([nets.hub, *nets.ns.values()])
        # a tiny HTTP service in node1's namespace, bound to its own address only
        code = (
            "import http.server as h\n"
            "class H(h.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')\n"
            "    def log_message(self, *a): pass\n"
            f"h.HTTPServer(({nets.addr['node1']!r}, {wan.port_of('node1')}), H).serve_forever()\n"
        )
        server = subprocess.Popen(["ip", "netns", "exec", nets.ns["node1"], sys.executable, "-c", code])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ms = nets.ping_ms("node0", "node1")
            if ms == ms:  # not NaN: the server answers
                break
            time.sleep(0.2)
        # the best of several: on a busy machine one GET (a fresh python, the relay, the server)
        # can take tens of ms of scheduling on its own
        lan = min(_get_ms(nets, "node0", "node1") for _ in range(6))
        nets.set_delay("wan")
        wan_ms = min(_get_ms(nets, "node0", "node1") for _ in range(6))
        # handshake + request/answer: two round trips of 2 x 25 ms one way = 100 ms more than LAN
        assert wan_ms >= 95.0, (lan, wan_ms)
        assert wan_ms - lan >= 75.0, (lan, wan_ms)
        nets.set_delay("lan")
        assert min(_get_ms(nets, "node0", "node1") for _ in range(3)) < wan_ms - 80
        # the service is not on this namespace's loopback or address: only through the link
        probe = subprocess.run(["ip", "netns", "exec", nets.ns["node0"], sys.executable, "-c",
                                f"import socket; socket.create_connection(('127.0.0.1', {wan.port_of('node1')}), 2)"],
                               capture_output=True, text=True, timeout=30)
        assert probe.returncode != 0
    assert server is not None
    server.wait(10)  # killed with its namespace
    assert _ours(nets.tag) == []
    # a failure inside the block removes everything too
    nets2 = wan.Namespaces(["client", "node0"])
    with pytest.raises(RuntimeError, match="boom"), nets2:
        assert len(_ours(nets2.tag)) == 3
        raise RuntimeError("boom")
    assert _ours(nets2.tag) == []
