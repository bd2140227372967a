"""wrap() end to end in one process: plain web3.py code against the real enclave program.

The "node" here is the thinnest possible host (a web3 provider, no network): it keeps sealed
envelopes it cannot read, hands them to a one-member committee's real enclave program
(``InProcessEnclave``) as a batch, finalises the header with the member's own signature and
serves the sealed receipts -- the node API of docs/NODE_API.md, nothing more. Everything
confidential (sealing, signing, execution, receipts) is the real code. The multi-process
devnet runs the same flows in tests/integration/test_client_devnet.py.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import examples
import pytest
from eth_account import Account
from examples.common import artifact
from web3 import EthereumTesterProvider, Web3
from web3.exceptions import ContractLogicError
from web3.providers.base import BaseProvider

from enclavenet.client import (
    EnclaveNetError,
    EnvelopeRefused,
    NodeUnavailable,
    ReceiptUnreadable,
    TransactionRefused,
    TransactionReverted,
    check_receipt,
    client_of,
    wrap,
)
from enclavenet.crypto.envelope import Envelope
from enclavenet.crypto.hashing import keccak256
from enclavenet.enclave.harness import (
    DEFAULT_ROLLUP,
    Member,
    batch_request,
    form_committee,
    program_config,
)
from enclavenet.tee.boundary import InProcessEnclave
from enclavenet.tee.platform import SimulatedVendor

CHAIN = 4242
ALICE = Account.from_key(b"\x0a" * 32)
BOB = Account.from_key(b"\x0b" * 32)


class EnclaveProvider(BaseProvider):
    """A web3 provider that is a one-member EnclaveNet node driving the real enclave program."""

    def __init__(self) -> None:
        super().__init__()
        vendor = SimulatedVendor.generate("sgx")
        cfg = program_config([vendor], chain_id=CHAIN, min_quorum=1, min_types=1)  # a one-member committee
        self.member = Member(InProcessEnclave(vendor.new_platform(), config=cfg))
        self.epoch_pub = form_committee([self.member], quorum=1, min_types=1)
        self.height = 0
        self.prev_hash = b"\x00" * 32
        self.pending: list[bytes] = []
        self.messages: list[list[Any]] = []  # L1 deposits for the next batch
        self.msg_count = 0
        self.l1_block = 0
        self.receipts: dict[str, dict[str, Any]] = {}
        self.seen: list[tuple[str, Any]] = []  # everything that crossed the "network"
        self._ids = itertools.count(1)

    def close(self) -> None:
        self.member.close()

    def deposit(self, address: str, value: int) -> None:
        """An L1 deposit, as the Rollup's message chain would deliver it (one L1 block each)."""
        self.l1_block += 1
        self.messages.append([self.msg_count, 1, address, value, self.l1_block, b""])
        self.msg_count += 1

    def _batch(self) -> None:
        if not self.pending and not self.messages:
            return
        req = batch_request(
            self.height + 1, self.prev_hash, envelopes=self.pending, messages=self.messages,
            l1_block=self.l1_block, timestamp=1_700_000_000 + self.height,
        )
        out = self.member.call("execute_batch", **req)
        self.member.call("accept_header", header=out["header"], signatures=[out["signature"]])
        self.height += 1
        self.prev_hash = out["header_hash"]
        for rid, entry in out["receipts"].items():
            self.receipts["0x" + rid.hex()] = {
                "receiptId": "0x" + rid.hex(),
                "height": self.height,
                "headerHash": "0x" + out["header_hash"].hex(),
                "l1TxHash": None,
                "encryptedReceipt": "0x" + entry.hex(),
            }
        self.pending = []
        self.messages = []

    def make_request(self, method: Any, params: Any) -> Any:
        self.seen.append((method, params))
        rid = next(self._ids)
        try:
            result = self._answer(method, list(params or []))
        except _RpcError as e:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": e.code, "message": str(e)}}
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    def _answer(self, method: str, params: list[Any]) -> Any:
        if method == "eth_chainId":
            return hex(CHAIN)
        if method in ("eth_gasPrice", "eth_maxPriorityFeePerGas"):
            return "0x0"
        if method == "eth_blockNumber":
            return hex(self.height)
        if method == "enclavenet_epochKey":
            return {"epoch": 0, "epochKey": "0x" + self.epoch_pub.hex(), "height": self.height, "headerHash": "0x" + self.prev_hash.hex()}
        if method == "enclavenet_contracts":  # the deployment signed views are bound to
            return {"rollup": DEFAULT_ROLLUP, "l1ChainId": hex(31337)}
        if method == "enclavenet_status":
            return {"height": self.height, "epoch": 0}
        if method == "eth_sendRawTransaction":
            raw = bytes.fromhex(params[0][2:])
            try:
                env = Envelope.decode(raw)
            except ValueError as exc:
                raise _RpcError(-32602, f"malformed envelope: {exc}") from None
            if env.epoch != 0:
                raise _RpcError(-32010, f"unknown epoch {env.epoch}")
            self.pending.append(raw)
            return "0x" + keccak256(raw).hex()
        if method == "eth_getTransactionReceipt":
            self._batch()
            return self.receipts.get(params[0])
        if method in ("enclavenet_call", "enclavenet_estimateGas"):
            self._batch()
            ecall = "view_call" if method == "enclavenet_call" else "estimate_gas"
            res = self.member.call(ecall, envelope=bytes.fromhex(params[0][2:]))
            return {"encryptedResult": "0x" + res["result"].hex()}
        raise _RpcError(-32601, f"unknown method {method!r}")


class _RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@pytest.fixture()
def node() -> Iterator[EnclaveProvider]:
    p = EnclaveProvider()
    yield p
    p.close()


def _wrapped(node: EnclaveProvider, *accounts: Any) -> Web3:
    return wrap(Web3(node), list(accounts) or [ALICE])


def test_deploy_transact_call_and_events_as_in_plain_web3(node: EnclaveProvider) -> None:
    w3 = _wrapped(node, ALICE, BOB)
    art = artifact("token_vyper", "Token")
    factory = w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    h = factory.constructor("T", "T", 18, 1000).transact()
    rc = w3.eth.wait_for_transaction_receipt(h, timeout=10)
    assert rc.status == 1 and rc.contractAddress is not None and rc.blockNumber == 1
    token = w3.eth.contract(address=rc.contractAddress, abi=art.abi)
    rc2 = w3.eth.wait_for_transaction_receipt(token.functions.transfer(BOB.address, 300).transact(), timeout=10)
    (ev,) = token.events.Transfer().process_receipt(rc2)
    assert ev.args.receiver == BOB.address and ev.args.value == 300 and ev.args.sender == ALICE.address
    assert rc2.gasUsed > 21_000 and rc2["from"] == ALICE.address and rc2.to == token.address
    assert token.functions.balanceOf(ALICE.address).call() == 700
    assert token.functions.balanceOf(BOB.address).call({"from": BOB.address}) == 300
    assert token.functions.transfer(BOB.address, 1).estimate_gas() > 21_000
    c = client_of(w3)
    assert c.nonce_source[ALICE.address] == "enclave" and w3.eth.get_transaction_count(ALICE.address) == 2
    # bob sends too: the nonce of a fresh account is read from the enclave (0)
    token.functions.transfer(ALICE.address, 5).transact({"from": BOB.address})
    assert token.functions.balanceOf(BOB.address).call({"from": BOB.address}) == 295


def test_reverts_carry_the_decrypted_reason(node: EnclaveProvider) -> None:
    w3 = _wrapped(node, ALICE, BOB)
    token = artifact("token_vyper", "Token").deploy(w3, "T", "T", 18, 1000, sender=ALICE.address)
    with pytest.raises(TransactionReverted) as ei:
        token.functions.transfer(ALICE.address, 10**9).transact({"from": BOB.address})
    assert isinstance(ei.value, ContractLogicError) and ei.value.reason
    with pytest.raises(ContractLogicError):
        token.functions.transferFrom(ALICE.address, BOB.address, 1).call({"from": BOB.address})
    # a transaction sent with explicit gas is mined with status 0; check_receipt raises the reason
    h = token.functions.transfer(ALICE.address, 10**9).transact({"from": BOB.address, "gas": 200_000})
    rc = w3.eth.wait_for_transaction_receipt(h, timeout=10)
    assert rc.status == 0 and rc.revertReason
    with pytest.raises(TransactionReverted, match=rc.revertReason):
        check_receipt(rc)


def test_msg_sender_is_proved_and_cannot_be_spoofed(node: EnclaveProvider) -> None:
    w3a = _wrapped(node, ALICE)
    art = artifact("token_solidity", "PrivateToken")
    token = art.deploy(w3a, "P", "P", 1000, sender=ALICE.address)
    assert token.functions.balanceOf(ALICE.address).call() == 1000
    # bob, with his own wrapped Web3, cannot read alice's balance: the call is signed as bob
    w3b = _wrapped(node, BOB)
    tb = w3b.eth.contract(address=token.address, abi=art.abi)
    with pytest.raises(TransactionReverted):
        tb.functions.balanceOf(ALICE.address).call()
    # and cannot claim to be alice: there is no key to sign as her
    with pytest.raises(Exception, match="holds no key"):
        tb.functions.balanceOf(ALICE.address).call({"from": ALICE.address})
    # nor read alice's receipt
    h = token.functions.transfer(BOB.address, 1).transact()
    w3a.eth.wait_for_transaction_receipt(h, timeout=10)
    with pytest.raises(ReceiptUnreadable, match="only its sender"):
        w3b.eth.get_transaction_receipt(h)


def test_refused_transaction_and_nonce_healing(node: EnclaveProvider) -> None:
    w3 = _wrapped(node, ALICE)
    token = artifact("token_vyper", "Token").deploy(w3, "T", "T", 18, 1000, sender=ALICE.address)
    c = client_of(w3)
    c.set_nonce(ALICE.address, 0)  # wrong on purpose: nonce 0 is used
    h = token.functions.transfer(BOB.address, 1).transact({"gas": 100_000})
    with pytest.raises(TransactionRefused, match="already used"):
        w3.eth.wait_for_transaction_receipt(h, timeout=10)
    # the client took the enclave's expected nonce from the refusal; the next one goes through
    h = token.functions.transfer(BOB.address, 1).transact()
    assert w3.eth.wait_for_transaction_receipt(h, timeout=10).status == 1


def test_balances_and_value_transfers_need_funds(node: EnclaveProvider) -> None:
    w3 = _wrapped(node, ALICE)
    assert w3.eth.get_balance(ALICE.address) == 0
    with pytest.raises(TransactionRefused, match="insufficient funds"):
        h = w3.eth.send_transaction({"to": BOB.address, "value": 1, "gas": 21_000})
        w3.eth.wait_for_transaction_receipt(h, timeout=10)
    node.deposit(ALICE.address, 10_000)
    node._batch()
    assert w3.eth.get_balance(ALICE.address) == 10_000
    h = w3.eth.send_transaction({"to": BOB.address, "value": 2_500})
    assert w3.eth.wait_for_transaction_receipt(h, timeout=10).status == 1
    assert w3.eth.get_balance(BOB.address) == 2_500 and w3.eth.get_balance(ALICE.address) == 7_500


@pytest.mark.parametrize("name", sorted(examples.EXAMPLES))
def test_every_example_matches_plain_l1_execution(name: str, node: EnclaveProvider) -> None:
    """Each example through wrap() against the real enclave program = the same on the plain L1.

    (The multi-process devnet version: tests/integration/test_examples_devnet.py.)
    """
    plain_w3 = Web3(EthereumTesterProvider())
    expected = examples.load(name).run(plain_w3, plain_w3.eth.accounts)
    # the same keys as eth-tester's accounts, so addresses in the results agree
    users = [Account.from_key(i.to_bytes(32, "big")) for i in range(1, 6)]
    assert [u.address for u in users] == plain_w3.eth.accounts[:5]
    for u in users:
        node.deposit(u.address, 10**18)
    w3 = wrap(Web3(node), users)
    got = examples.load(name).run(w3, [u.address for u in users])
    assert got == expected


def test_node_errors(node: EnclaveProvider) -> None:
    w3 = _wrapped(node, ALICE)
    with pytest.raises(EnclaveNetError, match="not a signed transaction"):
        w3.eth.send_raw_transaction(b"\x01\x02")  # refused before anything is sealed or sent
    assert not any(m == "eth_sendRawTransaction" for m, _ in node.seen)
    # a transaction the user signed is sealed and sent like any other
    raw = Account.sign_transaction(
        {"chainId": CHAIN, "nonce": 0, "to": BOB.address, "value": 0, "gas": 21_000, "gasPrice": 0}, ALICE.key
    ).raw_transaction
    h = w3.eth.send_raw_transaction(raw)
    assert w3.eth.wait_for_transaction_receipt(h, timeout=10).status == 1
    with pytest.raises(EnvelopeRefused, match="unknown epoch"):
        client_of(w3).rpc(node.make_request, "eth_sendRawTransaction", ["0x" + Envelope(9, b"\x01" * 32, b"\x02" * 12, b"\x03" * 20).encode().hex()])
    down = wrap(Web3(Web3.HTTPProvider("http://127.0.0.1:9", request_kwargs={"timeout": 2})), ALICE)
    with pytest.raises(NodeUnavailable, match="unreachable"):
        down.eth.call({"to": BOB.address, "data": "0x"})


def test_only_ciphertext_crosses(node: EnclaveProvider) -> None:
    w3 = _wrapped(node, ALICE)
    token = artifact("token_vyper", "Token").deploy(w3, "T", "T", 18, 10**12, sender=ALICE.address)
    node.seen.clear()
    secret_amount = 987_654_321
    fn = token.functions.transfer(BOB.address, secret_amount)
    selector = bytes.fromhex(fn._encode_transaction_data()[2:10])
    w3.eth.wait_for_transaction_receipt(fn.transact(), timeout=10)
    token.functions.balanceOf(BOB.address).call()
    wire = json.dumps(node.seen, default=str).lower()  # every request the node received, as text
    assert "eth_sendrawtransaction" in wire and "enclavenet_call" in wire
    needles = (selector.hex(), token.address[2:].lower(), BOB.address[2:].lower(), secret_amount.to_bytes(32, "big").hex()[-10:])
    # the needles are what a plain signed transaction would show ...
    plain = Account.sign_transaction(
        {"chainId": CHAIN, "nonce": 1, "to": token.address, "data": fn._encode_transaction_data(), "gas": 90_000, "gasPrice": 0}, ALICE.key
    ).raw_transaction.hex()
    assert all(n in plain for n in needles)
    # ... and none of them crossed
    for needle in needles:
        assert needle not in wire, needle
