"""What the explorer shows, read from public sources only: the L1 (events, calldata, views)
and the nodes' public ``enclavenet_status`` / ``enclavenet_getHeader``.

:class:`ExplorerData` polls (``poll()``, on a worker thread) and publishes an immutable
:class:`View` that the web handlers read without locks (the attribute is replaced whole).

* headers: from the Rollup's ``HeaderAccepted`` events and the ``submitHeader`` calldata (the
  node's own :class:`~enclavenet.node.l1watch.L1Watcher` reads them): the QC's signers are
  recovered from the signatures over the header's signing digest and typed by the Registry;
  gas from the L1 receipt, DAP receipts from the calldata, the transaction count from a node;
* committee: every ``EnclaveRegistered`` enclave with ``enclaveInfo`` (TEE type, measurement,
  expiry, revoked, active), joined with the node whose status names that enclave address;
* epochs: where the header epoch changed, and why (a revocation on L1 before it, or a rotation);
* challenges: ``ChallengeStarted`` events with their deadline; outcome = consumed by the first
  header whose ``msg_count`` passed the index, frozen, overdue (freezable) or open;
* DAPs: the DapManager named by the Rollup, its DAPs (collateral, active, pending) and open
  data requests.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import requests
from web3 import Web3

from ..crypto.header import header_signing_digest
from ..crypto.quote import TEE_NAMES
from ..crypto.secp256k1 import recover_address

log = logging.getLogger("enclavenet.explorer")

KIND_CHALLENGE = 2
HISTORY_SECONDS = 600  # charts: the last 10 minutes
ZERO_ADDRESS = "0x" + "00" * 20


@dataclass(frozen=True)
class HeaderRow:
    height: int
    hash: str
    l1_tx: str
    l1_block: int
    timestamp: int
    epoch: int
    msg_count: int
    signers: tuple[tuple[str, str], ...]  # (enclave address, TEE type name)
    gas: int | None
    tx_count: int | None
    withdrawals: tuple[tuple[str, int], ...]
    dap_receipts: int
    submitter: str
    fields: tuple[tuple[str, str], ...]  # every header field, for the header page


@dataclass(frozen=True)
class Challenge:
    index: int
    challenger: str
    bond: int
    deadline: int
    l1_block: int
    outcome: str  # open / consumed / overdue / frozen
    consumed_at: int | None  # height of the header that consumed it


@dataclass
class View:
    updated: float = 0.0
    node_url: str = ""
    l1_url: str | None = None
    l1_error: str = ""
    rollup: str = ""
    l1_chain_id: int | None = None
    chain_id: int | None = None
    l1_block: int = 0
    quorum: int = 0
    min_types: int = 0
    frozen: bool = False
    members: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    headers: list[HeaderRow] = field(default_factory=list)  # newest first
    epochs: list[dict[str, Any]] = field(default_factory=list)
    challenges: list[Challenge] = field(default_factory=list)
    daps: list[dict[str, Any]] = field(default_factory=list)
    dap_threshold: int = 0
    dap_requests: list[dict[str, Any]] = field(default_factory=list)
    tps: list[tuple[float, float]] = field(default_factory=list)  # (bin start, tx/s)
    latency: list[tuple[float, float, float]] = field(default_factory=list)  # (t, p50, p99)
    mempool: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # node name -> (t, depth)

    def header(self, height: int) -> HeaderRow | None:
        return next((h for h in self.headers if h.height == height), None)

    def challenge(self, index: int) -> Challenge | None:
        return next((c for c in self.challenges if c.index == index), None)


def rpc(url: str, method: str, *params: Any, timeout: float = 2.0) -> Any:
    r = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=timeout)
    out = r.json()
    if "error" in out:
        raise RuntimeError(f"{method}: {out['error'].get('message')}")
    return out["result"]


class ExplorerData:
    """Polls the node(s) and the L1; ``view`` is the latest published :class:`View`."""

    def __init__(self, node_url: str, l1_url: str | None = None, *, keep_headers: int = 2_000) -> None:
        self.node_url = node_url.rstrip("/")
        self.l1_url = l1_url
        self.keep_headers = keep_headers
        self.view = View(node_url=self.node_url, l1_url=l1_url)
        self._watcher: Any = None
        self._w3: Web3 | None = None
        self._rows: dict[int, HeaderRow] = {}
        self._enclave_info: dict[str, dict[str, Any]] = {}
        self._info_checked = 0.0
        self._challenges: dict[int, tuple[str, int, int, int]] = {}  # index -> (challenger, bond, deadline, block)
        self._challenge_block = 0
        self._frozen_index: int | None = None
        self._node_urls: list[str] = [self.node_url]
        self._latency: deque[tuple[float, float, float]] = deque(maxlen=HISTORY_SECONDS)
        self._mempool: dict[str, deque[tuple[float, int]]] = {}
        self._contracts: dict[str, Any] | None = None
        self._manager: Any = None
        self._dap_checked = 0.0
        self._daps: list[dict[str, Any]] = []
        self._dap_threshold = 0
        self._dap_requests: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ polling
    def poll(self) -> View:
        v = View(node_url=self.node_url, l1_url=self.l1_url)
        now = time.time()
        nodes = self._poll_nodes(now)
        v.nodes = nodes
        if self._contracts is None:
            with contextlib.suppress(Exception):
                self._contracts = rpc(self.node_url, "enclavenet_contracts")
        if self._contracts:
            v.rollup = str(self._contracts.get("rollup", ""))
            v.l1_chain_id = int(self._contracts["l1ChainId"], 16)
            v.chain_id = int(self._contracts["chainId"], 16)
        if self.l1_url and self._contracts:
            try:
                self._poll_l1(v, nodes)
            except Exception as exc:  # L1 down: keep showing the last rows
                v.l1_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("explorer: reading the L1 failed: %s", v.l1_error)
                self._fill_from_cache(v)
        elif not self.l1_url:
            v.l1_error = "no --l1-rpc given: headers, committee and challenges come from the L1"
        v.latency = list(self._latency)
        v.mempool = {k: list(d) for k, d in self._mempool.items()}
        v.tps = self._tps(now)
        v.updated = now
        self.view = v
        return v

    def _poll_nodes(self, now: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        urls = list(self._node_urls)
        i = 0
        while i < len(urls):
            url = urls[i]
            i += 1
            if url in seen:
                continue
            seen.add(url)
            row: dict[str, Any] = {"url": url, "up": False}
            t0 = time.monotonic()
            try:
                st = rpc(url, "enclavenet_status")
                row.update(up=True, ms=round(1000 * (time.monotonic() - t0), 1), status=st)
                for p in st.get("peers") or []:
                    u = str(p.get("url", "")).rstrip("/")
                    if u and u not in seen and u not in urls:
                        urls.append(u)
                mp = st.get("mempool") or {}
                name = str(st.get("name") or url)
                self._mempool.setdefault(name, deque(maxlen=HISTORY_SECONDS)).append(
                    (now, int(mp.get("pending", 0)) + int(mp.get("inflight", 0))))
            except Exception as exc:
                row["error"] = type(exc).__name__
            out.append(row)
        self._node_urls = urls
        incl = [r["status"]["mempool"].get("inclusion") or {} for r in out if r["up"] and isinstance(r["status"].get("mempool"), dict)]
        incl = [x for x in incl if x.get("headers")]
        if incl:
            self._latency.append((now, max(float(x["p50"]) for x in incl), max(float(x["p99"]) for x in incl)))
        return out

    def _l1(self) -> Any:
        if self._watcher is None:
            from ..node.l1watch import L1Watcher

            assert self.l1_url is not None and self._contracts is not None
            self._w3 = Web3(Web3.HTTPProvider(self.l1_url, request_kwargs={"timeout": 10}))
            c = self._contracts
            self._watcher = L1Watcher(self._w3, c["rollup"], c["registry"], start_block=int(c["startBlock"], 16))
        return self._watcher

    def _poll_l1(self, v: View, nodes: list[dict[str, Any]]) -> None:
        w = self._l1()
        w3 = self._w3
        assert w3 is not None
        res = w.poll()
        for h in res.removed_headers:
            self._rows.pop(h, None)
        new = [h for h in sorted(w.headers) if h not in self._rows or self._rows[h].hash != "0x" + w.headers[h].hash.hex()]
        if new or time.time() - self._info_checked > 5:
            self._refresh_enclaves(w)
        for h in new[-self.keep_headers:]:
            self._rows[h] = self._row(w, w3, h, v)
        for h in sorted(self._rows)[: -self.keep_headers]:
            del self._rows[h]
        # transaction counts a node did not know yet (it may have been catching up)
        for h in [h for h, r in self._rows.items() if r.tx_count is None][-20:]:
            with contextlib.suppress(Exception):
                got = rpc(self.node_url, "enclavenet_getHeader", h)
                if got and got.get("txCount") is not None:
                    r = self._rows[h]
                    self._rows[h] = HeaderRow(**{**r.__dict__, "tx_count": int(got["txCount"])})
        self._poll_challenges(w, w3)
        self._poll_daps(w3, v)
        v.l1_block = w.latest_block
        v.quorum, v.min_types, v.frozen = w.quorum, w.min_types, w.frozen
        self._fill_from_cache(v)
        v.members = self._members(w, nodes)
        v.epochs = self._epochs(w)

    def _fill_from_cache(self, v: View) -> None:
        v.headers = [self._rows[h] for h in sorted(self._rows, reverse=True)]
        v.challenges = self._challenge_rows(v)
        v.daps, v.dap_threshold, v.dap_requests = self._daps, self._dap_threshold, self._dap_requests
        if self._watcher is not None:
            v.l1_block = self._watcher.latest_block
            v.quorum, v.min_types, v.frozen = self._watcher.quorum, self._watcher.min_types, self._watcher.frozen

    def _row(self, w: Any, w3: Web3, h: int, v: View) -> HeaderRow:
        acc = w.headers[h]
        digest = header_signing_digest(acc.hash, v.l1_chain_id or 0, w.rollup.address)
        signers = []
        for sig in acc.signatures:
            try:
                a = recover_address(digest, sig)
            except Exception:
                signers.append(("(unrecoverable)", "?"))
                continue
            info = self._enclave_info.get(a) or {}
            signers.append((a, TEE_NAMES.get(int(info.get("tee_type", 0)), "?")))
        gas: int | None = None
        receipts = 0
        ts = 0
        with contextlib.suppress(Exception):
            gas = int(w3.eth.get_transaction_receipt(acc.l1_tx)["gasUsed"])
        with contextlib.suppress(Exception):
            tx = w3.eth.get_transaction(acc.l1_tx)
            _, params = w.rollup.decode_function_input(tx["input"])
            receipts = len(params.get("receipts") or [])
        with contextlib.suppress(Exception):
            ts = int(w3.eth.get_block(acc.l1_block_number)["timestamp"])
        tx_count: int | None = None
        with contextlib.suppress(Exception):
            got = rpc(self.node_url, "enclavenet_getHeader", h)
            if got and got.get("txCount") is not None:
                tx_count = int(got["txCount"])
        hd = acc.header
        flds = tuple((k, ("0x" + val.hex()) if isinstance(val, bytes) else str(val)) for k, val in hd.__dict__.items())
        return HeaderRow(
            height=h, hash="0x" + acc.hash.hex(), l1_tx=acc.l1_tx, l1_block=acc.l1_block_number, timestamp=ts,
            epoch=hd.epoch, msg_count=hd.msg_count, signers=tuple(signers), gas=gas, tx_count=tx_count,
            withdrawals=tuple((x.recipient, x.amount) for x in acc.withdrawals), dap_receipts=receipts,
            submitter=acc.submitter, fields=flds,
        )

    def _refresh_enclaves(self, w: Any) -> None:
        self._info_checked = time.time()
        for addr in list(w.members):
            with contextlib.suppress(Exception):
                t, meas, expiry, revoked, _enc, active = w.registry.functions.enclaveInfo(addr).call()
                self._enclave_info[addr] = {"tee_type": int(t), "measurement": "0x" + bytes(meas).hex(),
                                            "expiry": int(expiry), "revoked": bool(revoked), "active": bool(active)}

    def _members(self, w: Any, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        by_addr = {str(n["status"].get("address")): n for n in nodes if n.get("up")}
        out = []
        for addr in sorted(w.members, key=lambda a: int(a, 16)):
            info = self._enclave_info.get(addr) or {"tee_type": w.members[addr].tee_type, "measurement": "",
                                                   "expiry": w.members[addr].expiry, "revoked": False,
                                                   "active": w.members[addr].active}
            node = by_addr.get(addr)
            st = node["status"] if node else {}
            out.append({
                "address": addr, "tee": TEE_NAMES.get(int(info["tee_type"]), str(info["tee_type"])),
                "measurement": info["measurement"], "expiry": info["expiry"], "revoked": info["revoked"],
                "active": info["active"], "url": node["url"] if node else None, "reachable": node is not None,
                "ms": node.get("ms") if node else None, "head": st.get("head"), "finalized": st.get("finalized"),
                "role": st.get("role"), "name": st.get("name"),
                "round": st.get("round", st.get("rounds")),
            })
        return out

    def _epochs(self, w: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        prev_block = -1
        last_epoch: int | None = None
        for h in sorted(self._rows):
            r = self._rows[h]
            if r.epoch == last_epoch:
                continue
            if last_epoch is None and h > 1 and out == []:
                why = "before the headers kept here"
            elif last_epoch is None:
                why = "genesis (first header)"
            else:
                revs = [what for b, what in w.revocations if prev_block < b <= r.l1_block]
                why = ("after a revocation: " + ", ".join(sorted(set(revs)))) if revs else "scheduled rotation"
            out.append({"epoch": r.epoch, "height": h, "l1_block": r.l1_block, "timestamp": r.timestamp, "why": why})
            prev_block, last_epoch = r.l1_block, r.epoch
        return list(reversed(out))

    def _poll_challenges(self, w: Any, w3: Web3) -> None:
        head = w.latest_block
        if head < self._challenge_block:
            return
        frm = max(self._challenge_block, w.start_block)
        for ev in w.rollup.events.ChallengeStarted().get_logs(from_block=frm, to_block=head):
            a = ev.args
            self._challenges[int(a.index)] = (str(a.challenger), int(a.bond), int(a.deadline), int(ev.blockNumber))
        if w.frozen and self._frozen_index is None:
            for ev in w.rollup.events.Frozen().get_logs(from_block=w.start_block, to_block=head):
                self._frozen_index = int(ev.args.index)
        self._challenge_block = head + 1

    def _challenge_rows(self, v: View) -> list[Challenge]:
        rows = sorted(self._rows.values(), key=lambda r: r.height)
        out = []
        for idx, (who, bond, deadline, blk) in sorted(self._challenges.items(), reverse=True):
            consumed = next((r.height for r in rows if r.msg_count > idx), None)
            if consumed is not None:
                outcome = "consumed"
            elif v.frozen and self._frozen_index == idx:
                outcome = "frozen"
            elif v.l1_block >= deadline:
                outcome = "overdue"
            else:
                outcome = "open"
            out.append(Challenge(idx, who, bond, deadline, blk, outcome, consumed))
        return out

    def _poll_daps(self, w3: Web3, v: View) -> None:
        if time.time() - self._dap_checked < 3:
            return
        self._dap_checked = time.time()
        w = self._watcher
        if self._manager is None:
            try:
                addr = str(w.rollup.functions.dapManager().call())
            except Exception:
                return
            if int(addr, 16) == 0:
                return
            from ..dap.l1 import manager_contract

            self._manager = manager_contract(w3, addr)
        from ..dap.l1 import list_daps

        m = self._manager
        self._dap_threshold = int(m.functions.threshold().call())
        self._daps = [
            {"address": r.address, "endpoint": r.endpoint, "collateral": r.collateral, "active": r.active,
             "leave_at": r.leave_at, "pending": r.pending}
            for r in list_daps(w3, m, w.start_block).values()
        ]
        reqs = []
        for ev in m.events.DataRequested().get_logs(from_block=w.start_block):
            rid = int(ev.args.request_id)
            with contextlib.suppress(Exception):
                req = m.functions.request(rid).call()
                resolved = bool(req[-1])
                if not resolved:
                    reqs.append({"id": rid, "deadline": int(ev.args.deadline), "data_commitment": "0x" + bytes(ev.args.data_commitment).hex()})
        self._dap_requests = reqs

    def _tps(self, now: float, bin_s: float = 5.0) -> list[tuple[float, float]]:
        # L1 block time, not this machine's clock: a chain's timestamps may run ahead
        ref = max((r.timestamp for r in self._rows.values()), default=now)
        start = ref - HISTORY_SECONDS
        bins: dict[int, int] = {}
        for r in self._rows.values():
            if r.timestamp >= start and r.tx_count:
                k = int((r.timestamp - start) // bin_s)
                bins[k] = bins.get(k, 0) + r.tx_count
        if not bins:
            return []
        lo, hi = min(bins), max(bins)
        return [(start + k * bin_s, bins.get(k, 0) / bin_s) for k in range(lo, hi + 1)]
