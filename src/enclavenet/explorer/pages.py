"""Server-rendered HTML of the explorer: the dashboard, a page per header and per challenge.

Everything is escaped (``html.escape``); charts are inline SVG drawn here (no script from
anywhere else, no CDN). The dashboard's live part is ``<main id="live">``: a few lines of
script fetch ``/live`` every second and swap it in, so the page updates without reloading.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from .data import Challenge, HeaderRow, View

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header.top{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:24px;align-items:baseline}
header.top a{color:#9cc3ff;text-decoration:none} header.top h1{font-size:20px;margin:0}
main{padding:12px 20px} section{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:0 0 14px;padding:10px 14px}
h2{font-size:16px;margin:4px 0 8px} table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eceff3;vertical-align:top}
th{color:#5b6472;font-weight:600} code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.ok{color:#137333;font-weight:600} .bad{color:#b3261e;font-weight:600} .warn{color:#a15c00;font-weight:600}
.tee{display:inline-block;padding:0 6px;border-radius:8px;font-size:11px;margin:1px 2px;color:#fff}
.tee-sgx{background:#0a66c2} .tee-tdx{background:#5e35b1} .tee-sev-snp{background:#c2410c} .tee-csv{background:#0f766e}
.tee-\\?{background:#888} .grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:14px}
.kv td:first-child{color:#5b6472;width:160px} .small{font-size:11px;color:#5b6472}
"""

SCRIPT = """
async function refresh(){
  try{const r=await fetch('/live',{cache:'no-store'}); if(r.ok){const t=await r.text(); const m=document.getElementById('live');
       if(m.dataset.last!==t){m.innerHTML=t; m.dataset.last=t;}}}
  catch(e){const s=document.getElementById('stale'); if(s){s.textContent='(explorer unreachable)';}}
}
setInterval(refresh, 1000);
"""


def short(x: str, n: int = 10) -> str:
    return x if len(x) <= 2 * n + 2 else f"{x[: n + 2]}…{x[-n:]}"


def tee_badge(t: str) -> str:
    return f'<span class="tee tee-{escape(t)}">{escape(t)}</span>'


def ago(ts: float) -> str:
    if not ts:
        return "?"
    d = time.time() - ts
    if d < 0:
        return "just now"
    if d < 120:
        return f"{d:.0f}s ago"
    if d < 7200:
        return f"{d / 60:.0f} min ago"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def eth(wei: int) -> str:
    return f"{wei / 1e18:.4g} ETH"


def page(title: str, body: str, *, live: bool = False) -> str:
    script = f"<script>{SCRIPT}</script>" if live else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title><meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<style>{STYLE}</style></head><body>"
        "<header class=top><h1><a href='/'>EnclaveNet explorer</a></h1>"
        "<span class=small>public L1 data and the nodes' public status only</span></header>"
        f"{body}{script}</body></html>"
    )


def table(head: Sequence[str], rows: Iterable[Sequence[str]], empty: str = "none yet", tid: str = "") -> str:
    rows = list(rows)
    idattr = f" id='{escape(tid)}'" if tid else ""
    if not rows:
        return f"<p class=small{idattr}>{escape(empty)}</p>"
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table{idattr}><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


# ---------------------------------------------------------------------- charts (inline SVG)


def line_chart(series: dict[str, Sequence[tuple[float, float]]], *, unit: str, title: str,
               width: int = 460, height: int = 150) -> str:
    colors = ["#0a66c2", "#c2410c", "#0f766e", "#5e35b1", "#b3261e", "#6b7280", "#a15c00"]
    pts = [p for s in series.values() for p in s]
    if not pts:
        return f"<figure><figcaption class=small>{escape(title)}: no data yet</figcaption></figure>"
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y1 = max(max(p[1] for p in pts), 1e-9) * 1.1
    x1 = x1 if x1 > x0 else x0 + 1
    L, B, R, T = 44, 18, 8, 8
    w, h = width - L - R, height - T - B

    def xy(p: tuple[float, float]) -> str:
        return f"{L + (p[0] - x0) / (x1 - x0) * w:.1f},{T + h - p[1] / y1 * h:.1f}"

    parts = [f"<svg width='{width}' height='{height}' role='img' aria-label='{escape(title)}'>",
             f"<rect x='{L}' y='{T}' width='{w}' height='{h}' fill='#fbfcfd' stroke='#dde1e7'/>"]
    for frac in (0.0, 0.5, 1.0):
        yv = y1 / 1.1 * frac
        yy = T + h - yv / y1 * h
        parts.append(f"<text x='{L - 4}' y='{yy + 4:.1f}' font-size='10' text-anchor='end' fill='#5b6472'>{yv:.3g}</text>")
    parts.append(f"<text x='{L}' y='{height - 4}' font-size='10' fill='#5b6472'>-{(x1 - x0) / 60:.1f} min</text>")
    parts.append(f"<text x='{L + w}' y='{height - 4}' font-size='10' text-anchor='end' fill='#5b6472'>now ({escape(unit)})</text>")
    legend = []
    for i, (name, s) in enumerate(series.items()):
        c = colors[i % len(colors)]
        if len(s) > 1:
            parts.append(f"<polyline fill='none' stroke='{c}' stroke-width='1.6' points='{' '.join(xy(p) for p in s)}'/>")
        if 0 < len(s) <= 40:  # few points (a single bin shows no line): mark each
            for p in s:
                x, y = xy(p).split(",")
                parts.append(f"<circle cx='{x}' cy='{y}' r='2.5' fill='{c}'/>")
        legend.append(f"<span style='color:{c}'>■</span> {escape(name)}")
    parts.append("</svg>")
    return f"<figure style='margin:0'><figcaption class=small>{escape(title)} — {' '.join(legend)}</figcaption>{''.join(parts)}</figure>"


# ---------------------------------------------------------------------- sections


def committee(v: View) -> str:
    rows = []
    now = time.time()
    for m in v.members:
        exp = int(m["expiry"] or 0)
        exp_cls = "bad" if exp and exp <= now else ("warn" if exp and exp - now < 86_400 else "")
        rows.append([
            f"<code title='{escape(m['address'])}'>{escape(short(m['address'], 6))}</code>",
            tee_badge(m["tee"]),
            f"<code title='{escape(m['measurement'])}'>{escape(short(m['measurement'], 6))}</code>",
            f"<span class='{exp_cls}'>{escape(time.strftime('%Y-%m-%d %H:%M', time.gmtime(exp)) if exp else '?')}</span>",
            "<span class=bad>revoked</span>" if m["revoked"] else ("<span class=ok>active</span>" if m["active"] else "<span class=warn>inactive</span>"),
            (f"<span class=ok>up</span> <span class=small>{escape(str(m['url']))} {m['ms']} ms</span>" if m["reachable"]
             else "<span class=bad>unreachable</span>"),
            escape(str(m["head"] if m["head"] is not None else "-")),
            escape(str(m["role"] or "-")),
            escape(str(m["round"])) if m.get("round") is not None else "-",
        ])
    policy = (f"<p>Policy: quorum <b id='quorum'>{v.quorum}</b> signatures spanning at least "
              f"<b id='min-types'>{v.min_types}</b> TEE types · {len([m for m in v.members if m['active']])} active members</p>")
    return ("<section id='committee'><h2>Committee</h2>" + policy
            + table(["enclave", "TEE", "measurement", "expiry (UTC)", "L1 record", "node", "head", "role", "round"], rows,
                    tid="members") + "</section>")


def status_bar(v: View) -> str:
    frozen = "<span class=bad id='frozen'>FROZEN</span>" if v.frozen else "<span class=ok id='frozen'>live</span>"
    last = v.headers[0] if v.headers else None
    err = f" · <span class=warn>{escape(v.l1_error)}</span>" if v.l1_error else ""
    return (
        "<section id='summary'><table class=kv><tbody>"
        f"<tr><td>Rollup</td><td><code>{escape(v.rollup)}</code> (L1 chain {v.l1_chain_id}, EnclaveNet chain {v.chain_id}) · {frozen}</td></tr>"
        f"<tr><td>last header</td><td id='last-height'>{last.height if last else 0}</td></tr>"
        f"<tr><td>L1 block</td><td>{v.l1_block}</td></tr>"
        f"<tr><td>updated</td><td><span id='updated'>{escape(time.strftime('%H:%M:%S', time.gmtime(v.updated)))} UTC</span> <span id=stale class=small></span>{err}</td></tr>"
        "</tbody></table></section>"
    )


def signer_badges(r: HeaderRow) -> str:
    return " ".join(f"<span title='{escape(a)}'>{tee_badge(t)}<code>{escape(short(a, 4))}</code></span>" for a, t in r.signers)


def headers(v: View, limit: int = 15) -> str:
    rows = []
    for r in v.headers[:limit]:
        rows.append([
            f"<a href='/header/{r.height}'>{r.height}</a>",
            f"<code>{escape(short(r.hash, 6))}</code>",
            f"<code>{escape(short(r.l1_tx, 6))}</code>",
            f"<span class=qc>{signer_badges(r)}</span>",
            escape(f"{r.gas:,}" if r.gas is not None else "?"),
            escape(str(r.tx_count) if r.tx_count is not None else "?"),
            str(len(r.withdrawals)),
            str(r.dap_receipts),
            escape(ago(r.timestamp)),
        ])
    return ("<section id='headers'><h2>Headers</h2>"
            + table(["height", "hash", "L1 tx", "QC signers", "gas", "txs", "withdrawals", "DAP receipts", "L1 time"], rows,
                    tid="header-table") + "</section>")


def challenges(v: View) -> str:
    rows = []
    for c in v.challenges[:20]:
        cls = {"consumed": "ok", "open": "warn", "overdue": "bad", "frozen": "bad"}[c.outcome]
        rows.append([
            f"<a href='/challenge/{c.index}'>#{c.index}</a>", f"<code>{escape(short(c.challenger, 6))}</code>",
            escape(eth(c.bond)), f"L1 block {c.deadline} ({max(0, c.deadline - v.l1_block)} to go)" if c.outcome == "open" else f"L1 block {c.deadline}",
            f"<span class='{cls}'>{escape(c.outcome)}</span>" + (f" at <a href='/header/{c.consumed_at}'>height {c.consumed_at}</a>" if c.consumed_at else ""),
        ])
    return ("<section id='challenges'><h2>Challenges</h2>"
            + table(["challenge", "challenger", "bond", "deadline", "outcome"], rows, empty="no challenge on L1", tid="challenge-table")
            + "</section>")


def epochs(v: View) -> str:
    rows = [[str(e["epoch"]), f"<a href='/header/{e['height']}'>{e['height']}</a>", str(e["l1_block"]), escape(ago(e["timestamp"])),
             escape(e["why"])] for e in v.epochs[:10]]
    cur = v.headers[0].epoch if v.headers else "?"
    return (f"<section id='epochs'><h2>Epochs</h2><p>current epoch <b>{escape(str(cur))}</b></p>"
            + table(["epoch", "first height", "L1 block", "when", "why"], rows) + "</section>")


def daps(v: View) -> str:
    if not v.daps and not v.dap_threshold:
        return "<section id='daps'><h2>Data availability providers</h2><p class=small>no DapManager on this Rollup</p></section>"
    active = sum(1 for d in v.daps if d["active"])
    cls = "bad" if active < v.dap_threshold else "ok"
    rows = [[f"<code>{escape(short(d['address'], 6))}</code>", escape(d["endpoint"]), escape(eth(d["collateral"])),
             "<span class=ok>active</span>" if d["active"] else "<span class=warn>inactive</span>", str(d["pending"])] for d in v.daps]
    reqs = [[str(r["id"]), f"<code>{escape(short(r['data_commitment'], 6))}</code>", f"L1 block {r['deadline']}"] for r in v.dap_requests]
    return (f"<section id='daps'><h2>Data availability providers</h2><p>threshold <b>{v.dap_threshold}</b> receipts per header · "
            f"<span class='{cls}'>{active} active</span></p>"
            + table(["DAP", "endpoint", "collateral", "state", "pending requests"], rows)
            + "<h2>Open data requests</h2>" + table(["request", "data commitment", "deadline"], reqs, empty="none") + "</section>")


def nodes(v: View) -> str:
    rows = []
    for n in v.nodes:
        st: dict[str, Any] = n.get("status") or {}
        mp = st.get("mempool") or {}
        rows.append([
            escape(str(st.get("name") or "?")), escape(n["url"]),
            "<span class=ok>up</span>" if n["up"] else f"<span class=bad>down ({escape(str(n.get('error')))})</span>",
            escape(str(st.get("height", "-"))), escape(str(st.get("head", "-"))), escape(str(st.get("role", "-"))),
            escape(str(mp.get("pending", "-"))), escape(str(mp.get("inflight", "-"))),
            escape(str(st.get("lastError") or ""))[:120],
        ])
    return ("<section id='nodes'><h2>Nodes and mempools</h2>"
            + table(["node", "url", "state", "L1 height", "head", "role", "pending", "in flight", "last error"], rows, tid="node-table")
            + "</section>")


def charts(v: View) -> str:
    tps = line_chart({"tx/s (5 s bins, L1 time)": v.tps}, unit="tx/s", title="Throughput")
    lat = line_chart({"p50": [(t, a) for t, a, _ in v.latency], "p99": [(t, b) for t, _, b in v.latency]},
                     unit="s", title="Inclusion latency (arrival to L1 acceptance, worst node, last 10 s)")
    mp = line_chart({k: [(t, float(d)) for t, d in s] for k, s in v.mempool.items()}, unit="txs", title="Mempool depth per node")
    return f"<section id='charts'><h2>Throughput and latency</h2><div class=grid>{tps}{lat}{mp}</div></section>"


def live(v: View) -> str:
    return status_bar(v) + committee(v) + charts(v) + headers(v) + challenges(v) + epochs(v) + daps(v) + nodes(v)


def dashboard(v: View) -> str:
    return page("EnclaveNet explorer", f"<main id='live'>{live(v)}</main>", live=True)


# ---------------------------------------------------------------------- detail pages


def header_page(v: View, r: HeaderRow | None, height: int) -> str:
    if r is None:
        return page(f"header {height}", f"<main><section><h2>Header {height}</h2><p>No header at height {height} "
                                        "is accepted on L1 (yet), or it is older than what this explorer keeps.</p></section></main>")
    sig_rows = [[f"<code>{escape(a)}</code>", tee_badge(t)] for a, t in r.signers]
    types = sorted({t for _, t in r.signers})
    w_rows = [[f"<code>{escape(a)}</code>", escape(eth(x))] for a, x in r.withdrawals]
    fields = [[escape(k), f"<code>{escape(val)}</code>"] for k, val in r.fields]
    nav = (f"<p>{f'<a href=/header/{r.height - 1}>← {r.height - 1}</a>' if r.height > 1 else ''} "
           f"<a href='/header/{r.height + 1}'>{r.height + 1} →</a></p>")
    body = (
        f"<main><section><h2>Header {r.height}</h2>{nav}<table class=kv><tbody>"
        f"<tr><td>hash</td><td><code id='header-hash'>{escape(r.hash)}</code></td></tr>"
        f"<tr><td>L1 transaction</td><td><code>{escape(r.l1_tx)}</code> in block {r.l1_block} ({escape(ago(r.timestamp))})</td></tr>"
        f"<tr><td>submitted by</td><td><code>{escape(r.submitter)}</code></td></tr>"
        f"<tr><td>gas</td><td>{escape(f'{r.gas:,}' if r.gas is not None else '?')}</td></tr>"
        f"<tr><td>transactions</td><td>{escape(str(r.tx_count) if r.tx_count is not None else '?')} fast-path; L1 messages consumed up to {r.msg_count}</td></tr>"
        f"<tr><td>DAP receipts</td><td>{r.dap_receipts}</td></tr>"
        f"<tr><td>QC</td><td>{len(r.signers)} signatures spanning {len(types)} TEE types: {' '.join(tee_badge(t) for t in types)}</td></tr>"
        "</tbody></table></section>"
        "<section><h2>QC signers</h2>" + table(["enclave", "TEE type"], sig_rows, tid="qc-signers") + "</section>"
        "<section><h2>Withdrawals paid</h2>" + table(["recipient", "amount"], w_rows, empty="none") + "</section>"
        "<section><h2>Fields</h2>" + table(["field", "value"], fields) + "</section></main>"
    )
    return page(f"header {r.height}", body)


def challenge_page(v: View, c: Challenge | None, index: int) -> str:
    if c is None:
        return page(f"challenge {index}", f"<main><section><h2>Challenge #{index}</h2><p>No challenge with L1 message index "
                                          f"{index} on this Rollup (yet).</p></section></main>")
    what = {
        "consumed": "executed inside EnclaveNet: a header consumed it before its deadline",
        "open": "waiting: a header must consume it before the deadline",
        "overdue": "its deadline passed without a header consuming it: anyone may freeze the Rollup",
        "frozen": "the Rollup was frozen because of this challenge",
    }[c.outcome]
    consumed = f"<a href='/header/{c.consumed_at}'>height {c.consumed_at}</a>" if c.consumed_at else "-"
    body = (
        f"<main><section><h2>Challenge #{c.index}</h2><table class=kv><tbody>"
        f"<tr><td>challenger</td><td><code>{escape(c.challenger)}</code></td></tr>"
        f"<tr><td>bond</td><td>{escape(eth(c.bond))}</td></tr>"
        f"<tr><td>made in L1 block</td><td>{c.l1_block}</td></tr>"
        f"<tr><td>deadline</td><td>L1 block {c.deadline} (now {v.l1_block})</td></tr>"
        f"<tr><td>outcome</td><td id='outcome'><b>{escape(c.outcome)}</b>: {escape(what)}</td></tr>"
        f"<tr><td>consumed by</td><td>{consumed}</td></tr>"
        "</tbody></table><p class=small>The bond is settled inside EnclaveNet (returned when the transaction "
        "executes, kept when it was garbage); that result is sealed to the challenger, not public.</p></section></main>"
    )
    return page(f"challenge {c.index}", body)
