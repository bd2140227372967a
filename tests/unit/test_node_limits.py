"""Issue 14 M4 on the node: rate limits on the public JSON-RPC (real server over HTTP) and the
consensus lane of the enclave host (a real in-process enclave program): a flood of views
cannot hold a vote behind it, and an over-full view queue is refused at once (retryable)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from enclavenet.enclave.harness import Member, form_committee, program_config
from enclavenet.node.host import LOW, EnclaveBusy, EnclaveHost
from enclavenet.node.jsonrpc import CLIENT_IP, JsonRpcServer
from enclavenet.node.ratelimit import RATE_LIMITED, RateLimiter
from enclavenet.tee import DEFAULT_PROGRAM, InProcessEnclave, SimulatedVendor

VENDORS = [SimulatedVendor.generate(n) for n in ("sgx", "tdx")]
CFG = program_config(VENDORS)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_refuses_with_a_retry_hint_and_refills() -> None:
    clock = Clock()
    lim = RateLimiter(10, "raw transactions", burst=3, max_keys=2, clock=clock)
    for _ in range(3):
        lim.take("a", "IP")
    with pytest.raises(Exception) as info:
        lim.take("a", "IP")
    err = info.value.to_json()  # type: ignore[attr-defined]
    assert err["code"] == RATE_LIMITED and "more than 10 raw transactions per second from this IP" in err["message"]
    assert 0 < err["data"]["retryAfter"] <= 0.1
    lim.take("b", "IP")  # another key has its own bucket
    clock.t += 0.11  # one token back
    lim.take("a", "IP")
    with pytest.raises(Exception, match="rate limited"):
        lim.take("a", "IP")
    lim.take("c", "IP")  # at most max_keys buckets: the oldest is dropped
    assert len(lim._buckets) == 2 and lim.refused == 2
    RateLimiter(0, "views").take("a", "IP")  # 0: off
    with pytest.raises(ValueError):
        RateLimiter(-1, "views")


def test_a_flood_from_one_client_over_http_is_refused_and_others_served() -> None:
    lim = RateLimiter(1, "raw transactions", burst=5)
    s = JsonRpcServer()
    seen: list[str] = []

    def send(x: Any) -> str:
        ip = CLIENT_IP.get()
        seen.append(ip)
        lim.take(ip, "IP")
        return "ok"

    s.method("eth_sendRawTransaction", send)

    async def go() -> list[Any]:
        async with TestClient(TestServer(s.app())) as c:
            body = [{"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": ["0x"]} for i in range(20)]
            r = await c.post("/", data=json.dumps(body))
            out: list[Any] = await r.json()
            return out

    out = asyncio.run(go())
    assert [o.get("result") for o in out[:5]] == ["ok"] * 5
    errs = [o["error"] for o in out[5:]]
    assert len(errs) == 15 and all(e["code"] == RATE_LIMITED and e["data"]["retryAfter"] > 0 for e in errs)
    assert set(seen) == {"127.0.0.1"}  # the limiter keyed on the HTTP client's address


def _host(max_low_queue: int = 64) -> EnclaveHost:
    enclave = InProcessEnclave(VENDORS[0].new_platform(), DEFAULT_PROGRAM, CFG)
    other = InProcessEnclave(VENDORS[1].new_platform(), DEFAULT_PROGRAM, CFG)
    form_committee([Member(enclave), Member(other)], 2, 2)
    return EnclaveHost(enclave, max_low_queue=max_low_queue)


def test_consensus_ecalls_overtake_queued_views() -> None:
    host = _host()
    done: list[str] = []

    async def one(method: str, tag: str) -> None:
        with pytest.raises(Exception) if method == "view_call" else _nothing():
            await host.call(method, {"envelope": b"\x01" * 80} if method == "view_call" else None)
        done.append(tag)

    async def go() -> None:
        # hold the ecall thread so that every call below is queued before any runs (without the
        # gate, a loaded machine could drain the views before the vote is even queued)
        gate = threading.Event()
        blocker = asyncio.ensure_future(host.run_on_ecall_thread(lambda: gate.wait(30), LOW, what="gate"))
        lows = [asyncio.ensure_future(one("view_call", f"low{i}")) for i in range(30)]
        status = asyncio.ensure_future(one("status", "status"))
        await asyncio.sleep(0.05)  # one loop turn queues them all (behind the gate)
        t0 = time.perf_counter()
        gate.set()
        await status
        dt = time.perf_counter() - t0
        await asyncio.gather(blocker, *lows)
        assert dt < 5

    try:
        asyncio.run(go())
    finally:
        host.close()
    # FIFO would put the vote after all 30 views; the consensus lane runs it first
    assert done.index("status") == 0, done


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


def test_an_overfull_view_queue_is_refused_at_once_and_votes_still_pass() -> None:
    host = _host(max_low_queue=4)

    async def go() -> tuple[list[Any], dict[str, Any]]:
        lows = [asyncio.ensure_future(host.call("view_call", {"envelope": b"\x01" * 80})) for _ in range(12)]
        status = await host.call("status")
        res = await asyncio.gather(*lows, return_exceptions=True)
        return res, status

    try:
        res, status = asyncio.run(go())
    finally:
        host.close()
    busy = [r for r in res if isinstance(r, EnclaveBusy)]
    assert len(busy) >= 12 - 4 - 1 and "busy" in str(busy[0]) and "retry" in str(busy[0])
    assert "height" in status
    # the ones admitted reached the enclave (which refused the junk envelope with its reason)
    served = [r for r in res if not isinstance(r, EnclaveBusy)]
    assert len(served) >= 4 and all("envelope" in str(r) for r in served)
