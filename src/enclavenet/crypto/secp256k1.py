"""secp256k1 keys: signing and recovery the L1 can check with ``ecrecover``.

Signatures are 65 bytes ``r || s || v`` with ``v`` in {27, 28}, over a 32-byte digest
(no Ethereum message prefix: every digest here is already domain-separated).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import coincurve

from .hashing import keccak256, to_checksum

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class SignatureError(ValueError):
    """A signature is malformed or does not recover."""


@dataclass(frozen=True)
class SigningKey:
    """A secp256k1 private key. ``repr`` never shows the secret."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != 32 or not 0 < int.from_bytes(self.secret, "big") < SECP256K1_N:
            raise ValueError("not a valid secp256k1 private key")

    @classmethod
    def generate(cls) -> SigningKey:
        while True:
            s = secrets.token_bytes(32)
            if 0 < int.from_bytes(s, "big") < SECP256K1_N:
                return cls(s)

    @property
    def _key(self) -> coincurve.PrivateKey:
        return coincurve.PrivateKey(self.secret)

    @property
    def public_key(self) -> bytes:
        """Uncompressed public key without the 0x04 prefix (64 bytes)."""
        return self._key.public_key.format(compressed=False)[1:]

    @property
    def address(self) -> str:
        return to_checksum(keccak256(self.public_key)[12:])

    def sign(self, digest: bytes) -> bytes:
        """65-byte r||s||v (v = 27/28) signature over a 32-byte digest."""
        if len(digest) != 32:
            raise ValueError("sign a 32-byte digest")
        sig = self._key.sign_recoverable(digest, hasher=None)
        return sig[:64] + bytes([sig[64] + 27])


def recover_address(digest: bytes, signature: bytes) -> str:
    """The checksummed address that signed ``digest``; raises SignatureError."""
    if len(digest) != 32:
        raise SignatureError("digest must be 32 bytes")
    if len(signature) != 65:
        raise SignatureError(f"signature must be 65 bytes, got {len(signature)}")
    v = signature[64]
    if v not in (27, 28):
        raise SignatureError(f"signature v must be 27 or 28, got {v}")
    s = int.from_bytes(signature[32:64], "big")
    if s == 0 or s > SECP256K1_N // 2:
        raise SignatureError("signature s is zero or not in the lower half (malleable)")
    try:
        pub = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes([v - 27]), digest, hasher=None
        )
    except Exception as exc:  # coincurve raises plain Exception on bad points
        raise SignatureError("signature does not recover to a public key") from exc
    return to_checksum(keccak256(pub.format(compressed=False)[1:])[12:])
