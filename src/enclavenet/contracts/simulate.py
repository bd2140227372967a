"""Simulated enclaves for the contracts' tests and the gas benchmark.

Nothing here runs in a TEE: a platform is a secp256k1 root key per TEE type, an enclave
is a signing key plus an X25519 public key, and a quote is the root's signature over
``enclavenet.crypto.quote.quote_digest`` -- exactly what the Registry checks. The real
platforms live in ``enclavenet.tee``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from enclavenet.crypto.header import Header
from enclavenet.crypto.quote import enc_key_hash, quote_digest
from enclavenet.crypto.secp256k1 import SigningKey

from .encoding import SigTuple, qc_signatures


@dataclass(frozen=True)
class Quote:
    tee_type: int
    measurement: bytes
    enclave: str
    enc_key_hash: bytes
    expiry: int
    signature: bytes

    def args(self) -> tuple[int, bytes, str, bytes, int, bytes]:
        """Arguments of ``Registry.register``."""
        return (self.tee_type, self.measurement, self.enclave, self.enc_key_hash, self.expiry,
                self.signature)


@dataclass(frozen=True)
class SimPlatform:
    tee_type: int
    root: SigningKey = field(default_factory=SigningKey.generate, repr=False)

    @property
    def root_address(self) -> str:
        return self.root.address

    def quote(self, enclave: SimEnclave, measurement: bytes, expiry: int) -> Quote:
        ekh = enc_key_hash(enclave.enc_public_key)
        digest = quote_digest(self.tee_type, measurement, enclave.address, ekh, expiry)
        return Quote(self.tee_type, measurement, enclave.address, ekh, expiry,
                     self.root.sign(digest))


@dataclass(frozen=True)
class SimEnclave:
    tee_type: int
    key: SigningKey = field(default_factory=SigningKey.generate, repr=False)
    enc_public_key: bytes = field(default_factory=lambda: os.urandom(32))

    @property
    def address(self) -> str:
        return self.key.address

    def sign_header(self, header: Header, chain_id: int, rollup: str) -> tuple[str, bytes]:
        return self.address, self.key.sign(header.signing_digest(chain_id, rollup))


def spread_types(n: int, types: Sequence[int] = (1, 2, 3, 4)) -> list[int]:
    """TEE types for an ``n``-member committee, round robin over ``types``."""
    return [types[i % len(types)] for i in range(n)]


def pick_qc(members: Sequence[SimEnclave], size: int, min_types: int) -> list[SimEnclave]:
    """``size`` members spanning at least ``min_types`` types: one per type first, then the rest."""
    chosen: list[SimEnclave] = []
    seen: set[int] = set()
    for m in members:
        if m.tee_type not in seen and len(seen) < min_types:
            seen.add(m.tee_type)
            chosen.append(m)
    for m in members:
        if len(chosen) >= size:
            break
        if m not in chosen:
            chosen.append(m)
    if len(chosen) < size or len(seen) < min_types:
        raise ValueError("not enough members or types for that QC")
    return chosen[:size]


def sign_qc(
    header: Header, signers: Sequence[SimEnclave], chain_id: int, rollup: str
) -> list[SigTuple]:
    """The ``signatures`` argument of ``Rollup.submitHeader``."""
    return qc_signatures([e.sign_header(header, chain_id, rollup) for e in signers])


def simulated_batch(
    height: int,
    messages: Sequence[bytes] = (),
    *,
    envelopes: Sequence[bytes] = (),
    entries: Sequence[bytes] = (),
    prev_hash: bytes = b"\x00" * 32,
    epoch: int = 1,
    l1_block: int = 0,
) -> tuple[bytes, bytes]:
    """``(batch_data, data_commitment)`` of a batch laid out as ``enclave.batch.commit_batch_data``
    lays it out, with L2 -> L1 message items after the entries and the meta's ``n_messages`` and
    ``l2_to_l1_messages_root`` (crypto.bridge): what the Bridge's relay tests and gas rows need."""
    import cbor2

    from enclavenet.crypto.bridge import META_COUNT_KEY, META_ROOT_KEY, messages_root
    from enclavenet.enclave.batch import BATCH_DATA_VERSION, data_commitment_of_items
    from enclavenet.enclave.codec import encode

    meta = encode({
        "v": BATCH_DATA_VERSION, "height": height, "prev_hash": prev_hash, "epoch": epoch,
        "l1_block": l1_block, "timestamp": 0, "msg_start": 0, "msg_count": 0, "msg_acc": b"\x00" * 32,
        "n_envelopes": len(envelopes), "n_entries": len(entries),
        META_COUNT_KEY: len(messages), META_ROOT_KEY: messages_root(list(messages)),
    })
    items = [meta, *envelopes, *entries, *messages]
    return cbor2.dumps(items), data_commitment_of_items(items)
