"""Acknowledged means durable (issue 13 item 3): ``eth_sendRawTransaction`` returns the receipt
id only once the envelope is in ``pending.log`` and fsynced (node/ingress.py, group commit),
on the node's real JSON-RPC path over HTTP: the ingress role, the mempool and the store of a
node (no enclave, no L1), with ``os.fsync`` watched (and held) where the store calls it."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from tests.unit._rpc_node import RpcNode as Node
from tests.unit._rpc_node import serving

from enclavenet.crypto.envelope import HintSigner, RoutingHint, seal
from enclavenet.crypto.hashing import address_bytes, keccak256
from enclavenet.crypto.secp256k1 import SigningKey
from enclavenet.node import store as store_mod
from enclavenet.node.api import NOT_PERSISTED
from enclavenet.node.store import PENDING, NodeStore

ZERO = "0x" + "00" * 20
EPOCH_PUB = X25519PrivateKey.generate().public_key().public_bytes_raw()


def envelope(i: int) -> bytes:
    key = SigningKey(keccak256(b"durable", i.to_bytes(8, "big")))  # a sender per envelope, signing its hint
    hint = RoutingHint(address_bytes(key.address), 0)
    return seal(b"tx %d" % i, EPOCH_PUB, 1337, 0, hint, signer=HintSigner(key.secret)).envelope.encode()


def send(raw: bytes, id_: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": "eth_sendRawTransaction", "params": ["0x" + raw.hex()]}


async def post(client: TestClient[Any, Any], body: Any) -> Any:
    r = await client.post("/", data=json.dumps(body))
    return await r.json()


class FsyncGate:
    """Replaces ``os.fsync`` in node/store.py: records what each fsync of ``pending.log`` made
    durable and holds it until ``release``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.open = threading.Event()
        self.calls = 0
        self.seen: list[bytes] = []  # pending.log's bytes at each fsync of it
        self.real: Callable[[int], None] = os.fsync

    def __call__(self, fd: int) -> None:
        if os.path.realpath(f"/proc/self/fd/{fd}") == str(self.path.resolve()):
            self.calls += 1
            self.seen.append(self.path.read_bytes())
            assert self.open.wait(10), "fsync held for too long"
        self.real(fd)


def test_the_receipt_id_comes_only_after_the_envelope_is_fsynced(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    gate = FsyncGate(tmp_path / PENDING)
    monkeypatch.setattr(store_mod.os, "fsync", gate)
    raw = envelope(1)

    async def go() -> None:
        async with serving(tmp_path) as (_node, client):
            answer = asyncio.ensure_future(post(client, send(raw)))
            for _ in range(200):  # the write reached its fsync (held there)
                if gate.calls:
                    break
                await asyncio.sleep(0.01)
            assert gate.calls == 1 and raw in gate.seen[0]
            # held fsync: no answer yet, and the node keeps serving other requests meanwhile
            other = await post(client, {"jsonrpc": "2.0", "id": 2, "method": "enclavenet_txStatus",
                                        "params": ["0x" + keccak256(raw).hex()]})
            assert other["result"]["status"] == "pending"
            await asyncio.sleep(0.2)
            early = answer.done()
            gate.open.set()
            out = await answer
            assert not early, "the receipt id was returned before pending.log was fsynced"
            assert out["result"] == "0x" + keccak256(raw).hex()
            assert NodeStore(tmp_path).read_pending() == [raw]  # on disk when the answer came

    try:
        asyncio.run(go())
    finally:
        gate.open.set()


def test_a_batch_of_transactions_is_one_group_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = FsyncGate(tmp_path / PENDING)
    gate.open.set()
    monkeypatch.setattr(store_mod.os, "fsync", gate)
    envs = [envelope(i) for i in range(50)]

    async def go() -> None:
        async with serving(tmp_path) as (node, client):
            out = await post(client, [send(e, i) for i, e in enumerate(envs)])
            assert [o["result"] for o in out] == ["0x" + keccak256(e).hex() for e in envs]
            assert gate.calls == 1 and node.ingress.pending_log.writes == 1
            assert node.ingress._buf == envs  # forwarded after the commit, in order
            # submissions while a write runs form the next group (one more fsync for all ten)
            gate.open.clear()
            first = asyncio.ensure_future(post(client, send(envelope(100))))
            while gate.calls < 2:
                await asyncio.sleep(0.01)
            rest = [asyncio.ensure_future(post(client, send(envelope(200 + i)))) for i in range(10)]
            await asyncio.sleep(0.2)
            early = [r.done() for r in (first, *rest)]
            gate.open.set()
            assert "result" in await first
            assert all("result" in r for r in await asyncio.gather(*rest))
            assert early == [False] * 11, "answered before the fsync"
            assert gate.calls == 3 and node.ingress.pending_log.items == 61

    try:
        asyncio.run(go())
    finally:
        gate.open.set()
    assert len(NodeStore(tmp_path).read_pending() or []) == 61


def test_a_failed_write_is_an_error_and_never_acknowledged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(self: NodeStore, envelopes: list[bytes]) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    raw = envelope(7)

    async def go() -> None:
        async with serving(tmp_path) as (node, client):
            monkeypatch.setattr(NodeStore, "append_pending", full)
            out = await post(client, [send(raw, 1), send(envelope(8), 2)])
            assert [o["error"]["code"] for o in out] == [NOT_PERSISTED] * 2
            assert "could not write the transaction to its disk" in out[0]["error"]["message"]
            assert "No space left" in out[0]["error"]["message"] and "result" not in out[0]
            assert keccak256(raw) not in node.mempool and len(node.mempool) == 0
            assert node.ingress._buf == []  # not forwarded either
            monkeypatch.undo()  # the disk is back: the same envelope is accepted (no duplicate)
            assert (await post(client, send(raw)))["result"] == "0x" + keccak256(raw).hex()

    asyncio.run(go())
    assert NodeStore(tmp_path).read_pending() == [raw]


def test_compaction_is_atomic_and_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = NodeStore(tmp_path)
    st.append_pending([b"a", b"b"])
    st.append_pending([b"c"])
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync " + os.path.basename(os.path.realpath(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(a: Any, b: Any) -> None:
        calls.append(f"rename {Path(a).name} {Path(b).name}")
        raise OSError(errno.EIO, "crash before the rename")

    monkeypatch.setattr(store_mod.os, "fsync", fsync)
    monkeypatch.setattr(store_mod.os, "replace", replace)
    with pytest.raises(OSError):
        st.compact_pending([b"c"])
    assert st.read_pending() == [b"a", b"b", b"c"]  # the old log is whole

    def rename(a: Any, b: Any) -> None:
        calls.append(f"rename {Path(a).name} {Path(b).name}")
        real_replace(a, b)

    monkeypatch.setattr(store_mod.os, "replace", rename)
    calls.clear()
    st.compact_pending([b"c"])
    # the new bytes are on disk before the rename, the rename before compact_pending returns
    assert calls == ["fsync pending.tmp", "rename pending.tmp pending.log", f"fsync {tmp_path.name}"], calls
    assert st.read_pending() == [b"c"]


def test_a_restart_offers_the_logged_envelopes_again_and_keeps_them_logged(tmp_path: Path) -> None:
    envs = [envelope(i) for i in range(3)]
    NodeStore(tmp_path).append_pending(envs)

    async def go() -> None:
        node = Node(tmp_path)
        node.receipts.add({"height": "0x1"}, [keccak256(envs[0])], [b"sealed"])  # included before the crash
        node.ingress.reload_pending()
        assert keccak256(envs[1]) in node.mempool and keccak256(envs[0]) not in node.mempool
        assert node.ingress._buf == envs[1:]

    asyncio.run(go())
    assert NodeStore(tmp_path).read_pending() == envs[1:]
    assert not (tmp_path / "pending.tmp").exists()
