"""The node's handle on its enclave: async ecalls over the blocking pipe.

Ecalls are blocking pipe I/O; they run on one dedicated thread (the pipe is sequential anyway)
so the node's event loop keeps serving JSON-RPC and peers while the enclave — its own process,
on the other core — executes a batch. Payloads are CBOR maps (docs/ENCLAVE.md).

Two lanes (issue 14, M4): the thread takes the queued *consensus* ecalls (execute, verify,
accept, apply, rollback, epochs, the node's own snapshots, ...: all but :data:`LOW_LANE`) before
any queued view, gas estimate, escape export or snapshot served to a peer, so a flood of views cannot delay a vote by more than the one ecall
already running (and a view's gas is capped in the enclave). At most ``max_low_queue`` low
ecalls wait; one more is refused at once with :class:`EnclaveBusy` (retryable).

The host is untrusted, and a hostile one may drop, delay or replay what it hands its enclave:
``EnclaveLinkFaults`` does that for real (``enclavenet_adminFaults``, only with ``allow_faults``)
and counts how the enclave answered each replayed, stale input (refused, or the identical
answer of an idempotent retry; anything else would be a safety violation).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import queue
import random
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cbor2

from ..tee.boundary import EnclaveError

log = logging.getLogger(__name__)


# inputs bound to a height: what a hostile host would replay to its enclave
REPLAYABLE = ("execute_batch", "verify_batch", "apply_batch", "accept_header", "epoch_import")
# the low lane by default: what users ask for (views, estimates, escape data, stats). Every other
# ecall -- what a member needs to vote, sign, accept and keep its keys (its own sealed snapshot
# before a signature leaves, too), and any ecall added later -- takes the consensus lane; a
# caller serving a peer's request passes ``lane=LOW`` (a peer's snapshot request)
LOW_LANE = frozenset({"view_call", "estimate_gas", "logs", "escape_leaf", "escape_export", "stats"})
HIGH, LOW = 0, 1


class EnclaveBusy(EnclaveError):
    """Too many low-priority ecalls (views, snapshots) queued already: retry later."""


@dataclass
class EnclaveLinkFaults:
    """A hostile host between the node and its enclave.

    ``drop``: probability that a batch-path ecall is not delivered (the node sees an error);
    ``delay``: seconds added before each ecall; ``replay``: probability that, after an ecall,
    the host also replays an earlier (stale) input of the same method, or the same one again.
    ``replays`` counts the enclave's answers to those: ``refused``, ``identical`` (an idempotent
    retry, no state change) and ``violations`` (accepted with a different answer: never expected).
    """

    drop: float = 0.0
    delay: float = 0.0
    replay: float = 0.0
    seed: int | None = None
    injected: dict[str, int] = field(default_factory=lambda: {"drop": 0, "delay": 0, "replay": 0})
    replays: dict[str, int] = field(default_factory=lambda: {"refused": 0, "identical": 0, "violations": 0})
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnclaveLinkFaults:
        if not isinstance(d, dict):
            raise ValueError("an enclave link fault policy is an object {drop, delay, replay}")
        unknown = sorted(set(d) - {"drop", "delay", "replay", "seed"})
        if unknown:
            raise ValueError(f"unknown enclave link fault field(s): {', '.join(unknown)}")
        out = cls()
        for k, hi in (("drop", 1.0), ("replay", 1.0), ("delay", 30.0)):
            v = d.get(k, 0.0)
            if not isinstance(v, int | float) or isinstance(v, bool) or not 0.0 <= v <= hi:
                raise ValueError(f"enclave link fault {k!r} must be a number in [0, {hi:g}]")
            setattr(out, k, float(v))
        seed = d.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError("enclave link fault 'seed' must be an integer")
        out._rng = random.Random(seed)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"drop": self.drop, "delay": self.delay, "replay": self.replay,
                "injected": dict(self.injected), "replays": dict(self.replays)}

    def roll(self, p: float) -> bool:
        return p > 0 and self._rng.random() < p


def _height_of(method: str, payload: dict[str, Any]) -> int:
    if "height" in payload:
        return int(payload["height"])
    if "header" in payload:
        return int.from_bytes(bytes(payload["header"])[:32], "big")
    return -1


def _schedstat_path(enclave: Any) -> str | None:
    """/proc/PID/schedstat of an enclave in its own process: its first field is the CPU time the
    process has run, in nanoseconds. Ecalls are serialized on one thread, so the difference
    around an ecall is that ecall's CPU (the enclave does nothing between ecalls)."""
    pid = getattr(enclave, "pid", None)
    return f"/proc/{pid}/schedstat" if isinstance(pid, int) else None


def _cpu_ns(path: str | None) -> int:
    if path is None:
        return 0
    try:
        with open(path, "rb") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


class EnclaveHost:
    """Wraps an ``Enclave`` (``ProcessEnclave`` or ``InProcessEnclave``)."""

    def __init__(self, enclave: Any, *, timeout: float = 120.0, max_low_queue: int = 64) -> None:
        self.enclave = enclave
        self.timeout = timeout
        self.max_low_queue = max_low_queue
        self._queue: queue.PriorityQueue[tuple[int, int, Callable[[], Any] | None, concurrent.futures.Future[Any] | None]] = (
            queue.PriorityQueue()
        )
        self._seq = itertools.count()  # FIFO within a lane
        self._low_waiting = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._worker, name="ecall", daemon=True)
        self._thread.start()
        self.stats: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # method -> [count, seconds, cpu s]
        self._schedstat = _schedstat_path(enclave)
        self.faults: EnclaveLinkFaults | None = None
        self.observer: Callable[[str, float], None] | None = None  # (method, seconds): node/metrics.py
        self._seen: dict[str, deque[tuple[int, bytes, dict[str, Any]]]] = defaultdict(lambda: deque(maxlen=4))

    def call_sync(self, method: str, payload: dict[str, Any] | None = None, *, timeout: float | None = None) -> dict[str, Any]:
        f = self.faults
        if f is not None and method in REPLAYABLE:
            return self._faulty_call(f, method, payload or {}, timeout)
        return self._call(method, payload, timeout)

    def _faulty_call(
        self, f: EnclaveLinkFaults, method: str, payload: dict[str, Any], timeout: float | None
    ) -> dict[str, Any]:
        if f.delay:
            f.injected["delay"] += 1
            time.sleep(f.delay)
        if f.roll(f.drop):
            f.injected["drop"] += 1
            raise EnclaveError(f"{method}: the host dropped the input (fault injection)")
        out = self._call(method, payload, timeout)
        h = _height_of(method, payload)
        seen = self._seen[method]
        if f.roll(f.replay):
            older = [x for x in seen if x[0] < h]
            same = [x for x in seen if x[0] == h and method in ("verify_batch", "accept_header", "epoch_import")]
            pick = f._rng.choice(older) if older else None
            if pick is None:
                pick = (h, cbor2.dumps(payload), out) if method in ("verify_batch", "accept_header", "epoch_import") else None
                if same:
                    pick = same[-1]
            if pick is not None:
                f.injected["replay"] += 1
                self._replay(f, method, pick)
        seen.append((h, cbor2.dumps(payload), out))
        return out

    def _replay(self, f: EnclaveLinkFaults, method: str, item: tuple[int, bytes, dict[str, Any]]) -> None:
        _, body, first = item
        try:
            again = self._call(method, cbor2.loads(body), None)
        except EnclaveError:
            f.replays["refused"] += 1
            return
        keys = ("header_hash", "signature", "finalized_hash", "height", "epoch", "epoch_pub")
        if all(again.get(k) == first.get(k) for k in keys):
            f.replays["identical"] += 1
        else:
            f.replays["violations"] += 1
            log.error("enclave accepted a replayed %s with a different answer", method)

    def _call(self, method: str, payload: dict[str, Any] | None, timeout: float | None) -> dict[str, Any]:
        body = cbor2.dumps(payload or {})
        t0 = time.perf_counter()
        c0 = _cpu_ns(self._schedstat)
        try:
            raw = self.enclave.ecall(method, body, timeout=timeout or self.timeout)
        finally:
            dt = time.perf_counter() - t0
            st = self.stats[method]
            st[0] += 1
            st[1] += dt
            st[2] += max(0, _cpu_ns(self._schedstat) - c0) / 1e9
            if self.observer is not None:
                self.observer(method, dt)
        out = cbor2.loads(raw) if raw else {}
        if not isinstance(out, dict):
            raise EnclaveError(f"enclave answered {method} with a non-map")
        return out

    async def call(
        self, method: str, payload: dict[str, Any] | None = None, *, timeout: float | None = None, lane: int | None = None
    ) -> dict[str, Any]:
        if lane is None:
            lane = LOW if method in LOW_LANE else HIGH
        out: dict[str, Any] = await self.run_on_ecall_thread(
            lambda: self.call_sync(method, payload, timeout=timeout), lane, what=method
        )
        return out

    async def run_on_ecall_thread(self, fn: Callable[[], Any], lane: int = HIGH, *, what: str = "ecall") -> Any:
        """Run ``fn`` on the ecall thread, after the queued work of higher lanes."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if lane == LOW:
                if self._low_waiting >= self.max_low_queue:
                    raise EnclaveBusy(
                        f"{what}: the enclave is busy ({self._low_waiting} views/snapshots queued); retry in a moment"
                    )
                self._low_waiting += 1
            self._queue.put((lane, next(self._seq), fn, fut))
        return await asyncio.wrap_future(fut)

    def _worker(self) -> None:
        while True:
            lane, _, fn, fut = self._queue.get()
            if fn is None or fut is None:
                return
            if lane == LOW:
                with self._lock:
                    self._low_waiting -= 1
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # handed to the awaiting coroutine
                fut.set_exception(exc)

    def stats_summary(self) -> dict[str, dict[str, float]]:
        """Per ecall method: calls, wall seconds (queueing in the enclave process included) and the
        enclave process's CPU seconds spent on them (0 for an in-process enclave)."""
        return {m: {"calls": int(c), "seconds": round(s, 4), "cpu_seconds": round(cpu, 4)}
                for m, (c, s, cpu) in self.stats.items()}

    def close(self) -> None:
        # cancel what waits, then stop the thread (after the ecall running now, if any)
        while True:
            try:
                _, _, _, fut = self._queue.get_nowait()
            except queue.Empty:
                break
            if fut is not None:
                fut.cancel()
        self._queue.put((-1, -1, None, None))
        try:
            self.enclave.close()
        except Exception:  # pragma: no cover - best effort at shutdown
            log.debug("enclave close failed", exc_info=True)
