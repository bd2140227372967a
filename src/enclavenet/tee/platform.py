"""Simulated TEE platforms (sgx, tdx, sev-snp, csv): vendor roots, measurements, quotes.

Vocabulary
==========

* A **vendor** (``SimulatedVendor``) owns a secp256k1 *root key*. Its address is what the L1
  Registry stores as the platform root of that TEE type (ids in ``crypto.quote.TEE_TYPES``).
* A **platform** (``SimulatedPlatform`` and its four subclasses) is one machine of a vendor:
  it holds a per-instance secret (the simulated fused CPU key, used for sealing) and a TCB level,
  and it signs quotes with its vendor's root key.
* An **enclave platform** (``EnclavePlatform``) is the view the enclave program gets of the
  machine it runs on: the machine bound to the program's *measurement*. Through it the program
  attests (``attest``), seals (``seal`` / ``unseal``) and reads the time. The enclave cannot
  choose its measurement: the loader (``tee.runner``) computes it from the code it loads.

Quotes
======

A ``Quote`` carries the registration claims ``(tee_type, measurement, enclave signing address,
enc_key_hash, expiry)``, the vendor's own report fields (``fields``; e.g. sgx: mrenclave,
mrsigner, isv_svn, cpu_svn; tdx: mrtd, rtmr0..3, tcb_svn; sev-snp: measurement, guest_svn, policy,
chip_id, reported_tcb; csv: measure, vm_id, vm_version, policy, chip_id, build), and two
signatures by the root:

* ``signature`` over EXACTLY ``crypto.quote.quote_digest(tee_type, measurement, enclave,
  enc_key_hash, expiry)`` -- what the L1 Registry checks with ``ecrecover``;
* ``report_signature`` over the whole report (claims + vendor fields), so the vendor fields
  cannot be altered either; checked off chain by ``verify_quote``.

Every report also carries ``report_data = keccak256(enclave address || enc_key_hash) || 0*32``,
exactly as a real SGX/TDX quote binds the enclave's keys (see ``tee.dcap``).

``verify_quote(quote, trusted_roots)`` is the single verification path, used for simulated
quotes and for quotes re-signed by the DCAP attestation verifier alike.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import cbor2

from ..crypto.hashing import address_bytes, domain_tag, keccak256, to_checksum
from ..crypto.quote import TEE_NAMES, TEE_TYPES, quote_digest
from ..crypto.secp256k1 import SignatureError, SigningKey, recover_address
from .counter import COUNTER_DOMAIN, CounterStore, CounterValue, default_nv_root
from .sealing import derive_sealing_key, open_sealed, seal_data

__all__ = [
    "DEFAULT_QUOTE_VALIDITY",
    "CsvPlatform",
    "EnclavePlatform",
    "Quote",
    "QuoteClaims",
    "QuoteError",
    "SevSnpPlatform",
    "SgxPlatform",
    "SimulatedPlatform",
    "SimulatedVendor",
    "TdxPlatform",
    "measure_enclave",
    "platform_class",
    "platform_from_spec",
    "report_data_binding",
    "verify_quote",
]

MEASUREMENT_DOMAIN = domain_tag("EnclaveNet.Measurement.v1")
REPORT_DOMAIN = domain_tag("EnclaveNet.QuoteReport.v1")
DEFAULT_QUOTE_VALIDITY = 30 * 24 * 3600  # seconds; a quote's expiry is capped at now + this
MEASURED_ROOMS = ("crypto", "enclave", "tee")  # enclavenet/<room>/*.py is the enclave's code


class QuoteError(ValueError):
    """A quote is malformed, signed by the wrong root, or fails a policy check."""


# --------------------------------------------------------------------------- measurement


def _package_dir() -> Path:
    return Path(__file__).resolve().parent.parent


def measure_enclave(program: str, config: Mapping[str, Any] | None = None) -> bytes:
    """The 32-byte measurement of an enclave: its code, its program class and its config.

    ``keccak256(DOMAIN || for each file (sorted): keccak(relpath) || keccak(content)
    || keccak(program) || keccak(canonical CBOR(config)))`` over ``enclavenet/crypto/*.py``,
    ``enclavenet/enclave/*.py`` and ``enclavenet/tee/*.py``. ``program`` is the dotted path of
    the hosted program class (``"enclavenet.enclave.program:EnclaveProgram"``). The host computes
    the same value to decide which measurements to allow; any edit to the trusted code changes it.
    """
    pkg = _package_dir()
    parts = [MEASUREMENT_DOMAIN]
    for room in MEASURED_ROOMS:
        for path in sorted((pkg / room).glob("*.py")):
            rel = f"enclavenet/{room}/{path.name}"
            parts.append(keccak256(rel.encode()))
            parts.append(keccak256(path.read_bytes()))
    parts.append(keccak256(program.encode()))
    parts.append(keccak256(cbor2.dumps(dict(config or {}), canonical=True)))
    return keccak256(*parts)


def report_data_binding(enclave: str, enc_key_hash: bytes) -> bytes:
    """The 64-byte report_data that binds an enclave's keys: keccak256(address || enc_key_hash) || 0*32."""
    if len(enc_key_hash) != 32:
        raise ValueError("enc_key_hash has 32 bytes")
    return keccak256(address_bytes(enclave), enc_key_hash) + b"\x00" * 32


# --------------------------------------------------------------------------- quotes


@dataclass(frozen=True)
class QuoteClaims:
    """What a verified quote tells the verifier (the Registry's registration claims + extras)."""

    tee_type: int
    measurement: bytes
    enclave: str  # checksummed signing address of the enclave
    enc_key_hash: bytes
    expiry: int  # unix seconds
    tcb_level: int
    fields: dict[str, Any]

    @property
    def tee_name(self) -> str:
        return _TEE_NAME.get(self.tee_type, str(self.tee_type))

    def digest(self) -> bytes:
        return quote_digest(self.tee_type, self.measurement, self.enclave, self.enc_key_hash, self.expiry)


@dataclass(frozen=True)
class Quote:
    """A registration quote: claims, vendor report fields and the root's two signatures."""

    tee_type: int
    measurement: bytes
    enclave: str
    enc_key_hash: bytes
    expiry: int
    fields: dict[str, Any]
    signature: bytes  # root's signature over quote_digest(...): what L1 checks
    report_signature: bytes  # root's signature over report_digest(): binds the vendor fields

    def digest(self) -> bytes:
        """``crypto.quote.quote_digest`` of the claims (what ``signature`` signs)."""
        return quote_digest(self.tee_type, self.measurement, self.enclave, self.enc_key_hash, self.expiry)

    def report_digest(self) -> bytes:
        return report_digest(
            self.tee_type, self.measurement, self.enclave, self.enc_key_hash, self.expiry, self.fields
        )

    def registration_args(self) -> tuple[int, bytes, str, bytes, int, bytes]:
        """``(tee_type, measurement, enclave, enc_key_hash, expiry, signature)`` for the L1 Registry."""
        return (self.tee_type, self.measurement, self.enclave, self.enc_key_hash, self.expiry, self.signature)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tee_type": self.tee_type,
            "measurement": self.measurement,
            "enclave": self.enclave,
            "enc_key_hash": self.enc_key_hash,
            "expiry": self.expiry,
            "fields": self.fields,
            "signature": self.signature,
            "report_signature": self.report_signature,
        }

    def encode(self) -> bytes:
        """Canonical CBOR map (crosses the ecall boundary and the network as bytes)."""
        return cbor2.dumps(self.to_dict(), canonical=True)

    @classmethod
    def from_dict(cls, m: Any) -> Quote:
        if not isinstance(m, dict):
            raise QuoteError("a quote is a CBOR map")
        try:
            q = cls(
                tee_type=_int(m["tee_type"], "tee_type"),
                measurement=_bytes(m["measurement"], "measurement", 32),
                enclave=to_checksum(_bytes_or_str(m["enclave"], "enclave")),
                enc_key_hash=_bytes(m["enc_key_hash"], "enc_key_hash", 32),
                expiry=_int(m["expiry"], "expiry"),
                fields=dict(m["fields"]) if isinstance(m["fields"], dict) else _fail("fields must be a map"),
                signature=_bytes(m["signature"], "signature", 65),
                report_signature=_bytes(m["report_signature"], "report_signature", 65),
            )
        except KeyError as exc:
            raise QuoteError(f"quote lacks field {exc.args[0]!r}") from None
        except ValueError as exc:
            raise QuoteError(f"malformed quote: {exc}") from None
        return q

    @classmethod
    def decode(cls, data: bytes) -> Quote:
        if len(data) > 64 * 1024:
            raise QuoteError(f"quote too large: {len(data)} bytes")
        try:
            m = cbor2.loads(data)
        except Exception as exc:
            raise QuoteError(f"quote is not valid CBOR ({type(exc).__name__})") from None
        return cls.from_dict(m)


def _fail(msg: str) -> Any:
    raise QuoteError(msg)


def _int(v: Any, name: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise QuoteError(f"quote field {name} must be a non-negative integer")
    return v


def _bytes(v: Any, name: str, n: int) -> bytes:
    if not isinstance(v, bytes) or len(v) != n:
        raise QuoteError(f"quote field {name} must be {n} bytes")
    return v


def _bytes_or_str(v: Any, name: str) -> bytes | str:
    if not isinstance(v, bytes | str):
        raise QuoteError(f"quote field {name} must be an address")
    return v


def report_digest(
    tee_type: int, measurement: bytes, enclave: str, enc_key_hash: bytes, expiry: int, fields: Mapping[str, Any]
) -> bytes:
    """What ``Quote.report_signature`` signs: the claims and every vendor field."""
    body = {
        "tee_type": tee_type,
        "measurement": measurement,
        "enclave": address_bytes(enclave),
        "enc_key_hash": enc_key_hash,
        "expiry": expiry,
        "fields": dict(fields),
    }
    return keccak256(REPORT_DOMAIN, cbor2.dumps(body, canonical=True))


# tee_type -> (the field that holds the measurement, required fields, tcb level from fields)
_TEE_NAME: dict[int, str] = {**TEE_NAMES, 5: "sgx-dcap", 6: "tdx-dcap"}


def _register_tee_name(tee_type: int, name: str) -> None:
    _TEE_NAME[tee_type] = name


def verify_quote(
    quote: Quote | bytes,
    trusted_roots: Mapping[int, str],
    *,
    now: int | None = None,
    min_tcb: Mapping[int, int] | None = None,
    allowed_measurements: set[bytes] | frozenset[bytes] | None = None,
) -> QuoteClaims:
    """Verify a quote and return its claims; raise ``QuoteError`` saying what was wrong.

    ``trusted_roots`` maps a TEE type id to the checksummed address of that platform's root
    (a simulated vendor's root, or the DCAP attestation verifier for types 5/6). A quote is
    accepted only when BOTH of its signatures recover to the root of ITS OWN type: a quote of
    one vendor is refused under another vendor's root. Also checked: the vendor fields have the
    platform's format, the measurement field equals the claimed measurement, report_data binds
    the claimed enclave address and enc_key_hash, and (when given) the quote has not expired
    at ``now``, its TCB level is at least ``min_tcb[tee_type]`` and its measurement is allowed.
    """
    if isinstance(quote, bytes | bytearray):
        quote = Quote.decode(bytes(quote))
    root = trusted_roots.get(quote.tee_type)
    if root is None:
        raise QuoteError(f"no trusted root for TEE type {quote.tee_type} ({_TEE_NAME.get(quote.tee_type, '?')})")
    try:
        signer = recover_address(quote.digest(), quote.signature)
        report_signer = recover_address(quote.report_digest(), quote.report_signature)
    except SignatureError as exc:
        raise QuoteError(f"quote signature is malformed: {exc}") from None
    if signer != to_checksum(root):
        raise QuoteError(
            f"quote for TEE type {quote.tee_type} is not signed by that platform's trusted root "
            f"(signed by {signer}, root is {to_checksum(root)})"
        )
    if report_signer != signer:
        raise QuoteError("quote report signature does not match its registration signature (fields altered)")
    if quote.tee_type not in QUOTE_FORMATS and quote.tee_type in (5, 6):
        from . import dcap  # noqa: F401  (registers the sgx-dcap / tdx-dcap formats)
    fmt = QUOTE_FORMATS.get(quote.tee_type)
    if fmt is None:
        raise QuoteError(f"unknown quote format for TEE type {quote.tee_type}")
    fmt.check(quote)
    if quote.fields.get("report_data") != report_data_binding(quote.enclave, quote.enc_key_hash):
        raise QuoteError("quote report_data does not bind the claimed enclave address and enc_key_hash")
    if now is not None and quote.expiry <= now:
        raise QuoteError(f"quote expired at {quote.expiry} (now {now}); the enclave must re-attest")
    tcb = fmt.tcb_level(quote.fields)
    if min_tcb is not None and quote.tee_type in min_tcb and tcb < min_tcb[quote.tee_type]:
        raise QuoteError(
            f"quote TCB level {tcb} is below the required {min_tcb[quote.tee_type]} for TEE type {quote.tee_type}"
        )
    if allowed_measurements is not None and quote.measurement not in allowed_measurements:
        raise QuoteError(f"measurement 0x{quote.measurement.hex()} is not allowed")
    return QuoteClaims(
        tee_type=quote.tee_type,
        measurement=quote.measurement,
        enclave=quote.enclave,
        enc_key_hash=quote.enc_key_hash,
        expiry=quote.expiry,
        tcb_level=tcb,
        fields=dict(quote.fields),
    )


@dataclass(frozen=True)
class QuoteFormat:
    """The vendor-specific report layout of one TEE type: field name -> (type, size or None)."""

    tee_type: int
    measurement_field: str
    layout: dict[str, tuple[type, int | None]]
    tcb_field: str
    tcb_index: int | None = None  # byte index inside a bytes tcb field; None: the field is an int
    measurement_of: Callable[[Mapping[str, Any]], bytes] | None = None  # when no single field holds it

    def check(self, quote: Quote) -> None:
        f = quote.fields
        name_of = _TEE_NAME.get(self.tee_type, str(self.tee_type))
        for name, (typ, size) in self.layout.items():
            if name not in f:
                raise QuoteError(f"{name_of} quote lacks field {name!r}")
            v = f[name]
            if typ is int:
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    raise QuoteError(f"{name_of} quote field {name!r} must be a non-negative integer")
            elif typ is bytes:
                if not isinstance(v, bytes) or (size is not None and len(v) != size):
                    raise QuoteError(f"{name_of} quote field {name!r} must be {size} bytes")
            elif not isinstance(v, typ):
                raise QuoteError(f"{name_of} quote field {name!r} must be a {typ.__name__}")
        extra = set(f) - set(self.layout)
        if extra:
            raise QuoteError(f"{name_of} quote has unexpected fields {sorted(extra)}")
        measured = self.measurement_of(f) if self.measurement_of else f[self.measurement_field]
        if measured != quote.measurement:
            raise QuoteError(f"{name_of} quote's measured fields differ from the claimed measurement")

    def tcb_level(self, fields: Mapping[str, Any]) -> int:
        v = fields[self.tcb_field]
        if self.tcb_index is None:
            return int(v)
        return int(v[self.tcb_index])


QUOTE_FORMATS: dict[int, QuoteFormat] = {}


def _add_format(fmt: QuoteFormat) -> None:
    QUOTE_FORMATS[fmt.tee_type] = fmt


# --------------------------------------------------------------------------- vendors and platforms


@dataclass(frozen=True)
class SimulatedVendor:
    """A simulated TEE vendor: its name and root key. ``root_address`` goes to the L1 Registry."""

    tee_name: str
    root_key: SigningKey = field(repr=False)

    @classmethod
    def generate(cls, tee_name: str) -> SimulatedVendor:
        platform_class(tee_name)  # validates the name
        return cls(tee_name, SigningKey.generate())

    @classmethod
    def from_seed(cls, tee_name: str, seed: bytes) -> SimulatedVendor:
        """Deterministic root (demos, fixtures): key = keccak(domain || name || seed)."""
        platform_class(tee_name)
        return cls(tee_name, SigningKey(keccak256(b"EnclaveNet.sim.vendor.v1", tee_name.encode(), seed)))

    @property
    def tee_type(self) -> int:
        return TEE_TYPES[self.tee_name]

    @property
    def root_address(self) -> str:
        return self.root_key.address

    def new_platform(
        self, *, tcb_level: int | None = None, instance_secret: bytes | None = None, nv_dir: str | Path | None = None
    ) -> SimulatedPlatform:
        """A new machine of this vendor (fresh per-instance secret unless given)."""
        cls = platform_class(self.tee_name)
        return cls(self.root_key, instance_secret=instance_secret, tcb_level=tcb_level, nv_dir=nv_dir)

    def __repr__(self) -> str:
        return f"SimulatedVendor({self.tee_name!r}, root={self.root_address})"


class SimulatedPlatform:
    """One simulated machine: vendor root (to sign quotes), per-instance secret, TCB level.

    Subclasses define the vendor's report fields. The secrets never appear in ``repr``.
    ``boot_spec()`` is what the host hands to ``tee.runner`` on the enclave's stdin at boot
    (the simulated hardware); on real hardware these secrets never leave the CPU.
    ``nv_dir`` is the machine's non-volatile storage for its monotonic counters (``tee.counter``;
    default ``default_nv_root() / "<tee>-<instance id>"``): it outlives every enclave process.
    """

    tee_name: ClassVar[str] = ""
    default_tcb_level: ClassVar[int] = 2

    def __init__(
        self,
        vendor_key: SigningKey,
        *,
        instance_secret: bytes | None = None,
        tcb_level: int | None = None,
        max_quote_validity: int = DEFAULT_QUOTE_VALIDITY,
        nv_dir: str | Path | None = None,
    ) -> None:
        if instance_secret is None:
            instance_secret = os.urandom(32)
        if len(instance_secret) != 32:
            raise ValueError("a platform instance secret has 32 bytes")
        self._vendor_key = vendor_key
        self._secret = bytes(instance_secret)
        self.tcb_level = self.default_tcb_level if tcb_level is None else int(tcb_level)
        if not 0 <= self.tcb_level < 256:
            raise ValueError("tcb_level must be in 0..255")
        self.max_quote_validity = int(max_quote_validity)
        self.nv_dir = Path(nv_dir) if nv_dir else default_nv_root() / f"{self.tee_name}-{self.instance_id.hex()}"

    @property
    def tee_type(self) -> int:
        return TEE_TYPES[self.tee_name]

    @property
    def root_address(self) -> str:
        return self._vendor_key.address

    @property
    def instance_id(self) -> bytes:
        """Public 16-byte id of this machine (a hash of its secret)."""
        return keccak256(b"EnclaveNet.sim.instance.v1", self._secret)[:16]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(instance=0x{self.instance_id.hex()}, tcb={self.tcb_level}, root={self.root_address})"

    # -- what the machine does for the enclave running on it
    def enclave_view(self, measurement: bytes, *, clock: Any = None) -> EnclavePlatform:
        """The platform as the enclave with ``measurement`` sees it (the loader calls this)."""
        return EnclavePlatform(self, measurement, clock=clock)

    def _chip_bytes(self, label: bytes, n: int) -> bytes:
        return hashlib.shake_256(b"EnclaveNet.sim.chip.v1" + label + self._secret).digest(n)

    def report_fields(self, measurement: bytes, report_data: bytes) -> dict[str, Any]:
        raise NotImplementedError

    def _quote(self, measurement: bytes, enclave: str, enc_key_hash: bytes, expiry: int) -> Quote:
        enclave = to_checksum(enclave)
        fields = self.report_fields(measurement, report_data_binding(enclave, enc_key_hash))
        sig = self._vendor_key.sign(quote_digest(self.tee_type, measurement, enclave, enc_key_hash, expiry))
        rsig = self._vendor_key.sign(
            report_digest(self.tee_type, measurement, enclave, enc_key_hash, expiry, fields)
        )
        return Quote(self.tee_type, measurement, enclave, enc_key_hash, expiry, fields, sig, rsig)

    def _sealing_key_material(self) -> bytes:
        return self._secret

    # -- boot hand-over (simulated hardware -> enclave process)
    def boot_spec(self) -> dict[str, Any]:
        """SECRET: the machine's key material, for the runner's stdin only (never argv, never logs)."""
        return {
            "tee": self.tee_name,
            "vendor_key": self._vendor_key.secret,
            "instance_secret": self._secret,
            "tcb_level": self.tcb_level,
            "max_quote_validity": self.max_quote_validity,
            "nv_dir": str(self.nv_dir),
        }


def platform_from_spec(spec: Mapping[str, Any]) -> SimulatedPlatform:
    """Rebuild a machine from ``boot_spec()`` (inside the runner)."""
    try:
        cls = platform_class(str(spec["tee"]))
        return cls(
            SigningKey(bytes(spec["vendor_key"])),
            instance_secret=bytes(spec["instance_secret"]),
            tcb_level=int(spec["tcb_level"]),
            max_quote_validity=int(spec.get("max_quote_validity", DEFAULT_QUOTE_VALIDITY)),
            nv_dir=str(spec["nv_dir"]) if spec.get("nv_dir") else None,
        )
    except KeyError as exc:
        raise ValueError(f"platform spec lacks {exc.args[0]!r}") from None


class EnclavePlatform:
    """The machine as seen by the enclave program with one measurement.

    This is the ``platform`` argument of ``EnclaveProgram(platform, config)``:

    * ``tee_type`` / ``tee_name`` / ``measurement`` / ``tcb_level`` / ``instance_id``
    * ``attest(enclave_address, enc_key_hash, expiry=None) -> Quote``
    * ``seal(data, label=b"") -> bytes`` / ``unseal(blob, label=b"") -> bytes`` (raises
      ``SealingError`` for another measurement, another machine, or tampering)
    * ``now() -> int`` unix seconds (host time: NOT trusted for safety decisions)
    * ``random(n) -> bytes`` (os.urandom)
    * ``counter_read(id) -> CounterValue`` / ``counter_advance(id, expected, high) -> CounterValue``:
      the machine's monotonic counters (``tee.counter``), scoped to this measurement; raise
      ``CounterError`` (``CounterConflict`` when the count is no longer ``expected``)
    """

    def __init__(self, machine: SimulatedPlatform, measurement: bytes, *, clock: Any = None) -> None:
        if len(measurement) != 32:
            raise ValueError("a measurement has 32 bytes")
        self._machine = machine
        self.measurement = bytes(measurement)
        self._clock = clock or time.time
        self._counters: CounterStore | None = None

    @property
    def tee_type(self) -> int:
        return self._machine.tee_type

    @property
    def tee_name(self) -> str:
        return self._machine.tee_name

    @property
    def tcb_level(self) -> int:
        return self._machine.tcb_level

    @property
    def instance_id(self) -> bytes:
        return self._machine.instance_id

    @property
    def root_address(self) -> str:
        return self._machine.root_address

    def __repr__(self) -> str:
        return f"EnclavePlatform({self.tee_name}, measurement=0x{self.measurement.hex()[:16]}..)"

    def now(self) -> int:
        return int(self._clock())

    @staticmethod
    def random(n: int) -> bytes:
        return os.urandom(n)

    def attest(self, enclave_address: str, enc_key_hash: bytes, expiry: int | None = None) -> Quote:
        """A quote binding this enclave's measurement to its signing address and encryption key.

        ``expiry`` defaults to (and is capped at) now + the platform's maximum quote validity.
        """
        if len(enc_key_hash) != 32:
            raise ValueError("enc_key_hash has 32 bytes")
        cap = self.now() + self._machine.max_quote_validity
        expiry = cap if expiry is None else min(int(expiry), cap)
        return self._machine._quote(self.measurement, enclave_address, enc_key_hash, expiry)

    def _sealing_key(self, label: bytes) -> bytes:
        # EGETKEY(KEYPOLICY=MRENCLAVE) analogue: HKDF of the instance secret over the measurement.
        return derive_sealing_key(self._machine._sealing_key_material(), self.tee_type, self.measurement, label)

    def seal(self, data: bytes, label: bytes = b"") -> bytes:
        """Encrypt ``data`` so only this measurement on this machine can unseal it."""
        return seal_data(self._sealing_key(label), self.tee_type, self.instance_id, self.measurement, label, data)

    def unseal(self, blob: bytes, label: bytes = b"") -> bytes:
        """Decrypt a sealed blob; raises ``SealingError`` saying which check failed."""
        return open_sealed(self._sealing_key(label), self.tee_type, self.instance_id, self.measurement, label, blob)

    def _counter_store(self) -> CounterStore:
        if self._counters is None:
            self._counters = CounterStore(self._machine.nv_dir, self._sealing_key(COUNTER_DOMAIN), self.measurement)
        return self._counters

    def counter_read(self, counter_id: bytes) -> CounterValue:
        """The machine's monotonic counter ``counter_id`` of this measurement (0, 0 if never advanced)."""
        return self._counter_store().read(counter_id)

    def counter_advance(self, counter_id: bytes, expected: int, high: int) -> CounterValue:
        """Advance counter ``counter_id`` by one (if its count is ``expected``) and raise its
        high-water mark to ``high``; durable when it returns."""
        return self._counter_store().advance(counter_id, expected, high)


# --------------------------------------------------------------------------- the four platforms

_SIM_MRSIGNER = keccak256(b"EnclaveNet.sim.enclave-author.v1")


def _h(label: str) -> bytes:
    return keccak256(b"EnclaveNet.sim." + label.encode())


class SgxPlatform(SimulatedPlatform):
    """Intel SGX: mrenclave (= measurement), mrsigner, isv_prod_id, isv_svn, cpu_svn, attributes."""

    tee_name = "sgx"
    default_tcb_level = 15

    def report_fields(self, measurement: bytes, report_data: bytes) -> dict[str, Any]:
        return {
            "mrenclave": measurement,
            "mrsigner": _SIM_MRSIGNER,
            "isv_prod_id": 1,
            "isv_svn": 1,
            "cpu_svn": bytes([self.tcb_level]) + b"\x00" * 15,
            "attributes": bytes([0x05]) + b"\x00" * 7 + bytes([0xE7]) + b"\x00" * 7,  # INIT|MODE64, no DEBUG
            "report_data": report_data,
        }


class TdxPlatform(SimulatedPlatform):
    """Intel TDX: mrtd (= measurement), rtmr0..3, mrseam, td_attributes, tcb_svn."""

    tee_name = "tdx"
    default_tcb_level = 6

    def report_fields(self, measurement: bytes, report_data: bytes) -> dict[str, Any]:
        return {
            "mrtd": measurement,
            "rtmr0": _h("tdx.firmware"),
            "rtmr1": _h("tdx.kernel"),
            "rtmr2": _h("tdx.cmdline"),
            "rtmr3": keccak256(b"EnclaveNet.sim.tdx.app", measurement),
            "mrseam": _h("tdx.seam-module"),
            "td_attributes": b"\x00" * 8,
            "tcb_svn": bytes([self.tcb_level, 1, 3]) + b"\x00" * 13,
            "report_data": report_data,
        }


class SevSnpPlatform(SimulatedPlatform):
    """AMD SEV-SNP: measurement, guest_svn, policy, vmpl, chip_id, reported_tcb."""

    tee_name = "sev-snp"
    default_tcb_level = 22

    def report_fields(self, measurement: bytes, report_data: bytes) -> dict[str, Any]:
        # reported_tcb (u64, little-endian bytes): boot_loader, tee, reserved*4, snp, microcode
        reported_tcb = bytes([3, 0, 0, 0, 0, 0, self.tcb_level, 209])
        return {
            "measurement": measurement,
            "guest_svn": 1,
            "policy": 0x30000,  # SMT allowed, no debug, no migration agent
            "vmpl": 0,
            "chip_id": self._chip_bytes(b"sev-snp.chip_id", 64),
            "reported_tcb": reported_tcb,
            "report_data": report_data,
        }


class CsvPlatform(SimulatedPlatform):
    """Hygon CSV (China Secure Virtualization): measure, vm_id, vm_version, policy, chip_id, build."""

    tee_name = "csv"
    default_tcb_level = 4

    def report_fields(self, measurement: bytes, report_data: bytes) -> dict[str, Any]:
        return {
            "measure": measurement,
            "vm_id": keccak256(b"EnclaveNet.sim.csv.vm", measurement)[:16],
            "vm_version": b"\x00" * 15 + b"\x01",
            "policy": 0x1,  # no debug
            "chip_id": self._chip_bytes(b"csv.chip_id", 16),
            "build": self.tcb_level,
            "user_pubkey_digest": _h("csv.user-pubkey"),
            "report_data": report_data,
        }


_PLATFORMS: dict[str, type[SimulatedPlatform]] = {
    c.tee_name: c for c in (SgxPlatform, TdxPlatform, SevSnpPlatform, CsvPlatform)
}


def platform_class(tee_name: str) -> type[SimulatedPlatform]:
    try:
        return _PLATFORMS[tee_name]
    except KeyError:
        raise ValueError(f"unknown TEE platform {tee_name!r}; expected one of {sorted(_PLATFORMS)}") from None


_B = bytes
_add_format(QuoteFormat(1, "mrenclave", {
    "mrenclave": (_B, 32), "mrsigner": (_B, 32), "isv_prod_id": (int, None), "isv_svn": (int, None),
    "cpu_svn": (_B, 16), "attributes": (_B, 16), "report_data": (_B, 64),
}, "cpu_svn", 0))
_add_format(QuoteFormat(2, "mrtd", {
    "mrtd": (_B, 32), "rtmr0": (_B, 32), "rtmr1": (_B, 32), "rtmr2": (_B, 32), "rtmr3": (_B, 32),
    "mrseam": (_B, 32), "td_attributes": (_B, 8), "tcb_svn": (_B, 16), "report_data": (_B, 64),
}, "tcb_svn", 0))
_add_format(QuoteFormat(3, "measurement", {
    "measurement": (_B, 32), "guest_svn": (int, None), "policy": (int, None), "vmpl": (int, None),
    "chip_id": (_B, 64), "reported_tcb": (_B, 8), "report_data": (_B, 64),
}, "reported_tcb", 6))
_add_format(QuoteFormat(4, "measure", {
    "measure": (_B, 32), "vm_id": (_B, 16), "vm_version": (_B, 16), "policy": (int, None),
    "chip_id": (_B, 16), "build": (int, None), "user_pubkey_digest": (_B, 32), "report_data": (_B, 64),
}, "build", None))
