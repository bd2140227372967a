"""The gateway process: Ethereum JSON-RPC over HTTP and WebSocket on 127.0.0.1.

    $ enclavenet gateway --node http://127.0.0.1:8600 [--l1-rpc URL] [--port 8547] [--account KEY ...]

* ``POST /``: JSON-RPC (single or batch), the methods of ``methods.py``;
* ``GET /`` with ``Upgrade: websocket``: the same methods plus ``eth_subscribe`` /
  ``eth_unsubscribe`` (``newHeads``, ``logs``);
* ``GET /authorise``: a page that asks the browser's wallet (MetaMask) to sign a viewing session.

In-process (tests, the devnet): ``Gateway.start_in_thread(node_url, ...)`` returns a running
gateway with ``.url``; ``close()`` stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web

from ..node.jsonrpc import RpcError
from .blocks import Chain
from .core import GatewayCore
from .methods import RecordingServer, install

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class Gateway:
    """One gateway: a :class:`GatewayCore`, its :class:`Chain` follower and the aiohttp server."""

    def __init__(self, node_url: str, *, l1_rpc: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 accounts: list[bytes] | None = None, poll_interval: float = 0.25) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the gateway holds viewing sessions and receipt keys: it serves on 127.0.0.1 only")
        self.core = GatewayCore(node_url, l1_rpc=l1_rpc)
        self.chain = Chain(self.core, poll_interval)
        self.rpc = RecordingServer(name="gateway", max_body=8 * 1024 * 1024, max_batch=1000)
        install(self.rpc, self.core, self.chain)
        self.host, self.port = host, port
        self._accounts = list(accounts or [])
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # ------------------------------------------------------------------ serving
    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.rpc.max_body + 1024, middlewares=[self._guard])
        app.router.add_post("/", self.rpc.handle_http)
        app.router.add_get("/", self._get_root)
        app.router.add_get("/authorise", self._page)
        app.router.add_get("/health", self._health)
        app.router.add_route("OPTIONS", "/", self._preflight)
        return app

    async def start(self) -> str:
        await self.core.start()
        for secret in self._accounts:
            self.core.add_account(secret)
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.chain.start()
        log.info("gateway for chain %d serving on %s", self.core.chain_id, self.url)
        return self.url

    async def stop(self) -> None:
        await self.chain.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.core.close()

    # ------------------------------------------------------------------ who may ask
    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Only this machine's tools and wallets: the gateway answers with the user's confidential
        data, so a web page must not reach it. Refused: a Host that is not 127.0.0.1 / localhost
        (DNS rebinding: evil.example resolving to 127.0.0.1 would make the page same-origin) and a
        browser Origin other than the gateway's own page or a wallet extension. Command-line tools
        and scripts send no Origin."""
        host = (request.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if host not in LOCAL_HOSTS:
            return web.json_response(
                {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message":
                 f"Host {host[:64]!r} refused: the gateway answers only requests addressed to 127.0.0.1 or localhost"}},
                status=403)
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin):
            return web.json_response(
                {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message":
                 f"cross-origin request from {origin[:80]!r} refused: a web page could read your confidential "
                 "data through this gateway; use a wallet extension, a script, or this gateway's /authorise page"}},
                status=403)
        resp = await handler(request)
        if origin is not None and not isinstance(resp, web.WebSocketResponse):
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Vary"] = "Origin"
        return resp

    def _origin_allowed(self, origin: str) -> bool:
        if origin.startswith(("chrome-extension://", "moz-extension://", "safari-web-extension://")):
            return True
        scheme, _, rest = origin.partition("://")
        host, _, port = rest.rpartition(":")
        return scheme == "http" and host.strip("[]").lower() in LOCAL_HOSTS and port == str(self.port)

    async def _preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={
            "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
            "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", "content-type"),
            "Access-Control-Max-Age": "600",
        })

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "name": "gateway"})

    async def _get_root(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._ws(request)
        raise web.HTTPFound("/authorise")

    async def _page(self, request: web.Request) -> web.Response:
        html = resources.files("enclavenet.gateway").joinpath("authorise.html").read_text()
        return web.Response(text=html.replace("{{CHAIN_ID}}", str(self.core.chain_id)), content_type="text/html")

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=self.rpc.max_body)
        await ws.prepare(request)
        send_lock = asyncio.Lock()

        async def notify(sid: str, result: Any) -> None:
            msg = {"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": sid, "result": result}}
            async with send_lock:
                await ws.send_str(json.dumps(msg))

        async def answer(raw: str) -> None:
            out = await self._ws_request(raw, notify)
            if out is not None:
                async with send_lock:
                    await ws.send_str(out)

        tasks: set[asyncio.Task[None]] = set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        await answer(msg.data.decode("utf-8", "replace"))
                    continue
                t = asyncio.get_running_loop().create_task(answer(msg.data))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
        finally:
            self.chain.drop_notify(notify)
            for t in tasks:
                t.cancel()
        return ws

    async def _ws_request(self, raw: str, notify: Any) -> str | None:
        try:
            req = json.loads(raw)
        except (ValueError, RecursionError):  # JSONDecodeError, or a number with too many digits
            return await self._bytes(raw)
        if isinstance(req, dict) and req.get("method") in ("eth_subscribe", "eth_unsubscribe"):
            id_ = req.get("id")
            params = req.get("params") or []
            self.rpc.calls[(str(req["method"]), "ok")] += 1
            try:
                if req["method"] == "eth_subscribe":
                    if not isinstance(params, list) or not params:
                        raise RpcError(-32602, "eth_subscribe takes [\"newHeads\"] or [\"logs\", {address?, topics?}]")
                    criteria = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
                    result: Any = self.chain.subscribe(str(params[0]), criteria, notify)
                else:
                    if not isinstance(params, list):
                        raise RpcError(-32602, "eth_unsubscribe takes [subscriptionId]")
                    result = self.chain.unsubscribe(params[0] if params else None)
            except RpcError as exc:
                self.rpc.calls[(str(req["method"]), "ok")] -= 1
                self.rpc.calls[(str(req["method"]), f"error {exc.code}")] += 1
                return json.dumps({"jsonrpc": "2.0", "id": id_, "error": exc.to_json()})
            return json.dumps({"jsonrpc": "2.0", "id": id_, "result": result})
        return await self._bytes(raw)

    async def _bytes(self, raw: str) -> str | None:
        out = await self.rpc.handle_bytes(raw.encode())
        return out.decode() if out is not None else None

    # ------------------------------------------------------------------ in a thread
    @classmethod
    def start_in_thread(cls, node_url: str, **kwargs: Any) -> Gateway:
        gw = cls(node_url, **kwargs)
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            gw._loop = loop
            try:
                loop.run_until_complete(gw.start())
            except BaseException as exc:  # reported to the caller
                errors.append(exc)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(gw.stop())
                loop.close()

        gw._thread = threading.Thread(target=run, name="gateway", daemon=True)
        gw._thread.start()
        ready.wait(60)
        if errors:
            raise errors[0]
        return gw

    def close(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def run_sync(self, coro: Any, timeout: float = 60.0) -> Any:
        """Run a coroutine on the gateway's loop from another thread (tests, the devnet)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_main(node_url: str, *, l1_rpc: str | None = None, host: str = "127.0.0.1", port: int = 8547,
               accounts: list[bytes] | None = None) -> None:
    """Blocking entry point of ``enclavenet gateway``: prints one JSON ready line."""
    gw = Gateway(node_url, l1_rpc=l1_rpc, host=host, port=port, accounts=accounts)

    async def main() -> None:
        await gw.start()
        print(json.dumps({"ready": True, "url": gw.url, "ws": gw.ws_url, "chainId": gw.core.chain_id,
                          "accounts": gw.core.sessions.accounts(), "authorise": gw.url + "/authorise"}), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await gw.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
