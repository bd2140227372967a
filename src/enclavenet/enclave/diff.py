"""A batch's state diff: the executor's net write set, for members that do not re-execute.

The proposer's executor records, at ``end_batch``, exactly what it commits: every account whose
(nonce, balance, code) changed, every storage slot whose value changed, the self-destructed
accounts, the withdrawal queue left after the header's withdrawals (with who queued each one),
and the inputs of the per-contract key chains (policies set, executions of keyed contracts).
``Executor.apply_diff`` commits the same thing through the same code path on another member's
state, so a member that applies the diff of a QC'd header ends in the state it would have reached
by re-executing -- checked by the header's state and balances roots (``program._apply_diff``).

Encoding (canonical CBOR, sealed by the program under the epoch state key)::

    {v: 1,
     accounts: [[address(20), nonce, balance, code_hash(32), code | null], ...],
     storage:  [[address(20), [slot, value, slot, value, ...]], ...],      # value 0 = cleared
     wiped:    [address(20), ...],
     queue:    [[recipient(20), amount, sender(20)], ...],
     key_policies: [[contract(20), every_n, keep_history, deploy_nonce], ...],
     key_counts:   [[contract(20), executions], ...]}

``decode`` checks every type and range (it never trusts the bytes: a compromised proposer may
have written them) and refuses with a message that names the field, never a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cbor2

from ..crypto.hashing import ZERO32, address_bytes, keccak256, to_checksum
from ..crypto.header import Withdrawal
from .contract_keys import PolicyCall
from .errors import EnclaveRefusal
from .state import KECCAK_EMPTY, MAX_QUEUED_WITHDRAWALS, AccountChange

DIFF_VERSION = 1
_U256 = 1 << 256
_U64 = 1 << 64


class DiffError(EnclaveRefusal):
    """A state diff is malformed (the message names the field, never a value)."""


@dataclass
class BatchDiff:
    """The net changes one batch committed (the arguments of the executor's commit)."""

    accounts: dict[bytes, AccountChange] = field(default_factory=dict)
    storage: dict[bytes, dict[int, int]] = field(default_factory=dict)
    wiped: set[bytes] = field(default_factory=set)
    withdrawal_queue: tuple[Withdrawal, ...] = ()
    queue_senders: tuple[bytes, ...] = ()
    key_policies: dict[bytes, PolicyCall] = field(default_factory=dict)
    key_counts: dict[bytes, int] = field(default_factory=dict)

    def __repr__(self) -> str:  # balances and storage are confidential: counts only
        return (
            f"BatchDiff(accounts={len(self.accounts)}, slots={sum(len(s) for s in self.storage.values())}, "
            f"wiped={len(self.wiped)}, queued={len(self.withdrawal_queue)})"
        )

    def encode(self) -> bytes:
        m: dict[str, Any] = {
            "v": DIFF_VERSION,
            "accounts": [
                [a, ch.nonce, ch.balance, ch.code_hash, ch.code] for a, ch in sorted(self.accounts.items())
            ],
            "storage": [[a, [x for kv in sorted(s.items()) for x in kv]] for a, s in sorted(self.storage.items())],
            "wiped": sorted(self.wiped),
            "queue": [
                [address_bytes(w.recipient), w.amount, s]
                for w, s in zip(self.withdrawal_queue, self.queue_senders, strict=True)
            ],
            "key_policies": [
                [a, p.every_n, p.keep_history, p.deploy_nonce] for a, p in sorted(self.key_policies.items())
            ],
            "key_counts": [[a, n] for a, n in sorted(self.key_counts.items())],
        }
        return cbor2.dumps(m, canonical=True)

    @classmethod
    def decode(cls, data: bytes) -> BatchDiff:
        try:
            m = cbor2.loads(data)
        except Exception as exc:  # cbor2 raises several types
            raise DiffError(f"state diff is not valid CBOR ({type(exc).__name__})") from None
        if not isinstance(m, dict) or m.get("v") != DIFF_VERSION:
            raise DiffError(f"state diff must be a CBOR map with v={DIFF_VERSION}")
        d = cls()
        for item in _list(m, "accounts"):
            if not isinstance(item, list) or len(item) != 5:
                raise DiffError("state diff accounts entries must be [address, nonce, balance, code_hash, code]")
            a, nonce, balance, code_hash, code = item
            a = _addr(a, "accounts")
            if not _uint(nonce, _U64) or not _uint(balance, _U256):
                raise DiffError("state diff account nonce must be uint64 and balance uint256")
            if not isinstance(code_hash, bytes) or len(code_hash) != 32:
                raise DiffError("state diff account code_hash must be 32 bytes")
            if code is not None:
                if not isinstance(code, bytes) or code_hash == KECCAK_EMPTY or keccak256(code) != code_hash:
                    raise DiffError("state diff account code does not match its code_hash")
            if a in d.accounts:
                raise DiffError("state diff lists an account twice")
            d.accounts[a] = AccountChange(nonce, balance, code_hash, code)
        for item in _list(m, "storage"):
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], list) or len(item[1]) % 2:
                raise DiffError("state diff storage entries must be [address, [slot, value, ...]]")
            a = _addr(item[0], "storage")
            flat = item[1]
            slots: dict[int, int] = {}
            for i in range(0, len(flat), 2):
                if not (_uint(flat[i], _U256) and _uint(flat[i + 1], _U256)):
                    raise DiffError("state diff storage slots and values must be uint256")
                slots[flat[i]] = flat[i + 1]
            if a in d.storage or len(slots) != len(flat) // 2:
                raise DiffError("state diff lists an account's storage or a slot twice")
            d.storage[a] = slots
        d.wiped = {_addr(a, "wiped") for a in _list(m, "wiped")}
        queue = _list(m, "queue")
        if len(queue) > MAX_QUEUED_WITHDRAWALS:
            raise DiffError(f"state diff queue has more than {MAX_QUEUED_WITHDRAWALS} withdrawals")
        ws: list[Withdrawal] = []
        senders: list[bytes] = []
        for item in queue:
            if not isinstance(item, list) or len(item) != 3:
                raise DiffError("state diff queue entries must be [recipient, amount, sender]")
            r = _addr(item[0], "queue")
            if not _uint(item[1], _U256) or item[1] == 0 or r == ZERO32[:20]:
                raise DiffError("state diff queue entries need a non-zero recipient and amount")
            ws.append(Withdrawal(to_checksum(r), item[1]))
            senders.append(_addr(item[2], "queue"))
        d.withdrawal_queue, d.queue_senders = tuple(ws), tuple(senders)
        for item in _list(m, "key_policies"):
            if not isinstance(item, list) or len(item) != 4:
                raise DiffError("state diff key_policies entries must be [contract, every_n, keep_history, deploy_nonce]")
            a = _addr(item[0], "key_policies")
            every_n, keep, deploy_nonce = item[1], item[2], item[3]
            if not (_uint(every_n, _U64) and every_n >= 1 and isinstance(keep, bool) and _uint(deploy_nonce, _U64)):
                raise DiffError("state diff key policy has a bad every_n, keep_history or deploy_nonce")
            d.key_policies[a] = PolicyCall(a, every_n, keep, deploy_nonce)
        for item in _list(m, "key_counts"):
            if not isinstance(item, list) or len(item) != 2 or not _uint(item[1], _U64):
                raise DiffError("state diff key_counts entries must be [contract, executions]")
            d.key_counts[_addr(item[0], "key_counts")] = item[1]
        return d


def _list(m: dict[str, Any], name: str) -> list[Any]:
    v = m.get(name)
    if not isinstance(v, list):
        raise DiffError(f"state diff field '{name}' must be an array")
    return v


def _addr(a: Any, name: str) -> bytes:
    if not isinstance(a, bytes) or len(a) != 20:
        raise DiffError(f"state diff field '{name}' holds an address that is not 20 bytes")
    return a


def _uint(x: Any, bound: int) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < bound


__all__ = ["DIFF_VERSION", "BatchDiff", "DiffError"]
