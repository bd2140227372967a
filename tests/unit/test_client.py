"""The confidential client's own formats: signing, sealing, view requests, receipts, error mapping.

The enclave side of every format is the real one (crypto.envelope.open_envelope, the enclave
program's transaction decoder, view-request parser and receipt encoder), so a drift between
client and enclave fails here.
"""

from __future__ import annotations

import time
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account
from web3.exceptions import ContractLogicError, Web3RPCError

from enclavenet.client import (
    EnclaveNetError,
    EnvelopeRefused,
    EpochChanged,
    NodeUnavailable,
    ReceiptUnreadable,
    TransactionReverted,
)
from enclavenet.client.core import (
    BALANCE_PROBE_CODE,
    NONCE_PROBE_CODE,
    ConfidentialClient,
    SentTx,
)
from enclavenet.client.formats import (
    build_view_request,
    create_address,
    decode_receipt,
    decode_view_result,
    encode_inbox_call,
    inspect_raw_transaction,
    logs_bloom,
    revert_reason,
    sign_transaction,
    view_digest,
)
from enclavenet.crypto.envelope import Envelope, RoutingHint, open_envelope, seal, seal_receipt
from enclavenet.crypto.hashing import keccak256, to_checksum
from enclavenet.enclave.executor import Log as EvmLog
from enclavenet.enclave.executor import Receipt as EvmReceipt
from enclavenet.enclave.tx import decode_inbox_call, decode_tx
from enclavenet.enclave.views import ViewDomain, parse_view_request, view_call_digest

CHAIN = 4242
ALICE = Account.from_key(b"\x11" * 32)
BOB = Account.from_key(b"\x22" * 32).address
TOKEN = to_checksum("0x" + "ab" * 20)


# ------------------------------------------------------------------ transactions


@pytest.mark.parametrize("legacy", [False, True])
def test_signed_transaction_matches_eth_account_and_the_enclave_decoder(legacy: bool) -> None:
    raw = sign_transaction(ALICE.key, CHAIN, 7, TOKEN, b"\xa9\x05\x9c\xbb" + b"\x01" * 64, 3, 90_000, legacy=legacy)
    fields: dict[str, Any] = {"chainId": CHAIN, "nonce": 7, "to": TOKEN, "data": b"\xa9\x05\x9c\xbb" + b"\x01" * 64, "value": 3, "gas": 90_000}
    if legacy:
        fields["gasPrice"] = 0
    else:
        fields.update(maxFeePerGas=0, maxPriorityFeePerGas=0)
    assert raw == bytes(Account.sign_transaction(fields, ALICE.key).raw_transaction)
    tx = decode_tx(raw, CHAIN)
    assert tx.sender_checksum == ALICE.address and tx.nonce == 7 and tx.value == 3 and tx.gas == 90_000
    info = inspect_raw_transaction(raw)
    assert (info.sender, info.nonce, info.chain_id) == (ALICE.address, 7, CHAIN)
    assert info.to is not None and info.to == TOKEN


def test_deployment_transaction_and_create_address() -> None:
    raw = sign_transaction(ALICE.key, CHAIN, 0, None, b"\x60\x00", 0, 100_000)
    assert decode_tx(raw, CHAIN).to is None
    assert inspect_raw_transaction(raw).to is None
    # the address of the first contract deployed by the well-known dev key 0xac09...ff80
    dev = Account.from_key("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
    assert create_address(dev.address, 0) == "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def test_inbox_call_matches_the_enclave_decoder() -> None:
    raw = encode_inbox_call(CHAIN, TOKEN, b"\x01\x02", 5, 70_000)
    call = decode_inbox_call(raw, CHAIN, ALICE.address)
    assert call.to.hex() == TOKEN[2:].lower() and call.data == b"\x01\x02" and call.value == 5 and call.gas == 70_000


# ------------------------------------------------------------------ sealing


def test_sealed_transaction_opens_only_with_the_epoch_key_and_hides_the_call() -> None:
    epoch_priv = X25519PrivateKey.generate()
    calldata = b"\xa9\x05\x9c\xbb" + bytes.fromhex(BOB[2:]).rjust(32, b"\0") + (12345).to_bytes(32, "big")
    raw = sign_transaction(ALICE.key, CHAIN, 4, TOKEN, calldata, 0, 80_000)
    sealed = seal(raw, epoch_priv.public_key().public_bytes_raw(), CHAIN, 9, RoutingHint(bytes.fromhex(ALICE.address[2:]), 4))
    wire = sealed.envelope.encode()
    # each needle >= 4 bytes, so a chance match in ~190 random ciphertext bytes is < 1e-7
    # (the amount travels as its whole ABI word; its last 2 bytes alone matched ~0.3 % of runs)
    for secret in (calldata[:4], bytes.fromhex(TOKEN[2:]), bytes.fromhex(BOB[2:]), calldata[-32:], raw[-40:]):
        assert secret not in wire
    opened = open_envelope(Envelope.decode(wire), epoch_priv, CHAIN)
    assert opened.plaintext == raw and opened.receipt_key == sealed.receipt_key
    with pytest.raises(ValueError, match="does not decrypt"):
        open_envelope(Envelope.decode(wire), X25519PrivateKey.generate(), CHAIN)


# ------------------------------------------------------------------ signed views


def test_view_request_is_accepted_by_the_enclave_and_proves_the_sender() -> None:
    dom = ViewDomain(CHAIN, 31337, "0x" + "5e" * 20)
    pt = build_view_request(ALICE.key, ALICE.address, dom, 3, TOKEN, b"\x70\xa0\x82\x31", 0, 50_000)
    req = parse_view_request(pt, dom, 3)
    assert req.sender == ALICE.address and req.to == TOKEN and req.gas == 50_000
    assert 0 < req.expiry - time.time() <= 600 and req.nonce != parse_view_request(
        build_view_request(ALICE.key, ALICE.address, dom, 3, TOKEN, b"\x70\xa0\x82\x31", 0, 50_000), dom, 3).nonce
    args = (ALICE.address, req.to, b"\x70\xa0\x82\x31", 0, 50_000, 3, req.nonce, req.expiry)
    assert view_digest(dom, *args) == view_call_digest(dom, *args) == req.digest
    # a request replayed into another epoch, chain, L1 or Rollup is refused
    with pytest.raises(ValueError, match="epoch"):
        parse_view_request(pt, dom, 4)
    for other in (ViewDomain(CHAIN + 1, 31337, dom.rollup), ViewDomain(CHAIN, 1, dom.rollup),
                  ViewDomain(CHAIN, 31337, "0x" + "77" * 20)):
        with pytest.raises(ValueError, match="not by 'from'"):
            parse_view_request(pt, other, 3)
    # a creation view (nonce / balance probes) goes to the zero address
    assert parse_view_request(build_view_request(ALICE.key, ALICE.address, dom, 3, None, NONCE_PROBE_CODE), dom, 3).is_create
    assert BALANCE_PROBE_CODE.hex() == "3331600052602060" + "00fd"


def test_view_result_and_revert_reasons() -> None:
    err = bytes.fromhex("08c379a0") + (32).to_bytes(32, "big") + (5).to_bytes(32, "big") + b"nope!".ljust(32, b"\0")
    r = decode_view_result(cbor2.dumps({"ok": False, "return_data": err, "gas_used": 100, "error": "execution reverted: nope!"}))
    assert not r.ok and r.revert_reason == "nope!"
    panic = bytes.fromhex("4e487b71") + (0x11).to_bytes(32, "big")
    assert revert_reason(panic) == "panic 0x11 (arithmetic overflow or underflow)"
    assert revert_reason(b"", "out of gas") == "out of gas"
    assert revert_reason(b"\xde\xad\xbe\xef") == "custom error 0xdeadbeef"


# ------------------------------------------------------------------ receipts


def _evm_receipt(status: int = 1, **over: Any) -> EvmReceipt:
    fields: dict[str, Any] = dict(
        status=status,
        gas_used=51_234,
        output=b"\x00" * 31 + b"\x01",
        logs=(EvmLog(bytes.fromhex(TOKEN[2:]), (b"\x01" * 32, b"\x02" * 32), b"\x03" * 32),),
        error=None,
        contract_address=None,
        tx_hash=b"\x44" * 32,
        sender=bytes.fromhex(ALICE.address[2:]),
    )
    fields.update(over)
    return EvmReceipt(**fields)


def test_enclave_receipt_decodes_for_the_sender() -> None:
    dr = decode_receipt(_evm_receipt().encode())
    assert dr.status == 1 and dr.gas_used == 51_234 and dr.sender == ALICE.address
    assert dr.logs[0].address == TOKEN and dr.logs[0].topics == [b"\x01" * 32, b"\x02" * 32]
    created = decode_receipt(_evm_receipt(contract_address=b"\x55" * 20).encode())
    assert created.contract_address == "0x" + "55" * 20
    err = bytes.fromhex("08c379a0") + (32).to_bytes(32, "big") + (3).to_bytes(32, "big") + b"low".ljust(32, b"\0")
    rev = decode_receipt(_evm_receipt(status=0, output=err, logs=(), error="execution reverted: low").encode())
    assert rev.status == 0 and rev.revert_reason == "low"


def test_logs_bloom_matches_ethereum() -> None:
    # the bloom of one log is the OR of 3 bits for its address and each topic
    from enclavenet.client.formats import Log

    bloom = int.from_bytes(logs_bloom([Log(TOKEN, [b"\x01" * 32], b"")]), "big")
    assert 1 <= bin(bloom).count("1") <= 6
    assert logs_bloom([]) == b"\x00" * 256


def _client_with_sent(rid: str, key: bytes, to: str | None = TOKEN) -> ConfidentialClient:
    c = ConfidentialClient(ALICE)  # type: ignore[arg-type]
    c.remember(rid, SentTx(key, ALICE.address, 0, to, b"\x44" * 32, create_address(ALICE.address, 0) if to is None else None))
    return c


def test_receipt_json_is_what_web3_expects() -> None:
    key = b"\x07" * 32
    rid = "0x" + "aa" * 32
    c = _client_with_sent(rid, key)
    node = {"receiptId": rid, "height": 5, "headerHash": "0x" + "bb" * 32, "l1TxHash": "0x" + "cc" * 32,
            "encryptedReceipt": "0x" + seal_receipt(key, _evm_receipt().encode()).hex()}
    out = c.get_receipt(lambda m, p: {"jsonrpc": "2.0", "id": 1, "result": node}, rid)
    assert out is not None
    assert out["status"] == "0x1" and out["blockNumber"] == "0x5" and out["gasUsed"] == hex(51_234)
    assert out["transactionHash"] == rid and out["from"] == ALICE.address and out["contractAddress"] is None
    assert out["logs"][0]["topics"][0] == "0x" + "01" * 32 and out["l1TransactionHash"] == "0x" + "cc" * 32
    from web3._utils.method_formatters import receipt_formatter

    formatted = receipt_formatter(out)
    assert formatted["status"] == 1 and formatted["logs"][0]["logIndex"] == 0


def test_receipt_errors() -> None:
    key = b"\x07" * 32
    rid = "0x" + "aa" * 32
    c = _client_with_sent(rid, key)

    def node(entry: bytes) -> Any:
        return lambda m, p: {"jsonrpc": "2.0", "id": 1, "result": {"height": 1, "headerHash": "0x" + "00" * 32, "encryptedReceipt": "0x" + entry.hex()}}

    # not ours: no key to read it
    with pytest.raises(ReceiptUnreadable, match="only its sender"):
        c.get_receipt(node(seal_receipt(key, b"x")), "0x" + "ab" * 32)
    # sealed under another key (tampered or not for us)
    with pytest.raises(ReceiptUnreadable, match="does not decrypt"):
        c.get_receipt(node(seal_receipt(b"\x08" * 32, _evm_receipt().encode())), rid)
    # the enclave could not open the envelope
    with pytest.raises(EnvelopeRefused, match="unknown epoch 3"):
        c.get_receipt(node(b"EnclaveNet.error:unknown epoch 3"), rid)
    # pending
    assert c.get_receipt(lambda m, p: {"jsonrpc": "2.0", "id": 1, "result": None}, rid) is None


# ------------------------------------------------------------------ error mapping


def test_node_errors_map_to_typed_errors() -> None:
    c = ConfidentialClient(ALICE)  # type: ignore[arg-type]

    def err(code: int, message: str) -> Any:
        return lambda m, p: {"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": message}}

    with pytest.raises(EpochChanged):
        c.rpc(err(-32003, "envelope sealed to epoch 7, the node accepts 8..8"), "eth_sendRawTransaction", [])
    with pytest.raises(EpochChanged):  # the enclave's own words, whatever the code
        c.rpc(err(-32010, "view_call: envelope epoch 3 is unknown or erased here"), "enclavenet_call", [])
    with pytest.raises(EnvelopeRefused, match="mempool full") as ei:
        c.rpc(err(-32001, "mempool full: 1000 pending for this sender"), "eth_sendRawTransaction", [])
    assert ei.value.code == -32001 and not isinstance(ei.value, EpochChanged)
    with pytest.raises(NodeUnavailable, match="not ready"):
        c.rpc(err(-32050, "the committee has no epoch key yet"), "eth_sendRawTransaction", [])
    with pytest.raises(NodeUnavailable, match="does not serve"):
        c.rpc(err(-32601, "unknown method"), "enclavenet_call", [])

    def down(m: str, p: Any) -> Any:
        raise ConnectionRefusedError(111, "refused")

    with pytest.raises(NodeUnavailable, match="unreachable") as ni:
        c.rpc(down, "eth_chainId", [])
    assert isinstance(ni.value, Web3RPCError) and isinstance(ni.value, EnclaveNetError)
    rev = TransactionReverted("too low", data="0x")
    assert isinstance(rev, ContractLogicError) and rev.reason == "too low" and "too low" in str(rev)


def test_epoch_change_reseals_and_retries_once() -> None:
    keys = {5: X25519PrivateKey.generate(), 6: X25519PrivateKey.generate()}
    current = {"epoch": 5}
    seen: list[int] = []

    def node(method: str, params: Any) -> Any:
        if method == "eth_chainId":
            return {"jsonrpc": "2.0", "id": 1, "result": hex(CHAIN)}
        if method == "enclavenet_epochKey":
            e = current["epoch"]
            return {"jsonrpc": "2.0", "id": 1, "result": {"epoch": e, "epochKey": "0x" + keys[e].public_key().public_bytes_raw().hex(), "height": 1, "headerHash": "0x"}}
        if method == "eth_gasPrice":  # the fee the client signs with (docs/FEES.md): none here
            return {"jsonrpc": "2.0", "id": 1, "result": "0x0"}
        assert method == "eth_sendRawTransaction"
        env = Envelope.decode(bytes.fromhex(params[0][2:]))
        seen.append(env.epoch)
        if env.epoch != 6:
            current["epoch"] = 6
            return {"jsonrpc": "2.0", "id": 1, "error": {"code": -32003, "message": f"envelope sealed to epoch {env.epoch}: the committee is at epoch 6"}}
        assert open_envelope(env, keys[6], CHAIN).plaintext[:1] == b"\x02"
        return {"jsonrpc": "2.0", "id": 1, "result": "0x" + keccak256(bytes.fromhex(params[0][2:])).hex()}

    c = ConfidentialClient(ALICE)  # type: ignore[arg-type]
    rid = c.send_transaction(node, {"to": TOKEN, "data": "0x", "gas": hex(50_000), "nonce": "0x0"})
    assert seen == [5, 6] and c.epoch_retries == 1 and c.sent(rid) is not None


def test_no_secret_in_reprs() -> None:
    c = _client_with_sent("0x" + "aa" * 32, b"\x07" * 32)
    text = repr(c) + repr(c.sent("0x" + "aa" * 32))
    assert ALICE.key.hex() not in text and ("07" * 32) not in text
    with pytest.raises(EnclaveNetError, match="holds no key for"):
        c.send_transaction(lambda m, p: {}, {"from": BOB, "to": TOKEN})
