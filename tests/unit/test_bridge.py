"""The enclave's side of the L1 bridge (enclave/bridge.py, crypto/bridge.py): ERC20 deposits
mint the canonical token only on a command the configured Bridge submitted, L1 -> contract
calls run from the aliased sender, and the outbox puts a successful transaction's L2 -> L1
messages into the batch data under a root the L1 Bridge reads from the meta. Members of
different TEE types agree on such a batch bit for bit."""

from __future__ import annotations

from functools import cache
from typing import Any

import cbor2
import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account import Account
from tests.unit.test_program import CHAIN, L1_CHAIN, VENDORS, Net, dep, receipt_of

from enclavenet.crypto.bridge import (
    BRIDGE_CALLER,
    COMMAND_MAGIC,
    OUTBOX_ADDRESS,
    PROXY_INITCODE,
    PROXY_INITCODE_HASH,
    TOKEN_FACTORY_ADDRESS,
    TOKEN_IMPL_ADDRESS,
    BridgeFormatError,
    L2ToL1Message,
    encode_call,
    encode_deposit,
    l1_alias,
    l2_token_address,
    message_proof,
    messages_root,
    parse_command,
    root_of_meta,
    withdrawal_data,
)
from enclavenet.crypto.dap import verify_piece
from enclavenet.crypto.hashing import keccak256, to_checksum
from enclavenet.crypto.header import Header
from enclavenet.crypto.merkle import merkle_verify_at
from enclavenet.enclave.batch import ERROR_ENTRY_PREFIX, batch_data_items, batch_data_roots
from enclavenet.enclave.bridge import BRIDGE_ENTRY, OUTBOX_CODE, command_call
from enclavenet.enclave.executor import BlockInfo, Executor
from enclavenet.enclave.harness import program_config
from enclavenet.enclave.tx import InboxCall

BRIDGE = "0x" + "b7" * 20
L1_TOKEN = "0x" + "e2" * 20
CFG = {**program_config(VENDORS, chain_id=CHAIN, l1_chain_id=L1_CHAIN), "bridge": BRIDGE}


def sel(sig: str) -> bytes:
    return keccak256(sig.encode())[:4]


# An EnclaveNet contract an L1 call can reach (records its caller); `ping` sends a message to L1
# (`payload` is the L1 calldata). tests/integration/test_examples_devnet.py uses it too.
L2_CONTRACT = """
# pragma version ^0.4.0
last_caller: public(address)
last_value: public(uint256)

@external
def poke(v: uint256):
    self.last_caller = msg.sender
    self.last_value = v

@external
def ping(target: address, payload: Bytes[256]):
    raw_call(0x00000000000000000000000000000000000057d5, concat(convert(target, bytes20), payload))

@external
def ping_then_fail(target: address):
    raw_call(0x00000000000000000000000000000000000057d5, concat(convert(target, bytes20), b"x"))
    raise "no"
"""


@cache
def l1_receiver_code() -> bytes:
    import vyper

    return bytes.fromhex(vyper.compile_code(L2_CONTRACT, output_formats=["bytecode"])["bytecode"][2:])


class BridgeNet(Net):
    """sgx, sev-snp and tdx members whose config names the Bridge."""

    def __init__(self) -> None:
        super().__init__(cfg=CFG)


def token_call(net: Any, acct: Any, sig: str, types: list[str], args: list[Any], gas: int = 300_000) -> Any:
    return net.env(acct, to_checksum(l2_token_address(L1_TOKEN)), data=sel(sig) + abi_encode(types, args), gas=gas)


def test_formats_round_trip_and_refuse_garbage() -> None:
    d = parse_command(encode_deposit(L1_TOKEN, BRIDGE, BRIDGE, 5, 6))
    assert (d.amount, d.decimals, d.token) == (5, 6, bytes.fromhex("e2" * 20))
    c = parse_command(encode_call(BRIDGE, L1_TOKEN, 100_000, b"\x01\x02"))
    assert (c.gas_limit, c.data) == (100_000, b"\x01\x02")
    for bad in (b"", COMMAND_MAGIC, COMMAND_MAGIC + (7).to_bytes(32, "big"),
                encode_deposit(L1_TOKEN, BRIDGE, BRIDGE, 5, 6)[:-1],
                encode_call(BRIDGE, L1_TOKEN, 1, b"") + b"\x00" * 32):
        with pytest.raises(BridgeFormatError):
            parse_command(bad)
    m = L2ToL1Message(3, 1, bytes(20), bytes(19) + b"\x01", b"hi")
    assert L2ToL1Message.decode(m.encode()) == m
    with pytest.raises(BridgeFormatError):
        L2ToL1Message.decode(m.encode() + b"\x00")
    # the alias wraps around 2**160
    assert l1_alias("0x" + "ff" * 20) == (0x1111000000000000000000000000000000001110).to_bytes(20, "big")


def test_the_factory_creates_the_token_at_the_address_l1_computes() -> None:
    """The L1 Bridge derives the canonical token from the factory, the L1 token and the proxy
    init code; the factory asserts its CREATE2 result equals that address."""
    assert PROXY_INITCODE_HASH == keccak256(PROXY_INITCODE) and TOKEN_IMPL_ADDRESS in PROXY_INITCODE
    ex = Executor(CHAIN)
    ex.begin_batch(BlockInfo(1, 1000))
    alice = bytes.fromhex("a1" * 20)
    cmd = parse_command(encode_deposit(L1_TOKEN, alice, alice, 10**18, 6))
    r = ex.execute(command_call(cmd, bytes.fromhex(BRIDGE[2:]), keccak256(b"d"), CHAIN, 30_000_000),
                   bridge_command=True)
    assert r.success, r.error
    ex.end_batch()
    token = l2_token_address(L1_TOKEN)
    assert ex.code_at(token), "no token at the address the L1 Bridge computes"
    out = ex.call(to_checksum(alice), token, sel("decimals()"), gas=100_000)
    assert int.from_bytes(out.output, "big") == 6
    # a user cannot mint: only the factory (only the bridge system caller reaches it)
    ex.begin_batch(BlockInfo(2, 1001))
    forged = InboxCall(alice, TOKEN_FACTORY_ADDRESS, 0, command_call(cmd, alice, b"x", CHAIN, 1).data, 300_000,
                       CHAIN, keccak256(b"f"))
    assert not ex.execute(forged).success
    mint = InboxCall(alice, token, 0, sel("mint(address,uint256)") + abi_encode(["address", "uint256"],
                     [to_checksum(alice), 1]), 300_000, CHAIN, keccak256(b"m"))
    assert not ex.execute(mint).success
    with pytest.raises(Exception, match="system caller"):
        ex.execute(InboxCall(BRIDGE_CALLER, TOKEN_FACTORY_ADDRESS, 0, forged.data, 300_000, CHAIN, b"z"))
    ex.end_batch()
    bal = ex.call(to_checksum(alice), token, sel("balanceOf(address)") + abi_encode(["address"], [to_checksum(alice)]),
                  gas=100_000)
    assert int.from_bytes(bal.output, "big") == 10**18


def test_outbox_code_refuses_value_and_bad_lengths_and_logs_the_caller() -> None:
    ex = Executor(CHAIN)
    ex.begin_batch(BlockInfo(1, 1000))
    user = bytes.fromhex("c3" * 20)
    ex.credit(user, 10**18)

    def call(data: bytes, value: int = 0) -> Any:
        return ex.execute(InboxCall(user, OUTBOX_ADDRESS, value, data, 200_000, CHAIN, keccak256(data)))

    assert not call(b"\x01" * 19).success
    assert not call(b"\x01" * (20 + 4097)).success
    assert not call(b"\x01" * 20, value=1).success
    ok = call(b"\x02" * 20 + b"payload")
    assert ok.success and len(ok.logs) == 1
    commit = ex.end_batch()
    assert commit.messages == ((user, b"\x02" * 20, b"payload"),)
    assert ex.code_at(OUTBOX_ADDRESS) == OUTBOX_CODE


def run_deposit(net: BridgeNet, alice: Any, sender: str) -> tuple[dict[str, Any], dict[str, Any]]:
    payload = encode_deposit(L1_TOKEN, alice.address, alice.address, 10**18, 18)
    return net.run(net.members[0], 1, bytes(32), l1_block=3,
                   messages=[dep(0, alice.address, 10**18, 2), dep(1, sender, 0, 2, payload)])


def token_balance(net: BridgeNet, who: Any, height: int, prev: bytes) -> tuple[int, dict[str, Any]]:
    """``who``'s canonical-token balance, read by a transaction of ``who`` at ``height`` (through
    the ecall interface: the receipt's output)."""
    q = token_call(net, who, "balanceOf(address)", ["address"], [who.address], gas=100_000)
    _, out = net.run(net.members[0], height, prev, l1_block=8, envelopes=[q.envelope.encode()])
    r = receipt_of(out, q)
    assert r.success, r.error
    return int.from_bytes(r.output, "big"), out


def test_only_the_configured_bridge_mints() -> None:
    alice = Account.create()
    # the same command bytes submitted by someone else: an envelope that does not open
    net = BridgeNet()
    _, out = run_deposit(net, alice, alice.address)
    items = batch_data_items(out["batch_data"])
    assert BRIDGE_ENTRY not in items and any(i.startswith(b"EnclaveNet.error:") for i in items)
    assert token_balance(net, alice, 2, out["header_hash"])[0] == 0
    # from the Bridge: minted, with a constant public entry
    net = BridgeNet()
    req, out = run_deposit(net, alice, BRIDGE)
    assert BRIDGE_ENTRY in batch_data_items(out["batch_data"])
    assert token_balance(net, alice, 2, out["header_hash"])[0] == 10**18
    for m in net.members[1:]:
        assert m.call("verify_batch", header=out["header"], **req)["header_hash"] == out["header_hash"]


def test_l1_call_runs_from_the_alias_and_messages_reach_the_batch_data() -> None:
    net = BridgeNet()
    alice, bob = Account.create(), Account.create()
    deploy = net.env(alice, None, data=l1_receiver_code(), gas=1_000_000)
    payload = encode_deposit(L1_TOKEN, alice.address, alice.address, 10**18, 18)
    req, out = net.run(net.members[0], 1, bytes(32), l1_block=3,
                       messages=[dep(0, alice.address, 10**18, 2), dep(1, BRIDGE, 0, 2, payload)],
                       envelopes=[deploy.envelope.encode()])
    target = receipt_of(out, deploy).contract_address
    assert target is not None
    for m in net.members[1:]:
        m.call("verify_batch", header=out["header"], **req)
    l1_contract = "0x" + "5c" * 20
    poke = encode_call(l1_contract, target, 200_000, sel("poke(uint256)") + abi_encode(["uint256"], [7]))
    withdraw = token_call(net, alice, "withdraw(address,uint256)", ["address", "uint256"], [bob.address, 4 * 10**17])
    ping = net.env(alice, to_checksum(target), gas=300_000,
                   data=sel("ping(address,bytes)") + abi_encode(["address", "bytes"], [l1_contract, b"hello L1"]))
    failed = net.env(alice, to_checksum(target), gas=300_000,
                     data=sel("ping_then_fail(address)") + abi_encode(["address"], [l1_contract]))
    req2, out2 = net.run(net.members[0], 2, out["header_hash"], l1_block=5,
                         messages=[dep(2, BRIDGE, 0, 4, poke)],
                         envelopes=[withdraw.envelope.encode(), ping.envelope.encode(), failed.envelope.encode()])
    assert receipt_of(out2, withdraw).success and receipt_of(out2, ping).success
    assert not receipt_of(out2, failed).success
    # the batch data ends with the two messages (not the reverted one), under the meta's root
    header = Header.decode(out2["header"])
    items = batch_data_items(out2["batch_data"])
    meta = cbor2.loads(items[0])
    assert meta["n_messages"] == 2
    msgs = [L2ToL1Message.decode(x) for x in items[-2:]]
    assert msgs[0] == L2ToL1Message(2, 0, l2_token_address(L1_TOKEN), bytes.fromhex(BRIDGE[2:]),
                                    withdrawal_data(L1_TOKEN, bob.address, 4 * 10**17))
    assert msgs[1] == L2ToL1Message(2, 1, target, bytes.fromhex("5c" * 20), b"hello L1")
    root = root_of_meta(items[0])
    assert root == messages_root(items[-2:]) == meta["l2_to_l1_messages_root"]
    # what the L1 Bridge checks: the meta is leaf 0 of the data commitment, each item under the root
    assert merkle_verify_at(header.data_commitment, keccak256(items[0]), 0, len(items),
                            _siblings(items, 0))
    assert batch_data_roots(items)[2] == header.data_commitment
    for k in range(2):
        path, sibs = message_proof(items[-2:], k)
        assert verify_piece(root, items[-2 + k], path, sibs)
    # members of the two other TEE types re-execute to the identical header
    for m in net.members[1:]:
        assert m.call("verify_batch", header=out2["header"], **req2)["header_hash"] == out2["header_hash"]
    assert abi_decode(["address", "address", "uint256"], msgs[0].data)[2] == 4 * 10**17
    look = net.env(alice, to_checksum(target), data=sel("last_caller()"), gas=100_000)
    look2 = net.env(alice, to_checksum(target), data=sel("last_value()"), gas=100_000)
    q = token_call(net, alice, "balanceOf(address)", ["address"], [alice.address], gas=100_000)
    _, out3 = net.run(net.members[0], 3, out2["header_hash"], l1_block=8,
                      envelopes=[look.envelope.encode(), look2.envelope.encode(), q.envelope.encode()])
    assert receipt_of(out3, look).output[12:] == l1_alias(l1_contract)
    assert int.from_bytes(receipt_of(out3, look2).output, "big") == 7
    assert int.from_bytes(receipt_of(out3, q).output, "big") == 6 * 10**17


def _siblings(items: list[bytes], index: int) -> list[bytes]:
    from enclavenet.crypto.merkle import merkle_proof

    return [s for s, _ in merkle_proof([keccak256(x) for x in items], index)]


def test_a_batch_without_messages_has_no_root() -> None:
    net = BridgeNet()
    alice = Account.create()
    _, out = run_deposit(net, alice, BRIDGE)
    meta = batch_data_items(out["batch_data"])[0]
    assert root_of_meta(meta) is None and "n_messages" not in cbor2.loads(meta)


def test_a_malformed_command_from_the_bridge_is_an_error_entry_and_changes_nothing() -> None:
    net = BridgeNet()
    alice = Account.create()
    bad = COMMAND_MAGIC + (1).to_bytes(32, "big") + b"\x00" * 31  # a deposit cut short
    _, out = net.run(net.members[0], 1, bytes(32), l1_block=3,
                     messages=[dep(0, alice.address, 10**18, 2), dep(1, BRIDGE, 0, 2, bad)])
    assert out["receipts"][keccak256(bad)] == ERROR_ENTRY_PREFIX + b"bridge"
    assert token_balance(net, alice, 2, out["header_hash"])[0] == 0


def test_a_bridge_entry_does_not_say_whether_the_call_succeeded() -> None:
    """The command is public (an L1 transaction); its outcome inside is not: a call that reverts
    and one that succeeds leave the same batch data entry (the leakage table's bridge row)."""
    net = BridgeNet()
    alice = Account.create()
    deploy = net.env(alice, None, data=l1_receiver_code(), gas=1_000_000)
    _, out = net.run(net.members[0], 1, bytes(32), l1_block=3, envelopes=[deploy.envelope.encode()])
    target = receipt_of(out, deploy).contract_address
    assert target is not None
    ok = encode_call(BRIDGE, target, 200_000, sel("poke(uint256)") + abi_encode(["uint256"], [1]))
    bad = encode_call(BRIDGE, target, 200_000, sel("ping_then_fail(address)") + abi_encode(["address"], [BRIDGE]))
    _, out2 = net.run(net.members[0], 2, out["header_hash"], l1_block=5,
                      messages=[dep(0, BRIDGE, 0, 4, ok), dep(1, BRIDGE, 0, 4, bad)])
    assert out2["receipts"][keccak256(ok)] == out2["receipts"][keccak256(bad)] == BRIDGE_ENTRY
    look = net.env(alice, to_checksum(target), data=sel("last_value()"), gas=100_000)
    _, out3 = net.run(net.members[0], 3, out2["header_hash"], l1_block=8, envelopes=[look.envelope.encode()])
    assert int.from_bytes(receipt_of(out3, look).output, "big") == 1  # the first ran, the second reverted
    assert "n_messages" not in cbor2.loads(batch_data_items(out2["batch_data"])[0])  # the reverted ping sent none
