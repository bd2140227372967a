"""Fuzz: L1 event data into the node's L1 watcher (node/l1watch.py ``L1Watcher._handle`` and
``_decode_submission``: the Rollup's and Registry's logs and the ``submitHeader`` calldata).

In process, no chain: the logs are built as an L1 node would return them (ABI-encoded topics
and data of the real Rollup artifact) for ``L1Message``, ``HeaderAccepted`` (with its
``submitHeader`` transaction, served by a stub ``eth.get_transaction``), ``EnclaveRegistered``,
``EnclaveRevoked``, ``PolicySet`` and ``Frozen``; then mutated (topics dropped, replaced or
added; data and calldata bytes flipped, cut, extended; another transaction sender) or replaced
by random ones. A lying or broken L1 RPC is what would hand these over.

Each asserts: ``_handle`` either takes the log (then it decoded as that event) or refuses it with
``L1DataError`` whose message names the event and the L1 log; nothing else escapes (a web3 /
eth-abi error type, an IndexError...), and a refused log changes nothing the watcher holds
(messages, headers, members, revocations, the freeze).
"""

from __future__ import annotations

import copy
from typing import Any

import eth_abi
from hexbytes import HexBytes
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit._fuzz import examples, mutated
from web3 import Web3

from enclavenet.crypto.hashing import keccak256
from enclavenet.crypto.header import Header
from enclavenet.node.l1watch import L1DataError, L1Watcher, WatchResult

ROLLUP = "0x" + "5e" * 20
ALICE = Web3.to_checksum_address("0x" + "a1" * 20)
ENCLAVE = Web3.to_checksum_address("0x" + "e7" * 20)
TX_HASH = b"\x77" * 32
HEADER = Header(1, bytes(32), 0, b"\x11" * 32, 2, 1, b"\x22" * 32, b"\x33" * 32, b"\x44" * 32, b"\x55" * 32,
                b"\x66" * 32, b"\x77" * 32, b"\x88" * 32)
SIG = (b"\x01" * 32, b"\x02" * 32)


class _Eth:
    def __init__(self) -> None:
        self.txs: dict[bytes, dict[str, Any]] = {}

    def get_transaction(self, h: Any) -> dict[str, Any]:
        tx = self.txs.get(bytes(HexBytes(h)))
        if tx is None:
            raise ValueError(f"transaction {HexBytes(h).hex()} not found")  # web3's TransactionNotFound is a ValueError too
        return tx


class _W3:
    def __init__(self) -> None:
        self.eth = _Eth()


def _watcher() -> L1Watcher:
    w = L1Watcher(Web3(), ROLLUP, ROLLUP)
    w.w3 = _W3()  # type: ignore[assignment]
    return w


W = _watcher()
EVENTS = {e["name"]: e for e in W.rollup.abi if e["type"] == "event"}


def _topic(typ: str, v: Any) -> bytes:
    return eth_abi.encode([typ], [v])


def log_of(name: str, args: dict[str, Any], *, index: int = 0) -> dict[str, Any]:
    ev = EVENTS[name]
    sig = f"{name}({','.join(i['type'] for i in ev['inputs'])})"
    topics = [keccak256(sig.encode())] + [_topic(i["type"], args[i["name"]]) for i in ev["inputs"] if i["indexed"]]
    plain = [i for i in ev["inputs"] if not i["indexed"]]
    data = eth_abi.encode([i["type"] for i in plain], [args[i["name"]] for i in plain])
    return {"address": Web3.to_checksum_address(ROLLUP), "topics": [HexBytes(t) for t in topics], "data": HexBytes(data),
            "blockNumber": 5, "logIndex": index, "transactionIndex": 0, "transactionHash": HexBytes(TX_HASH),
            "blockHash": HexBytes(b"\x99" * 32), "removed": False}


SUBMIT = bytes(HexBytes(W.rollup.functions.submitHeader(HEADER.as_tuple(), [(ALICE, 10**18)], [SIG])._encode_transaction_data()))
VALID: dict[str, dict[str, Any]] = {
    "L1Message": log_of("L1Message", {"index": 0, "sender": ALICE, "kind": 0, "value": 10**18, "l1_block": 5,
                                      "payload": b"\x01\x02"}),
    "HeaderAccepted": log_of("HeaderAccepted", {"height": 1, "header_hash": HEADER.hash()}),
    "EnclaveRegistered": log_of("EnclaveRegistered", {"enclave": ENCLAVE, "tee_type": 1, "measurement": b"\x05" * 32,
                                                      "enc_key_hash": b"\x06" * 32, "expiry": 2**40}),
    "EnclaveRevoked": log_of("EnclaveRevoked", {"enclave": ENCLAVE}),
    "PolicySet": log_of("PolicySet", {"quorum": 2, "min_types": 2}),
    "Frozen": log_of("Frozen", {"by": ALICE, "index": 3, "deadline": 100}),
}
TX = {"input": HexBytes(SUBMIT), "from": ALICE, "hash": HexBytes(TX_HASH)}


def _state(w: L1Watcher) -> tuple[Any, ...]:
    return (repr(sorted(w.messages.items())), repr(sorted(w.headers.items())), repr(sorted(w.members.items())),
            list(w._staged_revocations), w.frozen, w.frozen_block)


def _fresh() -> L1Watcher:
    """W, emptied (building a watcher builds two web3 contracts: too slow per example)."""
    W.messages, W.headers, W.members, W._staged_revocations = {}, {}, {}, []
    W.frozen, W.frozen_block = False, None
    return W


def _handle(lg: dict[str, Any], tx: dict[str, Any] | None) -> tuple[L1Watcher, WatchResult, str | None]:
    w = _fresh()
    w.w3.eth.txs[TX_HASH] = tx if tx is not None else dict(TX)  # type: ignore[attr-defined]
    res = WatchResult()
    before = _state(w)
    try:
        w._handle(lg, res)
    except L1DataError as exc:
        msg = str(exc)
        assert msg, "an empty refusal"
        assert "L1 log" in msg, msg
        assert _state(w) == before, f"a refused log changed the watcher: {msg}"
        assert res == WatchResult(), f"a refused log reported a change: {res}"
        return w, res, msg
    return w, res, None


def test_the_valid_logs_are_taken() -> None:
    for name, lg in VALID.items():
        w, res, err = _handle(lg, None)
        assert err is None, (name, err)
    w, res, _ = _handle(VALID["HeaderAccepted"], None)
    assert res.new_headers == [1] and w.headers[1].header == HEADER and w.headers[1].withdrawals[0].amount == 10**18
    w, res, _ = _handle(VALID["L1Message"], None)
    assert w.messages[0].value == 10**18 and w.messages[0].payload == b"\x01\x02"


@st.composite
def _mutated_log(draw: Any) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    name = draw(st.sampled_from(sorted(VALID)))
    lg = copy.deepcopy(VALID[name])
    tx: dict[str, Any] | None = None
    what = draw(st.sampled_from(["data", "data", "topic", "drop_topic", "add_topic", "calldata", "calldata", "from",
                                 "number"]))
    if what == "data":
        lg["data"] = HexBytes(draw(mutated(bytes(lg["data"]))) if lg["data"] else draw(st.binary(min_size=1, max_size=64)))
    elif what == "topic" and len(lg["topics"]) > 1:
        i = draw(st.integers(1, len(lg["topics"]) - 1))
        lg["topics"][i] = HexBytes(draw(st.one_of(st.binary(min_size=32, max_size=32), mutated(bytes(lg["topics"][i])))))
    elif what == "drop_topic":
        del lg["topics"][draw(st.integers(0, len(lg["topics"]) - 1))]
    elif what == "add_topic":
        lg["topics"].append(HexBytes(draw(st.binary(min_size=32, max_size=32))))
    elif what == "calldata":
        tx = {**TX, "input": HexBytes(draw(mutated(SUBMIT)))}
    elif what == "from":
        tx = {**TX, "from": draw(st.one_of(st.text(max_size=44), st.binary(max_size=21).map(lambda b: "0x" + b.hex())))}
    else:
        lg["blockNumber"] = draw(st.one_of(st.integers(-5, 2**70), st.none(), st.text(max_size=4)))
    return name, lg, tx


@settings(max_examples=examples(200))
@given(_mutated_log())
def test_mutated_logs_are_taken_as_decoded_or_refused_cleanly(ntx: tuple[str, dict[str, Any], dict[str, Any] | None]) -> None:
    name, lg, tx = ntx
    w, res, err = _handle(lg, tx)
    if err is not None:
        return
    # taken: then as the event its topic says, with the values it decodes to (no partial entry)
    if name == "HeaderAccepted" and res.new_headers:
        acc = w.headers[res.new_headers[0]]
        assert acc.header.hash() == acc.hash, "a header that does not hash to the accepted hash was taken"


@settings(max_examples=examples(100))
@given(
    st.lists(st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40), st.sampled_from(
        [bytes(HexBytes(VALID[n]["topics"][0])) for n in sorted(VALID)])).map(HexBytes), max_size=5),
    st.binary(max_size=300).map(HexBytes),
)
def test_random_logs_are_ignored_or_refused_cleanly(topics: list[HexBytes], data: HexBytes) -> None:
    lg = {**VALID["L1Message"], "topics": topics, "data": data}
    _handle(lg, None)
