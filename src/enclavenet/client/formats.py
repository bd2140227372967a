"""What the client puts in envelopes and reads back out of them.

* **Transactions**: an ordinary signed Ethereum transaction for the EnclaveNet chain id
  (EIP-1559 by default, legacy EIP-155 on request), exactly what ``eth_account`` produces; fees
  are zero (gas costs nothing inside EnclaveNet). Signed with coincurve (about 20x faster than
  ``eth_account``; the bytes are identical, a unit test checks it).
* **Inbox calls** (L1 inbox only): ``0x7e || rlp([chain_id, to, value, data, gas])``, whose
  sender is the L1 account that called ``Rollup.submit``.
* **Signed view requests**: the CBOR map ``{from, to, data, value, gas, epoch, sig}`` where
  ``sig`` is the EIP-712 signature over ``ViewCall(...)`` in the domain
  ``{name: "EnclaveNet", version: "1", chainId}`` (docs/ENCLAVE.md). Built here with
  ``eth_account``'s typed-data encoder, the way any wallet would sign it.
* **Results and receipts**: CBOR maps sealed under the envelope's receipt key.

Formats are those of docs/ENCLAVE.md and docs/ENCLAVE_EVM.md; this module only restates them
on the user's side (the client does not import the enclave program).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import cbor2
import coincurve
import rlp
from eth_abi import decode as abi_decode
from eth_account.messages import encode_typed_data

from ..crypto.hashing import address_bytes, keccak256, to_checksum
from ..enclave.batch import ERROR_CODES, ERROR_ENTRY_PREFIX
from ..enclave.tx import sign_tx as _sign_tx
from ..enclave.views import MAX_VIEW_TTL, ViewDomain
from ..enclave.views import session_typed_data as _enclave_session_typed_data
from ..enclave.views import typed_data as _enclave_typed_data

ZERO_ADDRESS = "0x" + "00" * 20
TYPE_INBOX = 0x7E
MAX_VIEW_GAS = 30_000_000
MIN_GAS = 21_000
VIEW_TTL = 120  # seconds a signed view request stays valid (the enclave allows up to MAX_VIEW_TTL)


def error_entry_reason(entry: bytes) -> str:
    """What an error entry of batch data (``EnclaveNet.error:<code>``) means, in words."""
    code = entry[len(ERROR_ENTRY_PREFIX):].decode("utf-8", "replace")
    return f"{code}: {ERROR_CODES.get(code, 'unknown error code')}"

_ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)
_PANIC_CODES = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "invalid storage byte array",
    0x31: "pop on an empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to a zero-initialised function",
}


# --------------------------------------------------------------------------- transactions


def sign_transaction(
    secret: bytes,
    chain_id: int,
    nonce: int,
    to: str | bytes | None,
    data: bytes = b"",
    value: int = 0,
    gas: int = 1_000_000,
    *,
    legacy: bool = False,
    max_fee: int = 0,
    priority_fee: int = 0,
) -> bytes:
    """A raw signed transaction (EIP-1559, or legacy EIP-155 whose gas price is ``max_fee``),
    empty access list; fees default to zero (EnclaveNet without fees, docs/FEES.md).

    The same bytes as ``eth_account.Account.sign_transaction`` for these fields (tested), ~20x faster.
    """
    return _sign_tx(secret, chain_id, nonce, to, data, value, gas, legacy=legacy, max_fee=max_fee,
                    priority_fee=priority_fee)


@dataclass(frozen=True)
class RawTxInfo:
    """The public facts of a raw signed transaction the user signed themselves."""

    sender: str
    nonce: int
    to: str | None
    chain_id: int


def inspect_raw_transaction(raw: bytes) -> RawTxInfo:
    """Sender, nonce, target and chain id of a raw signed transaction (legacy or EIP-1559)."""
    from eth_account import Account  # local: eth_account's recovery is slow to import

    if not raw:
        raise ValueError("empty raw transaction")
    if raw[0] == 2:
        items = rlp.decode(raw[1:])
        chain_id = int.from_bytes(items[0], "big")
        nonce = int.from_bytes(items[1], "big")
        to_raw = items[5]
    elif raw[0] >= 0xC0:
        items = rlp.decode(raw)
        nonce = int.from_bytes(items[0], "big")
        to_raw = items[3]
        v = int.from_bytes(items[6], "big")
        if v < 35:
            raise ValueError("a legacy transaction without EIP-155 chain id is refused by EnclaveNet")
        chain_id = (v - 35) // 2
    else:
        raise ValueError(f"unsupported transaction type 0x{raw[0]:02x}: use legacy or EIP-1559")
    sender = Account.recover_transaction(raw)
    return RawTxInfo(sender, nonce, to_checksum(to_raw) if to_raw else None, chain_id)


def encode_inbox_call(chain_id: int, to: str | bytes, data: bytes = b"", value: int = 0, gas: int = 1_000_000) -> bytes:
    """The plaintext of an inbox call (L1 inbox only; its sender is the L1 ``msg.sender``)."""
    return bytes([TYPE_INBOX]) + bytes(rlp.encode([chain_id, address_bytes(to), value, data, gas]))


def create_address(sender: str | bytes, nonce: int) -> str:
    """The address ``CREATE`` gives the contract a ``sender`` deploys with ``nonce``."""
    return to_checksum(keccak256(rlp.encode([address_bytes(sender), nonce]))[12:])


# --------------------------------------------------------------------------- signed views


def view_typed_data(
    domain: ViewDomain, sender: str, to: str, data: bytes, value: int, gas: int, epoch: int, nonce: int, expiry: int
) -> dict[str, Any]:
    """The EIP-712 typed data a view request is signed over (what a wallet is shown).

    One definition, the enclave's (``enclave.views.typed_data``); ``view_digest`` below hashes it
    with eth_account, independently of the enclave's own digest code, and the tests compare both.
    """
    return dict(_enclave_typed_data(domain, sender, to, data, value, gas, epoch, nonce, expiry))


def view_digest(
    domain: ViewDomain, sender: str, to: str, data: bytes, value: int, gas: int, epoch: int, nonce: int, expiry: int
) -> bytes:
    """The EIP-712 digest of a view request, as eth_account (any wallet) computes it."""
    m = encode_typed_data(full_message=view_typed_data(domain, sender, to, data, value, gas, epoch, nonce, expiry))
    return keccak256(b"\x19" + m.version + m.header + m.body)


def sign_digest(secret: bytes, digest: bytes) -> bytes:
    """65-byte r||s||v (v = 27/28) over a 32-byte digest."""
    sig = coincurve.PrivateKey(secret).sign_recoverable(digest, hasher=None)
    return sig[:64] + bytes([sig[64] + 27])


@dataclass(frozen=True)
class ViewingSession:
    """A user's authorisation of a session key to sign their view requests (docs/GATEWAY.md)."""

    account: str  # the user's address (who signed ``signature``)
    key: str  # the session key's address
    expiry: int  # unix seconds
    signature: bytes  # 65-byte EIP-712 signature by ``account`` over ViewingSession(account, key, expiry)


def session_typed_data(domain: ViewDomain, account: str, session_key: str, expiry: int) -> dict[str, Any]:
    """The EIP-712 typed data of a viewing-session statement (the enclave's one definition)."""
    return dict(_enclave_session_typed_data(domain, account, session_key, expiry))


def session_digest(domain: ViewDomain, account: str, session_key: str, expiry: int) -> bytes:
    """The EIP-712 digest of a viewing-session statement, as eth_account (any wallet) computes it."""
    m = encode_typed_data(full_message=session_typed_data(domain, account, session_key, expiry))
    return keccak256(b"\x19" + m.version + m.header + m.body)


def build_view_request(
    secret: bytes,
    sender: str,
    domain: ViewDomain,
    epoch: int,
    to: str | None,
    data: bytes,
    value: int = 0,
    gas: int = MAX_VIEW_GAS,
    *,
    ttl: int = VIEW_TTL,
    now: float | None = None,
    session: ViewingSession | None = None,
) -> bytes:
    """The CBOR plaintext of a signed view / estimate request (``to`` None: a creation): a fresh
    random nonce and an expiry ``ttl`` seconds ahead (the enclave answers it once, before then).

    With ``session``, ``secret`` is the session key's and the request carries the user's
    authorisation of it; without, ``secret`` is ``sender``'s own key."""
    to_addr = to_checksum(to) if to else ZERO_ADDRESS
    gas = max(MIN_GAS, min(gas, MAX_VIEW_GAS))
    nonce = int.from_bytes(os.urandom(16), "big")
    expiry = int(time.time() if now is None else now) + min(ttl, MAX_VIEW_TTL)
    digest = view_digest(domain, to_checksum(sender), to_addr, data, value, gas, epoch, nonce, expiry)
    sig = sign_digest(secret, digest)
    req: dict[str, Any] = {
        "from": address_bytes(sender),
        "to": address_bytes(to_addr),
        "data": bytes(data),
        "value": value,
        "gas": gas,
        "epoch": epoch,
        "nonce": nonce,
        "expiry": expiry,
        "sig": sig,
    }
    if session is not None:
        req["session"] = {"key": address_bytes(session.key), "expiry": session.expiry, "sig": bytes(session.signature)}
    return bytes(cbor2.dumps(req))


@dataclass(frozen=True)
class ViewResult:
    """The decrypted answer to a view call or gas estimate."""

    ok: bool
    return_data: bytes = field(repr=False)
    gas_used: int
    error: str

    @property
    def revert_reason(self) -> str:
        return revert_reason(self.return_data, self.error)


def decode_view_result(plaintext: bytes) -> ViewResult:
    """``{ok, return_data, gas_used, error}`` (docs/ENCLAVE.md, view_call)."""
    m = _cbor_map(plaintext, "view result")
    return ViewResult(
        ok=bool(m.get("ok", False)),
        return_data=_as_bytes(m.get("return_data", b"")),
        gas_used=int(m.get("gas_used", 0) or 0),
        error=str(m.get("error", "") or ""),
    )


# --------------------------------------------------------------------------- receipts


@dataclass(frozen=True)
class Log:
    address: str
    topics: list[bytes]
    data: bytes


@dataclass(frozen=True)
class DecryptedReceipt:
    """A transaction receipt as the sender reads it after decryption."""

    status: int  # 1 success, 0 reverted / out of gas / refused
    gas_used: int
    return_data: bytes = field(repr=False)
    logs: list[Log] = field(repr=False)
    contract_address: str | None
    error: str  # empty on success; the reason otherwise
    refused: bool  # the enclave refused the transaction (bad nonce, signature, ...): not executed
    tx_hash: bytes | None = None  # keccak256 of the raw signed transaction (Ethereum tx hash)
    sender: str | None = None
    to: str | None = None
    nonce: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    gas_price: int = 0  # effective wei per gas paid (docs/FEES.md); 0 without fees

    @property
    def revert_reason(self) -> str:
        return revert_reason(self.return_data, self.error) if self.status == 0 else ""


def decode_receipt(plaintext: bytes) -> DecryptedReceipt:
    """Parse the CBOR receipt the enclave sealed for the sender (docs/ENCLAVE_EVM.md)."""
    m = _cbor_map(plaintext, "receipt")
    status_raw = m.get("status", m.get("ok"))
    if isinstance(status_raw, bool):
        status = int(status_raw)
    elif isinstance(status_raw, int):
        status = 1 if status_raw == 1 else 0
    else:
        status = 0
    error = str(m.get("error") or m.get("reason") or "")
    # the enclave refused the item (not executed, nonce not consumed): "refused: <reason>"
    refused = bool(m.get("refused", False)) or (status == 0 and error.startswith("refused:"))
    logs = [_decode_log(entry) for entry in (m.get("logs") or [])]
    ca = m.get("contract") or m.get("contract_address") or m.get("contractAddress")
    known = {
        "status", "ok", "gas_used", "return_data", "output", "logs", "contract", "contract_address",
        "contractAddress", "error", "reason", "refused", "kind", "result", "tx_hash",
        "hash", "sender", "from", "to", "nonce", "gas_price",
    }
    return DecryptedReceipt(
        status=status,
        gas_used=int(m.get("gas_used", 0) or 0),
        return_data=_as_bytes(m.get("return_data", m.get("output", b""))),
        logs=logs,
        contract_address=to_checksum(_addr(ca)) if ca else None,
        error=error.removeprefix("refused:").strip() if refused else error,
        refused=refused,
        tx_hash=_as_bytes(m["tx_hash"]) if isinstance(m.get("tx_hash"), bytes) else (
            _as_bytes(m["hash"]) if isinstance(m.get("hash"), bytes) else None
        ),
        sender=to_checksum(_addr(m.get("sender") or m.get("from"))) if (m.get("sender") or m.get("from")) else None,
        to=to_checksum(_addr(m["to"])) if m.get("to") else None,
        nonce=int(m["nonce"]) if isinstance(m.get("nonce"), int) else None,
        extra={k: v for k, v in m.items() if k not in known},
        gas_price=int(m["gas_price"]) if isinstance(m.get("gas_price"), int) else 0,
    )


def _decode_log(entry: Any) -> Log:
    if isinstance(entry, dict):
        address, topics, data = entry.get("address"), entry.get("topics", []), entry.get("data", b"")
    elif isinstance(entry, list | tuple) and len(entry) == 3:
        address, topics, data = entry
    else:
        raise ValueError("a receipt log must be [address, topics, data] or a map")
    return Log(to_checksum(_addr(address)), [_as_bytes(t) for t in topics], _as_bytes(data))


def revert_reason(return_data: bytes, error: str = "") -> str:
    """Human-readable revert reason: Error(string), Panic(uint256), custom error or the enclave's text."""
    if return_data[:4] == _ERROR_SELECTOR:
        try:
            (msg,) = abi_decode(["string"], return_data[4:])
            return str(msg)
        except Exception:  # malformed Error(string): fall through to hex
            pass
    if return_data[:4] == _PANIC_SELECTOR and len(return_data) >= 36:
        code = int.from_bytes(return_data[4:36], "big")
        return f"panic 0x{code:02x} ({_PANIC_CODES.get(code, 'unknown panic code')})"
    if return_data:
        return f"custom error 0x{return_data.hex()}" if not error else f"{error} (0x{return_data.hex()})"
    marker = "execution reverted: "
    if marker in error:  # e.g. "the call fails even with 30000000 gas: execution reverted: low"
        return error[error.rindex(marker) + len(marker):]
    return "" if error.endswith("execution reverted") else error


def logs_bloom(logs: list[Log]) -> bytes:
    """The 2048-bit Ethereum logs bloom of ``logs``."""
    bloom = 0
    for log in logs:
        for item in [address_bytes(log.address), *log.topics]:
            h = keccak256(item)
            for i in (0, 2, 4):
                bloom |= 1 << (int.from_bytes(h[i : i + 2], "big") & 2047)
    return bloom.to_bytes(256, "big")


# --------------------------------------------------------------------------- helpers


def _cbor_map(plaintext: bytes, what: str) -> dict[str, Any]:
    try:
        m = cbor2.loads(plaintext)
    except Exception as exc:  # cbor2 raises several types
        raise ValueError(f"{what} is not valid CBOR ({type(exc).__name__})") from None
    if not isinstance(m, dict):
        raise ValueError(f"{what} must be a CBOR map")
    return m


def _as_bytes(v: Any) -> bytes:
    if isinstance(v, bytes | bytearray):
        return bytes(v)
    if isinstance(v, str) and v.startswith(("0x", "0X")):
        return bytes.fromhex(v[2:])
    if v is None:
        return b""
    raise ValueError(f"expected bytes, got {type(v).__name__}")


def _addr(v: Any) -> bytes:
    return address_bytes(v if isinstance(v, str) else _as_bytes(v))


# --------------------------------------------------------------------------- log queries (enclave/logs.py)


def build_log_query(
    secret: bytes,
    sender: str,
    domain: ViewDomain,
    epoch: int,
    lo: int,
    hi: int,
    addresses: list[str] | None = None,
    topics: list[Any] | None = None,
    *,
    ttl: int = VIEW_TTL,
    session: ViewingSession | None = None,
) -> bytes:
    """The plaintext of a signed log query: a ``ViewCall`` to ``LOG_QUERY_ADDRESS`` whose data is
    the CBOR filter (heights ``lo..hi``; ``addresses`` any of; ``topics`` per position None, a
    32-byte hex topic or a list of them). Signed by ``sender`` (or its viewing session's key)."""
    from ..enclave.logs import LOG_QUERY_ADDRESS, encode_log_filter

    def t(v: Any) -> bytes:
        b = bytes.fromhex(v[2:]) if isinstance(v, str) and v[:2] in ("0x", "0X") else v
        if not isinstance(b, bytes) or len(b) != 32:
            raise ValueError(f"a topic must be 32 bytes (0x + 64 hex digits), got {v!r}")
        return b

    tl: list[Any] = []
    for pos in topics or []:
        tl.append(None if pos is None else [t(pos)] if isinstance(pos, str | bytes) else [t(x) for x in pos])
    data = encode_log_filter(lo, hi, [address_bytes(a) for a in addresses or []], tl)
    return build_view_request(secret, sender, domain, epoch, to_checksum(LOG_QUERY_ADDRESS), data, 0, MIN_GAS,
                              ttl=ttl, session=session)


@dataclass(frozen=True)
class LogResult:
    """The decrypted answer of ``enclavenet_getLogs``: the visible matching logs (Ethereum JSON
    form), heights the node gave no log index for (``missing``) and heights whose index is sealed
    under an erased epoch key (``unavailable``)."""

    ok: bool
    logs: list[dict[str, Any]]
    missing: list[int]
    unavailable: list[int]
    error: str


def decode_log_result(plaintext: bytes) -> LogResult:
    m = _cbor_map(plaintext, "log query result")
    logs = []
    for v in m.get("logs", []) or []:
        height, hh, tx_index, log_index, tx_log_index, addr, topics, data, tx_hash, rid = v
        logs.append({
            "address": to_checksum(bytes(addr)),
            "topics": ["0x" + bytes(x).hex() for x in topics],
            "data": "0x" + bytes(data).hex(),
            "blockNumber": hex(int(height)),
            "blockHash": "0x" + bytes(hh).hex(),
            "transactionHash": "0x" + bytes(tx_hash).hex(),
            "transactionIndex": hex(int(tx_index)),
            "logIndex": hex(int(log_index)),
            "removed": False,
            # EnclaveNet extras: the log's index in its own receipt, and the receipt id (envelope hash)
            "transactionLogIndex": hex(int(tx_log_index)),
            "receiptId": "0x" + bytes(rid).hex(),
            "ethTransactionHash": "0x" + bytes(tx_hash).hex(),
        })
    return LogResult(bool(m.get("ok", False)), logs, [int(x) for x in m.get("missing", []) or []],
                     [int(x) for x in m.get("unavailable", []) or []], str(m.get("error", "") or ""))


def log_key(lg: dict[str, Any]) -> tuple[int, str, int]:
    """What identifies a log across sources: (block, transaction hash, index in its receipt)."""
    idx = lg.get("transactionLogIndex", lg.get("logIndex", "0x0"))
    return int(str(lg["blockNumber"]), 16), str(lg["transactionHash"]).lower(), int(str(idx), 16)


def merge_logs(*sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The union of log lists, de-duplicated by ``log_key`` (the first source to carry a log wins:
    pass the enclave's, with block-wide log indexes, first), in (block, tx index, log index) order."""
    seen: dict[tuple[int, str, int], dict[str, Any]] = {}
    for src in sources:
        for lg in src:
            seen.setdefault(log_key(lg), lg)
    return sorted(seen.values(), key=lambda lg: (int(str(lg["blockNumber"]), 16),
                                                 int(str(lg.get("transactionIndex") or "0x0"), 16),
                                                 int(str(lg["logIndex"]), 16)))
