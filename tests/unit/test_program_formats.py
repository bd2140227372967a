"""The enclave program's own formats: EIP-712 view requests, request decoding, batch binding."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from enclavenet.crypto.hashing import keccak256
from enclavenet.crypto.merkle import merkle_proof, merkle_root, merkle_verify
from enclavenet.crypto.messages import MSG_GENESIS_ACC, L1Message
from enclavenet.enclave.batch import (
    MAX_TIMESTAMP,
    BatchInput,
    ChainHead,
    batch_data_items,
    commit_batch_data,
    error_entry,
)
from enclavenet.enclave.codec import Request, decode_map, encode
from enclavenet.enclave.errors import EnclaveRefusal
from enclavenet.enclave.views import (
    ViewDomain,
    parse_view_request,
    session_digest,
    session_typed_data,
    typed_data,
    view_call_digest,
)

CHAIN = 4242
L1_CHAIN = 31337
ROLLUP = "0x5e5E5e5e5E5e5E5E5e5E5E5e5e5E5E5E5e5E5E5e"
DOMAIN = ViewDomain(CHAIN, L1_CHAIN, ROLLUP)
ALICE = Account.create()
BOB = "0x" + "22" * 20


def _signed_view(epoch: int = 3, domain: ViewDomain = DOMAIN, **over: object) -> dict[str, object]:
    msg: dict[str, object] = dict(sender=ALICE.address, to=BOB, data=b"\x01\x02", value=5, gas=100_000, epoch=epoch,
                                  nonce=77, expiry=1_700_000_100)
    td = typed_data(domain, **msg)  # type: ignore[arg-type]
    sig = Account.sign_message(encode_typed_data(full_message=td), ALICE.key).signature
    req: dict[str, object] = {
        "from": ALICE.address, "to": BOB, "data": b"\x01\x02", "value": 5, "gas": 100_000,
        "epoch": epoch, "nonce": 77, "expiry": 1_700_000_100, "sig": bytes(sig),
    }
    req.update(over)
    return req


def test_view_digest_is_eip712_as_wallets_sign_it() -> None:
    td = typed_data(DOMAIN, ALICE.address, BOB, b"\xaa", 7, 50_000, 2, 9, 1_700_000_000)
    ours = view_call_digest(DOMAIN, ALICE.address, BOB, b"\xaa", 7, 50_000, 2, 9, 1_700_000_000)
    signable = encode_typed_data(full_message=td)
    assert keccak256(b"\x19" + signable.version + signable.header + signable.body) == ours
    assert td["domain"]["verifyingContract"] == ROLLUP  # type: ignore[index]


def test_view_request_recovers_the_real_sender() -> None:
    req = parse_view_request(cbor2.dumps(_signed_view()), DOMAIN, 3)
    assert req.sender == ALICE.address and req.value == 5 and req.data == b"\x01\x02"
    assert (req.nonce, req.expiry) == (77, 1_700_000_100)


@pytest.mark.parametrize(
    ("plaintext_over", "domain", "env_epoch", "needle"),
    [
        ({"value": 6}, DOMAIN, 3, "not by 'from'"),  # altered field
        ({"nonce": 78}, DOMAIN, 3, "not by 'from'"),  # altered nonce
        ({"expiry": 1_800_000_000}, DOMAIN, 3, "not by 'from'"),  # extended expiry
        ({}, ViewDomain(CHAIN + 1, L1_CHAIN, ROLLUP), 3, "not by 'from'"),  # wrong chain id
        ({}, ViewDomain(CHAIN, L1_CHAIN + 1, ROLLUP), 3, "not by 'from'"),  # another L1
        ({}, ViewDomain(CHAIN, L1_CHAIN, "0x" + "77" * 20), 3, "not by 'from'"),  # another Rollup
        ({}, DOMAIN, 4, "sealed to epoch 4"),  # replayed into another epoch
        ({"sig": b"\x00" * 65}, DOMAIN, 3, "bad signature"),
        ({"gas": 10}, DOMAIN, 3, "'gas'"),
        ({"from": b"\x01" * 19}, DOMAIN, 3, "'from'"),
    ],
)
def test_view_request_refusals(plaintext_over: dict[str, object], domain: ViewDomain, env_epoch: int, needle: str) -> None:
    with pytest.raises(EnclaveRefusal, match=needle):
        parse_view_request(cbor2.dumps(_signed_view(**plaintext_over)), domain, env_epoch)


def test_view_request_without_nonce_or_expiry_is_refused() -> None:
    req = _signed_view()
    del req["nonce"]
    with pytest.raises(EnclaveRefusal, match="needs a nonce and an expiry"):
        parse_view_request(cbor2.dumps(req), DOMAIN, 3)


@pytest.mark.parametrize("payload", [b"\xff\xff", cbor2.dumps([1, 2]), cbor2.dumps({1: 2}), b"\x9f" * 5000])
def test_malformed_payloads_are_refused(payload: bytes) -> None:
    with pytest.raises(EnclaveRefusal, match="payload"):
        decode_map(payload, "status")


def test_request_field_checks_name_the_field() -> None:
    r = Request({"height": -1, "h": b"x", "l": list(range(5))}, "batch")
    with pytest.raises(EnclaveRefusal, match="'height' must be in"):
        r.integer("height")
    with pytest.raises(EnclaveRefusal, match="'h' must be 32 bytes"):
        r.blob("h", 32)
    with pytest.raises(EnclaveRefusal, match="'l' has 5 items"):
        r.items("l", 4)
    with pytest.raises(EnclaveRefusal, match="'missing' is missing"):
        r.raw("missing")


def _msg(i: int, block: int) -> list[object]:
    return [i, 1, BOB, 10, block, b""]


def _batch(**over: object) -> BatchInput:
    m: dict[str, object] = dict(
        height=1, prev_hash=b"\0" * 32, epoch=0, l1_block=5, timestamp=100,
        messages=[_msg(0, 3), _msg(1, 5)], envelopes=[b"e1"],
    )
    m.update(over)
    return BatchInput.parse(Request(decode_map(encode(m), "batch"), "batch"))


def test_batch_must_continue_the_head() -> None:
    head = ChainHead()
    _batch().check_continues(head)
    cases = [
        (dict(height=2), "does not extend"),
        (dict(prev_hash=b"\1" * 32), "prev_hash"),
        (dict(messages=[_msg(1, 3)]), "expected 0"),  # gap
        (dict(messages=[_msg(0, 5), _msg(1, 3)]), "out of L1 order"),
        (dict(messages=[_msg(0, 6)]), "after the batch's l1_block"),
    ]
    for over, needle in cases:
        with pytest.raises(EnclaveRefusal, match=needle):
            _batch(**over).check_continues(head)
    later = ChainHead(height=1, hash=b"\2" * 32, l1_block=4, msg_count=1, msg_acc=MSG_GENESIS_ACC, timestamp=50)
    # issue 14 H5: a message from a block the head already covers continues the chain in order
    # (a header that left it out must not strand it; L1 and the voters refuse such headers)
    _batch(height=2, prev_hash=b"\2" * 32, messages=[_msg(1, 4)]).check_continues(later)
    _batch(height=2, prev_hash=b"\2" * 32, messages=[_msg(1, 2), _msg(2, 5)]).check_continues(later)
    # issue 14 M1: the timestamp never goes back, nor past year 9999 (2^64-1 froze block.timestamp)
    for ts, needle in ((49, "before the head's timestamp"), (2**64 - 1, "beyond"), (MAX_TIMESTAMP + 1, "beyond")):
        with pytest.raises(EnclaveRefusal, match=needle):
            _batch(height=2, prev_hash=b"\2" * 32, messages=[_msg(1, 4)], timestamp=ts).check_continues(later)
    _batch(height=2, prev_hash=b"\2" * 32, messages=[], timestamp=MAX_TIMESTAMP).check_continues(later)
    with pytest.raises(EnclaveRefusal, match="unknown message kind"):
        _batch(messages=[[0, 9, BOB, 0, 3, b""]])


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 13])
def test_batch_roots_follow_crypto_merkle(n: int) -> None:
    envs = [bytes([i]) * (i + 1) for i in range(n)]
    entries = [bytes([i + 100]) * 3 for i in range(n + 1)]
    inp = _batch(envelopes=envs)
    ids = [keccak256(e) for e in envs]
    c = commit_batch_data(inp, 0, 2, MSG_GENESIS_ACC, ids, entries)
    assert c.tx_root == merkle_root(ids)
    assert c.receipts_root == merkle_root([keccak256(e) for e in entries])
    assert c.data_commitment == merkle_root([keccak256(x) for x in batch_data_items(c.batch_data)])


def test_batch_data_commitment_proves_each_item() -> None:
    inp = _batch(envelopes=[b"env-a", b"env-b"])
    ids = [keccak256(e) for e in inp.envelopes]
    entries = [b"sealed-1", error_entry("decrypt")]
    c = commit_batch_data(inp, 0, 2, MSG_GENESIS_ACC, ids, entries)
    items = batch_data_items(c.batch_data)
    assert items[1:3] == inp.envelopes and items[3:] == entries
    leaves = [keccak256(x) for x in items]
    assert c.data_commitment == merkle_root(leaves)
    for i, leaf in enumerate(leaves):
        assert merkle_verify(c.data_commitment, leaf, merkle_proof(leaves, i))
    assert c.tx_root == merkle_root(ids)
    assert c.receipts_root == merkle_root([keccak256(e) for e in entries])
    assert L1Message(0, 1, BOB, 1, 1, b"").payload_hash == keccak256(b"")


# --------------------------------------------------------------------------- viewing sessions

NOW = 1_800_000_000


def _session_view(
    account: Any = ALICE, session_key: Any = None, *, expiry: int = NOW + 600, statement_by: Any = None,
    request_by: Any = None, domain: ViewDomain = DOMAIN, sender: str | None = None,
) -> bytes:
    """A view request for ``sender`` (default: the account) signed by a session key under a
    ViewingSession statement signed by ``statement_by`` (default: the account)."""
    from enclavenet.client.formats import ViewingSession, build_view_request, sign_digest

    key = session_key or Account.create()
    statement_sig = sign_digest(
        bytes((statement_by or account).key), session_digest(domain, account.address, key.address, expiry)
    )
    session = ViewingSession(account.address, key.address, expiry, statement_sig)
    signer = request_by or key
    return build_view_request(
        bytes(signer.key), sender or account.address, DOMAIN, 3, BOB, b"\x01\x02", 5, 100_000, now=NOW,
        session=session,
    )


def test_session_statement_is_eip712_as_wallets_sign_it() -> None:
    key = Account.create().address
    signable = encode_typed_data(full_message=session_typed_data(DOMAIN, ALICE.address, key, NOW))
    ours = session_digest(DOMAIN, ALICE.address, key, NOW)
    assert keccak256(b"\x19" + signable.version + signable.header + signable.body) == ours
    # a wallet's signature over the typed data recovers to the account with the enclave's digest
    sig = Account.sign_message(signable, ALICE.key).signature
    assert Account._recover_hash(ours, signature=sig) == ALICE.address


def test_view_under_a_viewing_session_has_the_account_as_sender() -> None:
    req = parse_view_request(_session_view(), DOMAIN, 3, NOW)
    assert req.sender == ALICE.address and req.data == b"\x01\x02"


def test_viewing_session_attacks_are_refused() -> None:
    mallory = Account.create()
    # mallory authorises her own key to speak for alice: the statement is not alice's
    with pytest.raises(EnclaveRefusal, match="not signed by 'from'"):
        parse_view_request(_session_view(statement_by=mallory), DOMAIN, 3, NOW)
    # mallory reuses alice's real session statement but signs the request with her own key
    with pytest.raises(EnclaveRefusal, match="not signed by the viewing session's key"):
        parse_view_request(_session_view(request_by=mallory), DOMAIN, 3, NOW)
    # mallory's own (valid) session does not make her 'from' = alice
    with pytest.raises(EnclaveRefusal, match="not signed by 'from'"):
        parse_view_request(_session_view(account=mallory, sender=ALICE.address), DOMAIN, 3, NOW)
    # expired, and no clock given
    with pytest.raises(EnclaveRefusal, match="expired"):
        parse_view_request(_session_view(expiry=NOW), DOMAIN, 3, NOW)
    with pytest.raises(EnclaveRefusal, match="expired"):
        parse_view_request(_session_view(), DOMAIN, 3, None)
    # a statement for another deployment (another Rollup on the same chains)
    other = ViewDomain(CHAIN, L1_CHAIN, "0x" + "77" * 20)
    with pytest.raises(EnclaveRefusal, match="not signed by 'from'"):
        parse_view_request(_session_view(domain=other), DOMAIN, 3, NOW)
