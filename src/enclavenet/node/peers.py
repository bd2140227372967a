"""Links between nodes: CBOR over HTTP POST ``/peer/<op>`` on each node's RPC port.

The host is a courier: what crosses is enclave output (quotes, header signatures, encrypted
epoch bundles, encrypted envelopes and receipts) and public L1 data. Nothing a peer says is
believed on its word: proposals carry the proposer enclave's signature on the header and
the voter's enclave re-executes them; votes are enclave signatures checked against the
Registry; quotes are verified by the enclave; envelopes are self-authenticating.

Ops: ``identity``, ``epoch_bundle``, ``txs``, ``propose``, ``batch``. A refusal is HTTP 400
with CBOR ``{"error": message}``.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import cbor2

log = logging.getLogger(__name__)

MAX_PEER_BODY = 64 * 1024 * 1024


class PeerError(Exception):
    """A peer refused a request or could not be reached; the message says which and why."""


class PeerClient:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.address: str | None = None
        self.tee_type: int | None = None
        self.quote: bytes | None = None
        self.failures = 0
        self.inflight_forwards = 0

    def __repr__(self) -> str:
        return f"PeerClient({self.url}, {self.address})"

    async def call(self, op: str, body: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
        return await self.call_raw(op, cbor2.dumps(body), timeout=timeout)

    async def call_raw(self, op: str, data: bytes, *, timeout: float = 30.0) -> dict[str, Any]:
        """``call`` with a body already CBOR-encoded (one encoding for many peers)."""
        try:
            async with self.session.post(
                f"{self.url}/peer/{op}",
                data=data,
                headers={"Content-Type": "application/cbor"},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.failures += 1
            raise PeerError(f"peer {self.url} unreachable for {op}: {type(exc).__name__} {exc}".strip()) from None
        try:
            out = cbor2.loads(raw) if raw else {}
        except Exception:
            raise PeerError(f"peer {self.url} answered {op} with non-CBOR (HTTP {status})") from None
        if status != 200 or not isinstance(out, dict):
            msg = out.get("error") if isinstance(out, dict) else None
            raise PeerError(f"peer {self.url} refused {op}: {msg or f'HTTP {status}'}")
        self.failures = 0
        return out
