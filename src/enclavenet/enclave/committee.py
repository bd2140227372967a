"""Who the enclave trusts: the committee (attested members), QCs; the never-sign-twice guard and the
timeout-certificate check live in guard.py (re-exported here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..crypto.hashing import ZERO32, to_checksum
from ..crypto.header import header_signing_digest
from ..crypto.secp256k1 import SignatureError, recover_address
from ..tee.platform import Quote, QuoteClaims, QuoteError, verify_quote
from .errors import EnclaveRefusal
from .guard import SignGuard, check_timeout_certificate

MAX_MEMBERS = 256


@dataclass(frozen=True)
class Member:
    address: str
    tee_type: int
    enc_key_hash: bytes
    measurement: bytes


def check_quote(
    quote: bytes,
    roots: Mapping[int, str],
    measurements: frozenset[bytes] | None,
    now: int | None,
    what: str,
) -> QuoteClaims:
    """Verify a member's quote under the configured platform roots; refuse saying why."""
    try:
        return verify_quote(quote, roots, now=now, allowed_measurements=measurements)
    except QuoteError as exc:
        raise EnclaveRefusal(f"{what}: quote refused: {exc}") from None


class Committee:
    """The attested members this enclave trusts, the QC rule (quorum, min TEE types)."""

    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        self.quorum = 0
        self.min_types = 0

    def set(self, members: list[QuoteClaims], quorum: int, min_types: int) -> None:
        by_addr: dict[str, Member] = {}
        for c in members:
            by_addr[c.enclave] = Member(c.enclave, c.tee_type, c.enc_key_hash, c.measurement)
        n_types = len({m.tee_type for m in by_addr.values()})
        if not 1 <= quorum <= len(by_addr):
            raise EnclaveRefusal(f"committee: quorum {quorum} must be in [1, {len(by_addr)}] (members)")
        if not 1 <= min_types <= n_types:
            raise EnclaveRefusal(f"committee: min_types {min_types} must be in [1, {n_types}] (TEE types present)")
        self.members, self.quorum, self.min_types = by_addr, quorum, min_types

    def require_member(self, address: str, what: str) -> Member:
        m = self.members.get(to_checksum(address))
        if m is None:
            raise EnclaveRefusal(f"{what}: {address} is not a member of this enclave's committee")
        return m

    def check_qc(self, header_hash: bytes, signatures: list[Any], l1_chain_id: int, rollup: str) -> list[str]:
        """Check a QC over ``header_hash``; return its signers or refuse saying what is missing."""
        if not self.members:
            raise EnclaveRefusal("QC: this enclave has no committee yet (call 'committee' first)")
        digest = header_signing_digest(header_hash, l1_chain_id, rollup)
        signers: list[str] = []
        types: set[int] = set()
        for i, sig in enumerate(signatures):
            if not isinstance(sig, bytes):
                raise EnclaveRefusal(f"QC: signature {i} must be a byte string")
            try:
                who = recover_address(digest, sig)
            except SignatureError as exc:
                raise EnclaveRefusal(f"QC: signature {i} is malformed: {exc}") from None
            m = self.members.get(who)
            if m is None:
                raise EnclaveRefusal(f"QC: signature {i} is by {who}, not a committee member (or another header)")
            if who in signers:
                raise EnclaveRefusal(f"QC: {who} signed twice")
            signers.append(who)
            types.add(m.tee_type)
        if len(signers) < self.quorum:
            raise EnclaveRefusal(f"QC: {len(signers)} member signatures, quorum is {self.quorum}")
        if len(types) < self.min_types:
            raise EnclaveRefusal(f"QC: signers span {len(types)} TEE types, {self.min_types} required")
        return signers

    def to_cbor(self) -> dict[str, Any]:
        return {
            "quorum": self.quorum,
            "min_types": self.min_types,
            "members": [[m.address, m.tee_type, m.enc_key_hash, m.measurement] for m in self.members.values()],
        }

    def load_cbor(self, m: dict[str, Any]) -> None:
        self.quorum = int(m["quorum"])
        self.min_types = int(m["min_types"])
        self.members = {a: Member(a, int(t), bytes(h), bytes(meas)) for a, t, h, meas in m["members"]}


def quote_bytes(q: Quote | bytes) -> bytes:
    return q.encode() if isinstance(q, Quote) else q


__all__ = ["ZERO32", "Committee", "Member", "SignGuard", "check_quote", "check_timeout_certificate", "quote_bytes"]
