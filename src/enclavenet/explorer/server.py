"""The explorer's web server (aiohttp): ``enclavenet explorer --node URL [--l1-rpc URL]``.

    GET /                  the dashboard (its live part refreshes every second)
    GET /live              the dashboard's live part (HTML fragment)
    GET /header/{height}   one header: hash, L1 tx, QC signers and their TEE types, gas, ...
    GET /challenge/{index} one challenge: deadline and outcome
    GET /api/view          the same data as JSON (for scripts)

It serves on 127.0.0.1 and polls in the background (``interval`` seconds) on a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import time

from aiohttp import web

from . import pages
from .data import ExplorerData

log = logging.getLogger("enclavenet.explorer")

HTML = "text/html"


class ExplorerServer:
    def __init__(self, node_url: str, l1_url: str | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 interval: float = 1.0) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the explorer serves on 127.0.0.1 only here")
        self.data = ExplorerData(node_url, l1_url)
        self.host, self.port, self.interval = host, port, interval
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self.polls = 0
        app = self.app = web.Application()
        app.router.add_get("/", self.h_index)
        app.router.add_get("/live", self.h_live)
        app.router.add_get("/header/{height}", self.h_header)
        app.router.add_get("/challenge/{index}", self.h_challenge)
        app.router.add_get("/api/view", self.h_api)

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        port = server.sockets[0].getsockname()[1] if server and server.sockets else self.port
        self.url = f"http://{self.host}:{port}"
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return self.url

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._runner is not None:
            await self._runner.cleanup()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = time.monotonic()
            try:
                await loop.run_in_executor(None, self.data.poll)
                self.polls += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("explorer poll failed")
            await asyncio.sleep(max(0.1, self.interval - (time.monotonic() - t0)))

    # -- pages --------------------------------------------------------------------------------
    async def h_index(self, request: web.Request) -> web.Response:
        return web.Response(text=pages.dashboard(self.data.view), content_type=HTML)

    async def h_live(self, request: web.Request) -> web.Response:
        return web.Response(text=pages.live(self.data.view), content_type=HTML, headers={"Cache-Control": "no-store"})

    @staticmethod
    def _int(request: web.Request, key: str) -> int:
        try:
            n = int(request.match_info[key], 0)
        except ValueError:
            raise web.HTTPBadRequest(text=f"{key} must be an integer, e.g. /{key.replace('height', 'header').replace('index', 'challenge')}/3") from None
        if n < 0:
            raise web.HTTPBadRequest(text=f"{key} must not be negative")
        return n

    async def h_header(self, request: web.Request) -> web.Response:
        h = self._int(request, "height")
        v = self.data.view
        r = v.header(h)
        return web.Response(text=pages.header_page(v, r, h), content_type=HTML, status=200 if r else 404)

    async def h_challenge(self, request: web.Request) -> web.Response:
        i = self._int(request, "index")
        v = self.data.view
        c = v.challenge(i)
        return web.Response(text=pages.challenge_page(v, c, i), content_type=HTML, status=200 if c else 404)

    async def h_api(self, request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(dataclasses.asdict(self.data.view), default=str), content_type="application/json")


def run_explorer(node_url: str, l1_url: str | None, *, port: int = 0, interval: float = 1.0) -> None:
    """Serve until SIGINT/SIGTERM; prints one JSON ready line ``{"url": ...}`` on stdout."""

    async def main() -> None:
        srv = ExplorerServer(node_url, l1_url, port=port, interval=interval)
        url = await srv.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(json.dumps({"url": url, "node": node_url, "l1": l1_url}), flush=True)
        log.info("explorer on %s (node %s, L1 %s)", url, node_url, l1_url)
        await stop.wait()
        await srv.stop()

    asyncio.run(main())
