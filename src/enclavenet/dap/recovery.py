"""Bring a member's enclave to an accepted head from the DAPs alone: the newest accepted snapshot,
then every later batch replayed (``apply_batch`` with the QC it was accepted with).

The node does the same inside its L1-following loop (node/daps.py); this standalone form is what
``benchmarks/dap.py`` times and what a tool restoring a member by hand would call::

    stats = await recover(member, pool, accepted)       # accepted: what L1 says, per height

``accepted[h - 1]`` is the :class:`Accepted` header at height ``h`` (header, QC signatures and the
L1 messages that header consumed: all from L1). Everything read from the DAPs is checked: batches
against the accepted header, snapshots by the enclave (sealed under the epoch's state key) and
by the head hash it reports afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import cbor2

from ..crypto.header import Header
from .client import DapError, DapPool, DataUnavailable
from .service import batch_items


class _Member(Protocol):
    def call(self, method: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Accepted:
    header: Header
    signatures: list[bytes] = field(repr=False)  # the QC (65-byte signatures)
    messages: list[list[Any]] = field(repr=False)  # [index, kind, sender, value, l1_block, payload]


@dataclass
class RecoveryStats:
    height: int = 0
    snapshot_height: int = 0
    replayed: int = 0
    fetch_s: float = 0.0
    restore_s: float = 0.0
    replay_s: float = 0.0
    total_s: float = 0.0
    bytes_fetched: int = 0


async def recover(member: _Member, pool: DapPool, accepted: Sequence[Accepted], *, use_snapshot: bool = True,
                  to_height: int | None = None) -> RecoveryStats:
    """Restore and replay until the member's head is ``accepted[to_height - 1]`` (default: the last)."""
    t0 = time.perf_counter()
    target = len(accepted) if to_height is None else to_height
    st = RecoveryStats(height=target)
    head = int(member.call("status")["height"])
    if use_snapshot and target > head:
        t = time.perf_counter()
        snaps = await pool.snapshots(max_height=target)
        st.fetch_s += time.perf_counter() - t
        for s in snaps:
            if s.height <= head or accepted[s.height - 1].header.hash() != s.header_hash:
                continue
            t = time.perf_counter()
            try:
                acc = accepted[s.height - 1]  # a shared blob is restored against its accepted header + QC
                out = member.call("restore", blob=s.blob, header=acc.header.encode(), signatures=acc.signatures)
            except Exception:  # not restorable here (an epoch this enclave lacks, a lie): older one
                continue
            st.restore_s += time.perf_counter() - t
            if bytes(out["head_hash"]) == s.header_hash:
                head, st.snapshot_height, st.bytes_fetched = s.height, s.height, st.bytes_fetched + len(s.blob)
                break
    for h in range(head + 1, target + 1):
        acc = accepted[h - 1]
        t = time.perf_counter()
        batch = await pool.fetch_by_hash(acc.header.hash())  # checked against the header
        st.fetch_s += time.perf_counter() - t
        st.bytes_fetched += len(batch.batch_data)
        items = batch_items(batch.batch_data)
        meta = cbor2.loads(items[0])
        envelopes = items[1 : 1 + int(meta["n_envelopes"])]
        t = time.perf_counter()
        extra = {"fee_recipient": "0x" + bytes(meta["fee_recipient"]).hex()} if "fee_recipient" in meta else {}
        member.call("apply_batch", height=h, prev_hash=acc.header.prev_hash, epoch=int(meta["epoch"]),
                    l1_block=int(meta["l1_block"]), timestamp=int(meta["timestamp"]), messages=acc.messages,
                    envelopes=envelopes, header=acc.header.encode(), signatures=acc.signatures, **extra)
        st.replay_s += time.perf_counter() - t
        st.replayed += 1
    final = member.call("status")
    if target and bytes(final["head_hash"]) != accepted[target - 1].header.hash():
        raise DapError(f"recovery ended at height {final['height']}, not at the accepted head {target}")
    st.total_s = time.perf_counter() - t0
    return st


__all__ = ["Accepted", "DataUnavailable", "RecoveryStats", "recover"]
