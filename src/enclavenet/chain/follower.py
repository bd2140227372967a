"""Follow a contract's events at a confirmation depth: each exactly once, in chain order,
through reorganisations, resumable.

    follower = EventFollower(l1, rollup, ["Deposit", "Submitted"], confirmations=2,
                             on_reorg=handle_reorg)
    while True:
        for event in follower.poll():      # (block, log index) order
            apply(event)
        save(follower.cursor)              # resume later with EventFollower(..., cursor=...)

A block is processed once ``confirmations`` blocks sit on top of it (``0``: at the head).
The follower remembers the hash of the last block of every range it read and of every block
that held one of its events (for the last ``history`` blocks). Each poll first checks that its
last processed block is still on the chain. If not, a reorganisation replaced blocks it had
already processed: it finds the fork (the highest remembered block still on the chain, by
bisection), *retracts* the events it had reported from the replaced blocks (a :class:`Reorg`
given to ``on_reorg`` and kept in ``reorgs``), rewinds, and reads the new blocks. So, over the
stream of events returned minus the events retracted, every event of the canonical chain
appears exactly once. Reorganisations shallower than ``confirmations`` never reach the
follower at all. One deeper than ``history`` raises :class:`ReorgTooDeep`.

Each range is read as: hash of its last block, fork check, ``eth_getLogs``, hash of its last
block again; if the hash changed meanwhile the range is read again, so a poll never mixes
logs of two chains.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_typing import BlockNumber
from hexbytes import HexBytes
from web3.contract import Contract
from web3.exceptions import BlockNotFound
from web3.types import FilterParams

from .base import L1
from .errors import ChainError, ReorgTooDeep, with_retries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """One decoded contract event."""

    name: str
    args: Mapping[str, Any]
    address: str
    block_number: int
    block_hash: HexBytes
    log_index: int
    tx_hash: HexBytes
    tx_index: int

    @property
    def position(self) -> tuple[int, int]:
        """Where it is in the chain: ``(block number, log index)``."""
        return self.block_number, self.log_index

    @property
    def key(self) -> tuple[bytes, int]:
        """What identifies it across reorganisations: ``(block hash, log index)``."""
        return bytes(self.block_hash), self.log_index


@dataclass(frozen=True)
class Cursor:
    """The last block a follower processed; save it to resume later."""

    block_number: int
    block_hash: str  # 0x-hex

    def to_dict(self) -> dict[str, Any]:
        return {"block_number": self.block_number, "block_hash": self.block_hash}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cursor:
        return cls(int(data["block_number"]), str(data["block_hash"]))


@dataclass(frozen=True)
class Reorg:
    """Blocks the follower had processed were replaced.

    ``fork_block`` is the highest processed block known to be still on the chain (every
    processed block above it is gone); ``replaced_to`` the highest block processed before;
    ``removed`` the events reported from the replaced blocks, in chain order: undo them.
    The events of the new blocks come from the following polls as usual."""

    fork_block: int
    replaced_to: int
    removed: tuple[Event, ...] = field(default=())

    @property
    def depth(self) -> int:
        return self.replaced_to - self.fork_block


@dataclass
class _Mark:
    height: int
    hash: bytes | None  # None: the virtual block before genesis, which never changes


class EventFollower:
    """Events ``event_names`` (default: all) of ``contract``, ``confirmations`` deep."""

    MAX_RETRIES = 10_000  # reads (ranges, re-reads after changes) in one poll

    def __init__(
        self,
        l1: L1,
        contract: Contract,
        event_names: Sequence[str] | None = None,
        *,
        confirmations: int = 0,
        start_block: int = 0,
        cursor: Cursor | None = None,
        on_reorg: Callable[[Reorg], None] | None = None,
        history: int = 256,
        max_range: int = 1000,
    ) -> None:
        if confirmations < 0 or history < 1 or max_range < 1:
            raise ValueError("confirmations must be >= 0, history and max_range >= 1")
        self.l1 = l1
        self.contract = contract
        self.address = contract.address
        if event_names is None:
            event_names = [
                e["name"] for e in contract.abi if e["type"] == "event" and not e.get("anonymous")
            ]
        self._events = {}
        for name in event_names:
            event = contract.events[name]()
            self._events[bytes(HexBytes(event.topic))] = event
        self._topics = [[HexBytes(t).to_0x_hex() for t in self._events]]
        self.confirmations = confirmations
        self.history = history
        self.max_range = max_range
        self.on_reorg = on_reorg
        self.reorgs: list[Reorg] = []
        # remembered blocks, ascending; the first one is the anchor a rewind cannot pass
        self._marks: list[_Mark] = []
        self._reported: dict[int, list[Event]] = {}  # events per remembered block height
        if cursor is not None:
            self._next = cursor.block_number + 1
            self._marks.append(_Mark(cursor.block_number, bytes(HexBytes(cursor.block_hash))))
        else:
            self._next = start_block
            if start_block == 0:
                self._marks.append(_Mark(-1, None))

    # -- public -----------------------------------------------------------------------

    @property
    def cursor(self) -> Cursor | None:
        """The last processed block (None before the first one)."""
        top = self._marks[-1] if self._marks else None
        if top is None or top.hash is None:
            return None
        return Cursor(top.height, HexBytes(top.hash).to_0x_hex())

    @property
    def next_block(self) -> int:
        """The next block to be processed."""
        return self._next

    def poll(self) -> list[Event]:
        """New events that reached the confirmation depth, in (block, log index) order.
        A reorganisation found on the way is reported (``on_reorg``, ``reorgs``) before
        this returns."""
        out: list[Event] = []
        for _ in range(self.MAX_RETRIES):
            if not self._marks and not self._anchor_start():
                return out
            target = self._read(lambda: self.l1.w3.eth.block_number, "eth_blockNumber")
            target -= self.confirmations
            if target < self._next:
                if self._check_fork(out):
                    continue  # rewound: there is something to read again
                return out
            to = min(target, self._next + self.max_range - 1)
            anchor = self._block_hash(to)
            if anchor is None or self._check_fork(out):
                continue  # the chain got shorter, or we rewound
            logs = self._logs(self._next, to)
            if self._block_hash(to) != anchor:
                log.info("blocks %d..%d changed while being read; reading again", self._next, to)
                continue
            out += self._accept(logs, to, anchor)
            if to == target:
                return out
        raise ChainError(
            f"the chain at {self.l1.endpoint} kept changing or ranges kept coming: "
            f"gave up after {self.MAX_RETRIES} reads"
        )

    # -- internals --------------------------------------------------------------------

    def _read(self, fn: Callable[[], Any], what: str) -> Any:
        return with_retries(fn, what=what, endpoint=self.l1.endpoint)

    def _block_hash(self, height: int) -> bytes | None:
        def fetch() -> bytes | None:
            try:
                block = self.l1.w3.eth.get_block(height)
            except BlockNotFound:
                return None
            return bytes(HexBytes(block["hash"])) if block else None

        result: bytes | None = self._read(fetch, "eth_getBlockByNumber")
        return result

    def _logs(self, first: int, last: int) -> list[Any]:
        query: FilterParams = {
            "fromBlock": BlockNumber(first),
            "toBlock": BlockNumber(last),
            "address": self.address,
            "topics": self._topics,
        }
        logs: list[Any] = self._read(lambda: self.l1.w3.eth.get_logs(query), "eth_getLogs")
        return logs

    def _anchor_start(self) -> bool:
        """Remember the block before ``start_block`` (once it exists)."""
        parent = self._next - 1
        parent_hash = self._block_hash(parent)
        if parent_hash is None:
            return False
        self._marks.append(_Mark(parent, parent_hash))
        return True

    def _on_chain(self, mark: _Mark) -> bool:
        return mark.hash is None or self._block_hash(mark.height) == mark.hash

    def _check_fork(self, unreturned: list[Event]) -> bool:
        """If processed blocks were replaced, retract their events and rewind; say so.
        ``unreturned``: events of this poll not yet handed out; retracted ones are dropped
        from it in place (they are not reported as removed: nobody saw them)."""
        top = self._marks[-1]
        if self._on_chain(top):
            return False
        if not self._on_chain(self._marks[0]):
            raise ReorgTooDeep(
                f"a reorganisation replaced block {self._marks[0].height} and later ones, "
                f"older than the follower remembers (history={self.history} blocks, or the "
                "saved cursor); restart it from an earlier block"
            )
        # the marks still on the chain form a prefix of self._marks: bisect for its end
        lo, hi = 0, len(self._marks) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._on_chain(self._marks[mid]):
                lo = mid
            else:
                hi = mid
        fork = self._marks[lo].height
        retracted = [
            event
            for height in sorted(h for h in self._reported if h > fork)
            for event in self._reported.pop(height)
        ]
        unseen = {event.key for event in unreturned}
        unreturned[:] = [event for event in unreturned if event.block_number <= fork]
        reorg = Reorg(
            fork_block=fork,
            replaced_to=top.height,
            removed=tuple(event for event in retracted if event.key not in unseen),
        )
        del self._marks[lo + 1 :]
        self._next = fork + 1
        self.reorgs.append(reorg)
        log.warning(
            "reorganisation: blocks after %d (up to %d) replaced; %d event(s) retracted",
            fork,
            top.height,
            len(reorg.removed),
        )
        if self.on_reorg is not None:
            self.on_reorg(reorg)
        return True

    def _accept(self, logs: Sequence[Any], to: int, anchor: bytes) -> list[Event]:
        events = sorted(
            (self._decode(entry) for entry in logs if not entry.get("removed")),
            key=lambda e: e.position,
        )
        for event in events:
            self._reported.setdefault(event.block_number, []).append(event)
        for height in sorted({e.block_number for e in events}):
            if height < to:
                self._marks.append(_Mark(height, bytes(self._reported[height][0].block_hash)))
        self._marks.append(_Mark(to, anchor))
        self._next = to + 1
        self._prune()
        return events

    def _decode(self, entry: Any) -> Event:
        topic0 = bytes(HexBytes(entry["topics"][0]))
        decoded = self._events[topic0].process_log(entry)
        return Event(
            name=str(decoded["event"]),
            args=dict(decoded["args"]),
            address=str(decoded["address"]),
            block_number=int(decoded["blockNumber"]),
            block_hash=HexBytes(decoded["blockHash"]),
            log_index=int(decoded["logIndex"]),
            tx_hash=HexBytes(decoded["transactionHash"]),
            tx_index=int(decoded["transactionIndex"]),
        )

    def _prune(self) -> None:
        """Forget blocks older than ``history``, keeping the newest of them as the anchor."""
        oldest = self._marks[-1].height - self.history
        keep_from = bisect.bisect_right([m.height for m in self._marks], oldest) - 1
        if keep_from > 0:
            del self._marks[:keep_from]
            anchor = self._marks[0].height
            for height in [h for h in self._reported if h <= anchor]:
                del self._reported[height]
