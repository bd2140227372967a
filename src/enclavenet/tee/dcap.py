"""Real attestation: Intel SGX and TDX DCAP quotes, and the attestation-verifier enclave.

Full DCAP verification on L1 costs millions of gas, so it runs off chain, inside an
**attestation verifier** -- itself an enclave (``AttestationVerifierProgram``). For a real
SGX/TDX enclave that wants to join the committee:

1. the enclave puts ``report_data = keccak256(enclave address || enc_key_hash) || 0*32`` into
   its hardware report (``tee.platform.report_data_binding``) and obtains a DCAP quote;
2. the verifier checks the quote with ``dcap-qvl`` against Intel's collateral (PCK chain, CRLs,
   TCB info, QE identity) at its notion of "now", applies a TCB policy (``DcapPolicy``: which
   TCB statuses and advisories are acceptable, no debug enclaves), checks the binding of
   ``report_data`` and derives the 32-byte measurement (SGX: MRENCLAVE; TDX:
   keccak256(domain || MRTD || RTMR0..3));
3. it signs ``crypto.quote.quote_digest(tee_type, measurement, enclave, enc_key_hash, expiry)``
   with its own secp256k1 key, as a ``tee.platform.Quote`` of type ``sgx-dcap`` (5) or
   ``tdx-dcap`` (6). The verifier's address is registered on L1 as the platform root of those
   types, so the Registry and ``verify_quote`` treat the result exactly like a simulated
   platform's quote.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import dcap_qvl

from ..crypto.hashing import address_bytes, domain_tag, keccak256, to_checksum
from ..crypto.quote import quote_digest
from ..crypto.secp256k1 import SigningKey
from ..enclave.errors import EnclaveRefusal
from .platform import (
    EnclavePlatform,
    Quote,
    QuoteError,
    QuoteFormat,
    _add_format,
    _register_tee_name,
    report_data_binding,
    report_digest,
)

__all__ = [
    "DCAP_TEE_TYPES",
    "AttestationVerifier",
    "AttestationVerifierProgram",
    "DcapError",
    "DcapPolicy",
    "DcapVerdict",
    "check_report_data_binding",
    "load_collateral",
    "tdx_measurement",
    "verify_dcap",
]

DCAP_TEE_TYPES: dict[str, int] = {"sgx-dcap": 5, "tdx-dcap": 6}
TDX_MEASUREMENT_DOMAIN = domain_tag("EnclaveNet.TDXMeasurement.v1")
DEFAULT_REGISTRATION_VALIDITY = 7 * 24 * 3600
MAX_DCAP_QUOTE_BYTES = 64 * 1024

# TCB status -> a level for QuoteClaims.tcb_level (higher is better)
TCB_STATUS_LEVEL: dict[str, int] = {
    "UpToDate": 4,
    "SWHardeningNeeded": 3,
    "ConfigurationNeeded": 2,
    "ConfigurationAndSWHardeningNeeded": 2,
    "OutOfDate": 1,
    "OutOfDateConfigurationNeeded": 1,
    "Revoked": 0,
}


class DcapError(QuoteError):
    """A DCAP quote is refused: invalid, expired collateral, TCB policy, or binding."""


@dataclass(frozen=True)
class DcapPolicy:
    """Which verified DCAP quotes are acceptable.

    ``allowed_statuses``: TCB statuses accepted (Intel's ``UpToDate``, ``SWHardeningNeeded``,
    ``ConfigurationNeeded``, ``ConfigurationAndSWHardeningNeeded``, ``OutOfDate``, ...).
    ``rejected_advisories``: Intel-SA ids that refuse a quote even when its status is allowed.
    ``allow_debug``: accept debug enclaves/TDs (never in production: their memory is readable).
    """

    allowed_statuses: frozenset[str] = frozenset({"UpToDate"})
    rejected_advisories: frozenset[str] = frozenset()
    allow_debug: bool = False

    @classmethod
    def strict(cls) -> DcapPolicy:
        """Only ``UpToDate``."""
        return cls()

    @classmethod
    def sw_hardening_ok(cls) -> DcapPolicy:
        """``UpToDate`` or ``SWHardeningNeeded`` (the enclave is built with the mitigations)."""
        return cls(frozenset({"UpToDate", "SWHardeningNeeded"}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "statuses": sorted(self.allowed_statuses),
            "rejected_advisories": sorted(self.rejected_advisories),
            "allow_debug": self.allow_debug,
        }

    @classmethod
    def from_dict(cls, m: Mapping[str, Any]) -> DcapPolicy:
        return cls(
            frozenset(m.get("statuses", ["UpToDate"])),
            frozenset(m.get("rejected_advisories", [])),
            bool(m.get("allow_debug", False)),
        )


@dataclass(frozen=True)
class DcapVerdict:
    """A DCAP quote that passed cryptographic verification AND the policy."""

    tee: str  # "sgx" | "tdx"
    status: str
    advisory_ids: tuple[str, ...]
    measurement: bytes  # 32 bytes: MRENCLAVE, or tdx_measurement(...)
    report_data: bytes  # 64 bytes
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def tee_type(self) -> int:
        return DCAP_TEE_TYPES[f"{self.tee}-dcap"]


def load_collateral(source: str | Path | bytes) -> dcap_qvl.QuoteCollateralV3:
    """Collateral from a JSON string/bytes or a path to a JSON file (the PCCS ``get_collateral`` shape)."""
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("{")):
        text = Path(source).read_text()
    elif isinstance(source, bytes):
        text = source.decode()
    else:
        text = source
    try:
        return dcap_qvl.QuoteCollateralV3.from_json(text)
    except ValueError as exc:
        raise DcapError(f"collateral is not valid DCAP collateral JSON: {exc}") from None


def _classify(msg: str) -> str:
    low = msg.lower()
    if "expired" in low or "crlexpired" in low or "not yet valid" in low:
        return f"DCAP collateral is expired or not yet valid at the verification time ({msg})"
    if "no matching tcb level" in low:
        return (
            "DCAP TCB not acceptable: the platform's TCB is below every level in Intel's TCB info "
            f"(out of date / unsupported) ({msg})"
        )
    if "signature" in low:
        return f"DCAP quote signature is invalid (tampered quote or wrong collateral) ({msg})"
    return f"DCAP verification failed ({msg})"


def tdx_measurement(mrtd: bytes, rtmrs: Iterable[bytes]) -> bytes:
    """32-byte measurement of a TD: keccak256(domain || MRTD || RTMR0 || RTMR1 || RTMR2 || RTMR3)."""
    return keccak256(TDX_MEASUREMENT_DOMAIN, mrtd, *rtmrs)


def verify_dcap(
    raw_quote: bytes, collateral: dcap_qvl.QuoteCollateralV3, now: int, policy: DcapPolicy | None = None
) -> DcapVerdict:
    """Verify a real SGX/TDX quote at time ``now`` and apply ``policy``; raise ``DcapError``."""
    policy = policy or DcapPolicy.strict()
    if not isinstance(raw_quote, bytes) or not 48 <= len(raw_quote) <= MAX_DCAP_QUOTE_BYTES:
        raise DcapError(f"a DCAP quote has 48..{MAX_DCAP_QUOTE_BYTES} bytes")
    try:
        verified = dcap_qvl.verify(raw_quote, collateral, int(now))
    except ValueError as exc:
        raise DcapError(_classify(str(exc))) from None
    report = json.loads(verified.to_json())
    status = str(report["status"])
    advisories = tuple(str(a) for a in report.get("advisory_ids") or ())
    body = report["report"]
    if "SgxEnclave" in body:
        r = body["SgxEnclave"]
        attributes = bytes.fromhex(r["attributes"])
        debug = bool(attributes[0] & 0x02)
        fields: dict[str, Any] = {
            "mrenclave": bytes.fromhex(r["mr_enclave"]),
            "mrsigner": bytes.fromhex(r["mr_signer"]),
            "isv_prod_id": int(r["isv_prod_id"]),
            "isv_svn": int(r["isv_svn"]),
            "cpu_svn": bytes.fromhex(r["cpu_svn"]),
            "attributes": attributes,
        }
        tee, measurement, report_data = "sgx", fields["mrenclave"], bytes.fromhex(r["report_data"])
    else:
        (kind,) = body.keys()
        r = body[kind]
        td_attributes = bytes.fromhex(r["td_attributes"])
        debug = bool(td_attributes[0] & 0x01)
        rtmrs = [bytes.fromhex(r[f"rt_mr{i}"]) for i in range(4)]
        fields = {
            "mrtd": bytes.fromhex(r["mr_td"]),
            **{f"rtmr{i}": rtmrs[i] for i in range(4)},
            "mrseam": bytes.fromhex(r["mr_seam"]),
            "td_attributes": td_attributes,
            "tcb_svn": bytes.fromhex(r["tee_tcb_svn"]),
        }
        tee, measurement, report_data = "tdx", tdx_measurement(fields["mrtd"], rtmrs), bytes.fromhex(r["report_data"])
    if status not in policy.allowed_statuses:
        raise DcapError(
            f"DCAP TCB status {status} is not accepted by the policy (accepted: {sorted(policy.allowed_statuses)})"
        )
    bad = sorted(set(advisories) & policy.rejected_advisories)
    if bad:
        raise DcapError(f"DCAP quote is affected by rejected advisories {bad}")
    if debug and not policy.allow_debug:
        raise DcapError(f"{tee.upper()} quote comes from a DEBUG enclave; its memory is not confidential")
    fields["tcb_status"] = status
    fields["advisory_ids"] = list(advisories)
    return DcapVerdict(tee, status, advisories, measurement, report_data, fields)


def check_report_data_binding(report_data: bytes, enclave: str, enc_key_hash: bytes) -> None:
    """Raise DcapError unless report_data == keccak256(enclave address || enc_key_hash) || 0*32."""
    if len(report_data) != 64:
        raise DcapError("report_data has 64 bytes")
    if report_data != report_data_binding(enclave, enc_key_hash):
        raise DcapError(
            "quote report_data does not bind keccak256(enclave address || enc_key_hash): "
            "the quote was made for other keys"
        )


class AttestationVerifier:
    """Checks DCAP off chain and re-signs the result as a registration ``Quote`` (types 5/6).

    ``address`` is registered on L1 as the platform root of ``sgx-dcap`` and ``tdx-dcap``.
    ``allowed_measurements`` (optional) refuses unknown programs early (the Registry keeps its
    own allow-list too).
    """

    def __init__(
        self,
        key: SigningKey,
        policy: DcapPolicy | None = None,
        *,
        validity: int = DEFAULT_REGISTRATION_VALIDITY,
        allowed_measurements: frozenset[bytes] | None = None,
    ) -> None:
        self._key = key
        self.policy = policy or DcapPolicy.strict()
        self.validity = int(validity)
        self.allowed_measurements = allowed_measurements

    @property
    def address(self) -> str:
        return self._key.address

    def __repr__(self) -> str:
        return f"AttestationVerifier(address={self.address}, policy={self.policy.to_dict()})"

    def register(
        self,
        raw_quote: bytes,
        collateral: dcap_qvl.QuoteCollateralV3,
        enclave: str,
        enc_key_hash: bytes,
        *,
        now: int,
        expiry: int | None = None,
    ) -> Quote:
        """Verify DCAP + policy + binding; return a ``Quote`` signed by this verifier."""
        if len(enc_key_hash) != 32:
            raise DcapError("enc_key_hash has 32 bytes")
        enclave = to_checksum(address_bytes(enclave))
        verdict = verify_dcap(raw_quote, collateral, now, self.policy)
        return self.sign_verdict(verdict, enclave, enc_key_hash, now=now, expiry=expiry)

    def sign_verdict(
        self, verdict: DcapVerdict, enclave: str, enc_key_hash: bytes, *, now: int, expiry: int | None = None
    ) -> Quote:
        """Second half of ``register``: binding and measurement checks, then the signature."""
        if len(enc_key_hash) != 32:
            raise DcapError("enc_key_hash has 32 bytes")
        enclave = to_checksum(address_bytes(enclave))
        check_report_data_binding(verdict.report_data, enclave, enc_key_hash)
        if self.allowed_measurements is not None and verdict.measurement not in self.allowed_measurements:
            raise DcapError(f"measurement 0x{verdict.measurement.hex()} is not an allowed enclave program")
        cap = int(now) + self.validity
        expiry = cap if expiry is None else min(int(expiry), cap)
        fields = {**verdict.fields, "tcb_level": TCB_STATUS_LEVEL.get(verdict.status, 0), "report_data": verdict.report_data}
        tee_type = verdict.tee_type
        sig = self._key.sign(quote_digest(tee_type, verdict.measurement, enclave, enc_key_hash, expiry))
        rsig = self._key.sign(report_digest(tee_type, verdict.measurement, enclave, enc_key_hash, expiry, fields))
        return Quote(tee_type, verdict.measurement, enclave, enc_key_hash, expiry, fields, sig, rsig)


class AttestationVerifierProgram:
    """The attestation verifier as an enclave program (host it with ``ProcessEnclave``).

    config: ``{"policy": DcapPolicy.to_dict(), "validity": seconds, "fixed_now": unix seconds}``
    (``fixed_now`` is for tests with archived collateral; it is part of the measurement, so a
    test verifier can never pass for a production one).

    ecalls:
      ``address`` -> CBOR ``{"address": str}``
      ``attest``  -> this verifier's own platform quote (CBOR), so the verifier is attested too
      ``register`` (CBOR ``{"quote": bytes, "collateral": str, "enclave": str, "enc_key_hash": bytes,
      "expiry"?: int}``) -> ``Quote.encode()`` of type 5/6
      ``sealed_key`` -> the verifier key sealed to this measurement and machine;
      ``restore`` (that blob) -> adopts the key again after a restart (same root address on L1).
    """

    def __init__(self, platform: EnclavePlatform, config: dict[str, Any]) -> None:
        self.platform = platform
        self.policy = DcapPolicy.from_dict(config.get("policy") or {})
        self.validity = int(config.get("validity", DEFAULT_REGISTRATION_VALIDITY))
        fixed = config.get("fixed_now")
        self.fixed_now = None if fixed is None else int(fixed)
        self._key = SigningKey.generate()
        self._enc_pub = platform.random(32)

    def _verifier(self) -> AttestationVerifier:
        return AttestationVerifier(self._key, self.policy, validity=self.validity)

    def _now(self) -> int:
        return self.fixed_now if self.fixed_now is not None else int(time.time())

    def ecall(self, method: str, payload: bytes) -> bytes:
        if method == "address":
            return cbor2.dumps({"address": self._key.address})
        if method == "attest":
            return self.platform.attest(self._key.address, keccak256(b"EnclaveNet.EncKey.v1", self._enc_pub)).encode()
        if method == "register":
            try:
                m = cbor2.loads(payload)
                raw, coll, enclave, ekh = m["quote"], m["collateral"], m["enclave"], m["enc_key_hash"]
                if not isinstance(raw, bytes) or not isinstance(coll, str) or not isinstance(ekh, bytes):
                    raise TypeError
                expiry = m.get("expiry")
            except Exception:
                raise EnclaveRefusal(
                    "register takes a CBOR map {quote: bytes, collateral: str, enclave: str, enc_key_hash: bytes}"
                ) from None
            try:
                q = self._verifier().register(
                    raw, load_collateral(coll), enclave, ekh, now=self._now(), expiry=expiry
                )
            except (QuoteError, ValueError) as exc:
                raise EnclaveRefusal(str(exc)) from None
            return q.encode()
        if method == "sealed_key":
            return self.platform.seal(self._key.secret, label=b"attestation-verifier-key")
        if method == "restore":
            try:
                self._key = SigningKey(self.platform.unseal(payload, label=b"attestation-verifier-key"))
            except ValueError as exc:
                raise EnclaveRefusal(f"cannot restore the verifier key: {exc}") from None
            return cbor2.dumps({"address": self._key.address})
        raise EnclaveRefusal(f"unknown attestation-verifier method {method!r}")

    def compromised_export(self) -> dict[str, Any]:
        return {"signing_key": self._key.secret}


# Registration quotes made by the verifier go through platform.verify_quote like any other.
for _name, _tid in DCAP_TEE_TYPES.items():
    _register_tee_name(_tid, _name)
_B = bytes
_add_format(
    QuoteFormat(
        5,
        "mrenclave",
        {
            "mrenclave": (_B, 32), "mrsigner": (_B, 32), "isv_prod_id": (int, None), "isv_svn": (int, None),
            "cpu_svn": (_B, 16), "attributes": (_B, 16), "tcb_status": (str, None), "advisory_ids": (list, None),
            "tcb_level": (int, None), "report_data": (_B, 64),
        },
        "tcb_level",
    )
)
_add_format(
    QuoteFormat(
        6,
        "",
        {
            "mrtd": (_B, 48), "rtmr0": (_B, 48), "rtmr1": (_B, 48), "rtmr2": (_B, 48), "rtmr3": (_B, 48),
            "mrseam": (_B, 48), "td_attributes": (_B, 8), "tcb_svn": (_B, 16), "tcb_status": (str, None),
            "advisory_ids": (list, None), "tcb_level": (int, None), "report_data": (_B, 64),
        },
        "tcb_level",
        measurement_of=lambda f: tdx_measurement(f["mrtd"], [f[f"rtmr{i}"] for i in range(4)]),
    )
)
