"""The L1 Bridge (contracts/Bridge.vy) on the embedded L1: ERC20 deposits and L1 -> L2 calls as
bridge commands in the Rollup's inbox, and L2 -> L1 messages relayed against accepted headers."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD

from enclavenet.chain import EmbeddedL1, TxReverted
from enclavenet.client.bridge import RelayArgs, RelayError, batch_messages, relay, relay_args
from enclavenet.contracts import deploy_contracts
from enclavenet.contracts.simulate import SimEnclave, SimPlatform, sign_qc, simulated_batch
from enclavenet.crypto import bridge as fmt
from enclavenet.crypto.bridge import (
    Erc20Deposit,
    L1Call,
    L2ToL1Message,
    encode_call,
    encode_deposit,
    l2_token_address,
    parse_command,
    withdrawal_data,
)
from enclavenet.crypto.hashing import address_bytes, to_checksum
from enclavenet.crypto.header import EMPTY_WITHDRAWALS_HASH, GENESIS_PREV_HASH, Header

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "contracts"
BRIDGE_SOURCE = Path(__file__).resolve().parents[2] / "src" / "enclavenet" / "contracts" / "Bridge.vy"


@cache
def _compiled(name: str) -> tuple[Any, str]:
    import vyper

    out = vyper.compile_code((FIXTURES / f"{name}.vy").read_text(), output_formats=["abi", "bytecode"])
    return out["abi"], out["bytecode"]


class Env:
    """A Rollup (1-member committee) with its Bridge; headers accepted with a simulated QC."""

    def __init__(self, l1: EmbeddedL1) -> None:
        self.l1 = l1
        self.owner, self.user, self.relayer = l1.sender(0), l1.sender(1), l1.sender(2)
        platform, m = SimPlatform(1), os.urandom(32)
        dep = deploy_contracts(self.owner, self.owner.address, 1, 1, platform_roots={1: platform.root_address},
                               measurements={1: [m]}, bridge=True)
        assert dep.bridge is not None
        self.rollup, self.bridge = dep.rollup, dep.bridge
        self.member = SimEnclave(1)
        self.owner.transact(self.rollup.functions.register(*platform.quote(self.member, m, l1.timestamp() + 86_400).args()))
        self.prev = GENESIS_PREV_HASH

    def deploy(self, name: str, *args: Any) -> Contract:
        abi, bytecode = _compiled(name)
        return self.l1.w3.eth.contract(address=Web3.to_checksum_address(self.owner.deploy(abi, bytecode, *args)), abi=abi)

    def token(self, decimals: int = 6, fee_bps: int = 0, *, fund: int = 10**9) -> Contract:
        t = self.deploy("TestToken", decimals, fee_bps)
        self.owner.transact(t.functions.mint(self.user.address, fund))
        self.user.transact(t.functions.approve(self.bridge.address, 2**256 - 1))
        return t

    def deposit(self, token: Contract, amount: int, to: str | None = None) -> Any:
        return self.user.transact(self.bridge.functions.depositERC20(token.address, to or self.user.address, amount))

    def accept(self, specs: Sequence[tuple[bytes | str, bytes | str, bytes]] = ()) -> tuple[Header, bytes]:
        """Accept the next header; its batch carries messages (sender, target, data) in order."""
        f = self.rollup.functions
        height = int(f.lastHeight().call()) + 1
        items = [L2ToL1Message(height, i, address_bytes(s), address_bytes(t), d).encode()
                 for i, (s, t, d) in enumerate(specs)]
        batch_data, dc = simulated_batch(height, items, envelopes=[os.urandom(120)],
                                         entries=[os.urandom(80), os.urandom(80)], prev_hash=self.prev)
        h = Header(
            height=height, prev_hash=self.prev, epoch=1, epoch_key=os.urandom(32),
            l1_block=self.l1.block_number() - 1, msg_count=int(f.msgCount().call()),
            msg_acc=bytes(f.msgAcc().call()), tx_root=os.urandom(32), receipts_root=os.urandom(32),
            state_root=os.urandom(32), balances_root=os.urandom(32), withdrawals_hash=EMPTY_WITHDRAWALS_HASH,
            data_commitment=dc,
        )
        sigs = sign_qc(h, [self.member], self.l1.chain_id, self.rollup.address)
        self.owner.transact(f.submitHeader(h.as_tuple(), [], sigs))
        self.prev = h.hash()
        return h, batch_data

    def relay(self, args: RelayArgs | tuple[Any, ...]) -> Any:
        if isinstance(args, RelayArgs):
            return relay(self.bridge, self.relayer, args)
        return self.relayer.transact(self.bridge.functions.relayMessage(*args))

    def l1_messages(self, receipt: Any) -> list[Any]:
        return [e.args for e in self.rollup.events.L1Message().process_receipt(receipt, errors=DISCARD)]


@pytest.fixture(scope="module")
def l1() -> Iterator[EmbeddedL1]:
    with EmbeddedL1() as chain:
        yield chain


@pytest.fixture
def env(l1: EmbeddedL1) -> Env:
    return Env(l1)


def _constant(name: str) -> str:
    m = re.search(rf"^{name}: constant\([^)]*\) = (\S+)", BRIDGE_SOURCE.read_text(), re.M)
    assert m, name
    return m.group(1)


def test_the_contracts_constants_are_crypto_bridges() -> None:
    assert bytes.fromhex(_constant("PROXY_INITCODE_HASH")[2:]) == fmt.PROXY_INITCODE_HASH
    assert bytes.fromhex(_constant("COMMAND_MAGIC")[2:]) == fmt.COMMAND_MAGIC
    assert bytes.fromhex(_constant("TOKEN_FACTORY")[2:]) == fmt.TOKEN_FACTORY_ADDRESS
    assert bytes.fromhex(_constant("META_ROOT_PREFIX")[2:]) == fmt.META_ROOT_PREFIX
    assert int(_constant("META_SUFFIX_LEN")) == fmt.META_SUFFIX_LEN
    assert int(_constant("MAX_DATA")) == fmt.MAX_CALL_DATA == fmt.MAX_MESSAGE_DATA
    assert _constant("KIND_ERC20_DEPOSIT") == str(fmt.KIND_ERC20_DEPOSIT) and _constant("KIND_CALL") == str(fmt.KIND_CALL)


def test_l2_token_address_matches_the_contract(env: Env) -> None:
    for _ in range(3):
        tok = to_checksum(os.urandom(20))
        assert address_bytes(env.bridge.functions.l2TokenOf(tok).call()) == l2_token_address(tok)


def test_deposit_puts_the_command_in_the_inbox_with_the_bridge_as_sender(env: Env) -> None:
    token, to = env.token(decimals=6), to_checksum(os.urandom(20))
    rc = env.deposit(token, 12_345, to)
    (msg,) = env.l1_messages(rc)
    assert msg.sender == env.bridge.address and msg.value == 0
    payload = bytes(msg.payload)
    assert payload == encode_deposit(token.address, env.user.address, to, 12_345, 6)
    assert parse_command(payload) == Erc20Deposit(address_bytes(token.address), address_bytes(env.user.address),
                                                   address_bytes(to), 12_345, 6)
    (ev,) = env.bridge.events.ERC20DepositInitiated().process_receipt(rc, errors=DISCARD)
    assert (ev.args.token, ev.args.sender, ev.args.to, ev.args.amount) == (token.address, env.user.address, to, 12_345)
    assert ev.args.l1_message_index == msg.index == int(env.rollup.functions.msgCount().call()) - 1
    assert env.bridge.functions.locked(token.address).call() == 12_345
    assert token.functions.balanceOf(env.bridge.address).call() == 12_345


def test_deposit_credits_what_arrives_of_a_fee_on_transfer_token(env: Env) -> None:
    token = env.token(decimals=8, fee_bps=100)  # 1% burned on every transfer
    (msg,) = env.l1_messages(env.deposit(token, 10_000))
    assert parse_command(bytes(msg.payload)).amount == 9_900  # type: ignore[union-attr]
    assert env.bridge.functions.locked(token.address).call() == 9_900


def test_deposit_of_a_token_returning_nothing_without_decimals(env: Env) -> None:
    token = env.deploy("NoReturnToken")
    env.owner.transact(token.functions.mint(env.user.address, 500))
    env.user.transact(token.functions.approve(env.bridge.address, 500))
    (msg,) = env.l1_messages(env.deposit(token, 500))
    assert parse_command(bytes(msg.payload)) == Erc20Deposit(
        address_bytes(token.address), address_bytes(env.user.address), address_bytes(env.user.address), 500, 18
    )
    env.owner.transact(token.functions.setBroken(True))
    with pytest.raises(TxReverted, match="Bridge: token transfer reverted"):
        env.deposit(token, 1)


def test_deposit_decimals_above_255_read_as_18(env: Env) -> None:
    for decimals, seen in ((255, 255), (256, 18), (2**200, 18), (0, 0)):
        (msg,) = env.l1_messages(env.deposit(env.token(decimals=decimals), 7))
        assert parse_command(bytes(msg.payload)).decimals == seen  # type: ignore[union-attr]


def test_deploy_and_attach_with_the_bridge(env: Env) -> None:
    from enclavenet.contracts.deploy import DeployError, attach, deploy_bridge

    w3 = env.l1.w3
    dep = attach(w3, env.rollup.address, 0, bridge=env.bridge.address)
    assert dep.bridge_address == env.bridge.address and dep.as_dict()["bridge"] == env.bridge.address
    assert "bridge" not in attach(w3, env.rollup.address).as_dict()
    assert env.bridge.functions.ROLLUP().call() == env.rollup.address
    other = deploy_contracts(env.owner, env.owner.address, 1, 1)
    stray = deploy_bridge(env.owner, other.rollup_address)
    with pytest.raises(DeployError, match="is not bound to"):
        attach(w3, env.rollup.address, bridge=stray.address)
    with pytest.raises(DeployError, match="no contract at the bridge address"):
        attach(w3, env.rollup.address, bridge=to_checksum(os.urandom(20)))


def test_deposit_refusals(env: Env) -> None:
    token = env.token()
    with pytest.raises(TxReverted, match="Bridge: deposit of zero"):
        env.deposit(token, 0)
    with pytest.raises(TxReverted, match="Bridge: deposit to the zero address"):
        env.deposit(token, 1, to_checksum(b"\x00" * 20))
    with pytest.raises(TxReverted, match="Bridge: the token is not a contract"):
        env.user.transact(env.bridge.functions.depositERC20(to_checksum(os.urandom(20)), env.user.address, 1))
    env.owner.transact(token.functions.setFailing(True))
    with pytest.raises(TxReverted, match="Bridge: token transfer returned false"):
        env.deposit(token, 1)
    assert env.bridge.functions.locked(token.address).call() == 0


def test_send_message_payload_is_encode_call(env: Env) -> None:
    target, data = to_checksum(os.urandom(20)), os.urandom(100)
    rc = env.user.transact(env.bridge.functions.sendMessage(target, data, 250_000))
    (msg,) = env.l1_messages(rc)
    assert msg.sender == env.bridge.address
    assert bytes(msg.payload) == encode_call(env.user.address, target, 250_000, data)
    assert parse_command(bytes(msg.payload)) == L1Call(address_bytes(env.user.address), address_bytes(target), 250_000, data)
    (ev,) = env.bridge.events.MessageSent().process_receipt(rc, errors=DISCARD)
    assert (ev.args.target, bytes(ev.args.data), ev.args.l1_message_index) == (target, data, msg.index)
    # the longest call data fits the Rollup's submit
    env.user.transact(env.bridge.functions.sendMessage(target, os.urandom(fmt.MAX_CALL_DATA), 30_000_000))
    with pytest.raises(TxReverted, match="Bridge: gas limit above 30,000,000"):
        env.user.transact(env.bridge.functions.sendMessage(target, data, 30_000_001))
    with pytest.raises(TxReverted, match="Bridge: zero gas limit"):
        env.user.transact(env.bridge.functions.sendMessage(target, data, 0))


def _withdrawal_batch(env: Env, token: Contract, recipient: str, amount: int) -> tuple[Header, bytes]:
    l2_token = l2_token_address(token.address)
    other = os.urandom(20)
    return env.accept([
        (other, env.bridge.address, b""),  # padding around the withdrawal: ~4 leaves
        (l2_token, env.bridge.address, withdrawal_data(token.address, recipient, amount)),
        (other, os.urandom(20), os.urandom(64)),
        (l2_token, env.bridge.address, withdrawal_data(token.address, recipient, amount)),  # a second one, same fields
    ])


def test_erc20_withdrawal_pays_once(env: Env) -> None:
    token, recipient = env.token(), to_checksum(os.urandom(20))
    env.deposit(token, 1_000)
    h, data = _withdrawal_batch(env, token, recipient, 400)
    args = relay_args([h], data, 1)
    assert not env.bridge.functions.relayed(args.id).call()
    rc = env.relay(args)
    assert token.functions.balanceOf(recipient).call() == 400
    assert env.bridge.functions.locked(token.address).call() == 600
    assert env.bridge.functions.relayed(args.id).call()
    (ev,) = env.bridge.events.ERC20WithdrawalFinalized().process_receipt(rc, errors=DISCARD)
    assert (ev.args.token, ev.args.recipient, ev.args.amount, bytes(ev.args.id)) == (token.address, recipient, 400, args.id)
    with pytest.raises(TxReverted, match="Bridge: message already relayed"):
        env.relay(args)
    # the same withdrawal fields at another index is another message
    env.relay(relay_args([h], data, 3))
    assert token.functions.balanceOf(recipient).call() == 800
    assert env.bridge.functions.locked(token.address).call() == 200


def test_withdrawal_refusals(env: Env) -> None:
    token, recipient = env.token(), to_checksum(os.urandom(20))
    env.deposit(token, 100)
    wd = withdrawal_data(token.address, recipient, 50)
    h, data = env.accept([
        (os.urandom(20), env.bridge.address, wd),  # not the canonical L2 token
        (l2_token_address(token.address), env.bridge.address, withdrawal_data(token.address, recipient, 101)),
        (l2_token_address(token.address), env.bridge.address, wd[:64]),
        (l2_token_address(token.address), env.bridge.address, wd),
    ])
    with pytest.raises(TxReverted, match="Bridge: the withdrawal does not come from the token's canonical L2 token"):
        env.relay(relay_args([h], data, 0))
    with pytest.raises(TxReverted, match="Bridge: withdrawal above the locked amount"):
        env.relay(relay_args([h], data, 1))
    with pytest.raises(TxReverted, match="Bridge: a withdrawal's data is"):
        env.relay(relay_args([h], data, 2))
    # a failed token transfer reverts the relay: the withdrawal stays relayable
    env.owner.transact(token.functions.setFailing(True))
    args = relay_args([h], data, 3)
    with pytest.raises(TxReverted, match="Bridge: token transfer returned false"):
        env.relay(args)
    assert not env.bridge.functions.relayed(args.id).call()
    env.owner.transact(token.functions.setFailing(False))
    env.relay(args)
    assert token.functions.balanceOf(recipient).call() == 50


def test_tampered_relays_are_refused(env: Env) -> None:
    token, recipient = env.token(), to_checksum(os.urandom(20))
    env.deposit(token, 1_000)
    h, data = _withdrawal_batch(env, token, recipient, 400)
    good = relay_args([h], data, 1).args()

    def with_(i: int, value: Any) -> tuple[Any, ...]:
        return (*good[:i], value, *good[i + 1:])

    under = "Bridge: the message is not under the batch's messages root"
    with pytest.raises(TxReverted, match=under):  # the item's amount
        env.relay(with_(6, withdrawal_data(token.address, recipient, 999)))
    with pytest.raises(TxReverted, match=under):  # the recipient
        env.relay(with_(6, withdrawal_data(token.address, env.user.address, 400)))
    with pytest.raises(TxReverted, match=under):  # the index
        env.relay(with_(3, 2))
    with pytest.raises(TxReverted, match=under):  # a sibling
        env.relay(with_(8, [good[8][0], os.urandom(32), *good[8][2:]]))
    with pytest.raises(TxReverted, match=under):  # the path
        env.relay(with_(7, good[7] ^ 1))
    not_item0 = "Bridge: the meta is not item 0 of the header's data commitment"
    with pytest.raises(TxReverted, match=not_item0):  # the meta's root
        env.relay(with_(1, good[1][:-1] + bytes([good[1][-1] ^ 1])))
    with pytest.raises(TxReverted, match=not_item0):
        env.relay(with_(2, [os.urandom(32), *good[2][1:]]))
    # a header the Rollup never accepted (same batch, another state root)
    forged = Header(**{**h.__dict__, "state_root": os.urandom(32)})
    with pytest.raises(TxReverted, match="Bridge: the last header is neither the Rollup's last nor anchored"):
        env.relay(with_(0, [forged.as_tuple()]))
    with pytest.raises(TxReverted, match="Bridge: no header"):
        env.relay(with_(0, []))
    env.relay(good)  # untampered, it goes through
    assert token.functions.balanceOf(recipient).call() == 400


def test_meta_without_a_messages_root_is_refused(env: Env) -> None:
    """A batch whose meta ends otherwise (no outbox) proves nothing."""
    import cbor2

    from enclavenet.enclave.batch import data_commitment_of_items
    from enclavenet.enclave.codec import encode

    h, _ = env.accept()
    meta = encode({"v": 1, "height": h.height, "n_envelopes": 0, "n_entries": 0})
    items = [meta]
    assert data_commitment_of_items(items) != h.data_commitment
    # put the meta in a header of its own
    f = env.rollup.functions
    h2 = Header(**{**h.__dict__, "height": h.height + 1, "prev_hash": h.hash(), "data_commitment": data_commitment_of_items(items),
                   "msg_count": int(f.msgCount().call()), "msg_acc": bytes(f.msgAcc().call()), "l1_block": env.l1.block_number() - 1})
    env.owner.transact(f.submitHeader(h2.as_tuple(), [], sign_qc(h2, [env.member], env.l1.chain_id, env.rollup.address)))
    with pytest.raises(TxReverted, match="Bridge: the meta carries no messages root"):
        env.relay(([h2.as_tuple()], meta, [], 0, env.user.address, env.user.address, b"", 0, []))
    with pytest.raises(RelayError, match="no messages root"):
        relay_args([h2], cbor2.dumps(items), 0)


def test_an_older_header_is_relayed_through_its_successors_or_an_anchor(env: Env) -> None:
    token, recipient = env.token(), to_checksum(os.urandom(20))
    env.deposit(token, 1_000)
    a, data_a = _withdrawal_batch(env, token, recipient, 100)
    b, _ = env.accept()
    c, _ = env.accept()
    with pytest.raises(TxReverted, match="Bridge: the last header is neither the Rollup's last nor anchored"):
        env.relay(relay_args([a], data_a, 1))
    with pytest.raises(TxReverted, match="Bridge: the last header is neither the Rollup's last nor anchored"):
        env.relay(relay_args([a, b], data_a, 1))  # b is accepted, but no longer the last
    with pytest.raises(TxReverted, match="Bridge: the headers do not chain"):
        env.relay(([a.as_tuple(), c.as_tuple()], *relay_args([a], data_a, 1).args()[1:]))
    env.relay(relay_args([a, b, c], data_a, 1))
    assert token.functions.balanceOf(recipient).call() == 100
    # anchor c; two headers later, [c's batch ... c] is enough and so is [a, b, c]
    env.relayer.transact(env.bridge.functions.anchor())
    assert env.bridge.functions.anchored(c.hash()).call()
    env.accept()
    env.accept()
    env.relay(relay_args([a, b, c], data_a, 3))
    assert token.functions.balanceOf(recipient).call() == 200


def test_anchor_lets_the_header_itself_be_the_whole_chain(env: Env) -> None:
    token, recipient = env.token(), to_checksum(os.urandom(20))
    env.deposit(token, 1_000)
    a, data_a = _withdrawal_batch(env, token, recipient, 100)
    env.relayer.transact(env.bridge.functions.anchor())
    env.accept()
    env.relay(relay_args([a], data_a, 1))
    assert token.functions.balanceOf(recipient).call() == 100


def test_generic_message_calls_the_target_through_the_executor(env: Env) -> None:
    target = env.deploy("MessageTarget", env.bridge.address)
    l2_sender = os.urandom(20)
    call = target.functions.receiveMessage(42, b"hello L1")._encode_transaction_data()
    h, data = env.accept([(l2_sender, target.address, bytes.fromhex(call[2:]))])
    args = relay_args([h], data, 0)
    env.owner.transact(target.functions.setRefuse(True))
    with pytest.raises(TxReverted, match="Bridge: the message call reverted"):
        env.relay(args)
    assert not env.bridge.functions.relayed(args.id).call()  # still relayable
    env.owner.transact(target.functions.setRefuse(False))
    rc = env.relay(args)
    executor = env.bridge.functions.EXECUTOR().call()
    assert address_bytes(target.functions.lastSender().call()) == l2_sender
    assert target.functions.lastCaller().call() == executor
    assert (target.functions.lastValue().call(), bytes(target.functions.lastData().call())) == (42, b"hello L1")
    assert env.bridge.functions.xDomainMessageSender().call() == to_checksum(b"\x00" * 20)
    (ev,) = env.bridge.events.MessageRelayed().process_receipt(rc, errors=DISCARD)
    assert (bytes(ev.args.id), ev.args.height, ev.args.index, ev.args.target) == (args.id, h.height, 0, target.address)
    with pytest.raises(TxReverted, match="Bridge: message already relayed"):
        env.relay(args)
    assert target.functions.calls().call() == 1
    # later in the relay's own transaction the sender is gone again
    probe = env.deploy("RelayProbe")
    h2, data2 = env.accept([(l2_sender, target.address, bytes.fromhex(call[2:]))])
    calldata = env.bridge.functions.relayMessage(*relay_args([h2], data2, 0).args())._encode_transaction_data()
    env.relayer.transact(probe.functions.relayAndRead(env.bridge.address, bytes.fromhex(calldata[2:])))
    assert probe.functions.relays().call() == 1 and target.functions.calls().call() == 2
    assert probe.functions.after().call() == to_checksum(b"\x00" * 20)


def test_a_message_cannot_spend_the_locked_tokens(env: Env) -> None:
    """Generic messages run from the executor, which holds nothing: a message to a token with
    transfer(...) data moves none of the Bridge's tokens, and the executor obeys the Bridge only."""
    token = env.token()
    env.deposit(token, 1_000)
    thief = to_checksum(os.urandom(20))
    steal = bytes.fromhex(token.functions.transfer(thief, 1_000)._encode_transaction_data()[2:])
    approve = bytes.fromhex(token.functions.approve(thief, 2**255)._encode_transaction_data()[2:])
    h, data = env.accept([(os.urandom(20), token.address, steal), (os.urandom(20), token.address, approve)])
    with pytest.raises(TxReverted, match="Bridge: the message call reverted"):
        env.relay(relay_args([h], data, 0))  # the executor has no balance
    env.relay(relay_args([h], data, 1))  # approves the executor's (empty) balance
    assert token.functions.allowance(env.bridge.address, thief).call() == 0
    assert token.functions.balanceOf(env.bridge.address).call() == 1_000
    executor = env.bridge.functions.EXECUTOR().call()
    assert len(env.l1.w3.eth.get_code(executor)) == 65
    with pytest.raises(TxReverted):
        env.user.send_raw(executor, address_bytes(token.address) + steal)


def test_relay_args_checks_the_batch(env: Env) -> None:
    h, data = env.accept([(os.urandom(20), os.urandom(20), b"x")])
    b = batch_messages(data)
    assert len(b.messages) == 1 and b.fields["n_messages"] == 1
    with pytest.raises(RelayError, match="no message 1"):
        relay_args([h], data, 1)
    other, _ = env.accept()
    with pytest.raises(RelayError, match="does not follow"):
        relay_args([other, h], data, 0)
    with pytest.raises(RelayError, match="data commitment"):
        relay_args([other], data, 0)
