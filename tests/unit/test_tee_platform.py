"""Simulated platforms: measurements, quotes under the right (and wrong) root, sealing."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import cbor2
import pytest

from enclavenet.crypto.quote import TEE_TYPES, enc_key_hash, quote_digest
from enclavenet.crypto.secp256k1 import SigningKey, recover_address
from enclavenet.tee import (
    CounterConflict,
    CounterError,
    CounterValue,
    Quote,
    QuoteError,
    SealingError,
    SimulatedVendor,
    measure_enclave,
    report_data_binding,
    verify_quote,
)
from enclavenet.tee import platform as platform_mod
from enclavenet.tee.platform import QUOTE_FORMATS, platform_from_spec

NAMES = ["sgx", "tdx", "sev-snp", "csv"]
NOW = 1_750_000_000
MEAS = measure_enclave("enclavenet.tee.testing:EchoProgram", {"chain_id": 1})


@pytest.fixture(scope="module")
def vendors() -> dict[str, SimulatedVendor]:
    return {n: SimulatedVendor.from_seed(n, b"test") for n in NAMES}


@pytest.fixture(scope="module")
def roots(vendors: dict[str, SimulatedVendor]) -> dict[int, str]:
    return {v.tee_type: v.root_address for v in vendors.values()}


def _quote(vendor: SimulatedVendor, *, tcb: int | None = None, expiry: int = NOW + 3600) -> tuple[Quote, SigningKey]:
    key = SigningKey.generate()
    plat = vendor.new_platform(tcb_level=tcb).enclave_view(MEAS, clock=lambda: NOW)
    return plat.attest(key.address, enc_key_hash(b"\x07" * 32), expiry), key


def test_vendor_roots_are_distinct_secp256k1_addresses(vendors: dict[str, SimulatedVendor]) -> None:
    addrs = {v.root_address for v in vendors.values()}
    assert len(addrs) == 4
    assert {v.tee_type for v in vendors.values()} == {TEE_TYPES[n] for n in NAMES}
    assert "secret" not in repr(vendors["sgx"]) and vendors["sgx"].root_key.secret.hex() not in repr(vendors["sgx"])


def test_measurement_depends_on_code_program_and_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    echo = "enclavenet.tee.testing:EchoProgram"
    m = measure_enclave(echo, {"chain_id": 1})
    assert len(m) == 32 and m == measure_enclave(echo, {"chain_id": 1})
    assert m != measure_enclave(echo, {"chain_id": 2})
    assert m != measure_enclave("enclavenet.enclave.program:EnclaveProgram", {"chain_id": 1})
    # the code itself: a copy of the trusted rooms with one byte changed measures differently
    fake = tmp_path / "enclavenet"
    for room in ("crypto", "enclave", "tee"):
        shutil.copytree(platform_mod._package_dir() / room, fake / room, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(platform_mod, "_package_dir", lambda: fake)
    copy = measure_enclave(echo, {"chain_id": 1})
    target = fake / "crypto" / "hashing.py"
    target.write_bytes(target.read_bytes() + b"\n")
    assert measure_enclave(echo, {"chain_id": 1}) != copy


@pytest.mark.parametrize("name", NAMES)
def test_quote_verifies_under_its_own_root_and_root_signs_quote_digest(
    name: str, vendors: dict[str, SimulatedVendor], roots: dict[int, str]
) -> None:
    q, key = _quote(vendors[name])
    claims = verify_quote(q, roots, now=NOW)
    assert claims.tee_type == TEE_TYPES[name] and claims.tee_name == name
    assert claims.measurement == MEAS and claims.enclave == key.address
    assert claims.enc_key_hash == enc_key_hash(b"\x07" * 32)
    # the L1 Registry recovers the root from EXACTLY crypto.quote.quote_digest(...)
    digest = quote_digest(TEE_TYPES[name], MEAS, key.address, claims.enc_key_hash, NOW + 3600)
    assert recover_address(digest, q.signature) == vendors[name].root_address
    assert q.registration_args()[-1] == q.signature
    # vendor format: the measurement field and report_data binding
    fmt = QUOTE_FORMATS[TEE_TYPES[name]]
    assert q.fields[fmt.measurement_field] == MEAS
    assert q.fields["report_data"] == report_data_binding(key.address, claims.enc_key_hash)
    # round trip through bytes
    assert verify_quote(Quote.decode(q.encode()), roots, now=NOW) == claims


def test_vendor_formats_differ(vendors: dict[str, SimulatedVendor]) -> None:
    keys = {n: set(_quote(vendors[n])[0].fields) for n in NAMES}
    assert {"mrenclave", "mrsigner", "isv_svn", "cpu_svn"} <= keys["sgx"]
    assert {"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "tcb_svn"} <= keys["tdx"]
    assert {"measurement", "guest_svn", "policy", "chip_id", "reported_tcb"} <= keys["sev-snp"]
    assert {"measure", "vm_id", "vm_version", "policy", "chip_id", "build"} <= keys["csv"]
    assert len({frozenset(k) for k in keys.values()}) == 4


@pytest.mark.parametrize("name", NAMES)
def test_quote_refused_under_another_platforms_root(name: str, vendors: dict[str, SimulatedVendor]) -> None:
    q, _ = _quote(vendors[name])
    other = next(v for n, v in vendors.items() if n != name)
    # the other vendor's root registered for this quote's type: refused
    with pytest.raises(QuoteError, match="not signed by that platform's trusted root"):
        verify_quote(q, {q.tee_type: other.root_address}, now=NOW)
    # relabelling the quote as the other vendor's type: refused too
    relabelled = dataclasses.replace(q, tee_type=other.tee_type)
    with pytest.raises(QuoteError):
        verify_quote(relabelled, {other.tee_type: other.root_address}, now=NOW)
    with pytest.raises(QuoteError, match="no trusted root"):
        verify_quote(q, {other.tee_type: other.root_address}, now=NOW)


def test_quote_tampering_expiry_tcb_and_allow_list(vendors: dict[str, SimulatedVendor], roots: dict[int, str]) -> None:
    q, _key = _quote(vendors["sgx"])
    with pytest.raises(QuoteError, match="not signed by"):
        verify_quote(dataclasses.replace(q, measurement=b"\x01" * 32), roots, now=NOW)
    with pytest.raises(QuoteError, match="not signed by"):
        verify_quote(dataclasses.replace(q, enclave=SigningKey.generate().address), roots, now=NOW)
    with pytest.raises(QuoteError, match="fields altered"):
        verify_quote(dataclasses.replace(q, fields={**q.fields, "isv_svn": 9}), roots, now=NOW)
    with pytest.raises(QuoteError, match="expired"):
        verify_quote(q, roots, now=NOW + 3600)
    with pytest.raises(QuoteError, match="TCB level 3 is below the required 15"):
        verify_quote(_quote(vendors["sgx"], tcb=3)[0], roots, now=NOW, min_tcb={1: 15})
    assert verify_quote(q, roots, now=NOW, min_tcb={1: 15}).tcb_level == 15
    with pytest.raises(QuoteError, match="is not allowed"):
        verify_quote(q, roots, now=NOW, allowed_measurements=frozenset({b"\x00" * 32}))
    with pytest.raises(QuoteError):
        Quote.decode(b"\xff\x00garbage")


def test_quote_expiry_is_capped(vendors: dict[str, SimulatedVendor]) -> None:
    plat = vendors["tdx"].new_platform().enclave_view(MEAS, clock=lambda: NOW)
    q = plat.attest(SigningKey.generate().address, b"\x01" * 32, expiry=NOW + 10**9)
    assert q.expiry == NOW + plat._machine.max_quote_validity


def test_sealing_refuses_other_measurement_other_instance_and_tampering(vendors: dict[str, SimulatedVendor]) -> None:
    machine = vendors["sev-snp"].new_platform()
    enclave = machine.enclave_view(MEAS)
    blob = enclave.seal(b"state key material", label=b"keys")
    assert b"state key material" not in blob
    assert enclave.unseal(blob, label=b"keys") == b"state key material"
    # the same measurement on the same machine, e.g. after a restart
    assert machine.enclave_view(MEAS).unseal(blob, label=b"keys") == b"state key material"
    with pytest.raises(SealingError, match="different measurement"):
        machine.enclave_view(b"\x42" * 32).unseal(blob, label=b"keys")
    with pytest.raises(SealingError, match="different platform instance"):
        vendors["sev-snp"].new_platform().enclave_view(MEAS).unseal(blob, label=b"keys")
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(SealingError, match="tampered"):
        enclave.unseal(bytes(tampered), label=b"keys")
    with pytest.raises(SealingError, match="tampered"):
        enclave.unseal(blob, label=b"other")
    # forging the header to claim this instance/measurement does not help: the key differs
    other = vendors["sev-snp"].new_platform().enclave_view(MEAS)
    foreign = bytearray(other.seal(b"x"))
    foreign[2:18] = machine.instance_id
    with pytest.raises(SealingError, match="tampered"):
        enclave.unseal(bytes(foreign))
    with pytest.raises(SealingError, match="too short"):
        enclave.unseal(b"\x01")


def test_platform_repr_hides_secrets(vendors: dict[str, SimulatedVendor]) -> None:
    machine = vendors["csv"].new_platform()
    spec = machine.boot_spec()
    for r in (repr(machine), repr(machine.enclave_view(MEAS))):
        assert spec["instance_secret"].hex() not in r and spec["vendor_key"].hex() not in r


def test_monotonic_counter_survives_the_enclave_and_only_grows(vendors: dict[str, SimulatedVendor], tmp_path: Path) -> None:
    """The machine's counter service (tee/counter.py): outlives every enclave view / process (the
    runner rebuilds the machine from boot_spec, NV directory included), advances by one with
    compare-and-swap, its high-water mark never goes down, and it is scoped to the measurement."""
    machine = vendors["tdx"].new_platform(nv_dir=tmp_path / "nv")
    cid = b"guard"
    enclave = machine.enclave_view(MEAS)
    assert enclave.counter_read(cid) == CounterValue(0, 0)
    assert enclave.counter_advance(cid, 0, 7) == CounterValue(1, 7)
    assert enclave.counter_advance(cid, 1, 3) == CounterValue(2, 7)  # a lower mark never lowers it
    # a restarted enclave (new view; new process: the machine rebuilt from its boot spec) sees it
    assert machine.enclave_view(MEAS).counter_read(cid) == CounterValue(2, 7)
    rebuilt = platform_from_spec(machine.boot_spec())
    assert rebuilt.nv_dir == machine.nv_dir
    assert rebuilt.enclave_view(MEAS).counter_read(cid) == CounterValue(2, 7)
    # a stale caller (a second process from an old blob) cannot advance: compare-and-swap
    with pytest.raises(CounterConflict, match="at 2, not 1"):
        enclave.counter_advance(cid, 1, 100)
    assert enclave.counter_read(cid) == CounterValue(2, 7)
    # another measurement has its own counters; another machine too
    assert machine.enclave_view(b"\x42" * 32).counter_read(cid) == CounterValue(0, 0)
    assert vendors["tdx"].new_platform(nv_dir=tmp_path / "nv2").enclave_view(MEAS).counter_read(cid) == CounterValue()


def test_a_host_cannot_decrement_the_counter(vendors: dict[str, SimulatedVendor], tmp_path: Path) -> None:
    """The host side has no call that moves the counter; rewriting its file (a lower value, the
    file of another counter, garbage) without the machine key fails closed: the enclave then
    refuses, it never reads a lower value."""
    machine = vendors["sgx"].new_platform(nv_dir=tmp_path)
    enclave = machine.enclave_view(MEAS)
    for i in range(3):
        enclave.counter_advance(b"a", i, 10 + i)
    enclave.counter_advance(b"b", 0, 1)
    files = {p.name: p for p in tmp_path.glob("*.ctr")}
    assert len(files) == 2
    originals = {n: p.read_bytes() for n, p in files.items()}
    old_tag = next(iter(originals.values()))[-32:]
    for forged in (
        cbor2.dumps([1, 0], canonical=True) + old_tag,  # a lower value under a MAC seen before
        b"",
        b"\x00" * 40,
    ):
        for p in files.values():
            p.write_bytes(forged)
        with pytest.raises(CounterError, match="corrupt"):
            enclave.counter_read(b"a")
        with pytest.raises(CounterError, match="corrupt"):
            enclave.counter_advance(b"a", 1, 0)
    # the other counter's (validly MACed) file under this one's name: refused as well
    names = sorted(files)
    files[names[0]].write_bytes(originals[names[1]])
    files[names[1]].write_bytes(originals[names[0]])
    for cid in (b"a", b"b"):
        with pytest.raises(CounterError, match="MAC"):
            enclave.counter_read(cid)
    for n, p in files.items():
        p.write_bytes(originals[n])
    assert enclave.counter_read(b"a") == CounterValue(3, 12)
    # the host's view of the machine offers nothing that writes a counter
    assert not [m for m in dir(machine) if "counter" in m]
