"""The one message format across the ecall boundary: ``u32 length (big-endian) | CBOR body``.

Request body:   ``{"id": int, "method": str, "payload": bytes}``
Response body:  ``{"id": int | None, "result": bytes}``  or  ``{"id": int | None, "error": str}``

``id`` lets the host drop a late answer to a request it already gave up on (timeout). A frame
the enclave could not parse is answered with ``id = None``. Reserved methods start with ``__``:
``__boot__`` (first frame, from the host's simulated hardware), ``__ping__``, and the fault
hooks ``__fault__.crash`` / ``__fault__.hang`` / ``__fault__.compromise`` / ``__fault__.sign``
(refused unless the enclave was started with faults allowed).
"""

from __future__ import annotations

import struct
from typing import Any

import cbor2

LEN = struct.Struct(">I")
DEFAULT_MAX_FRAME = 80 * 1024 * 1024  # a 64 MiB ecall payload plus framing
MAX_METHOD_LEN = 64

BOOT = "__boot__"
PING = "__ping__"
FAULT_CRASH = "__fault__.crash"
FAULT_HANG = "__fault__.hang"
FAULT_COMPROMISE = "__fault__.compromise"
FAULT_SIGN = "__fault__.sign"


class FrameError(ValueError):
    """A frame or message body is malformed (says what; never echoes content)."""


def frame(body: bytes) -> bytes:
    if len(body) >= 1 << 32:
        raise FrameError("frame body too large for a u32 length")
    return LEN.pack(len(body)) + body


def encode_request(req_id: int, method: str, payload: bytes) -> bytes:
    return cbor2.dumps({"id": req_id, "method": method, "payload": bytes(payload)})


def encode_result(req_id: int | None, result: bytes) -> bytes:
    return cbor2.dumps({"id": req_id, "result": bytes(result)})


def encode_error(req_id: int | None, message: str) -> bytes:
    return cbor2.dumps({"id": req_id, "error": message})


def _loads_map(body: bytes, what: str) -> dict[Any, Any]:
    try:
        obj = cbor2.loads(body)
    except Exception as exc:  # cbor2 raises several decode error types
        raise FrameError(f"{what} is not valid CBOR ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise FrameError(f"{what} must be a CBOR map")
    return obj


def decode_request(body: bytes) -> tuple[int, str, bytes]:
    """(id, method, payload) of a request body; raises FrameError (with ``.req_id`` if known)."""
    m = _loads_map(body, "request")
    req_id = m.get("id")
    if not isinstance(req_id, int) or isinstance(req_id, bool) or req_id < 0:
        raise FrameError("request id must be a non-negative integer")
    method = m.get("method")
    payload = m.get("payload", b"")
    if not isinstance(method, str) or not 0 < len(method) <= MAX_METHOD_LEN or not method.isprintable():
        err = FrameError(f"request method must be a printable string of 1..{MAX_METHOD_LEN} characters")
        err.req_id = req_id  # type: ignore[attr-defined]
        raise err
    if not isinstance(payload, bytes):
        err = FrameError("request payload must be a byte string")
        err.req_id = req_id  # type: ignore[attr-defined]
        raise err
    return req_id, method, payload


def decode_response(body: bytes) -> tuple[int | None, bytes | None, str | None]:
    """(id, result, error) of a response body; exactly one of result/error is set."""
    m = _loads_map(body, "enclave response")
    req_id = m.get("id")
    if req_id is not None and (not isinstance(req_id, int) or isinstance(req_id, bool)):
        raise FrameError("enclave response id must be an integer or null")
    if "result" in m and isinstance(m["result"], bytes):
        return req_id, m["result"], None
    if "error" in m and isinstance(m["error"], str):
        return req_id, None, m["error"]
    raise FrameError("enclave response has neither a byte-string result nor a text error")
