"""Who the enclave trusts: the committee (attested members), QCs; the never-sign-twice guard and the
timeout-certificate check live in guard.py (re-exported here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..crypto.hashing import (
    ZERO32,
    addr_word,
    address_bytes,
    domain_tag,
    keccak256,
    to_checksum,
    u256,
)
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


COMMITTEE_DOMAIN = domain_tag("EnclaveNet.Committee.v1")
MAX_REMOVED = 4096  # addresses removed from the committee, never re-admitted (oldest forgotten first)


@dataclass(frozen=True)
class CommitteeContext:
    """What a committee certificate is bound to: one deployment, and the measured floors."""

    chain_id: int
    l1_chain_id: int
    rollup: str
    min_quorum: int
    min_types: int


def committee_digest(ctx: CommitteeContext, version: int, members: list[Member], quorum: int, min_types: int) -> bytes:
    """What a member signs to certify committee ``version``: keccak256(domain, chain id, L1 chain
    id, rollup, version, quorum, min_types, members sorted by address (address, type,
    encryption key hash, measurement)). Its own domain: never a header or an export digest."""
    parts = [
        COMMITTEE_DOMAIN,
        u256(ctx.chain_id),
        u256(ctx.l1_chain_id),
        addr_word(ctx.rollup),
        u256(version),
        u256(quorum),
        u256(min_types),
    ]
    for m in sorted(members, key=lambda m: address_bytes(m.address)):
        parts.append(address_bytes(m.address) + bytes([m.tee_type]) + m.enc_key_hash + m.measurement)
    return keccak256(*parts)


class Committee:
    """The attested members this enclave trusts, the QC rule (quorum, min TEE types).

    The rule never goes below the measured floors (``CommitteeContext``). The first committee
    an enclave is given is taken from its host (there is nothing to check it against); after
    that the host alone may only make the committee STRICTER: drop members (revocation),
    refresh a member's quote, raise quorum or min_types. Adding a member or lowering the rule
    needs a certificate: signatures over ``committee_digest`` of the new committee at a higher
    ``version`` by a QC of the CURRENT committee (its own rule). A member once removed is never
    re-admitted (a certificate signed before its removal cannot bring it back).
    """

    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        self.quorum = 0
        self.min_types = 0
        self.version = 0
        self.removed: dict[str, None] = {}  # insertion-ordered set

    @staticmethod
    def _build(members: list[QuoteClaims], quorum: int, min_types: int, ctx: CommitteeContext) -> dict[str, Member]:
        by_addr: dict[str, Member] = {}
        for c in members:
            by_addr[c.enclave] = Member(c.enclave, c.tee_type, c.enc_key_hash, c.measurement)
        n_types = len({m.tee_type for m in by_addr.values()})
        if quorum < ctx.min_quorum:
            raise EnclaveRefusal(f"committee: quorum {quorum} is below this program's floor {ctx.min_quorum}")
        if min_types < ctx.min_types:
            raise EnclaveRefusal(f"committee: min_types {min_types} is below this program's floor {ctx.min_types}")
        if not 1 <= quorum <= len(by_addr):
            raise EnclaveRefusal(f"committee: quorum {quorum} must be in [1, {len(by_addr)}] (members)")
        if not 1 <= min_types <= n_types:
            raise EnclaveRefusal(f"committee: min_types {min_types} must be in [1, {n_types}] (TEE types present)")
        return by_addr

    def proposal(self, members: list[QuoteClaims], quorum: int, min_types: int, ctx: CommitteeContext,
                 at: int = 0) -> tuple[int, bytes]:
        """(version, digest) a member signs to certify this committee as the next one, at version
        ``max(current + 1, at)`` (a version is only ever used upward: an old certificate cannot be
        replayed over a newer committee)."""
        if not self.members:
            raise EnclaveRefusal("committee_sign: this enclave has no committee yet (call 'committee' first)")
        by_addr = self._build(members, quorum, min_types, ctx)
        back = [a for a in by_addr if a in self.removed]
        if back:
            raise EnclaveRefusal(f"committee_sign: {back[0]} was removed from the committee and is never re-admitted")
        version = max(self.version + 1, at)
        return version, committee_digest(ctx, version, list(by_addr.values()), quorum, min_types)

    def update(
        self,
        members: list[QuoteClaims],
        quorum: int,
        min_types: int,
        ctx: CommitteeContext,
        version: int | None = None,
        signatures: list[Any] | None = None,
    ) -> str:
        """Replace the committee if allowed (see the class docstring); returns how: "genesis",
        "stricter" or "certified"; refuses saying what is missing otherwise (nothing changes)."""
        by_addr = self._build(members, quorum, min_types, ctx)
        back = [a for a in by_addr if a in self.removed]
        if back:
            raise EnclaveRefusal(f"committee: {back[0]} was removed from the committee and is never re-admitted")
        if not self.members:
            how = "genesis"
        elif signatures is None:
            added = [a for a, m in by_addr.items() if self.members.get(a) != m]
            if added or quorum < self.quorum or min_types < self.min_types:
                what = f"adds member {added[0]}" if added else "lowers the QC rule"
                raise EnclaveRefusal(
                    f"committee: the new committee {what}: that needs a certificate (version, signatures): "
                    "a QC of the current committee over it (ecall committee_sign on the members)"
                )
            how = "stricter"
        else:
            if version is None or version <= self.version:
                raise EnclaveRefusal(
                    f"committee: a certified committee needs a version above the current {self.version}"
                )
            digest = committee_digest(ctx, version, list(by_addr.values()), quorum, min_types)
            try:
                self.check_signatures(digest, signatures, skip_outsiders=True)
            except EnclaveRefusal as exc:
                raise EnclaveRefusal(f"committee: certificate refused: {exc}") from None
            how = "certified"
        for a in self.members:
            if a not in by_addr:
                self.removed[a] = None
        while len(self.removed) > MAX_REMOVED:
            self.removed.pop(next(iter(self.removed)))
        self.members, self.quorum, self.min_types = by_addr, quorum, min_types
        if version is not None and how != "stricter":
            self.version = version  # genesis: a joiner takes the version the others are at
        return how

    def require_member(self, address: str, what: str) -> Member:
        m = self.members.get(to_checksum(address))
        if m is None:
            raise EnclaveRefusal(f"{what}: {address} is not a member of this enclave's committee")
        return m

    def check_qc(self, header_hash: bytes, signatures: list[Any], l1_chain_id: int, rollup: str) -> list[str]:
        """Check a QC over ``header_hash``; return its signers or refuse saying what is missing."""
        return self.check_signatures(header_signing_digest(header_hash, l1_chain_id, rollup), signatures)

    def check_signatures(self, digest: bytes, signatures: list[Any], *, skip_outsiders: bool = False) -> list[str]:
        """Signatures over ``digest`` by distinct members, >= quorum, spanning >= min_types types.
        ``skip_outsiders`` (certificates, gathered by a host from whoever answered): a signature
        that recovers to a non-member (a newcomer, or another version's digest) does not count,
        instead of refusing the lot."""
        if not self.members:
            raise EnclaveRefusal("QC: this enclave has no committee yet (call 'committee' first)")
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
            if m is None and skip_outsiders:
                continue
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
            "version": self.version,
            "removed": list(self.removed),
            "members": [[m.address, m.tee_type, m.enc_key_hash, m.measurement] for m in self.members.values()],
        }

    def load_cbor(self, m: dict[str, Any]) -> None:
        self.quorum = int(m["quorum"])
        self.min_types = int(m["min_types"])
        self.version = int(m.get("version", 0))
        self.removed = {str(a): None for a in m.get("removed", [])}
        self.members = {a: Member(a, int(t), bytes(h), bytes(meas)) for a, t, h, meas in m["members"]}

    def merge_newer(self, running: Committee) -> None:
        """Restoring a local blob into a running enclave: never go back to an older committee.
        Keeps whichever committee has the higher version (the running one on a tie: it may have
        dropped members since), and the union of removed members (dropped from the kept set)."""
        if running.members and running.version >= self.version:
            self.members, self.quorum, self.min_types, self.version = (
                dict(running.members), running.quorum, running.min_types, running.version
            )
        for a in running.removed:
            self.removed[a] = None
        for a in [a for a in self.members if a in self.removed]:
            del self.members[a]


def quote_bytes(q: Quote | bytes) -> bytes:
    return q.encode() if isinstance(q, Quote) else q


__all__ = [
    "ZERO32",
    "Committee",
    "CommitteeContext",
    "Member",
    "SignGuard",
    "check_quote",
    "check_timeout_certificate",
    "committee_digest",
    "quote_bytes",
]
