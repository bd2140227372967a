"""Fuzz: ecall payloads into the enclave program (enclave/program.py, codec.py), through the
in-process boundary (tee/boundary.py, tee/server.py) and its wire format (tee/wire.py).

Targets (member A of the committee in ``_fuzz_world.py``):

* random CBOR maps (fields named like the program's, random values) and random bytes, for every
  ecall name;
* mutations of a valid request of each ecall: one field replaced by a random value, dropped or
  added, or the CBOR bytes mutated;
* random frames into the runner's parser (``EnclaveServer.handle`` via ``raw_exchange``).

Each asserts: the answer is a result or a refusal (``EnclaveError`` with a message), never an
"internal enclave error" (an unexpected exception inside); a refusal changes nothing (status,
state root, epochs, committee, signing guard); no refusal carries a key of the committee.
"""

from __future__ import annotations

from typing import Any

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit._fuzz import assert_no_secret, cbor_values, examples, mutated
from tests.unit._fuzz_world import World, ecall, world

from enclavenet.tee import EnclaveError, wire

METHODS = sorted([
    "identity", "committee", "committee_sign", "epoch_genesis", "epoch_rotate", "epoch_export",
    "epoch_import", "epoch_erase", "epochs", "execute_batch", "verify_batch", "accept_header",
    "rollback", "timeout", "apply_batch", "view_call", "estimate_gas", "snapshot", "restore",
    "status", "stats", "escape_leaf", "escape_export", "peer_auth", "logs",
])
FIELDS = [
    "height", "prev_hash", "epoch", "l1_block", "timestamp", "messages", "envelopes", "header",
    "signatures", "blob", "bundle", "envelope", "members", "quorum", "min_types", "member",
    "member_enc_pub", "keep_from", "reset", "round", "tc", "diff", "batch_data", "with_diff",
    "version", "op", "to", "body_hash", "expiry", "address", "signature", "full", "replace", "blobs",
]


def _check(w: World, method: str, payload: bytes) -> None:
    before, inputs = w.fingerprint(), w.input_records()
    out, err = ecall(w, method, payload)
    if err is None:
        assert out is not None
        return
    assert err, f"{method}: an empty refusal"
    assert "internal enclave error" not in err, (method, err)
    assert_no_secret(err, w.secrets())
    assert w.fingerprint() == before, f"{method} refused ({err}) but changed the member"
    if w.input_records() != inputs:  # by design, only after executing an input (World.input_records)
        assert method in ("execute_batch", "verify_batch"), (method, err)
        w.dirty = True


def test_every_ecall_name_is_fuzzed() -> None:
    assert sorted(world().program()._handlers) == METHODS


@settings(max_examples=examples(300))
@given(
    st.sampled_from(METHODS),
    st.dictionaries(st.sampled_from(FIELDS), cbor_values, max_size=6),
    st.booleans(),
)
def test_random_cbor_into_every_ecall(method: str, fields: dict[str, Any], on_valid: bool) -> None:
    w = world()
    base = dict(w.valid.get(method, {})) if on_valid else {}
    _check(w, method, cbor2.dumps({**base, **fields}))


@settings(max_examples=examples(100))
@given(st.sampled_from(METHODS), st.one_of(st.binary(max_size=64), cbor_values.map(cbor2.dumps)))
def test_random_bytes_into_every_ecall(method: str, payload: bytes) -> None:
    _check(world(), method, payload)


_VALID_METHODS = [  # the ecalls of World.valid that take fields
    "verify_batch", "execute_batch", "apply_batch", "accept_header", "restore", "epoch_export",
    "epoch_import", "committee_sign", "peer_auth", "view_call", "estimate_gas", "escape_leaf",
    "escape_export", "timeout", "rollback", "logs",
]


@st.composite
def _field_mutation(draw: Any) -> tuple[str, dict[str, Any]]:
    method = draw(st.sampled_from(_VALID_METHODS))
    req = dict(world().valid[method])
    name = draw(st.sampled_from(sorted(req)))
    how = draw(st.sampled_from(["replace", "drop", "bytes", "add"]))
    if how == "replace":
        req[name] = draw(cbor_values)
    elif how == "drop":
        del req[name]
    elif how == "bytes" and isinstance(req[name], bytes):
        req[name] = draw(mutated(req[name]))
    elif how == "bytes" and isinstance(req[name], list) and req[name]:
        i = draw(st.integers(0, len(req[name]) - 1))
        item = req[name][i]
        req[name] = list(req[name])
        req[name][i] = draw(mutated(item)) if isinstance(item, bytes) else draw(cbor_values)
    else:
        req[draw(st.sampled_from(FIELDS))] = draw(cbor_values)
    return method, req


@settings(max_examples=examples(300))
@given(_field_mutation())
def test_mutated_valid_requests(mr: tuple[str, dict[str, Any]]) -> None:
    method, req = mr
    _check(world(), method, cbor2.dumps(req))


@settings(max_examples=examples(100))
@given(st.sampled_from(_VALID_METHODS).flatmap(lambda m: st.tuples(st.just(m), mutated(cbor2.dumps(world().valid[m])))))
def test_mutated_valid_request_bytes(mp: tuple[str, bytes]) -> None:
    _check(world(), *mp)


@settings(max_examples=examples(200))
@given(
    st.one_of(
        st.binary(max_size=80),
        cbor_values.map(cbor2.dumps),
        st.fixed_dictionaries(
            {"id": cbor_values, "method": st.one_of(st.sampled_from([*METHODS, wire.PING, wire.BOOT, "__x", "__fault__.crash"]), cbor_values),
             "payload": st.one_of(st.binary(max_size=40), cbor_values)}
        ).map(cbor2.dumps),
    ),
    st.booleans(),
)
def test_random_frames_into_the_enclave_runner(body: bytes, true_length: bool) -> None:
    w = world()
    before, inputs = w.fingerprint(), w.input_records()
    n = len(body) if true_length else len(body) + 7
    try:
        _req_id, result, error = w.a.handle.raw_exchange(wire.LEN.pack(n) + body)  # type: ignore[attr-defined]
    except EnclaveError as exc:
        raise AssertionError(f"the enclave gave no answer to a malformed frame: {exc}") from None
    if error is None:
        assert result is not None
        w.dirty = True  # a well-formed frame of a real ecall may have been accepted
        return
    assert "internal enclave error" not in error, error
    assert_no_secret(error, w.secrets())
    assert w.fingerprint() == before
    w.dirty = w.dirty or w.input_records() != inputs


def _bytes_fields() -> list[tuple[str, str]]:
    return sorted((m, k) for m in _VALID_METHODS for k, v in world().valid[m].items() if isinstance(v, bytes))


@settings(max_examples=examples(80))
@given(st.sampled_from(_bytes_fields()), st.sampled_from([b"", b"\x9f", b"\x5f", b"\xbf", b"\x81", b"\xff", b"\x19\x01"]))
def test_bytes_fields_that_are_not_cbor(field: tuple[str, str], value: bytes) -> None:
    """A byte string field given bytes cbor2 cannot decode: its CBORDecodeError is no ValueError,
    so a ``except ValueError`` around a decode let it out as an internal error (apply_batch's
    batch_data, b"\\x9f": an indefinite array cut short)."""
    method, name = field
    _check(world(), method, cbor2.dumps({**world().valid[method], name: value}))
