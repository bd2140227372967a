"""The node's handle on its enclave: async ecalls over the blocking pipe.

Ecalls are blocking pipe I/O; they run on one dedicated thread (the pipe is sequential anyway)
so the node's event loop keeps serving JSON-RPC and peers while the enclave — its own process,
on the other core — executes a batch. Payloads are CBOR maps (docs/ENCLAVE.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections import defaultdict
from typing import Any

import cbor2

from ..tee.boundary import EnclaveError

log = logging.getLogger(__name__)


class EnclaveHost:
    """Wraps an ``Enclave`` (``ProcessEnclave`` or ``InProcessEnclave``)."""

    def __init__(self, enclave: Any, *, timeout: float = 120.0) -> None:
        self.enclave = enclave
        self.timeout = timeout
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ecall")
        self.stats: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])  # method -> [count, seconds]

    def call_sync(self, method: str, payload: dict[str, Any] | None = None, *, timeout: float | None = None) -> dict[str, Any]:
        body = cbor2.dumps(payload or {})
        t0 = time.perf_counter()
        try:
            raw = self.enclave.ecall(method, body, timeout=timeout or self.timeout)
        finally:
            st = self.stats[method]
            st[0] += 1
            st[1] += time.perf_counter() - t0
        out = cbor2.loads(raw) if raw else {}
        if not isinstance(out, dict):
            raise EnclaveError(f"enclave answered {method} with a non-map")
        return out

    async def call(self, method: str, payload: dict[str, Any] | None = None, *, timeout: float | None = None) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self.call_sync(method, payload, timeout=timeout))

    def stats_summary(self) -> dict[str, dict[str, float]]:
        return {m: {"calls": int(c), "seconds": round(s, 4)} for m, (c, s) in self.stats.items()}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        try:
            self.enclave.close()
        except Exception:  # pragma: no cover - best effort at shutdown
            log.debug("enclave close failed", exc_info=True)
