"""A node's Prometheus metrics, served on ``GET /metrics`` (docs/OPERATIONS.md lists them).

Two kinds, in one registry per node (several nodes may share a process in tests):

* **read at scrape time** from the node's public state (:class:`_StateCollector`): heights,
  epoch, mempool depth, peers, committee, and the node's event counters (proposals, votes, QCs,
  takeovers, round changes...) -- nothing is added on the hot path for them;
* **observed where they happen** (histograms and refusal counters): ecall latency (the enclave
  host calls :meth:`NodeMetrics.ecall`), transaction inclusion latency (the mempool), mempool
  refusals by reason (the JSON-RPC method), DAP uploads and receipts, L1 submissions.

Only public values: heights, counts, durations, gas. No key, no envelope, no address of a user.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .core import NodeCore as Node

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# node.counters key -> (metric name without _total, help)
EVENT_COUNTERS: dict[str, tuple[str, str]] = {
    "proposed": ("enclavenet_proposals", "batches this node proposed (execute_batch + QC round started)"),
    "voted": ("enclavenet_votes", "proposals this node's enclave verified and signed"),
    "submitted": ("enclavenet_qcs_submitted", "headers with a full QC this node submitted and L1 accepted"),
    "accepted": ("enclavenet_headers_accepted", "L1-accepted headers this node's enclave finalised"),
    "takeovers": ("enclavenet_takeovers", "heights this node proposed in place of a silent proposer"),
    "round_changes": ("enclavenet_round_changes", "proposer round changes seen (liveness protocol)"),
    "rotations": ("enclavenet_epoch_rotations", "epoch key rotations this node took part in"),
    "resubmitted": ("enclavenet_l1_resubmissions", "headers resubmitted after an L1 reorganisation"),
    "reanchored": ("enclavenet_reanchors", "times the enclave was re-anchored after an L1 reorganisation"),
    "applied_diff": ("enclavenet_applied_diffs", "QC'd batches adopted through the proposer's sealed state diff"),
    "applied_reexec": ("enclavenet_applied_reexec", "QC'd batches adopted by re-execution"),
}

REFUSAL_REASONS = ("full", "duplicate", "wrong_epoch", "malformed", "not_ready", "busy", "not_persisted",
                   "unauthenticated_hint")

ECALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
GAS_BUCKETS = (50_000, 60_000, 70_000, 80_000, 90_000, 100_000, 120_000, 150_000, 200_000, 300_000, 500_000, 1_000_000)


class NodeMetrics:
    """The metrics of one node; ``render()`` is the ``/metrics`` body."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ecall_seconds = Histogram(
            "enclavenet_ecall_seconds", "duration of one ecall into the enclave, by method",
            ["method"], registry=r, buckets=ECALL_BUCKETS)
        self.inclusion_seconds = Histogram(
            "enclavenet_tx_inclusion_seconds",
            "time from a transaction's arrival in this node's mempool to the L1 acceptance of its header",
            registry=r, buckets=LATENCY_BUCKETS)
        self.mempool_refused = Counter(
            "enclavenet_mempool_refused", "transactions refused at eth_sendRawTransaction, by reason",
            ["reason"], registry=r)
        for reason in REFUSAL_REASONS:
            self.mempool_refused.labels(reason)
        self.l1_submit_gas = Histogram(
            "enclavenet_l1_submit_gas", "gas used by this node's accepted submitHeader transactions",
            registry=r, buckets=GAS_BUCKETS)
        self.l1_submit_failures = Counter(
            "enclavenet_l1_submit_failures", "submitHeader transactions that reverted or failed, by kind",
            ["kind"], registry=r)
        for kind in ("reverted", "failed", "no_receipts"):
            self.l1_submit_failures.labels(kind)
        self.dap_upload_seconds = Histogram(
            "enclavenet_dap_upload_seconds", "time to store a proposed batch on the DAPs (to the receipts needed)",
            registry=r, buckets=LATENCY_BUCKETS)
        self.dap_receipts = Counter(
            "enclavenet_dap_receipts", "DAP storage receipts this node collected for its proposals", registry=r)
        self.dap_upload_failures = Counter(
            "enclavenet_dap_upload_failures", "batch uploads that got fewer receipts than the threshold", registry=r)
        r.register(_StateCollector(node))

    # -- hooks (one call each at the place it happens) ---------------------------------------
    def ecall(self, method: str, seconds: float) -> None:
        self.ecall_seconds.labels(method).observe(seconds)

    def included(self, latencies: list[float]) -> None:
        h = self.inclusion_seconds
        for s in latencies:
            h.observe(s)

    def refused(self, reason: str) -> None:
        self.mempool_refused.labels(reason if reason in REFUSAL_REASONS else "malformed").inc()

    def submitted(self, gas: int) -> None:
        self.l1_submit_gas.observe(gas)

    def submit_failed(self, kind: str) -> None:
        self.l1_submit_failures.labels(kind).inc()

    def dap_upload(self, seconds: float, receipts: int, ok: bool) -> None:
        self.dap_upload_seconds.observe(seconds)
        self.dap_receipts.inc(receipts)
        if not ok:
            self.dap_upload_failures.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metrics_of(node: Any) -> NodeMetrics | None:
    """The node's metrics, or None before they are installed (node/api.py installs them)."""
    m = getattr(node, "metrics", None)
    return m if isinstance(m, NodeMetrics) else None


def install(node: Node) -> NodeMetrics:
    """Create the node's metrics and hook them into its enclave host and mempool."""
    m = NodeMetrics(node)
    node.metrics = m
    if node.host is not None:
        node.host.observer = m.ecall
    node.mempool.on_included = m.included
    return m


class _StateCollector(Collector):
    """Gauges and counters read from the node's state when Prometheus scrapes."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: families depend on what the node has

    def collect(self) -> Iterator[Metric]:
        n = self.node
        w = n.watcher

        def gauge(name: str, doc: str, value: float | None) -> Iterator[Metric]:
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=float(value))

        yield from gauge("enclavenet_l1_height", "height of the last header accepted on L1 (as this node follows it)", n.l1_height)
        yield from gauge("enclavenet_head_height", "height of this enclave's (tentative) head", n.head_height)
        yield from gauge("enclavenet_finalized_height", "height this enclave holds as final (L1-accepted)", n.finalized)
        yield from gauge("enclavenet_l1_block", "latest L1 block this node saw", w.latest_block if w else None)
        yield from gauge("enclavenet_epoch", "the committee's key epoch (this enclave's)", n.epoch)
        yield from gauge("enclavenet_frozen", "1 once the Rollup is frozen", 1 if n.frozen else 0)
        yield from gauge("enclavenet_rotation_due", "1 while an epoch rotation is due", 1 if _safe(n.rotation_due) else 0)
        st = n.mempool.stats()
        yield from gauge("enclavenet_mempool_pending", "transactions waiting for a batch", st.get("pending", 0))
        yield from gauge("enclavenet_mempool_inflight", "transactions in a proposal not yet accepted", st.get("inflight", 0))
        yield from gauge("enclavenet_mempool_senders", "senders with pending transactions", st.get("senders", 0))
        yield from gauge("enclavenet_peers", "configured peers", len(n.peers))
        yield from gauge("enclavenet_peers_up", "peers answering with their identity",
                         sum(1 for p in n.peers if p.failures == 0 and p.address is not None))
        yield from gauge("enclavenet_uptime_seconds", "seconds since the node started", time.time() - n.started)
        if w is not None:
            members = w.active_members()
            yield from gauge("enclavenet_committee_members", "active committee members on L1", len(members))
            yield from gauge("enclavenet_committee_types", "distinct TEE types among the active members",
                             len({m.tee_type for m in members}))
            yield from gauge("enclavenet_policy_quorum", "signatures a QC needs (Registry policy)", w.quorum)
            yield from gauge("enclavenet_policy_min_types", "TEE types a QC must span (Registry policy)", w.min_types)
            me = next((m for m in members if m.address == n.address), None)
            if me is not None:
                yield from gauge("enclavenet_enclave_expiry_timestamp_seconds",
                                 "when this enclave's registration expires on L1 (unix time)", me.expiry)
            yield from gauge("enclavenet_l1_reorgs", "L1 reorganisations this node followed", w.reorgs)
        daps = n.daps
        if daps.enabled and daps.pool is not None:
            yield from gauge("enclavenet_dap_active", "active DAPs this node uploads to (DapManager on L1)", len(daps.pool.clients))
            yield from gauge("enclavenet_dap_threshold", "DAP receipts a header needs (last read from L1)", daps.last_threshold)
        last_gas = getattr(n, "last_gas", None)
        yield from gauge("enclavenet_l1_submit_last_gas", "gas of this node's last accepted submitHeader", last_gas)
        c = CounterMetricFamily("enclavenet_node_events", "node event counters (all of enclavenet_status.counters)",
                                labels=["event"])
        for k, v in sorted(n.counters.items()):
            c.add_metric([k], float(v))
        yield c
        for key, (name, doc) in EVENT_COUNTERS.items():
            yield CounterMetricFamily(name, doc, value=float(n.counters.get(key, 0)))
        rounds = getattr(n, "round", None)
        if isinstance(rounds, int):
            yield from gauge("enclavenet_round", "the current proposer round at the next height", rounds)


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception:
        return None
