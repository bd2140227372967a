"""Real Intel DCAP quotes (SGX v3, TDX v4/v5) through dcap-qvl, and the attestation verifier.

Samples: tests/fixtures/attestation (MIT, see LICENSE.dcap-qvl-samples). Collateral expires, so
verification runs at fixed times inside each sample's collateral window.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from enclavenet.crypto.quote import enc_key_hash, quote_digest
from enclavenet.crypto.secp256k1 import SigningKey, recover_address
from enclavenet.tee import QuoteError, report_data_binding, verify_quote
from enclavenet.tee.dcap import (
    DCAP_TEE_TYPES,
    AttestationVerifier,
    DcapError,
    DcapPolicy,
    check_report_data_binding,
    load_collateral,
    tdx_measurement,
    verify_dcap,
)

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "attestation"
IN_WINDOW_2025 = 1751328000  # 2025-07-01: inside the sgx_quote / tdx_quote collateral windows
IN_WINDOW_2026 = 1772323200  # 2026-03-01: inside the tdx_quote_outdated collateral window
SGX_MRENCLAVE = bytes.fromhex("33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb")
# the SGX sample's platform is "ConfigurationAndSWHardeningNeeded" (advisories INTEL-SA-00289/00615)
LENIENT = DcapPolicy(frozenset({"UpToDate", "SWHardeningNeeded", "ConfigurationAndSWHardeningNeeded"}))


def _sample(name: str) -> tuple[bytes, object]:
    return (FIX / name).read_bytes(), load_collateral(FIX / f"{name}_collateral.json")


def test_license_travels_with_the_samples() -> None:
    assert "MIT" in (FIX / "LICENSE.dcap-qvl-samples").read_text()


def test_valid_tdx_quote_accepted_under_strict_policy() -> None:
    quote, coll = _sample("tdx_quote")
    v = verify_dcap(quote, coll, IN_WINDOW_2025, DcapPolicy.strict())
    assert v.tee == "tdx" and v.tee_type == DCAP_TEE_TYPES["tdx-dcap"] == 6
    assert v.status == "UpToDate" and v.advisory_ids == ()
    assert len(v.fields["mrtd"]) == 48
    assert v.measurement == tdx_measurement(v.fields["mrtd"], [v.fields[f"rtmr{i}"] for i in range(4)])
    assert len(v.report_data) == 64


def test_valid_sgx_quote_accepted_when_policy_allows_its_tcb_status() -> None:
    quote, coll = _sample("sgx_quote")
    v = verify_dcap(quote, coll, IN_WINDOW_2025, LENIENT)
    assert v.tee == "sgx" and v.tee_type == 5
    assert v.measurement == SGX_MRENCLAVE == v.fields["mrenclave"]
    assert v.status == "ConfigurationAndSWHardeningNeeded"
    assert set(v.advisory_ids) == {"INTEL-SA-00289", "INTEL-SA-00615"}


@pytest.mark.parametrize("policy", [DcapPolicy.strict(), DcapPolicy.sw_hardening_ok()])
def test_sgx_tcb_status_refused_by_stricter_policies(policy: DcapPolicy) -> None:
    quote, coll = _sample("sgx_quote")
    with pytest.raises(DcapError, match="TCB status ConfigurationAndSWHardeningNeeded is not accepted"):
        verify_dcap(quote, coll, IN_WINDOW_2025, policy)


def test_rejected_advisory_refuses_an_otherwise_allowed_status() -> None:
    quote, coll = _sample("sgx_quote")
    policy = dataclasses.replace(LENIENT, rejected_advisories=frozenset({"INTEL-SA-00615"}))
    with pytest.raises(DcapError, match="INTEL-SA-00615"):
        verify_dcap(quote, coll, IN_WINDOW_2025, policy)


def test_out_of_date_tdx_platform_refused() -> None:
    quote, coll = _sample("tdx_quote_outdated")
    # even a policy that accepts every status refuses a platform below every listed TCB level
    anything = DcapPolicy(frozenset({"UpToDate", "SWHardeningNeeded", "OutOfDate", "ConfigurationNeeded"}))
    with pytest.raises(DcapError, match="below every level"):
        verify_dcap(quote, coll, IN_WINDOW_2026, anything)


@pytest.mark.parametrize("name", ["sgx_quote", "tdx_quote"])
def test_tampered_quote_refused(name: str) -> None:
    quote, coll = _sample(name)
    for pos in (60, 200):  # inside the signed report body
        bad = bytearray(quote)
        bad[pos] ^= 0x01
        with pytest.raises(DcapError, match="signature is invalid"):
            verify_dcap(bytes(bad), coll, IN_WINDOW_2025, LENIENT)


@pytest.mark.parametrize("name", ["sgx_quote", "tdx_quote", "tdx_quote_outdated"])
def test_expired_collateral_refused_today(name: str) -> None:
    quote, coll = _sample(name)
    with pytest.raises(DcapError, match="expired"):
        verify_dcap(quote, coll, int(time.time()), LENIENT)


def test_malformed_inputs_refused_clearly() -> None:
    _quote, coll = _sample("sgx_quote")
    with pytest.raises(DcapError, match=r"48\.\."):
        verify_dcap(b"short", coll, IN_WINDOW_2025)
    with pytest.raises(DcapError, match="collateral"):
        load_collateral("{not json")
    with pytest.raises(DcapError):
        verify_dcap(b"\x00" * 600, coll, IN_WINDOW_2025)


def test_binding_check_constructed_case() -> None:
    key = SigningKey.generate()
    ekh = enc_key_hash(b"\x09" * 32)
    good = report_data_binding(key.address, ekh)
    check_report_data_binding(good, key.address, ekh)  # accepted
    with pytest.raises(DcapError, match="does not bind"):
        check_report_data_binding(good, SigningKey.generate().address, ekh)
    with pytest.raises(DcapError, match="does not bind"):
        check_report_data_binding(good, key.address, enc_key_hash(b"\x0a" * 32))
    with pytest.raises(DcapError, match="does not bind"):
        check_report_data_binding(good[:32] + b"\x01" * 32, key.address, ekh)


def test_verifier_refuses_sample_quotes_whose_report_data_binds_other_keys() -> None:
    quote, coll = _sample("tdx_quote")
    verifier = AttestationVerifier(SigningKey.generate(), DcapPolicy.strict())
    key = SigningKey.generate()
    with pytest.raises(DcapError, match="does not bind"):
        verifier.register(quote, coll, key.address, enc_key_hash(b"\x01" * 32), now=IN_WINDOW_2025)


@pytest.mark.parametrize("name", ["sgx_quote", "tdx_quote"])
def test_verifier_signs_registration_quote_that_verifies_under_its_root(name: str) -> None:
    """Real DCAP verdict; report_data replaced by a constructed binding (we cannot re-sign Intel's)."""
    quote, coll = _sample(name)
    verdict = verify_dcap(quote, coll, IN_WINDOW_2025, LENIENT)
    key = SigningKey.generate()
    ekh = enc_key_hash(b"\x02" * 32)
    verdict = dataclasses.replace(verdict, report_data=report_data_binding(key.address, ekh))
    vkey = SigningKey.generate()
    verifier = AttestationVerifier(vkey, LENIENT, validity=3600)
    q = verifier.sign_verdict(verdict, key.address, ekh, now=IN_WINDOW_2025)
    assert q.tee_type == verdict.tee_type and q.expiry == IN_WINDOW_2025 + 3600
    # what L1 checks: the verifier is the root of types 5/6 and signed EXACTLY quote_digest
    assert recover_address(quote_digest(q.tee_type, verdict.measurement, key.address, ekh, q.expiry), q.signature) == vkey.address
    roots = {5: vkey.address, 6: vkey.address}
    claims = verify_quote(q, roots, now=IN_WINDOW_2025)
    assert claims.measurement == verdict.measurement and claims.enclave == key.address
    assert claims.fields["tcb_status"] == verdict.status
    with pytest.raises(QuoteError, match="not signed by"):
        verify_quote(q, {5: SigningKey.generate().address, 6: SigningKey.generate().address})
    with pytest.raises(QuoteError):
        verify_quote(dataclasses.replace(q, fields={**q.fields, "tcb_status": "UpToDate2"}), roots)
    # the allow-list refuses unknown programs
    strict = AttestationVerifier(vkey, LENIENT, allowed_measurements=frozenset({b"\x00" * 32}))
    with pytest.raises(DcapError, match="not an allowed enclave program"):
        strict.sign_verdict(verdict, key.address, ekh, now=IN_WINDOW_2025)
