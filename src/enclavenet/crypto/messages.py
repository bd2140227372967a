"""L1 messages: deposits and inbox submissions, in L1 order, as one hash chain.

Every ``Rollup.deposit`` / ``Rollup.submit`` appends one message. The Rollup keeps only
the running accumulator and count; the header states how many messages its batch
consumed (``msg_count``) and the accumulator after them (``msg_acc``):

    acc_0     = keccak256("EnclaveNet.L1Messages.v1")
    acc_{i+1} = keccak256(abi.encode(acc_i, kind, sender, value, l1_block, payload_hash))
"""

from __future__ import annotations

from dataclasses import dataclass

from .hashing import addr_word, b32, domain_tag, keccak256, u256

MSG_GENESIS_ACC = domain_tag("EnclaveNet.L1Messages.v1")

KIND_USER = 1  # deposit (empty payload) and/or an encrypted transaction envelope
KIND_CHALLENGE = 2  # reserved: a challenged transaction (forced inclusion)


@dataclass(frozen=True)
class L1Message:
    index: int
    kind: int
    sender: str
    value: int
    l1_block: int
    payload: bytes

    @property
    def payload_hash(self) -> bytes:
        return keccak256(self.payload)

    def next_acc(self, prev_acc: bytes) -> bytes:
        return keccak256(
            b32(prev_acc),
            u256(self.kind),
            addr_word(self.sender),
            u256(self.value),
            u256(self.l1_block),
            self.payload_hash,
        )


def accumulate(prev_acc: bytes, messages: list[L1Message]) -> bytes:
    acc = prev_acc
    for m in messages:
        acc = m.next_acc(acc)
    return acc
