"""The registration quote digest the L1 Registry checks with ``ecrecover``.

A platform root (a simulated vendor's attestation key, or for real SGX/TDX the
attestation-verifier enclave that checked the DCAP quote) signs

    keccak256(abi.encode(QUOTE_DOMAIN, tee_type, measurement, enclave, enc_key_hash, expiry))

binding the TEE type, the enclave program's measurement, the enclave's signing address,
the hash of its X25519 encryption key and an expiry (unix seconds) after which the
enclave must re-attest.
"""

from __future__ import annotations

from .hashing import addr_word, b32, domain_tag, keccak256, u256

QUOTE_DOMAIN = domain_tag("EnclaveNet.Quote.v1")

# TEE type ids used on L1. More can be added by the Registry owner (ids 1..255).
TEE_TYPES: dict[str, int] = {"sgx": 1, "tdx": 2, "sev-snp": 3, "csv": 4}
TEE_NAMES: dict[int, str] = {v: k for k, v in TEE_TYPES.items()}


def quote_digest(
    tee_type: int, measurement: bytes, enclave: str, enc_key_hash: bytes, expiry: int
) -> bytes:
    if not 0 < tee_type < 256:
        raise ValueError("tee_type must be in 1..255")
    return keccak256(
        QUOTE_DOMAIN,
        u256(tee_type),
        b32(measurement),
        addr_word(enclave),
        b32(enc_key_hash),
        u256(expiry),
    )


def enc_key_hash(x25519_public_key: bytes) -> bytes:
    """The hash of an enclave's encryption key that goes into its quote."""
    if len(x25519_public_key) != 32:
        raise ValueError("an X25519 public key has 32 bytes")
    return keccak256(b"EnclaveNet.EncKey.v1", x25519_public_key)
