"""The node's receipt index (node/receipts.py): compact per header, the same JSON-RPC receipts and
proofs as building them all up front, the first-inclusion rule, and replay from receipts.log."""

from __future__ import annotations

import os
from pathlib import Path

from enclavenet.crypto.hashing import keccak256
from enclavenet.crypto.merkle import merkle_root, merkle_verify_at
from enclavenet.enclave.batch import ERROR_ENTRY_PREFIX
from enclavenet.node.receipt_proofs import receipt_proof_fields
from enclavenet.node.receipts import TREES, ReceiptIndex
from enclavenet.node.store import NodeStore


def _base(h: int) -> dict[str, str]:
    return {"height": hex(h), "headerHash": "0x" + "ab" * 32, "l1TxHash": "0x" + "cd" * 32, "l1BlockNumber": hex(100 + h)}


def test_receipts_and_proofs_on_demand_equal_the_up_front_ones() -> None:
    idx = ReceiptIndex()
    for n in (1, 2, 7, 300):
        entries = [os.urandom(48) for _ in range(n)]
        ids = [os.urandom(32) for _ in range(n)]
        assert idx.add(_base(n), ids, entries) == n
        root = merkle_root([keccak256(e) for e in entries])
        for rid, entry, proof in zip(ids, entries, receipt_proof_fields(entries), strict=True):
            r = idx.get(rid)
            assert r is not None and r == {**_base(n), "receiptId": "0x" + rid.hex(), "encryptedReceipt": "0x" + entry.hex(), **proof}
            assert merkle_verify_at(root, keccak256(entry), int(r["receiptIndex"], 16), n,
                                    [bytes.fromhex(s[2:]) for s in r["receiptProof"]])
            assert idx.height_of(rid) == hex(n)
    assert idx.get(os.urandom(32)) is None and len(idx) == 310
    assert len(idx._trees) <= TREES


def test_first_inclusion_wins_but_a_sealed_receipt_replaces_an_error_and_the_log_replays(tmp_path: Path) -> None:
    a, b = os.urandom(32), os.urandom(32)
    err = ERROR_ENTRY_PREFIX + b"nonce"
    idx, store = ReceiptIndex(), NodeStore(tmp_path)
    store.append_receipts({a: {"height": "0x1", "receiptId": "0x" + a.hex()}})  # a frame from before v2
    for h, ids, entries in ((2, [a, b], [b"sealed-a2", err]), (3, [a, b], [b"sealed-a3", b"sealed-b3"]),
                            (4, [b], [b"sealed-b4"])):
        idx.add(_base(h), ids, entries)
        store.append_receipts(ReceiptIndex.frame(_base(h), ids, entries))
    replay = ReceiptIndex()
    replay.add_frame(store.load_receipts()[0])
    for f in store.load_receipts()[1:]:
        replay.add_frame(f)
    ra, rb = replay.get(a), replay.get(b)
    assert ra is not None and rb is not None
    assert ra["height"] == "0x1"  # the legacy frame came first: it wins
    assert rb["height"] == "0x3" and rb["encryptedReceipt"] == "0x" + b"sealed-b3".hex() and "error" not in rb
    assert idx.get(b) == rb  # the same as the index that saw them live
    one = ReceiptIndex()
    one.add(_base(2), [b], [err])
    rb = one.get(b)
    assert rb is not None and rb["error"].startswith("nonce: ")
