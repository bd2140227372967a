"""Never-sign-twice and QC checks of the enclave program (committee.py)."""

from __future__ import annotations

import pytest

from enclavenet.crypto.hashing import keccak256
from enclavenet.crypto.header import header_signing_digest
from enclavenet.crypto.secp256k1 import SigningKey
from enclavenet.enclave.committee import Committee, Member, SignGuard
from enclavenet.enclave.errors import EnclaveRefusal

ROLLUP = "0x" + "ab" * 20
H1, H2 = keccak256(b"one"), keccak256(b"two")


def test_guard_refuses_a_second_header_at_one_height_and_below_finality() -> None:
    g = SignGuard()
    g.record(5, H1)
    g.record(5, H1)  # the same header again: allowed (host retry)
    with pytest.raises(EnclaveRefusal, match="second header at height 5"):
        g.record(5, H2)
    g.finalize(5)
    with pytest.raises(EnclaveRefusal, match="finalised"):
        g.check(5, H1)
    # the record survives a round trip and a merge never forgets a signature
    g.record(6, H2)
    g2 = SignGuard.from_cbor(g.to_cbor())
    fresh = SignGuard()
    fresh.merge(g2)
    with pytest.raises(EnclaveRefusal, match="second header at height 6"):
        fresh.check(6, H1)
    with pytest.raises(EnclaveRefusal, match="finalised"):
        fresh.check(4, H1)


def _committee(keys: list[SigningKey], types: list[int], quorum: int, min_types: int) -> Committee:
    c = Committee()
    c.members = {k.address: Member(k.address, t, b"\0" * 32, b"\0" * 32) for k, t in zip(keys, types, strict=True)}
    c.quorum, c.min_types = quorum, min_types
    return c


def test_qc_needs_quorum_distinct_members_and_types() -> None:
    keys = [SigningKey.generate() for _ in range(4)]
    c = _committee(keys, [1, 1, 3, 3], quorum=3, min_types=2)
    digest = header_signing_digest(H1, 31337, ROLLUP)
    sigs = [k.sign(digest) for k in keys]
    assert len(c.check_qc(H1, sigs[:3], 31337, ROLLUP)) == 3
    with pytest.raises(EnclaveRefusal, match="quorum is 3"):
        c.check_qc(H1, sigs[:2], 31337, ROLLUP)
    with pytest.raises(EnclaveRefusal, match="signed twice"):
        c.check_qc(H1, [sigs[0], sigs[0], sigs[2]], 31337, ROLLUP)
    with pytest.raises(EnclaveRefusal, match="not a committee member"):
        c.check_qc(H2, sigs[:3], 31337, ROLLUP)  # signatures over another header
    with pytest.raises(EnclaveRefusal, match="not a committee member"):
        c.check_qc(H1, [*sigs[:2], SigningKey.generate().sign(digest)], 31337, ROLLUP)
    one_type = _committee(keys, [1, 1, 1, 3], quorum=3, min_types=2)
    with pytest.raises(EnclaveRefusal, match="span 1 TEE types"):
        one_type.check_qc(H1, sigs[:3], 31337, ROLLUP)
