"""The L1 link: connect and register, follow L1 (the loop), submit headers, handle reorgs.

The loop polls the watcher (a full poll only when L1's tip moved, when behind, or every
second: node/l1probe.py) and hands accepted headers to sync and committee changes to epochs.
Submission sends a QC'd header (with DAP receipts when required); a header that vanished from
L1 (a lost transaction, a reorg) is submitted again with its QC; once accepted, its L2 -> L1
messages are relayed to the Bridge (node/relayer.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import time
from typing import Any

from web3 import Web3

from ..chain.errors import ChainError, TxReverted
from ..chain.rpc import RpcL1
from ..chain.sender import TxSender
from ..contracts import qc_signatures
from ..crypto.hashing import address_bytes, to_checksum
from ..dap.client import DapError
from .batch import (
    BatchRecord,
)
from .core import NodeCore, Role
from .epochs import Epochs
from .l1probe import L1Probe
from .l1watch import L1Watcher
from .relayer import Relayer
from .sync import Sync

log = logging.getLogger("enclavenet.node.l1")


class L1Link(Role):
    def __init__(self, node: NodeCore, sync: Sync, epochs: Epochs) -> None:
        super().__init__(node)
        self.sync = sync
        self.epochs = epochs
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="l1-watch")
        self.tx_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="l1-send")
        self._reanchoring = False
        # L2 -> L1 messages of the headers this node gets accepted (node/relayer.py); its L1
        # transactions go through the same sender thread (one nonce sequence)
        self.relayer = Relayer(node, self.tx_pool)

    async def block_time(self, block: int) -> int:
        """The L1 timestamp of ``block`` (cached by the watcher; else read on the L1 thread): the
        voters bound a batch's EVM timestamp by it (node/inputs.py, issue 14 M1)."""
        w = self.node.watcher
        assert w is not None
        t = w.cached_block_time(block)  # the poll records its confirmed block's: no wait for the L1 thread
        if t is not None:
            return t
        return await asyncio.get_running_loop().run_in_executor(self.pool, w.block_time, block)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.tx_pool.shutdown(wait=False, cancel_futures=True)

    async def connect(self) -> None:
        cfg = self.cfg
        loop = asyncio.get_running_loop()

        def connect() -> None:
            w3 = Web3(Web3.HTTPProvider(cfg.l1_rpc, request_kwargs={"timeout": 30}))
            self.node.watcher = L1Watcher(
                w3, cfg.rollup, cfg.registry, confirmations=cfg.confirmations, start_block=cfg.start_block
            )
            if cfg.l1_key:
                l1 = RpcL1(cfg.l1_rpc, accounts=[cfg.l1_key])
                self.node.sender = TxSender(l1, l1.accounts[0], receipt_timeout=60.0)

        for attempt in range(50):
            try:
                await loop.run_in_executor(self.pool, connect)
                return
            except Exception as exc:  # L1 not up yet
                if attempt == 49:
                    raise
                log.info("%s: waiting for the L1 at %s (%s)", cfg.name, cfg.l1_rpc, type(exc).__name__)
                await asyncio.sleep(0.2)

    async def register(self) -> None:
        """Registry.register with the enclave's quote, unless already active."""
        assert self.node.watcher is not None
        loop = asyncio.get_running_loop()
        active = await loop.run_in_executor(self.pool, self.node.watcher.is_active, self.node.address)
        if active:
            return
        if self.node.sender is None:
            raise RuntimeError("this node has no L1 key (l1_key) to register its enclave with")
        from ..tee.platform import Quote

        q = Quote.decode(self.node.quote)
        fn = self.node.watcher.registry.functions.register(*q.registration_args())
        sender = self.node.sender
        await loop.run_in_executor(self.tx_pool, lambda: sender.transact(fn))
        log.info("%s: registered enclave %s on L1", self.cfg.name, self.node.address)

    async def poll(self) -> None:
        assert self.node.watcher is not None
        self.node.l1_faults.check()
        loop = asyncio.get_running_loop()
        res = await loop.run_in_executor(self.pool, self.node.watcher.poll)
        now = time.monotonic()
        w = self.node.watcher
        if res.reorg:
            await self.after_reorg(res.removed_headers)
        if w.frozen and not self.node.frozen:
            log.warning("%s: the Rollup is frozen: no more headers; this node stops proposing", self.cfg.name)
        self.node.frozen = w.frozen
        # first sight of pending (unconsumed) messages, for the batch interval
        for idx in range(self.node.head_msg_count, w.message_count()):
            if idx not in self.node.msg_seen:
                self.node.msg_seen[idx] = now
                m = w.messages.get(idx)
                if m is not None and m.value:  # a deposit: its sender may pay fees again
                    self.node.mempool.funded(address_bytes(m.sender))
        if res.members_changed or res.new_headers:
            await self.epochs.update_committee()
        for h in sorted(set(res.new_headers) | set(res.replaced_headers)):
            if h > self.node.l1_height:
                if h == self.node.l1_height + 1 and self.node.work_since is not None:  # how long it took
                    self.node.timeouts.observe(self.node.timeouts.elapsed(max(self.node.due_since, self.node.work_since)))
                self.node.l1_height = h
                self.node.due_since = now
                self.node.work_since = None
        if res.new_headers or res.replaced_headers or self.node.finalized < w.height:
            await self.sync.process_accepted()
        if res.new_messages or res.new_headers:
            self.node.work.set()

    async def run(self) -> None:
        # a full poll only when L1's tip changed, when behind, or every second (node/l1probe.py)
        probe = L1Probe(self.cfg.l1_rpc)
        loop = asyncio.get_running_loop()
        seen: tuple[int, str] | None = None
        last_full = 0.0
        try:
            while not self.node.stopping.is_set():
                try:
                    self.node.l1_faults.check()
                    tip = await loop.run_in_executor(self.pool, probe.tip)
                    behind = self.node.watcher is not None and self.node.finalized < self.node.watcher.height
                    if tip is None or tip != seen or behind or time.monotonic() - last_full > 1.0:
                        await self.poll()
                        seen, last_full = tip, time.monotonic()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.node.last_error = f"L1 poll: {type(exc).__name__}: {exc}"
                    log.warning("%s: %s", self.cfg.name, self.node.last_error)
                    await asyncio.sleep(0.5)
                await asyncio.sleep(self.cfg.l1_poll_interval)
        finally:
            probe.close()

    async def submit(self, rec: BatchRecord) -> None:
        assert self.node.watcher is not None
        if self.node.sender is None:
            log.warning("%s: no L1 key: cannot submit height %d", self.cfg.name, rec.height)
            return
        if self.node.l1_faults.hold_submits or time.monotonic() < self.node.l1_faults.down_until:
            self.node.l1_faults.injected["held" if self.node.l1_faults.hold_submits else "down"] += 1
            log.info("%s: submitHeader %d not sent (L1 fault injection)", self.cfg.name, rec.height)
            return
        rec.submitted = True
        rec.submitted_at = time.monotonic()
        sigs = qc_signatures([(a, s) for a, s in rec.sigs.items() if a in self.node.member_types()])
        ws = [(to_checksum(w[0]), int(w[1])) for w in rec.withdrawals]
        receipts: list[Any] = []
        if self.node.daps.enabled:  # at least Rollup.dapThreshold() DAP storage receipts
            try:
                receipts = qc_signatures(await self.node.daps.receipts_for(rec))
            except DapError as exc:
                rec.submitted = False
                if self.node.metrics:
                    self.node.metrics.submit_failed("no_receipts")
                log.warning("%s: cannot submit height %d: %s", self.cfg.name, rec.height, exc)
                return
        if receipts:
            fn = self.node.watcher.rollup.functions.submitHeader(rec.header.as_tuple(), ws, sigs, receipts)
        else:
            fn = self.node.watcher.rollup.functions.submitHeader(rec.header.as_tuple(), ws, sigs)
        sender = self.node.sender
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        try:
            receipt = await loop.run_in_executor(self.tx_pool, lambda: sender.transact(fn, gas=2_000_000))
            self.node.counters["submitted"] += 1
            log.info("%s: header %d accepted on L1 (gas %d, %.0f ms)", self.cfg.name, rec.height,
                     receipt["gasUsed"], 1000 * (time.monotonic() - t0))
            self.node.last_gas = int(receipt["gasUsed"])
            if self.node.metrics:
                self.node.metrics.submitted(self.node.last_gas)
            self.relayer.accepted(rec.height, rec.batch_data)
        except TxReverted as exc:
            if self.node.metrics:
                self.node.metrics.submit_failed("reverted")
            log.info("%s: submitHeader %d reverted (lost the race?): %s", self.cfg.name, rec.height, exc)
            with contextlib.suppress(ChainError):
                await loop.run_in_executor(self.tx_pool, sender.resync_nonce)
        except ChainError as exc:
            rec.submitted = False
            if self.node.metrics:
                self.node.metrics.submit_failed("failed")
            log.warning("%s: submitHeader %d failed: %s", self.cfg.name, rec.height, exc)
        await self.poll_soon()

    async def poll_soon(self) -> None:
        try:
            await self.poll()
        except Exception as exc:  # the L1 loop will retry
            log.debug("poll after submit failed: %s", exc)

    async def resubmit_vanished(self) -> None:
        """A header we submitted that L1 still lacks long after (its transaction was lost, e.g. in
        an L1 reorganisation shallower than ``confirmations``): submit it again."""
        t = self.node.l1_height + 1
        limit = 2 * self.cfg.proposer_timeout + 2.0
        for rec in list(self.node.records.values()):
            if rec.height == t and rec.submitted and time.monotonic() - rec.submitted_at > limit and self.node.qc_ready(rec):
                log.info("%s: header %d submitted %.1fs ago is not on L1: submitting it again", self.cfg.name, t,
                         time.monotonic() - rec.submitted_at)
                rec.submitted = False
                self.node.counters["resubmitted"] += 1
                if self.node.sender is not None:
                    with contextlib.suppress(ChainError):
                        await asyncio.get_running_loop().run_in_executor(self.tx_pool, self.node.sender.resync_nonce)
                self.node.spawn(self.submit(rec))

    async def after_reorg(self, removed: list[int]) -> None:
        """An L1 reorganisation: follow L1's new height; headers this enclave finalised that are no
        longer on L1 are submitted again with their QC (same header, same L1 messages: nothing is
        lost or executed twice; if the reorganisation changed those messages, L1 refuses them and
        the committee waits: ``confirmations`` exists to make that unlikely)."""
        assert self.node.watcher is not None
        self.node.l1_height = self.node.watcher.height
        self.node.due_since = time.monotonic()
        if self.node.sender is not None:
            with contextlib.suppress(ChainError):
                await asyncio.get_running_loop().run_in_executor(self.tx_pool, self.node.sender.resync_nonce)
        if removed:
            log.warning("%s: L1 reorganisation removed accepted header(s) %s", self.cfg.name, removed)
        if self.node.finalized > self.node.watcher.height and not self._reanchoring:
            self.node.spawn(self._reanchor())

    async def _reanchor(self) -> None:
        assert self.node.watcher is not None
        self._reanchoring = True
        try:
            deadline = time.monotonic() + 120
            while not self.node.stopping.is_set() and self.node.watcher.height < self.node.finalized and time.monotonic() < deadline:
                h = self.node.watcher.height + 1
                acc = self.node.final_headers.get(h)
                if acc is None or self.node.sender is None:
                    log.warning("%s: cannot re-anchor height %d (no record or no L1 key)", self.cfg.name, h)
                    return
                digest = acc.header.signing_digest(self.cfg.l1_chain_id, self.cfg.rollup)
                args: list[Any] = [acc.header.as_tuple(), [(w.recipient, w.amount) for w in acc.withdrawals],
                                   qc_signatures(acc.signatures, digest)]
                rec = self.node.accepted_records.get(h)
                if self.node.daps.enabled and rec is not None:
                    with contextlib.suppress(DapError):
                        receipts = await self.node.daps.receipts_for(rec)
                        if receipts:
                            args.append(qc_signatures(receipts))
                fn = self.node.watcher.rollup.functions.submitHeader(*args)
                sender = self.node.sender
                try:
                    await asyncio.get_running_loop().run_in_executor(
                        self.tx_pool, functools.partial(sender.transact, fn, gas=2_000_000))
                    self.node.counters["reanchored"] += 1
                    log.info("%s: re-anchored header %d on L1 after the reorganisation", self.cfg.name, h)
                except TxReverted as exc:
                    log.info("%s: re-anchoring header %d: %s", self.cfg.name, h, exc)
                    with contextlib.suppress(ChainError):
                        await asyncio.get_running_loop().run_in_executor(self.tx_pool, sender.resync_nonce)
                    await asyncio.sleep(0.5)
                except ChainError as exc:
                    log.warning("%s: re-anchoring header %d failed: %s", self.cfg.name, h, exc)
                    await asyncio.sleep(0.5)
                await self.poll_soon()
        finally:
            self._reanchoring = False
