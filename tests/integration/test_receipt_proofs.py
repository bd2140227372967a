"""Issue 14 M6: the client reports a receipt as final only when it is proven against a header
accepted on L1; the node's metadata (height, header hash, L1 transaction, index) is checked.

Before: the client took the node's ``height`` / ``headerHash`` as given, so a node could
report a transaction as included in a header L1 never accepted (or at another height).
Real in-process enclaves execute the batch; the header goes on the embedded L1 (committee
simulated on L1, as the receipt check does not depend on it); the node side is
``node.receipt_proofs`` (what the node serves), the client side ``client.receipts`` and
``ConfidentialClient.get_receipt``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from eth_account import Account

from enclavenet.chain import EmbeddedL1, TxSender
from enclavenet.client.core import ConfidentialClient, SentTx
from enclavenet.client.errors import ReceiptUnverified
from enclavenet.client.receipts import verify_receipt_on_l1
from enclavenet.contracts import deploy_contracts
from enclavenet.contracts.simulate import SimEnclave, SimPlatform, sign_qc
from enclavenet.crypto.envelope import seal
from enclavenet.crypto.hashing import keccak256
from enclavenet.crypto.header import Header
from enclavenet.enclave.batch import batch_data_items
from enclavenet.enclave.harness import Member, batch_request, form_committee, program_config
from enclavenet.enclave.tx import sign_tx
from enclavenet.node.receipt_proofs import receipt_proof_fields
from enclavenet.tee import DEFAULT_PROGRAM, InProcessEnclave, SimulatedVendor

CHAIN = 4242
DAY = 86_400


class World:
    def __init__(self, l1: EmbeddedL1) -> None:
        self.l1 = l1
        self.owner: TxSender = l1.sender(0)
        platforms = {t: SimPlatform(t) for t in (1, 2)}
        meas = os.urandom(32)
        dep = deploy_contracts(self.owner, self.owner.address, 2, 2,
                               platform_roots={t: p.root_address for t, p in platforms.items()},
                               measurements={t: [meas] for t in platforms})
        self.rollup = dep.rollup
        self.signers = [SimEnclave(t) for t in (1, 2)]
        for e in self.signers:
            self.owner.transact(self.rollup.functions.register(*platforms[e.tee_type].quote(e, meas, l1.timestamp() + DAY).args()))
        vendors = [SimulatedVendor.generate(n) for n in ("sgx", "tdx")]
        cfg = program_config(vendors, chain_id=CHAIN, l1_chain_id=l1.chain_id, rollup=str(self.rollup.address))
        self.members = [Member(InProcessEnclave(v.new_platform(), DEFAULT_PROGRAM, cfg)) for v in vendors]
        self.epoch_pub = form_committee(self.members, 2, 2)
        self.prev = bytes(32)
        self.height = 0

    def batch(self, envelopes: list[bytes], submit: bool = True) -> tuple[dict[str, Any], str | None]:
        self.height += 1
        req = batch_request(self.height, self.prev, l1_block=max(0, self.l1.block_number() - 1), envelopes=envelopes)
        out = self.members[0].call("execute_batch", **req)
        h = Header.decode(out["header"])
        if not submit:
            return out, None
        rc = self.owner.transact(self.rollup.functions.submitHeader(
            h.as_tuple(), [], sign_qc(h, self.signers, self.l1.chain_id, self.rollup.address)))
        self.prev = out["header_hash"]
        return out, "0x" + bytes(rc["transactionHash"]).hex()


def node_receipts(out: dict[str, Any], l1_tx: str) -> dict[bytes, dict[str, Any]]:
    """What a node serves for each envelope of an accepted batch (node.py _store_receipts)."""
    items = batch_data_items(out["batch_data"])
    n_env = len(items) - 1 - len(out["receipts"])
    entries = items[1 + n_env:]
    h = Header.decode(out["header"])
    served = {}
    for entry, proof in zip(entries, receipt_proof_fields(entries), strict=True):
        served[keccak256(entry)] = {"height": hex(h.height), "headerHash": "0x" + out["header_hash"].hex(),
                                    "l1TxHash": l1_tx, "l1BlockNumber": "0x1",
                                    "encryptedReceipt": "0x" + entry.hex(), **proof}
    return {rid: served[keccak256(e)] for rid, e in out["receipts"].items()}


def test_a_receipt_is_final_only_with_a_proof_against_a_header_accepted_on_l1(embedded_l1: EmbeddedL1) -> None:
    l1 = embedded_l1
    w = World(l1)
    users = [Account.create() for _ in range(5)]
    sealed = [seal(sign_tx(bytes(u.key), CHAIN, 0, users[0].address, b"", 0, 21_000), w.epoch_pub, CHAIN, 0) for u in users]
    out, l1_tx = w.batch([s.envelope.encode() for s in sealed])
    assert l1_tx is not None
    served = node_receipts(out, l1_tx)
    rids = [keccak256(s.envelope.encode()) for s in sealed]
    rollup = str(w.rollup.address)
    for rid in rids:  # an honest node's answers verify
        r = served[rid]
        header = verify_receipt_on_l1(l1.w3, rollup, r, bytes.fromhex(r["encryptedReceipt"][2:]))
        assert header.hash() == out["header_hash"]

    r = served[rids[2]]
    entry = bytes.fromhex(r["encryptedReceipt"][2:])

    def refused(bad: dict[str, Any], msg: str, e: bytes = entry) -> None:
        with pytest.raises(ReceiptUnverified, match=msg):
            verify_receipt_on_l1(l1.w3, rollup, bad, e)

    # a header L1 never accepted (executed, not submitted): the node claims inclusion there
    out2, _ = w.batch([seal(sign_tx(bytes(users[0].key), CHAIN, 1, users[1].address, b"", 0, 21_000),
                            w.epoch_pub, CHAIN, 0).envelope.encode()], submit=False)
    refused({**r, "height": hex(2), "headerHash": "0x" + out2["header_hash"].hex()}, "did not accept header")
    refused({**r, "height": hex(7)}, "did not accept header")  # the right header at a wrong height
    refused({**r, "receiptIndex": hex(3)}, "is not entry 3 of 5")  # another position
    refused({**r, "receiptCount": hex(3)}, "the node.s proof is wrong")  # another shape of tree
    refused({**r, "receiptProof": ["0x" + os.urandom(32).hex(), *r["receiptProof"][1:]]}, "the node's proof is wrong")
    refused({**r, "receiptProof": r["receiptProof"][:-1]}, "the node's proof is wrong")
    refused({k: v for k, v in r.items() if k != "receiptProof"}, "no inclusion proof")
    refused(r, "the node's proof is wrong", e=entry[:-1] + bytes([entry[-1] ^ 1]))  # another entry
    # an L1 transaction that accepted no header (a deposit)
    dep = w.owner.transact(w.rollup.functions.deposit(), value=1)
    refused({**r, "l1TxHash": "0x" + bytes(dep["transactionHash"]).hex()}, "did not accept header")
    refused({**r, "l1TxHash": "0x" + os.urandom(32).hex()}, "L1 has no transaction")

    # through the client: final (l1Verified) only after the proof checked on L1
    client = ConfidentialClient(Account.create(), l1=l1.w3, rollup=rollup)
    rid_hex = "0x" + rids[2].hex()
    client.remember(rid_hex, SentTx(sealed[2].receipt_key, users[2].address, 0, users[0].address, keccak256(b"x"), None))

    def node(answer: dict[str, Any]) -> Any:
        return lambda method, params: {"jsonrpc": "2.0", "id": 1, "result": answer}

    assert client.get_receipt(node(r), rid_hex)["l1Verified"] is True
    with pytest.raises(ReceiptUnverified, match="did not accept header"):
        client.get_receipt(node({**r, "height": hex(2), "headerHash": "0x" + out2["header_hash"].hex()}), rid_hex)
    bare = ConfidentialClient(Account.create())  # no L1 to check against: the node's word
    bare.remember(rid_hex, SentTx(sealed[2].receipt_key, users[2].address, 0, users[0].address, keccak256(b"x"), None))
    assert bare.get_receipt(node(r), rid_hex)["l1Verified"] is False
