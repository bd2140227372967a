"""Issue 14 (safety), inputs: attacks on what enters the enclave, performed against real
in-process enclaves of two TEE types (H1 inbox sender binding, H5 message continuity,
M1 timestamps). Each test fails while its hole is open (see docs/SECURITY.md)."""

from __future__ import annotations

import os
import time
from typing import Any

import cbor2
import pytest
from eth_account import Account

from enclavenet.crypto.envelope import RoutingHint, SealedRequest, open_receipt, seal
from enclavenet.crypto.escape import escape_request_digest, open_escape_leaf
from enclavenet.crypto.hashing import address_bytes, keccak256
from enclavenet.crypto.header import Header
from enclavenet.crypto.messages import KIND_USER
from enclavenet.crypto.secp256k1 import SigningKey
from enclavenet.enclave.batch import ERROR_CODES, ERROR_ENTRY_PREFIX
from enclavenet.enclave.executor import Receipt
from enclavenet.enclave.harness import Member, batch_request, form_committee, program_config
from enclavenet.enclave.tx import encode_inbox_call
from enclavenet.tee import DEFAULT_PROGRAM, EnclaveError, InProcessEnclave, SimulatedVendor

CHAIN, L1_CHAIN = 4242, 31337
ETH = 10**18
VENDORS = [SimulatedVendor.generate(n) for n in ("sgx", "tdx")]
CFG = program_config(VENDORS, chain_id=CHAIN, l1_chain_id=L1_CHAIN)
ROLLUP = CFG["rollup"]
T0 = 1_700_000_000


class Net:
    """Two members (sgx, tdx), quorum 2: member 0 executes, member 1 verifies, both accept."""

    def __init__(self, cfg: dict[str, Any] | None = None) -> None:
        self.members = [Member(InProcessEnclave(v.new_platform(), DEFAULT_PROGRAM, cfg or CFG)) for v in VENDORS]
        self.epoch_pub = form_committee(self.members, 2, 2)
        self.prev = bytes(32)
        self.height = 0
        self.msg = 0
        self.timestamp = T0

    def message(self, sender: str, value: int, l1_block: int, payload: bytes = b"") -> list[Any]:
        m = [self.msg, KIND_USER, sender, value, l1_block, payload]
        self.msg += 1
        return m

    def request(self, l1_block: int, messages: list[list[Any]], timestamp: int | None = None) -> dict[str, Any]:
        return batch_request(
            self.height + 1, self.prev, l1_block=l1_block, messages=messages,
            timestamp=self.timestamp if timestamp is None else timestamp,
        )

    def batch(self, l1_block: int, messages: list[list[Any]], timestamp: int | None = None) -> dict[str, Any]:
        req = self.request(l1_block, messages, timestamp)
        out = self.members[0].call("execute_batch", **req)
        v = self.members[1].call("verify_batch", header=out["header"], **req)
        assert v["header_hash"] == out["header_hash"]
        for m in self.members:
            m.call("accept_header", header=out["header"], signatures=[out["signature"], v["signature"]])
        self.prev = out["header_hash"]
        self.height += 1
        self.timestamp = req["timestamp"]
        return out

    def balance(self, acct: Any) -> int:
        """The account's balance, read as its owner reads it (its own sealed escape leaf)."""
        exp = int(time.time()) + 600
        sig = SigningKey(bytes(acct.key)).sign(escape_request_digest(CHAIN, L1_CHAIN, ROLLUP, acct.address, exp))
        out = self.members[0].call("escape_leaf", address=acct.address, expiry=exp, signature=sig)
        return open_escape_leaf(out["sealed"], bytes(acct.key)).balance

    def inbox_call(self, to: str, value: int, hint_sender: str | None) -> SealedRequest:
        hint = RoutingHint(address_bytes(hint_sender), 0) if hint_sender else None
        return seal(encode_inbox_call(CHAIN, to, b"", value, 50_000), self.epoch_pub, CHAIN, 0, hint)


def _entry(out: dict[str, Any], s: SealedRequest) -> bytes:
    return bytes(out["receipts"][keccak256(s.envelope.encode())])


def _receipt(out: dict[str, Any], s: SealedRequest) -> Receipt:
    return Receipt.decode(open_receipt(s.receipt_key, _entry(out, s)))


# ---------------------------------------------------------------- H1: inbox sender binding

SECRET_AMOUNT = 123_456_789


def test_h1_a_copied_inbox_call_submitted_from_another_account_runs_as_nobody() -> None:
    net = Net()
    alice, bob, mallory = Account.create(), Account.create(), Account.create()
    net.batch(1, [net.message(alice.address, ETH, 1), net.message(mallory.address, ETH, 1)])
    # alice pays bob a hidden amount through the L1 inbox, sealed as the client seals it
    # (routing hint = alice); mallory copies the public envelope and submits it from her account
    # before alice's own submission lands (front-running) -- and the legacy form without a hint
    sealed = net.inbox_call(bob.address, SECRET_AMOUNT, alice.address)
    legacy = net.inbox_call(bob.address, SECRET_AMOUNT, None)
    out = net.batch(2, [
        net.message(mallory.address, 0, 2, sealed.envelope.encode()),
        net.message(mallory.address, 0, 2, legacy.envelope.encode()),
    ])
    # nothing ran as mallory: she learns nothing from her balance, bob is not paid
    assert net.balance(mallory) == ETH
    assert net.balance(bob) == 0
    # the copy gets a clear, public refusal: an error code (batch data carries codes, no text)
    copy_entry = _entry(out, sealed)
    assert copy_entry == ERROR_ENTRY_PREFIX + b"inbox_sender"
    assert "another account than the one its envelope is sealed for" in ERROR_CODES["inbox_sender"]
    # an unhinted inbox call is refused for everyone (its sender reads why)
    assert "must be sealed with a routing hint" in str(_receipt(out, legacy).error)
    # alice's own submission of the very same envelope still runs, as alice, once
    out = net.batch(3, [net.message(alice.address, 0, 3, sealed.envelope.encode())])
    r = _receipt(out, sealed)
    assert r.success and r.sender == address_bytes(alice.address)
    assert net.balance(bob) == SECRET_AMOUNT
    assert net.balance(alice) == ETH - SECRET_AMOUNT


def test_h1_copy_and_original_in_one_batch_the_sender_gets_its_real_receipt() -> None:
    net = Net()
    alice, bob, mallory = Account.create(), Account.create(), Account.create()
    net.batch(1, [net.message(alice.address, ETH, 1)])
    sealed = net.inbox_call(bob.address, 5, alice.address)
    out = net.batch(2, [
        net.message(mallory.address, 0, 2, sealed.envelope.encode()),
        net.message(alice.address, 0, 2, sealed.envelope.encode()),
    ])
    assert _receipt(out, sealed).success  # not the copy's error entry, which came first
    assert net.balance(bob) == 5


def test_h1_an_inbox_call_hint_with_a_nonce_is_refused() -> None:
    net = Net()
    alice, bob = Account.create(), Account.create()
    net.batch(1, [net.message(alice.address, ETH, 1)])
    odd = seal(encode_inbox_call(CHAIN, bob.address, b"", 5, 50_000), net.epoch_pub, CHAIN, 0,
               RoutingHint(address_bytes(alice.address), 3))
    out = net.batch(2, [net.message(alice.address, 0, 2, odd.envelope.encode())])
    assert "nonce 0" in str(_receipt(out, odd).error)
    assert net.balance(bob) == 0


# ---------------------------------------------------------------- H5: message continuity


def test_h5_a_deposit_left_out_by_an_empty_proposal_is_consumed_later() -> None:
    """The review's scenario: a deposit pends in L1 block 2; a malicious proposer's header
    consumes no message but claims l1_block 3. (The enclaves cannot see the deposit it left
    out: the voters' hosts and L1 refuse that header -- test_node_rpc.py, test_msg_ring_l1.py.)
    Were it accepted anyway, the deposit must still be consumed by a later batch, in order,
    instead of being refused for good (which froze the Rollup through reclaim)."""
    net = Net()
    alice = Account.create()
    net.batch(1, [])
    deposit = net.message(alice.address, ETH, 2)
    skipped = net.batch(3, [])  # no messages, l1_block past the pending deposit
    assert Header.decode(skipped["header"]).msg_count == 0
    out = net.batch(3, [deposit])
    assert Header.decode(out["header"]).msg_count == 1
    assert net.balance(alice) == ETH
    # order and bounds still hold: out of L1 order, or after the batch's l1_block, is refused
    for blocks, needle in (([3, 2], "out of L1 order"), ([5], "after the batch's l1_block")):
        msgs = [[1 + i, KIND_USER, alice.address, 1, b, b""] for i, b in enumerate(blocks)]
        with pytest.raises(EnclaveError, match=needle):
            net.members[0].call("execute_batch", **net.request(4, msgs))


# ---------------------------------------------------------------- M1: the EVM timestamp


def test_m1_a_far_future_timestamp_is_refused_by_proposer_and_voter_enclaves() -> None:
    """2^64-1 was executed and signed, freezing block.timestamp for good (it never goes back)."""
    net = Net()
    net.batch(1, [])
    for ts in (2**64 - 1, 2**40):
        req = net.request(1, [], timestamp=ts)
        with pytest.raises(EnclaveError, match="beyond"):
            net.members[0].call("execute_batch", **req)
    # a proposer enclave that signed one anyway (a leaked key): the honest voter refuses it
    ok = net.request(1, [], timestamp=T0 + 5)
    out = net.members[0].call("execute_batch", **ok)
    bad = {**ok, "timestamp": 2**64 - 1}
    with pytest.raises(EnclaveError, match="beyond"):
        net.members[1].call("verify_batch", header=out["header"], **bad)
    # the timestamp never goes back either
    with pytest.raises(EnclaveError, match="before the head's timestamp"):
        net.members[1].call("verify_batch", header=out["header"], **{**ok, "timestamp": T0 - 1})
    assert net.members[1].call("verify_batch", header=out["header"], **ok)["header_hash"] == out["header_hash"]


# ---------------------------------------------------------------- M4: the view gas cap

BURNER = """
# pragma version ^0.4.0
counter: public(uint256)

@external
def burn(n: uint256):
    for i: uint256 in range(n, bound=1000000):
        self.counter += 1
"""


def _burner() -> tuple[bytes, bytes]:
    import vyper

    out = vyper.compile_code(BURNER, output_formats=["bytecode", "method_identifiers"])
    return bytes.fromhex(out["bytecode"][2:]), bytes.fromhex(out["method_identifiers"]["burn(uint256)"][2:])


def _view(net: Net, acct: Any, to: str, data: bytes, gas: int) -> SealedRequest:
    from eth_account.messages import encode_typed_data

    from enclavenet.enclave.views import ViewDomain, typed_data

    nonce, expiry = int.from_bytes(os.urandom(8), "big"), int(time.time()) + 60
    td = typed_data(ViewDomain(CHAIN, L1_CHAIN, ROLLUP), acct.address, to, data, 0, gas, 0, nonce, expiry)
    sig = Account.sign_message(encode_typed_data(full_message=td), acct.key).signature
    req = {"from": acct.address, "to": to, "data": data, "value": 0, "gas": gas, "epoch": 0,
           "nonce": nonce, "expiry": expiry, "sig": bytes(sig)}
    return seal(cbor2.dumps(req), net.epoch_pub, CHAIN, 0)


def test_m4_a_view_or_estimate_burns_at_most_the_view_gas_cap() -> None:
    """A 30M-gas view held the enclave's one ecall thread (votes queued behind it). Views and
    gas estimates are capped by the measured config's view_gas_limit (default 10M)."""
    from enclavenet.crypto.hashing import to_checksum
    from enclavenet.enclave.program import ProgramConfig
    from enclavenet.enclave.tx import sign_tx

    assert ProgramConfig.from_mapping(CFG).view_gas_limit == 10_000_000
    cap = 300_000
    net = Net({**CFG, "view_gas_limit": cap})
    alice = Account.create()
    code, burn = _burner()
    deploy = seal(sign_tx(bytes(alice.key), CHAIN, 0, None, code, 0, 1_000_000), net.epoch_pub, CHAIN, 0)
    req = net.request(1, [net.message(alice.address, ETH, 1)])
    out = net.members[0].call("execute_batch", **{**req, "envelopes": [deploy.envelope.encode()]})
    contract = _receipt(out, deploy).contract_address
    assert contract is not None
    heavy = burn + (100_000).to_bytes(32, "big")  # ~ 2.5M gas
    for method in ("view_call", "estimate_gas"):
        s = _view(net, alice, to_checksum(contract), heavy, 5_000_000)
        res = cbor2.loads(open_receipt(s.receipt_key, net.members[0].call(method, envelope=s.envelope.encode())["result"]))
        assert not res["ok"], method
        assert res["gas_used"] <= cap, (method, res["gas_used"])
        assert ("out of gas" if method == "view_call" else f"fails even with {cap} gas") in res["error"]
    # a view within the cap runs as before
    s = _view(net, alice, to_checksum(contract), burn + (10).to_bytes(32, "big"), 5_000_000)
    res = cbor2.loads(open_receipt(s.receipt_key, net.members[0].call("view_call", envelope=s.envelope.encode())["result"]))
    assert res["ok"] and 21_000 < res["gas_used"] < cap


# ---------------------------------------------------------------- M4: signed peer requests


def test_m4_peer_auth_signs_only_in_its_own_domain() -> None:
    from enclavenet.crypto.hashing import keccak256 as k
    from enclavenet.crypto.peer import peer_request_digest
    from enclavenet.crypto.secp256k1 import recover_address

    net = Net()
    m, other = net.members
    body_hash = k(b"\xa0")
    out = m.call("peer_auth", op="snapshot", to=address_bytes(other.address), body_hash=body_hash, expiry=T0)
    d = peer_request_digest(L1_CHAIN, ROLLUP, other.address, "snapshot", body_hash, T0)
    assert recover_address(d, out["signature"]) == m.address == out["signer"]
    # another receiver, op, body or expiry is another digest: the signature is good for one request
    for other_d in (
        peer_request_digest(L1_CHAIN, ROLLUP, m.address, "snapshot", body_hash, T0),
        peer_request_digest(L1_CHAIN, ROLLUP, other.address, "batch", body_hash, T0),
        peer_request_digest(L1_CHAIN, ROLLUP, other.address, "snapshot", k(b"x"), T0),
        peer_request_digest(L1_CHAIN, ROLLUP, other.address, "snapshot", body_hash, T0 + 1),
    ):
        assert recover_address(other_d, out["signature"]) != m.address
    with pytest.raises(EnclaveError, match="op must be a peer op name"):
        m.call("peer_auth", op="x" * 40, to=address_bytes(other.address), body_hash=body_hash, expiry=T0)
