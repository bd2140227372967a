"""``enclavenet dap`` processes on both storage backends (SQLite, and a real PostgreSQL started
here with initdb/pg_ctl): receipts only for data matching its commitment, durability across a
crash, corrupt or missing data detected by the reader (who asks another DAP), snapshots and
sealed escape leaves, and the responder answering the penalty game on L1 (anvil)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import psycopg
import pytest
from eth_account import Account
from tests.unit._dap_batches import tree_batch

from enclavenet.chain import RpcL1
from enclavenet.contracts import deploy_contracts
from enclavenet.crypto.dap import dap_receipt_digest, data_commitment, piece_path
from enclavenet.crypto.escape import EscapeLeaf, open_escape_leaf, seal_escape_leaf
from enclavenet.crypto.header import EMPTY_WITHDRAWALS_HASH, Header
from enclavenet.crypto.secp256k1 import SigningKey, recover_address
from enclavenet.crypto.smt import SparseMerkleTree
from enclavenet.dap.client import DapError, DapPool, DataUnavailable, run
from enclavenet.dap.l1 import deploy_dap_manager, receipts_arg, register_dap
from enclavenet.dap.pgserver import TempPostgres
from enclavenet.dap.process import DapProcess

pytestmark = pytest.mark.integration

CHAIN_ID = 31337
ROLLUP = "0x" + "ab" * 20


@pytest.fixture(scope="module")
def postgres() -> Iterator[TempPostgres]:
    with TempPostgres() as pg:
        yield pg


class Backend:
    """Makes fresh stores of one kind and can tamper with them directly (a real fault)."""

    def __init__(self, kind: str, tmp: Path, pg: TempPostgres | None) -> None:
        self.kind, self.tmp, self.pg = kind, tmp, pg
        self.n = 0

    def new(self) -> str:
        self.n += 1
        if self.kind == "sqlite":
            return f"sqlite://{self.tmp}/dap{self.n}.db"
        assert self.pg is not None
        return self.pg.create_database(f"dap_{os.getpid()}_{id(self)}_{self.n}")

    def execute(self, spec: str, sql: str, params: tuple[Any, ...]) -> None:
        if self.kind == "sqlite":
            db = sqlite3.connect(spec[len("sqlite://"):])
            db.execute(sql.replace("%s", "?"), params)
            db.commit()
            db.close()
        else:
            with psycopg.connect(spec, autocommit=True) as conn:
                conn.execute(sql, params)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    pg = request.getfixturevalue("postgres") if request.param == "postgres" else None
    return Backend(request.param, tmp_path, pg)


class Daps:
    def __init__(self, tmp: Path, backend: Backend) -> None:
        self.tmp, self.backend = tmp, backend
        self.procs: list[DapProcess] = []
        self.stores: list[str] = []

    def start(self, n: int, *, rollup: str = ROLLUP, chain_id: int = CHAIN_ID, **kw: Any) -> list[DapProcess]:
        for i in range(len(self.procs), len(self.procs) + n):
            spec = self.backend.new()
            p = DapProcess(self.tmp / f"dap{i}.key", spec, rollup, chain_id, log_path=self.tmp / f"dap{i}.log", **kw)
            self.procs.append(p.start())
            self.stores.append(spec)
        return self.procs

    def pool(self, chain_id: int = CHAIN_ID, rollup: str = ROLLUP) -> DapPool:
        return DapPool({p.address: p.url for p in self.procs if p.address and p.url}, chain_id, rollup)

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


@pytest.fixture
def daps(tmp_path: Path, backend: Backend) -> Iterator[Daps]:
    d = Daps(tmp_path, backend)
    yield d
    d.stop()


def make_batch(height: int, n_items: int = 9, prev: bytes = b"\x00" * 32) -> tuple[Header, bytes]:
    items = [cbor2.dumps({"v": 1, "height": height})] + [os.urandom(100 + 37 * i) for i in range(n_items - 1)]
    h = Header(height, prev, 0, os.urandom(32), height, 0, os.urandom(32), os.urandom(32), os.urandom(32),
               os.urandom(32), os.urandom(32), EMPTY_WITHDRAWALS_HASH, data_commitment(items))
    return h, cbor2.dumps(items)


# ------------------------------------------------------------------------------ storage


def test_receipts_only_for_matching_data_and_data_comes_back(daps: Daps) -> None:
    procs = daps.start(3)
    h, data = make_batch(1)

    async def go() -> None:
        async with daps.pool() as pool:
            receipts = await pool.store(h, data)
            assert [r.signer for r in receipts] == sorted((p.address for p in procs), key=str.lower)
            digest = dap_receipt_digest(CHAIN_ID, ROLLUP, h.data_commitment)
            assert all(recover_address(digest, r.signature) == r.signer for r in receipts)
            assert len(receipts_arg(r.pair() for r in receipts)) == 3
            got = await pool.fetch_batch(h.data_commitment)
            assert got.batch_data == data and got.header == h
            assert (await pool.fetch_by_hash(h.hash())).batch_data == data
            # batch data that does not match the header's commitment gets no receipt
            bad = cbor2.dumps([*cbor2.loads(data), b"extra"])
            with pytest.raises(DapError, match="does not match the header's data_commitment"):
                await pool.clients[0].store(h, bad)
            with pytest.raises(DapError, match="CBOR"):
                await pool.clients[0].store(h, b"\xff\x00garbage")
            st = await pool.clients[0].status()
            assert st["batches"] == 1 and st["max_height"] == 1

    run(go())


def test_stored_data_survives_a_crash(daps: Daps) -> None:
    (p,) = daps.start(1)
    batches = [make_batch(i) for i in range(1, 6)]

    async def store() -> None:
        async with daps.pool() as pool:
            for h, d in batches:
                await pool.store(h, d)

    run(store())
    p.kill()  # SIGKILL right after the receipts
    p.start()

    async def check() -> None:
        async with daps.pool() as pool:
            for h, d in batches:
                assert (await pool.fetch_batch(h.data_commitment)).batch_data == d
            refs = await pool.headers(1, 10)
            assert [r.height for r in refs] == [1, 2, 3, 4, 5]

    run(check())


def test_corrupt_or_missing_data_is_detected_and_another_dap_asked(daps: Daps) -> None:
    procs = daps.start(3)
    h, data = make_batch(7)
    run(_store(daps, h, data))
    items = cbor2.loads(data)
    corrupt = cbor2.dumps([items[0], b"tampered", *items[2:]])
    daps.backend.execute(daps.stores[0], "UPDATE batches SET data = %s", (corrupt,))
    daps.backend.execute(daps.stores[1], "DELETE FROM batches", ())

    async def go() -> None:
        async with daps.pool() as pool:
            by_addr = {c.address: c for c in pool.clients}
            with pytest.raises(DapError, match="does not match the header's data commitment"):
                await by_addr[procs[0].address].batch(h.data_commitment)
            assert await by_addr[procs[1].address].batch(h.data_commitment) is None
            for _ in range(4):  # whatever order the pool tries, only the good copy comes back
                assert (await pool.fetch_batch(h.data_commitment)).batch_data == data
            daps.backend.execute(daps.stores[2], "DELETE FROM batches", ())
            with pytest.raises(DataUnavailable, match="no DAP returned"):
                await pool.fetch_batch(h.data_commitment)

    run(go())


async def _store(daps: Daps, h: Header, data: bytes, **kw: Any) -> None:
    async with daps.pool() as pool:
        await pool.store(h, data, **kw)


def test_snapshots_and_escape_leaves_sealed_to_their_users(daps: Daps) -> None:
    daps.start(2)
    user = SigningKey.generate()
    pub = bytes([4]) + user.public_key

    def leaf(height: int, h: Header, balance: int) -> bytes:
        return seal_escape_leaf(EscapeLeaf(user.address, balance, os.urandom(32), (os.urandom(32),), height,
                                           h.hash(), h.balances_root), pub)

    h1, d1 = make_batch(1)
    h2, d2 = make_batch(2, prev=h1.hash())
    h3, d3 = make_batch(3, prev=h2.hash())

    async def go() -> None:
        async with daps.pool() as pool:
            await pool.store(h1, d1, snapshot=(0, b"snap-1"), leaves=[(user.address, leaf(1, h1, 10))])
            await pool.store(h2, d2)
            await pool.store(h3, d3, snapshot=(0, b"snap-3"))
            c = pool.clients[0]
            await c.put_leaves(h3.hash(), [(user.address, leaf(3, h3, 30))])
            snaps = await pool.snapshots()
            assert [(s.height, s.blob) for s in snaps] == [(3, b"snap-3")]
            older = await pool.snapshots(max_height=2)
            assert [(s.height, s.header_hash) for s in older] == [(1, h1.hash())]
            got = await pool.leaf(user.address)  # the newest any DAP has
            assert got.height == 3 and open_escape_leaf(got.sealed, user.secret).balance == 30
            at2 = await pool.leaf(user.address, max_height=2)
            assert open_escape_leaf(at2.sealed, user.secret).balance == 10
            with pytest.raises(DataUnavailable):
                await pool.leaf(SigningKey.generate().address)
            with pytest.raises(DapError, match="POST /v1/batch first"):
                await c.put_snapshot(os.urandom(32), 0, b"x")

    run(go())


def test_a_wrong_first_leaf_diff_is_refused_and_the_honest_one_served(daps: Daps) -> None:
    """Issue 13: a wrong leaf diff uploaded first (anyone may upload) used to hold the only place
    for that (height, base) at the DAP. Now the DAP refuses a diff unless, folded onto the tree it
    holds for the header's ancestor, it gives the header's balances_root, and keys diffs by that
    root: the honest diffs, uploaded after, are served, and the user recovers from this one DAP."""
    daps.start(1)
    keys = [os.urandom(32) for _ in range(40)]
    t1 = {key: os.urandom(32) for key in keys[:30]}
    t2 = {**{key: os.urandom(32) for key in keys[:5]}, **{key: t1[key] for key in keys[10:30]},
          **{key: os.urandom(32) for key in keys[30:]}}  # 5 changed, 5 removed, 10 added
    h1, d1 = tree_batch(1, t1, bytes(32))
    h2, d2 = tree_batch(2, t2, h1.hash())
    fake_tree = {keys[0]: os.urandom(32)}
    fake, fd = tree_batch(2, fake_tree, h1.hash())  # the attacker's own header at height 2
    diff2 = [(key, t2.get(key, b"")) for key in keys if t1.get(key) != t2.get(key)]

    async def go() -> None:
        async with daps.pool() as pool:
            c = pool.clients[0]
            for h, d in ((h1, d1), (h2, d2), (fake, fd)):
                await c.store(h, d)
            wrong1 = [*list(t1.items())[1:], (keys[0], os.urandom(32))]
            with pytest.raises(DapError, match="does not give the header's balances_root"):
                await c.put_leaf_diff(h1.hash(), 0, wrong1)
            with pytest.raises(DapError, match="no leaf set of the header's ancestor at height 1"):
                await c.put_leaf_diff(h2.hash(), 1, diff2)
            with pytest.raises(DapError, match="does not give the header's balances_root"):
                await c.put_leaf_diff(h2.hash(), 0, list(t1.items()))
            await c.put_leaf_diff(fake.hash(), 0, list(fake_tree.items()))  # consistent with its own header
            # the honest uploads come second
            await c.put_leaf_diff(h1.hash(), 0, list(t1.items()))
            await c.put_leaf_diff(h2.hash(), 1, diff2)
            await c.put_leaf_diff(h2.hash(), 1, diff2)  # again: a no-op
            for h, want in ((h1, t1), (h2, t2)):
                got = await c.leaf_set(h.height, h.balances_root)
                assert got == want
                tree = SparseMerkleTree()
                tree.update(dict(got or {}))
                assert tree.root == h.balances_root
            assert await c.leaf_set(2, os.urandom(32)) is None

    run(go())


# ------------------------------------------------------------------------------ the game on L1


def test_responder_answers_requests_and_the_lazy_dap_is_slashed(daps: Daps, anvil_l1: RpcL1) -> None:
    l1 = anvil_l1
    owner = l1.sender(0)
    dep = deploy_contracts(owner, owner.address, 1, 1)
    manager = deploy_dap_manager(owner, dep.rollup_address, min_collateral=10**18, leave_delay=50,
                                 request_fee=10**15, answer_period=8, lazy_penalty=10**17)
    keys = [SigningKey.generate() for _ in range(2)]
    funder = l1.sender(3)
    for i, k in enumerate(keys):
        (daps.tmp / f"dap{i}.key").write_text(k.secret.hex())
        funder.send_raw(k.address, value=3 * 10**18)
        register_dap(l1.sender(Account.from_key(k.secret)), manager, f"http://127.0.0.1/{i}", 10**18)
    common = dict(rollup=dep.rollup_address, chain_id=l1.chain_id, l1_rpc=l1.endpoint, manager=manager.address,
                  from_block=l1.block_number())
    honest = daps.start(1, **common)[0]
    lazy = daps.start(1, lazy=True, **common)[1]
    h, data = make_batch(1, n_items=12)

    async def store() -> list[Any]:
        async with daps.pool(l1.chain_id, dep.rollup_address) as pool:
            return await pool.store(h, data)

    receipts = run(store())
    path, _ = piece_path(10, 12)
    rc = l1.sender(1).transact(manager.functions.requestData(h.data_commitment, path,
                                                             receipts_arg(r.pair() for r in receipts)), value=10**15)
    rid = manager.events.DataRequested().process_receipt(rc)[0].args.request_id
    # the honest DAP's responder sees the request and answers on chain before the deadline
    deadline = time.monotonic() + 30
    while not manager.functions.answered(rid, honest.address).call():
        assert time.monotonic() < deadline, "the honest DAP did not answer"
        l1.mine(1)
        time.sleep(0.2)
    assert not manager.functions.answered(rid, lazy.address).call()
    l1.mine(10)
    l1.sender(1).transact(manager.functions.resolveRequest(rid, [r.signer for r in receipts]))
    assert manager.functions.info(honest.address).call()[0] == 10**18
    assert manager.functions.info(lazy.address).call()[0] == 10**18 - 10**17
    assert manager.functions.owed(honest.address).call() == 10**15
