"""Transactions the confidential EVM executes: signed Ethereum transactions and inbox calls.

Two kinds of item reach the executor (after the program has opened their envelope):

* **Signed transactions** -- ordinary Ethereum transactions for the EnclaveNet chain id, as any
  wallet produces them (``eth_account``'s ``sign_transaction(...).raw_transaction``):

  - legacy EIP-155: ``rlp([nonce, gas_price, gas, to, value, data, v, r, s])`` with
    ``v = 35 + 2 * chain_id + y_parity`` (pre-EIP-155 ``v`` = 27/28 is refused: it has no chain id);
  - EIP-1559: ``0x02 || rlp([chain_id, nonce, max_priority_fee, max_fee, gas, to, value, data,
    access_list, y_parity, r, s])`` (the access list must be empty).

  Gas prices and fees are accepted whatever their value and ignored: gas costs nothing inside
  EnclaveNet (see docs/ENCLAVE_EVM.md, "Gas policy"). The sender is recovered with coincurve
  (low-s enforced, EIP-2); the transaction hash is ``keccak256(raw)`` as on Ethereum.

* **Inbox calls** -- a call whose sender is the L1 account that put it in the Rollup inbox
  (``L1Message.sender``), so it carries no signature and no nonce (the L1 message chain already
  orders it and consumes it exactly once)::

      0x7e || rlp([chain_id, to, value, data, gas])

  ``to`` is a 20-byte address (an inbox call cannot create a contract); ``value`` is paid from
  the sender's EnclaveNet balance (a deposit in the same L1 message is credited first). An inbox
  call neither checks nor advances the sender's nonce. It is accepted only from the L1 inbox:
  ``decode_item(raw, chain_id, l1_sender=None)`` refuses it. Its envelope must carry a routing
  hint ``(L1 sender, 0)`` (bound by the envelope's AAD); the program refuses one whose hint names
  another account than the L1 sender, so a copy of a public envelope submitted from another
  account runs as nobody (issue 14, H1; the check is in ``program._execute_item``).

Every problem is a ``TxError`` (an ``EnclaveRefusal``) whose message says what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import coincurve
import rlp
import sha3
from rlp.exceptions import RLPException

from ..crypto.hashing import address_bytes, to_checksum
from .errors import EnclaveRefusal

try:  # coincurve's own cffi binding of libsecp256k1: skips a PublicKey object per recovery
    from coincurve._libsecp256k1 import ffi as _ffi
    from coincurve._libsecp256k1 import lib as _lib
    from coincurve.context import GLOBAL_CONTEXT as _GLOBAL_CONTEXT

    _CTX: object | None = _GLOBAL_CONTEXT.ctx
    _UNCOMPRESSED = _lib.SECP256K1_EC_UNCOMPRESSED
except (ImportError, AttributeError):  # pragma: no cover - another coincurve build
    _CTX = None

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2

TYPE_LEGACY = 0
TYPE_EIP1559 = 2
TYPE_INBOX = 0x7E

MAX_TX_BYTES = 128 * 1024  # one raw transaction, envelope plaintext
MAX_TX_DATA = 120 * 1024  # calldata / init code (EIP-3860 caps init code at 48 KiB anyway)
MAX_TX_GAS = 30_000_000  # per-transaction gas limit (see the gas policy)
_U256 = 1 << 256


class TxError(EnclaveRefusal):
    """A transaction is malformed, for another chain, badly signed, or out of nonce order."""


def _keccak(data: bytes) -> bytes:
    return sha3.keccak_256(data).digest()


@dataclass(frozen=True, slots=True)
class SignedTx:
    """A decoded, signature-checked Ethereum transaction."""

    tx_type: int  # 0 legacy (EIP-155) or 2 (EIP-1559)
    chain_id: int
    nonce: int
    gas: int
    to: bytes | None  # 20 bytes, or None to create a contract
    value: int
    data: bytes
    sender: bytes  # 20 bytes, recovered from the signature
    hash: bytes  # keccak256 of the raw transaction
    gas_price: int = 0  # legacy gas price or EIP-1559 max fee per gas (fees.py: ignored when fees are off)
    priority_fee: int | None = None  # EIP-1559 max priority fee per gas (None: legacy, all of gas_price)

    @property
    def sender_checksum(self) -> str:
        return to_checksum(self.sender)

    def __repr__(self) -> str:  # never print calldata (confidential)
        to = to_checksum(self.to) if self.to else "create"
        return (
            f"SignedTx(type={self.tx_type}, sender={to_checksum(self.sender)}, nonce={self.nonce}, "
            f"to={to}, hash=0x{self.hash.hex()})"
        )


@dataclass(frozen=True, slots=True)
class InboxCall:
    """A call whose sender is the L1 account that submitted it to the Rollup inbox."""

    sender: bytes  # 20 bytes: L1Message.sender
    to: bytes  # 20 bytes
    value: int
    data: bytes
    gas: int
    chain_id: int
    hash: bytes = field(default=b"")  # keccak256(raw payload), for receipts

    def __repr__(self) -> str:
        return f"InboxCall(sender={to_checksum(self.sender)}, to={to_checksum(self.to)}, hash=0x{self.hash.hex()})"


# --- RLP helpers ------------------------------------------------------------------------------


def _int(b: object, what: str) -> int:
    if not isinstance(b, bytes):
        raise TxError(f"transaction field {what} must be an RLP string, got a list")
    if b[:1] == b"\x00":
        raise TxError(f"transaction field {what} is a non-canonical integer (leading zero byte)")
    if len(b) > 32:
        raise TxError(f"transaction field {what} does not fit in 256 bits")
    return int.from_bytes(b, "big")


def _to(b: object, allow_create: bool) -> bytes | None:
    if not isinstance(b, bytes):
        raise TxError("transaction field 'to' must be an RLP string, got a list")
    if len(b) == 0:
        if not allow_create:
            raise TxError("an inbox call needs a 20-byte 'to' address (it cannot create a contract)")
        return None
    if len(b) != 20:
        raise TxError(f"transaction field 'to' must be empty or 20 bytes, got {len(b)}")
    return b


def _data(b: object) -> bytes:
    if not isinstance(b, bytes):
        raise TxError("transaction field 'data' must be an RLP string, got a list")
    if len(b) > MAX_TX_DATA:
        raise TxError(f"transaction data of {len(b)} bytes exceeds the limit of {MAX_TX_DATA}")
    return b


def _rlp_list(payload: bytes, what: str) -> list[object]:
    try:
        items = rlp.decode(payload, strict=True)
    except RLPException as exc:
        raise TxError(f"malformed RLP in {what}: {type(exc).__name__}") from None
    if not isinstance(items, list):
        raise TxError(f"{what} must be an RLP list")
    return items


def _fast_list(p: bytes) -> tuple[list[object], list[int]] | None:
    """Strict RLP decoding of a flat list of strings (an empty list allowed as an item).

    Returns (items, start offset of each item + the end), exactly what ``rlp.decode(p,
    strict=True)`` returns for such input; returns None for anything else (malformed,
    non-canonical, nested, truncated, trailing bytes), and the caller then goes the slow way
    through ``rlp`` (which raises the usual error, or decodes a nested list). A transaction
    is a flat list, so the slow way is only taken by bad or unusual input.
    """
    n = len(p)
    if n == 0:
        return None
    b = p[0]
    if b < 0xC0:
        return None
    if b <= 0xF7:
        pos = 1
        ln = b - 0xC0
    else:
        ll = b - 0xF7
        if n < 1 + ll or p[1] == 0:
            return None
        ln = int.from_bytes(p[1 : 1 + ll], "big")
        if ln < 56:
            return None
        pos = 1 + ll
    if pos + ln != n:
        return None
    items: list[object] = []
    starts: list[int] = []
    add = items.append
    mark = starts.append
    while pos < n:
        mark(pos)
        b = p[pos]
        if b < 0x80:
            add(p[pos : pos + 1])
            pos += 1
        elif b <= 0xB7:
            end = pos + 1 + b - 0x80
            if end > n or (b == 0x81 and p[pos + 1] < 0x80):
                return None
            add(p[pos + 1 : end])
            pos = end
        elif b <= 0xBF:
            ll = b - 0xB7
            s0 = pos + 1 + ll
            if s0 > n or p[pos + 1] == 0:
                return None
            ln = int.from_bytes(p[pos + 1 : s0], "big")
            end = s0 + ln
            if ln < 56 or end > n:
                return None
            add(p[s0:end])
            pos = end
        elif b == 0xC0:
            add([])
            pos += 1
        else:
            return None
    mark(pos)
    return items, starts


def _item_spans(payload: bytes) -> tuple[int, list[int]]:
    """Offset where the outer list's body starts and the start offset of each item (+ end)."""
    p0 = payload[0]
    if p0 <= 0xF7:
        body = 1
    else:
        body = 1 + (p0 - 0xF7)
    pos = body
    starts = [pos]
    end = len(payload)
    while pos < end:
        b = payload[pos]
        if b < 0x80:
            pos += 1
        elif b <= 0xB7:
            pos += 1 + b - 0x80
        elif b <= 0xBF:
            ll = b - 0xB7
            pos += 1 + ll + int.from_bytes(payload[pos + 1 : pos + 1 + ll], "big")
        elif b <= 0xF7:
            pos += 1 + b - 0xC0
        else:
            ll = b - 0xF7
            pos += 1 + ll + int.from_bytes(payload[pos + 1 : pos + 1 + ll], "big")
        starts.append(pos)
    return body, starts


def _list_header(n: int) -> bytes:
    if n <= 55:
        return bytes([0xC0 + n])
    ln = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0xF7 + len(ln)]) + ln


def _rlp_int(x: int) -> bytes:
    if x == 0:
        return b"\x80"
    b = x.to_bytes((x.bit_length() + 7) // 8, "big")
    if len(b) == 1 and b[0] < 0x80:
        return b
    return bytes([0x80 + len(b)]) + b


def _recover(digest: bytes, y_parity: int, r: int, s: int) -> bytes:
    if not (0 < r < SECP256K1_N):
        raise TxError("bad signature: r out of range")
    if not (0 < s <= _HALF_N):
        raise TxError("bad signature: s is zero or not in the lower half of the curve order (EIP-2)")
    sig64 = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if _CTX is not None:
        rsig = _ffi.new("secp256k1_ecdsa_recoverable_signature *")
        if not _lib.secp256k1_ecdsa_recoverable_signature_parse_compact(_CTX, rsig, sig64, y_parity):
            raise TxError("bad signature: it does not recover to a public key")
        pub = _ffi.new("secp256k1_pubkey *")
        if not _lib.secp256k1_ecdsa_recover(_CTX, pub, rsig, digest):
            raise TxError("bad signature: it does not recover to a public key")
        out = _ffi.new("unsigned char[65]")
        out_len = _ffi.new("size_t *", 65)
        _lib.secp256k1_ec_pubkey_serialize(_CTX, out, out_len, pub, _UNCOMPRESSED)
        return sha3.keccak_256(_ffi.buffer(out, 65)[1:]).digest()[12:]
    try:
        pk = coincurve.PublicKey.from_signature_and_message(sig64 + bytes([y_parity]), digest, hasher=None)
    except Exception:  # coincurve raises plain Exception when no point recovers
        raise TxError("bad signature: it does not recover to a public key") from None
    return _keccak(pk.format(compressed=False)[1:])[12:]


# --- decoding ---------------------------------------------------------------------------------


def decode_tx(raw: bytes, chain_id: int) -> SignedTx:
    """Decode and check a raw signed transaction (legacy EIP-155 or EIP-1559) for ``chain_id``."""
    if not isinstance(raw, bytes | bytearray):
        raise TxError("a raw transaction must be bytes")
    raw = bytes(raw)
    if not raw:
        raise TxError("empty transaction")
    if len(raw) > MAX_TX_BYTES:
        raise TxError(f"transaction of {len(raw)} bytes exceeds the limit of {MAX_TX_BYTES}")
    first = raw[0]
    if first == TYPE_EIP1559:
        return _decode_1559(raw, chain_id)
    if first >= 0xC0:
        return _decode_legacy(raw, chain_id)
    if first == TYPE_INBOX:
        raise TxError("an inbox call (type 0x7e) is accepted only from the L1 inbox, not signed")
    raise TxError(f"unsupported transaction type 0x{first:02x}: use legacy EIP-155 or EIP-1559 (0x02)")


def _decode_1559(raw: bytes, chain_id: int) -> SignedTx:
    payload = raw[1:]
    fast = _fast_list(payload)
    if fast is None:
        items = _rlp_list(payload, "EIP-1559 transaction")
        starts = None
    else:
        items, starts = fast
    if len(items) != 12:
        raise TxError(f"an EIP-1559 transaction has 12 fields, got {len(items)}")
    tx_chain = _int(items[0], "chain_id")
    if tx_chain != chain_id:
        raise TxError(f"wrong chain id {tx_chain}: EnclaveNet's chain id is {chain_id}")
    nonce = _int(items[1], "nonce")
    priority = _int(items[2], "max_priority_fee_per_gas")
    max_fee = _int(items[3], "max_fee_per_gas")
    gas = _int(items[4], "gas")
    to = _to(items[5], True)
    value = _int(items[6], "value")
    data = _data(items[7])
    if not isinstance(items[8], list):
        raise TxError("transaction field access_list must be an RLP list")
    if items[8]:
        raise TxError("access lists are not supported inside EnclaveNet: send an empty access list")
    y = _int(items[9], "y_parity")
    if y > 1:
        raise TxError(f"bad signature: y_parity must be 0 or 1, got {y}")
    r = _int(items[10], "r")
    s = _int(items[11], "s")
    if starts is None:
        _, starts = _item_spans(payload)
    unsigned = payload[starts[0] : starts[9]]
    digest = sha3.keccak_256(b"\x02" + _list_header(len(unsigned)) + unsigned).digest()
    sender = _recover(digest, y, r, s)
    return SignedTx(
        TYPE_EIP1559, chain_id, nonce, gas, to, value, data, sender, sha3.keccak_256(raw).digest(), max_fee, priority
    )


def _decode_legacy(raw: bytes, chain_id: int) -> SignedTx:
    fast = _fast_list(raw)
    if fast is None:
        items = _rlp_list(raw, "legacy transaction")
        starts = None
    else:
        items, starts = fast
    if len(items) != 9:
        raise TxError(f"a legacy transaction has 9 fields, got {len(items)}")
    nonce = _int(items[0], "nonce")
    gas_price = _int(items[1], "gas_price")
    gas = _int(items[2], "gas")
    to = _to(items[3], True)
    value = _int(items[4], "value")
    data = _data(items[5])
    v = _int(items[6], "v")
    r = _int(items[7], "r")
    s = _int(items[8], "s")
    if v in (27, 28):
        raise TxError(
            f"pre-EIP-155 transaction (v={v}) carries no chain id: sign it for chain id {chain_id}"
        )
    if v < 35:
        raise TxError(f"bad signature: invalid v {v}")
    tx_chain = (v - 35) // 2
    if tx_chain != chain_id:
        raise TxError(f"wrong chain id {tx_chain}: EnclaveNet's chain id is {chain_id}")
    y = (v - 35) % 2
    if starts is None:
        _, starts = _item_spans(raw)
    unsigned = raw[starts[0] : starts[6]] + _rlp_int(chain_id) + b"\x80\x80"
    digest = sha3.keccak_256(_list_header(len(unsigned)) + unsigned).digest()
    sender = _recover(digest, y, r, s)
    return SignedTx(TYPE_LEGACY, chain_id, nonce, gas, to, value, data, sender, sha3.keccak_256(raw).digest(), gas_price)


def decode_inbox_call(raw: bytes, chain_id: int, l1_sender: str | bytes) -> InboxCall:
    """Decode ``0x7e || rlp([chain_id, to, value, data, gas])``; the sender is the L1 sender."""
    if len(raw) > MAX_TX_BYTES:
        raise TxError(f"inbox call of {len(raw)} bytes exceeds the limit of {MAX_TX_BYTES}")
    if raw[:1] != bytes([TYPE_INBOX]):
        raise TxError("an inbox call starts with the type byte 0x7e")
    items = _rlp_list(raw[1:], "inbox call")
    if len(items) != 5:
        raise TxError(f"an inbox call has 5 fields [chain_id, to, value, data, gas], got {len(items)}")
    tx_chain = _int(items[0], "chain_id")
    if tx_chain != chain_id:
        raise TxError(f"wrong chain id {tx_chain}: EnclaveNet's chain id is {chain_id}")
    to = _to(items[1], False)
    assert to is not None
    try:
        sender = address_bytes(l1_sender)
    except ValueError as exc:
        raise TxError(f"bad L1 sender: {exc}") from None
    return InboxCall(
        sender, to, _int(items[2], "value"), _data(items[3]), _int(items[4], "gas"), chain_id, _keccak(raw)
    )


def decode_item(raw: bytes, chain_id: int, l1_sender: str | bytes | None = None) -> SignedTx | InboxCall:
    """Decode what an envelope holds: a signed transaction, or (from the L1 inbox only) an inbox call.

    ``l1_sender`` is the ``L1Message.sender`` when the item arrived through the Rollup inbox, else
    None (the fast path): an inbox call without an L1 sender is refused.
    """
    if raw[:1] == bytes([TYPE_INBOX]):
        if l1_sender is None:
            raise TxError("an inbox call (type 0x7e) is accepted only from the L1 inbox")
        return decode_inbox_call(raw, chain_id, l1_sender)
    return decode_tx(raw, chain_id)


# --- encoding (clients, tests, benchmarks) ----------------------------------------------------


def encode_inbox_call(chain_id: int, to: str | bytes, data: bytes = b"", value: int = 0, gas: int = 1_000_000) -> bytes:
    """The payload of an inbox call (what a user puts, sealed, in ``Rollup.submit``)."""
    return bytes([TYPE_INBOX]) + rlp.encode([chain_id, address_bytes(to), value, data, gas])


def sign_tx(
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
    """Sign a transaction with a raw secp256k1 key via coincurve (~20x faster than eth-account).

    Produces the same bytes as ``eth_account.Account.sign_transaction`` for the same fields.
    """
    to_b = b"" if to is None else address_bytes(to)
    key = coincurve.PrivateKey(secret)
    if legacy:
        fields: list[object] = [nonce, max_fee, gas, to_b, value, data]
        digest = _keccak(rlp.encode([*fields, chain_id, 0, 0]))
        sig = key.sign_recoverable(digest, hasher=None)
        v = 35 + 2 * chain_id + sig[64]
        return rlp.encode([*fields, v, int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big")])
    fields = [chain_id, nonce, priority_fee, max_fee, gas, to_b, value, data, []]
    digest = _keccak(b"\x02" + rlp.encode(fields))
    sig = key.sign_recoverable(digest, hasher=None)
    return b"\x02" + rlp.encode(
        [*fields, sig[64], int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big")]
    )
