"""A DAP's Prometheus metrics, served on ``GET /metrics`` (docs/OPERATIONS.md lists them).

Counted where they happen (batches stored, receipts signed, request latency, refusals, data
requests answered on L1) plus what the store holds, read at scrape time. Public values only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .service import DapService

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UPLOAD_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class DapMetrics:
    def __init__(self, service: DapService) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.stored = Counter("enclavenet_dap_batches_stored", "batches stored (and receipted)", registry=r)
        self.stored_bytes = Counter("enclavenet_dap_stored_bytes", "bytes of batch data stored", registry=r)
        self.receipts = Counter("enclavenet_dap_receipts_signed", "storage receipts signed", registry=r)
        self.upload_seconds = Histogram(
            "enclavenet_dap_upload_seconds", "time to check, store durably and receipt one POST /v1/batch",
            registry=r, buckets=UPLOAD_BUCKETS)
        self.refused = Counter("enclavenet_dap_refused", "requests refused, by HTTP status", ["status"], registry=r)
        self.answered = Counter("enclavenet_dap_requests_answered", "L1 data requests answered (answerData)",
                                registry=r)
        r.register(_StoreCollector(service))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StoreCollector(Collector):
    def __init__(self, service: DapService) -> None:
        self.svc = service

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            summary = self.svc.store.summary()
        except Exception:  # the store is down: the refusal counter and logs say so
            summary = {}
        for key, name, doc in (
            ("max_height", "enclavenet_dap_max_height", "highest header stored"),
            ("min_height", "enclavenet_dap_min_height", "lowest header stored"),
            ("batches", "enclavenet_dap_batches", "batches held in the store"),
        ):
            v = summary.get(key)
            if isinstance(v, int | float):
                yield GaugeMetricFamily(name, doc, value=float(v))
        resp = self.svc.responder
        yield GaugeMetricFamily("enclavenet_dap_requests_open", "L1 data requests seen and not answered yet",
                                value=float(len(resp.open) if resp is not None else 0))
        yield GaugeMetricFamily("enclavenet_dap_responder_up", "1 when this DAP answers L1 data requests",
                                value=1.0 if resp is not None and not self.svc.cfg.lazy else 0.0)
