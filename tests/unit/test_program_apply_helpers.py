"""The fast paths added for the apply path and the node's hot loop agree with the reference code:
batch data roots / data commitment vs ``crypto.merkle`` and ``commit_batch_data``, routing hints
read at fixed offsets vs ``Envelope.decode``, and the L1 tip probe against a real HTTP server."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import cbor2
import pytest

from enclavenet.crypto.envelope import Envelope, RoutingHint, SessionKey, seal
from enclavenet.crypto.hashing import keccak256
from enclavenet.crypto.merkle import merkle_root
from enclavenet.enclave.batch import (
    BatchInput,
    batch_data_items,
    batch_data_roots,
    commit_batch_data,
    data_commitment_of_items,
)
from enclavenet.enclave.errors import EnclaveRefusal
from enclavenet.node.batch import routing_hints as _routing_hints
from enclavenet.node.l1probe import L1Probe

PUB = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")


@pytest.mark.parametrize("n_env,n_ent", [(0, 0), (1, 1), (3, 5), (17, 17)])
def test_batch_data_roots_match_the_reference(n_env: int, n_ent: int) -> None:
    envs = [os.urandom(40 + i) for i in range(n_env)]
    entries = [os.urandom(30 + i) for i in range(n_ent)]
    inp = BatchInput(7, b"\x01" * 32, 0, 3, 1_700_000_000, [], envs)
    c = commit_batch_data(inp, 0, 0, b"\x02" * 32, [keccak256(e) for e in envs], entries)
    items = batch_data_items(c.batch_data)
    tx_root, receipts_root, commitment, meta = batch_data_roots(items)
    assert (tx_root, receipts_root, commitment) == (c.tx_root, c.receipts_root, c.data_commitment)
    assert commitment == merkle_root([keccak256(x) for x in items]) == data_commitment_of_items(items)
    assert meta["n_envelopes"] == n_env and meta["timestamp"] == 1_700_000_000
    bad = cbor2.loads(c.batch_data)[:-1] if n_ent else [cbor2.dumps({"v": 2})]
    with pytest.raises(EnclaveRefusal):
        batch_data_roots(bad)


def test_routing_hints_at_fixed_offsets_equal_envelope_decode() -> None:
    envs = [seal(os.urandom(50), PUB, 1337, 2, RoutingHint(os.urandom(20), n)).envelope.encode() for n in (0, 1, 2**63)]
    envs.append(seal(b"no hint", PUB, 1337, 2).envelope.encode())
    hint = RoutingHint(os.urandom(20), 7)
    envs.append(seal(b"session", PUB, 1337, 2, hint, SessionKey(PUB)).envelope.encode())  # flags 3
    envs += [b"\x02" + envs[0][1:], envs[0][:60], b"", bytes([1, 5]) + envs[0][2:]]
    want = []
    for e in envs:
        try:
            env = Envelope.decode(e)
        except ValueError:
            continue
        if env.hint is not None:
            want.append((env.hint.sender, env.hint.nonce))
    assert _routing_hints(envs) == want and len(want) == 4


class _L1(BaseHTTPRequestHandler):
    tip: dict[str, Any] = {"number": "0x10", "hash": "0x" + "ab" * 32}

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert req["method"] == "eth_getBlockByNumber" and req["params"] == ["latest", False]
        body = json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": self.tip}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_l1_probe_reads_the_tip_reuses_its_connection_and_survives_failures() -> None:
    srv = HTTPServer(("127.0.0.1", 0), _L1)
    srv.protocol_version = "HTTP/1.1"
    _L1.protocol_version = "HTTP/1.1"
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        probe = L1Probe(f"http://127.0.0.1:{srv.server_port}")
        assert probe.tip() == (16, "0x" + "ab" * 32)
        conn = probe._conn
        _L1.tip = {"number": "0x11", "hash": "0x" + "cd" * 32}
        assert probe.tip() == (17, "0x" + "cd" * 32) and probe._conn is conn  # keep-alive
        _L1.tip = {"number": "not hex"}
        assert probe.tip() is None and probe._conn is None  # a bad answer: no tip, reconnect next time
    finally:
        srv.shutdown()
        srv.server_close()
    assert L1Probe(f"http://127.0.0.1:{srv.server_port}").tip() is None  # nobody listening


def test_mempool_fast_fields_equal_the_full_parse() -> None:
    from enclavenet.node.mempool import MempoolError, _hinted_fields, parse_envelope

    good = seal(b"x" * 40, PUB, 1337, 5, RoutingHint(b"\x07" * 20, 42)).envelope.encode()
    cases = [good, seal(b"no hint", PUB, 1337, 2).envelope.encode(), b"\x02" + good[1:], bytes([1, 3]) + good[2:],
             good[:97], good[:98], good + bytes(70_000), b""]
    for raw in cases:
        fast = _hinted_fields(raw, 64 * 1024)
        try:
            env = parse_envelope(raw, max_bytes=64 * 1024)
            assert env.hint is not None
            full: tuple[int, bytes, int] | None = (env.epoch, env.hint.sender, env.hint.nonce)
        except MempoolError:
            full = None
        assert fast == full or (fast is None and full is not None)  # None: the full parse decides
    assert _hinted_fields(good, 64 * 1024) == (5, b"\x07" * 20, 42)
