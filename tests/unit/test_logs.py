"""Event logs the right parties can read (issue 11 item 2; enclave/logs.py): the visibility rule,
the sealed per-batch log index and the authenticated ``logs`` ecall."""

from __future__ import annotations

import os
import time
from functools import cache
from typing import Any

import cbor2
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from tests.unit.test_program import CFG, CHAIN, L1_CHAIN, Net, dep, receipt_of

from enclavenet.crypto.envelope import SealedRequest, open_receipt, seal
from enclavenet.crypto.hashing import address_bytes, keccak256, to_checksum
from enclavenet.crypto.header import Header
from enclavenet.enclave.batch import batch_data_items
from enclavenet.enclave.errors import EnclaveRefusal
from enclavenet.enclave.executor import Log
from enclavenet.enclave.logs import (
    LOG_QUERY_ADDRESS,
    MAX_QUERY_HEIGHTS,
    blob_prefix,
    decode_public_events,
    encode_log_filter,
    index_batch_logs,
    may_read,
    parse_log_filter,
    readers_of,
    topic_addresses,
)
from enclavenet.enclave.views import ViewDomain, typed_data
from enclavenet.tee import EnclaveError

TRANSFER = keccak256(b"Transfer(address,address,uint256)")
ANNOUNCE = keccak256(b"Announce(uint256)")


def word(addr: str | bytes) -> bytes:
    return b"\x00" * 12 + address_bytes(addr)


# ------------------------------------------------------------------ the rule (pure)
def test_indexed_address_topics_name_the_readers() -> None:
    a, b = os.urandom(20), os.urandom(20)
    topics = [TRANSFER, word(a), word(b)]
    assert topic_addresses(topics) == [a, b]
    sender = os.urandom(20)
    assert readers_of(sender, topics) == [sender, a, b]
    # topic 0 (the event signature) is never an address, nor a word with a non-zero top, nor 0x0
    assert topic_addresses([word(a), b"\x01" + b"\x00" * 11 + b, word(b"\x00" * 20)]) == []
    assert topic_addresses([TRANSFER, keccak256(b"x")]) == []
    assert readers_of(a, [TRANSFER, word(a), word(a)]) == [a]  # no duplicates
    c = os.urandom(20)
    assert may_read(b, readers_of(sender, topics), False)
    assert not may_read(c, readers_of(sender, topics), False)
    assert may_read(c, readers_of(sender, topics), True)


def test_public_events_declaration_and_index() -> None:
    out = (32).to_bytes(32, "big") + (1).to_bytes(32, "big") + ANNOUNCE
    assert decode_public_events(out) == frozenset({ANNOUNCE})
    assert decode_public_events(b"") == frozenset()
    assert decode_public_events((32).to_bytes(32, "big") + (5).to_bytes(32, "big")) == frozenset()  # short
    token, sender, bob = os.urandom(20), os.urandom(20), os.urandom(20)
    asked: list[bytes] = []

    def public(c: bytes) -> frozenset[bytes]:
        asked.append(c)
        return frozenset({ANNOUNCE})

    logs = [Log(token, (TRANSFER, word(sender), word(bob)), b"v"), Log(token, (ANNOUNCE, (7).to_bytes(32, "big")), b"")]
    idx = index_batch_logs([(3, b"r" * 32, b"t" * 32, sender, tuple(logs)), (5, b"s" * 32, b"u" * 32, sender, (logs[0],))], public)
    assert asked == [token]  # once per contract per batch
    assert [(x.tx_index, x.log_index, x.tx_log_index, x.public) for x in idx] == [
        (3, 0, 0, False), (3, 1, 1, True), (5, 2, 0, False)]
    assert idx[0].readers == (sender, bob)


def test_log_filter_is_bounded_and_checked() -> None:
    f = parse_log_filter(encode_log_filter(2, 5, [b"\x01" * 20], [TRANSFER, None, [word(b"\x02" * 20)]]))
    assert (f.lo, f.hi, f.addresses) == (2, 5, frozenset({b"\x01" * 20}))
    assert f.topics == (frozenset({TRANSFER}), None, frozenset({word(b"\x02" * 20)}))
    with pytest.raises(EnclaveRefusal, match="below 'from'"):
        parse_log_filter(encode_log_filter(5, 2))
    with pytest.raises(EnclaveRefusal, match="smaller ranges"):
        parse_log_filter(encode_log_filter(1, MAX_QUERY_HEIGHTS + 1))
    with pytest.raises(EnclaveRefusal, match="32 bytes"):
        parse_log_filter(cbor2.dumps({"from": 1, "to": 1, "topics": [[b"short"]]}))


# ------------------------------------------------------------------ the enclave
@cache
def token_code() -> tuple[bytes, dict[str, bytes]]:
    import vyper

    src = """
# pragma version ^0.4.0
event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Announce:
    n: uint256

balances: HashMap[address, uint256]

@deploy
def __init__():
    self.balances[msg.sender] = 1000

@external
def transfer(to: address, amount: uint256) -> bool:
    self.balances[msg.sender] -= amount
    self.balances[to] += amount
    log Transfer(sender=msg.sender, receiver=to, value=amount)
    log Announce(n=amount)
    return True

@external
@pure
def publicEvents() -> DynArray[bytes32, 4]:
    return [keccak256("Announce(uint256)")]
"""
    out = vyper.compile_code(src, output_formats=["bytecode", "method_identifiers"])
    sels = {k.split("(")[0]: bytes.fromhex(v[2:]) for k, v in out["method_identifiers"].items()}
    return bytes.fromhex(out["bytecode"][2:]), sels


def _query(net: Net, acct: Any, lo: int, hi: int, *, topics: Any = (), signer: Any = None,
           to: bytes = LOG_QUERY_ADDRESS) -> SealedRequest:
    data = encode_log_filter(lo, hi, [], topics)
    nonce, expiry = int.from_bytes(os.urandom(8), "big"), int(time.time()) + 60
    td = typed_data(ViewDomain(CHAIN, L1_CHAIN, CFG["rollup"]), acct.address, to_checksum(to), data, 0, 21_000, 0, nonce, expiry)
    sig = Account.sign_message(encode_typed_data(full_message=td), (signer or acct).key).signature
    req = {"from": address_bytes(acct.address), "to": to, "data": data, "value": 0, "gas": 21_000, "epoch": 0,
           "nonce": nonce, "expiry": expiry, "sig": bytes(sig)}
    return seal(cbor2.dumps(req), net.epoch_pub, CHAIN, 0)


def _item(out: dict[str, Any], sigs: list[bytes], blob: bytes | None = None) -> dict[str, Any]:
    """What the node hands the ``logs`` ecall for one height (node/logindex.py): the blob, the
    header, its QC, the batch data meta and the meta's Merkle proof."""
    from enclavenet.node.logindex import meta_proof

    meta, proof = meta_proof(batch_data_items(out["batch_data"]))
    return {"blob": out["logs"] if blob is None else blob, "header": out["header"], "signatures": sigs,
            "meta": meta, "proof": proof}


@pytest.fixture(scope="module")
def transferred() -> tuple[Net, Any, Any, Any, str, list[dict[str, Any]], dict[str, Any]]:
    """alice deploys the token (height 1) and sends bob 5 (height 2); the log blobs of both, each
    with its header's QC (member 0 proposes, member 1 votes; member 2 votes height 1 only)."""
    net = Net()
    alice, bob, carol = Account.create(), Account.create(), Account.create()
    code, sels = token_code()
    deploy = net.env(alice, None, data=code, gas=2_000_000)
    m = net.members[0]
    req1, out1 = net.run(m, 1, bytes(32), l1_block=3, messages=[dep(0, alice.address, 10**18, 2)],
                         envelopes=[deploy.envelope.encode()])
    token = to_checksum(receipt_of(out1, deploy).contract_address or b"")
    call = sels["transfer"] + word(bob.address) + (5).to_bytes(32, "big")
    tx = net.env(alice, token, data=call, gas=200_000)
    req2, out2 = net.run(m, 2, out1["header_hash"], l1_block=3, envelopes=[tx.envelope.encode()])
    assert receipt_of(out2, tx).success
    sigs1 = [out1["signature"]] + [v.call("verify_batch", header=out1["header"], **req1)["signature"]
                                   for v in net.members[1:]]
    sigs2 = [out2["signature"], net.members[1].call("verify_batch", header=out2["header"], **req2)["signature"]]
    for h, out in ((1, out1), (2, out2)):
        assert blob_prefix(out["logs"]) == (0, h, out["header_hash"])
    extra = {"req2": req2, "out2": out2, "sigs2": sigs2}
    return net, alice, bob, carol, token, [_item(out1, sigs1), _item(out2, sigs2)], extra


def _ask(net: Net, s: SealedRequest, blobs: list[Any], member: int = 1) -> dict[str, Any]:
    sealed = net.members[member].call("logs", envelope=s.envelope.encode(), blobs=blobs)["result"]
    return cbor2.loads(open_receipt(s.receipt_key, sealed))


def test_receiver_and_sender_see_the_transfer_a_third_party_only_the_public_event(transferred: Any) -> None:
    net, alice, bob, carol, token, blobs, _ = transferred
    got = {}
    for name, who in (("alice", alice), ("bob", bob), ("carol", carol)):
        res = _ask(net, _query(net, who, 1, 2), blobs)
        assert res["ok"], res["error"]
        assert res["missing"] == [] and res["unavailable"] == []
        got[name] = [(lg[0], bytes(lg[6][0])) for lg in res["logs"]]
        for lg in res["logs"]:
            assert to_checksum(lg[5]) == token
    assert got["alice"] == [(2, TRANSFER), (2, ANNOUNCE)]
    assert got["bob"] == [(2, TRANSFER), (2, ANNOUNCE)]  # the receiver sees the incoming Transfer
    assert got["carol"] == [(2, ANNOUNCE)]  # a third party: only the event the token made public
    # topic filter: Transfer only; carol gets nothing at all
    assert _ask(net, _query(net, carol, 1, 2, topics=[TRANSFER]), blobs)["logs"] == []
    res = _ask(net, _query(net, bob, 1, 2, topics=[TRANSFER, None, word(bob.address)]), blobs)
    (lg,) = res["logs"]
    assert lg[2] == 0 and lg[3] == 0 and lg[4] == 0 and int.from_bytes(lg[7], "big") == 5
    # a height the node passed no blob for is reported, not silently skipped
    res = _ask(net, _query(net, bob, 1, 3), blobs[1:])
    assert res["missing"] == [1, 3] and len(res["logs"]) == 2


def test_bad_signature_wrong_target_and_tampered_blob_are_refused(transferred: Any) -> None:
    net, _, bob, carol, _, blobs, _ = transferred
    res = _ask(net, _query(net, bob, 1, 2, signer=carol), blobs)  # carol signs "from: bob"
    assert not res["ok"] and "not by 'from'" in res["error"] and res["logs"] == []
    res = _ask(net, _query(net, bob, 1, 2, to=b"\x00" * 19 + b"\x01"), blobs)
    assert not res["ok"] and "not a log query" in res["error"]
    s = _query(net, bob, 1, 2)
    _ask(net, s, blobs)
    assert "already answered" in _ask(net, s, blobs)["error"]  # replay
    bad = bytearray(blobs[1]["blob"])
    bad[-1] ^= 1
    res = _ask(net, _query(net, bob, 1, 2), [blobs[0], {**blobs[1], "blob": bytes(bad)}])
    assert not res["ok"] and "does not decrypt" in res["error"]
    # a bare blob (no header, QC, meta proof) proves nothing
    res = _ask(net, _query(net, bob, 1, 2), [blobs[1]["blob"]])
    assert not res["ok"] and "a bare blob proves nothing" in res["error"] and res["logs"] == []


def test_node_log_index_keeps_only_matching_blobs_within_bounds(transferred: Any) -> None:
    from enclavenet.node.logindex import LogIndex, LogQueryTooLarge

    _, _, _, _, _, items, _ = transferred
    idx = LogIndex()
    hashes = [blob_prefix(b["blob"])[2] for b in items]

    def args(i: int, **over: Any) -> list[Any]:
        it = {**items[i], **over}
        return [it["blob"], it["header"], it["signatures"], it["meta"], it["proof"]]

    assert not idx.add(1, hashes[1], *args(0))  # the blob names another header
    assert not idx.add(2, hashes[1], *args(1, blob=b"garbage" * 20))
    assert not idx.add(2, hashes[1], *args(1, header=items[0]["header"]))  # the header is not the blob's
    assert idx.add(1, hashes[0], *args(0)) and idx.add(2, hashes[1], *args(1))
    assert not idx.add(2, hashes[1], *args(1))  # the first blob for a height wins
    again = LogIndex()
    again.add_frame(LogIndex.frame(2, hashes[1], *args(1)))  # logs.log replay
    again.add_frame({"v": 2, "height": "x"})
    again.add_frame({"v": 1, "height": 1, "hash": hashes[0], "blob": items[0]["blob"]})  # earlier format: no proof
    assert again.blobs(1, 5) == [items[1]]
    assert idx.blobs(1, 2) == items and idx.blobs(3, 9) == []
    with pytest.raises(LogQueryTooLarge, match="below fromBlock"):
        idx.blobs(2, 1)
    with pytest.raises(LogQueryTooLarge, match="smaller ranges"):
        idx.blobs(1, MAX_QUERY_HEIGHTS + 1)


def test_a_broken_proposer_cannot_forge_an_incoming_transfer(transferred: Any) -> None:
    """Issue 11 item 2, the "proposer's word" hole: the proposer's enclave (member 0, one TEE
    type) is broken and leaks its keys; with the epoch's state key it seals, for the real height
    2, an index holding a Transfer from carol to bob that never happened. (1) The voters compute
    the index themselves (the meta's logs_hash, under the header's data_commitment): a header
    whose batch data commits the forged index gets no vote. (2) The ``logs`` ecall given the
    forged blob (with the real header, QC and meta proof, or with the forged meta) shows bob no
    fake log: the height is reported missing."""
    import dataclasses

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    from enclavenet.crypto.merkle import merkle_root
    from enclavenet.enclave.keys import STATE_SUBKEY_INFO
    from enclavenet.enclave.logs import (
        LOGS_COMMIT_SUBKEY,
        LOGS_SUBKEY,
        IndexedLog,
        log_index_plaintext,
        logs_commitment,
        open_log_blob_plain,
        seal_log_blob,
    )

    net, _, bob, carol, token, items, extra = transferred
    req2, out2, sigs2 = extra["req2"], extra["out2"], extra["sigs2"]
    leaked = net.members[0].handle._server.program.compromised_export()  # type: ignore[attr-defined]
    state_key = bytes.fromhex(leaked["epochs"][0]["state_key"])

    def subkey(purpose: str) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=STATE_SUBKEY_INFO + (0).to_bytes(8, "big") + purpose.encode()).derive(state_key)

    header2 = Header.decode(out2["header"])
    fake = IndexedLog(0, 0, 0, address_bytes(token), (TRANSFER, word(carol.address), word(bob.address)),
                      (10**6).to_bytes(32, "big"), os.urandom(32), os.urandom(32),
                      (address_bytes(carol.address), address_bytes(bob.address)), False)
    forged_plain = log_index_plaintext([fake])
    forged = seal_log_blob(subkey(LOGS_SUBKEY), 0, 2, header2.hash(), [fake])
    assert blob_prefix(forged) == (0, 2, header2.hash())  # a blob the node would store and serve

    # the real meta commits the index the committee computed, not the forged one
    real_items = batch_data_items(out2["batch_data"])
    meta = cbor2.loads(real_items[0])
    real_plain = open_log_blob_plain(subkey(LOGS_SUBKEY), out2["logs"])
    assert meta["logs_hash"] == logs_commitment(subkey(LOGS_COMMIT_SUBKEY), real_plain)
    forged_hash = logs_commitment(subkey(LOGS_COMMIT_SUBKEY), forged_plain)
    assert forged_hash != meta["logs_hash"]

    # (1) the broken proposer commits its forged index in the batch data: no voter signs that
    forged_meta = cbor2.dumps({**meta, "logs_hash": forged_hash}, canonical=True)
    forged_header = dataclasses.replace(
        header2, data_commitment=merkle_root([keccak256(x) for x in [forged_meta, *real_items[1:]]]))
    with pytest.raises(EnclaveError, match="does not match this enclave's re-execution"):
        net.members[2].call("verify_batch", header=forged_header.encode(), **req2)
    # ... while the header committing the real index gets its vote
    assert net.members[2].call("verify_batch", header=out2["header"], **req2)["header_hash"] == header2.hash()

    # (2) the forged blob handed to the logs ecall: with the real header, QC and meta proof ...
    for member in (1, 2):
        res = _ask(net, _query(net, bob, 1, 2, topics=[TRANSFER]), [items[0], {**items[1], "blob": forged}], member)
        assert res["ok"], res["error"]
        assert res["logs"] == [] and res["missing"] == [2]
    # ... with the forged meta (its proof cannot reach the QC'd header's data_commitment) ...
    from enclavenet.node.logindex import meta_proof

    fmeta, fproof = meta_proof([forged_meta, *real_items[1:]])
    res = _ask(net, _query(net, bob, 2, 2), [{**items[1], "blob": forged, "meta": fmeta, "proof": fproof}])
    assert res["logs"] == [] and res["missing"] == [2]
    # ... or with the forged header (no QC: one member's signature, one TEE type)
    res = _ask(net, _query(net, bob, 2, 2), [{"blob": seal_log_blob(subkey(LOGS_SUBKEY), 0, 2, forged_header.hash(), [fake]),
                                              "header": forged_header.encode(), "signatures": [sigs2[0]],
                                              "meta": fmeta, "proof": fproof}])
    assert res["logs"] == [] and res["missing"] == [2]
    # the real blob still shows bob the real Transfer (5 from alice)
    res = _ask(net, _query(net, bob, 2, 2, topics=[TRANSFER]), [items[1]])
    assert [int.from_bytes(lg[7], "big") for lg in res["logs"]] == [5] and res["missing"] == []


def test_gateway_union_is_deduplicated_and_ordered() -> None:
    from enclavenet.client.formats import merge_logs

    def lg(block: int, tx: str, tx_index: int, log_index: int, tx_log: int | None = None, src: str = "") -> dict[str, Any]:
        out = {"blockNumber": hex(block), "transactionHash": tx, "transactionIndex": hex(tx_index),
               "logIndex": hex(log_index), "src": src}
        if tx_log is not None:
            out["transactionLogIndex"] = hex(tx_log)
        return out

    enclave = [lg(5, "0xBB", 2, 3, 0, "enc"), lg(5, "0xBB", 2, 4, 1, "enc"), lg(3, "0xcc", 0, 0, 0, "enc")]
    own = [lg(5, "0xbb", 2, 0, src="own"), lg(5, "0xbb", 2, 1, src="own"), lg(4, "0xdd", 1, 0, src="own")]
    out = merge_logs(enclave, own)
    assert [(int(x["blockNumber"], 16), x["src"]) for x in out] == [(3, "enc"), (4, "own"), (5, "enc"), (5, "enc")]
    assert [x["logIndex"] for x in out[2:]] == ["0x3", "0x4"]  # the enclave's block-wide indexes win
