"""A small JSON-RPC 2.0 server on aiohttp: method registry, batches, errors that say what was wrong.

Used by the node (``node/server.py``) and the embedded L1 server (``chain/l1server.py``).

* Bodies over ``max_body`` bytes are refused before parsing (HTTP 413 with a JSON-RPC error).
* Batches (JSON arrays) are answered in order; an empty batch is an invalid request; batches
  longer than ``max_batch`` are refused as a whole.
* A method may return :class:`Deferred` (a result that waits on something shared, e.g. the
  group commit of node/ingress.py): a batch first runs every request up to its deferred part,
  then awaits all of those together, so a batch of transactions costs one fsync, not one each.
* Codes: -32700 parse error, -32600 invalid request, -32601 unknown method, -32602 invalid
  params, -32603 internal error (no details: they could carry secrets), -32000.. application.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000  # application errors: -32000 .. -32099

Handler = Callable[..., Any]

#: the remote address of the HTTP request being answered ("" outside one): for per-IP limits
CLIENT_IP: contextvars.ContextVar[str] = contextvars.ContextVar("rpc_client_ip", default="")


class RpcError(Exception):
    """A JSON-RPC error to send back; ``message`` must say what was wrong (and never a secret)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


class Deferred:
    """A method's result still to be awaited (an awaitable already under way, e.g. a future):
    ``handle_batch`` runs every request of a batch, in order, up to that point before it awaits
    the first deferred result."""

    def __init__(self, result: Awaitable[Any]) -> None:
        self.result = result


class _Waiting:
    """A request whose method returned a :class:`Deferred`: its response once that resolves."""

    def __init__(self, server: JsonRpcServer, id_: Any, method: str, notification: bool, deferred: Deferred) -> None:
        self.server, self.id, self.method, self.notification, self.deferred = server, id_, method, notification, deferred

    async def response(self) -> dict[str, Any] | None:
        try:
            result = await self.deferred.result
        except RpcError as exc:
            resp = {"jsonrpc": "2.0", "id": self.id, "error": exc.to_json()}
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: internal error in %s", self.server.name, self.method)
            resp = _error(self.id, INTERNAL_ERROR, f"internal error in {self.method}")
        else:
            resp = {"jsonrpc": "2.0", "id": self.id, "result": result}
        return None if self.notification else resp


def invalid_params(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, message)


def _error(id_: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "error": RpcError(code, message, data).to_json()}


class JsonRpcServer:
    """Register methods with :meth:`method`, mount with :meth:`app` (POST ``/``)."""

    def __init__(self, *, max_body: int = 8 * 1024 * 1024, max_batch: int = 20_000, name: str = "rpc") -> None:
        self.max_body = max_body
        self.max_batch = max_batch
        self.name = name
        self._methods: dict[str, Handler] = {}
        self._gets: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {}
        self.requests_served = 0

    def method(self, name: str, fn: Handler) -> None:
        """Register ``fn(*params)`` (sync or async) under ``name``."""
        self._methods[name] = fn

    def get(self, path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        """Serve ``GET path`` next to the JSON-RPC endpoint (e.g. ``/metrics``); before :meth:`app`."""
        self._gets[path] = handler

    def methods(self) -> list[str]:
        return sorted(self._methods)

    def app(self, app: web.Application | None = None) -> web.Application:
        app = app or web.Application(client_max_size=self.max_body + 1024)
        app.router.add_post("/", self.handle_http)
        app.router.add_get("/health", self._health)
        for path, handler in self._gets.items():
            app.router.add_get(path, handler)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "name": self.name})

    async def handle_http(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > self.max_body:
            return self._json(
                _error(None, INVALID_REQUEST, f"request body too large: {request.content_length} bytes > {self.max_body}"),
                status=413,
            )
        # read at most max_body + 1 bytes, refusing bodies sent without a length that are too big
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self.max_body:
                return self._json(
                    _error(None, INVALID_REQUEST, f"request body too large: over {self.max_body} bytes"),
                    status=413,
                )
            chunks.append(chunk)
        body = b"".join(chunks)
        CLIENT_IP.set(request.remote or "")
        result = await self.handle_bytes(body)
        if result is None:
            return web.Response(status=204)
        return web.Response(body=result, content_type="application/json")

    @staticmethod
    def _json(obj: Any, status: int = 200) -> web.Response:
        return web.Response(body=json.dumps(obj).encode(), status=status, content_type="application/json")

    async def handle_bytes(self, body: bytes) -> bytes | None:
        """Answer one HTTP body (single request or batch). None: only notifications."""
        try:
            req = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            return json.dumps(_error(None, PARSE_ERROR, f"parse error: body is not valid JSON ({exc.__class__.__name__})")).encode()
        except ValueError:  # a number of more than sys.get_int_max_str_digits() digits (not a JSONDecodeError)
            return json.dumps(_error(None, PARSE_ERROR, "parse error: a number in the body has too many digits")).encode()
        if isinstance(req, list):
            if not req:
                return json.dumps(_error(None, INVALID_REQUEST, "invalid request: empty batch")).encode()
            if len(req) > self.max_batch:
                return json.dumps(
                    _error(None, INVALID_REQUEST, f"invalid request: batch of {len(req)} requests > {self.max_batch}")
                ).encode()
            out = await self.handle_batch(req)
            return json.dumps(out).encode() if out else None
        resp = await self.handle_one(req)
        return json.dumps(resp).encode() if resp is not None else None

    async def handle_batch(self, reqs: list[Any]) -> list[dict[str, Any]]:
        started = [await self._start(r) for r in reqs]
        out = []
        for r in started:  # every deferred part is under way: awaiting them in turn costs no extra wait
            resp = await r.response() if isinstance(r, _Waiting) else r
            if resp is not None:
                out.append(resp)
        return out

    async def handle_one(self, req: Any) -> dict[str, Any] | None:
        resp = await self._start(req)
        return await resp.response() if isinstance(resp, _Waiting) else resp

    async def _start(self, req: Any) -> dict[str, Any] | _Waiting | None:
        """Run one request up to a deferred result (then the caller awaits ``response()``)."""
        self.requests_served += 1
        if not isinstance(req, dict):
            return _error(None, INVALID_REQUEST, "invalid request: expected a JSON object")
        id_ = req.get("id")
        if not isinstance(id_, str | int | float | type(None)) or isinstance(id_, bool):
            return _error(None, INVALID_REQUEST, "invalid request: id must be a string, number or null")
        notification = "id" not in req
        if req.get("jsonrpc") != "2.0":
            return _error(id_, INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"')
        method = req.get("method")
        if not isinstance(method, str):
            return _error(id_, INVALID_REQUEST, 'invalid request: "method" must be a string')
        params = req.get("params", [])
        if isinstance(params, dict):
            return _error(id_, INVALID_PARAMS, f"invalid params for {method[:64]}: pass positional params (an array)")
        if not isinstance(params, list):
            return _error(id_, INVALID_PARAMS, f"invalid params for {method[:64]}: params must be an array")
        fn = self._methods.get(method)
        if fn is None:
            return _error(id_, METHOD_NOT_FOUND, f"unknown method {method[:64]!r}")
        try:
            result = fn(*params)
            if inspect.isawaitable(result):
                result = await result
        except RpcError as exc:
            resp = {"jsonrpc": "2.0", "id": id_, "error": exc.to_json()}
        except TypeError as exc:
            if _is_arity_error(exc, fn):
                resp = _error(id_, INVALID_PARAMS, f"invalid params for {method}: {_arity_message(fn, len(params))}")
            else:
                log.exception("%s: internal error in %s", self.name, method)
                resp = _error(id_, INTERNAL_ERROR, f"internal error in {method}")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: internal error in %s", self.name, method)
            resp = _error(id_, INTERNAL_ERROR, f"internal error in {method}")
        else:
            if isinstance(result, Deferred):
                return _Waiting(self, id_, method, notification, result)
            resp = {"jsonrpc": "2.0", "id": id_, "result": result}
        return None if notification else resp


def _is_arity_error(exc: TypeError, fn: Handler) -> bool:
    tb = exc.__traceback__
    # raised by the call itself (binding), not inside the function
    return tb is not None and tb.tb_next is None


def _arity_message(fn: Handler, given: int) -> str:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return f"wrong number of params ({given})"
    names = [p.name for p in sig.parameters.values()]
    return f"expected params [{', '.join(names)}], got {given}"


AsyncHandler = Callable[..., Awaitable[Any]]


# ---------------------------------------------------------------------------- param helpers


def hex_bytes(value: Any, name: str, *, length: int | None = None, max_len: int | None = None) -> bytes:
    """0x-hex -> bytes, or an invalid-params error naming the parameter."""
    if not isinstance(value, str):
        raise invalid_params(f"{name} must be a 0x-prefixed hex string")
    if not value.startswith(("0x", "0X")):
        raise invalid_params(f"{name} must be 0x-prefixed hex")
    if max_len is not None and len(value) > 2 + 2 * max_len:
        raise invalid_params(f"{name} too large: {(len(value) - 2) // 2} bytes > {max_len}")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise invalid_params(f"{name} is not valid hex") from None
    if length is not None and len(raw) != length:
        raise invalid_params(f"{name} must be {length} bytes, got {len(raw)}")
    return raw


def quantity(value: Any, name: str, *, max_value: int = 2**64) -> int:
    """A hex QUANTITY ("0x1a") or a JSON integer -> int, or an invalid-params error naming it."""
    if isinstance(value, bool):
        raise invalid_params(f"{name} must be a hex quantity or an integer")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and value.startswith(("0x", "0X")) and 2 < len(value) <= 66:
        try:
            n = int(value[2:], 16)
        except ValueError:
            raise invalid_params(f"{name} is not a valid hex quantity") from None
    else:
        raise invalid_params(f"{name} must be a hex quantity (0x...) or an integer")
    if not 0 <= n <= max_value:
        raise invalid_params(f"{name} out of range (0..{max_value})")
    return n


def hex_quantity(value: int) -> str:
    return hex(value)


def hex_data(value: bytes) -> str:
    return "0x" + value.hex()
