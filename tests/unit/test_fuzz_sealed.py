"""Fuzz: sealed state diffs (enclave/diff.py, ``apply_batch`` with ``diff``), snapshots
(``restore``: shared blobs against a QC'd header, local platform-sealed blobs) and the
platform sealing itself (tee/sealing.py).

Two kinds of input for each blob:

* the sealed bytes, random or bit-flipped: refused (the AEAD tag), nothing changes;
* a mutated *plaintext*, sealed properly under the right key -- what a compromised committee
  member (who holds the epoch state key) can produce for a diff or a shared snapshot, so its
  contents must be checked as untrusted: refused with the program's own message (never an
  internal error), nothing changes (head, state root, epochs, committee, guard), no secret in
  the message. A mutation that keeps the plaintext's meaning may be accepted.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import cbor2
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit._fuzz import assert_no_secret, cbor_values, examples, mutated
from tests.unit._fuzz_world import World, ecall, world

from enclavenet.crypto.header import Header
from enclavenet.enclave.program import (
    DIFF_MAGIC,
    DIFF_SUBKEY,
    LOCAL_LABEL,
    SNAPSHOT_MAGIC,
    SNAPSHOT_SUBKEY,
)
from enclavenet.tee.sealing import SealingError, open_sealed, seal_data


def _refused_cleanly(w: World, method: str, req: dict[str, Any], *, may_succeed: bool) -> None:
    before = w.fingerprint()
    _out, err = ecall(w, method, cbor2.dumps(req))
    if err is None:
        assert may_succeed, f"{method} accepted a tampered blob"
        return
    assert "internal enclave error" not in err, (method, err)
    assert_no_secret(err, w.secrets())
    assert w.fingerprint() == before, f"{method} refused ({err}) but changed the member"


@st.composite
def _structural(draw: Any, obj: Any, depth: int = 0) -> Any:
    """``obj`` (a decoded CBOR value) with one element somewhere replaced, dropped or added."""
    if isinstance(obj, dict) and obj and depth < 4:
        k = draw(st.sampled_from(sorted(obj, key=str)))
        how = draw(st.sampled_from(["deeper", "replace", "drop", "add"]))
        out = dict(obj)
        if how == "deeper":
            out[k] = draw(_structural(obj[k], depth + 1))
        elif how == "replace":
            out[k] = draw(cbor_values)
        elif how == "drop":
            del out[k]
        else:
            out[draw(st.text(max_size=8))] = draw(cbor_values)
        return out
    if isinstance(obj, list) and obj and depth < 4:
        i = draw(st.integers(0, len(obj) - 1))
        how = draw(st.sampled_from(["deeper", "replace", "drop", "dup"]))
        out_l = list(obj)
        if how == "deeper":
            out_l[i] = draw(_structural(obj[i], depth + 1))
        elif how == "replace":
            out_l[i] = draw(cbor_values)
        elif how == "drop":
            del out_l[i]
        else:
            out_l.insert(i, obj[i])
        return out_l
    if isinstance(obj, bool):
        return not obj
    if isinstance(obj, int):
        return draw(st.sampled_from([obj + 1, obj - 1, 0, -1, 2**64, 2**256, obj ^ 1]))
    if isinstance(obj, bytes):
        return draw(st.one_of(mutated(obj), st.binary(max_size=40)))
    return draw(cbor_values)


def _plain_mutation(plain: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(_structural(cbor2.loads(plain)).map(lambda o: cbor2.dumps(o, canonical=True)), mutated(plain))


# ---------------------------------------------------------------- state diffs (apply_batch)

def _diff_plain(w: World) -> tuple[bytes, bytes, bytes]:
    """(plaintext of the height-2 diff, its key, its AAD) as member A would open it."""
    header = Header.decode(w.o2["header"])
    key = w.program()._epochs.state_subkey(header.epoch, DIFF_SUBKEY)
    aad = DIFF_MAGIC + header.hash()
    blob = w.o2["diff"]
    return AESGCM(key).decrypt(blob[:12], blob[12:], aad), key, aad


@settings(max_examples=examples(150))
@given(st.data())
def test_bit_flipped_sealed_diffs_are_refused(data: st.DataObject) -> None:
    w = world()
    req = dict(w.valid["apply_batch"])
    req["diff"] = data.draw(st.one_of(mutated(req["diff"]), st.binary(max_size=100)))
    _refused_cleanly(w, "apply_batch", req, may_succeed=False)


@settings(max_examples=examples(250))
@given(st.data())
def test_properly_sealed_mutated_diffs_are_refused(data: st.DataObject) -> None:
    w = world()
    plain, key, aad = _diff_plain(w)
    bad = data.draw(_plain_mutation(plain))
    nonce = os.urandom(12)
    req = {**w.valid["apply_batch"], "diff": nonce + AESGCM(key).encrypt(nonce, bad, aad)}
    _refused_cleanly(w, "apply_batch", req, may_succeed=True)  # e.g. re-ordered keys: the same diff


def test_the_valid_diff_applies() -> None:
    w = world()
    _, err = ecall(w, "apply_batch", cbor2.dumps(w.valid["apply_batch"]))
    assert err is None and w.a.call("status")["height"] == 2


# ---------------------------------------------------------------- snapshots (restore)

def _shared_plain(w: World) -> tuple[bytes, bytes, bytes]:
    blob = w.snap_shared_c["shared"]
    hdr = len(SNAPSHOT_MAGIC) + 8
    (epoch,) = struct.unpack(">Q", blob[len(SNAPSHOT_MAGIC) : hdr])
    key = w.program()._epochs.state_subkey(epoch, SNAPSHOT_SUBKEY)
    return AESGCM(key).decrypt(blob[hdr : hdr + 12], blob[hdr + 12 :], blob[:hdr]), key, blob[:hdr]


@settings(max_examples=examples(150))
@given(st.data(), st.booleans())
def test_bit_flipped_snapshots_are_refused(data: st.DataObject, local: bool) -> None:
    w = world()
    if local:  # A's own platform-sealed snapshot
        req = {"blob": data.draw(mutated(w.snap_a["local"]))}
    else:
        req = dict(w.valid["restore"])
        req["blob"] = data.draw(mutated(req["blob"]))
    _refused_cleanly(w, "restore", req, may_succeed=False)


@settings(max_examples=examples(250))
@given(st.data())
def test_properly_sealed_mutated_shared_snapshots_are_refused(data: st.DataObject) -> None:
    w = world()
    plain, key, aad = _shared_plain(w)
    bad = data.draw(_plain_mutation(plain))
    nonce = os.urandom(12)
    req = {**w.valid["restore"], "blob": aad + nonce + AESGCM(key).encrypt(nonce, bad, aad)}
    _refused_cleanly(w, "restore", req, may_succeed=True)


@settings(max_examples=examples(100))
@given(st.data())
def test_properly_sealed_mutated_local_snapshots_never_crash(data: st.DataObject) -> None:
    """The local blob is sealed by A's own platform: only A (or its machine) can write it, so a
    changed one may well be loaded; it must still never raise an internal error."""
    w = world()
    platform = w.program()._platform
    plain = platform.unseal(w.snap_a["local"], LOCAL_LABEL)
    bad = data.draw(_plain_mutation(plain))
    req = {"blob": platform.seal(bad, LOCAL_LABEL)}
    _refused_cleanly(w, "restore", req, may_succeed=True)


# ---------------------------------------------------------------- tee/sealing.py

KEY = bytes(range(32))
IID = bytes(16)
MEAS = bytes([7]) * 32
SEALED = seal_data(KEY, 2, IID, MEAS, b"label", b"secret state " * 4)


@settings(max_examples=examples(300))
@given(st.one_of(mutated(SEALED), st.binary(max_size=120)))
def test_open_sealed_refuses_random_and_flipped_blobs(blob: bytes) -> None:
    try:
        out = open_sealed(KEY, 2, IID, MEAS, b"label", blob)
    except SealingError as exc:
        assert str(exc)
        assert_no_secret(str(exc), [KEY, b"secret state " * 4])
    else:
        raise AssertionError(f"a tampered sealed blob opened: {out!r}")
