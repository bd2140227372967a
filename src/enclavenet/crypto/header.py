"""The batch header: the one format the enclaves sign and the Rollup checks.

A header at height h extends the header at h-1 by ``prev_hash``. Its hash is
``keccak256(abi.encode(<13 fields in order>))`` -- the Rollup computes the same
from its ``Header`` struct. Enclaves sign ``signing_digest(...)`` which binds the
header hash to the L1 chain id and the Rollup address (no cross-deployment replay).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields

from eth_abi import encode as abi_encode

from .hashing import ZERO32, addr_word, b32, domain_tag, keccak256, u256

HEADER_DOMAIN = domain_tag("EnclaveNet.Header.v1")


@dataclass(frozen=True)
class Withdrawal:
    """Native value paid out on L1 when the header listing it is accepted."""

    recipient: str  # checksummed L1 address
    amount: int  # wei


def withdrawals_hash(withdrawals: list[Withdrawal] | tuple[Withdrawal, ...]) -> bytes:
    """keccak256(abi.encode((address,uint256)[])) -- Vyper's ``keccak256(abi_encode(ws))``."""
    return keccak256(
        abi_encode(["(address,uint256)[]"], [[(w.recipient, w.amount) for w in withdrawals]])
    )


EMPTY_WITHDRAWALS_HASH = withdrawals_hash([])


@dataclass(frozen=True)
class Header:
    height: int
    prev_hash: bytes  # hash of the header at height - 1 (genesis: ZERO32)
    epoch: int  # key epoch the batch was executed under
    epoch_key: bytes  # X25519 public key of ``epoch`` (32 bytes)
    l1_block: int  # every L1 message in blocks <= l1_block is consumed (whole blocks)
    msg_count: int  # cumulative number of L1 messages (deposits + inbox) consumed
    msg_acc: bytes  # L1 message accumulator after ``msg_count`` messages
    tx_root: bytes
    receipts_root: bytes
    state_root: bytes
    balances_root: bytes  # compact sparse Merkle root over native balances (salted leaves)
    withdrawals_hash: bytes  # see ``withdrawals_hash``
    data_commitment: bytes  # Merkle root of the batch data stored by the DAPs

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bytes) and len(v) != 32:
                raise ValueError(f"header field {f.name} must be 32 bytes, got {len(v)}")
            if isinstance(v, int) and not 0 <= v < 1 << 256:
                raise ValueError(f"header field {f.name} out of uint256 range")

    def encode(self) -> bytes:
        """abi.encode of the 13 static fields: 416 bytes."""
        return b"".join(u256(v) if isinstance(v, int) else b32(v) for v in astuple(self))

    @classmethod
    def decode(cls, data: bytes) -> Header:
        if len(data) != 32 * len(fields(cls)):
            raise ValueError(f"an encoded header has {32 * len(fields(cls))} bytes, got {len(data)}")
        vals: list[int | bytes] = []
        for i, f in enumerate(fields(cls)):
            word = data[32 * i : 32 * i + 32]
            vals.append(int.from_bytes(word, "big") if f.type in ("int", int) else word)
        return cls(*vals)  # type: ignore[arg-type]

    def hash(self) -> bytes:
        return keccak256(self.encode())

    def as_tuple(self) -> tuple[int | bytes, ...]:
        """The struct as web3.py passes it to the Rollup."""
        return astuple(self)

    def signing_digest(self, l1_chain_id: int, rollup: str) -> bytes:
        return header_signing_digest(self.hash(), l1_chain_id, rollup)


def header_signing_digest(header_hash: bytes, l1_chain_id: int, rollup: str) -> bytes:
    """What a committee enclave signs: keccak256(abi.encode(DOMAIN, chainid, rollup, hash))."""
    return keccak256(HEADER_DOMAIN, u256(l1_chain_id), addr_word(rollup), b32(header_hash))


GENESIS_PREV_HASH = ZERO32
