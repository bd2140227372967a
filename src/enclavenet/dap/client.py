"""Talk to DAPs: upload a header's data and collect receipts; fetch data back, checked.

    async with DapPool({dap_address: url, ...}, l1_chain_id, rollup) as pool:
        receipts = await pool.store(header, batch_data, snapshot=(epoch, blob), need=2)
        batch = await pool.fetch_batch(header.data_commitment)     # checked against the commitment
        snaps = await pool.snapshots(max_height=100)               # newest first, from every DAP

Nothing a DAP returns is trusted: a receipt must recover to that DAP's registered address over
``crypto.dap.dap_receipt_digest``; batch data must hash to the header's ``data_commitment`` (and
the header to the hash asked for). A DAP that returns bad or no data is skipped and the next
one asked; :class:`DataUnavailable` only when none had it. Snapshots are sealed by the enclaves
(the enclave that restores one authenticates it); the caller checks their header hash on L1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import cbor2

from ..crypto.dap import dap_receipt_digest, data_commitment
from ..crypto.hashing import address_bytes, keccak256, to_checksum
from ..crypto.header import Header
from ..crypto.secp256k1 import SignatureError, recover_address
from .service import BadRequest, batch_items
from .store import MAX_SNAPSHOT_COPIES, HeaderRef, SealedLeaf, Snapshot, StoredBatch

log = logging.getLogger("enclavenet.dap.client")
T = TypeVar("T")
CBOR = "application/cbor"


class DapError(RuntimeError):
    """One DAP failed, refused, or returned data that does not match its commitment."""


class DataUnavailable(DapError):
    """No DAP returned valid data."""


class NotEnoughReceipts(DapError):
    """Fewer valid storage receipts than needed."""

    def __init__(self, message: str, receipts: list[Receipt]) -> None:
        super().__init__(message)
        self.receipts = receipts


@dataclass(frozen=True)
class Receipt:
    signer: str
    signature: bytes = field(repr=False)
    data_commitment: bytes

    def pair(self) -> tuple[str, bytes]:
        """``(signer, 65-byte signature)`` as ``dap.l1.receipts_arg`` takes it."""
        return self.signer, self.signature


def verify_batch(header_raw: bytes, batch_data: bytes, *, data_commitment_: bytes | None = None,
                 header_hash: bytes | None = None) -> StoredBatch:
    """Decode and check a (header, batch data) pair against what was asked for."""
    try:
        header = Header.decode(header_raw)
        items = batch_items(batch_data)
    except (ValueError, BadRequest) as exc:
        raise DapError(f"malformed batch: {exc}") from None
    if data_commitment_ is not None and header.data_commitment != data_commitment_:
        raise DapError("returned a header with another data commitment")
    if header_hash is not None and header.hash() != header_hash:
        raise DapError("returned a header with another hash")
    if data_commitment(items) != header.data_commitment:
        raise DapError("batch data does not match the header's data commitment (corrupt)")
    return StoredBatch(header, batch_data)


class DapClient:
    """One DAP's HTTP API (async). ``address`` (the DAP's registered key) checks its receipts."""

    def __init__(self, url: str, session: aiohttp.ClientSession, *, address: str | None = None,
                 l1_chain_id: int | None = None, rollup: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.address = to_checksum(address) if address else None
        self.l1_chain_id = l1_chain_id
        self.rollup = rollup
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    def __repr__(self) -> str:
        return f"DapClient({self.url}, {self.address})"

    async def _request(self, method: str, path: str, body: Any = None, params: Mapping[str, Any] | None = None,
                       allow_404: bool = False) -> Any:
        data = cbor2.dumps(body) if body is not None else None
        headers = {"Content-Type": CBOR} if data is not None else None
        try:
            async with self.session.request(method, self.url + path, data=data, headers=headers, params=params,
                                            timeout=self.timeout) as resp:
                raw = await resp.read()
                if resp.status == 404 and allow_404:
                    return None
                if resp.status != 200:
                    try:
                        msg = json.loads(raw)["error"]
                    except Exception:
                        msg = raw[:200].decode(errors="replace")
                    raise DapError(f"DAP {self.url} {method} {path}: HTTP {resp.status}: {msg}")
                try:
                    return cbor2.loads(raw)
                except Exception:
                    raise DapError(f"DAP {self.url} {path}: response is not CBOR") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DapError(f"DAP {self.url} unreachable: {type(exc).__name__}: {exc}") from None

    def _check_receipt(self, dc: bytes, res: Any) -> Receipt:
        if not isinstance(res, dict) or not isinstance(res.get("receipt"), bytes):
            raise DapError(f"DAP {self.url}: malformed receipt response")
        sig = res["receipt"]
        if self.l1_chain_id is None or self.rollup is None:
            raise DapError("receipt check needs l1_chain_id and rollup")
        try:
            signer = recover_address(dap_receipt_digest(self.l1_chain_id, self.rollup, dc), sig)
        except (SignatureError, ValueError):
            raise DapError(f"DAP {self.url}: receipt signature does not recover") from None
        if self.address is not None and signer != self.address:
            raise DapError(f"DAP {self.url}: receipt signed by {signer}, not by the registered {self.address}")
        return Receipt(signer, sig, dc)

    async def store(self, header: Header, batch_data: bytes, *, snapshot: tuple[int, bytes] | None = None,
                    leaves: Sequence[tuple[str, bytes]] = ()) -> Receipt:
        body: dict[str, Any] = {"header": header.encode(), "batch_data": batch_data}
        if snapshot is not None:
            body["snapshot"] = {"epoch": snapshot[0], "blob": snapshot[1]}
        if leaves:
            body["leaves"] = [[address_bytes(a), s] for a, s in leaves]
        res = await self._request("POST", "/v1/batch", body)
        return self._check_receipt(header.data_commitment, res)

    async def put_snapshot(self, header_hash: bytes, epoch: int, blob: bytes) -> None:
        await self._request("POST", "/v1/snapshot", {"header_hash": header_hash, "epoch": epoch, "blob": blob})

    async def put_leaves(self, header_hash: bytes, leaves: Sequence[tuple[str, bytes]]) -> None:
        await self._request("POST", "/v1/leaves", {"header_hash": header_hash,
                                                   "leaves": [[address_bytes(a), s] for a, s in leaves]})

    async def put_leaf_diff(self, header_hash: bytes, base: int, diff: Sequence[tuple[bytes, bytes]]) -> None:
        await self._request("POST", "/v1/leafdiff", {"header_hash": header_hash, "base": base,
                                                     "diff": [[k, v] for k, v in diff]})

    async def leaf_set(self, height: int, root: bytes | None = None) -> dict[bytes, bytes] | None:
        """The balances tree's leaf hashes at ``height``: the tree whose root is ``root`` (the
        accepted header's ``balances_root``; several trees may be stored for one height). Unchecked:
        rebuild and compare the root."""
        params = {"root": root.hex()} if root is not None else None
        res = await self._request("GET", f"/v1/leafset/{height}", params=params, allow_404=True)
        if res is None:
            return None
        try:
            return {bytes(k): bytes(v) for k, v in res}
        except (TypeError, ValueError):
            raise DapError(f"DAP {self.url}: malformed leaf set") from None

    async def receipt(self, dc: bytes) -> Receipt:
        return self._check_receipt(dc, await self._request("GET", f"/v1/receipt/{dc.hex()}"))

    async def batch(self, dc: bytes) -> StoredBatch | None:
        res = await self._request("GET", f"/v1/batch/{dc.hex()}", allow_404=True)
        if res is None:
            return None
        return verify_batch(res.get("header", b""), res.get("batch_data", b""), data_commitment_=dc)

    async def batch_by_hash(self, header_hash: bytes) -> StoredBatch | None:
        res = await self._request("GET", f"/v1/header/{header_hash.hex()}", allow_404=True)
        if res is None:
            return None
        return verify_batch(res.get("header", b""), res.get("batch_data", b""), header_hash=header_hash)

    async def headers(self, lo: int, hi: int) -> list[HeaderRef]:
        res = await self._request("GET", "/v1/headers", params={"from": lo, "to": hi})
        return [HeaderRef(int(h), bytes(hh), bytes(dc)) for h, hh, dc in res]

    async def latest_snapshot(self, max_height: int | None = None, copy: int = 0) -> Snapshot | None:
        params: dict[str, int] | None = {"max_height": max_height} if max_height is not None else None
        if copy:
            params = {**(params or {}), "copy": copy}
        res = await self._request("GET", "/v1/snapshot", params=params, allow_404=True)
        if res is None:
            return None
        return Snapshot(int(res["height"]), bytes(res["header_hash"]), int(res["epoch"]), bytes(res["blob"]))

    async def leaf(self, address: str, max_height: int | None = None) -> SealedLeaf | None:
        params = {"max_height": max_height} if max_height is not None else None
        res = await self._request("GET", f"/v1/leaf/{to_checksum(address)}", params=params, allow_404=True)
        if res is None:
            return None
        return SealedLeaf(to_checksum(res["address"]), int(res["height"]), bytes(res["header_hash"]), bytes(res["sealed"]))

    async def status(self) -> dict[str, Any]:
        res: dict[str, Any] = await self._request("GET", "/v1/status")
        return res


class DapPool:
    """Every DAP of a deployment: upload to all, fetch from any (checked), fall back on failure."""

    def __init__(self, daps: Mapping[str, str] | Iterable[str], l1_chain_id: int, rollup: str, *,
                 session: aiohttp.ClientSession | None = None, timeout: float = 30.0) -> None:
        self._own_session = session is None
        self.session = session
        self.l1_chain_id = l1_chain_id
        self.rollup = to_checksum(rollup)
        self.timeout = timeout
        # {address: url}; given bare URLs, the signers of their receipts are not pinned
        self._daps: dict[str, str] = dict(daps) if isinstance(daps, Mapping) else {f"url:{u}": u for u in daps}
        self.clients: list[DapClient] = []
        self._background: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> DapPool:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self.session is None:
            self.session = aiohttp.ClientSession()
        self.set_daps(self._daps)

    def set_daps(self, daps: Mapping[str, str]) -> None:
        """Replace the DAP list (e.g. after a DapRegistered / DapEndpointSet event)."""
        assert self.session is not None, "open() the pool first"
        self._daps = dict(daps)
        self.clients = [
            DapClient(url, self.session, address=None if a.startswith("url:") else a,
                      l1_chain_id=self.l1_chain_id, rollup=self.rollup, timeout=self.timeout)
            for a, url in self._daps.items()
        ]

    async def close(self) -> None:
        for t in list(self._background):
            t.cancel()
        if self._own_session and self.session is not None:
            await self.session.close()
            self.session = None

    async def store(self, header: Header, batch_data: bytes, *, snapshot: tuple[int, bytes] | None = None,
                    leaves: Sequence[tuple[str, bytes]] = (), need: int | None = None,
                    timeout: float | None = None) -> list[Receipt]:
        """Upload to every DAP; return the valid receipts (ordered by signer) as soon as ``need``
        of them arrived (default: all DAPs). The other uploads carry on in the background.
        :class:`NotEnoughReceipts` when fewer than ``need`` came back within ``timeout``."""
        want = len(self.clients) if need is None else need
        tasks = [asyncio.ensure_future(c.store(header, batch_data, snapshot=snapshot, leaves=leaves)) for c in self.clients]
        receipts: list[Receipt] = []
        errors: list[str] = []
        pending = set(tasks)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout if timeout is not None else self.timeout)
        while pending and len(receipts) < want:
            done, pending = await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()),
                                               return_when=asyncio.FIRST_COMPLETED)
            if not done:
                break
            for t in done:
                exc = t.exception()
                if exc is None:
                    receipts.append(t.result())
                else:
                    errors.append(str(exc))
        for t in pending:  # let slower DAPs finish storing; nobody waits for them
            self._background.add(t)
            t.add_done_callback(self._background.discard)
            t.add_done_callback(_consume)
        receipts.sort(key=lambda r: address_bytes(r.signer))
        if len(receipts) < want:
            raise NotEnoughReceipts(
                f"{len(receipts)} of {want} storage receipts (from {len(self.clients)} DAPs)"
                + (f": {'; '.join(errors[:4])}" if errors else ""), receipts)
        return receipts

    def _order(self) -> list[DapClient]:
        order = list(self.clients)
        random.shuffle(order)  # spread reads
        return order

    async def _first(self, what: str, fn: Callable[[DapClient], Awaitable[T | None]]) -> T:
        problems = []
        for c in self._order():
            try:
                res = await fn(c)
            except DapError as exc:
                log.warning("%s from %s: %s; asking the next DAP", what, c.url, exc)
                problems.append(f"{c.url}: {exc}")
                continue
            if res is not None:
                return res
            problems.append(f"{c.url}: not stored")
        raise DataUnavailable(f"no DAP returned {what} ({len(self.clients)} asked): " + "; ".join(problems[:6]))

    async def fetch_batch(self, dc: bytes) -> StoredBatch:
        """The batch data of ``dc``, from the first DAP whose data matches the commitment."""
        return await self._first(f"batch {dc.hex()[:16]}", lambda c: c.batch(dc))

    async def fetch_by_hash(self, header_hash: bytes) -> StoredBatch:
        return await self._first(f"header {header_hash.hex()[:16]}", lambda c: c.batch_by_hash(header_hash))

    async def snapshots(self, max_height: int | None = None) -> list[Snapshot]:
        """Every copy of every DAP's newest snapshot at or below ``max_height``, newest first (equal
        blobs merged). A DAP keeps up to MAX_SNAPSHOT_COPIES different blobs per header, first come:
        the restoring enclave refuses every one that is not that header's state, so the caller
        tries them in turn and a junk upload cannot hide the good one."""

        async def copies(c: DapClient) -> list[Snapshot]:
            out: list[Snapshot] = []
            for k in range(MAX_SNAPSHOT_COPIES):
                s = await c.latest_snapshot(max_height, copy=k)
                if s is None or (out and s.header_hash != out[0].header_hash):
                    break
                out.append(s)
            return out

        results = await asyncio.gather(*(copies(c) for c in self.clients), return_exceptions=True)
        seen: dict[tuple[bytes, bytes], Snapshot] = {}
        for r in results:
            if isinstance(r, list):
                for snap in r:
                    seen.setdefault((snap.header_hash, keccak256(snap.blob)), snap)
        return sorted(seen.values(), key=lambda s: -s.height)

    async def leaf(self, address: str, max_height: int | None = None) -> SealedLeaf:
        """The newest sealed escape leaf of ``address`` any DAP holds."""
        results = await asyncio.gather(*(c.leaf(address, max_height) for c in self.clients), return_exceptions=True)
        found = [r for r in results if isinstance(r, SealedLeaf)]
        if not found:
            raise DataUnavailable(f"no DAP holds an escape leaf for {to_checksum(address)}")
        return max(found, key=lambda r: r.height)

    async def headers(self, lo: int, hi: int) -> list[HeaderRef]:
        """Union of the headers the DAPs hold in ``lo..hi``."""
        results = await asyncio.gather(*(c.headers(lo, hi) for c in self.clients), return_exceptions=True)
        refs: dict[bytes, HeaderRef] = {}
        for r in results:
            if isinstance(r, list):
                for ref in r:
                    refs.setdefault(ref.header_hash, ref)
        return sorted(refs.values(), key=lambda r: (r.height, r.header_hash))


def _consume(t: asyncio.Task[Any]) -> None:
    if not t.cancelled():
        t.exception()  # retrieved: no "exception was never retrieved" noise


def run(coro: Awaitable[T]) -> T:
    """Run one coroutine to completion from synchronous code (tests, benchmarks, scripts)."""
    async def main() -> T:
        return await coro

    return asyncio.run(main())


__all__ = [
    "DapClient",
    "DapError",
    "DapPool",
    "DataUnavailable",
    "NotEnoughReceipts",
    "Receipt",
    "run",
    "verify_batch",
]
