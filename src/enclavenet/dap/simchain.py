"""Real accepted batches without a devnet: a committee of enclaves (in-process by default) that
executes and QC-signs heights of deposits, for the DAP tests and ``benchmarks/dap.py``.

    chain = SimChain()                       # 2 members (sgx, tdx), quorum 2 of 2 types
    out = chain.next(deposits=20)            # execute + vote + accept; out.accepted, out.batch_data
    fresh = chain.new_member()               # a fresh enclave, in the committee, holding the epoch key
    await recover(fresh, pool, chain.accepted)

"L1" here is the list of :class:`~enclavenet.dap.recovery.Accepted` entries (header, QC, the
messages it consumed); the batch data and snapshots are what the proposer would upload.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..crypto.hashing import to_checksum
from ..crypto.header import Header
from ..enclave.harness import (
    Member,
    batch_request,
    form_committee,
    program_config,
    share_epoch,
    update_committee,
)
from ..tee import DEFAULT_PROGRAM, InProcessEnclave, ProcessEnclave, SimulatedVendor
from .recovery import Accepted


@dataclass
class Step:
    accepted: Accepted
    batch_data: bytes = field(repr=False)
    snapshot: tuple[int, bytes] | None = field(default=None, repr=False)


class SimChain:
    def __init__(self, types: tuple[str, ...] = ("sgx", "tdx"), *, processes: bool = False,
                 snapshot_every: int = 16, l1_chain_id: int = 31337, rollup: str = "0x" + "5e" * 20) -> None:
        self.vendors = [SimulatedVendor.generate(t) for t in types]
        self.cfg = program_config(self.vendors, l1_chain_id=l1_chain_id, rollup=to_checksum(rollup),
                                  min_quorum=len(types), min_types=len(set(types)))
        self.processes = processes
        self.members = [self._member(v) for v in self.vendors]
        self.quorum = len(self.members)
        self.min_types = len(set(types))
        form_committee(self.members, self.quorum, self.min_types)
        self.snapshot_every = snapshot_every
        self.accepted: list[Accepted] = []
        self.msg_index = 0
        self.l1_block = 0
        self.prev = b"\x00" * 32
        self._pool: list[str] = []

    def _member(self, vendor: SimulatedVendor) -> Member:
        handle: Any = (ProcessEnclave if self.processes else InProcessEnclave)(vendor.new_platform(), DEFAULT_PROGRAM, self.cfg)
        return Member(handle)

    def next(self, deposits: int = 20, accounts: int | None = None) -> Step:
        """One more accepted height: ``deposits`` L1 deposits, to fresh accounts (the state grows
        with the history) or, with ``accounts``, to a fixed set of that many (it does not)."""
        h = len(self.accepted) + 1
        self.l1_block += 1
        if accounts is not None and len(self._pool) != accounts:
            self._pool = [to_checksum(os.urandom(20)) for _ in range(accounts)]
        msgs = [[self.msg_index + i, 1, self._pool[(self.msg_index + i) % accounts] if accounts else
                 to_checksum(os.urandom(20)), 10**15 + i, self.l1_block, b""] for i in range(deposits)]
        self.msg_index += deposits
        req = batch_request(h, self.prev, l1_block=self.l1_block, timestamp=1_700_000_000 + h, messages=msgs)
        proposer = self.members[h % len(self.members)]
        out = proposer.call("execute_batch", **req)
        sigs = [bytes(out["signature"])]
        for m in self.members:
            if m is not proposer:
                sigs.append(bytes(m.call("verify_batch", header=out["header"], **req)["signature"]))
        for m in self.members:
            m.call("accept_header", header=out["header"], signatures=sigs)
        header = Header.decode(bytes(out["header"]))
        self.prev = header.hash()
        acc = Accepted(header, sigs, msgs)
        self.accepted.append(acc)
        snap = None
        if self.snapshot_every and h % self.snapshot_every == 0:
            s = proposer.call("snapshot")
            snap = (int(s["epoch"]), bytes(s["shared"]))
        return Step(acc, bytes(out["batch_data"]), snap)

    def new_member(self, tee: str | None = None) -> Member:
        """A fresh enclave (no state) admitted to the committee and given the current epoch's keys."""
        vendor = next((v for v in self.vendors if tee is None or v.tee_name == tee), self.vendors[0])
        fresh = self._member(vendor)
        quotes = [m.identity["quote"] for m in (*self.members, fresh)]
        # adding a member takes a certificate: a QC of the current committee over the new one
        update_committee((*self.members, fresh), self.members, quotes, self.quorum, self.min_types)
        share_epoch(self.members[0], [fresh], 0)
        return fresh

    def close(self) -> None:
        for m in self.members:
            m.close()


__all__ = ["SimChain", "Step"]
