"""Sealing: data an enclave encrypts for itself, to survive a restart on the same machine.

Blob format (bytes)::

    version (1) | tee_type (1) | instance_id (16) | measurement (32) | nonce (12) | AES-256-GCM ct+tag

    key = HKDF-SHA256(instance secret, info = "EnclaveNet.seal.v1" || tee_type || measurement || label)
    aad = version | tee_type | instance_id | measurement | label

Only the same measurement on the same platform instance derives the same key (the simulated
analogue of SGX ``EGETKEY`` with the MRENCLAVE key policy). ``open_sealed`` refuses with a
distinct message for: another platform instance, another measurement, and tampering (bad tag).
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEAL_VERSION = 1
_HEADER = 1 + 1 + 16 + 32
_NONCE = 12
_TAG = 16
MAX_SEALED_BYTES = 256 * 1024 * 1024


class SealingError(ValueError):
    """A sealed blob cannot be opened here. The message never carries a secret."""


def derive_sealing_key(instance_secret: bytes, tee_type: int, measurement: bytes, label: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"EnclaveNet.seal.v1" + bytes([tee_type]) + measurement + label,
    ).derive(instance_secret)


def _aad(tee_type: int, instance_id: bytes, measurement: bytes, label: bytes) -> bytes:
    return bytes([SEAL_VERSION, tee_type]) + instance_id + measurement + label


def seal_data(key: bytes, tee_type: int, instance_id: bytes, measurement: bytes, label: bytes, data: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    aad = _aad(tee_type, instance_id, measurement, label)
    return aad[:_HEADER] + nonce + AESGCM(key).encrypt(nonce, bytes(data), aad)


def open_sealed(
    key: bytes, tee_type: int, instance_id: bytes, measurement: bytes, label: bytes, blob: bytes
) -> bytes:
    if len(blob) > MAX_SEALED_BYTES:
        raise SealingError(f"sealed blob too large: {len(blob)} bytes")
    if len(blob) < _HEADER + _NONCE + _TAG:
        raise SealingError(f"sealed blob too short: {len(blob)} bytes")
    if blob[0] != SEAL_VERSION:
        raise SealingError(f"unknown sealed-blob version {blob[0]} (expected {SEAL_VERSION})")
    if blob[1] != tee_type:
        raise SealingError(f"blob was sealed on TEE type {blob[1]}, this is type {tee_type}")
    if blob[2:18] != instance_id:
        raise SealingError("blob was sealed on a different platform instance; it cannot be unsealed here")
    if blob[18:50] != measurement:
        raise SealingError("blob was sealed by an enclave with a different measurement; it cannot be unsealed here")
    nonce = blob[_HEADER : _HEADER + _NONCE]
    try:
        return AESGCM(key).decrypt(nonce, blob[_HEADER + _NONCE :], _aad(tee_type, instance_id, measurement, label))
    except InvalidTag:
        raise SealingError("sealed blob was tampered with (or the label differs): authentication failed") from None
