"""The node's side of data availability (docs/DAP.md): what the node does with the DAPs.

* **Proposer**: right after ``execute_batch`` it uploads the header, the batch data and, every
  ``dap_snapshot_every`` heights and at each new epoch, the enclave's sealed (``shared``)
  snapshot to every DAP, in the background while the voters re-execute; ``Rollup.submitHeader``
  then carries at least ``Rollup.dapThreshold()`` receipts (ordered, compact).
* **Catching up** (a new node, or every node restarted at once: no peer holds the batches):
  accepted batches come from the DAPs (checked against the header accepted on L1), and a node
  far behind first restores the newest DAP snapshot whose header L1 accepted (the enclave
  authenticates it: it is sealed under the epoch's state key), then replays the rest.

The DAPs are the DapManager's active ones (its events on L1: address and endpoint), re-read every
``REFRESH`` seconds. Nothing here is trusted: bad data from one DAP means asking the next.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ..crypto.escape import public_key_address
from ..crypto.hashing import to_checksum
from ..crypto.header import Header
from ..dap.client import DapError, DapPool, NotEnoughReceipts, Receipt
from ..dap.l1 import active_daps, manager_contract
from ..dap.store import StoredBatch
from ..tee.boundary import EnclaveError
from .batch import BatchRecord, msg_to_wire, split_batch_data

if TYPE_CHECKING:
    from .core import NodeCore

log = logging.getLogger("enclavenet.node.daps")

REFRESH = 5.0
ESCAPE_POLL = 0.25  # seconds between checks for a newly accepted header to export escape data for


class NodeDaps:
    def __init__(self, node: NodeCore) -> None:
        self.node = node
        self.cfg = node.cfg
        self.enabled = bool(self.cfg.dap_manager)
        self.pool: DapPool | None = None
        self.uploads: dict[bytes, asyncio.Task[list[Receipt]]] = {}  # header hash -> upload
        self._refreshed = 0.0
        self.last_threshold: int | None = None  # Rollup.dapThreshold() as last read (metrics)
        self._next_snapshot_try = 0.0
        self.restored_from: int | None = None  # height of the DAP snapshot this node restored, if any
        self.escape_exported = 0  # height of the last escape data uploaded (export_escape)
        self._escape_full = False  # an upload failed: the next export carries every leaf
        self._escape_task: asyncio.Task[None] | None = None
        self._pk_block = max(int(self.cfg.start_block) - 1, -1)  # last L1 block scanned for users' public keys
        self._pk_sent: set[str] = set()  # addresses whose public key the enclave was given
        self._pk_pending: dict[str, bytes] = {}  # read from L1, not given to the enclave yet

    # ------------------------------------------------------------------ DAP list and threshold
    async def start(self) -> None:
        if not self.enabled:
            return
        assert self.node.session is not None
        self.pool = DapPool({}, self.cfg.l1_chain_id, self.cfg.rollup, session=self.node.session,
                            timeout=self.cfg.dap_timeout)
        await self.pool.open()
        await self.refresh(force=True)
        self._escape_task = asyncio.create_task(self._escape_loop())

    async def refresh(self, force: bool = False) -> None:
        if self.pool is None or (not force and time.monotonic() - self._refreshed < REFRESH):
            return
        w = self.node.watcher
        assert w is not None
        loop = asyncio.get_running_loop()
        try:
            daps = await loop.run_in_executor(
                None, lambda: active_daps(w.w3, manager_contract(w.w3, self.cfg.dap_manager), self.cfg.start_block))
        except Exception as exc:
            log.warning("%s: reading the DAPs from L1 failed: %s", self.cfg.name, exc)
            return
        self._refreshed = time.monotonic()
        if set(daps.items()) != {(c.address, c.url) for c in self.pool.clients}:
            self.pool.set_daps(daps)
            log.info("%s: %d active DAPs", self.cfg.name, len(daps))

    async def threshold(self) -> int:
        w = self.node.watcher
        assert w is not None
        t = int(await asyncio.get_running_loop().run_in_executor(None, w.rollup.functions.dapThreshold().call))
        self.last_threshold = t
        return t

    # ------------------------------------------------------------------ proposer
    def snapshot_due(self, h: int, epoch: int | None) -> bool:
        if not self.enabled:
            return False
        acc = self.node.watcher.headers.get(h - 1) if self.node.watcher else None
        new_epoch = acc is None or (epoch is not None and acc.header.epoch != epoch)
        return new_epoch or (self.cfg.dap_snapshot_every > 0 and h % self.cfg.dap_snapshot_every == 0)

    def upload(self, header: Header, batch_data: bytes, snapshot: tuple[int, bytes] | None = None) -> None:
        """Start uploading a proposed batch (and snapshot) to every DAP; receipts come later."""
        if self.pool is None:
            return
        hh = header.hash()
        if hh in self.uploads:
            return
        self.uploads[hh] = asyncio.create_task(self._upload(header, batch_data, snapshot))
        for old in [k for k, t in self.uploads.items() if t.done() and k != hh][:-64]:
            del self.uploads[old]

    async def _upload(self, header: Header, batch_data: bytes, snapshot: tuple[int, bytes] | None) -> list[Receipt]:
        assert self.pool is not None
        await self.refresh()
        t = await self.threshold()
        t0 = time.monotonic()
        m = self.node.metrics
        try:
            out = await self.pool.store(header, batch_data, snapshot=snapshot, need=max(t, 1) if self.pool.clients else 0)
        except NotEnoughReceipts as exc:
            if m is not None:
                m.dap_upload(time.monotonic() - t0, len(exc.receipts), ok=False)
            raise
        if m is not None:
            m.dap_upload(time.monotonic() - t0, len(out), ok=True)
        return out

    async def receipts_for(self, rec: BatchRecord) -> list[tuple[str, bytes]]:
        """The receipts ``submitHeader`` needs for this batch (uploading it if nobody did yet);
        retried for a while when too few DAPs answer. Empty when the threshold is 0."""
        if self.pool is None:
            return []
        t = await self.threshold()
        if t == 0:
            self.upload(rec.header, rec.batch_data)  # the DAPs store it anyway; nobody waits
            return []
        deadline = time.monotonic() + max(10.0, 4 * self.cfg.proposer_timeout)
        while True:
            task = self.uploads.get(rec.hash)
            if task is None:
                self.upload(rec.header, rec.batch_data)
                task = self.uploads[rec.hash]
            try:
                receipts = await task
            except NotEnoughReceipts as exc:
                receipts = exc.receipts
                log.warning("%s: height %d: %s", self.cfg.name, rec.height, exc)
            except DapError as exc:
                receipts = []
                log.warning("%s: height %d: upload to the DAPs failed: %s", self.cfg.name, rec.height, exc)
            if len(receipts) >= t:
                return [r.pair() for r in receipts]
            if time.monotonic() > deadline:
                raise DapError(f"only {len(receipts)} of {t} DAP storage receipts for height {rec.height}")
            del self.uploads[rec.hash]
            await asyncio.sleep(0.5)
            await self.refresh(force=True)

    # ------------------------------------------------------------------ catching up
    async def fetch_batch(self, header_hash: bytes) -> StoredBatch | None:
        if self.pool is None:
            return None
        await self.refresh()
        try:
            return await self.pool.fetch_by_hash(header_hash)
        except DapError as exc:
            log.info("%s: batch 0x%s not available from the DAPs: %s", self.cfg.name, header_hash.hex()[:12], exc)
            return None

    async def restore_snapshot(self, min_gap: int = 2) -> bool:
        """When the enclave is at least ``min_gap`` accepted headers behind, restore the newest DAP
        snapshot of an accepted header above its finalised height. True if it did."""
        n = self.node
        w = n.watcher
        if self.pool is None or w is None or n.host is None or n.epoch is None:
            return False
        if w.height - n.finalized < min_gap or time.monotonic() < self._next_snapshot_try:
            return False
        self._next_snapshot_try = time.monotonic() + 2.0
        await self.refresh()
        for snap in await self.pool.snapshots(max_height=w.height):
            if snap.height <= n.finalized:
                break
            acc = w.headers.get(snap.height)
            if acc is None or acc.hash != snap.header_hash:
                continue  # a losing branch's snapshot, or a lie
            async with n.enclave_lock:
                try:
                    await n.host.call("restore", {"blob": snap.blob, "header": acc.header.encode(),
                                                  "signatures": acc.signatures})
                    st = await n.refresh_status()
                except EnclaveError as exc:
                    log.info("%s: DAP snapshot of height %d not restorable here: %s", self.cfg.name, snap.height, exc)
                    continue
            roots = (bytes(st["state_root"]), bytes(st["balances_root"]))
            if n.head_hash != acc.hash or roots != (acc.header.state_root, acc.header.balances_root):
                continue
            self.restored_from = snap.height
            log.info("%s: restored the enclave from a DAP snapshot at height %d (L1 at %d)", self.cfg.name,
                     snap.height, w.height)
            return True
        return False

    # ------------------------------------------------------------------ escape data
    async def _escape_loop(self) -> None:
        while True:
            await asyncio.sleep(ESCAPE_POLL)
            try:
                await self.export_escape()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let escape data stop the node
                self._escape_full = True
                log.warning("%s: escape data export failed: %s", self.cfg.name, exc)

    async def export_escape(self) -> bool:
        """Once the enclave's head is an accepted header not exported yet, upload to every DAP its
        balances-tree leaf-hash diff (since this enclave's previous export) and the changed
        accounts' (balance, salt) sealed to their owners (enclave ecall ``escape_export``).
        Off the critical path: when the head is ahead of the accepted height (pipelining), it
        waits for a quiet moment; the next diff then spans the heights between. True if it did."""
        n = self.node
        w = n.watcher
        if self.pool is None or not self.pool.clients or n.host is None or w is None:
            return False
        h = n.finalized
        acc = w.headers.get(h)
        if h <= self.escape_exported or acc is None or n.head_height != h or n.head_hash != acc.hash:
            return False
        self._pk_pending.update(await self._new_public_keys())  # L1 reads: not under the enclave lock
        keys = dict(list(self._pk_pending.items())[:4096])
        body: dict[str, Any] = {"height": h}
        if keys:
            body["public_keys"] = list(keys.values())
        if self._escape_full:
            body["full"] = True
        async with n.enclave_lock:
            if n.head_height != h or n.head_hash != acc.hash:
                return False
            res = await n.host.call("escape_export", body)
        self._pk_sent.update(keys)
        for a in keys:
            self._pk_pending.pop(a, None)
        base = int(res["base"])
        diff = [(bytes(k), bytes(v)) for k, v in res["diff"]]
        sealed = [(str(a) if isinstance(a, str) else "0x" + bytes(a).hex(), bytes(s)) for a, s in res["sealed"]]
        hh = bytes(res["header_hash"])

        async def one(c: Any) -> None:
            await c.put_leaf_diff(hh, base, diff)
            if sealed:
                await c.put_leaves(hh, sealed)

        results = await asyncio.gather(*(one(c) for c in self.pool.clients), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        for r in failed:
            log.info("%s: escape data for height %d not stored by a DAP: %s", self.cfg.name, h, r)
        self._escape_full = bool(failed)  # a DAP lacks this diff: the next one starts from the empty tree
        self.escape_exported = h
        return True

    async def _new_public_keys(self, max_blocks: int = 5_000) -> dict[str, bytes]:
        """Public keys of L1 message senders (deposits, submissions, challenges) recovered from
        their L1 transactions' signatures, not given to the enclave yet (which checks each
        against its address). Best effort: a transaction type it cannot re-hash is skipped."""
        w = self.node.watcher
        assert w is not None
        loop = asyncio.get_running_loop()

        def scan() -> tuple[int, dict[str, bytes]]:
            head = int(w.w3.eth.block_number)
            lo, hi = self._pk_block + 1, min(head, self._pk_block + max_blocks)
            out: dict[str, bytes] = {}
            if lo > hi:
                return self._pk_block, out
            seen: set[bytes] = set()
            for lg in w.rollup.events.L1Message().get_logs(from_block=lo, to_block=hi):
                sender = str(lg["args"]["sender"])
                if sender in self._pk_sent or sender in out or bytes(lg["transactionHash"]) in seen:
                    continue
                seen.add(bytes(lg["transactionHash"]))
                pk = tx_public_key(w.w3.eth.get_transaction(lg["transactionHash"]))
                if pk is not None:
                    out[public_key_address(pk)] = pk
            return hi, out

        try:
            self._pk_block, keys = await loop.run_in_executor(None, scan)
        except Exception as exc:
            log.info("%s: reading users' public keys from L1 failed: %s", self.cfg.name, exc)
            return {}
        return {a: k for a, k in keys.items() if a not in self._pk_sent}

    async def close(self) -> None:
        if self._escape_task is not None:
            self._escape_task.cancel()
        for t in self.uploads.values():
            t.cancel()
        if self.pool is not None:
            await self.pool.close()


def tx_public_key(tx: Any) -> bytes | None:
    """The signer's 65-byte public key of an L1 typed transaction (web3 ``get_transaction``),
    or None (legacy transactions and anything it cannot re-hash)."""
    import coincurve
    from eth_account.typed_transactions import TypedTransaction

    try:
        if int(tx.get("type", 0)) not in (1, 2):
            return None
        names = ("type", "chainId", "nonce", "maxFeePerGas", "maxPriorityFeePerGas", "gasPrice", "gas", "to",
                 "value", "accessList")
        d = {k: tx[k] for k in names if k in tx}
        if int(tx["type"]) == 2:
            d.pop("gasPrice", None)
        d["data"] = tx["input"]
        digest = TypedTransaction.from_dict(d).hash()
        parity = tx.get("yParity", tx.get("y_parity", tx["v"]))
        sig = bytes(tx["r"]).rjust(32, b"\0") + bytes(tx["s"]).rjust(32, b"\0") + bytes([int(parity)])
        pk = bytes(coincurve.PublicKey.from_signature_and_message(sig, digest, hasher=None).format(compressed=False))
    except Exception:
        return None
    return pk if public_key_address(pk) == to_checksum(tx["from"]) else None


def record_inputs(batch: StoredBatch, messages: dict[int, Any]) -> dict[str, Any]:
    """``execute_batch`` fields (without envelopes) of stored batch data, with the L1 messages
    it consumed (from the L1 watcher); KeyError if a message is not known yet."""
    meta, _, _ = split_batch_data(batch.batch_data)
    start, end = int(meta["msg_start"]), int(meta["msg_count"])
    return {
        "height": int(meta["height"]),
        "prev_hash": bytes(meta["prev_hash"]),
        "epoch": int(meta["epoch"]),
        "l1_block": int(meta["l1_block"]),
        "timestamp": int(meta["timestamp"]),
        "messages": [msg_to_wire(messages[i]) for i in range(start, end)],
    } | ({"fee_recipient": "0x" + bytes(meta["fee_recipient"]).hex()} if "fee_recipient" in meta else {})


__all__ = ["NodeDaps", "record_inputs", "tx_public_key"]
