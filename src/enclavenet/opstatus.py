"""``enclavenet status URL``: a node's health on one screen, from its public ``enclavenet_status``.

The warnings are the operator alerts of docs/OPERATIONS.md that one sample can show: frozen,
peers down, the head behind L1, a mempool near full, a rotation due, the last error, too few
members or TEE types for the policy (when the node reports them).
"""

from __future__ import annotations

from typing import Any

import requests


def fetch_status(url: str, *, timeout: float = 5.0) -> dict[str, Any]:
    r = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "enclavenet_status", "params": []}, timeout=timeout)
    out = r.json()
    if "error" in out:
        raise RuntimeError(str(out["error"].get("message")))
    st: dict[str, Any] = out["result"]
    return st


def health_warnings(st: dict[str, Any]) -> list[str]:
    w: list[str] = []
    if st.get("frozen"):
        w.append("the Rollup is FROZEN: no more headers; users leave through escape (docs/FAULTS.md)")
    peers = st.get("peers") or []
    down = [p.get("url", "?") for p in peers if not p.get("up")]
    if down:
        w.append(f"{len(down)} of {len(peers)} peers unreachable: {', '.join(map(str, down))}")
    if st.get("epoch") is None:
        w.append("no epoch key yet (starting up, or the committee never formed)")
    height, head, fin = int(st.get("height") or 0), int(st.get("head") or 0), int(st.get("finalized") or 0)
    if fin < height:
        w.append(f"enclave final height {fin} is behind L1 height {height} (catching up?)")
    mp = st.get("mempool") or {}
    total = int(mp.get("pending", 0)) + int(mp.get("inflight", 0))
    cap = int(mp.get("maxTotal") or 0)
    if cap and total > 0.8 * cap:
        w.append(f"mempool {total} of {cap} ({100 * total / cap:.0f} %): transactions will be refused soon")
    if st.get("rotationDue"):
        w.append("an epoch rotation is due (a member was revoked or expired)")
    if st.get("lastError"):
        w.append(f"last error: {st['lastError']}")
    if head < height:
        w.append(f"enclave head {head} below L1 height {height}")
    return w


def render_status(url: str, st: dict[str, Any]) -> tuple[str, list[str]]:
    warnings = health_warnings(st)
    mp = st.get("mempool") or {}
    incl = mp.get("inclusion") or {}
    peers = st.get("peers") or []
    counters = st.get("counters") or {}
    lines = [
        f"{st.get('name', '?')} at {url}: {'HEALTHY' if not warnings else 'ATTENTION'}",
        f"  enclave     {st.get('address')}  ({st.get('teeType')})",
        f"  role        {st.get('role')}  (next proposer {st.get('proposer')})",
        f"  heights     L1 {st.get('height')}  head {st.get('head')}  final {st.get('finalized')}  L1 block {st.get('l1Block')}",
        f"  epoch       {st.get('epoch')}  held {st.get('epochsHeld')}  rotation due: {bool(st.get('rotationDue'))}",
        f"  committee   {len(st.get('members') or [])} active members",
        f"  peers       {sum(1 for p in peers if p.get('up'))}/{len(peers)} up",
        f"  mempool     {mp.get('pending', 0)} pending, {mp.get('inflight', 0)} in flight, {mp.get('senders', 0)} senders"
        f" (max {mp.get('maxTotal')})",
        f"  latency     p50 {incl.get('p50', 0)} s, p99 {incl.get('p99', 0)} s over {incl.get('txs', 0)} txs (recent headers)",
        "  counters    " + ", ".join(f"{k} {v}" for k, v in sorted(counters.items())),
    ]
    for key in ("round", "rounds"):
        if key in st:
            lines.append(f"  {key:<11} {st[key]}")
    lines += [f"  WARNING     {x}" for x in warnings]
    return "\n".join(lines), warnings
