"""A tiny enclave program for tests of the tee layer (boundary, faults, attestation, sealing).

Runs under the real runner: ``ProcessEnclave(platform, "enclavenet.tee.testing:EchoProgram")``.
Its methods: ``echo`` (payload back), ``refuse`` (EnclaveRefusal with the payload as text),
``boom`` (an unexpected internal error whose message holds the signing key -- it must not leak),
``sleep`` (payload: CBOR float seconds, capped at 10), ``address``, ``sign`` (a 32-byte digest),
``attest`` (CBOR quote), ``seal`` / ``unseal``, ``measurement``, ``print`` (to stdout),
``repeat`` (CBOR int n -> n bytes).
"""

from __future__ import annotations

import time
from typing import Any

import cbor2

from ..crypto.quote import enc_key_hash
from ..crypto.secp256k1 import SigningKey
from ..enclave.errors import EnclaveRefusal
from .platform import EnclavePlatform


class EchoProgram:
    def __init__(self, platform: EnclavePlatform, config: dict[str, Any]) -> None:
        self.platform = platform
        self.config = config
        self.key = SigningKey.generate()
        self.enc_pub = platform.random(32)  # stands in for an X25519 public key

    def ecall(self, method: str, payload: bytes) -> bytes:
        if method == "echo":
            return payload
        if method == "refuse":
            raise EnclaveRefusal(payload.decode(errors="replace"))
        if method == "boom":
            raise RuntimeError(f"internal failure holding key {self.key.secret.hex()}")
        if method == "sleep":
            time.sleep(min(float(cbor2.loads(payload)), 10.0))
            return b"awake"
        if method == "print":  # a careless program writing to stdout must not corrupt the frames
            print(payload.decode(errors="replace"))
            return b"printed"
        if method == "repeat":  # an answer of n bytes (capped at 4 MiB)
            return b"x" * min(int(cbor2.loads(payload)), 4 << 20)
        if method == "address":
            return self.key.address.encode()
        if method == "sign":
            if len(payload) != 32:
                raise EnclaveRefusal("sign takes a 32-byte digest")
            return self.key.sign(payload)
        if method == "attest":
            return self.platform.attest(self.key.address, enc_key_hash(self.enc_pub)).encode()
        if method == "seal":
            return self.platform.seal(payload)
        if method == "unseal":
            try:
                return self.platform.unseal(payload)
            except ValueError as exc:
                raise EnclaveRefusal(str(exc)) from None
        if method == "measurement":
            return self.platform.measurement
        raise EnclaveRefusal(f"unknown method {method!r}")

    def compromised_export(self) -> dict[str, Any]:
        return {"signing_key": self.key.secret, "enc_pub": self.enc_pub}


class HexExportProgram(EchoProgram):
    """Like EchoProgram, but exports its keys as hex text (as ``enclave.program`` does)."""

    def compromised_export(self) -> dict[str, Any]:
        return {"signing_key": "0x" + self.key.secret.hex(), "enc_pub": self.enc_pub.hex()}
