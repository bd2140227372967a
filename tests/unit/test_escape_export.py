"""Escape data for the DAPs: the enclave's ``escape_export`` (leaf-hash diffs + (balance, salt)
sealed to each known user), a DAP store folding the diffs back into the balances tree, and the
proof a user rebuilds from them alone."""

from __future__ import annotations

import time
from typing import Any

import pytest
from eth_account import Account

from enclavenet.crypto.envelope import seal
from enclavenet.crypto.escape import EscapeLeaf, escape_request_digest, open_escape_leaf
from enclavenet.crypto.header import Header
from enclavenet.crypto.messages import KIND_USER
from enclavenet.crypto.secp256k1 import SigningKey
from enclavenet.crypto.smt import SparseMerkleTree, smt_key, smt_leaf
from enclavenet.dap.store import SQLiteStore
from enclavenet.enclave.harness import Member, batch_request, form_committee, program_config
from enclavenet.enclave.tx import sign_tx
from enclavenet.tee import DEFAULT_PROGRAM, EnclaveError, InProcessEnclave, SimulatedVendor

CHAIN, L1_CHAIN = 4242, 31337
ETH = 10**18
VENDORS = [SimulatedVendor.generate(n) for n in ("sgx", "tdx")]
CFG = program_config(VENDORS, chain_id=CHAIN, l1_chain_id=L1_CHAIN)


class Net:
    def __init__(self) -> None:
        self.members = [Member(InProcessEnclave(v.new_platform(), DEFAULT_PROGRAM, CFG)) for v in VENDORS]
        self.epoch_pub = form_committee(self.members, 2, 2)
        self.prev, self.height, self.msg, self.l1_block = bytes(32), 0, 0, 1

    def batch(self, messages: list[list[Any]], envelopes: list[bytes] = ()) -> Header:  # type: ignore[assignment]
        msgs = []
        for kind, sender, value, payload in messages:
            msgs.append([self.msg, kind, sender, value, self.l1_block, payload])
            self.msg += 1
        self.height += 1
        req = batch_request(self.height, self.prev, l1_block=self.l1_block, messages=msgs, envelopes=list(envelopes))
        out = self.members[0].call("execute_batch", **req)
        v = self.members[1].call("verify_batch", header=out["header"], **req)
        for m in self.members:
            m.call("accept_header", header=out["header"], signatures=[out["signature"], v["signature"]])
        self.prev, self.l1_block = out["header_hash"], self.l1_block + 1
        return Header.decode(out["header"])


def _pub(acct: Any) -> bytes:
    return SigningKey(bytes(acct.key))._key.public_key.format(compressed=False)


def _rebuild(leaves: dict[bytes, bytes]) -> SparseMerkleTree:
    t = SparseMerkleTree()
    t.update(dict(leaves))
    return t


def test_exported_diffs_fold_into_the_balances_tree_and_sealed_records_give_each_user_a_proof() -> None:
    net = Net()
    alice, bob, carol, dave = (Account.create() for _ in range(4))
    store = SQLiteStore(":memory:")
    h1 = net.batch([[KIND_USER, a.address, ETH + i, b""] for i, a in enumerate((alice, bob, carol))])
    # alice's key given by the host; bob registers his by asking for his own leaf
    exp = int(time.time()) + 600
    sig = SigningKey(bytes(bob.key)).sign(escape_request_digest(CHAIN, L1_CHAIN, CFG["rollup"], bob.address, exp))
    net.members[0].call("escape_leaf", address=bob.address, expiry=exp, signature=sig)
    out = net.members[0].call("escape_export", height=1, public_keys=[_pub(alice)])
    assert out["base"] == 0 and len(out["diff"]) == 3 and out["balances_root"] == h1.balances_root
    assert sorted(bytes(a) for a, _ in out["sealed"]) == sorted(bytes.fromhex(x.address[2:]) for x in (alice, bob))
    store.put_leaf_diff(1, out["base"], [(k, v) for k, v in out["diff"]], root=h1.balances_root)
    sealed = {bytes(a): s for a, s in out["sealed"]}
    # the diff is leaf hashes only: no balance in clear
    assert all((ETH + i).to_bytes(32, "big") not in b"".join(k + v for k, v in out["diff"]) for i in range(3))

    # height 2: alice pays dave; the changed leaves are exported from base 1, among cover leaves
    # (issue 14 M2: the batch re-salted the unchanged bob and carol too, so the diff does not
    # name exactly the accounts whose balance changed; enclave/leaf_cover.py)
    pay = seal(sign_tx(bytes(alice.key), CHAIN, 0, dave.address, value=7, gas=21_000), net.epoch_pub, CHAIN, 0)
    h2 = net.batch([], [pay.envelope.encode()])
    out2 = net.members[0].call("escape_export", height=2)
    assert out2["base"] == 1
    assert {bytes(k) for k, _ in out2["diff"]} == {smt_key(a.address) for a in (alice, bob, carol, dave)}
    # alice's (changed) and bob's (re-salted) records are sealed again; dave's key is unknown
    assert sorted(bytes(a) for a, _ in out2["sealed"]) == sorted(bytes.fromhex(x.address[2:]) for x in (alice, bob))
    store.put_leaf_diff(2, out2["base"], [(k, v) for k, v in out2["diff"]], root=h2.balances_root,
                        base_root=h1.balances_root)
    sealed.update({bytes(a): s for a, s in out2["sealed"]})

    # member 1 never exported: its first export is every leaf (base 0); the fold agrees either way
    full = net.members[1].call("escape_export", height=2)
    assert full["base"] == 0 and len(full["diff"]) == 4
    for h, header in ((1, h1), (2, h2)):
        leaves = store.leaf_set(h)
        assert leaves is not None and _rebuild(leaves).root == header.balances_root
    assert store.leaf_set(3) is None  # no chain of diffs up to height 3

    # alice rebuilds her proof from the DAP data alone
    tree = _rebuild(store.leaf_set(2) or {})
    rec = open_escape_leaf(sealed[bytes.fromhex(alice.address[2:])], bytes(alice.key))
    key = smt_key(alice.address)
    assert rec.balance == ETH - 7 and tree.get(key) == smt_leaf(key, rec.balance, rec.salt)
    leaf = EscapeLeaf(alice.address, rec.balance, rec.salt, tuple(tree.proof(key)), 2, h2.hash(), h2.balances_root)
    assert leaf.verify()
    assert open_escape_leaf(sealed[bytes.fromhex(bob.address[2:])], bytes(bob.key)).balance == ETH + 1


def test_escape_export_refusals_say_why() -> None:
    net = Net()
    net.batch([[KIND_USER, Account.create().address, ETH, b""]])
    m = net.members[0]
    with pytest.raises(EnclaveError, match="head is at height 1, not 2"):
        m.call("escape_export", height=2)
    with pytest.raises(EnclaveError, match="not a secp256k1 public key"):
        m.call("escape_export", height=1, public_keys=[b"\x04" + b"\x01" * 64])
    with pytest.raises(EnclaveError, match="public_keys must be a list"):
        m.call("escape_export", height=1, public_keys=b"x")


def test_dap_service_stores_leaf_diffs_serves_the_fold_and_refuses_bad_ones() -> None:
    import asyncio
    import os

    import cbor2
    from aiohttp.test_utils import TestClient, TestServer

    from enclavenet.crypto.dap import data_commitment
    from enclavenet.crypto.header import EMPTY_WITHDRAWALS_HASH
    from enclavenet.dap.service import DapConfig, DapService

    svc = DapService(DapConfig(store=":memory:", key=SigningKey.generate(), l1_chain_id=31337, rollup="0x" + "ab" * 20))
    items = [cbor2.dumps({"v": 1, "height": 2}), b"x"]
    k1, k2, l1, l2 = (os.urandom(32) for _ in range(4))
    root2, root3 = _rebuild({k1: l1, k2: l2}).root, _rebuild({k2: l1}).root
    h = Header(2, os.urandom(32), 0, os.urandom(32), 2, 0, *(os.urandom(32) for _ in range(4)), root2,
               EMPTY_WITHDRAWALS_HASH, data_commitment(items))

    async def go() -> None:
        async with TestClient(TestServer(svc.app)) as c:
            async def post(body: Any) -> tuple[int, Any]:
                r = await c.post("/v1/leafdiff", data=cbor2.dumps(body))
                raw = await r.read()
                return r.status, cbor2.loads(raw) if r.content_type == "application/cbor" else (await r.json())

            assert (await c.post("/v1/batch", data=cbor2.dumps({"header": h.encode(), "batch_data": cbor2.dumps(items)}))).status == 200
            hh = h.hash()
            for body, msg in [
                ({"header_hash": os.urandom(32), "base": 0, "diff": []}, "POST /v1/batch first"),
                ({"header_hash": hh, "base": 2, "diff": []}, "base must be an integer height below"),
                ({"header_hash": hh, "base": 0, "diff": [[b"k", l1]]}, "32-byte smt key"),
                ({"header_hash": hh, "base": 0, "diff": "x"}, "diff must be a list"),
                ({"header_hash": hh, "base": 0, "diff": [[k1, l1], [k1, l2]]}, "each smt key at most once"),
                ({"header_hash": hh, "base": 0, "diff": [[k1, l1]]}, "does not give the header's balances_root"),
                ({"header_hash": hh, "base": 1, "diff": [[k1, l1], [k2, l2]]}, "ancestor at height 1 is not stored"),
            ]:
                st, out = await post(body)
                assert st == 400 and msg in out["error"], (msg, out)
            r = await c.get("/v1/leafset/2")
            assert r.status == 404 and "no chain of leaf diffs" in (await r.json())["error"]
            st, _ = await post({"header_hash": hh, "base": 0, "diff": [[k1, l1], [k2, l2]]})
            assert st == 200
            svc.store.put_leaf_diff(3, 2, [(k1, b""), (k2, l1)], root=root3, base_root=root2)  # a later header removes k1
            assert cbor2.loads(await (await c.get("/v1/leafset/2")).read()) == sorted([[k1, l1], [k2, l2]])
            assert cbor2.loads(await (await c.get(f"/v1/leafset/2?root={root2.hex()}")).read()) == sorted([[k1, l1], [k2, l2]])
            assert cbor2.loads(await (await c.get("/v1/leafset/3")).read()) == [[k2, l1]]
            assert (await c.get(f"/v1/leafset/3?root={root2.hex()}")).status == 404

    asyncio.run(go())
