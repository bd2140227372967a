"""Signed transaction decoding: wallets' bytes in, sender and fields out, clear errors."""

from __future__ import annotations

import time

import pytest
import rlp
from eth_account import Account

from enclavenet.crypto.hashing import keccak256
from enclavenet.enclave.errors import EnclaveRefusal
from enclavenet.enclave.tx import (
    MAX_TX_BYTES,
    SECP256K1_N,
    InboxCall,
    SignedTx,
    TxError,
    decode_inbox_call,
    decode_item,
    decode_tx,
    encode_inbox_call,
    sign_tx,
)

CHAIN_ID = 4242
KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
ACCT = Account.from_key(KEY)
TO = "0x" + "22" * 20


def wallet_tx(**over: object) -> bytes:
    tx: dict[str, object] = {
        "chainId": CHAIN_ID,
        "nonce": 7,
        "maxFeePerGas": 10**9,
        "maxPriorityFeePerGas": 1,
        "gas": 100_000,
        "to": TO,
        "value": 12345,
        "data": b"\xa9\x05\x9c\xbb" + b"\x01" * 64,
        "type": 2,
    }
    tx.update(over)
    return bytes(ACCT.sign_transaction(tx).raw_transaction)


def test_eip1559_from_a_wallet() -> None:
    raw = wallet_tx()
    tx = decode_tx(raw, CHAIN_ID)
    assert isinstance(tx, SignedTx) and tx.tx_type == 2
    assert tx.sender.hex() == ACCT.address[2:].lower()
    assert (tx.nonce, tx.gas, tx.value, tx.to) == (7, 100_000, 12345, bytes.fromhex("22" * 20))
    assert tx.data == b"\xa9\x05\x9c\xbb" + b"\x01" * 64
    assert tx.hash == keccak256(raw)
    assert "a9059cbb" not in repr(tx)  # calldata is confidential


def test_legacy_eip155_from_a_wallet_and_contract_creation() -> None:
    raw = bytes(
        ACCT.sign_transaction(
            {"chainId": CHAIN_ID, "nonce": 0, "gasPrice": 0, "gas": 500_000, "to": b"", "value": 0, "data": b"\x60\x00"}
        ).raw_transaction
    )
    tx = decode_tx(raw, CHAIN_ID)
    assert tx.tx_type == 0 and tx.to is None and tx.sender.hex() == ACCT.address[2:].lower()


@pytest.mark.parametrize("legacy", [False, True])
def test_sign_tx_matches_eth_account(legacy: bool) -> None:
    ours = sign_tx(KEY, CHAIN_ID, 3, TO, b"\x01\x02", 5, 90_000, legacy=legacy)
    fields: dict[str, object] = {"chainId": CHAIN_ID, "nonce": 3, "gas": 90_000, "to": TO, "value": 5, "data": b"\x01\x02"}
    if legacy:
        fields["gasPrice"] = 0
    else:
        fields.update(maxFeePerGas=0, maxPriorityFeePerGas=0, type=2)
    assert ours == bytes(ACCT.sign_transaction(fields).raw_transaction)


def test_wrong_chain_id() -> None:
    with pytest.raises(TxError, match=f"wrong chain id 1: EnclaveNet's chain id is {CHAIN_ID}"):
        decode_tx(wallet_tx(chainId=1), CHAIN_ID)
    legacy = sign_tx(KEY, 5, 0, TO, legacy=True)
    with pytest.raises(TxError, match="wrong chain id 5"):
        decode_tx(legacy, CHAIN_ID)


def test_pre_eip155_is_refused() -> None:
    unsigned = [0, 0, 21_000, bytes.fromhex("22" * 20), 0, b""]
    sig = Account._keys.PrivateKey(KEY).sign_msg_hash(keccak256(rlp.encode(unsigned)))
    raw = rlp.encode([*unsigned, sig.v + 27, sig.r, sig.s])
    with pytest.raises(TxError, match=r"pre-EIP-155 transaction .* carries no chain id"):
        decode_tx(raw, CHAIN_ID)


def test_bad_signatures() -> None:
    raw = wallet_tx()
    items = rlp.decode(raw[1:])
    tampered = b"\x02" + rlp.encode([*items[:6], 999, *items[7:]])  # value changed after signing
    assert decode_tx(tampered, CHAIN_ID).sender.hex() != ACCT.address[2:].lower()
    high_s = b"\x02" + rlp.encode([*items[:11], SECP256K1_N - int.from_bytes(items[11], "big")])
    with pytest.raises(TxError, match="lower half"):
        decode_tx(high_s, CHAIN_ID)
    zero_r = b"\x02" + rlp.encode([*items[:10], 0, *items[11:]])
    with pytest.raises(TxError, match="r out of range"):
        decode_tx(zero_r, CHAIN_ID)
    bad_y = b"\x02" + rlp.encode([*items[:9], 2, *items[10:]])
    with pytest.raises(TxError, match="y_parity must be 0 or 1"):
        decode_tx(bad_y, CHAIN_ID)


def test_malformed_and_oversized() -> None:
    raw = wallet_tx()
    with pytest.raises(TxError, match="malformed RLP"):
        decode_tx(raw[:-3], CHAIN_ID)
    with pytest.raises(TxError, match="malformed RLP"):
        decode_tx(raw + b"\x00", CHAIN_ID)  # trailing bytes
    with pytest.raises(TxError, match="has 12 fields, got 3"):
        decode_tx(b"\x02" + rlp.encode([1, 2, 3]), CHAIN_ID)
    with pytest.raises(TxError, match="empty transaction"):
        decode_tx(b"", CHAIN_ID)
    with pytest.raises(TxError, match="unsupported transaction type 0x01"):
        decode_tx(b"\x01" + raw[1:], CHAIN_ID)
    with pytest.raises(TxError, match=f"exceeds the limit of {MAX_TX_BYTES}"):
        decode_tx(b"\x02" + b"\x00" * MAX_TX_BYTES, CHAIN_ID)
    with pytest.raises(TxError, match=r"transaction data of .* exceeds"):
        decode_tx(sign_tx(KEY, CHAIN_ID, 0, TO, b"\x01" * (121 * 1024)), CHAIN_ID)
    items = rlp.decode(raw[1:])
    non_canonical = b"\x02" + rlp.encode([*items[:1], b"\x00\x07", *items[2:]])
    with pytest.raises(TxError, match="non-canonical integer"):
        decode_tx(non_canonical, CHAIN_ID)
    with_access_list = wallet_tx(accessList=[{"address": TO, "storageKeys": ["0x" + "00" * 32]}])
    with pytest.raises(TxError, match="access lists are not supported"):
        decode_tx(with_access_list, CHAIN_ID)
    assert issubclass(TxError, EnclaveRefusal)


def test_inbox_calls_only_from_the_l1() -> None:
    l1 = "0x" + "ab" * 20
    raw = encode_inbox_call(CHAIN_ID, TO, b"\x01", value=3, gas=50_000)
    item = decode_item(raw, CHAIN_ID, l1_sender=l1)
    assert isinstance(item, InboxCall)
    assert (item.sender, item.to, item.value, item.data, item.gas) == (bytes.fromhex("ab" * 20), bytes.fromhex("22" * 20), 3, b"\x01", 50_000)
    with pytest.raises(TxError, match="accepted only from the L1 inbox"):
        decode_item(raw, CHAIN_ID)
    with pytest.raises(TxError, match="wrong chain id"):
        decode_inbox_call(encode_inbox_call(1, TO), CHAIN_ID, l1)
    no_to = b"\x7e" + rlp.encode([CHAIN_ID, b"", 0, b"", 50_000])
    with pytest.raises(TxError, match="cannot create a contract"):
        decode_item(no_to, CHAIN_ID, l1_sender=l1)
    # a signed transaction through the inbox keeps its signer as sender
    assert decode_item(wallet_tx(), CHAIN_ID, l1_sender=l1).sender.hex() == ACCT.address[2:].lower()


def test_decode_is_fast() -> None:
    raws = [sign_tx(KEY, CHAIN_ID, i, TO, b"\xa9\x05\x9c\xbb" + b"\x01" * 64) for i in range(300)]
    t0 = time.process_time()  # CPU time: a busy machine's waiting is not decode cost
    for r in raws:
        decode_tx(r, CHAIN_ID)
    per_tx = (time.process_time() - t0) / len(raws)
    assert per_tx < 500e-6  # ~60 us here (coincurve recovery); eth-account takes ~10x longer


def test_fast_rlp_reader_agrees_with_strict_rlp() -> None:
    """The hand-written reader of flat lists returns exactly what rlp.decode(strict) returns, or
    None (then the decoder goes through rlp): random mutations of real transactions."""
    import random

    from rlp.exceptions import RLPException

    from enclavenet.enclave.tx import _fast_list

    rnd = random.Random(5)
    seeds = [wallet_tx()[1:], sign_tx(KEY, CHAIN_ID, 1, TO, b"\x00" * 100, legacy=True),
             sign_tx(KEY, CHAIN_ID, 2, None, b"\x60" * 300)[1:], rlp.encode([b"", b"\x7f", b"\x80", []]),
             rlp.encode([b"\x01" * 56, b"\x02" * 1000]), rlp.encode([[b"\x01"]])]
    accepted = 0
    for i in range(4000):
        b = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randrange(4)):
            op = rnd.randrange(3)
            pos = rnd.randrange(len(b) + 1)
            if op == 0 and pos < len(b):
                b[pos] = rnd.choice([0, 0x7F, 0x80, 0x81, 0xB7, 0xB8, 0xBF, 0xC0, 0xF7, 0xF8, rnd.randrange(256)])
            elif op == 1:
                b[pos:pos] = bytes([rnd.randrange(256)])
            elif pos < len(b):
                del b[pos]
        data = bytes(b) if i % 10 else rnd.choice(seeds)
        fast = _fast_list(data)
        try:
            ref = rlp.decode(data, strict=True)
        except RLPException:
            assert fast is None, data.hex()
            continue
        if fast is not None:
            accepted += 1
            items, starts = fast
            assert items == ref
            assert len(starts) == len(items) + 1 and starts[-1] == len(data)
            assert all(rlp.decode(data[starts[k] : starts[k + 1]]) == items[k] for k in range(len(items)))
    assert accepted > 400


def test_recovery_matches_coincurve() -> None:
    import coincurve

    for i in range(20):
        raw = sign_tx(keccak256(b"k", bytes([i])), CHAIN_ID, i, TO, legacy=bool(i % 2))
        pub = coincurve.PrivateKey(keccak256(b"k", bytes([i]))).public_key.format(compressed=False)[1:]
        assert decode_tx(raw, CHAIN_ID).sender == keccak256(pub)[12:]
