"""Group commit: many submissions, one blocking write (e.g. append + fsync) for all of them.

One writer task at a time: it takes every item queued so far, hands them to ``write`` in a
thread (``asyncio.to_thread``: the event loop keeps serving other requests meanwhile), then
resolves each item's future -- with ``None`` once ``write`` returned (after ``on_written``), or
with its exception.
Items queued while a write runs form the next group, so the number of writes (fsyncs) follows
the disk's speed, not the request rate. Everything queued before the loop next runs (a JSON-RPC
batch: node/jsonrpc.py admits all its requests before awaiting any) goes into one write.

Used by node/ingress.py: ``eth_sendRawTransaction`` answers only once its envelope is on disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommit(Generic[T]):
    def __init__(self, write: Callable[[list[T]], None], on_written: Callable[[list[T]], None] | None = None) -> None:
        self._write = write
        self._on_written = on_written  # in the loop, after each successful write, before the futures
        self._queue: list[tuple[T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self.writes = 0  # groups written (for tests and metrics)
        self.items = 0

    def submit(self, item: T) -> asyncio.Future[None]:
        """Queue ``item``; the future completes when a write holding it returned (or failed)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return fut

    async def _run(self) -> None:
        while self._queue:
            group, self._queue = self._queue, []
            try:
                await asyncio.to_thread(self._write, [item for item, _ in group])
            except BaseException as exc:
                err = exc if isinstance(exc, Exception) else OSError("the node is stopping")
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(err)
                if not isinstance(exc, Exception):
                    for _, fut in self._queue:
                        if not fut.done():
                            fut.set_exception(err)
                    self._queue = []
                    raise
                continue
            self.writes += 1
            self.items += len(group)
            if self._on_written is not None:
                self._on_written([item for item, _ in group])
            for _, fut in group:
                if not fut.done():
                    fut.set_result(None)
