"""Broken TEEs against the real Rollup: exactly where the min_types bound lies.

Six real enclave processes (two per TEE type: sgx, tdx, sev-snp), registered on the Rollup with
their own quotes; quorum 4 spanning at least min_types = 3 types. Each enclave is broken with the
tee fault hook ``compromise()`` (it hands out its signing key) and the thief forges a header: a
wrong state root and a withdrawal of the Rollup's funds to the thief.

* keys of min_types - 1 = 2 types leaked (4 enclaves: enough signatures for the quorum): the L1
  refuses the forged header ("QC spans too few TEE types") -- the quorum is not what stops it;
* keys of min_types = 3 types leaked: the forged header is ACCEPTED and the thief paid. That is
  the bound: safety holds while fewer than min_types TEE types are broken.
* revoking a type, a measurement or an enclave in the Registry takes effect on the very next
  header: a QC that needs the revoked signer is refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account

from enclavenet.chain import EmbeddedL1, TxReverted
from enclavenet.contracts import deploy_contracts, qc_signatures
from enclavenet.crypto.header import Header, Withdrawal, withdrawals_hash
from enclavenet.crypto.secp256k1 import SigningKey
from enclavenet.enclave.harness import program_config
from enclavenet.tee import DEFAULT_PROGRAM, ProcessEnclave, SimulatedVendor
from enclavenet.tee.platform import Quote, measure_enclave

pytestmark = pytest.mark.integration

TYPES = ("sgx", "tdx", "sev-snp")
QUORUM, MIN_TYPES = 4, 3


class Broken:
    def __init__(self, l1: EmbeddedL1) -> None:
        self.l1 = l1
        self.owner = l1.sender(0)
        self.vendors = {t: SimulatedVendor.generate(t) for t in TYPES}
        roots = {v.tee_type: v.root_address for v in self.vendors.values()}
        dep = deploy_contracts(self.owner, self.owner.address, QUORUM, MIN_TYPES, platform_roots=roots)
        self.rollup = dep.rollup
        cfg = program_config(self.vendors.values(), l1_chain_id=l1.chain_id, rollup=dep.rollup.address)
        self.measurement = measure_enclave(DEFAULT_PROGRAM, cfg)
        for tee in roots:
            self.owner.transact(self.rollup.functions.allowMeasurement(tee, self.measurement))
        self.enclaves: list[tuple[str, ProcessEnclave]] = []
        for t in TYPES:
            for _ in range(2):
                self.enclaves.append((t, ProcessEnclave(self.vendors[t].new_platform(), DEFAULT_PROGRAM, cfg, allow_faults=True)))
        import cbor2

        for _, e in self.enclaves:
            q = Quote.decode(cbor2.loads(e.ecall("identity", cbor2.dumps({})))["quote"])
            self.owner.transact(self.rollup.functions.register(*q.registration_args()))
        # the L1 holds funds the thief wants
        self.owner.transact(self.rollup.functions.deposit(), value=10**18)

    def leak(self, types: tuple[str, ...]) -> list[SigningKey]:
        keys = []
        for t, e in self.enclaves:
            if t in types:
                keys.append(SigningKey(bytes(e.compromise()["signing_key"])))
        return keys

    def forged(self, thief: str) -> tuple[Header, list[Withdrawal]]:
        f = self.rollup.functions
        ws = [Withdrawal(thief, 10**17)]
        return Header(
            height=f.lastHeight().call() + 1, prev_hash=bytes(f.lastHeaderHash().call()), epoch=0, epoch_key=os.urandom(32),
            l1_block=self.l1.block_number() - 1, msg_count=f.msgCount().call(), msg_acc=bytes(f.msgAcc().call()),
            tx_root=os.urandom(32), receipts_root=os.urandom(32), state_root=os.urandom(32), balances_root=os.urandom(32),
            withdrawals_hash=withdrawals_hash(ws), data_commitment=os.urandom(32),
        ), ws

    def submit(self, header: Header, ws: list[Withdrawal], keys: list[SigningKey]) -> Any:
        digest = header.signing_digest(self.l1.chain_id, self.rollup.address)
        sigs = qc_signatures([(k.address, k.sign(digest)) for k in keys])
        return self.l1.sender(1).transact(
            self.rollup.functions.submitHeader(header.as_tuple(), [(w.recipient, w.amount) for w in ws], sigs))

    def close(self) -> None:
        for _, e in self.enclaves:
            e.close()


@pytest.fixture
def broken() -> Iterator[Broken]:
    with EmbeddedL1() as l1:
        b = Broken(l1)
        try:
            yield b
        finally:
            b.close()


def test_min_types_minus_one_leaked_is_refused_min_types_leaked_is_accepted(broken: Broken) -> None:
    thief = Account.create().address
    below = broken.leak(("sgx", "tdx"))  # 2 types, 4 enclaves: quorum met, types not
    assert len(below) == QUORUM
    header, ws = broken.forged(thief)
    with pytest.raises(TxReverted, match="QC spans too few TEE types"):
        broken.submit(header, ws, below)
    assert broken.l1.w3.eth.get_balance(thief) == 0
    # one enclave of a third type more: the bound is reached and the forgery goes through
    third = broken.leak(("sev-snp",))[:1]
    receipt = broken.submit(header, ws, below[:3] + third)
    assert receipt["status"] == 1
    assert broken.rollup.functions.lastHeight().call() == 1
    assert broken.l1.w3.eth.get_balance(thief) == 10**17


def test_revocation_takes_effect_on_the_next_header(broken: Broken) -> None:
    keys = broken.leak(TYPES)  # here: the signers of an honest committee
    by_type = {t: [k for (tt, _), k in zip(broken.enclaves, keys, strict=True) if tt == t] for t in TYPES}
    f = broken.rollup.functions
    qc = [by_type["sgx"][0], by_type["tdx"][0], by_type["sev-snp"][0], by_type["sev-snp"][1]]
    header, _ = broken.forged(Account.create().address)
    header = Header(**{**header.__dict__, "withdrawals_hash": withdrawals_hash([])})
    broken.submit(header, [], qc)
    # revoke one enclave: a QC that needs it is refused on the next header ...
    broken.owner.transact(f.revokeEnclave(by_type["sev-snp"][1].address))
    nxt, _ = broken.forged(Account.create().address)
    nxt = Header(**{**nxt.__dict__, "withdrawals_hash": withdrawals_hash([])})
    with pytest.raises(TxReverted, match="revoked enclave"):
        broken.submit(nxt, [], qc)
    # ... the others still make one
    broken.submit(nxt, [], [by_type["sgx"][0], by_type["sgx"][1], by_type["tdx"][0], by_type["sev-snp"][0]])
    # revoke a whole TEE type: no QC spans 3 types any more (only sgx and tdx are left)
    broken.owner.transact(f.revokeType(3))
    last, _ = broken.forged(Account.create().address)
    last = Header(**{**last.__dict__, "withdrawals_hash": withdrawals_hash([])})
    with pytest.raises(TxReverted, match="TEE type is revoked"):
        broken.submit(last, [], [by_type["sgx"][0], by_type["sgx"][1], by_type["tdx"][0], by_type["sev-snp"][0]])
    with pytest.raises(TxReverted, match="too few TEE types"):
        broken.submit(last, [], [*by_type["sgx"], *by_type["tdx"]])
    # a revoked measurement: every enclave of that program on that type is out at once
    broken.owner.transact(f.revokeMeasurement(1, broken.measurement))
    assert not f.isActive(by_type["sgx"][0].address).call()
    assert f.lastHeight().call() == 2
