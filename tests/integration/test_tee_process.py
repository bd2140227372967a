"""The real process boundary: an enclave in its own OS process, frames over pipes, faults."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import cbor2
import pytest

from enclavenet.crypto.quote import enc_key_hash
from enclavenet.crypto.secp256k1 import SigningKey, recover_address
from enclavenet.tee import (
    EnclaveCrashed,
    EnclaveError,
    EnclaveTimeout,
    ProcessEnclave,
    Quote,
    SimulatedVendor,
    report_data_binding,
    verify_quote,
    wire,
)
from enclavenet.tee.dcap import DcapPolicy, load_collateral, verify_dcap

pytestmark = pytest.mark.integration

ECHO = "enclavenet.tee.testing:EchoProgram"
VERIFIER = "enclavenet.tee.dcap:AttestationVerifierProgram"
FIX = Path(__file__).resolve().parent.parent / "fixtures" / "attestation"


@pytest.fixture(scope="module")
def vendor() -> SimulatedVendor:
    return SimulatedVendor.generate("sgx")


def test_runs_in_its_own_process_and_secrets_are_not_on_argv(vendor: SimulatedVendor) -> None:
    machine = vendor.new_platform()
    spec = machine.boot_spec()
    with ProcessEnclave(machine, ECHO, {"n": 1}) as enc:
        assert enc.pid != os.getpid() and enc.is_alive()
        assert enc.ecall("echo", b"ping") == b"ping"
        cmdline = Path(f"/proc/{enc.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{enc.pid}/environ").read_bytes()
        assert b"enclavenet.tee.runner" in cmdline
        for secret in (spec["instance_secret"], spec["vendor_key"]):
            for blob in (cmdline, environ):
                assert secret not in blob and secret.hex().encode() not in blob
        q = Quote.decode(enc.ecall("attest"))
        assert (
            verify_quote(q, {vendor.tee_type: vendor.root_address}).measurement == enc.measurement
        )
        pid = enc.pid
    assert not Path(f"/proc/{pid}").exists()  # closed and reaped


def test_refusal_internal_error_and_stdout_pollution(vendor: SimulatedVendor) -> None:
    with ProcessEnclave(
        vendor.new_platform(), ECHO, allow_faults=True, stderr=subprocess.PIPE
    ) as enc:
        with pytest.raises(EnclaveError, match=r"^nope$"):
            enc.ecall("refuse", b"nope")
        with pytest.raises(
            EnclaveError, match=r"internal enclave error in 'boom' \(RuntimeError\)"
        ) as info:
            enc.ecall("boom")
        assert enc.ecall("print", b"junk on stdout") == b"printed"  # goes to stderr, not the frames
        assert enc.ecall("echo", b"x" * 300_000) == b"x" * 300_000
        secret = enc.compromise()["signing_key"].hex()
        assert secret not in str(info.value)
        proc = enc._proc
        assert proc is not None
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert "junk on stdout" in err and "RuntimeError" in err
    assert secret not in err


def test_oversized_and_malformed_frames_do_not_stop_the_enclave(vendor: SimulatedVendor) -> None:
    with ProcessEnclave(vendor.new_platform(), ECHO, max_frame=64 * 1024) as enc:
        big = 200 * 1024
        _rid, result, error = enc.raw_exchange(wire.LEN.pack(big) + b"\x00" * big)
        assert (
            result is None and error is not None and "exceeds the enclave's limit of 65536" in error
        )
        _rid, result, error = enc.raw_exchange(wire.frame(b"\xa5\x01"))
        assert error is not None and "not valid CBOR" in error
        # an answer larger than the host's limit is drained and refused, then all is well
        with pytest.raises(EnclaveError, match=r"answer of .* exceeds the frame limit"):
            enc.ecall("repeat", cbor2.dumps(100_000))
        assert enc.ecall("echo", b"still here") == b"still here"
        with pytest.raises(EnclaveError, match="exceeds the frame limit"):
            enc.ecall("echo", b"y" * 70_000)  # refused by the host before sending
        assert enc.ping()


def test_timeout_then_late_answer_is_dropped(vendor: SimulatedVendor) -> None:
    with ProcessEnclave(vendor.new_platform(), ECHO, timeout=5.0) as enc:
        t0 = time.monotonic()
        with pytest.raises(EnclaveTimeout):
            enc.ecall("sleep", cbor2.dumps(0.6), timeout=0.15)
        assert time.monotonic() - t0 < 0.5
        # the late "awake" answer arrives first and is recognised by its id and dropped
        assert enc.ecall("echo", b"next") == b"next"
        # a timeout in the middle of a large answer never splits a frame: the stream stays in sync
        for t in (0.001, 0.003, 0.01, 0.03):
            try:
                enc.ecall("repeat", cbor2.dumps(4 << 20), timeout=t)
            except EnclaveTimeout:
                pass
            assert enc.ecall("echo", b"in sync") == b"in sync"


def test_fault_crash(vendor: SimulatedVendor) -> None:
    with ProcessEnclave(vendor.new_platform(), ECHO, allow_faults=True) as enc:
        enc.crash()
        assert enc.wait_dead(5.0) == 70
        with pytest.raises(EnclaveCrashed, match="exit code 70"):
            enc.ecall("echo", b"x")
        with pytest.raises(EnclaveCrashed):
            enc.ecall("echo", b"x")


def test_fault_hang(vendor: SimulatedVendor) -> None:
    with ProcessEnclave(vendor.new_platform(), ECHO, allow_faults=True) as enc:
        enc.hang()
        for _ in range(2):
            with pytest.raises(EnclaveTimeout):
                enc.ecall("echo", b"x", timeout=0.2)
        assert enc.is_alive()
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 5.0  # close() kills a hung enclave


def test_fault_compromise_leaks_keys_and_signs_anything(vendor: SimulatedVendor) -> None:
    with ProcessEnclave(vendor.new_platform(), ECHO, allow_faults=True) as enc:
        address = enc.ecall("address").decode()
        with pytest.raises(EnclaveError, match="not compromised"):
            enc.compromised_sign(b"\x01" * 32)
        leaked = enc.compromise()
        assert SigningKey(leaked["signing_key"]).address == address
        digest = b"\x42" * 32  # anything, e.g. a conflicting header
        assert recover_address(digest, enc.compromised_sign(digest)) == address


def test_faults_disabled_by_default(vendor: SimulatedVendor) -> None:
    with ProcessEnclave(vendor.new_platform(), ECHO) as enc:
        with pytest.raises(EnclaveError, match="fault hooks are disabled"):
            enc.compromise()
        enc.crash()  # fire-and-forget: refused inside; the refusal arrives with the next answer
        assert enc.ecall("echo", b"alive") == b"alive"  # the refusal's answer is dropped by its id
        assert enc.is_alive()


def test_sealed_data_survives_a_restart_on_the_same_machine_only(vendor: SimulatedVendor) -> None:
    machine = vendor.new_platform()
    with ProcessEnclave(machine, ECHO) as enc:
        blob = enc.ecall("seal", b"persist me")
    with ProcessEnclave(machine, ECHO) as enc:
        assert enc.ecall("unseal", blob) == b"persist me"
    with ProcessEnclave(vendor.new_platform(), ECHO) as enc:
        with pytest.raises(EnclaveError, match="different platform instance"):
            enc.ecall("unseal", blob)
    with ProcessEnclave(machine, ECHO, {"other": "config"}) as enc:
        with pytest.raises(EnclaveError, match="different measurement"):
            enc.ecall("unseal", blob)


def test_boot_failure_reports_and_exits(vendor: SimulatedVendor) -> None:
    with pytest.raises(EnclaveError, match="failed to boot: cannot load program"):
        ProcessEnclave(vendor.new_platform(), "enclavenet.tee.testing:Missing")


def test_attestation_verifier_runs_as_an_enclave() -> None:
    sgx = SimulatedVendor.generate("sgx")
    machine = sgx.new_platform()
    config = {"policy": DcapPolicy.strict().to_dict(), "validity": 3600, "fixed_now": 1751328000}
    quote = (FIX / "tdx_quote").read_bytes()
    collateral = (FIX / "tdx_quote_collateral.json").read_text()
    with ProcessEnclave(machine, VERIFIER, config) as ver:
        root = cbor2.loads(ver.ecall("address"))["address"]
        # the verifier is itself attested by its (simulated) platform
        own = verify_quote(ver.ecall("attest"), {sgx.tee_type: sgx.root_address})
        assert own.enclave == root and own.measurement == ver.measurement
        key = SigningKey.generate()
        ekh = enc_key_hash(b"\x03" * 32)
        req = {
            "quote": quote,
            "collateral": collateral,
            "enclave": key.address,
            "enc_key_hash": ekh,
        }
        # the real TDX sample verifies (DCAP, UpToDate) but its report_data binds other keys
        with pytest.raises(EnclaveError, match="does not bind"):
            ver.ecall("register", cbor2.dumps(req))
        bad = bytearray(quote)
        bad[200] ^= 1
        with pytest.raises(EnclaveError, match="signature is invalid"):
            ver.ecall("register", cbor2.dumps({**req, "quote": bytes(bad)}))
        with pytest.raises(EnclaveError, match="register takes"):
            ver.ecall("register", b"\x00")
        sealed = ver.ecall("sealed_key")
    verdict = verify_dcap(quote, load_collateral(collateral), 1751328000)
    assert report_data_binding(key.address, ekh) != verdict.report_data
    # restarted on the same machine, the verifier takes its key back: same L1 root address
    with ProcessEnclave(machine, VERIFIER, config) as ver:
        assert cbor2.loads(ver.ecall("restore", sealed))["address"] == root


def test_a_host_restarting_the_enclave_process_from_an_older_blob_gets_no_second_header(tmp_path: Path) -> None:
    """Issue 13 item 4 with a real enclave process: the victim signs X at (2, 0); its host kills
    the process, starts a new one on the same machine (rebuilt from the boot spec, as a node does)
    from the blob sealed BEFORE that vote and asks for a conflicting Y at (2, 0): refused, since
    the machine's monotonic counter (its NV directory) outlived the process. A restart from the
    newest blob keeps signing."""
    from enclavenet.enclave.harness import Member, batch_request, form_committee, program_config
    from enclavenet.tee import DEFAULT_PROGRAM, InProcessEnclave
    from enclavenet.tee.platform import platform_from_spec

    vendors = [SimulatedVendor.generate(n) for n in ("sgx", "sev-snp", "tdx")]
    cfg = program_config(vendors, chain_id=4444)
    machines = [v.new_platform(nv_dir=tmp_path / v.tee_name) for v in vendors]
    members = [Member(InProcessEnclave(p, DEFAULT_PROGRAM, cfg)) for p in machines[:2]]
    spec = machines[2].boot_spec()  # the victim's machine, as its node config holds it
    victim = Member(ProcessEnclave(platform_from_spec(spec), DEFAULT_PROGRAM, cfg, timeout=60))
    try:
        form_committee([*members, victim], quorum=2, min_types=2)
        req1 = batch_request(1, bytes(32), l1_block=1)
        out1 = members[0].call("execute_batch", **req1)
        v1 = victim.call("verify_batch", header=out1["header"], **req1)
        qc1 = [out1["signature"], v1["signature"]]
        members[1].call("apply_batch", header=out1["header"], signatures=qc1, **req1)
        for m in (members[0], victim):
            m.call("accept_header", header=out1["header"], signatures=qc1)
        req_x = batch_request(2, out1["header_hash"], l1_block=1, timestamp=1_700_000_010)
        req_y = batch_request(2, out1["header_hash"], l1_block=1, timestamp=1_700_000_020)
        x = members[0].call("execute_batch", **req_x)
        y = members[1].call("execute_batch", **req_y)
        b0 = victim.call("snapshot")["local"]
        vote = victim.call("verify_batch", header=x["header"], **req_x)
        b1 = victim.call("snapshot")["local"]

        def restart(blob: bytes) -> Member:
            victim.handle.kill()  # type: ignore[attr-defined]
            victim.close()
            fresh = Member(ProcessEnclave(platform_from_spec(spec), DEFAULT_PROGRAM, cfg, timeout=60))
            fresh.call("restore", blob=blob)
            return fresh

        victim = restart(b0)
        assert victim.address == vote["signer"]
        with pytest.raises(EnclaveError, match="older than its platform monotonic counter"):
            victim.call("verify_batch", header=y["header"], **req_y)
        assert victim.call("status")["amnesia"] == 2
        victim = restart(b1)  # liveness: the newest blob is not stale
        assert victim.call("status")["amnesia"] == 0
        with pytest.raises(EnclaveError, match="second header at height 2"):
            victim.call("verify_batch", header=y["header"], **req_y)
        assert victim.call("verify_batch", header=x["header"], **req_x)["signature"] == vote["signature"]
    finally:
        victim.close()
        for m in members:
            m.close()
