"""The node's JSON-RPC core (no processes): requests, batches, notifications, errors, body limit;
the node config file; peer-message helpers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from enclavenet.crypto.hashing import keccak256
from enclavenet.node.config import ConfigError, NodeConfig
from enclavenet.node.jsonrpc import JsonRpcServer, RpcError, hex_bytes, quantity


def server() -> JsonRpcServer:
    s = JsonRpcServer(max_body=10_000, max_batch=5)
    s.method("add", lambda a, b: a + b)

    async def slow_echo(x: Any) -> Any:
        await asyncio.sleep(0)
        return x

    s.method("echo", slow_echo)

    def refuse() -> None:
        raise RpcError(-32001, "mempool full: try later")

    def boom() -> None:
        raise RuntimeError("secret key 0xdeadbeef leaked?")

    s.method("refuse", refuse)
    s.method("boom", boom)
    s.method("hex", lambda v: hex_bytes(v, "data", max_len=4).hex())
    s.method("qty", lambda v: quantity(v, "height"))
    return s


def run(body: bytes | str) -> Any:
    raw = asyncio.run(server().handle_bytes(body.encode() if isinstance(body, str) else body))
    return None if raw is None else json.loads(raw)


def req(method: str, *params: Any, id_: Any = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": list(params)}


def test_calls_sync_and_async_methods() -> None:
    assert run(json.dumps(req("add", 2, 3))) == {"jsonrpc": "2.0", "id": 1, "result": 5}
    assert run(json.dumps(req("echo", "x", id_="a")))["result"] == "x"


def test_errors_say_what_was_wrong() -> None:
    assert run("{nope")["error"]["code"] == -32700
    assert run("[]")["error"]["message"] == "invalid request: empty batch"
    assert run("5")["error"]["code"] == -32600
    assert run('{"id":1,"method":"add"}')["error"]["message"] == 'invalid request: "jsonrpc" must be "2.0"'
    assert run(json.dumps({"jsonrpc": "2.0", "id": 1, "method": 7}))["error"]["code"] == -32600
    assert run(json.dumps({"jsonrpc": "2.0", "id": [1], "method": "add"}))["error"]["code"] == -32600
    assert run(json.dumps(req("nope")))["error"] == {"code": -32601, "message": "unknown method 'nope'"}
    e = run(json.dumps(req("add", 1)))["error"]
    assert e["code"] == -32602 and "expected params [a, b], got 1" in e["message"]
    e = run(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "add", "params": {"a": 1}}))["error"]
    assert e["code"] == -32602 and "positional" in e["message"]
    assert run(json.dumps(req("refuse")))["error"] == {"code": -32001, "message": "mempool full: try later"}
    e = run(json.dumps(req("hex", "0x" + "00" * 9)))["error"]
    assert e["code"] == -32602 and "too large" in e["message"]
    assert "0x-prefixed" in run(json.dumps(req("hex", "abcd")))["error"]["message"]
    assert "not valid hex" in run(json.dumps(req("hex", "0xabc")))["error"]["message"]
    assert run(json.dumps(req("qty", "0x1a")))["result"] == 26
    assert "hex quantity" in run(json.dumps(req("qty", "zz")))["error"]["message"]
    assert "out of range" in run(json.dumps(req("qty", -1)))["error"]["message"]


def test_internal_errors_carry_no_details() -> None:
    e = run(json.dumps(req("boom")))["error"]
    assert e == {"code": -32603, "message": "internal error in boom"}
    assert "secret" not in json.dumps(e)


def test_batches_in_order_notifications_unanswered_and_bounded() -> None:
    out = run(json.dumps([req("add", 1, 1, id_=1), {"jsonrpc": "2.0", "method": "add", "params": [1, 2]},
                          req("nope", id_=3), 17]))
    assert [o.get("id") for o in out] == [1, 3, None]
    assert out[0]["result"] == 2 and out[1]["error"]["code"] == -32601 and out[2]["error"]["code"] == -32600
    assert run(json.dumps({"jsonrpc": "2.0", "method": "add", "params": [1, 2]})) is None
    too_many = run(json.dumps([req("add", 1, 1)] * 6))
    assert too_many["error"]["message"] == "invalid request: batch of 6 requests > 5"


def test_http_body_limit_and_health() -> None:
    async def go() -> None:
        async with TestClient(TestServer(server().app())) as client:
            r = await client.post("/", data=json.dumps(req("add", 1, 2)))
            assert (await r.json())["result"] == 3
            r = await client.post("/", data=b"x" * 20_000)
            assert r.status == 413 and "too large" in (await r.json())["error"]["message"]
            r = await client.get("/health")
            assert (await r.json())["ok"] is True

    asyncio.run(go())


def test_config_roundtrip_and_clear_errors(tmp_path: Path) -> None:
    cfg = NodeConfig(
        name="n0", data_dir=str(tmp_path), l1_rpc="http://127.0.0.1:1", rollup="0x" + "11" * 20,
        registry="0x" + "11" * 20, l1_chain_id=31337, chain_id=1337,
        platform={"tee": "sgx", "vendor_key": b"\x01" * 32}, enclave={"platform_roots": {1: "0x" + "22" * 20}},
        l1_key="0x" + "ab" * 32,
    )
    path = tmp_path / "config.json"
    cfg.save(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # holds the operator key and machine secrets
    back = NodeConfig.load(path)
    assert back.platform["vendor_key"] == b"\x01" * 32
    assert back.enclave["platform_roots"] == {1: "0x" + "22" * 20}  # int keys survive JSON
    assert "ab" * 32 not in repr(back) and "vendor_key" not in repr(back)
    d = json.loads(path.read_text())
    d["bogus"] = 1
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match="unknown node config field"):
        NodeConfig.load(path)
    del d["bogus"], d["rollup"]
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match=r"lacks field.*rollup"):
        NodeConfig.load(path)
    with pytest.raises(ConfigError, match="does not exist"):
        NodeConfig.load(tmp_path / "missing.json")
    d["rollup"] = "0x" + "11" * 20
    d["persist"] = "sometimes"
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match="persist"):
        NodeConfig.load(path)


def test_split_batch_data_matches_the_enclave_format() -> None:
    import cbor2

    from enclavenet.crypto.merkle import merkle_root
    from enclavenet.node.batch import data_commitment_of, split_batch_data

    meta = cbor2.dumps({"v": 1, "n_envelopes": 2, "n_entries": 2, "msg_start": 0, "msg_count": 0})
    items = [meta, b"env1", b"env2", b"ent1", b"ent2"]
    data = cbor2.dumps(items)
    m, envs, ents = split_batch_data(data)
    assert m["n_envelopes"] == 2 and envs == [b"env1", b"env2"] and ents == [b"ent1", b"ent2"]
    assert data_commitment_of(data) == merkle_root([keccak256(x) for x in items])
    with pytest.raises(ValueError, match="meta says"):
        split_batch_data(cbor2.dumps(items[:-1]))
