"""Fuzz: uploads into a DAP (dap/service.py: ``POST /v1/batch``, ``/v1/snapshot``, ``/v1/leaves``,
``/v1/leafdiff``, through the service's error middleware, over an SQLite store).

In process, no socket: the handlers get a request object as aiohttp hands it over, wrapped in
the service's ``_errors`` middleware (what escapes it would be an HTTP 500). The store holds one
batch (height 5) with a snapshot and a leaf, uploaded first. Inputs: random bytes and CBOR
maps, and mutations of a valid upload of each kind (a new batch at height 6 with its snapshot
and leaves, a snapshot, leaves and a leaf diff for the stored header): a field replaced by a
random value or one of the wrong type, dropped or added, bytes mutated, the CBOR mutated.

Each asserts: the answer is 200 or a 4xx refusal with a JSON ``{"error": message}`` that says
what was wrong (never a 500, nor a 503 "storage unavailable" for a bad request); a refused upload
changes nothing stored (every table, row by row); an accepted batch upload is one whose data
matches its header's data_commitment, and its receipt is the DAP's signature on it; no message
carries the DAP's key.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit._fuzz import assert_no_secret, cbor_values, examples, mutated

from enclavenet.crypto.dap import dap_receipt_digest, data_commitment
from enclavenet.crypto.hashing import keccak256
from enclavenet.crypto.header import Header
from enclavenet.crypto.secp256k1 import SigningKey, recover_address
from enclavenet.crypto.smt import SparseMerkleTree
from enclavenet.dap.service import DapConfig, DapService
from enclavenet.dap.store import SQLiteStore

LOOP = asyncio.new_event_loop()
KEY = SigningKey(bytes.fromhex("d4" * 32))
ROLLUP = "0x" + "5e" * 20
TABLES = ["batches", "snapshot_copies", "leaves", "leafdiff_links", "leafdiff_rows"]
PATHS = ["/v1/batch", "/v1/snapshot", "/v1/leaves", "/v1/leafdiff"]


def _balances_root() -> bytes:
    t = SparseMerkleTree()
    t.update({b"\x07" * 32: b"\x08" * 32})
    return t.root


BALANCES_ROOT = _balances_root()  # what VALID's leaf diff gives (the DAP checks it)


def batch(height: int, n: int = 3) -> tuple[bytes, bytes]:
    """(header, batch_data) of a batch whose data matches its header's data_commitment."""
    items = [cbor2.dumps({"n_envelopes": n - 1, "n_entries": 0, "h": height})] + [keccak256(bytes([height, i])) for i in range(n - 1)]
    data = cbor2.dumps(items)
    h = Header(height, keccak256(b"prev%d" % height), 0, b"\x01" * 32, 2, 0, bytes(32), bytes(32), bytes(32),
               bytes(32), BALANCES_ROOT, bytes(32), data_commitment(items))
    return h.encode(), data


H5, D5 = batch(5)
HH5 = keccak256(H5)
H6, D6 = batch(6, 4)
VALID: dict[str, dict[str, Any]] = {
    "/v1/batch": {"header": H6, "batch_data": D6, "snapshot": {"epoch": 0, "blob": b"sealed snapshot 6"},
                  "leaves": [["0x" + "a1" * 20, b"sealed leaf a1"], [bytes.fromhex("b2" * 20), b"sealed leaf b2"]]},
    "/v1/snapshot": {"header_hash": HH5, "epoch": 1, "blob": b"another sealed snapshot 5"},
    "/v1/leaves": {"header_hash": HH5, "leaves": [["0x" + "c3" * 20, b"sealed leaf c3"]]},
    "/v1/leafdiff": {"header_hash": HH5, "base": 0, "diff": [[b"\x07" * 32, b"\x08" * 32]]},
}


class _Request:
    def __init__(self, path: str, body: bytes) -> None:
        self.path = path
        self._body = body

    async def read(self) -> bytes:
        return self._body


class Harness:
    def __init__(self) -> None:
        self.svc = DapService(DapConfig(store=":memory:", key=KEY, l1_chain_id=31337, rollup=ROLLUP),
                              store=SQLiteStore(":memory:"))
        status, out = self.post("/v1/batch", cbor2.dumps({"header": H5, "batch_data": D5,
                                                           "snapshot": {"epoch": 0, "blob": b"sealed snapshot 5"},
                                                           "leaves": [["0x" + "a1" * 20, b"sealed leaf 5"]]}))
        assert status == 200, out
        self.dirty = False

    def post(self, path: str, body: bytes) -> tuple[int, Any]:
        handler = {"/v1/batch": self.svc.h_put_batch, "/v1/snapshot": self.svc.h_put_snapshot,
                   "/v1/leaves": self.svc.h_put_leaves, "/v1/leafdiff": self.svc.h_put_leafdiff}[path]
        resp = LOOP.run_until_complete(self.svc._errors(_Request(path, body), handler))  # type: ignore[arg-type]
        raw = resp.body
        assert isinstance(raw, bytes)
        if resp.status == 200:
            return 200, cbor2.loads(raw)
        return resp.status, json.loads(raw)

    def stored(self) -> list[list[tuple[Any, ...]]]:
        return [sorted(self.svc.store._query(f"SELECT * FROM {t}", ())) for t in TABLES]


_h: Harness | None = None


def harness() -> Harness:
    global _h
    if _h is None or _h.dirty:
        _h = Harness()
    return _h


def _check(path: str, body: bytes) -> None:
    h = harness()
    before = h.stored()
    status, out = h.post(path, body)
    if status == 200:
        h.dirty = h.stored() != before
        if path == "/v1/batch":
            msg = cbor2.loads(body)
            header = Header.decode(msg["header"])
            assert out["data_commitment"] == header.data_commitment
            signer = recover_address(dap_receipt_digest(31337, h.svc.cfg.rollup, out["data_commitment"]), out["receipt"])
            assert signer == KEY.address
        return
    assert 400 <= status < 500 and status != 404, f"{path}: HTTP {status} {out}"
    assert isinstance(out.get("error"), str) and out["error"], out
    assert_no_secret(out["error"], [KEY.secret])
    assert h.stored() == before, f"{path} refused ({out['error']}) but changed the store"


def test_the_valid_uploads_are_stored() -> None:
    for path, msg in VALID.items():
        h = harness()
        status, out = h.post(path, cbor2.dumps(msg))
        assert status == 200, (path, out)
        h.dirty = True


@settings(max_examples=examples(100))
@given(
    st.sampled_from(PATHS),
    st.one_of(st.binary(max_size=64), cbor_values.map(cbor2.dumps),
              st.dictionaries(st.sampled_from(["header", "batch_data", "snapshot", "leaves", "header_hash", "epoch",
                                               "blob", "base", "diff"]), cbor_values, max_size=5).map(cbor2.dumps)),
)
def test_random_uploads(path: str, body: bytes) -> None:
    _check(path, body)


ODD = [2**64, 2**63, 10**8, -1, float("inf"), 1.5, "00" * 20, None, True, [], {}, b""]


@st.composite
def _mutated_upload(draw: Any) -> tuple[str, bytes]:
    path = draw(st.sampled_from(PATHS))
    msg = json.loads(json.dumps(VALID[path], default=lambda b: {"__b": b.hex()}),
                     object_hook=lambda d: bytes.fromhex(d["__b"]) if set(d) == {"__b"} else d)  # a deep copy
    how = draw(st.sampled_from(["replace", "drop", "bytes", "inner", "add", "cbor", "header"]))
    name = draw(st.sampled_from(sorted(msg)))
    if how == "cbor":
        return path, draw(mutated(cbor2.dumps(msg)))
    if how == "replace":
        msg[name] = draw(st.one_of(cbor_values, st.sampled_from(ODD)))
    elif how == "drop":
        del msg[name]
    elif how == "bytes" and isinstance(msg[name], bytes):
        msg[name] = draw(mutated(msg[name]))
    elif how == "inner" and isinstance(msg[name], list | dict) and msg[name]:
        inner = msg[name]
        if isinstance(inner, dict):
            inner[draw(st.sampled_from(sorted(inner)))] = draw(st.one_of(cbor_values, st.sampled_from(ODD)))
        else:
            i = draw(st.integers(0, len(inner) - 1))
            item = list(inner[i])
            j = draw(st.integers(0, len(item) - 1))
            item[j] = draw(st.one_of(st.sampled_from(ODD), mutated(item[j]) if isinstance(item[j], bytes) else cbor_values))
            inner[i] = item
    elif how == "header" and path == "/v1/batch":
        # a header whose data_commitment matches, with any height (the uploader controls both)
        words = bytearray(msg["header"])
        words[:32] = draw(st.sampled_from([2**63 - 1, 2**63, 2**64, 2**256 - 1, 0])).to_bytes(32, "big")
        msg["header"] = bytes(words)
    else:
        msg[draw(st.sampled_from(["x", "snapshot", "leaves", "base", "epoch"]))] = draw(cbor_values)
    return path, cbor2.dumps(msg)


@settings(max_examples=examples(150))
@given(_mutated_upload())
def test_mutated_valid_uploads(pb: tuple[str, bytes]) -> None:
    _check(*pb)


@settings(max_examples=examples(60))
@given(st.one_of(st.integers(0, 2**256 - 1), st.sampled_from([2**63 - 1, 2**63, 2**64, 2**256 - 1])))
def test_batch_headers_of_any_height(height: int) -> None:
    """The uploader makes both the header and the data: any height, with a matching commitment.
    A height past the store's 64-bit integers raised OverflowError in SQLite (HTTP 500)."""
    msg = dict(VALID["/v1/batch"])
    words = bytearray(msg["header"])
    words[:32] = height.to_bytes(32, "big")
    msg["header"] = bytes(words)
    _check("/v1/batch", cbor2.dumps(msg))


def _fields() -> list[tuple[str, tuple[str, ...]]]:
    out: list[tuple[str, tuple[str, ...]]] = []
    for path, msg in VALID.items():
        for k, v in msg.items():
            out.append((path, (k,)))
            if isinstance(v, dict):
                out += [(path, (k, j)) for j in v]
            if isinstance(v, list) and v and isinstance(v[0], list):
                out += [(path, (k, "0", str(j))) for j in range(len(v[0]))]
    return sorted(out)


@settings(max_examples=examples(120))
@given(st.sampled_from(_fields()), st.sampled_from(ODD))
def test_every_field_of_the_wrong_type(field: tuple[str, tuple[str, ...]], value: Any) -> None:
    """E.g. a leaf address that is a CBOR integer: ``bytes(2**64)`` raised OverflowError (500),
    ``bytes(10**8)`` allocated 100 MB before the length check."""
    path, keys = field
    msg = cbor2.loads(cbor2.dumps(VALID[path]))  # a deep copy
    target: Any = msg
    for k in keys[:-1]:
        target = target[int(k)] if isinstance(target, list) else target[k]
    last = keys[-1]
    target[int(last) if isinstance(target, list) else last] = value
    _check(path, cbor2.dumps(msg))
