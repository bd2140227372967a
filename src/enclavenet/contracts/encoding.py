"""Python shapes of the contracts' arguments: QC signatures, headers, withdrawals.

Pure functions (no web3): the node, the tests and the benchmark build ``submitHeader``
arguments with these. A QC travels as EIP-2098 compact signatures ``(r, vs)`` ordered by
strictly increasing signer address (the Registry checks distinctness with one comparison).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from enclavenet.crypto.hashing import address_bytes
from enclavenet.crypto.header import Header, Withdrawal
from enclavenet.crypto.secp256k1 import SECP256K1_N, recover_address

SigTuple = tuple[bytes, bytes]
HeaderTuple = tuple[int | bytes, ...]


def compact_signature(signature: bytes) -> SigTuple:
    """65-byte ``r || s || v`` (v in {27, 28}, low s) -> EIP-2098 ``(r, vs)``."""
    if len(signature) != 65:
        raise ValueError(f"a signature has 65 bytes, got {len(signature)}")
    v = signature[64]
    if v not in (27, 28):
        raise ValueError(f"signature v must be 27 or 28, got {v}")
    s = int.from_bytes(signature[32:64], "big")
    if not 0 < s <= SECP256K1_N // 2:
        raise ValueError("signature s is zero or not in the lower half (malleable)")
    vs = s | ((v - 27) << 255)
    return signature[:32], vs.to_bytes(32, "big")


def expand_signature(sig: SigTuple) -> bytes:
    """EIP-2098 ``(r, vs)`` -> 65-byte ``r || s || v``."""
    r, vs = sig
    n = int.from_bytes(vs, "big")
    s = n & ((1 << 255) - 1)
    return bytes(r) + s.to_bytes(32, "big") + bytes([27 + (n >> 255)])


def qc_signatures(
    signed: Iterable[tuple[str, bytes]] | Iterable[bytes], digest: bytes | None = None
) -> list[SigTuple]:
    """Order a QC for the Registry: ``(signer address, 65-byte signature)`` pairs, or bare
    signatures together with the ``digest`` they sign (signers are then recovered).

    Sorted by strictly increasing signer address, duplicates dropped, compact form.
    """
    pairs: dict[bytes, bytes] = {}
    for item in signed:
        if isinstance(item, bytes | bytearray):
            if digest is None:
                raise ValueError("bare signatures need the digest they sign")
            sig = bytes(item)
            signer = address_bytes(recover_address(digest, sig))
        else:
            addr, sig = item
            signer = address_bytes(addr)
        pairs[signer] = sig
    return [compact_signature(pairs[a]) for a in sorted(pairs)]


def header_arg(header: Header) -> HeaderTuple:
    """The ``Header`` struct as web3.py passes it."""
    return header.as_tuple()


def withdrawals_arg(withdrawals: Sequence[Withdrawal]) -> list[tuple[str, int]]:
    return [(w.recipient, w.amount) for w in withdrawals]
