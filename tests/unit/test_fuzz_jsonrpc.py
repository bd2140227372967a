"""Fuzz: JSON-RPC bodies into the node (node/jsonrpc.py, node/api.py) and the gateway
(gateway/methods.py ``RecordingServer``, gateway/server.py's WebSocket parser).

In process, no sockets for the node: ``JsonRpcServer.handle_bytes`` of a node whose methods are
installed over the ingress, the mempool and the store, with member A of the fuzz committee
(``_fuzz_world.py``) as its enclave (so views and escape leaves reach a real enclave) and the
admin methods on. The gateway's node is a closed port (every call forwarded to it is "node
down"). Bodies: random bytes, random JSON, requests for every method with random params and ids,
integers too long to parse, nested arrays, batches up to and over the limit.

Each body gets a JSON answer (or none for notifications) that is a JSON-RPC response: for each
request the error code the malformed part calls for (-32700 not JSON, -32600 not a request,
-32601 unknown method, -32602 bad params, or an application code), never -32603 (internal
error: an unexpected exception in a method) nor an exception out of the server (a 500), and
no key in any message. A refused request changes nothing (mempool, batch settings, sessions).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit._fuzz import assert_no_secret, examples, json_values
from tests.unit._fuzz_world import CHAIN, L1_CHAIN, world

from enclavenet.gateway.server import Gateway
from enclavenet.node.api import install_rpc_methods
from enclavenet.node.config import NodeConfig
from enclavenet.node.core import NodeCore
from enclavenet.node.host import EnclaveHost
from enclavenet.node.ingress import Ingress
from enclavenet.node.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
)

ZERO = "0x" + "00" * 20
MAX_BATCH = 8  # the node's real limit is 20,000: a small one lets the fuzzer go over it cheaply
LOOP = asyncio.new_event_loop()  # one loop: the gateway's HTTP session and the enclave host live on it
GATEWAY_KEY = bytes.fromhex("c3" * 32)  # a --account key of the gateway: must never be told


class FuzzNode(NodeCore):
    def __init__(self) -> None:
        super().__init__(NodeConfig(name="fz", data_dir=tempfile.mkdtemp(prefix="fuzz-rpc-"), l1_rpc="http://127.0.0.1:9",
                                    rollup=ZERO, registry=ZERO, l1_chain_id=L1_CHAIN, chain_id=CHAIN,
                                    platform={"tee": "sgx"}, enclave={}, admin_rpc=True))
        self.ingress = Ingress(self)
        self.epoch, self.epochs_held = 0, [0]
        self.store.ensure()
        self.rpc.max_batch = MAX_BATCH
        install_rpc_methods(self, submit_envelope=self.ingress.submit_envelope, node_status=lambda: {"ok": True})


_node: FuzzNode | None = None
_gateway: Gateway | None = None


def node() -> FuzzNode:
    global _node
    w = world()
    if _node is None:
        _node = FuzzNode()
    if _node.host is None or _node.host.enclave is not w.a.handle:
        _node.host = EnclaveHost(w.a.handle)
    return _node


def gateway() -> Gateway:
    global _gateway
    if _gateway is None:
        _gateway = Gateway("http://127.0.0.1:9", accounts=[GATEWAY_KEY])
        _gateway.core.keys["0x" + "ab" * 20] = GATEWAY_KEY
        _gateway.rpc.max_batch = MAX_BATCH
    return _gateway


def _secrets() -> list[bytes | str]:
    g = gateway()
    return [*world().secrets(), GATEWAY_KEY, g.core.anon_secret]


NODE_METHODS = sorted([
    "eth_chainId", "net_version", "eth_blockNumber", "eth_gasPrice", "eth_maxPriorityFeePerGas",
    "eth_sendRawTransaction", "eth_getTransactionReceipt", "enclavenet_call", "enclavenet_estimateGas",
    "enclavenet_epochKey", "enclavenet_status", "enclavenet_contracts", "enclavenet_txStatus",
    "enclavenet_getHeader", "enclavenet_escapeLeaf", "enclavenet_adminSetBatch", "enclavenet_getLogs",
])


def _method_names(server: Any) -> list[str]:
    return [m for m in server.methods() if m != "enclavenet_gatewayCalls"]  # (its reset is a wanted change)


def _request(methods: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """A JSON-RPC request, mostly well-formed around random params; sometimes a broken envelope."""
    good = st.fixed_dictionaries(
        {"jsonrpc": st.just("2.0"), "method": methods, "params": st.lists(json_values, max_size=4)},
        optional={"id": st.one_of(st.integers(-5, 10**20), st.text(max_size=8), st.none())},
    )
    broken = st.dictionaries(
        st.sampled_from(["jsonrpc", "id", "method", "params", "x"]),
        st.one_of(json_values, methods, st.just("2.0")),
        max_size=5,
    )
    return st.one_of(good, good, broken, json_values)


def _bodies(methods: list[str]) -> st.SearchStrategy[bytes]:
    names = st.one_of(st.sampled_from(methods), st.text(max_size=12))
    one = _request(names)
    return st.one_of(
        st.binary(max_size=60),
        one.map(lambda r: json.dumps(r).encode()),
        st.lists(one, min_size=0, max_size=MAX_BATCH + 3).map(lambda rs: json.dumps(rs).encode()),
        st.builds(lambda m, n: json.dumps({"jsonrpc": "2.0", "id": 1, "method": m, "params": []})[:-2].encode()
                  + b"9" * n + b"]}", st.sampled_from(methods), st.sampled_from([4301, 5000, 20_000])),
        st.integers(4301, 6000).map(lambda n: b"1" * n),  # an integer too long to convert
        st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
        st.sampled_from([b"NaN", b'{"jsonrpc":"2.0","id":NaN,"method":"eth_chainId"}', b'"\\ud800"', b"\xef\xbb\xbf{}",
                         b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[],"jsonrpc":"1.0"}']),
    )


def _expected_code(req: Any, methods: set[str]) -> int | None:
    """The error code the request's envelope calls for (None: it reaches the method)."""
    if not isinstance(req, dict):
        return INVALID_REQUEST
    id_ = req.get("id")
    if not isinstance(id_, str | int | float | type(None)) or isinstance(id_, bool):
        return INVALID_REQUEST
    if req.get("jsonrpc") != "2.0" or not isinstance(req.get("method"), str):
        return INVALID_REQUEST
    if not isinstance(req.get("params", []), list):
        return INVALID_PARAMS
    if req["method"] not in methods:
        return METHOD_NOT_FOUND
    return None


def _check_response(resp: Any, want: int | None, secrets: list[bytes | str]) -> None:
    assert isinstance(resp, dict) and resp.get("jsonrpc") == "2.0", resp
    if "result" in resp:
        assert want is None, f"a malformed request (code {want} expected) got a result: {resp}"
        return
    err = resp["error"]
    assert isinstance(err, dict) and isinstance(err.get("code"), int) and isinstance(err.get("message"), str), err
    assert err["message"], err
    assert err["code"] != INTERNAL_ERROR, f"internal error: {err}"
    if want is not None:
        assert err["code"] == want, (want, err)
    else:
        assert err["code"] not in (PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND), err
    assert_no_secret(json.dumps(resp), secrets)


def _check_answer(body: bytes, raw: bytes | None, methods: set[str], secrets: list[bytes | str]) -> None:
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        assert raw is not None
        out = json.loads(raw)
        assert out["error"]["code"] == PARSE_ERROR, out
        assert_no_secret(raw.decode(), secrets)
        return
    if raw is None:  # only notifications
        reqs = parsed if isinstance(parsed, list) else [parsed]
        assert reqs and all(isinstance(r, dict) and "id" not in r for r in reqs), parsed
        return
    out = json.loads(raw)
    if isinstance(parsed, list):
        if not parsed or len(parsed) > MAX_BATCH:
            assert isinstance(out, dict) and out["error"]["code"] == INVALID_REQUEST, out
            return
        assert isinstance(out, list)
        # the answers, in order, of the requests that are not notifications (an invalid request is answered)
        answered = [r for r in parsed if not (isinstance(r, dict) and "id" not in r and _expected_code(r, methods) is None)]
        assert len(out) <= len(parsed)
        if len(out) == len(answered):
            for r, resp in zip(answered, out, strict=True):
                _check_response(resp, _expected_code(r, methods), secrets)
        else:  # notifications whose envelope is bad are answered too: check what came back
            for resp in out:
                _check_response(resp, None if "result" in resp else resp["error"]["code"], secrets)
        return
    _check_response(out, _expected_code(parsed, methods), secrets)


def _node_state(n: FuzzNode) -> tuple[Any, ...]:
    return (len(n.mempool), n.mempool.pending_count, n.cfg.batch_size, n.cfg.batch_interval, n.epoch,
            n.head_height, n.head_hash)


@settings(max_examples=examples(200))
@given(_bodies(NODE_METHODS))
def test_random_bodies_into_the_node_rpc(body: bytes) -> None:
    n = node()
    methods = set(n.rpc.methods())
    assert set(NODE_METHODS) <= methods
    before, fp = _node_state(n), world().fingerprint()
    try:
        raw = LOOP.run_until_complete(n.rpc.handle_bytes(body))
    except Exception as exc:  # aiohttp would answer HTTP 500 with a traceback in the log
        raise AssertionError(f"the node's JSON-RPC server raised {type(exc).__name__}: {exc}") from None
    _check_answer(body, raw, methods, _secrets())
    if raw is None or b'"result"' not in raw:
        assert _node_state(n) == before, "a refused request changed the node"
        assert world().fingerprint() == fp, "a refused request changed the enclave"


@settings(max_examples=examples(150))
@given(st.data())
def test_random_bodies_into_the_gateway(data: st.DataObject) -> None:
    g = gateway()
    methods = _method_names(g.rpc)
    body = data.draw(_bodies(methods))
    sessions = json.dumps(g.core.sessions.describe(), sort_keys=True, default=str)
    try:
        raw = LOOP.run_until_complete(g.rpc.handle_bytes(body))
    except Exception as exc:
        raise AssertionError(f"the gateway's JSON-RPC server raised {type(exc).__name__}: {exc}") from None
    _check_answer(body, raw, set(g.rpc.methods()), _secrets())
    if raw is None or b'"result"' not in raw:
        assert json.dumps(g.core.sessions.describe(), sort_keys=True, default=str) == sessions


@settings(max_examples=examples(100))
@given(st.one_of(
    _bodies(["eth_subscribe", "eth_unsubscribe", "eth_chainId"]).map(lambda b: b.decode("utf-8", "replace")),
    st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": st.integers(0, 9),
                           "method": st.sampled_from(["eth_subscribe", "eth_unsubscribe"]),
                           "params": st.one_of(json_values, st.integers(), st.dictionaries(st.text(max_size=3), json_values, min_size=1, max_size=2),
                                               st.lists(st.one_of(st.sampled_from(["newHeads", "logs"]), json_values), max_size=3))},
                          ).map(json.dumps),
))
def test_random_websocket_messages_into_the_gateway(raw: str) -> None:
    """The gateway's WebSocket path parses first (subscriptions are its own methods)."""
    g = gateway()
    notes: list[Any] = []
    try:
        out = LOOP.run_until_complete(g._ws_request(raw, notes.append))
    except Exception as exc:  # the socket's task would die and the client never get an answer
        raise AssertionError(f"the gateway's WebSocket handler raised {type(exc).__name__}: {exc}") from None
    if out is None:
        return
    for resp in (json.loads(out) if out.startswith("[") else [json.loads(out)]):
        assert isinstance(resp, dict) and ("result" in resp or "error" in resp), resp
        if "error" in resp:
            assert resp["error"]["code"] != INTERNAL_ERROR and resp["error"]["message"], resp
            assert_no_secret(json.dumps(resp), _secrets())
    for sub in list(g.chain._subs) if hasattr(g.chain, "_subs") else []:  # leave no subscription behind
        g.chain.unsubscribe(sub)
