"""The DAP service (``enclavenet dap``): store every header's data, sign receipts, serve it,
and answer the laziness game's requests on L1.

HTTP on 127.0.0.1, CBOR bodies (``application/cbor``); errors are ``{"error": message}`` JSON
with a 4xx/5xx status (docs/DAP.md has the full API):

    POST /v1/batch     {header: 416 bytes, batch_data, snapshot?: {epoch, blob}, leaves?: [[address, sealed]]}
                       -> {data_commitment, header_hash, signer, receipt}   once durably stored
    POST /v1/snapshot  {header_hash, epoch, blob}          (a header already stored here)
    POST /v1/leaves    {header_hash, leaves: [[address, sealed]]}
    POST /v1/leafdiff  {header_hash, base, diff: [[smt key, leaf hash or b""]]}  (header stored here;
                       stored only if, folded onto the base ancestor's tree, it gives balances_root)
    GET  /v1/batch/{data_commitment hex}    -> {header, batch_data}
    GET  /v1/header/{header_hash hex}       -> {header, batch_data}
    GET  /v1/headers?from=&to=              -> [[height, header_hash, data_commitment]] (<= 1000)
    GET  /v1/snapshot?max_height=&copy=     -> {height, header_hash, epoch, blob}  (copy k of that header's
                                               up to 4 blobs: uploads never replace one another)
    GET  /v1/leaf/{address}?max_height=     -> {height, header_hash, sealed}
    GET  /v1/leafset/{height}?root=         -> [[smt key, leaf hash]] (fold of stored diffs to the tree
                                               ``root``, default the oldest at that height; 404: gap)
    GET  /v1/piece/{data_commitment}/{path} -> {index, item, siblings}
    GET  /v1/receipt/{data_commitment}      -> {signer, receipt}
    GET  /v1/status                         -> {address, backend, batches, min_height, max_height, ...}

A receipt (``crypto.dap.dap_receipt_digest`` signed with the DAP's key) is given only for batch
data whose Merkle root equals the header's ``data_commitment``, and only after the store's
transaction committed. With an L1 and the DapManager configured, a responder task watches
``DataRequested`` and answers every request for data stored here (``answerData``) before its
deadline; ``lazy=True`` turns that off (a fault switch for tests and demos of the slashing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
from aiohttp import web

from ..crypto.dap import (
    MAX_PIECE_BYTES,
    dap_receipt_digest,
    data_commitment,
    piece_index,
    piece_proof,
)
from ..crypto.hashing import ZERO32, address_bytes, to_checksum
from ..crypto.header import Header
from ..crypto.secp256k1 import SigningKey
from ..crypto.smt import SparseMerkleTree
from .metrics import CONTENT_TYPE as METRICS_TYPE
from .metrics import DapMetrics
from .store import SealedLeaf, Snapshot, Store, StoredBatch, StoreError, new_leaf_link, open_store

log = logging.getLogger("enclavenet.dap")

CBOR = "application/cbor"
DEFAULT_MAX_BODY = 128 * 1024 * 1024
MAX_HEADERS_PER_QUERY = 1000
#: the most heights a leaf diff from a base above 0 spans (the DAP walks the header's ancestors)
MAX_DIFF_SPAN = 4096
#: heights are stored as 64-bit signed integers (SQLite INTEGER, PostgreSQL BIGINT)
MAX_HEIGHT = 2**63 - 1


class BadRequest(ValueError):
    """The request is malformed or does not match its commitment; the message goes back."""


def batch_items(batch_data: bytes) -> list[bytes]:
    """The items of batch data (a CBOR array of byte strings; docs/ENCLAVE.md)."""
    try:
        items = cbor2.loads(batch_data)
    except Exception:
        raise BadRequest("batch_data is not CBOR") from None
    if not isinstance(items, list) or not items or not all(isinstance(x, bytes) for x in items):
        raise BadRequest("batch_data must be a non-empty CBOR array of byte strings")
    return items


def load_key(path: str | Path) -> SigningKey:
    """The DAP's receipt key from a file holding its hex secret; created (mode 0600) if missing."""
    p = Path(path)
    if not p.exists():
        key = SigningKey.generate()
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.secret.hex() + "\n")
        return key
    text = p.read_text().strip()
    try:
        return SigningKey(bytes.fromhex(text.removeprefix("0x")))
    except ValueError:
        raise ValueError(f"{p}: not a hex secp256k1 private key") from None


@dataclass
class DapConfig:
    store: str  # open_store spec: sqlite path / sqlite:///path / postgresql://...
    key: SigningKey = field(repr=False)
    l1_chain_id: int
    rollup: str
    host: str = "127.0.0.1"
    port: int = 0
    l1_rpc: str | None = None  # with manager: answer the penalty game's requests
    manager: str | None = None
    manager_from_block: int = 0
    lazy: bool = False
    poll_interval: float = 0.5
    max_body: int = DEFAULT_MAX_BODY

    def __post_init__(self) -> None:
        from ..hosts import REFUSAL, private_bind_host

        if not private_bind_host(self.host):
            raise ValueError(f"a DAP {REFUSAL}, not {self.host!r}")
        self.rollup = to_checksum(self.rollup)


def _cbor(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=cbor2.dumps(obj), status=status, content_type=CBOR)


def _error(status: int, message: str) -> web.Response:
    return web.Response(text=json.dumps({"error": message}), status=status, content_type="application/json")


def _hex32(text: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise BadRequest(f"{what} must be 32 bytes of hex") from None
    if len(raw) != 32:
        raise BadRequest(f"{what} must be 32 bytes of hex")
    return raw


def _int_param(req: web.Request, name: str, default: int | None) -> int | None:
    v = req.query.get(name)
    if v is None:
        return default
    try:
        n = int(v)
    except ValueError:
        raise BadRequest(f"query parameter {name} must be an integer") from None
    if n < 0:
        raise BadRequest(f"query parameter {name} must not be negative")
    return n


class DapService:
    """The aiohttp application around a :class:`Store` and the DAP's key."""

    def __init__(self, config: DapConfig, store: Store | None = None) -> None:
        self.cfg = config
        self.store = store or open_store(config.store)
        self.key = config.key
        self.address = config.key.address
        self.app = web.Application(client_max_size=config.max_body)
        self.app.add_routes([
            web.post("/v1/batch", self.h_put_batch),
            web.post("/v1/snapshot", self.h_put_snapshot),
            web.post("/v1/leaves", self.h_put_leaves),
            web.post("/v1/leafdiff", self.h_put_leafdiff),
            web.get("/v1/leafset/{height}", self.h_leafset),
            web.get("/v1/batch/{dc}", self.h_batch),
            web.get("/v1/header/{hh}", self.h_header),
            web.get("/v1/headers", self.h_headers),
            web.get("/v1/snapshot", self.h_snapshot),
            web.get("/v1/leaf/{address}", self.h_leaf),
            web.get("/v1/piece/{dc}/{path}", self.h_piece),
            web.get("/v1/receipt/{dc}", self.h_receipt),
            web.get("/v1/status", self.h_status),
            web.get("/metrics", self.h_metrics),
        ])
        self.app.middlewares.append(self._errors)
        self.responder: Responder | None = None
        self.stats = {"stored": 0, "bytes": 0, "answered": 0}
        self.metrics = DapMetrics(self)
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    # -- plumbing --------------------------------------------------------------------------
    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            resp: web.StreamResponse = await handler(request)
        except BadRequest as exc:
            resp = _error(400, str(exc))
        except StoreError as exc:
            log.error("store: %s", exc)
            resp = _error(503, f"storage unavailable: {exc}")
        except web.HTTPException as exc:
            self.metrics.refused.labels(str(exc.status)).inc()
            if exc.status == 413:
                return _error(413, f"request body larger than {self.cfg.max_body} bytes")
            raise
        if resp.status >= 400 and resp.status != 404:  # a 404 is an answer (not stored here)
            self.metrics.refused.labels(str(resp.status)).inc()
        return resp

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = cbor2.loads(raw)
        except Exception:
            raise BadRequest("body is not CBOR") from None
        if not isinstance(body, dict):
            raise BadRequest("body must be a CBOR map")
        return body

    def sign_receipt(self, dc: bytes) -> bytes:
        return self.key.sign(dap_receipt_digest(self.cfg.l1_chain_id, self.cfg.rollup, dc))

    # -- writes ----------------------------------------------------------------------------
    async def h_put_batch(self, request: web.Request) -> web.Response:
        t0 = time.perf_counter()
        body = await self._body(request)
        header = _header(body.get("header"))
        data = body.get("batch_data")
        if not isinstance(data, bytes):
            raise BadRequest("batch_data must be a byte string")
        items = batch_items(data)
        big = next((i for i, x in enumerate(items) if len(x) > MAX_PIECE_BYTES), None)
        if big is not None:  # a piece answerData cannot take: signing it would risk our collateral
            raise BadRequest(
                f"batch_data item {big} has {len(items[big])} bytes, above the {MAX_PIECE_BYTES} bytes "
                "DapManager.answerData accepts: it could not be answered on chain; not stored, not signed"
            )
        dc = await self._run(data_commitment, items)
        if dc != header.data_commitment:
            raise BadRequest("batch_data does not match the header's data_commitment")
        hh = header.hash()
        snap = body.get("snapshot")
        snapshot = None if snap is None else Snapshot(header.height, hh, *_snapshot_fields(snap))
        leaves = _leaves(body.get("leaves", []), header.height, hh)
        await self._run(self.store.put, StoredBatch(header, data), snapshot, leaves)
        self.stats["stored"] += 1
        self.stats["bytes"] += len(data)
        out = _cbor({"data_commitment": dc, "header_hash": hh, "signer": self.address,
                     "receipt": self.sign_receipt(dc)})
        m = self.metrics
        m.stored.inc()
        m.stored_bytes.inc(len(data))
        m.receipts.inc()
        m.upload_seconds.observe(time.perf_counter() - t0)
        return out

    async def _stored_header(self, body: dict[str, Any]) -> StoredBatch:
        hh = body.get("header_hash")
        if not isinstance(hh, bytes) or len(hh) != 32:
            raise BadRequest("header_hash must be 32 bytes")
        stored: StoredBatch | None = await self._run(self.store.batch_by_hash, hh)
        if stored is None:
            raise BadRequest("no batch stored for that header_hash: POST /v1/batch first")
        return stored

    async def h_put_snapshot(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        stored = await self._stored_header(body)
        epoch, blob = _snapshot_fields(body)
        await self._run(self.store.put_snapshot, Snapshot(stored.height, stored.header_hash, epoch, blob))
        return _cbor({"stored": True, "height": stored.height})

    async def h_put_leaves(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        stored = await self._stored_header(body)
        leaves = _leaves(body.get("leaves"), stored.height, stored.header_hash)
        await self._run(self.store.put_leaves, leaves)
        return _cbor({"stored": len(leaves), "height": stored.height})

    async def h_put_leafdiff(self, request: web.Request) -> web.Response:
        """Escape data (docs/DAP.md): the balances tree's salted leaf hashes changed from header
        ``base`` to this header (base 0: every leaf). Public-safe: a leaf hash hides its balance.

        Checked before it is stored: folded onto the tree this DAP holds for the header's ancestor
        at ``base``, it must give the header's ``balances_root``. A wrong diff is refused, so a
        first upload can never hold the place of the right one (docs/SECURITY.md, L5)."""
        body = await self._body(request)
        stored = await self._stored_header(body)
        base = body.get("base")
        if not isinstance(base, int) or not 0 <= base < stored.height:
            raise BadRequest(f"base must be an integer height below the header's {stored.height}")
        diff = _leaf_diff(body.get("diff"))
        root = stored.header.balances_root
        out = {"stored": len(diff), "height": stored.height, "base": base}
        if not new_leaf_link(await self._run(self.store.leaf_links, stored.height, root), base):
            return _cbor(out)  # this link, or enough links to this tree, stored (checked then): a no-op
        base_root = await self._run(self._ancestor_root, stored.header, base)
        await self._run(self._check_leaf_diff, stored.height, root, base, base_root, diff)
        await self._run(lambda: self.store.put_leaf_diff(stored.height, base, diff, root=root, base_root=base_root))
        return _cbor(out)

    def _ancestor_root(self, header: Header, base: int) -> bytes:
        """The balances root of ``header``'s ancestor at height ``base`` (the empty tree at 0),
        following ``prev_hash`` through the headers stored here (at most MAX_DIFF_SPAN)."""
        if base == 0:
            return ZERO32
        if header.height - base > MAX_DIFF_SPAN:
            raise BadRequest(f"a leaf diff spans at most {MAX_DIFF_SPAN} heights (base 0, every leaf, always goes)")
        h = header
        while h.height > base:
            prev = self.store.batch_by_hash(h.prev_hash)
            if prev is None or prev.height != h.height - 1:
                raise BadRequest(f"the header's ancestor at height {h.height - 1} is not stored here: "
                                 f"cannot check a diff from height {base} (upload one from base 0)")
            h = prev.header
        return h.balances_root

    def _check_leaf_diff(self, height: int, root: bytes, base: int, base_root: bytes,
                         diff: list[tuple[bytes, bytes]]) -> None:
        leaves = {} if base == 0 else self.store.leaf_set(base, base_root)
        if leaves is None:
            raise BadRequest(f"no leaf set of the header's ancestor at height {base} here: "
                             "cannot check the diff (upload one from base 0)")
        for k, v in diff:  # a minimal diff (what the enclave exports): the rows stored are the bytes uploaded
            if (leaves.get(k) == v) if v else (k not in leaves):
                raise BadRequest("a diff entry changes nothing (the same leaf, or removes an absent key): not stored")
            if v:
                leaves[k] = v
            else:
                del leaves[k]
        tree = SparseMerkleTree()
        tree.update(dict(leaves))
        if tree.root != root:
            raise BadRequest(f"the leaf diff {base} -> {height} does not give the header's balances_root: not stored")

    async def h_leafset(self, request: web.Request) -> web.Response:
        try:
            height = int(request.match_info["height"], 0)
        except ValueError:
            raise BadRequest("height must be an integer") from None
        root = request.query.get("root")
        want = None if root is None else _hex32(root, "root")
        leaves: dict[bytes, bytes] | None = await self._run(self.store.leaf_set, height, want)
        if leaves is None:
            return _error(404, f"no chain of leaf diffs up to height {height} here"
                          + ("" if root is None else " for that root"))
        return _cbor([[k, v] for k, v in sorted(leaves.items())])

    # -- reads -----------------------------------------------------------------------------
    async def h_batch(self, request: web.Request) -> web.Response:
        b: StoredBatch | None = await self._run(self.store.batch, _hex32(request.match_info["dc"], "data commitment"))
        if b is None:
            return _error(404, "no batch with that data commitment here")
        return _cbor({"header": b.header.encode(), "batch_data": b.batch_data})

    async def h_header(self, request: web.Request) -> web.Response:
        b: StoredBatch | None = await self._run(self.store.batch_by_hash, _hex32(request.match_info["hh"], "header hash"))
        if b is None:
            return _error(404, "no batch with that header hash here")
        return _cbor({"header": b.header.encode(), "batch_data": b.batch_data})

    async def h_headers(self, request: web.Request) -> web.Response:
        lo = _int_param(request, "from", 0) or 0
        hi = _int_param(request, "to", lo + MAX_HEADERS_PER_QUERY - 1)
        assert hi is not None
        refs = await self._run(self.store.headers, lo, hi, MAX_HEADERS_PER_QUERY)
        return _cbor([[r.height, r.header_hash, r.data_commitment] for r in refs])

    async def h_snapshot(self, request: web.Request) -> web.Response:
        copy = _int_param(request, "copy", 0) or 0
        s: Snapshot | None = await self._run(self.store.latest_snapshot, _int_param(request, "max_height", None), copy)
        if s is None:
            return _error(404, "no snapshot here at or below that height" + (f" (copy {copy})" if copy else ""))
        return _cbor({"height": s.height, "header_hash": s.header_hash, "epoch": s.epoch, "blob": s.blob})

    async def h_leaf(self, request: web.Request) -> web.Response:
        try:
            address = to_checksum(request.match_info["address"])
        except ValueError:
            raise BadRequest("address must be 20 bytes of hex") from None
        lf: SealedLeaf | None = await self._run(self.store.leaf, address, _int_param(request, "max_height", None))
        if lf is None:
            return _error(404, "no escape leaf for that address here")
        return _cbor({"address": lf.address, "height": lf.height, "header_hash": lf.header_hash, "sealed": lf.sealed})

    async def h_piece(self, request: web.Request) -> web.Response:
        dc = _hex32(request.match_info["dc"], "data commitment")
        try:
            path = int(request.match_info["path"], 0)
        except ValueError:
            raise BadRequest("path must be an integer") from None
        b: StoredBatch | None = await self._run(self.store.batch, dc)
        if b is None:
            return _error(404, "no batch with that data commitment here")
        index, item, siblings = await self._run(piece_for, b.batch_data, path)
        return _cbor({"index": index, "item": item, "siblings": siblings})

    async def h_receipt(self, request: web.Request) -> web.Response:
        dc = _hex32(request.match_info["dc"], "data commitment")
        b = await self._run(self.store.batch, dc)
        if b is None:
            return _error(404, "no batch with that data commitment here (no receipt)")
        self.metrics.receipts.inc()
        return _cbor({"signer": self.address, "receipt": self.sign_receipt(dc)})

    async def h_metrics(self, request: web.Request) -> web.Response:
        body = await self._run(self.metrics.render)
        return web.Response(body=body, headers={"Content-Type": METRICS_TYPE})

    async def h_status(self, request: web.Request) -> web.Response:
        summary = await self._run(self.store.summary)
        return _cbor({"address": self.address, "backend": self.store.backend, "rollup": self.cfg.rollup,
                      "l1_chain_id": self.cfg.l1_chain_id, **summary, **self.stats,
                      "responder": self.responder is not None and not self.cfg.lazy})

    # -- life cycle --------------------------------------------------------------------------
    async def start(self) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.host, self.cfg.port)
        await site.start()
        server = getattr(site, "_server", None)
        port = server.sockets[0].getsockname()[1] if server and server.sockets else self.cfg.port
        self.url = f"http://{self.cfg.host}:{port}"
        if self.cfg.l1_rpc and self.cfg.manager and not self.cfg.lazy:
            self.responder = Responder(self)
            self.responder.start()
        return self.url

    async def stop(self) -> None:
        if self.responder:
            await self.responder.stop()
        if self._runner:
            await self._runner.cleanup()
        self.store.close()


def piece_for(batch_data: bytes, path: int) -> tuple[int, bytes, list[bytes]]:
    """(index, item, siblings) of the piece a path reaches in this batch data."""
    items = batch_items(batch_data)
    index = piece_index(path, len(items))
    _, siblings = piece_proof(items, index)
    return index, items[index], siblings


def _header(raw: Any) -> Header:
    if not isinstance(raw, bytes):
        raise BadRequest("header must be the 416-byte encoded header")
    try:
        header = Header.decode(raw)
    except ValueError as exc:
        raise BadRequest(f"header: {exc}") from None
    if header.height > MAX_HEIGHT:  # else OverflowError in the store (SQLite) or a 503 (PostgreSQL)
        raise BadRequest(f"header height {header.height} is beyond what a DAP stores (at most {MAX_HEIGHT})")
    return header


def _snapshot_fields(snap: Any) -> tuple[int, bytes]:
    if not isinstance(snap, dict):
        raise BadRequest("snapshot must be a map {epoch, blob}")
    epoch, blob = snap.get("epoch"), snap.get("blob")
    if not isinstance(epoch, int) or not 0 <= epoch < 1 << 32 or not isinstance(blob, bytes) or not blob:
        raise BadRequest("snapshot needs an integer epoch and a non-empty blob")
    return epoch, blob


def _leaves(raw: Any, height: int, header_hash: bytes) -> list[SealedLeaf]:
    if not isinstance(raw, list):
        raise BadRequest("leaves must be a list of [address, sealed]")
    out = []
    for item in raw:
        if not isinstance(item, list | tuple) or len(item) != 2 or not isinstance(item[1], bytes) or not item[1]:
            raise BadRequest("each leaf is [address (20 bytes or hex), sealed bytes]")
        if not isinstance(item[0], str | bytes):  # bytes(an int) would allocate that many bytes
            raise BadRequest("leaf address must be 20 bytes (or their hex)")
        try:
            address = to_checksum(address_bytes(item[0]) if isinstance(item[0], str) else item[0])
        except (ValueError, TypeError):
            raise BadRequest("leaf address must be 20 bytes") from None
        out.append(SealedLeaf(address, height, header_hash, item[1]))
    return out


def _leaf_diff(raw: Any) -> list[tuple[bytes, bytes]]:
    if not isinstance(raw, list):
        raise BadRequest("diff must be a list of [smt key, leaf hash or empty]")
    out = []
    keys: set[bytes] = set()
    for item in raw:
        if (not isinstance(item, list | tuple) or len(item) != 2 or not isinstance(item[0], bytes)
                or len(item[0]) != 32 or not isinstance(item[1], bytes) or len(item[1]) not in (0, 32)):
            raise BadRequest("each diff entry is [32-byte smt key, 32-byte leaf hash or b\"\"]")
        if item[0] in keys:  # else the stored rows and the checked fold could differ
            raise BadRequest("a diff names each smt key at most once")
        keys.add(item[0])
        out.append((item[0], item[1]))
    return out


# ------------------------------------------------------------------------------ responder


class Responder:
    """Answers DataRequested events for data stored here, on L1, before their deadlines."""

    def __init__(self, service: DapService) -> None:
        from web3 import Web3

        from ..chain.sender import TxSender
        from .l1 import manager_contract

        self.svc = service
        cfg = service.cfg
        assert cfg.l1_rpc and cfg.manager
        self.w3 = Web3(Web3.HTTPProvider(cfg.l1_rpc, request_kwargs={"timeout": 30}))
        from eth_account import Account

        self.sender = TxSender(self.w3, Account.from_key(service.key.secret))
        self.manager = manager_contract(self.w3, cfg.manager)
        self.next_block = cfg.manager_from_block
        self._task: asyncio.Task[None] | None = None
        self.answered: set[int] = set()
        self.open: dict[int, tuple[bytes, int, int]] = {}  # request id -> (data commitment, path, deadline)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(None, self.poll_once)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # L1 hiccup: try again next round
                log.warning("responder: %s", exc)
            await asyncio.sleep(self.svc.cfg.poll_interval)

    def poll_once(self) -> int:
        """Scan new DataRequested events and answer the open ones for data stored here (an
        answer that failed is retried next round until its deadline); returns answers sent."""
        head = int(self.w3.eth.block_number)
        if head >= self.next_block:
            for ev in self.manager.events.DataRequested().get_logs(from_block=self.next_block, to_block=head):
                rid = int(ev.args.request_id)
                if rid not in self.answered:
                    self.open[rid] = (bytes(ev.args.data_commitment), int(ev.args.path), int(ev.args.deadline))
            self.next_block = head + 1
        sent = 0
        for rid, (dc, path, deadline) in list(self.open.items()):
            if deadline <= head:  # an answer now would land after the deadline
                del self.open[rid]
                continue
            b = self.svc.store.batch(dc)
            if b is None:
                log.warning("request %d: no data for %s here (cannot answer)", rid, dc.hex())
                del self.open[rid]
                continue
            index, item, siblings = piece_for(b.batch_data, path)
            if len(item) > MAX_PIECE_BYTES:
                log.warning("request %d: piece %d has %d bytes, above the on-chain bound", rid, index, len(item))
                del self.open[rid]
                continue
            try:
                self.sender.transact(self.manager.functions.answerData(rid, item, siblings))
            except Exception as exc:
                if "already answered" not in str(exc):
                    log.warning("request %d: answer failed (retrying): %s", rid, exc)
                    continue
            del self.open[rid]
            self.answered.add(rid)
            self.svc.stats["answered"] += 1
            self.svc.metrics.answered.inc()
            sent += 1
            log.info("answered data request %d (piece %d of height %d)", rid, index, b.height)
        return sent


# ------------------------------------------------------------------------------ process


def run_dap(config: DapConfig) -> None:
    """Serve until SIGINT/SIGTERM; prints one JSON ready line {url, address, backend} on stdout."""

    async def main() -> None:
        svc = DapService(config)
        url = await svc.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(json.dumps({"url": url, "address": svc.address, "backend": svc.store.backend,
                          "responder": svc.responder is not None, "started": time.time()}), flush=True)
        log.info("DAP %s serving on %s (%s)", svc.address, url, svc.store.backend)
        await stop.wait()
        await svc.stop()

    asyncio.run(main())
    sys.stdout.flush()


__all__ = ["BadRequest", "DapConfig", "DapService", "Responder", "batch_items", "load_key", "piece_for", "run_dap"]
