"""CBOR requests and responses of the ecalls, with strict field checks.

Every ecall payload is a CBOR map with text keys. ``Request`` reads one field at a time and
refuses, with a message naming the field, anything of the wrong type, size or range. Nothing
here ever echoes a field's value back (it may be a secret).
"""

from __future__ import annotations

from typing import Any

import cbor2

from ..crypto.hashing import to_checksum
from .errors import EnclaveRefusal

MAX_PAYLOAD_BYTES = 64 * 1024 * 1024  # one ecall; a batch of 10k 1 KiB envelopes is ~10 MiB
U256_MAX = (1 << 256) - 1
U64_MAX = (1 << 64) - 1


def encode(obj: Any) -> bytes:
    """Canonical CBOR (sorted map keys), so equal responses are equal bytes on every member."""
    return cbor2.dumps(obj, canonical=True)


def decode_map(payload: bytes, what: str) -> dict[str, Any]:
    """Decode an ecall payload: a CBOR map with text keys (an empty payload is an empty map)."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise EnclaveRefusal(f"{what}: the payload must be bytes")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise EnclaveRefusal(f"{what}: payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if len(payload) == 0:
        return {}
    try:
        obj = cbor2.loads(bytes(payload))
    except Exception as exc:  # cbor2 raises several types (decode errors, recursion, overflow)
        raise EnclaveRefusal(f"{what}: the payload is not valid CBOR ({type(exc).__name__})") from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise EnclaveRefusal(f"{what}: the payload must be a CBOR map with text keys")
    return obj


class Request:
    """Typed access to the fields of one decoded request map."""

    __slots__ = ("_m", "_what")

    def __init__(self, m: dict[str, Any], what: str) -> None:
        self._m = m
        self._what = what

    @classmethod
    def parse(cls, payload: bytes, what: str) -> Request:
        return cls(decode_map(payload, what), what)

    def _bad(self, name: str, why: str) -> EnclaveRefusal:
        return EnclaveRefusal(f"{self._what}: field '{name}' {why}")

    def has(self, name: str) -> bool:
        return self._m.get(name) is not None

    def raw(self, name: str) -> Any:
        if name not in self._m:
            raise self._bad(name, "is missing")
        return self._m[name]

    def integer(self, name: str, lo: int = 0, hi: int = U256_MAX, default: int | None = None) -> int:
        if name not in self._m and default is not None:
            return default
        v = self.raw(name)
        if not isinstance(v, int) or isinstance(v, bool):
            raise self._bad(name, "must be an integer")
        if not lo <= v <= hi:
            raise self._bad(name, f"must be in [{lo}, {hi}]")
        return v

    def blob(self, name: str, length: int | None = None, max_len: int = MAX_PAYLOAD_BYTES) -> bytes:
        return as_bytes(self.raw(name), name, self._what, length, max_len)

    def opt_blob(self, name: str, length: int | None = None) -> bytes | None:
        return None if self._m.get(name) is None else self.blob(name, length)

    def address(self, name: str) -> str:
        return as_address(self.raw(name), name, self._what)

    def items(self, name: str, max_items: int, default: list[Any] | None = None) -> list[Any]:
        if name not in self._m and default is not None:
            return default
        v = self.raw(name)
        if not isinstance(v, list):
            raise self._bad(name, "must be an array")
        if len(v) > max_items:
            raise self._bad(name, f"has {len(v)} items, more than {max_items}")
        return v

    def map(self, name: str) -> Request:
        v = self.raw(name)
        if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
            raise self._bad(name, "must be a map with text keys")
        return Request(v, f"{self._what}.{name}")


def as_bytes(v: Any, name: str, what: str, length: int | None = None, max_len: int = MAX_PAYLOAD_BYTES) -> bytes:
    if not isinstance(v, bytes):
        raise EnclaveRefusal(f"{what}: field '{name}' must be a byte string")
    if length is not None and len(v) != length:
        raise EnclaveRefusal(f"{what}: field '{name}' must be {length} bytes, got {len(v)}")
    if len(v) > max_len:
        raise EnclaveRefusal(f"{what}: field '{name}' has {len(v)} bytes, more than {max_len}")
    return v


def as_address(v: Any, name: str, what: str) -> str:
    """An address given as 20 raw bytes or 0x-hex text, returned checksummed."""
    raw: bytes | None = None
    if isinstance(v, bytes) and len(v) == 20:
        raw = v
    elif isinstance(v, str) and len(v) == 42 and v[:2] in ("0x", "0X"):
        try:
            raw = bytes.fromhex(v[2:])
        except ValueError:
            raw = None
    if raw is None:
        raise EnclaveRefusal(f"{what}: field '{name}' must be an address (20 bytes or 0x-hex)")
    return to_checksum(raw)
