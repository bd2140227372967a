"""DAP formats and parts that need no process: piece paths and proofs (the contract's rules),
receipts, the SQLite store, the service's refusals (in-process aiohttp), key handling."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import aiohttp
import cbor2
import pytest
from aiohttp.test_utils import TestClient, TestServer
from tests.unit._dap_batches import tree_batch

from enclavenet.crypto.dap import (
    dap_receipt_digest,
    data_commitment,
    piece_index,
    piece_path,
    piece_proof,
    verify_piece,
)
from enclavenet.crypto.hashing import keccak256
from enclavenet.crypto.header import EMPTY_WITHDRAWALS_HASH, Header
from enclavenet.crypto.merkle import merkle_root
from enclavenet.crypto.secp256k1 import SigningKey, recover_address
from enclavenet.crypto.smt import SparseMerkleTree
from enclavenet.dap.client import DapClient, DapError, verify_batch
from enclavenet.dap.service import (
    BadRequest,
    DapConfig,
    DapService,
    batch_items,
    load_key,
    piece_for,
)
from enclavenet.dap.store import (
    SealedLeaf,
    Snapshot,
    SQLiteStore,
    StoredBatch,
    StoreError,
    _redact,
    open_store,
)

ROLLUP = "0x" + "ab" * 20


def batch(height: int, n: int = 5) -> tuple[Header, bytes, list[bytes]]:
    items = [cbor2.dumps({"v": 1, "height": height})] + [os.urandom(30 + i) for i in range(n - 1)]
    h = Header(height, os.urandom(32), 0, os.urandom(32), height, 0, os.urandom(32), os.urandom(32), os.urandom(32),
               os.urandom(32), os.urandom(32), EMPTY_WITHDRAWALS_HASH, data_commitment(items))
    return h, cbor2.dumps(items), items


# ------------------------------------------------------------------ pieces


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 9, 16, 17, 33])
def test_a_path_reaches_exactly_one_item_and_binds_it(n: int) -> None:
    items = [os.urandom(8) for _ in range(n)]
    root = data_commitment(items)
    assert root == merkle_root([keccak256(x) for x in items])
    paths = set()
    for i in range(n):
        path, siblings = piece_proof(items, i)
        assert piece_path(i, n) == (path, len(siblings))
        assert piece_index(path, n) == i
        assert verify_piece(root, items[i], path, siblings)
        paths.add((path, len(siblings)))
        for j in range(n):  # no other item verifies at that path, whatever its own proof
            if j != i:
                assert not verify_piece(root, items[j], path, siblings)
                assert not verify_piece(root, items[j], path, piece_proof(items, j)[1])
        if siblings:  # a proof that stops early or goes on does not verify
            assert not verify_piece(root, items[i], path, siblings[:-1])
            assert not verify_piece(root, items[i], path, [*siblings, os.urandom(32)])
    assert len(paths) == n
    with pytest.raises(IndexError):
        piece_path(n, n)


def test_receipt_digest_is_bound_to_chain_rollup_and_commitment() -> None:
    dc = os.urandom(32)
    d = dap_receipt_digest(1, ROLLUP, dc)
    assert d != dap_receipt_digest(2, ROLLUP, dc)
    assert d != dap_receipt_digest(1, "0x" + "cd" * 20, dc)
    assert d != dap_receipt_digest(1, ROLLUP, os.urandom(32))
    with pytest.raises(ValueError):
        dap_receipt_digest(1, ROLLUP, b"short")


def test_batch_checks_find_corruption() -> None:
    h, data, items = batch(3)
    assert verify_batch(h.encode(), data, data_commitment_=h.data_commitment).batch_data == data
    with pytest.raises(DapError, match="corrupt"):
        verify_batch(h.encode(), cbor2.dumps([*items[:-1], b"x"]))
    with pytest.raises(DapError, match="another data commitment"):
        verify_batch(h.encode(), data, data_commitment_=os.urandom(32))
    with pytest.raises(DapError, match="another hash"):
        verify_batch(h.encode(), data, header_hash=os.urandom(32))
    with pytest.raises(DapError, match="malformed"):
        verify_batch(b"\x00" * 10, data)
    for bad in (cbor2.dumps([]), cbor2.dumps([1, 2]), b"\xff\xfe"):
        with pytest.raises(BadRequest):
            batch_items(bad)
    index, item, siblings = piece_for(data, piece_path(4, 5)[0])
    assert index == 4 and item == items[4] and verify_piece(h.data_commitment, item, piece_path(4, 5)[0], siblings)


# ------------------------------------------------------------------ store


def test_sqlite_store_round_trip(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path}/s.db")
    assert isinstance(store, SQLiteStore)
    h1, d1, _ = batch(1)
    h2, d2, _ = batch(2)
    store.put(StoredBatch(h1, d1), Snapshot(1, h1.hash(), 0, b"s1"), [SealedLeaf("0x" + "11" * 20, 1, h1.hash(), b"l1")])
    store.put(StoredBatch(h1, d1))  # idempotent
    store.put(StoredBatch(h2, d2))
    store.put_leaves([SealedLeaf("0x" + "11" * 20, 2, h2.hash(), b"l2")])
    assert store.batch(h1.data_commitment) == StoredBatch(h1, d1)
    assert store.batch_by_hash(h2.hash()) == StoredBatch(h2, d2)
    assert store.batch(os.urandom(32)) is None
    assert [r.height for r in store.headers(1, 5)] == [1, 2]
    assert store.latest_snapshot().blob == b"s1"  # type: ignore[union-attr]
    assert store.latest_snapshot(max_height=0) is None
    assert store.leaf("0x" + "11" * 20).sealed == b"l2"  # type: ignore[union-attr]
    assert store.leaf("0x" + "11" * 20, max_height=1).sealed == b"l1"  # type: ignore[union-attr]
    assert store.summary() == {"batches": 2, "min_height": 1, "max_height": 2, "snapshots": 1, "leaves": 2}
    store.close()
    again = open_store(str(tmp_path / "s.db"))  # a bare path, reopened: the data is there
    assert again.batch(h2.data_commitment) is not None
    again.close()


def test_store_errors_are_clear_and_hide_passwords(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open the SQLite store"):
        open_store(f"sqlite://{tmp_path}/missing/dir/x.db")
    with pytest.raises(StoreError, match="empty store spec"):
        open_store("sqlite://")
    assert "hunter2" not in _redact("postgresql://dap:hunter2@127.0.0.1:5432/db")
    assert "hunter2" not in _redact("host=127.0.0.1 dbname=x password=hunter2")


# ------------------------------------------------------------------ service (in process)


def _service(tmp_path: Path, key: SigningKey) -> DapService:
    return DapService(DapConfig(store=":memory:", key=key, l1_chain_id=31337, rollup=ROLLUP))


def test_service_receipts_and_refusals(tmp_path: Path) -> None:
    key = SigningKey.generate()
    svc = _service(tmp_path, key)
    h, data, items = batch(5)

    async def go() -> None:
        async with TestClient(TestServer(svc.app)) as c:
            async def post(path: str, body: Any) -> tuple[int, Any]:
                r = await c.post(path, data=cbor2.dumps(body) if not isinstance(body, bytes) else body)
                raw = await r.read()
                return r.status, cbor2.loads(raw) if r.content_type == "application/cbor" else (await r.json())

            st, out = await post("/v1/batch", {"header": h.encode(), "batch_data": data})
            assert st == 200
            assert recover_address(dap_receipt_digest(31337, ROLLUP, h.data_commitment), out["receipt"]) == key.address
            cases = [
                (b"\x1c", "body is not CBOR"),
                (cbor2.dumps([1]), "must be a CBOR map"),
                ({"header": b"x" * 10, "batch_data": data}, "header: an encoded header has 416 bytes"),
                ({"header": h.encode(), "batch_data": "text"}, "batch_data must be a byte string"),
                ({"header": h.encode(), "batch_data": cbor2.dumps([*items, b"x"])}, "does not match the header's data_commitment"),
                ({"header": h.encode(), "batch_data": data, "snapshot": {"epoch": -1, "blob": b"x"}}, "snapshot needs"),
                ({"header": h.encode(), "batch_data": data, "leaves": [[b"short", b"x"]]}, "leaf address must be 20 bytes"),
            ]
            for body, msg in cases:
                st, out = await post("/v1/batch", body)
                assert st == 400 and msg in out["error"], (msg, out)
            st, out = await post("/v1/snapshot", {"header_hash": os.urandom(32), "epoch": 0, "blob": b"x"})
            assert st == 400 and "POST /v1/batch first" in out["error"]
            for path, msg in [(f"/v1/batch/{os.urandom(32).hex()}", "no batch"), ("/v1/batch/zz", "32 bytes of hex"),
                              (f"/v1/leaf/{'0x' + '22' * 20}", "no escape leaf"), ("/v1/leaf/0x12", "20 bytes"),
                              ("/v1/snapshot", "no snapshot"), ("/v1/headers?from=-1", "must not be negative")]:
                r = await c.get(path)
                body = await r.json()
                assert r.status in (400, 404) and msg in body["error"], (path, body)
            r = await c.get(f"/v1/piece/{h.data_commitment.hex()}/{piece_path(3, 5)[0]}")
            piece = cbor2.loads(await r.read())
            assert piece["index"] == 3 and piece["item"] == items[3]

    asyncio.run(go())


def test_keys_stay_secret(tmp_path: Path) -> None:
    path = tmp_path / "dap.key"
    key = load_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path) == key
    cfg = DapConfig(store=":memory:", key=key, l1_chain_id=1, rollup=ROLLUP)
    assert key.secret.hex() not in repr(cfg) and key.secret.hex() not in repr(key)
    (tmp_path / "bad.key").write_text("nothex")
    with pytest.raises(ValueError, match="not a hex secp256k1 private key") as info:
        load_key(tmp_path / "bad.key")
    assert "nothex" not in str(info.value)
    # loopback or a private address (a network namespace, benchmarks/wan.py); never all interfaces or public
    for host in ("0.0.0.0", "8.8.8.8", "::"):
        with pytest.raises(ValueError, match=r"127\.0\.0\.1 or a private .* address only"):
            DapConfig(store=":memory:", key=key, l1_chain_id=1, rollup=ROLLUP, host=host)
    DapConfig(store=":memory:", key=key, l1_chain_id=1, rollup=ROLLUP, host="10.213.0.5")


def test_a_later_snapshot_upload_never_replaces_a_stored_one(tmp_path: Path) -> None:
    """Issue 14 (Low, DAP writes unauthenticated): anyone may upload a snapshot for a stored header;
    the last writer used to win, so a junk blob replaced the good one and no member could restore
    from that DAP. Now the first MAX_SNAPSHOT_COPIES distinct blobs per header are kept, in arrival
    order, never replaced; readers get every copy (the restoring enclave refuses the junk ones)."""
    svc = _service(tmp_path, SigningKey.generate())
    h, data, _ = batch(7)

    async def go() -> None:
        async with TestClient(TestServer(svc.app)) as c:
            async def post(path: str, body: Any) -> int:
                return (await c.post(path, data=cbor2.dumps(body))).status

            assert await post("/v1/batch", {"header": h.encode(), "batch_data": data,
                                            "snapshot": {"epoch": 0, "blob": b"good"}}) == 200
            for i in range(6):  # the attacker's uploads for the same header
                assert await post("/v1/snapshot", {"header_hash": h.hash(), "epoch": 0, "blob": b"junk%d" % i}) == 200
            got = []
            for k in range(6):
                r = await c.get("/v1/snapshot", params={"copy": k})
                if r.status == 404:
                    break
                got.append(cbor2.loads(await r.read())["blob"])
            assert got[0] == b"good", got
            assert got == [b"good", b"junk0", b"junk1", b"junk2"]  # capped at MAX_SNAPSHOT_COPIES, first come

    asyncio.run(go())
    store = open_store(f"sqlite://{tmp_path}/c.db")
    store.put_snapshot(Snapshot(1, h.hash(), 0, b"good"))
    store.put_snapshot(Snapshot(1, h.hash(), 0, b"junk"))
    store.put_snapshot(Snapshot(1, h.hash(), 0, b"good"))  # the same blob again: one copy
    assert store.snapshot(h.hash()).blob == b"good"  # type: ignore[union-attr]
    assert [s.blob for s in store.snapshot_copies(h.hash())] == [b"good", b"junk"]
    assert store.latest_snapshot(copy=1).blob == b"junk"  # type: ignore[union-attr]
    store.close()


def test_a_wrong_first_leaf_diff_upload_never_hides_the_honest_one(tmp_path: Path) -> None:
    """Issue 13 (DAP first-upload-wins for leaf diffs): a leaf diff used to be stored once per
    (height, base), first come; anyone can POST /v1/leafdiff, so a wrong first upload took the
    place of the honest one and the user's root check then needed another DAP. Now the DAP folds
    every diff onto the tree it holds for the header's ancestor at ``base`` and refuses it unless
    it gives the header's balances_root; diffs are keyed by that root, so a diff for a fake header
    at the same height is stored apart and the reader asks for the accepted header's root."""
    svc = _service(tmp_path, SigningKey.generate())
    k = [os.urandom(32) for _ in range(4)]
    v = [os.urandom(32) for _ in range(6)]
    t1 = {k[0]: v[0], k[1]: v[1]}
    t2 = {k[0]: v[2], k[2]: v[3]}  # k0 changed, k1 removed, k2 added
    h1, d1 = tree_batch(1, t1, bytes(32))
    h2, d2 = tree_batch(2, t2, h1.hash())
    fake2, fd2 = tree_batch(2, {k[3]: v[5]}, h1.hash())  # the attacker's own header at height 2
    honest1 = [[a, b] for a, b in t1.items()]
    honest2 = [[k[0], v[2]], [k[1], b""], [k[2], v[3]]]

    async def go() -> None:
        async with TestClient(TestServer(svc.app)) as c:
            async def post(path: str, body: Any) -> tuple[int, Any]:
                r = await c.post(path, data=cbor2.dumps(body))
                return r.status, (cbor2.loads(await r.read()) if r.status == 200 else await r.json())

            for h, d in ((h1, d1), (h2, d2), (fake2, fd2)):
                assert (await post("/v1/batch", {"header": h.encode(), "batch_data": d}))[0] == 200
            # the attacker uploads first: wrong leaves, a missing one, an extra one, a wrong base
            for hh, base, diff in [
                (h1.hash(), 0, [[k[0], v[4]], [k[1], v[1]]]),
                (h1.hash(), 0, [[k[0], v[0]]]),
                (h1.hash(), 0, [*honest1, [k[3], v[4]]]),
                (h2.hash(), 0, [[k[0], v[2]], [k[2], v[4]]]),
                (h2.hash(), 1, honest2),  # right diff, but this DAP has no tree at height 1 yet
                (h1.hash(), 0, [*honest1, [k[3], b""]]),  # padding: removes a key that is not there
            ]:
                st, out = await post("/v1/leafdiff", {"header_hash": hh, "base": base, "diff": diff})
                assert st == 400, (base, out)
            # ... and a consistent diff for its own header at height 2: stored, under its own root
            assert (await post("/v1/leafdiff", {"header_hash": fake2.hash(), "base": 0,
                                                "diff": [[k[3], v[5]]]}))[0] == 200
            # the honest uploads, afterwards, are stored
            for hh, base, diff in [(h1.hash(), 0, honest1), (h2.hash(), 1, honest2), (h2.hash(), 1, honest2)]:
                st, out = await post("/v1/leafdiff", {"header_hash": hh, "base": base, "diff": diff})
                assert st == 200, out
            st, out = await post("/v1/leafdiff", {"header_hash": h2.hash(), "base": 1,
                                                  "diff": [*honest2[:2], [k[2], v[3]], [k[3], b""]]})
            assert st == 200  # the link is stored: another upload for it is a no-op, unchecked, not stored
            assert svc.store.leaf_roots(2) == [fake2.balances_root, h2.balances_root]

            # the reader recovers both accepted trees from this one DAP
            async with aiohttp.ClientSession() as session:
                dap = DapClient(str(c.make_url("")), session)
                for h, want in ((h1, t1), (h2, t2)):
                    got = await dap.leaf_set(h.height, h.balances_root)
                    assert got == want
                    tree = SparseMerkleTree()
                    tree.update(dict(got))
                    assert tree.root == h.balances_root
                assert await dap.leaf_set(2, os.urandom(32)) is None

    asyncio.run(go())


def test_leaf_diff_links_per_tree_are_bounded_and_each_serves_the_tree(tmp_path: Path) -> None:
    """The bound on stored leaf diffs: per (height, root) at most MAX_LEAF_DIFF_LINKS links from
    bases above 0 plus one from base 0; a further one is a no-op. Every link was checked to give
    its root (the service), so whichever are kept, the tree comes back."""
    store = open_store(f"sqlite://{tmp_path}/l.db")
    key = [os.urandom(32) for _ in range(12)]
    trees = [{key[j]: bytes([h, j]) * 16 for j in range(h + 1)} for h in range(10)]  # trees[h]: h+1 leaves
    root = [bytes([h]) * 32 for h in range(10)]  # stand-ins: the store keys by what it is told
    for h in range(1, 9):
        store.put_leaf_diff(h, h - 1, [(kk, vv) for kk, vv in trees[h].items() if trees[h - 1].get(kk) != vv],
                            root=root[h], base_root=root[h - 1] if h > 1 else bytes(32))
    top = 9
    for base in range(1, 9):  # eight diffs into the tree at 9, from every base
        store.put_leaf_diff(top, base, [(kk, vv) for kk, vv in trees[top].items() if trees[base].get(kk) != vv],
                            root=root[top], base_root=root[base])
    store.put_leaf_diff(top, 0, list(trees[top].items()), root=root[top])
    assert sorted(store.leaf_links(top, root[top])) == [0, 1, 2, 3, 4]  # 4 from bases above 0, first come, + base 0
    assert store.leaf_set(top, root[top]) == trees[top]
    assert store.leaf_set(5, root[5]) == trees[5]
    store.close()
