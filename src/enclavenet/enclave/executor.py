"""The confidential EVM: executes batches of transactions with pyrevm, deterministically.

Typical use by the enclave program (see docs/ENCLAVE_EVM.md)::

    ex = Executor(chain_id, salt_secret_fn=lambda: epoch_state_salt_secret)
    ex.begin_batch(BlockInfo(number=height, timestamp=ts))
    ex.credit(l1_sender, deposit_value)                 # an L1 deposit
    receipt = ex.execute(decode_item(raw, chain_id))   # raises TxError if the tx is invalid
    commit = ex.end_batch()                             # state_root, balances_root, withdrawals
    sealed = seal(ex.snapshot())                        # between batches

How state is tracked. pyrevm 0.3.7 never finalises its journal: every account and slot it ever
loaded stays *warm* in its journaled state, and it has no call to enumerate storage. Left
alone, gas costs would depend on an enclave's history (a restored enclave would disagree), and
memory would grow with every transaction. So each batch runs inside one journal checkpoint:

1. ``begin_batch`` takes a checkpoint; the journaled state is empty (everything is cold).
2. ``execute`` runs transactions (``message_call`` / ``deploy``); they see each other's writes.
3. ``end_batch`` reads the journaled state -- every account and slot the batch touched, with
   its value at first load and its present value -- from ``EVM.journal_str`` (revm's Debug
   rendering; pinned pyrevm version, checked by count), keeps the slots whose value changed,
   **reverts** the checkpoint (the journal and logs are dropped, everything is cold again),
   and writes the net changes into pyrevm's database (cold inserts) and into ``WorldState``,
   which updates the state and balances trees incrementally.

So a batch's receipts depend only on the state at its start and its transactions, the same in
a long-running enclave and in one restored from a snapshot a minute ago. Within a batch,
accounts and slots touched by an earlier transaction are warm for later ones (EIP-2929 applied
per batch instead of per transaction): deterministic, and slightly cheaper than on Ethereum.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections import deque
from collections.abc import Callable, Set
from dataclasses import dataclass, field
from typing import Any

import cbor2
import sha3
from eth_abi import decode as abi_decode
from pyrevm import EVM, AccountInfo, BlockEnv, CfgEnv, Env

from ..crypto.bridge import BRIDGE_CALLER
from ..crypto.envelope import MAX_RECEIPT_PLAINTEXT
from ..crypto.hashing import ZERO32, address_bytes, to_checksum
from ..crypto.header import EMPTY_WITHDRAWALS_HASH, Withdrawal, withdrawals_hash
from ..crypto.smt import smt_key, smt_leaf
from .bridge import genesis_code as bridge_genesis_code
from .bridge import outbox_message
from .contract_keys import (
    KEY_POLICY_ADDRESS,
    ContractKeyChain,
    ContractKeyError,
    KeyDraw,
    PolicyCall,
    derive_contract_key,
)
from .diff import BatchDiff
from .errors import EnclaveRefusal
from .fees import FEES_ADDRESS, FEES_CODE, FeeRule, gas_price_of
from .platform import (
    MAX_PLATFORM_ROUNDS,
    PLATFORM_ADDRESS,
    PLATFORM_CODE,
    SYSTEM_CALLER,
    TX_SEED_INFO,
    check_answer_size,
    compute_answer,
    parse_miss,
    view_seed,
)
from .state import KECCAK_EMPTY, MAX_QUEUED_WITHDRAWALS, AccountChange, UndoRecord, WorldState
from .tx import MAX_TX_GAS, InboxCall, SignedTx, TxError

PYREVM_VERSION = "0.3.7"  # end_batch reads revm's Debug rendering of the journal: pinned
SPEC_ID = "Cancun"  # Vyper 0.4 and solc >= 0.8.25 target Cancun (PUSH0, MCOPY, TLOAD/TSTORE)
BLOCK_GAS_LIMIT = 30_000_000
WITHDRAW_ADDRESS = bytes.fromhex("00000000000000000000000000000000000057d0")
# Code at the withdrawal address: PUSH1 0 PUSH1 0 REVERT. A contract that sends value there
# gets a revert, so only a top-level transaction (intercepted below) can withdraw.
WITHDRAW_CODE = bytes.fromhex("60006000fd")
_ZERO_ADDRESS = b"\x00" * 20
_PLATFORM_HEX = "0x" + PLATFORM_ADDRESS.hex()
COINBASE = "0x" + "00" * 20  # stays loaded in pyrevm's journal for good (see credit)
# Receipt bounds: a sealed receipt is one item of the batch data, and every item must fit the
# 128 KiB that DapManager.answerData accepts, or a DAP could be slashed for data it holds.
# Output (return or revert data) is cut at 64 KiB, an error text at 1 KiB, and logs that do
# not fit in the rest are left out, in order from the last; ``error`` then says so.
MAX_RECEIPT_OUTPUT = 64 * 1024
MAX_RECEIPT_ERROR = 1024
# The Rollup pays at most this many withdrawals per header (Rollup.vy MAX_WITHDRAWALS); the
# rest wait in the state's FIFO withdrawal queue for the next headers.
MAX_WITHDRAWALS_PER_HEADER = 16
_ERROR_SELECTOR = bytes.fromhex("08c379a0")
_PANIC_SELECTOR = bytes.fromhex("4e487b71")

# revm renders each account as ``0x<address>: Account { info: AccountInfo { balance: <b>, nonce:
# <n>, code_hash: 0x<h>, code: ... }, storage: {...}, status: AccountStatus(...) }``: the journal
# is split at the account separator, then each piece's head is matched at its start.
_ACCOUNT_SEP = ": Account { info: AccountInfo { balance: "
_HEAD_RE = re.compile(r"(\d+), nonce: (\d+), code_hash: 0x([0-9a-f]{64}), code: ")
_ADDR_RE = re.compile(r"0x([0-9a-f]{40})")
_STORAGE_OPEN = "}, storage: {"
_STATUS_OPEN = "}, status: AccountStatus("
_SLOT_MID = ": StorageSlot { previous_or_original_value: "
_SLOT_PRESENT = ", present_value: "
_REVERT_RE = re.compile(r"output: 0x([0-9a-f]*)")
_STATE_PREFIX = "JournaledState { state: {"
_STATE_END = "}, transient_storage: "


def _keccak(data: bytes) -> bytes:
    return sha3.keccak_256(data).digest()


def _hex(address: bytes) -> str:
    return "0x" + address.hex()


@dataclass(frozen=True)
class BlockInfo:
    """The block environment of a batch: NUMBER and TIMESTAMP as contracts see them.

    COINBASE is the zero address, BASEFEE and GASPRICE are 0, GASLIMIT is ``BLOCK_GAS_LIMIT``.
    PREVRANDAO is a private per-transaction seed (platform.py, ``tx_seed``); ``prevrandao``
    here only feeds the executor's default (test) platform secret.
    """

    number: int
    timestamp: int
    prevrandao: bytes = ZERO32


@dataclass(slots=True)
class Log:
    address: bytes  # 20 bytes
    topics: tuple[bytes, ...]
    data: bytes

    def to_cbor(self) -> list[Any]:
        return [self.address, list(self.topics), self.data]


# --- canonical CBOR of receipts, by hand (the hot path: one per transaction) ---------------------
_CBOR_NULL = b"\xf6"
_U64 = 1 << 64


def _cbor_head(major: int, n: int) -> bytes:
    """A CBOR item head (major type, argument) in its shortest form, as cbor2 writes it."""
    m = major << 5
    if n < 24:
        return bytes((m | n,))
    if n < 0x100:
        return bytes((m | 24, n))
    if n < 0x10000:
        return bytes((m | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((m | 26,)) + n.to_bytes(4, "big")
    return bytes((m | 27,)) + n.to_bytes(8, "big")


def _cbor_bytes(b: bytes) -> bytes:
    if type(b) is not bytes:
        return cbor2.dumps(b, canonical=True)
    return _cbor_head(2, len(b)) + b


def _cbor(v: Any) -> bytes:
    """Canonical CBOR of None, a non-negative int below 2**64, bytes, str or a list of those;
    anything else (bignums, negative ints, other types) is left to cbor2."""
    t = type(v)
    if v is None:
        return _CBOR_NULL
    if t is int and 0 <= v < _U64:
        return _cbor_head(0, v)
    if t is bytes:
        return _cbor_head(2, len(v)) + v
    if t is str:
        e = v.encode()
        return _cbor_head(3, len(e)) + e
    if t is list:
        return _cbor_head(4, len(v)) + b"".join([_cbor(x) for x in v])
    return cbor2.dumps(v, canonical=True)


def _cbor_key(k: str) -> bytes:
    return _cbor_head(3, len(k)) + k.encode()


_RECEIPT_HEAD = _cbor_head(5, 9) + _cbor_key("logs")
_RECEIPT_HEAD_PRICED = _cbor_head(5, 10) + _cbor_key("logs")
_K_GAS_PRICE = _cbor_key("gas_price")
_K_ERROR = _cbor_key("error")
_K_OUTPUT = _cbor_key("output")
_K_SENDER = _cbor_key("sender")
_K_STATUS = _cbor_key("status")
_K_TX_HASH = _cbor_key("tx_hash")
_K_CONTRACT = _cbor_key("contract")
_K_GAS_USED = _cbor_key("gas_used")
_K_WITHDRAWAL = _cbor_key("withdrawal")


@dataclass(slots=True)
class Receipt:
    """The outcome of one executed item. ``encode()`` is canonical CBOR (the program seals it)."""

    status: int  # 1 success, 0 failure (revert, out of gas, halt, refused withdrawal)
    gas_used: int
    output: bytes  # return data, or revert data on a revert
    logs: tuple[Log, ...]
    error: str | None  # "execution reverted: <reason>", "out of gas", ...
    contract_address: bytes | None  # 20 bytes when a contract was created
    tx_hash: bytes  # keccak256 of the raw transaction / inbox call
    sender: bytes  # 20 bytes
    withdrawal: Withdrawal | None = None
    gas_price: int = 0  # effective wei per gas paid (fees.py); 0 = free (fees off, or paid on L1)

    @property
    def success(self) -> bool:
        return self.status == 1

    def to_cbor(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "gas_used": self.gas_used,
            "output": self.output,
            "logs": [lg.to_cbor() for lg in self.logs],
            "error": self.error,
            "contract": self.contract_address,
            "tx_hash": self.tx_hash,
            "sender": self.sender,
            "withdrawal": None
            if self.withdrawal is None
            else [address_bytes(self.withdrawal.recipient), self.withdrawal.amount],
        } | ({"gas_price": self.gas_price} if self.gas_price else {})

    def encode(self) -> bytes:
        """``cbor2.dumps(self.to_cbor(), canonical=True)``, byte for byte, without the dict.

        Canonical CBOR orders map keys by length, then bytewise: logs, error, output, sender,
        status, tx_hash, contract, gas_used, withdrawal (a unit test checks the bytes against
        cbor2 on many receipts).
        """
        parts = [_RECEIPT_HEAD_PRICED if self.gas_price else _RECEIPT_HEAD, _cbor_head(4, len(self.logs))]
        add = parts.append
        for lg in self.logs:
            add(b"\x83")
            add(_cbor_bytes(lg.address))
            add(_cbor_head(4, len(lg.topics)))
            for t in lg.topics:
                add(_cbor_bytes(t))
            add(_cbor_bytes(lg.data))
        add(_K_ERROR)
        add(_cbor(self.error))
        add(_K_OUTPUT)
        add(_cbor_bytes(self.output))
        add(_K_SENDER)
        add(_cbor_bytes(self.sender))
        add(_K_STATUS)
        add(_cbor(self.status))
        add(_K_TX_HASH)
        add(_cbor_bytes(self.tx_hash))
        add(_K_CONTRACT)
        add(_cbor(self.contract_address))
        add(_K_GAS_USED)
        add(_cbor(self.gas_used))
        if self.gas_price:  # "gas_price" (9 bytes) sorts between "gas_used" and "withdrawal"
            add(_K_GAS_PRICE)
            add(_cbor(self.gas_price))
        add(_K_WITHDRAWAL)
        w = self.withdrawal
        add(_CBOR_NULL if w is None else _cbor([address_bytes(w.recipient), w.amount]))
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> Receipt:
        m = cbor2.loads(data)
        w = m["withdrawal"]
        return cls(
            m["status"],
            m["gas_used"],
            m["output"],
            tuple(Log(a, tuple(t), d) for a, t, d in m["logs"]),
            m["error"],
            m["contract"],
            m["tx_hash"],
            m["sender"],
            None if w is None else Withdrawal(to_checksum(w[0]), w[1]),
            m.get("gas_price", 0),
        )

    def __repr__(self) -> str:  # no output/logs: they are confidential
        return f"Receipt(status={self.status}, gas_used={self.gas_used}, tx_hash=0x{self.tx_hash.hex()})"


def _log_size(lg: Log) -> int:
    return len(lg.data) + 33 * len(lg.topics) + 40  # its CBOR encoding, rounded up


def bound_receipt(r: Receipt) -> Receipt:
    """``r`` within ``MAX_RECEIPT_PLAINTEXT`` encoded bytes (its sealed form within 128 KiB).

    Cheap for every ordinary receipt (a size estimate); a receipt over the bound keeps its
    status, gas, contract and withdrawal, gets its output cut to ``MAX_RECEIPT_OUTPUT``, its
    error to ``MAX_RECEIPT_ERROR`` bytes, and loses its last logs until it fits; ``error`` says
    how many logs and bytes were left out. The state changes of the transaction are kept."""
    estimate = len(r.output) + (len(r.error) if r.error else 0) + sum(_log_size(lg) for lg in r.logs) + 256
    if estimate <= MAX_RECEIPT_PLAINTEXT or len(r.encode()) <= MAX_RECEIPT_PLAINTEXT:
        return r
    notes: list[str] = []
    output = r.output
    if len(output) > MAX_RECEIPT_OUTPUT:
        notes.append(f"output cut from {len(output)} to {MAX_RECEIPT_OUTPUT} bytes")
        output = output[:MAX_RECEIPT_OUTPUT]
    error = r.error
    if error is not None and len(error.encode()) > MAX_RECEIPT_ERROR:
        notes.append(f"error text cut to {MAX_RECEIPT_ERROR} bytes")
        error = error.encode()[:MAX_RECEIPT_ERROR].decode(errors="ignore")
    budget = MAX_RECEIPT_PLAINTEXT - 512 - len(output) - (len(error.encode()) if error else 0)
    logs: list[Log] = []
    used = 0
    for lg in r.logs:
        n = _log_size(lg)
        if used + n > budget:
            break
        logs.append(lg)
        used += n
    if len(logs) < len(r.logs):
        left = r.logs[len(logs) :]
        notes.append(
            f"{len(left)} of {len(r.logs)} logs ({sum(len(lg.data) for lg in left)} data bytes) left out: "
            f"a receipt holds at most {MAX_RECEIPT_PLAINTEXT} bytes"
        )
    note = "receipt truncated: " + "; ".join(notes)
    out = Receipt(
        r.status, r.gas_used, output, tuple(logs), note if error is None else f"{error} ({note})",
        r.contract_address, r.tx_hash, r.sender, r.withdrawal, r.gas_price,
    )
    assert len(out.encode()) <= MAX_RECEIPT_PLAINTEXT
    return out


@dataclass(frozen=True)
class CallResult:
    """The outcome of a view call or estimate (no state change)."""

    success: bool
    output: bytes
    gas_used: int
    error: str | None = None
    contract_address: bytes | None = None
    logs: tuple[Log, ...] = ()


@dataclass(frozen=True)
class BatchCommit:
    """What a batch commits to: the roots and withdrawals that go into the header.

    ``withdrawals`` are the ones the header lists (paid when it is accepted): the oldest
    queued ones first, then this batch's, at most ``MAX_WITHDRAWALS_PER_HEADER``; the others
    stay queued (``queued_withdrawals`` of them) for the next headers.
    """

    state_root: bytes
    balances_root: bytes
    withdrawals: tuple[Withdrawal, ...]
    withdrawals_hash: bytes
    gas_used: int
    tx_count: int
    accounts_touched: int
    slots_touched: int
    queued_withdrawals: int = 0
    # L2 -> L1 messages of the batch's successful transactions, in order: (sender, target, data)
    messages: tuple[tuple[bytes, bytes, bytes], ...] = ()
    base_fee: int = 0  # what the batch's transactions paid per gas at least (fees.py)
    next_base_fee: int = 0  # the next batch's
    unfunded: tuple[bytes, ...] = ()  # senders refused because they could not pay (public: the hint names them)


@dataclass(frozen=True)
class BalanceProof:
    """An account's balance leaf and its proof against ``root`` (``crypto.smt.smt_verify``)."""

    address: bytes
    balance: int
    salt: bytes
    key: bytes
    leaf: bytes
    siblings: tuple[bytes, ...]
    root: bytes


@dataclass
class _Batch:
    block: BlockInfo
    checkpoint: Any
    nonces: dict[bytes, int] = field(default_factory=dict)
    withdrawals: list[Withdrawal] = field(default_factory=list)
    withdrawal_senders: list[bytes] = field(default_factory=list)
    gas_used: int = 0
    tx_count: int = 0
    journal_used: bool = False  # has anything been loaded into pyrevm's journal this batch?
    direct: dict[bytes, int] = field(default_factory=dict)  # credits written straight to the db
    key_policies: dict[bytes, PolicyCall] = field(default_factory=dict)  # set this batch (last wins)
    key_counts: dict[bytes, int] = field(default_factory=dict)  # executions of keyed contracts
    platform_secret: bytes = ZERO32  # this batch's platform secret (platform.py; never in the EVM)
    platform_keys: set[bytes] = field(default_factory=set)  # answers stored in PLATFORM this batch
    seed_prefix: bytes = b""  # platform.TX_SEED_INFO || platform_secret
    messages: list[tuple[bytes, bytes, bytes]] = field(default_factory=list)  # the outbox (bridge.py)
    base_fee: int = 0  # fees.py: this batch's base fee (0: fees off)
    fee_recipient: bytes = b"\x00" * 20  # gets the tips
    base_fees: int = 0  # base_fee * gas of the paying transactions: the treasury's at the end
    tips: int = 0  # (price - base_fee) * gas: the fee recipient's at the end
    unfunded: list[bytes] = field(default_factory=list)


def intrinsic_gas(data: bytes, create: bool) -> int:
    """Cancun intrinsic gas: 21000, calldata 4/16 per zero/non-zero byte, create 32000 + initcode."""
    zeros = data.count(0)
    gas = 21_000 + 4 * zeros + 16 * (len(data) - zeros)
    if create:
        gas += 32_000 + 2 * ((len(data) + 31) // 32)
    return gas


def revert_reason(output: bytes) -> str:
    """'execution reverted[: reason]' from revert data (Error(string) or Panic(uint256))."""
    if output[:4] == _ERROR_SELECTOR:
        try:
            (reason,) = abi_decode(["string"], output[4:])
            return f"execution reverted: {reason}"
        except Exception:
            return "execution reverted (malformed Error(string))"
    if output[:4] == _PANIC_SELECTOR and len(output) == 36:
        return f"execution reverted: panic 0x{int.from_bytes(output[4:], 'big'):02x}"
    return "execution reverted"


def _changed_slots(text: str) -> dict[int, int]:
    """{slot: present} for the slots whose present value differs from the value at first load.

    ``text`` is revm's rendering ``k: StorageSlot { previous_or_original_value: a, present_value: b }, ...``
    (decimal numbers); plain string splits are ~4x faster than a regex here.
    """
    out: dict[int, int] = {}
    try:
        for piece in text.split(" }, "):
            k, rest = piece.split(_SLOT_MID)
            orig, present = rest.split(_SLOT_PRESENT)
            present = present.rstrip(" }")
            if orig != present:
                out[int(k)] = int(present)
    except ValueError:
        raise RuntimeError("could not parse pyrevm's journaled storage (pyrevm version drift?)") from None
    return out


def _logs(res: Any) -> tuple[Log, ...]:
    out = []
    for lg in res.logs:
        topics, data = lg.data
        out.append(Log(bytes.fromhex(lg.address[2:]), tuple(topics), data))
    return tuple(out)


def _account_info(
    balance: int, nonce: int, code: bytes | None = None, code_hash: bytes | None = None
) -> AccountInfo:
    # pyrevm 0.3.7's AccountInfo takes ``balance`` (its .pyi omits it)
    return AccountInfo(balance=balance, nonce=nonce, code=code, code_hash=code_hash)  # type: ignore[call-arg]


def _trim_code(code: bytes, code_hash: bytes) -> bytes:
    """revm pads analysed bytecode with zeros: find the original by its hash."""
    for n in range(len(code), max(-1, len(code) - 70), -1):
        if _keccak(code[:n]) == code_hash:
            return code[:n]
    raise RuntimeError("cannot recover a contract's original code from pyrevm")


class Executor:
    """Deterministic confidential EVM over a ``WorldState``.

    ``salt_secret_fn()`` returns the secret the balance-leaf salts are derived from (the program
    passes a value derived from the current epoch's state key; every committee member gets the
    same). It is called once per batch that changes a balance. Default: 32 zero bytes (tests).
    """

    def __init__(
        self,
        chain_id: int,
        salt_secret_fn: Callable[[], bytes] | None = None,
        *,
        tx_gas_limit: int = MAX_TX_GAS,
        max_undo: int = 64,
        max_queued_withdrawals: int = MAX_QUEUED_WITHDRAWALS,
        contract_key_fn: KeyDraw | None = None,
        platform_secret_fn: Callable[[], bytes] | None = None,
        fees: FeeRule | None = None,
    ) -> None:
        version = importlib.metadata.version("pyrevm")
        if version != PYREVM_VERSION:
            raise RuntimeError(f"the executor needs pyrevm {PYREVM_VERSION}, found {version}")
        if not 0 < chain_id < 1 << 64:
            raise ValueError("chain id must be a positive 64-bit integer")
        self.chain_id = chain_id
        self.tx_gas_limit = tx_gas_limit
        self.max_undo = max_undo
        self.max_queued_withdrawals = min(max_queued_withdrawals, MAX_QUEUED_WITHDRAWALS)
        self._undo: deque[UndoRecord] = deque(maxlen=max_undo or 1)
        self._salt_secret_fn = salt_secret_fn or (lambda: ZERO32)
        # draws a contract's next state key (contract_keys.py); default (tests): a function of the
        # batch's block number only, NOT secret -- the program passes an epoch-keyed one
        self._contract_key_fn: KeyDraw = contract_key_fn or (
            lambda a, r: derive_contract_key(ZERO32, self._block.number.to_bytes(8, "big"), a, r)
        )
        # the batch's platform secret (platform calls, per-tx PREVRANDAO); default (tests): a
        # function of the block only, NOT secret -- the program passes an epoch-keyed one
        self._platform_secret_fn: Callable[[], bytes] = platform_secret_fn or (
            lambda: _keccak(b"EnclaveNet.Platform.TestSecret" + self._block.prevrandao
                            + self._block.number.to_bytes(8, "big"))
        )
        self.fees = fees or FeeRule(0)
        self._batch: _Batch | None = None
        self._block = BlockInfo(0, 0)
        self.last_diff: BatchDiff | None = None  # the net changes of the last end_batch (diff.py)
        self._version = 0  # block number of the last committed batch
        self.state = WorldState()
        self._evm = self._new_evm()
        # Genesis: the withdrawal address holds code that reverts every call to it; PLATFORM
        # holds the platform calls' answer cache (platform.py; its storage is never committed);
        # the bridge's outbox, token implementation and factory (bridge.py).
        genesis = {
            WITHDRAW_ADDRESS: AccountChange(1, 0, _keccak(WITHDRAW_CODE), WITHDRAW_CODE),
            PLATFORM_ADDRESS: AccountChange(1, 0, _keccak(PLATFORM_CODE), PLATFORM_CODE),
        }
        for addr, code in bridge_genesis_code().items():
            genesis[addr] = AccountChange(1, 0, _keccak(code), code)
        # the fee state (fees.py): slot 0 = the base fee, from the floor
        genesis[FEES_ADDRESS] = AccountChange(1, 0, _keccak(FEES_CODE), FEES_CODE)
        self._commit_changes(
            genesis,
            {FEES_ADDRESS: {0: self.fees.min_base_fee}} if self.fees.on else {},
            set(),
            0,
        )

    # --- EVM plumbing ------------------------------------------------------------------------
    def _new_evm(self) -> EVM:
        evm = EVM(
            env=Env(cfg=CfgEnv(chain_id=self.chain_id), block=self._block_env(self._block)),
            gas_limit=BLOCK_GAS_LIMIT,
            spec_id=SPEC_ID,
        )
        return evm

    @staticmethod
    def _block_env(b: BlockInfo) -> BlockEnv:
        return BlockEnv(
            number=b.number,
            coinbase=COINBASE,
            timestamp=b.timestamp,
            difficulty=0,
            prevrandao=b.prevrandao,
            basefee=0,
            gas_limit=BLOCK_GAS_LIMIT,
        )

    @property
    def base_fee(self) -> int:
        """The next batch's base fee (fees.py; committed state, slot 0 of FEES_ADDRESS)."""
        return self.state.get_storage(FEES_ADDRESS, 0) if self.fees.on else 0

    def _flush_account(self, addr: bytes, ch: AccountChange, new_code: bool) -> None:
        if ch.code_hash == KECCAK_EMPTY:
            info = _account_info(ch.balance, ch.nonce)
        elif new_code:
            info = _account_info(ch.balance, ch.nonce, code=ch.code)
        else:
            info = _account_info(ch.balance, ch.nonce, code_hash=ch.code_hash)
        self._evm.insert_account_info(_hex(addr), info)

    def _flush_slot(self, addr_hex: str, slot: int, value: int) -> None:
        # A cold insert goes to the database but leaves the account loaded (warm): undo that.
        evm = self._evm
        cp = evm.snapshot()
        evm.insert_account_storage(addr_hex, slot, value)
        evm.revert(cp)

    def _commit_changes(
        self,
        accounts: dict[bytes, AccountChange],
        storage: dict[bytes, dict[int, int]],
        wiped: set[bytes],
        version: int,
        skip_flush: Set[bytes] = frozenset(),
        keep_undo: bool = False,
        withdrawal_queue: tuple[Withdrawal, ...] | None = None,
        queue_senders: tuple[bytes, ...] = (),
    ) -> UndoRecord | None:
        """Write net changes into pyrevm's database (cold) and into the world state + trees.

        ``skip_flush``: accounts already written to the database (direct credits).
        """
        for addr in wiped:
            h = _hex(addr)
            for slot, _ in self.state.iter_storage(addr):
                self._flush_slot(h, slot, 0)
        for addr, ch in accounts.items():
            if addr not in skip_flush:
                self._flush_account(addr, ch, ch.code is not None and ch.code_hash not in self.state.code)
        for addr, slots in storage.items():
            h = _hex(addr)
            for slot, value in slots.items():
                self._flush_slot(h, slot, value)
        needs_secret = any(ch.balance != self.state.balance(a) for a, ch in accounts.items()) or (
            withdrawal_queue is not None and queue_senders != self.state.queue_senders
        )
        secret = self._salt_secret_fn() if needs_secret else ZERO32
        return self.state.apply(
            accounts,
            storage,
            wiped,
            secret,
            version,
            self._version if keep_undo else None,
            withdrawal_queue,
            queue_senders,
        )

    # --- batches -------------------------------------------------------------------------------
    @property
    def in_batch(self) -> bool:
        return self._batch is not None

    def begin_batch(self, block: BlockInfo, fee_recipient: bytes | None = None) -> None:
        """Start a batch executed in block environment ``block``; ``fee_recipient`` gets the tips
        (fees.py; default the treasury)."""
        if self._batch is not None:
            raise EnclaveRefusal("a batch is already open: end it before beginning another")
        if self._evm.journal_depth != 0:
            raise RuntimeError("pyrevm journal is not at depth 0 between batches")
        self._block = block
        self.last_diff = None
        base_fee = self.base_fee
        # revm's own BASEFEE stays 0 (pyrevm 0.3.7 cannot disable its base-fee check, and system
        # calls and L1-paid items run at price 0): the executor enforces and splits fees itself
        self._evm.set_block_env(self._block_env(block))
        secret = self._platform_secret_fn()
        self._batch = _Batch(block, self._evm.snapshot(), platform_secret=secret, seed_prefix=TX_SEED_INFO + secret,
                             base_fee=base_fee, fee_recipient=fee_recipient or self.fees.treasury)
        # PLATFORM is warm for the whole batch: a miss run and its re-run see the same gas at
        # every platform call (else the first call of a batch would be cold, then warm, and
        # miss twice), and no transaction learns from its gas whether an earlier one used it.
        self._evm.get_balance(_PLATFORM_HEX)

    def _require_batch(self) -> _Batch:
        if self._batch is None:
            raise EnclaveRefusal("no batch is open: call begin_batch first")
        return self._batch

    def abort_batch(self) -> None:
        """Drop everything the open batch did (state back to the last commit)."""
        b = self._require_batch()
        self._evm.revert(b.checkpoint)
        self._batch = None
        for addr in b.direct:  # undo credits written straight to pyrevm's database
            rec = self.state.account(addr)
            if rec is None:
                self._flush_account(addr, AccountChange(0, 0, KECCAK_EMPTY), False)
            else:
                self._flush_account(addr, AccountChange(rec.nonce, rec.balance, rec.code_hash), False)

    def _settle_fees(self, b: _Batch) -> int:
        """The batch's fees (fees.py): the base-fee part of what the transactions paid goes to
        the treasury, the tips to the fee recipient; the next base fee is written to FEES.
        Returns it."""
        evm = self._evm
        if b.base_fees or b.tips:
            b.journal_used = True
            for addr, amount in ((self.fees.treasury, b.base_fees), (b.fee_recipient, b.tips)):
                if amount > 0:
                    h = _hex(addr)
                    evm.set_balance(h, evm.get_balance(h) + amount)
        nxt = self.fees.next_base_fee(b.base_fee, b.gas_used)
        if nxt != b.base_fee:
            evm.message_call(_hex(SYSTEM_CALLER), _hex(FEES_ADDRESS), nxt.to_bytes(32, "big"), 0, BLOCK_GAS_LIMIT)
        return nxt

    def end_batch(self) -> BatchCommit:
        """Commit the open batch: net state changes, both roots, the withdrawals list."""
        b = self._require_batch()
        evm = self._evm
        next_base_fee = self._settle_fees(b) if self.fees.on else 0
        text = evm.journal_str
        if not text.startswith(_STATE_PREFIX):
            raise RuntimeError("unexpected pyrevm journal rendering")
        state_part = text[len(_STATE_PREFIX) : text.index(_STATE_END)]
        del text
        st = self.state
        accounts: dict[bytes, AccountChange] = {}
        storage: dict[bytes, dict[int, int]] = {}
        wiped: set[bytes] = set()
        parsed: set[bytes] = set()
        pieces = state_part.split(_ACCOUNT_SEP)
        found = len(pieces) - 1
        nonces = b.nonces
        head_match, addr_match = _HEAD_RE.match, _ADDR_RE.fullmatch
        for idx in range(1, found + 1):
            piece = pieces[idx]
            a = addr_match(pieces[idx - 1], len(pieces[idx - 1]) - 42)
            m = head_match(piece)
            if a is None or m is None:
                raise RuntimeError("could not parse pyrevm's journaled state (pyrevm version drift?)")
            addr = bytes.fromhex(a.group(1))
            parsed.add(addr)
            s_open = piece.find(_STORAGE_OPEN, m.end())
            s_close = piece.rfind(_STATUS_OPEN, m.end())
            if s_open < 0 or s_close < s_open:
                raise RuntimeError("could not parse pyrevm's journaled state (pyrevm version drift?)")
            status = piece[s_close + len(_STATUS_OPEN) : piece.find(")", s_close)]
            balance, nonce = int(m.group(1)), int(m.group(2))
            code_hash = bytes.fromhex(m.group(3))
            if "SelfDestructed" in status:
                wiped.add(addr)
                code_hash, nonce = KECCAK_EMPTY, 0
            elif s_close > s_open + len(_STORAGE_OPEN) and addr != PLATFORM_ADDRESS:
                # (PLATFORM's storage is this batch's answer cache: never committed)
                changed = _changed_slots(piece[s_open + len(_STORAGE_OPEN) : s_close])
                if changed:
                    storage[addr] = changed
            n = nonces.get(addr)
            if n is not None and n > nonce:
                nonce = n
            rec = st.accounts.get(addr)
            if rec is None:
                if nonce == 0 and balance == 0 and code_hash == KECCAK_EMPTY and addr not in wiped:
                    continue
            elif rec.nonce == nonce and rec.balance == balance and rec.code_hash == code_hash and addr not in wiped:
                continue
            code = None
            if code_hash != KECCAK_EMPTY and code_hash not in st.code:
                raw = evm.get_code(_hex(addr)) or b""
                code = _trim_code(raw, code_hash)
            accounts[addr] = AccountChange(nonce, balance, code_hash, code)
        if found and pieces[0] != pieces[0][-42:]:
            raise RuntimeError("could not parse pyrevm's journaled state (pyrevm version drift?)")
        if found != state_part.count(": Account { info: "):
            raise RuntimeError("could not parse pyrevm's journaled state (pyrevm version drift?)")
        for addr in b.nonces:  # every sender was loaded, but be safe
            if addr not in parsed:
                raise RuntimeError("a transaction sender is missing from the journaled state")
        for addr, bal in b.direct.items():  # credits that never reached the journal
            if addr not in parsed:
                rec = st.accounts.get(addr)
                nonce, code_hash = (0, KECCAK_EMPTY) if rec is None else (rec.nonce, rec.code_hash)
                accounts[addr] = AccountChange(nonce, bal, code_hash)
        del state_part
        evm.revert(b.checkpoint)
        self._batch = None
        # the header lists the oldest pending withdrawals, up to the Rollup's cap; the rest wait
        pending = st.withdrawal_queue + tuple(b.withdrawals) if b.withdrawals else st.withdrawal_queue
        paid = pending[:MAX_WITHDRAWALS_PER_HEADER]
        queue = pending[MAX_WITHDRAWALS_PER_HEADER:]
        senders = (st.queue_senders + tuple(b.withdrawal_senders))[MAX_WITHDRAWALS_PER_HEADER:]
        self.last_diff = BatchDiff(accounts, storage, wiped, queue, senders, b.key_policies, b.key_counts)
        undo = self._commit_changes(
            accounts,
            storage,
            wiped,
            b.block.number,
            skip_flush=b.direct.keys() - parsed,
            keep_undo=self.max_undo > 0,
            withdrawal_queue=queue,
            queue_senders=senders,
        )
        old_chains = self._advance_contract_keys(b)
        if undo is not None:
            undo.contract_keys = old_chains
            self._undo.append(undo)
        self._version = b.block.number
        return BatchCommit(
            state_root=st.state_root,
            balances_root=st.balances_root,
            withdrawals=paid,
            withdrawals_hash=withdrawals_hash(paid) if paid else EMPTY_WITHDRAWALS_HASH,
            gas_used=b.gas_used,
            tx_count=b.tx_count,
            accounts_touched=len(accounts),
            slots_touched=sum(len(s) for s in storage.values()),
            queued_withdrawals=len(queue),
            messages=tuple(b.messages),
            base_fee=b.base_fee,
            next_base_fee=next_base_fee,
            unfunded=tuple(b.unfunded),
        )

    @property
    def undo_depth(self) -> int:
        """How many committed batches ``undo_batch`` can still take back (at most ``max_undo``)."""
        return len(self._undo)

    def undo_batch(self) -> None:
        """Take back the last committed batch: O(its changes), unlike a snapshot/restore.

        Roots, salts, storage, code and pyrevm's database return exactly to what they were
        before that batch's ``end_batch``. Call it repeatedly to go back several batches.
        """
        if self._batch is not None:
            raise EnclaveRefusal("undo between batches only: end or abort the open batch first")
        if not self._undo:
            raise EnclaveRefusal("no committed batch left to undo (restore a snapshot instead)")
        rec = self._undo.pop()
        for addr, slots in rec.storage.items():
            h = _hex(addr)
            for slot, value in slots.items():
                self._flush_slot(h, slot, value)
        for addr, old in rec.accounts.items():
            if old is None:
                self._flush_account(addr, AccountChange(0, 0, KECCAK_EMPTY), False)
            else:
                self._flush_account(addr, AccountChange(old.nonce, old.balance, old.code_hash), False)
        self.state.undo(rec)
        if rec.contract_keys is not None:
            self.state.contract_keys = rec.contract_keys
        self._version = rec.version

    def apply_diff(
        self,
        diff: BatchDiff,
        block: BlockInfo,
        expect_state_root: bytes,
        expect_balances_root: bytes,
    ) -> None:
        """Commit another member's batch from its net changes (``diff.py``) instead of running it.

        The same commit as ``end_batch`` (pyrevm's database, the world state, both trees, the
        contract key chains), then the roots must be ``expect_*`` (the QC'd header's); otherwise
        everything is put back exactly (O(changes)) and the call refuses. ``block`` is the
        batch's block (number = its height, timestamp).
        """
        version = block.number
        if self._batch is not None:
            raise EnclaveRefusal("apply a state diff between batches only")
        st = self.state
        for ch in diff.accounts.values():  # every code hash must be known here or come with its code
            if ch.code_hash != KECCAK_EMPTY and ch.code_hash not in st.code and ch.code is None:
                raise EnclaveRefusal("state diff refers to contract code this enclave does not have")
        for a in diff.key_counts:
            if a not in st.contract_keys and a not in diff.key_policies:
                raise EnclaveRefusal("state diff counts executions of a contract without a key policy")
        rec = self._commit_changes(
            diff.accounts,
            diff.storage,
            diff.wiped,
            version,
            keep_undo=True,
            withdrawal_queue=diff.withdrawal_queue,
            queue_senders=diff.queue_senders,
        )
        assert rec is not None
        prev_block, self._block = self._block, block
        b = _Batch(block, None)
        b.key_policies, b.key_counts = dict(diff.key_policies), dict(diff.key_counts)
        rec.contract_keys = self._advance_contract_keys(b)
        if st.state_root != expect_state_root or st.balances_root != expect_balances_root:
            self._undo.append(rec)
            self.undo_batch()
            self._block = prev_block
            raise EnclaveRefusal("the state diff does not give the header's state/balances root")
        if self.max_undo > 0:
            self._undo.append(rec)
        self._version = version

    # --- items ---------------------------------------------------------------------------------
    @property
    def batch_tx_count(self) -> int:
        """Items included in the open batch so far (executed, successfully or not)."""
        return self._require_batch().tx_count

    def next_nonce(self, address: str | bytes) -> int:
        """The nonce the next signed transaction from ``address`` must carry."""
        a = address_bytes(address)
        if self._batch is not None and a in self._batch.nonces:
            return self._batch.nonces[a]
        return self.state.nonce(a)

    def credit(self, address: str | bytes, amount: int) -> None:
        """Credit ``amount`` wei to ``address`` (an L1 deposit), inside the open batch.

        Credits made before the batch's first ``execute`` are written straight into pyrevm's
        database (every account is cold then): cheap, and they do not grow the journal.
        """
        b = self._require_batch()
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
            raise EnclaveRefusal("a deposit amount must be a non-negative integer")
        if amount == 0:
            return
        addr = address_bytes(address)
        h = _hex(addr)
        if not b.journal_used and addr != _ZERO_ADDRESS and addr != PLATFORM_ADDRESS:
            bal = b.direct.get(addr)
            if bal is None:
                bal = self.state.balance(addr)
            bal += amount
            if bal >= 1 << 256:
                raise EnclaveRefusal("deposit would overflow the account balance")
            rec = self.state.account(addr)
            nonce, code_hash = (0, KECCAK_EMPTY) if rec is None else (rec.nonce, rec.code_hash)
            self._flush_account(addr, AccountChange(nonce, bal, code_hash), False)
            b.direct[addr] = bal
            return
        b.journal_used = True
        bal = self._evm.get_balance(h) + amount
        if bal >= 1 << 256:
            raise EnclaveRefusal("deposit would overflow the account balance")
        self._evm.set_balance(h, bal)

    def execute(self, item: SignedTx | InboxCall, bridge_command: bool = False) -> Receipt:
        """Execute one decoded item in the open batch and return its receipt.

        ``bridge_command``: the item is an L1 Bridge command (bridge.py ``command_call``), the
        only way a call from the bridge system caller runs.

        Raises ``TxError`` (and changes nothing) when the item cannot be included: wrong chain,
        nonce already used or a gap, gas limit above the per-tx limit or below intrinsic gas,
        value above the sender's balance. A revert, out-of-gas or halt is *not* an error: it
        gives a receipt with status 0 (and the nonce is consumed).
        """
        b = self._require_batch()
        b.journal_used = True
        if item.chain_id != self.chain_id:
            raise TxError(f"wrong chain id {item.chain_id}: EnclaveNet's chain id is {self.chain_id}")
        sender = item.sender
        create = item.to is None
        if (sender == SYSTEM_CALLER or sender == BRIDGE_CALLER) and not bridge_command:
            raise TxError("a system caller cannot send transactions")
        if item.gas > self.tx_gas_limit:
            raise TxError(f"gas limit {item.gas} exceeds the per-transaction limit {self.tx_gas_limit}")
        base = intrinsic_gas(item.data, create)
        if item.gas < base:
            raise TxError(f"gas limit {item.gas} is below the intrinsic gas {base}")
        if create and len(item.data) > 49_152:
            raise TxError(f"init code of {len(item.data)} bytes exceeds 49152 (EIP-3860)")
        nonce = -1
        if isinstance(item, SignedTx):
            expected = b.nonces.get(sender)
            if expected is None:
                expected = self.state.nonce(sender)
            if item.nonce != expected:
                if item.nonce < expected:
                    raise TxError(
                        f"nonce {item.nonce} already used by {to_checksum(sender)}; next is {expected}"
                    )
                raise TxError(f"nonce gap: expected {expected}, got {item.nonce}")
            nonce = item.nonce
        caller = _hex(sender)
        evm = self._evm
        price = gas_price_of(item, b.base_fee) if b.base_fee else 0
        if price and isinstance(item, SignedTx):
            need = item.gas * item.gas_price + item.value  # Ethereum's rule: gas * max fee + value
            if evm.get_balance(caller) < need:
                b.unfunded.append(sender)
                raise TxError(
                    f"insufficient funds: {to_checksum(sender)} cannot pay gas * max fee + value "
                    f"({need} wei); deposit first"
                )
        elif item.value:
            bal = evm.get_balance(caller)
            if bal < item.value:
                raise TxError(f"insufficient funds: {to_checksum(sender)} cannot send value above its balance")
        to = item.to
        if to == WITHDRAW_ADDRESS or to == KEY_POLICY_ADDRESS:
            receipt = (self._withdraw if to == WITHDRAW_ADDRESS else self._set_key_policy)(b, item, base)
        else:
            blk = b.block
            # per-tx PREVRANDAO = platform.tx_seed(secret, index, tx hash), inlined (the fast
            # path: ~1 µs per tx with the BlockEnv; positional BlockEnv is half the keyword cost)
            evm.set_block_env(BlockEnv(
                blk.number, COINBASE, blk.timestamp, 0, _keccak(b.seed_prefix + b.tx_count.to_bytes(8, "big") + item.hash),
                0, BLOCK_GAS_LIMIT,
            ))
            receipt = self._run(b, item, caller, nonce)
            if to is not None and (to in self.state.contract_keys or to in b.key_policies):
                b.key_counts[to] = b.key_counts.get(to, 0) + 1
        if nonce >= 0:
            b.nonces[sender] = nonce + 1
        if receipt.logs and receipt.status:
            for lg in receipt.logs:
                m = outbox_message(lg.address, lg.topics, lg.data)
                if m is not None:
                    b.messages.append(m)
        b.gas_used += receipt.gas_used
        b.tx_count += 1
        if price:
            # pyrevm's message_call charges no gas: the fee is taken here, once (a platform miss's
            # re-run included), after the run; the upfront check makes the balance cover it
            fee = receipt.gas_used * price
            evm.set_balance(caller, max(0, evm.get_balance(caller) - fee))
            b.base_fees += b.base_fee * receipt.gas_used
            b.tips += fee - b.base_fee * receipt.gas_used
            receipt.gas_price = price
        return bound_receipt(receipt)

    def _withdraw(self, b: _Batch, item: SignedTx | InboxCall, gas: int) -> Receipt:
        sender = item.sender

        def failed(why: str) -> Receipt:
            return Receipt(0, gas, b"", (), why, None, item.hash, sender)

        if len(item.data) == 0:
            recipient = sender
        elif len(item.data) == 20:
            recipient = item.data
        else:
            return failed("withdrawal calldata must be empty or a 20-byte L1 recipient address")
        if recipient == b"\x00" * 20:
            return failed("withdrawal recipient must not be the zero address")
        if item.value == 0:
            return failed("a withdrawal needs a non-zero value")
        if len(self.state.withdrawal_queue) + len(b.withdrawals) >= self.max_queued_withdrawals:
            return failed(
                f"the withdrawal queue is full ({self.max_queued_withdrawals} waiting; the L1 pays "
                f"{MAX_WITHDRAWALS_PER_HEADER} per header): try again in a later batch"
            )
        caller = _hex(sender)
        self._evm.set_balance(caller, self._evm.get_balance(caller) - item.value)
        w = Withdrawal(to_checksum(recipient), item.value)
        b.withdrawals.append(w)
        b.withdrawal_senders.append(sender)
        return Receipt(1, gas, b"", (), None, None, item.hash, sender, w)

    def _set_key_policy(self, b: _Batch, item: SignedTx | InboxCall, gas: int) -> Receipt:
        """A contract's admin sets its state-key rotation policy (contract_keys.py)."""
        self._evm.get_balance(_hex(item.sender))  # load the sender: end_batch commits its nonce
        try:
            call = PolicyCall.parse(item.data)
        except ContractKeyError as exc:
            return Receipt(0, gas, b"", (), str(exc), None, item.hash, item.sender)
        why = None
        if item.value:
            why = "a key policy transaction must carry no value"
        elif not call.admin_ok(item.sender):
            why = "key policy: only the contract's deployer (with its deploy nonce) may set it"
        elif not (self._evm.get_code(_hex(call.contract)) or b""):
            why = "key policy: there is no contract at that address"
        if why is not None:
            return Receipt(0, gas, b"", (), why, None, item.hash, item.sender)
        b.key_policies[call.contract] = call
        return Receipt(1, gas, b"", (), None, None, item.hash, item.sender)

    def _advance_contract_keys(self, b: _Batch) -> dict[bytes, ContractKeyChain] | None:
        """Apply the batch's policies and execution counts; draw due keys. Returns the chains
        as they were (for undo) if anything changed, else None."""
        if not b.key_policies and not b.key_counts:
            return None
        chains = self.state.contract_keys
        before = {a: c.copy() for a, c in chains.items()}
        for a, call in b.key_policies.items():
            c = chains.get(a)
            if c is None:
                chains[a] = ContractKeyChain(call.every_n, call.keep_history)
            else:
                c.every_n, c.keep_history = call.every_n, call.keep_history
                c.prune()
        for a, n in b.key_counts.items():
            chains[a].count += n
        for a in sorted(b.key_policies.keys() | b.key_counts.keys()):
            chains[a].advance(a, self._contract_key_fn)
        return before

    def contract_key_chain(self, address: str | bytes) -> ContractKeyChain | None:
        """The committed key chain of a contract with a key policy (None without one)."""
        return self.state.contract_keys.get(address_bytes(address))

    def _store_answer(self, material: bytes, secret: bytes, gas_limit: int, keys: set[bytes]) -> bool:
        """Compute a missed platform answer and store it in PLATFORM (journaled, so the batch's
        or view's checkpoint drops it). False if that answer was already stored: PLATFORM would
        have found it, so the revert data was not PLATFORM's (forged); do not loop on it."""
        key = _keccak(material)
        if key in keys:
            return False
        keys.add(key)
        answer = check_answer_size(compute_answer(material, secret, gas_limit))
        try:
            self._evm.message_call(
                _hex(SYSTEM_CALLER), _hex(PLATFORM_ADDRESS), answer.store_calldata(key), 0, BLOCK_GAS_LIMIT
            )
        except RuntimeError as exc:  # an executor bug, not a user's doing
            raise RuntimeError(f"storing a platform answer failed: {exc}") from None
        return True

    def _run(self, b: _Batch, item: SignedTx | InboxCall, caller: str, nonce: int) -> Receipt:
        """Run one transaction; on a PLATFORM miss (top-level revert with PLATFORM_MAGIC),
        store the answer and run it again, at most MAX_PLATFORM_ROUNDS times.

        No sub-checkpoint: a top-level revert leaves nothing behind in pyrevm but the loaded
        caller and callee (warm for the transaction anyway, EIP-2929), message_call does not bump
        the nonce, and a creation's nonce is set again below (docs/ENCLAVE_EVM.md)."""
        rounds = 0
        while True:
            r = self._run_once(item, caller, nonce)
            if r.status or r.error is None or not r.error.startswith("execution reverted"):
                return r
            material = parse_miss(r.output)
            if material is None:
                return r
            if rounds == MAX_PLATFORM_ROUNDS or not self._store_answer(
                material, b.platform_secret, item.gas, b.platform_keys
            ):
                why = (
                    f"too many platform calls: a transaction gets at most {MAX_PLATFORM_ROUNDS} platform answers"
                    if rounds == MAX_PLATFORM_ROUNDS
                    else "platform call failed: the revert data names an answer already given (forged platform revert?)"
                )
                return Receipt(0, r.gas_used, b"", (), why, None, item.hash, item.sender)
            rounds += 1

    def _pin_nonce(self, caller: str, nonce: int) -> None:
        """Set ``caller``'s nonce in pyrevm to ``nonce`` before a creation: pyrevm derives the new
        address from its own nonce, which an earlier (missed, re-run) deploy already bumped."""
        info = self._evm.basic(caller)
        if info.nonce != nonce:
            self._evm.insert_account_info(caller, _account_info(info.balance, nonce))

    def _run_once(self, item: SignedTx | InboxCall, caller: str, nonce: int) -> Receipt:
        evm = self._evm
        contract: bytes | None = None
        output = b""
        try:
            if item.to is None:
                self._pin_nonce(caller, nonce)
                contract = bytes.fromhex(evm.deploy(caller, item.data, value=item.value, gas=item.gas)[2:])
            else:
                output = evm.message_call(caller, "0x" + item.to.hex(), item.data, item.value, item.gas)
            err = None
        except RuntimeError as exc:
            err = str(exc)
        res = evm.result
        if res is None:
            # refused before execution (pyrevm validation): nothing changed
            raise TxError(f"transaction refused by the EVM: {err}")
        if err is None:
            return Receipt(1, res.gas_used, output, _logs(res), None, contract, item.hash, item.sender)
        if res.is_halt:
            reason = res.reason
            msg = "out of gas" if reason.startswith("OutOfGas") else f"execution halted: {reason}"
            return Receipt(0, res.gas_used, b"", (), msg, None, item.hash, item.sender)
        m = _REVERT_RE.search(err)
        data = bytes.fromhex(m.group(1))[:MAX_RECEIPT_OUTPUT] if m else b""
        return Receipt(0, res.gas_used, data, (), revert_reason(data), None, item.hash, item.sender)

    # --- views ---------------------------------------------------------------------------------
    def call(
        self,
        sender: str | bytes,
        to: str | bytes | None,
        data: bytes = b"",
        value: int = 0,
        gas: int | None = None,
    ) -> CallResult:
        """Run a call (``to=None``: a creation) on the current state and discard its effects.

        Inside a batch it sees the batch's writes so far; it never changes what later
        transactions see (the journal is reverted, warm slots included).
        """
        gas = self.tx_gas_limit if gas is None else gas
        if gas > self.tx_gas_limit:
            raise EnclaveRefusal(f"gas {gas} exceeds the per-transaction limit {self.tx_gas_limit}")
        evm = self._evm
        sender_b = address_bytes(sender)
        caller = _hex(sender_b)
        to_b = None if to is None else address_bytes(to)
        # PREVRANDAO of a view: derived from the request (never equal to a transaction's)
        secret = self._batch.platform_secret if self._batch is not None else self._platform_secret_fn()
        request = sender_b + (to_b or b"") + value.to_bytes(32, "big") + gas.to_bytes(8, "big") + data
        blk = self._block
        evm.set_block_env(BlockEnv(
            number=blk.number, coinbase=COINBASE, timestamp=blk.timestamp, difficulty=0,
            prevrandao=view_seed(secret, request), basefee=0, gas_limit=BLOCK_GAS_LIMIT,
        ))
        cp = evm.snapshot()
        evm.get_balance(_PLATFORM_HEX)  # warm, as in a batch
        keys: set[bytes] = set(self._batch.platform_keys) if self._batch is not None else set()
        # a creation's address comes from the sender's nonce, which each deploy bumps: every
        # re-run after a miss must create at the same address, as a transaction's does (_run_once)
        nonce0 = evm.basic(caller).nonce if to_b is None else None
        try:
            rounds = 0
            while True:
                if nonce0 is not None:
                    self._pin_nonce(caller, nonce0)
                r = self._call_once(caller, to_b, data, value, gas)
                material = None if r.success else parse_miss(r.output)
                if material is None:
                    return r
                if rounds == MAX_PLATFORM_ROUNDS or not self._store_answer(material, secret, gas, keys):
                    return CallResult(False, b"", r.gas_used, "too many platform calls (or a forged platform revert)")
                rounds += 1
        finally:
            evm.revert(cp)

    def _call_once(self, caller: str, to: bytes | None, data: bytes, value: int, gas: int) -> CallResult:
        evm = self._evm
        contract = None
        output = b""
        try:
            if to is None:
                contract = bytes.fromhex(evm.deploy(caller, data, value=value, gas=gas)[2:])
            else:
                output = evm.message_call(caller, _hex(to), data, value=value, gas=gas)
            err = None
        except RuntimeError as exc:
            err = str(exc)
        res = evm.result
        if res is None:
            return CallResult(False, b"", 0, f"call refused by the EVM: {err}")
        if err is None:
            return CallResult(True, output, res.gas_used, None, contract, _logs(res))
        if res.is_halt:
            reason = res.reason
            msg = "out of gas" if reason.startswith("OutOfGas") else f"execution halted: {reason}"
            return CallResult(False, b"", res.gas_used, msg)
        m = _REVERT_RE.search(err)
        out = bytes.fromhex(m.group(1))[:MAX_RECEIPT_OUTPUT] if m else b""
        return CallResult(False, out, res.gas_used, revert_reason(out))

    def estimate_gas(
        self, sender: str | bytes, to: str | bytes | None, data: bytes = b"", value: int = 0,
        *, gas_cap: int | None = None,
    ) -> int:
        """The smallest gas limit (to ~1%) with which the call succeeds; raises if it never does
        within ``gas_cap`` (default: the transaction gas limit)."""
        if to is not None and address_bytes(to) == WITHDRAW_ADDRESS:
            return intrinsic_gas(data, False)
        cap = min(gas_cap, self.tx_gas_limit) if gas_cap is not None else self.tx_gas_limit
        top = self.call(sender, to, data, value, cap)
        if not top.success:
            raise EnclaveRefusal(f"the call fails even with {cap} gas: {top.error}")
        lo = max(top.gas_used, intrinsic_gas(data, to is None))
        if self.call(sender, to, data, value, lo).success:
            return lo
        hi = cap
        while hi - lo > max(1000, lo // 100):
            mid = (lo + hi) // 2
            if self.call(sender, to, data, value, mid).success:
                hi = mid
            else:
                lo = mid
        return hi

    # --- reads ---------------------------------------------------------------------------------
    def balance(self, address: str | bytes) -> int:
        """Committed native balance (as of the last ``end_batch``)."""
        return self.state.balance(address_bytes(address))

    def storage_at(self, address: str | bytes, slot: int) -> int:
        """Committed storage value."""
        return self.state.get_storage(address_bytes(address), slot)

    def code_at(self, address: str | bytes) -> bytes:
        rec = self.state.account(address_bytes(address))
        return b"" if rec is None or rec.code_hash == KECCAK_EMPTY else self.state.code[rec.code_hash]

    @property
    def state_root(self) -> bytes:
        return self.state.state_root

    @property
    def withdrawal_queue(self) -> tuple[Withdrawal, ...]:
        """Withdrawals made but not yet listed in a header (oldest first), as of the last commit."""
        return self.state.withdrawal_queue

    @property
    def balances_root(self) -> bytes:
        return self.state.balances_root

    def balance_proof(self, address: str | bytes) -> BalanceProof:
        """The escape-hatch proof of ``address``'s committed balance (non-zero balances only)."""
        a = address_bytes(address)
        rec = self.state.account(a)
        value = self.state.leaf_value(a)
        if rec is None or value == 0:
            raise EnclaveRefusal(f"{to_checksum(a)} has no balance leaf: its balance is zero")
        key = smt_key(a)
        sibs = self.state.balances_tree.proof(key)
        return BalanceProof(a, value, rec.salt, key, smt_leaf(key, value, rec.salt), tuple(sibs), self.balances_root)

    def escape_value(self, address: str | bytes) -> int:
        """What the escape hatch pays ``address``: its balance plus its queued withdrawals."""
        return self.state.leaf_value(address_bytes(address))

    # --- snapshots -----------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """Deterministic serialisation of the committed state (between batches only)."""
        if self._batch is not None:
            raise EnclaveRefusal("snapshot between batches only: end the open batch first")
        return self.state.snapshot(self.chain_id, self._version)

    def restore(self, data: bytes, expect_state_root: bytes | None = None) -> None:
        """Replace the state with a snapshot; with ``expect_state_root``, refuse a mismatch."""
        if self._batch is not None:
            raise EnclaveRefusal("restore between batches only: end or abort the open batch first")
        st, version = WorldState.from_snapshot(data, self.chain_id)
        if expect_state_root is not None and st.state_root != expect_state_root:
            raise EnclaveRefusal("snapshot does not match the expected state root")
        self.state = WorldState()  # loaded below into a fresh EVM, then swapped in
        self._evm = self._new_evm()
        evm = self._evm
        seen: set[bytes] = set()
        for addr, rec in st.accounts.items():
            new = rec.code_hash != KECCAK_EMPTY and rec.code_hash not in seen
            if new:
                seen.add(rec.code_hash)
            self._flush_account(
                addr,
                AccountChange(rec.nonce, rec.balance, rec.code_hash, st.code.get(rec.code_hash)),
                new,
            )
        for addr, slots in st.storage.items():
            h = _hex(addr)
            for slot, value in slots.items():
                cp = evm.snapshot()
                evm.insert_account_storage(h, slot, value)
                evm.revert(cp)
        self.state = st
        self._version = version
        self._undo.clear()


__all__ = [
    "BLOCK_GAS_LIMIT",
    "WITHDRAW_ADDRESS",
    "BalanceProof",
    "BatchCommit",
    "BlockInfo",
    "CallResult",
    "Executor",
    "Log",
    "Receipt",
    "intrinsic_gas",
    "revert_reason",
]
