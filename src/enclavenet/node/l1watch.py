"""What the node follows on L1: the message chain, accepted headers and the committee.

``L1Watcher.poll()`` (blocking web3 calls: the node runs it on a worker thread) reads the
Rollup's and the Registry's logs up to ``latest - confirmations`` and updates:

* ``messages``: every L1 message (deposit / inbox submission) by index, in L1 order;
* ``headers``: every accepted header by height, with its QC, withdrawals and L1 transaction,
  decoded from the ``submitHeader`` calldata (the event carries only height and hash; the
  header's hash is checked against it);
* ``members``: the registered, unexpired, unrevoked enclaves (Registry events + ``isActive``),
  with their TEE types, and the policy (``quorum``, ``min_types``).

A reorganisation is noticed when the block at the cursor changes hash; the watcher then
rewinds ``reorg_window`` blocks, forgets what it read from the replaced blocks (messages,
accepted headers, revocations, the freeze) and re-reads (messages are keyed by index, headers by
height, so re-reading is idempotent; a replaced header is reported as such, a header that is no
longer on L1 as ``removed_headers``).

Also followed, for the fault handling of docs/FAULTS.md: ``frozen`` (the ``Frozen`` event, and
``frozen()`` now and then), ``last_revocation_block`` (the L1 block of the latest revocation
event or member found inactive: the committee's epoch must rotate) and ``epoch_opened(e)``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract

from ..contracts import expand_signature, load_artifact
from ..crypto.hashing import to_checksum
from ..crypto.header import Header, Withdrawal
from ..crypto.messages import L1Message

log = logging.getLogger(__name__)

HEADER_FIELDS = (
    "height", "prev_hash", "epoch", "epoch_key", "l1_block", "msg_count", "msg_acc", "tx_root",
    "receipts_root", "state_root", "balances_root", "withdrawals_hash", "data_commitment",
)


class L1DataError(ValueError):
    """An L1 log (or the ``submitHeader`` calldata behind one) that does not decode as the event
    its topic names: what a broken or lying L1 RPC hands over (the Rollup emits none such). The
    message names the event and the log; the watcher keeps nothing of it."""


@dataclass
class AcceptedHeader:
    header: Header
    hash: bytes
    signatures: list[bytes]  # 65-byte r||s||v, in QC order
    withdrawals: list[Withdrawal]
    l1_tx: str
    l1_block_number: int
    submitter: str


@dataclass
class Member:
    address: str
    tee_type: int
    expiry: int
    active: bool = True
    checked: bool = False  # isActive was read at least once


@dataclass
class WatchResult:
    new_messages: int = 0
    new_headers: list[int] = field(default_factory=list)
    replaced_headers: list[int] = field(default_factory=list)
    members_changed: bool = False
    reorg: bool = False
    removed_headers: list[int] = field(default_factory=list)
    frozen: bool = False


def _b(v: Any) -> bytes:
    return bytes(HexBytes(v))


def _show(lg: Any, key: str) -> str:
    try:
        return str(lg[key])[:24]
    except Exception:
        return "?"


def decode_header(obj: Any) -> Header:
    """A Header from web3's decoded struct (tuple or dict)."""
    if isinstance(obj, dict):
        vals = [obj[k] for k in HEADER_FIELDS]
    else:
        vals = list(obj)
    out: list[Any] = []
    for name, v in zip(HEADER_FIELDS, vals, strict=True):
        out.append(int(v) if name in ("height", "epoch", "l1_block", "msg_count") else _b(v))
    return Header(*out)


class L1Watcher:
    def __init__(
        self,
        w3: Web3,
        rollup: str,
        registry: str,
        *,
        confirmations: int = 0,
        start_block: int = 0,
        reorg_window: int = 64,
        max_range: int = 2_000,
    ) -> None:
        self.w3 = w3
        self.rollup: Contract = w3.eth.contract(address=Web3.to_checksum_address(rollup), abi=load_artifact("Rollup")["abi"])
        # the registry is compiled into the Rollup (docs/CONTRACTS.md): same ABI, maybe the same address
        self.registry: Contract = w3.eth.contract(
            address=Web3.to_checksum_address(registry), abi=load_artifact("Rollup")["abi"]
        )
        self.confirmations = confirmations
        self.cursor = max(start_block - 1, -1)  # last block fully processed
        self.cursor_hash: bytes | None = None
        self.start_block = start_block
        self.reorg_window = reorg_window
        self.max_range = max_range
        self.latest_block = 0
        self.messages: dict[int, L1Message] = {}
        self.msg_blocks: dict[int, int] = {}  # index -> l1 block (same as message.l1_block)
        self._block_times: dict[int, int] = {}  # L1 block -> its timestamp (the newest 1,024 asked)
        self.headers: dict[int, AcceptedHeader] = {}
        self.members: dict[str, Member] = {}
        self.quorum = 0
        self.min_types = 0
        self.last_member_check = 0.0
        self.frozen = False
        self.frozen_block: int | None = None
        self.revocations: list[tuple[int, str]] = []  # (L1 block, what) of revocation events
        self.reorgs = 0
        self._staged_revocations: list[tuple[int, str]] = []
        self._opened: dict[int, tuple[int, int]] = {}  # epoch -> (height, L1 block) of its first header
        self._topics: dict[bytes, tuple[Contract, str]] = {}
        for c, names in (
            (self.rollup, ("L1Message", "HeaderAccepted", "Frozen")),
            (self.registry, ("EnclaveRegistered", "EnclaveRevoked", "TeeTypeRevoked", "MeasurementRevoked", "PolicySet")),
        ):
            for name in names:
                self._topics[bytes(HexBytes(getattr(c.events, name).topic))] = (c, name)

    # ------------------------------------------------------------------ queries
    @property
    def height(self) -> int:
        return max(self.headers) if self.headers else 0

    def last_header(self) -> AcceptedHeader | None:
        return self.headers.get(self.height)

    def last_header_hash(self) -> bytes:
        acc = self.headers.get(self.height)
        return acc.hash if acc is not None else b"\x00" * 32

    @property
    def last_revocation_block(self) -> int:
        """The L1 block of the latest revocation (event, or a member found inactive); -1: none."""
        return max([b for b, _ in self.revocations] + [-1])

    def epoch_opened(self, epoch: int) -> tuple[int, int]:
        """(height, L1 block) of the first accepted header of ``epoch`` (0, -1 when unknown)."""
        hit = self._opened.get(epoch)
        if hit is not None and self.headers.get(hit[0]) is not None:
            return hit
        for h in sorted(self.headers):
            acc = self.headers[h]
            if acc.header.epoch == epoch:
                self._opened[epoch] = (h, acc.l1_block_number)
                return h, acc.l1_block_number
        return 0, -1

    def confirmed_block(self) -> int:
        return self.cursor

    def active_members(self) -> list[Member]:
        return sorted((m for m in self.members.values() if m.active), key=lambda m: int(m.address, 16))

    def messages_between(self, start_index: int, upto_block: int) -> list[L1Message]:
        """Messages from index ``start_index`` in blocks <= ``upto_block`` (contiguous run)."""
        out = []
        i = start_index
        while i in self.messages and self.messages[i].l1_block <= upto_block:
            out.append(self.messages[i])
            i += 1
        return out

    def _remember_time(self, block: int, timestamp: int) -> None:
        self._block_times[block] = timestamp
        while len(self._block_times) > 1024:
            del self._block_times[min(self._block_times)]

    def cached_block_time(self, block: int) -> int | None:
        """``block_time`` if already known (a dict read: safe from the event loop)."""
        return self._block_times.get(block)

    def block_time(self, block: int) -> int:
        """The L1 timestamp of ``block`` (cached; fetched once otherwise: blocking, call it on
        the L1 thread). The voters bound a batch's EVM timestamp by it (node/inputs.py)."""
        t = self._block_times.get(block)
        if t is None:
            t = int(self.w3.eth.get_block(block)["timestamp"])
            self._remember_time(block, t)
        return t

    def message_count(self) -> int:
        n = 0
        while n in self.messages:
            n += 1
        return n

    # ------------------------------------------------------------------ polling
    def poll(self) -> WatchResult:
        res = WatchResult()
        latest = int(self.w3.eth.block_number)
        self.latest_block = latest
        target = latest - self.confirmations
        if self.cursor >= 0 and self.cursor_hash is not None and self.cursor <= latest:
            blk = self.w3.eth.get_block(self.cursor)
            if _b(blk["hash"]) != self.cursor_hash:
                log.warning("L1 reorganisation at block %d: re-reading the last %d blocks", self.cursor, self.reorg_window)
                res.reorg = True
                self.reorgs += 1
                res.removed_headers = self._rewind(max(self.start_block - 1, self.cursor - self.reorg_window))
        if target > self.cursor:
            frm = self.cursor + 1
            while frm <= target:
                to = min(target, frm + self.max_range - 1)
                addrs = sorted({self.rollup.address, self.registry.address})
                logs = self.w3.eth.get_logs({"fromBlock": frm, "toBlock": to, "address": addrs})
                logs = sorted(logs, key=lambda lg: (int(lg["blockNumber"]), int(lg["logIndex"])))
                for lg in logs:
                    self._handle(lg, res)
                frm = to + 1
            self.cursor = target
            if target >= 0:
                blk = self.w3.eth.get_block(target)
                self.cursor_hash = _b(blk["hash"])
                self._remember_time(target, int(blk["timestamp"]))
            else:
                self.cursor_hash = None
        now = time.time()
        if res.members_changed or res.reorg or now - self.last_member_check > 10 or not self.quorum:
            self._refresh_members()
            self.last_member_check = now
        # published only now, with the member flags refreshed: the node's event loop reads these
        # while this poll runs on a worker thread, and must never see a revocation before the
        # committee without the revoked member
        if self._staged_revocations:
            self.revocations = self.revocations + self._staged_revocations
            self._staged_revocations = []
        res.frozen = self.frozen
        return res

    def _rewind(self, to_block: int) -> list[int]:
        """Forget what was read from blocks after ``to_block``; returns the header heights dropped."""
        self.cursor = to_block
        self.cursor_hash = None
        for i in [i for i, m in self.messages.items() if m.l1_block > to_block]:
            del self.messages[i]
        gone = sorted(h for h, acc in self.headers.items() if acc.l1_block_number > to_block)
        for h in gone:
            del self.headers[h]
        self._opened.clear()
        self.revocations = [(b, w) for b, w in self.revocations if b <= to_block]
        if self.frozen_block is not None and self.frozen_block > to_block:
            self.frozen, self.frozen_block = False, None
        return gone

    def _handle(self, lg: Any, res: WatchResult) -> None:
        """Take one log. Raises L1DataError (the watcher unchanged) when it does not decode as the
        event its topic names; errors of the L1 RPC itself (``get_transaction``) pass through."""
        try:
            topics = lg["topics"]
            topic = _b(topics[0]) if topics else b""
        except Exception as exc:
            raise L1DataError(f"an L1 log without readable topics ({type(exc).__name__})") from None
        entry = self._topics.get(topic)
        if entry is None:
            return
        contract, name = entry
        where = f"{name} L1 log (block {_show(lg, 'blockNumber')}, index {_show(lg, 'logIndex')})"
        try:
            a = getattr(contract.events, name)().process_log(lg)["args"]
            block = int(lg["blockNumber"]) if name in ("Frozen", "EnclaveRevoked", "TeeTypeRevoked",
                                                       "MeasurementRevoked") else 0
            if name == "L1Message":
                msg = L1Message(
                    index=int(a["index"]), kind=int(a["kind"]), sender=to_checksum(a["sender"]), value=int(a["value"]),
                    l1_block=int(a["l1_block"]), payload=bytes(a["payload"]),
                )
            elif name == "HeaderAccepted":
                h, hh = int(a["height"]), _b(a["header_hash"])
            elif name == "EnclaveRegistered":
                member = Member(to_checksum(a["enclave"]), int(a["tee_type"]), int(a["expiry"]))
        except Exception as exc:  # web3 / eth-abi decoding errors have no common base
            raise L1DataError(f"{where} does not decode: {type(exc).__name__}: {str(exc)[:200]}") from None
        if name == "L1Message":
            if msg.index not in self.messages:
                res.new_messages += 1
            self.messages[msg.index] = msg
        elif name == "HeaderAccepted":
            old = self.headers.get(h)
            if old is not None and old.hash == hh:
                return
            acc = self._decode_submission(lg, h, hh, where)
            if old is not None:
                res.replaced_headers.append(h)
            self.headers[h] = acc
            res.new_headers.append(h)
        elif name == "Frozen":
            self.frozen = True
            self.frozen_block = block
        else:
            res.members_changed = True
            if name in ("EnclaveRevoked", "TeeTypeRevoked", "MeasurementRevoked"):
                self._staged_revocations.append((block, name))
            if name == "EnclaveRegistered":
                self.members[member.address] = member

    def _decode_submission(self, lg: Any, height: int, header_hash: bytes, where: str = "HeaderAccepted L1 log") -> AcceptedHeader:
        tx = self.w3.eth.get_transaction(lg["transactionHash"])
        try:
            _, params = self.rollup.decode_function_input(tx["input"])
            header = decode_header(params["header"])
            sigs = []
            for s in params["signatures"]:
                r, vs = (s["r"], s["vs"]) if isinstance(s, dict) else (s[0], s[1])
                sigs.append(expand_signature((_b(r), _b(vs))))
            ws = []
            for w in params["withdrawals"]:
                rcpt, amt = (w["recipient"], w["amount"]) if isinstance(w, dict) else (w[0], w[1])
                ws.append(Withdrawal(to_checksum(rcpt), int(amt)))
            acc = AcceptedHeader(
                header=header, hash=header_hash, signatures=sigs, withdrawals=ws,
                l1_tx="0x" + _b(lg["transactionHash"]).hex(), l1_block_number=int(lg["blockNumber"]),
                submitter=to_checksum(tx["from"]),
            )
        except Exception as exc:
            raise L1DataError(f"{where}: its submitHeader transaction does not decode: {type(exc).__name__}: "
                              f"{str(exc)[:200]}") from None
        if header.hash() != header_hash:
            raise L1DataError(
                f"{where}: header at height {height}: calldata does not hash to the accepted header hash "
                "(submitted through another contract?)"
            )
        return acc

    def _refresh_members(self) -> None:
        self.quorum = int(self.registry.functions.quorum().call())
        self.min_types = int(self.registry.functions.minTypes().call())
        for m in self.members.values():
            was = m.active and m.checked
            m.active = bool(self.registry.functions.isActive(m.address).call())
            m.checked = True
            if was and not m.active:
                self._staged_revocations.append((max(self.cursor, 0), "inactive"))  # expired or revoked: rotate the epoch
        if not self.frozen:
            self.frozen = bool(self.rollup.functions.frozen().call())

    # ------------------------------------------------------------------ writes
    def is_active(self, address: str) -> bool:
        return bool(self.registry.functions.isActive(Web3.to_checksum_address(address)).call())


def register_args(quote: Any) -> tuple[Any, ...]:
    return tuple(quote.registration_args())


def l1_account(key: str) -> LocalAccount:
    from eth_account import Account

    acct: LocalAccount = Account.from_key(key)
    return acct
