"""The escape hatch's formats: a user's balance leaf, the signed request for it, its sealing.

After a freeze (docs/CONTRACTS.md) every user withdraws their EnclaveNet balance on L1 by
proving their leaf of the balances tree (``crypto.smt``) against the ``balances_root`` of the
last accepted header, with every enclave dead. What a user needs is an :class:`EscapeLeaf`:

    address, balance, salt, siblings   -- the leaf smt_leaf(keccak(address), balance, salt)
                                          and its proof (smt_verify)
    height, header_hash, balances_root -- the header it proves against

Encoding (``EscapeLeaf.encode``): ``abi.encode(address, uint256 balance, bytes32 salt,
uint256 height, bytes32 header_hash, bytes32 balances_root, bytes32[] siblings)`` -- the same
values ``Rollup.escape`` takes. A leaf with balance 0 and no siblings says "no leaf".

**Request.** A user asks a committee member (node JSON-RPC ``enclavenet_escapeLeaf``, enclave
ecall ``escape_leaf``) with a signature over

    escape_request_digest = keccak256(abi.encode(keccak("EnclaveNet.EscapeLeafRequest.v1"),
                                       chain_id, l1_chain_id, rollup, address, expiry))

(65-byte ``r || s || v``, no message prefix, as ``crypto.secp256k1``). The enclave recovers the
user's public key from it and seals the leaf to that key; the request may be replayed until
``expiry`` (unix seconds) -- e.g. by a node re-publishing leaves after each header -- since only
the user can open the result.

**Sealing** (``seal_escape_leaf`` / ``open_escape_leaf``): ECIES on secp256k1, the user's
Ethereum key::

    shared = ECDH(ephemeral secp256k1 key, user public key)   (coincurve: sha256 of the point)
    key    = HKDF-SHA256(shared, salt = eph_pub || user_pub, info = "EnclaveNet.EscapeLeaf.v1", 32)
    sealed = MAGIC (5) | eph_pub (33, compressed) | nonce (12) | AES-256-GCM(key, nonce, plaintext, aad = MAGIC || eph_pub)

The plaintext is the encoded leaf zero-padded to a multiple of ``PAD_TO`` bytes, so its length
says nothing about the balance or the tree (nor whether the user has a leaf at all).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import coincurve
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode

from .hashing import ZERO32, addr_word, domain_tag, keccak256, to_checksum, u256
from .secp256k1 import SECP256K1_N
from .smt import smt_key, smt_leaf, smt_verify

ESCAPE_REQUEST_DOMAIN = domain_tag("EnclaveNet.EscapeLeafRequest.v1")
SEAL_MAGIC = b"ENEL\x01"
SEAL_INFO = b"EnclaveNet.EscapeLeaf.v1"
PAD_TO = 2048
MAX_SIBLINGS = 256
_ABI_TYPES = ["address", "uint256", "bytes32", "uint256", "bytes32", "bytes32", "bytes32[]"]

#: Inside EnclaveNet, the bond of a frivolous challenge (garbage, or a transaction already
#: executed) is credited here unless the enclave config names a ``treasury``.
DEFAULT_TREASURY = to_checksum("0x0000000000000000000000000000000000007ea5")


class EscapeError(ValueError):
    """A leaf, request or sealed leaf is malformed or does not verify. Never carries a secret."""


@dataclass(frozen=True)
class EscapeLeaf:
    """One account's balance leaf and its proof against one header's balances root."""

    address: str
    balance: int
    salt: bytes = field(repr=False)
    siblings: tuple[bytes, ...] = field(repr=False)
    height: int
    header_hash: bytes
    balances_root: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", to_checksum(self.address))
        object.__setattr__(self, "siblings", tuple(bytes(s) for s in self.siblings))
        if not 0 <= self.balance < 1 << 256 or not 0 <= self.height < 1 << 256:
            raise EscapeError("escape leaf: balance or height out of uint256 range")
        for name in ("salt", "header_hash", "balances_root"):
            if len(getattr(self, name)) != 32:
                raise EscapeError(f"escape leaf: {name} must be 32 bytes")
        if len(self.siblings) > MAX_SIBLINGS or any(len(s) != 32 for s in self.siblings):
            raise EscapeError(f"escape leaf: at most {MAX_SIBLINGS} siblings of 32 bytes each")

    @property
    def key(self) -> bytes:
        return smt_key(self.address)

    @property
    def leaf_hash(self) -> bytes:
        return smt_leaf(self.key, self.balance, self.salt)

    @property
    def has_leaf(self) -> bool:
        return self.balance != 0

    def verify(self, root: bytes | None = None) -> bool:
        """True when the leaf sits under ``root`` (default: its own ``balances_root``)."""
        return self.has_leaf and smt_verify(
            self.balances_root if root is None else root, self.key, self.leaf_hash, list(self.siblings)
        )

    def encode(self) -> bytes:
        return abi_encode(
            _ABI_TYPES,
            [self.address, self.balance, self.salt, self.height, self.header_hash,
             self.balances_root, list(self.siblings)],
        )

    @classmethod
    def decode(cls, data: bytes) -> EscapeLeaf:
        try:
            a, bal, salt, height, hh, root, sibs = abi_decode(_ABI_TYPES, bytes(data))
        except Exception as exc:
            raise EscapeError(f"escape leaf: not an ABI-encoded leaf ({type(exc).__name__})") from None
        return cls(a, bal, salt, tuple(sibs), height, hh, root)

    @classmethod
    def empty(cls, address: str | bytes, height: int, header_hash: bytes, balances_root: bytes) -> EscapeLeaf:
        """'No leaf': the account's balance is zero at that header."""
        return cls(to_checksum(address), 0, ZERO32, (), height, header_hash, balances_root)

    def escape_args(self, header_tuple: tuple[object, ...], recipient: str | None = None) -> tuple[object, ...]:
        """Arguments of ``Rollup.escape(header, balance, salt, siblings, recipient)``."""
        return (header_tuple, self.balance, self.salt, list(self.siblings), to_checksum(recipient or self.address))


def escape_request_digest(chain_id: int, l1_chain_id: int, rollup: str, address: str | bytes, expiry: int) -> bytes:
    """What a user signs to ask for their own escape leaf."""
    return keccak256(
        ESCAPE_REQUEST_DOMAIN, u256(chain_id), u256(l1_chain_id), addr_word(rollup), addr_word(address), u256(expiry)
    )


def recover_public_key(digest: bytes, signature: bytes) -> bytes:
    """The 65-byte uncompressed public key that made ``signature`` (r||s||v, v 27/28, low s)."""
    if len(digest) != 32 or len(signature) != 65:
        raise EscapeError("a request signature is 65 bytes over a 32-byte digest")
    v = signature[64]
    s = int.from_bytes(signature[32:64], "big")
    if v not in (27, 28) or s == 0 or s > SECP256K1_N // 2:
        raise EscapeError("request signature: v must be 27/28 and s in the lower half")
    try:
        pub = coincurve.PublicKey.from_signature_and_message(signature[:64] + bytes([v - 27]), digest, hasher=None)
    except Exception:
        raise EscapeError("request signature does not recover to a public key") from None
    return bytes(pub.format(compressed=False))


def public_key_address(public_key: bytes) -> str:
    """The checksummed address of a 65-byte uncompressed (or 33-byte compressed) public key."""
    pub = coincurve.PublicKey(public_key).format(compressed=False)
    return to_checksum(keccak256(pub[1:])[12:])


def _aead_key(shared: bytes, eph_pub: bytes, user_pub: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=eph_pub + user_pub, info=SEAL_INFO).derive(shared)


def seal_escape_leaf(leaf: EscapeLeaf, user_public_key: bytes) -> bytes:
    """Encrypt ``leaf`` to the user's secp256k1 public key (only that user's key opens it)."""
    try:
        user = coincurve.PublicKey(user_public_key)
    except Exception:
        raise EscapeError("not a secp256k1 public key") from None
    user_pub = user.format(compressed=True)
    eph = coincurve.PrivateKey()
    eph_pub = eph.public_key.format(compressed=True)
    key = _aead_key(eph.ecdh(user_pub), eph_pub, user_pub)
    plain = leaf.encode()
    plain += b"\x00" * (-len(plain) % PAD_TO)
    nonce = os.urandom(12)
    return SEAL_MAGIC + eph_pub + nonce + AESGCM(key).encrypt(nonce, plain, SEAL_MAGIC + eph_pub)


def open_escape_leaf(sealed: bytes, private_key: bytes) -> EscapeLeaf:
    """Decrypt a sealed leaf with the user's 32-byte secp256k1 private key."""
    hdr = len(SEAL_MAGIC) + 33
    if not sealed.startswith(SEAL_MAGIC) or len(sealed) < hdr + 12 + 16:
        raise EscapeError("not a sealed escape leaf (bad magic or too short)")
    eph_pub = sealed[len(SEAL_MAGIC) : hdr]
    try:
        me = coincurve.PrivateKey(private_key)
        shared = me.ecdh(eph_pub)
    except Exception:
        raise EscapeError("sealed escape leaf: bad ephemeral key or private key") from None
    key = _aead_key(shared, eph_pub, me.public_key.format(compressed=True))
    try:
        plain = AESGCM(key).decrypt(sealed[hdr : hdr + 12], sealed[hdr + 12 :], SEAL_MAGIC + eph_pub)
    except InvalidTag:
        raise EscapeError("sealed escape leaf does not decrypt with this key (sealed to someone else?)") from None
    return EscapeLeaf.decode(plain)


__all__ = [
    "DEFAULT_TREASURY",
    "ESCAPE_REQUEST_DOMAIN",
    "EscapeError",
    "EscapeLeaf",
    "escape_request_digest",
    "open_escape_leaf",
    "public_key_address",
    "recover_public_key",
    "seal_escape_leaf",
]
