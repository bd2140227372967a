"""Issue 14 M2 and Lows: what batch data and ecalls show to DAPs, L1 observers and hosts.

* sealed receipts are padded to size buckets: success, failure, logs and output sizes within a
  bucket look the same (before: the sealed length was the receipt's length + 28);
* error entries are a code, not a reason text;
* the ``stats`` ecall (per-stage timings) answers only in a benchmark build.

Real in-process enclaves, real EVM, real crypto.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account

from enclavenet.client.formats import create_address
from enclavenet.crypto.envelope import (
    MAX_SEALED_RECEIPT,
    RECEIPT_BUCKET_MIN,
    EnvelopeError,
    open_receipt,
    receipt_bucket,
    seal,
    seal_receipt,
)
from enclavenet.crypto.hashing import keccak256
from enclavenet.enclave.batch import ERROR_CODES, ERROR_ENTRY_PREFIX
from enclavenet.enclave.executor import Receipt
from enclavenet.enclave.harness import Member, batch_request, form_committee, program_config
from enclavenet.enclave.tx import sign_tx
from enclavenet.tee import DEFAULT_PROGRAM, EnclaveError, InProcessEnclave, SimulatedVendor

CHAIN = 4242
VENDORS = [SimulatedVendor.generate(n) for n in ("sgx", "tdx")]
# runtime LOG0(0, calldataload(0)); STOP  -- one log of n zero bytes
LOGGER = bytes.fromhex("6006600c60003960066000f3" "600035" "6000" "a0" "00")
# runtime REVERT(0, calldataload(0))  -- revert data of n zero bytes
REVERTER = bytes.fromhex("6006600c60003960066000f3" "600035" "6000" "fd" "00")


def _members(**cfg: Any) -> tuple[list[Member], bytes]:
    conf = {**program_config(VENDORS, chain_id=CHAIN), **cfg}
    members = [Member(InProcessEnclave(v.new_platform(), DEFAULT_PROGRAM, conf)) for v in VENDORS]
    return members, form_committee(members, 2, 2)


def test_sealed_receipts_of_success_failure_and_logs_have_the_same_length() -> None:
    members, pub = _members()
    alice, bob = Account.create(), Account.create()
    n = 0

    def env(to: str | None, data: bytes = b"", gas: int = 300_000) -> Any:
        nonlocal n
        s = seal(sign_tx(bytes(alice.key), CHAIN, n, to, data, 0, gas), pub, CHAIN, 0)
        n += 1
        return s

    logger, reverter = create_address(alice.address, 0), create_address(alice.address, 1)
    word = lambda k: k.to_bytes(32, "big")  # noqa: E731
    txs = {
        "deploy logger": env(None, LOGGER),
        "deploy reverter": env(None, REVERTER),
        "transfer": env(bob.address, gas=21_000),
        "no log": env(logger, word(0)),
        "one 200-byte log": env(logger, word(200)),
        "revert, empty": env(reverter, word(0)),
        "revert, 150 bytes": env(reverter, word(150)),
        "out of gas": env(logger, word(200), gas=21_500),
        "refused (nonce gap)": seal(sign_tx(bytes(alice.key), CHAIN, 99, bob.address, b"", 0, 21_000), pub, CHAIN, 0),
        "log of 3000 bytes": None,
    }
    txs["log of 3000 bytes"] = env(logger, word(3000))
    req = batch_request(1, bytes(32), envelopes=[s.envelope.encode() for s in txs.values()])
    out = members[0].call("execute_batch", **req)
    entries = {k: out["receipts"][keccak256(s.envelope.encode())] for k, s in txs.items()}
    receipts = {k: Receipt.decode(open_receipt(txs[k].receipt_key, e)) for k, e in entries.items()}
    assert receipts["one 200-byte log"].success and len(receipts["one 200-byte log"].logs[0].data) == 200
    assert not receipts["revert, 150 bytes"].success and len(receipts["revert, 150 bytes"].output) == 150
    assert receipts["out of gas"].error == "out of gas"
    assert "nonce gap" in str(receipts["refused (nonce gap)"].error)
    small = {k: len(e) for k, e in entries.items() if k != "log of 3000 bytes"}
    assert set(small.values()) == {RECEIPT_BUCKET_MIN}, small  # one length for all of them
    assert len(entries["log of 3000 bytes"]) == 4096  # the next buckets: 1024, 2048, 4096
    # the voter seals the same bytes (the padding is deterministic)
    assert members[1].call("verify_batch", header=out["header"], **req)["header_hash"] == out["header_hash"]


def test_receipt_buckets_and_padding_are_checked() -> None:
    key = bytes(range(32))
    assert [receipt_bucket(n) for n in (0, 480, 481, 992, 993, 131040)] == [512, 512, 1024, 1024, 2048, MAX_SEALED_RECEIPT]
    assert receipt_bucket(131041) == 2 * MAX_SEALED_RECEIPT  # views only: batch receipts are bounded
    for n in (0, 1, 479, 480, 481, 5000):
        pt = bytes([7]) * n
        sealed = seal_receipt(key, pt)
        assert len(sealed) == receipt_bucket(n) and open_receipt(key, sealed) == pt
    # a sealed receipt whose length prefix points past the padding is refused
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    bad = b"\x00" * 12 + AESGCM(key).encrypt(b"\x00" * 12, (10_000).to_bytes(4, "big") + bytes(476), b"EnclaveNet.receipt.v2")
    with pytest.raises(EnvelopeError, match="padding is malformed"):
        open_receipt(key, bad)


def test_view_results_are_padded_too() -> None:
    members, pub = _members()
    alice = Account.create()
    for to in (alice.address, None):
        s = seal(sign_tx(bytes(alice.key), CHAIN, 0, to, b"", 0, 100_000), pub, CHAIN, 0)
        res = members[0].call("estimate_gas", envelope=s.envelope.encode())["result"]
        assert len(res) == RECEIPT_BUCKET_MIN


def test_error_entries_are_codes_not_reason_texts() -> None:
    members, pub = _members()
    alice = Account.create()
    tx = sign_tx(bytes(alice.key), CHAIN, 0, alice.address, b"", 0, 21_000)
    raws = {
        "epoch": seal(tx, pub, CHAIN, 7).envelope.encode(),
        "decrypt": seal(tx, bytes(32 * [9]), CHAIN, 0).envelope.encode(),
        "malformed": bytes([1, 0]) + bytes(30),
    }
    out = members[0].call("execute_batch", **batch_request(1, bytes(32), envelopes=list(raws.values())))
    for code, raw in raws.items():
        assert out["receipts"][keccak256(raw)] == ERROR_ENTRY_PREFIX + code.encode()
    # every code is one of these, the copied-inbox-call code (an L1 message: test_safety_input.py
    # h1) or the unparsable-Bridge-command code (test_bridge.py)
    assert set(ERROR_CODES) == set(raws) | {"inbox_sender", "bridge"}


def test_the_stats_ecall_answers_only_in_a_benchmark_build() -> None:
    members, _ = _members()
    with pytest.raises(EnclaveError, match="only given by a benchmark build"):
        members[0].call("stats")
    bench, _ = _members(stats=True)
    assert "seconds" in bench[0].call("stats")
    with pytest.raises(EnclaveError, match="stats must be true or false"):
        _members(stats="yes")


def test_leaf_diffs_do_not_name_exactly_the_accounts_whose_balance_changed() -> None:
    """M2: a transfer between two of 20 accounts changes 2 leaves; the exported diff (what the
    DAPs store and serve to anyone) holds them among at least COVER_MIN re-salted cover leaves,
    drawn with the committee's secret; every member draws the same (same header), the fold
    of the diffs is still the header's balances root, and the moved values stay put."""
    from enclavenet.crypto.header import Header
    from enclavenet.crypto.messages import KIND_USER
    from enclavenet.crypto.smt import SparseMerkleTree, smt_key
    from enclavenet.enclave.leaf_cover import COVER_MIN

    members, pub = _members()
    users = [Account.create() for _ in range(20)]
    msgs = [[i, KIND_USER, u.address, 10**18 + i, 1, b""] for i, u in enumerate(users)]
    prev, headers = bytes(32), []
    for height, kw in ((1, {"messages": msgs}), (2, {})):
        if height == 2:
            pay = seal(sign_tx(bytes(users[0].key), CHAIN, 0, users[1].address, b"", 5, 21_000), pub, CHAIN, 0)
            kw = {"envelopes": [pay.envelope.encode()]}
        req = batch_request(height, prev, l1_block=2, **kw)
        out = members[0].call("execute_batch", **req)
        v = members[1].call("verify_batch", header=out["header"], **req)  # the same cover, or refused
        for m in members:
            m.call("accept_header", header=out["header"], signatures=[out["signature"], v["signature"]])
        prev = out["header_hash"]
        headers.append(Header.decode(out["header"]))
        if height == 1:
            members[0].call("escape_export", height=1)
    full = members[1].call("escape_export", height=2)  # every leaf at height 2
    diff = members[0].call("escape_export", height=2)
    keys = {bytes(k) for k, _ in diff["diff"]}
    moved = {smt_key(users[0].address), smt_key(users[1].address)}
    assert moved <= keys
    assert len(keys - moved) >= COVER_MIN  # cover leaves: unchanged balances, new salts
    assert keys <= {smt_key(u.address) for u in users}
    tree = SparseMerkleTree()
    tree.update({bytes(k): bytes(v) for k, v in full["diff"]})
    assert tree.root == headers[1].balances_root and len(tree) == 20


def test_cover_re_salts_are_undone_with_the_batch() -> None:
    from enclavenet.enclave.state import KECCAK_EMPTY, AccountChange, WorldState

    secret = bytes(range(1, 33))
    st = WorldState()
    addrs = [bytes([i]) * 20 for i in range(1, 31)]
    st.apply({a: AccountChange(0, 10**18 + i, KECCAK_EMPTY) for i, a in enumerate(addrs)}, {}, [], secret, 1)
    root, salts = st.balances_root, {a: st.accounts[a].salt for a in addrs}
    rec = st.apply({addrs[0]: AccountChange(1, 10**18 - 5, KECCAK_EMPTY), addrs[1]: AccountChange(0, 10**18 + 6, KECCAK_EMPTY)},
                   {}, [], secret, 2, undo_version=1)
    assert rec is not None
    resalted = [a for a in addrs[2:] if st.accounts[a].salt != salts[a]]
    assert len(resalted) >= 8 and all(st.accounts[a].balance == 10**18 + addrs.index(a) for a in resalted)
    again = WorldState()  # a member that replays the same batches draws the same cover
    again.apply({a: AccountChange(0, 10**18 + i, KECCAK_EMPTY) for i, a in enumerate(addrs)}, {}, [], secret, 1)
    again.apply({addrs[0]: AccountChange(1, 10**18 - 5, KECCAK_EMPTY), addrs[1]: AccountChange(0, 10**18 + 6, KECCAK_EMPTY)},
                {}, [], secret, 2)
    assert again.balances_root == st.balances_root
    st.undo(rec)
    assert st.balances_root == root and {a: st.accounts[a].salt for a in addrs} == salts
