"""The signing guard: one header per (height, round), rounds opened only by timeout certificates,
and at most one batch input executed per unfinalised (height, parent, round).

Rules (docs/NODE.md "Rounds" has the safety argument):

* Every unfinalised height has a current round (0 at first). The enclave signs a header at
  ``(h, r)`` only when ``r`` is its current round at ``h``, it has not timed out round ``r``,
  and it signed no other header in round ``r`` on the same parent. Signing the same header
  again is idempotent. (Headers on different parents cannot both become final: their parents
  are two headers at h - 1, of which at most one is final -- so a pipelined h built on a
  header that lost at h - 1 does not block the h built on the winner.)
* ``timeout(h, r)`` (only for ``r`` >= the current round) reports the last header this enclave
  signed at ``h`` on the finalised parent (its *lock*) and bars any further header signature
  at rounds <= ``r``.
* Round ``r + 1`` is entered only with a timeout certificate (TC) for ``(h, r)``: timeout votes
  of >= quorum distinct members spanning >= min_types TEE types, for one parent. A header that
  could have a QC from rounds <= ``r`` (its lock count in the TC plus the members outside the TC
  reach quorum) *must* be the one signed in round ``r + 1``; otherwise the round is free.
* The input record: a batch input executed at ``(h, parent, r)`` (by ``execute_batch`` or
  ``verify_batch``) is the only one executed there. A different input needs a TC for a higher
  round, or a QC (``apply_batch``, which does not consult this record).
* Rollback (docs/ENCLAVE.md "Rollback protection"): every new signature, timeout or input record
  raises ``dirty`` to its height; the program advances the platform's monotonic counter (high-water
  mark >= ``dirty``) before any output of that ecall leaves. An enclave restored from a blob older
  than its counter may have signed, timed out or executed anything at heights up to the counter's
  high-water mark since: it sets ``amnesia`` to that height and refuses all three there (until those
  heights are finalised, which needs a QC: ``accept_header`` / ``apply_batch``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..crypto.hashing import ZERO32
from ..crypto.secp256k1 import SignatureError, recover_address
from ..crypto.timeout import timeout_digest
from .errors import EnclaveRefusal

MAX_ROUND = 1 << 32
MAX_INPUTS_PER_HEIGHT = 4096  # (parent, round) input records kept per unfinalised height
ANY_PARENT = b""  # a signature recorded before parents were (v1 record): conflicts on every parent


@dataclass
class _Slot:
    """What the guard remembers about one unfinalised height."""

    round: int = 0
    timed_out: int = -1  # highest round this enclave signed a timeout for
    signed: dict[tuple[bytes, int], bytes] = field(default_factory=dict)  # (parent, round) -> header hash
    timeouts: dict[int, bytes] = field(default_factory=dict)  # round -> lock reported in its timeout
    inputs: dict[tuple[bytes, int], bytes] = field(default_factory=dict)  # (parent, round) -> input digest
    allowed: frozenset[bytes] | None = None  # headers the TC that opened ``round`` permits (None: any)

    def lock(self, parent: bytes | None = None) -> bytes:
        """The header signed in the highest round (on ``parent``; None: on any parent)."""
        mine = [(r, v) for (p, r), v in self.signed.items() if parent is None or p in (parent, ANY_PARENT)]
        return max(mine)[1] if mine else ZERO32

    def signed_on(self, parent: bytes, round_: int) -> bytes | None:
        return self.signed.get((parent, round_)) or self.signed.get((ANY_PARENT, round_))

    def to_cbor(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "timed_out": self.timed_out,
            "signed": [[p, r, v] for (p, r), v in sorted(self.signed.items())],
            "timeouts": [[r, v] for r, v in sorted(self.timeouts.items())],
            "inputs": [[p, r, d] for (p, r), d in sorted(self.inputs.items())],
            "allowed": None if self.allowed is None else sorted(self.allowed),
        }

    @classmethod
    def from_cbor(cls, m: dict[str, Any]) -> _Slot:
        allowed = m.get("allowed")
        return cls(
            round=int(m["round"]),
            timed_out=int(m["timed_out"]),
            signed={(bytes(p), int(r)): bytes(v) for p, r, v in m["signed"]},
            timeouts={int(r): bytes(v) for r, v in m["timeouts"]},
            inputs={(bytes(p), int(r)): bytes(d) for p, r, d in m["inputs"]},
            allowed=None if allowed is None else frozenset(bytes(a) for a in allowed),
        )


def check_timeout_certificate(
    member_types: Mapping[str, int],
    quorum: int,
    min_types: int,
    votes: list[Any],
    height: int,
    round_: int,
    parent: bytes,
    l1_chain_id: int,
    rollup: str,
) -> frozenset[bytes] | None:
    """Check a TC for ``(height, round_)`` at ``parent``: ``votes`` = ``[[locked, signature]]``, by
    members of ``member_types`` (address -> TEE type) under the QC rule (quorum, min_types).

    Returns the headers round ``round_ + 1`` must carry (one of them), or None when any header
    may be signed there. Refuses saying what is missing."""
    members = member_types
    if not members:
        raise EnclaveRefusal("TC: this enclave has no committee yet (call 'committee' first)")
    signers: dict[str, bytes] = {}
    types: set[int] = set()
    for i, v in enumerate(votes):
        if not (isinstance(v, list | tuple) and len(v) == 2 and isinstance(v[0], bytes) and isinstance(v[1], bytes)):
            raise EnclaveRefusal(f"TC: vote {i} must be [locked header hash (32 bytes), signature]")
        locked, sig = v
        if len(locked) != 32:
            raise EnclaveRefusal(f"TC: vote {i}: the locked header hash must be 32 bytes")
        try:
            who = recover_address(timeout_digest(l1_chain_id, rollup, height, round_, parent, locked), sig)
        except SignatureError as exc:
            raise EnclaveRefusal(f"TC: vote {i} is malformed: {exc}") from None
        tee = members.get(who)
        if tee is None:
            raise EnclaveRefusal(
                f"TC: vote {i} is by {who}, not a committee member (or a vote for another height, round or parent)"
            )
        if who in signers:
            raise EnclaveRefusal(f"TC: {who} voted twice")
        signers[who] = locked
        types.add(tee)
    if len(signers) < quorum:
        raise EnclaveRefusal(f"TC: {len(signers)} member timeout votes, quorum is {quorum}")
    if len(types) < min_types:
        raise EnclaveRefusal(f"TC: timeout voters span {len(types)} TEE types, {min_types} required")
    outside = len(members) - len(signers)
    counts: dict[bytes, int] = {}
    for locked in signers.values():
        if locked != ZERO32:
            counts[locked] = counts.get(locked, 0) + 1
    forced = frozenset(h for h, c in counts.items() if c + outside >= quorum)
    return forced or None


class SignGuard:
    """Never sign two headers in one (height, round), nor anything at or below finality; rounds
    move only on a TC; one executed input per (height, parent, round) (module docstring)."""

    def __init__(self) -> None:
        self.slots: dict[int, _Slot] = {}
        self.floor = 0  # finalised height: nothing at or below it is ever signed again
        self.amnesia = 0  # restored from a stale blob: nothing at heights <= it is signed, timed out or executed
        self.dirty: int | None = None  # highest height recorded since the platform counter last advanced

    # ------------------------------------------------------------------ views
    @property
    def signed(self) -> dict[int, bytes]:
        """Each unfinalised height this enclave signed at -> the last header it signed there."""
        return {h: s.lock() for h, s in self.slots.items() if s.signed}

    def has_signed(self, height: int, header_hash: bytes) -> bool:
        s = self.slots.get(height)
        return s is not None and header_hash in s.signed.values()

    def round(self, height: int) -> int:
        s = self.slots.get(height)
        return 0 if s is None else s.round

    def lock(self, height: int, parent: bytes | None = None) -> bytes:
        s = self.slots.get(height)
        return ZERO32 if s is None else s.lock(parent)

    def _slot(self, height: int) -> _Slot:
        s = self.slots.get(height)
        if s is None:
            s = self.slots[height] = _Slot()
        return s

    def _above_floor(self, height: int, what: str) -> None:
        if height <= self.floor:
            raise EnclaveRefusal(f"will not {what} at height {height}: heights <= {self.floor} are finalised")
        self._remembers(height, what)

    def _remembers(self, height: int, what: str) -> None:
        if height <= self.amnesia:
            raise EnclaveRefusal(
                f"will not {what} at height {height}: this enclave was restored from a sealed blob older than its "
                f"platform monotonic counter, so it may have signed up to height {self.amnesia} since and forgotten "
                f"it; it acts again above height {self.amnesia}, or once that height is finalised "
                "(accept_header / apply_batch with a QC)"
            )

    def _dirty(self, height: int) -> None:
        self.dirty = height if self.dirty is None else max(self.dirty, height)

    # ------------------------------------------------------------------ headers
    def check(self, height: int, header_hash: bytes, round_: int = 0, parent: bytes = ZERO32) -> None:
        self._above_floor(height, "sign")
        s = self.slots.get(height)
        if s is None:
            if round_ != 0:
                raise EnclaveRefusal(
                    f"will not sign at height {height} round {round_}: this enclave is in round 0 there "
                    "(a timeout certificate for the round before opens a round)"
                )
            return
        prev = s.signed_on(parent, round_)
        if prev == header_hash:
            return  # the same header again in the same round: idempotent (host retry)
        if round_ != s.round:
            raise EnclaveRefusal(
                f"will not sign at height {height} round {round_}: this enclave is in round {s.round} there "
                "(a timeout certificate for the round before opens a round)"
            )
        if round_ <= s.timed_out:
            raise EnclaveRefusal(
                f"will not sign at height {height} round {round_}: this enclave timed out that round"
            )
        if prev is not None:
            raise EnclaveRefusal(
                f"will not sign a second header at height {height} (round {round_}): this enclave already "
                f"signed header 0x{prev.hex()} there"
            )
        if s.allowed is not None and header_hash not in s.allowed:
            raise EnclaveRefusal(
                f"will not sign a second header at height {height}: the timeout certificate that opened round "
                f"{round_} shows header(s) {', '.join('0x' + a.hex() for a in sorted(s.allowed))} may hold a QC; "
                "only such a header is signed in this round"
            )

    def record(self, height: int, header_hash: bytes, round_: int = 0, parent: bytes = ZERO32) -> None:
        self.check(height, header_hash, round_, parent)
        s = self._slot(height)
        if s.signed.get((parent, round_)) != header_hash:
            s.signed[(parent, round_)] = header_hash
            self._dirty(height)

    # ------------------------------------------------------------------ rounds
    def timeout(self, height: int, round_: int, parent: bytes = ZERO32) -> bytes:
        """Record a timeout vote for ``(height, round_)`` on ``parent`` (the finalised header at
        ``height - 1``); return the lock it reports."""
        self._above_floor(height, "time out")
        s = self._slot(height)
        if round_ in s.timeouts:
            return s.timeouts[round_]  # the same vote again (host retry)
        if round_ < s.round or round_ <= s.timed_out:
            raise EnclaveRefusal(
                f"timeout: height {height} is in round {s.round} here (timed out up to round {s.timed_out}); "
                f"round {round_} is over"
            )
        if round_ >= MAX_ROUND:
            raise EnclaveRefusal(f"timeout: round {round_} is beyond the limit {MAX_ROUND - 1}")
        lock = s.lock(parent)
        s.timeouts[round_] = lock
        s.timed_out = round_
        self._dirty(height)
        return lock

    def enter_round(self, height: int, round_: int, allowed: frozenset[bytes] | None) -> None:
        """Move ``height`` to ``round_`` (the caller checked a TC for ``round_ - 1``)."""
        self._above_floor(height, "enter a round")
        s = self._slot(height)
        if round_ > s.round:
            s.round, s.allowed = round_, allowed

    # ------------------------------------------------------------------ the input record
    def check_input(self, height: int, parent: bytes, round_: int, digest: bytes) -> None:
        if height > self.floor:
            self._remembers(height, "execute")
        s = self.slots.get(height)
        if s is None:
            if round_ != 0:
                raise EnclaveRefusal(
                    f"will not execute at height {height} round {round_}: this enclave is in round 0 there"
                )
            return
        prev = s.inputs.get((parent, round_))
        if prev is not None and prev != digest:
            raise EnclaveRefusal(
                f"will not execute a second batch input at height {height} round {round_}: this enclave already "
                "executed another one there; a different batch needs a timeout certificate for a later round, "
                "or a QC'd header (apply_batch)"
            )
        if prev is None and round_ != s.round:
            raise EnclaveRefusal(
                f"will not execute at height {height} round {round_}: this enclave is in round {s.round} there"
            )
        if prev is None and len(s.inputs) >= MAX_INPUTS_PER_HEIGHT:
            raise EnclaveRefusal(f"will not execute at height {height}: too many batch inputs recorded there")

    def record_input(self, height: int, parent: bytes, round_: int, digest: bytes) -> None:
        self.check_input(height, parent, round_, digest)
        s = self._slot(height)
        if (parent, round_) not in s.inputs:
            s.inputs[(parent, round_)] = digest
            self._dirty(height)

    # ------------------------------------------------------------------ finality and persistence
    def finalize(self, height: int) -> None:
        self.floor = max(self.floor, height)
        for h in [h for h in self.slots if h <= self.floor]:
            del self.slots[h]

    def merge(self, other: SignGuard) -> None:
        """Union with another record of this same enclave (restore never forgets a signature,
        a timeout, a round or an executed input)."""
        for h, o in other.slots.items():
            s = self._slot(h)
            for k, v in o.signed.items():
                s.signed.setdefault(k, v)
            for r, t in o.timeouts.items():
                s.timeouts.setdefault(r, t)
            for k, d in o.inputs.items():
                s.inputs.setdefault(k, d)
            s.timed_out = max(s.timed_out, o.timed_out)
            if o.round > s.round:
                s.round, s.allowed = o.round, o.allowed
        self.amnesia = max(self.amnesia, other.amnesia)
        if other.dirty is not None:
            self._dirty(other.dirty)
        self.finalize(max(self.floor, other.floor))

    def forget_up_to(self, height: int) -> None:
        """Safe mode: this record may lack what the enclave did at heights <= ``height``."""
        self.amnesia = max(self.amnesia, height)

    def to_cbor(self) -> dict[str, Any]:
        return {"v": 2, "floor": self.floor, "amnesia": self.amnesia,
                "slots": [[h, s.to_cbor()] for h, s in sorted(self.slots.items())]}

    @classmethod
    def from_cbor(cls, m: dict[str, Any]) -> SignGuard:
        g = cls()
        g.floor = int(m["floor"])
        g.amnesia = int(m.get("amnesia", 0))
        if "slots" in m:
            g.slots = {int(h): _Slot.from_cbor(s) for h, s in m["slots"]}
        else:  # v1 blobs: {height: header hash} signed in round 0
            g.slots = {int(h): _Slot(signed={(ANY_PARENT, 0): bytes(v)}) for h, v in m["signed"]}
        return g


__all__ = ["MAX_ROUND", "SignGuard", "check_timeout_certificate"]
