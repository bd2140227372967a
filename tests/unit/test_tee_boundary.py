"""The ecall boundary in-process: same frames, same server, same refusals as the process."""

from __future__ import annotations

import cbor2
import pytest

from enclavenet.crypto.secp256k1 import recover_address
from enclavenet.tee import (
    EnclaveCrashed,
    EnclaveError,
    EnclaveTimeout,
    InProcessEnclave,
    Quote,
    SimulatedVendor,
    measure_enclave,
    verify_quote,
    wire,
)

ECHO = "enclavenet.tee.testing:EchoProgram"


@pytest.fixture
def vendor() -> SimulatedVendor:
    return SimulatedVendor.generate("tdx")


def test_ecall_roundtrip_and_measurement(vendor: SimulatedVendor) -> None:
    with InProcessEnclave(vendor.new_platform(), ECHO, {"x": 1}) as enc:
        assert enc.ecall("echo", b"hello") == b"hello"
        assert enc.measurement == measure_enclave(ECHO, {"x": 1}) == enc.ecall("measurement")
        assert enc.ping()
        q = Quote.decode(enc.ecall("attest"))
        claims = verify_quote(q, {vendor.tee_type: vendor.root_address})
        assert claims.measurement == enc.measurement
        assert claims.enclave == enc.ecall("address").decode()


def test_refusal_and_internal_error_without_secret(vendor: SimulatedVendor) -> None:
    with InProcessEnclave(vendor.new_platform(), ECHO, allow_faults=True) as enc:
        with pytest.raises(EnclaveError, match=r"^not today$"):
            enc.ecall("refuse", b"not today")
        secret = enc.compromise()["signing_key"].hex()
        with pytest.raises(EnclaveError) as info:
            enc.ecall("boom")
        assert "internal enclave error in 'boom' (RuntimeError)" == str(info.value)
        assert secret not in str(info.value)
        with pytest.raises(EnclaveError, match="unknown method"):
            enc.ecall("nope")
        assert enc.ecall("echo", b"still alive") == b"still alive"


def test_malformed_frames_answered_and_enclave_keeps_running(vendor: SimulatedVendor) -> None:
    with InProcessEnclave(vendor.new_platform(), ECHO, max_frame=1024) as enc:
        for body, msg in [
            (b"\xa5\x01", "not valid CBOR"),
            (cbor2.dumps([1, 2]), "must be a CBOR map"),
            (cbor2.dumps({"id": 1, "payload": b""}), "method"),
            (cbor2.dumps({"id": "x", "method": "echo"}), "request id"),
            (cbor2.dumps({"id": 3, "method": "echo", "payload": "text"}), "payload must be a byte string"),
        ]:
            _rid, result, error = enc.raw_exchange(wire.frame(body))
            assert result is None and error is not None and msg in error
        _rid, _res, error = enc.raw_exchange(wire.LEN.pack(5000) + b"x" * 5000)
        assert error is not None and "exceeds the enclave's limit of 1024" in error
        with pytest.raises(EnclaveError, match="exceeds the frame limit"):
            enc.ecall("echo", b"x" * 2000)
        assert enc.ecall("echo", b"ok") == b"ok"
        with pytest.raises(EnclaveError, match="reserved"):
            enc.ecall("__secret__")


def test_faults_are_refused_unless_allowed(vendor: SimulatedVendor) -> None:
    with InProcessEnclave(vendor.new_platform(), ECHO) as enc:
        for m in (wire.FAULT_CRASH, wire.FAULT_HANG, wire.FAULT_COMPROMISE):
            with pytest.raises(EnclaveError, match="fault hooks are disabled"):
                enc.ecall(m)
        assert enc.ecall("echo", b"x") == b"x"


def test_fault_emulation_in_process(vendor: SimulatedVendor) -> None:
    with InProcessEnclave(vendor.new_platform(), ECHO, allow_faults=True) as enc:
        enc.crash()
        with pytest.raises(EnclaveCrashed):
            enc.ecall("echo")
    with InProcessEnclave(vendor.new_platform(), ECHO, allow_faults=True) as enc:
        enc.hang()
        with pytest.raises(EnclaveTimeout):
            enc.ecall("echo")


def test_boot_failure_is_reported(vendor: SimulatedVendor) -> None:
    with pytest.raises(EnclaveError, match="failed to boot"):
        InProcessEnclave(vendor.new_platform(), "enclavenet.tee.testing:NoSuchProgram")


def test_compromise_with_hex_exported_key(vendor: SimulatedVendor) -> None:
    with InProcessEnclave(vendor.new_platform(), "enclavenet.tee.testing:HexExportProgram", allow_faults=True) as enc:
        address = enc.ecall("address").decode()
        leaked = enc.compromise()
        assert leaked["signing_key"].startswith("0x")
        digest = b"\x5a" * 32
        assert recover_address(digest, enc.compromised_sign(digest)) == address
        with pytest.raises(EnclaveError, match="32-byte digest"):
            enc.compromised_sign(b"short")
