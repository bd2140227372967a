"""Host-side helpers around the program's ecall API, for tests, benchmarks and demos.

Nothing here runs inside the enclave or is reachable through an ecall: it builds CBOR payloads,
starts simulated members and forms a committee exactly as a node would (docs/ENCLAVE.md)::

    vendors = [SimulatedVendor.generate("sgx"), SimulatedVendor.generate("sev-snp")]
    cfg = program_config(vendors, chain_id=4242)
    members = [Member(ProcessEnclave(v.new_platform(), DEFAULT_PROGRAM, cfg)) for v in vendors]
    epoch_pub = form_committee(members, quorum=2, min_types=2)
    out = members[0].call("execute_batch", height=1, prev_hash=bytes(32), ...)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import cbor2

from ..tee.platform import SimulatedVendor

DEFAULT_ROLLUP = "0x" + "5e" * 20


class _Handle(Protocol):
    def ecall(self, method: str, payload: bytes = b"", *, timeout: float | None = None) -> bytes: ...

    def close(self) -> None: ...


def program_config(
    vendors: Iterable[SimulatedVendor],
    *,
    chain_id: int = 4242,
    l1_chain_id: int = 31337,
    rollup: str = DEFAULT_ROLLUP,
    epoch_grace: int = 1,
    min_quorum: int = 2,
    min_types: int = 2,
) -> dict[str, Any]:
    """The program config for a committee whose members run on ``vendors``' platforms; its QC
    rule never goes below ``min_quorum`` signatures of ``min_types`` TEE types."""
    return {
        "chain_id": chain_id,
        "l1_chain_id": l1_chain_id,
        "rollup": rollup,
        "platform_roots": {v.tee_type: v.root_address for v in vendors},
        "epoch_grace": epoch_grace,
        "min_quorum": min_quorum,
        "min_types": min_types,
    }


class Member:
    """One enclave handle plus CBOR in/out: ``member.call("status")`` -> dict."""

    def __init__(self, handle: _Handle) -> None:
        self.handle = handle
        self._identity: dict[str, Any] | None = None

    def call(self, method: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        out = cbor2.loads(self.handle.ecall(method, cbor2.dumps(fields), timeout=timeout))
        assert isinstance(out, dict)
        return out

    @property
    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            self._identity = self.call("identity")
        return self._identity

    def refresh_identity(self) -> dict[str, Any]:
        self._identity = None
        return self.identity

    @property
    def address(self) -> str:
        return str(self.identity["address"])

    def close(self) -> None:
        self.handle.close()


def form_committee(members: Sequence[Member], quorum: int, min_types: int, *, genesis: int = 0) -> bytes:
    """Give every member the committee, make epoch 0 on ``members[genesis]``, share it. Returns its public key."""
    quotes = [m.identity["quote"] for m in members]
    for m in members:
        m.call("committee", members=quotes, quorum=quorum, min_types=min_types)
    g = members[genesis]
    pub: bytes = g.call("epoch_genesis")["epoch_pub"]
    share_epoch(g, [m for i, m in enumerate(members) if i != genesis], 0)
    return pub


def update_committee(
    members: Sequence[Member], signers: Sequence[Member], quotes: Sequence[bytes], quorum: int, min_types: int
) -> dict[str, Any]:
    """Move ``members`` to the committee ``quotes`` (quorum, min_types), certified by ``signers``
    (a QC of the current committee: ``committee_sign`` on each). Returns the last answer."""
    fields: dict[str, Any] = {"members": list(quotes), "quorum": quorum, "min_types": min_types}
    signed = [s.call("committee_sign", **fields) for s in signers]
    cert: dict[str, Any] = {**fields, "version": signed[0]["version"], "signatures": [x["signature"] for x in signed]}
    out: dict[str, Any] = {}
    for m in members:
        out = m.call("committee", **cert)
    return out


def share_epoch(exporter: Member, importers: Iterable[Member], epoch: int) -> None:
    """Export ``epoch`` from ``exporter`` to each importer (attested) and import it there."""
    for m in importers:
        ident = m.identity
        bundle = exporter.call("epoch_export", epoch=epoch, member=ident["quote"], member_enc_pub=ident["enc_pub"])
        m.call("epoch_import", bundle=bundle["bundle"])


def batch_request(
    height: int,
    prev_hash: bytes,
    *,
    epoch: int = 0,
    l1_block: int = 0,
    timestamp: int = 1_700_000_000,
    messages: Sequence[Sequence[Any]] = (),
    envelopes: Sequence[bytes] = (),
    fee_recipient: str | None = None,
) -> dict[str, Any]:
    """The fields of ``execute_batch`` / ``verify_batch`` / ``apply_batch``."""
    extra = {} if fee_recipient is None else {"fee_recipient": fee_recipient}
    return extra | {
        "height": height,
        "prev_hash": prev_hash,
        "epoch": epoch,
        "l1_block": l1_block,
        "timestamp": timestamp,
        "messages": [list(m) for m in messages],
        "envelopes": list(envelopes),
    }
