"""EnclaveNet headers as Ethereum blocks, the head follower, filters and subscriptions.

Block ``n`` is the header of height ``n`` accepted on L1: ``hash`` = the header hash,
``parentHash`` = its ``prev_hash``, ``stateRoot`` / ``transactionsRoot`` / ``receiptsRoot`` the
header's roots, ``timestamp`` = the timestamp of the L1 block the header consumed up to (when the
gateway has ``--l1-rpc``; otherwise when the gateway first saw the header), ``gasLimit`` 30M,
``baseFeePerGas`` the node's (0 when EnclaveNet runs without fees: docs/FEES.md). ``transactions`` lists only this gateway's
own transactions in that block (the node cannot tell whose the others are; nobody can).

Logs (``eth_getLogs``, log filters, ``eth_subscribe('logs')``) are the union of this gateway's own
transactions' receipt logs and what the enclave's log index answers a signed log query of each
session account (``enclavenet_getLogs``: logs naming the account in an indexed topic, public
events; enclave/logs.py), de-duplicated, in (block, transaction index, log index) order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..client.formats import log_key, merge_logs
from ..crypto.hashing import keccak256, to_checksum
from ..crypto.header import Header
from ..enclave.logs import MAX_QUERY_HEIGHTS
from ..node.jsonrpc import INVALID_PARAMS, RpcError
from .core import GatewayCore, _hexint

log = logging.getLogger(__name__)

GAS_LIMIT = 30_000_000
ZERO32 = "0x" + "00" * 32
EMPTY_UNCLES = "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347"
EMPTY_BLOOM = "0x" + "00" * 256
MAX_LOG_RANGE = 100_000
#: how long after a tool read "not mined yet" the block number it is shown stays below the block
#: that holds the transaction (see reported_block_number)
HOLD_AFTER_NONE_S = 1.0
MAX_FILTERS = 1000
MAX_DISPATCHED = 100_000  # log keys remembered so a log is pushed to subscriptions once
METHOD_NOT_FOUND = -32601
#: the least time between two enclave log queries of the follower: each signed query takes one of
#: the account's live-view slots in the enclave (256, each held for the query's 30 s expiry)
LOG_POLL_S = 1.0
#: how long the follower re-asks a height the node had no log index for yet (it stores a height's
#: index when it sees the header accepted, which may be after the gateway saw the height)
MISSING_RETRY_S = 10.0
FILTER_TTL_S = 300.0

Notify = Callable[[str, Any], Awaitable[None]]


@dataclass
class Filter:
    kind: str  # "block" | "logs"
    criteria: dict[str, Any]
    seen_height: int
    queue: list[Any] = field(default_factory=list)
    touched: float = field(default_factory=time.monotonic)


@dataclass
class Subscription:
    kind: str  # "newHeads" | "logs"
    criteria: dict[str, Any]
    notify: Notify


class Chain:
    """Blocks, logs, filters and subscriptions over a :class:`GatewayCore`."""

    def __init__(self, core: GatewayCore, poll_interval: float = 0.25) -> None:
        self.core = core
        self.poll_interval = poll_interval
        self.height = 0
        self._blocks: dict[int, dict[str, Any]] = {}
        self._by_hash: dict[str, int] = {}
        self._l1_times: dict[int, int] = {}
        self._filters: dict[str, Filter] = {}
        self._subs: dict[str, Subscription] = {}
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self._emitted = 0  # the last height announced to subscriptions and block filters
        self._log_height = 0  # the last height whose enclave logs were pushed to subscriptions and filters
        self._dispatched: dict[tuple[int, str, int], None] = {}  # insertion-ordered, bounded
        self._log_polled = 0.0  # monotonic time of the follower's last enclave log query
        self._missing_since: dict[int, float] = {}  # heights the node had no log index for, first seen

    # ------------------------------------------------------------------ blocks
    async def block_number(self) -> int:
        self.height = max(self.height, _hexint(await self.core.node.call("eth_blockNumber", []), "height"))
        return self.height

    async def reported_block_number(self) -> int:
        """The block number tools are shown: the height, except just after a tool was told one of
        our transactions is not mined yet while it in fact already is (its header landed since).

        EnclaveNet makes a header only when there are transactions, so no block may come after the
        one holding a transaction. A tool that read "no receipt", then took the height holding the
        transaction as its baseline (ethers' block poller: its first poll right after the miss)
        would wait for a next block that never comes. So for ``HOLD_AFTER_NONE_S`` after such a miss
        the number shown stays one below that block; the tool's next poll after that sees a new
        block, asks again and finds the receipt. A transaction still pending needs no hold: the
        height is read before its receipt is looked for, so it lands above any height shown.
        """
        real = await self.block_number()
        if self.core.pending():
            await self.poll_receipts()
        now = time.monotonic()
        held = [_hexint(s.receipt["blockNumber"], "n") - 1 for s in self.core.sent.values()
                if s.receipt is not None and not s.served and s.told_none_at is not None
                and now - s.told_none_at < HOLD_AFTER_NONE_S]
        shown = min(real, max(self.core.reported_height, min([real, *held])))  # never backwards
        self.core.reported_height = shown
        return shown

    def told(self, eth_hash: str, *, mined: bool) -> None:
        """A tool read one of our transactions' receipt (``mined``) or was told it is not mined yet."""
        s = self.core.sent.get(eth_hash)
        if s is None:
            return
        if mined:
            s.served = True
        else:
            s.told_none_at = time.monotonic()

    async def resolve(self, tag: Any) -> int:
        if tag is None or tag in ("latest", "pending", "safe", "finalized"):
            return await self.reported_block_number()
        if tag == "earliest":
            return 0
        if isinstance(tag, dict):  # EIP-1898 {blockNumber} / {blockHash}
            if "blockHash" in tag:
                n = self._by_hash.get(str(tag["blockHash"]).lower())
                if n is None:
                    raise RpcError(-32000, f"unknown block hash {tag['blockHash']}")
                return n
            return await self.resolve(tag.get("blockNumber"))
        return _hexint(tag, "block number")

    async def block(self, n: int, full: bool = False) -> dict[str, Any] | None:
        b = self._blocks.get(n)
        if b is None:
            b = await self._make_block(n)
            if b is None:
                return None
            self._blocks[n] = b
            self._by_hash[b["hash"]] = n
        own = [rc for rc in self.core.own_receipts() if _hexint(rc["blockNumber"], "n") == n]
        out = dict(b)
        out["transactions"] = [self.core.transaction(rc["transactionHash"]) if full else rc["transactionHash"] for rc in own]
        return out

    async def block_by_hash(self, h: str, full: bool = False) -> dict[str, Any] | None:
        n = self._by_hash.get(h.lower())
        if n is None:
            # not cached: look among recent heights (the gateway caches every block it served)
            return None
        return await self.block(n, full)

    async def _make_block(self, n: int) -> dict[str, Any] | None:
        if n == 0:
            first = await self.core.node.call("enclavenet_getHeader", [hex(1)])
            parent = Header.decode(bytes.fromhex(first["header"][2:])).prev_hash if first else b"\x00" * 32
            return self._shape(0, "0x" + parent.hex(), ZERO32, ZERO32, ZERO32, ZERO32, await self._time(None))
        if n > await self.block_number():
            return None
        res = await self.core.node.call("enclavenet_getHeader", [hex(n)])
        if not res:
            return None
        h = Header.decode(bytes.fromhex(res["header"][2:]))
        blk = self._shape(n, res["hash"], "0x" + h.prev_hash.hex(), "0x" + h.state_root.hex(),
                          "0x" + h.tx_root.hex(), "0x" + h.receipts_root.hex(), await self._time(h.l1_block))
        blk["baseFeePerGas"] = hex(await self._base_fee(n))
        return blk

    async def _base_fee(self, n: int) -> int:
        """Block ``n``'s base fee as the node reports it (docs/FEES.md; 0 without fees), at least
        the one after it: what tools take ``maxFeePerGas`` from (ethers: 2 x base + tip)."""
        try:
            fh = await self.core.node.call("eth_feeHistory", [hex(1), hex(n)])
            return max(_hexint(x, "baseFeePerGas") for x in fh["baseFeePerGas"])
        except (RpcError, KeyError, TypeError, ValueError):
            return 0

    async def _time(self, l1_block: int | None) -> int:
        if l1_block is None or self.core.l1 is None:
            return int(time.time())
        t = self._l1_times.get(l1_block)
        if t is None:
            try:
                blk = await self.core.l1.call("eth_getBlockByNumber", [hex(l1_block), False])
                t = _hexint(blk["timestamp"], "timestamp") if blk else int(time.time())
            except RpcError:
                t = int(time.time())
            self._l1_times[l1_block] = t
        return t

    @staticmethod
    def _shape(n: int, hash_: str, parent: str, state: str, txs: str, rcpts: str, ts: int) -> dict[str, Any]:
        return {
            "number": hex(n), "hash": hash_.lower(), "parentHash": parent, "nonce": "0x0000000000000000",
            "mixHash": ZERO32, "sha3Uncles": EMPTY_UNCLES, "logsBloom": EMPTY_BLOOM, "transactionsRoot": txs,
            "stateRoot": state, "receiptsRoot": rcpts, "miner": "0x" + "00" * 20, "difficulty": "0x0",
            "totalDifficulty": "0x0", "extraData": "0x", "size": "0x220", "gasLimit": hex(GAS_LIMIT),
            "gasUsed": "0x0", "timestamp": hex(ts), "baseFeePerGas": "0x0", "uncles": [], "transactions": [],
            "withdrawals": [], "withdrawalsRoot": "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421",
        }

    # ------------------------------------------------------------------ logs
    def logs(self, criteria: dict[str, Any], lo: int, hi: int) -> list[dict[str, Any]]:
        """This gateway's own transactions' logs matching ``criteria`` in heights [lo, hi]."""
        out = []
        addresses = criteria.get("address")
        if isinstance(addresses, str):
            addresses = [addresses]
        want_addr = {to_checksum(a) for a in addresses} if addresses else None
        topics = criteria.get("topics") or []
        block_hash = criteria.get("blockHash")
        for rc in self.core.own_receipts():
            n = _hexint(rc["blockNumber"], "n")
            if block_hash is not None:
                if rc["blockHash"].lower() != str(block_hash).lower():
                    continue
            elif not lo <= n <= hi:
                continue
            for lg in rc["logs"]:
                if want_addr is not None and to_checksum(lg["address"]) not in want_addr:
                    continue
                if _topics_match(topics, lg["topics"]):
                    out.append(lg)
        return out

    async def get_logs(self, criteria: Any) -> list[dict[str, Any]]:
        if not isinstance(criteria, dict):
            raise RpcError(INVALID_PARAMS, "eth_getLogs takes a filter object {fromBlock?, toBlock?, address?, topics?, blockHash?}")
        await self.poll_receipts()
        lo = await self.resolve(criteria.get("fromBlock", "latest"))
        hi = await self.resolve(criteria.get("toBlock", "latest"))
        if hi - lo > MAX_LOG_RANGE:
            raise RpcError(-32000, f"eth_getLogs range of {hi - lo} blocks is over {MAX_LOG_RANGE}: ask in smaller ranges")
        own = self.logs(criteria, lo, hi)
        block_hash = criteria.get("blockHash")
        if block_hash is not None:
            n = self._by_hash.get(str(block_hash).lower())
            if n is None:
                return own
            lo = hi = n
        enc, _ = await self.enclave_logs(criteria, lo, hi)
        if block_hash is not None:
            enc = [lg for lg in enc if lg["blockHash"].lower() == str(block_hash).lower()]
        return merge_logs(enc, own)

    async def enclave_logs(self, criteria: dict[str, Any], lo: int, hi: int) -> tuple[list[dict[str, Any]], list[int]]:
        """What the enclave's log index answers each session account for heights lo..hi (asked in
        ranges of at most ``MAX_QUERY_HEIGHTS``), and the heights the node had no index for;
        nothing from a node without ``enclavenet_getLogs``."""
        lo = max(lo, 1)
        out: list[dict[str, Any]] = []
        missing: set[int] = set()
        for account in self.core.log_accounts():
            for a in range(lo, hi + 1, MAX_QUERY_HEIGHTS):
                try:
                    logs, miss = await self.core.enclave_logs(account, a, min(hi, a + MAX_QUERY_HEIGHTS - 1), criteria)
                except RpcError as exc:
                    if exc.code == METHOD_NOT_FOUND:
                        return [], []
                    raise
                out += logs
                missing.update(miss)
        return merge_logs(out), sorted(missing)

    # ------------------------------------------------------------------ filters (HTTP polling)
    async def new_filter(self, kind: str, criteria: dict[str, Any] | None = None) -> str:
        self._expire_filters()
        if len(self._filters) >= MAX_FILTERS:
            raise RpcError(-32000, f"too many filters ({MAX_FILTERS}); uninstall some with eth_uninstallFilter")
        fid = hex(next(self._ids))
        crit = dict(criteria or {})
        start = await self.block_number()
        if kind == "logs" and crit.get("fromBlock") not in (None, "latest", "pending"):
            start = await self.resolve(crit["fromBlock"]) - 1
        self._filters[fid] = Filter(kind, crit, start)
        return fid

    def _filter(self, fid: Any) -> Filter:
        f = self._filters.get(str(fid))
        if f is None:
            raise RpcError(-32000, f"filter {fid} not found (filters expire after {FILTER_TTL_S:.0f} s unpolled): create a new one")
        f.touched = time.monotonic()
        return f

    async def filter_changes(self, fid: Any) -> list[Any]:
        f = self._filter(fid)
        await self.poll()
        out, f.queue = f.queue, []
        return out

    async def filter_logs(self, fid: Any) -> list[Any]:
        f = self._filter(fid)
        if f.kind != "logs":
            raise RpcError(-32000, f"filter {fid} is a block filter: use eth_getFilterChanges")
        return await self.get_logs(f.criteria)

    def uninstall(self, fid: Any) -> bool:
        return self._filters.pop(str(fid), None) is not None

    def _expire_filters(self) -> None:
        cutoff = time.monotonic() - FILTER_TTL_S
        for k in [k for k, f in self._filters.items() if f.touched < cutoff]:
            del self._filters[k]

    # ------------------------------------------------------------------ subscriptions (WebSocket)
    def subscribe(self, kind: str, criteria: dict[str, Any], notify: Notify) -> str:
        if kind not in ("newHeads", "logs"):
            raise RpcError(-32000, f"eth_subscribe {kind!r} is not available: 'newPendingTransactions' would show "
                                   "others' transactions, which are confidential; use 'newHeads' or 'logs'")
        sid = "0x" + keccak256(next(self._ids).to_bytes(8, "big"), str(time.time()).encode()).hex()[:32]
        self._subs[sid] = Subscription(kind, criteria, notify)
        return sid

    def unsubscribe(self, sid: Any) -> bool:
        return self._subs.pop(str(sid), None) is not None

    def drop_notify(self, notify: Notify) -> None:
        for k in [k for k, s in self._subs.items() if s.notify is notify]:
            del self._subs[k]

    # ------------------------------------------------------------------ the follower
    async def poll_receipts(self) -> list[dict[str, Any]]:
        """Fetch the receipts of this gateway's transactions that are now on L1."""
        new = []
        for s in self.core.pending():
            with contextlib.suppress(RpcError):
                rc = await self.core.receipt(s.eth_hash)
                if rc is not None:
                    new.append(rc)
        return new

    async def poll(self) -> None:
        new_receipts = await self.poll_receipts() if self.core.pending() else []
        shown = await self.reported_block_number()
        if self._emitted == 0:
            self._emitted = shown  # announce what comes after the gateway started
        for n in range(max(self._emitted + 1, shown - 50), shown + 1):
            blk = await self.block(n)
            if blk is None:
                continue
            self._emitted = n
            for sid, sub in list(self._subs.items()):
                if sub.kind == "newHeads":
                    await self._send(sid, sub, blk)
            for f in self._filters.values():
                if f.kind == "block":
                    f.queue.append(blk["hash"])
        wanted = any(s.kind == "logs" for s in self._subs.values()) or any(f.kind == "logs" for f in self._filters.values())
        if self._log_height == 0:
            self._log_height = shown  # push what comes after the gateway started
        fresh: list[dict[str, Any]] = []
        now = time.monotonic()
        if not wanted:
            self._log_height = max(self._log_height, shown)
        elif shown > self._log_height and now - self._log_polled >= LOG_POLL_S:
            # others' logs this gateway's accounts may read (an incoming Transfer): the enclave's index
            self._log_polled = now
            lo = max(self._log_height + 1, shown - MAX_QUERY_HEIGHTS + 1)
            try:
                fresh, missing = await self.enclave_logs({}, lo, shown)
                self._log_height = self._next_log_height(missing, shown, now)
            except RpcError as exc:  # asked again next time; own receipts' logs still go out now
                log.info("head follower: enclave log query for heights %d..%d failed: %s", lo, shown, exc.message)
        for lg in merge_logs(fresh, [lg for rc in new_receipts for lg in rc["logs"]]):
            await self._dispatch(lg)

    def _next_log_height(self, missing: list[int], shown: int, now: float) -> int:
        """Where the follower's next enclave log query starts after this one: before the first
        height the node had no index for yet, unless it has been missing for ``MISSING_RETRY_S``
        (a batch adopted without its index: given up on). Logs already pushed are not pushed again."""
        for h in [h for h in self._missing_since if h not in missing]:
            del self._missing_since[h]
        for h in missing:
            first = self._missing_since.setdefault(h, now)
            if now - first < MISSING_RETRY_S:
                return h - 1
        return shown

    async def _dispatch(self, lg: dict[str, Any]) -> None:
        """Push one log to the matching subscriptions and log filters, once."""
        key = log_key(lg)
        if key in self._dispatched:
            return
        self._dispatched[key] = None
        if len(self._dispatched) > MAX_DISPATCHED:
            del self._dispatched[next(iter(self._dispatched))]
        for sid, sub in list(self._subs.items()):
            if sub.kind == "logs" and _log_matches(sub.criteria, lg):
                await self._send(sid, sub, lg)
        for f in self._filters.values():
            if f.kind == "logs" and _log_matches(f.criteria, lg):
                f.queue.append(lg)

    async def _send(self, sid: str, sub: Subscription, result: Any) -> None:
        try:
            await sub.notify(sid, result)
        except Exception:  # the socket went away
            self._subs.pop(sid, None)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except RpcError as exc:
                log.debug("head follower: %s", exc.message)
            except Exception:
                log.exception("head follower failed")
            await asyncio.sleep(self.poll_interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


def _topics_match(want: list[Any], have: list[str]) -> bool:
    for i, w in enumerate(want):
        if w is None:
            continue
        if i >= len(have):
            return False
        options = [w] if isinstance(w, str) else list(w)
        if have[i].lower() not in {str(o).lower() for o in options}:
            return False
    return True


def _log_matches(criteria: dict[str, Any], lg: dict[str, Any]) -> bool:
    addresses = criteria.get("address")
    if isinstance(addresses, str):
        addresses = [addresses]
    if addresses and to_checksum(lg["address"]) not in {to_checksum(a) for a in addresses}:
        return False
    return _topics_match(criteria.get("topics") or [], lg["topics"])
