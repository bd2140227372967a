"""Keccak-256 (the Ethereum hash) and fixed-width ABI words."""

from __future__ import annotations

import sha3  # safe-pysha3: ~1.4M keccak/s here, 3x pycryptodome

ZERO32 = b"\x00" * 32


def keccak256(*parts: bytes) -> bytes:
    """keccak256 of the concatenation of ``parts``."""
    h = sha3.keccak_256()
    for p in parts:
        h.update(p)
    return h.digest()


def u256(x: int) -> bytes:
    """One ABI word holding an unsigned integer."""
    if x < 0 or x >= 1 << 256:
        raise ValueError("value does not fit in uint256")
    return x.to_bytes(32, "big")


def b32(x: bytes) -> bytes:
    """One ABI word holding a bytes32."""
    if len(x) != 32:
        raise ValueError(f"expected 32 bytes, got {len(x)}")
    return x


def addr_word(address: str | bytes) -> bytes:
    """One ABI word holding an address (left-padded)."""
    return b"\x00" * 12 + address_bytes(address)


def address_bytes(address: str | bytes) -> bytes:
    """20 raw bytes of an address given as bytes or 0x-hex."""
    if isinstance(address, str):
        raw = bytes.fromhex(address[2:] if address.startswith(("0x", "0X")) else address)
    else:
        raw = bytes(address)
    if len(raw) != 20:
        raise ValueError(f"an address has 20 bytes, got {len(raw)}")
    return raw


def to_checksum(address: str | bytes) -> str:
    """EIP-55 checksummed hex of an address."""
    raw = address_bytes(address).hex()
    digest = keccak256(raw.encode()).hex()
    return "0x" + "".join(c.upper() if int(digest[i], 16) >= 8 else c for i, c in enumerate(raw))


def domain_tag(name: str) -> bytes:
    """A 32-byte domain-separation tag: keccak256 of its name."""
    return keccak256(name.encode())
