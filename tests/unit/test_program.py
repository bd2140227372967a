"""The enclave program through its ecall API (in-process boundary, real program, real EVM).

Each test builds a small committee of simulated members of different TEE vendors.
"""

from __future__ import annotations

import os
import time
from functools import cache
from typing import Any

import cbor2
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from enclavenet.crypto.envelope import Envelope, RoutingHint, SealedRequest, open_receipt, seal
from enclavenet.crypto.hashing import address_bytes, keccak256, to_checksum
from enclavenet.crypto.header import EMPTY_WITHDRAWALS_HASH, Header, Withdrawal, withdrawals_hash
from enclavenet.crypto.merkle import merkle_root
from enclavenet.crypto.secp256k1 import recover_address
from enclavenet.enclave.batch import ERROR_ENTRY_PREFIX, batch_data_items
from enclavenet.enclave.executor import Receipt
from enclavenet.enclave.harness import (
    Member,
    batch_request,
    form_committee,
    program_config,
    share_epoch,
    update_committee,
)
from enclavenet.enclave.tx import encode_inbox_call, sign_tx
from enclavenet.enclave.views import ViewDomain, typed_data
from enclavenet.tee import DEFAULT_PROGRAM, EnclaveError, InProcessEnclave, SimulatedVendor

CHAIN = 4242
L1_CHAIN = 31337
GWEI = 10**9
VENDORS = [SimulatedVendor.generate(n) for n in ("sgx", "sev-snp", "tdx")]
CFG = program_config(VENDORS, chain_id=CHAIN, l1_chain_id=L1_CHAIN)


@cache
def contract_code() -> tuple[bytes, dict[str, bytes]]:
    """A small Vyper contract (compiled once): bump/who/burn/counter."""
    import vyper

    src = """
# pragma version ^0.4.0
counter: public(uint256)

@external
def bump(n: uint256) -> uint256:
    assert n < 100, "too big"
    self.counter += n
    return self.counter

@external
@view
def who() -> address:
    return msg.sender

@external
def burn():
    for i: uint256 in range(100000):
        self.counter += 1
"""
    out = vyper.compile_code(src, output_formats=["bytecode", "method_identifiers"])
    sels = {k.split("(")[0]: bytes.fromhex(v[2:]) for k, v in out["method_identifiers"].items()}
    return bytes.fromhex(out["bytecode"][2:]), sels


class Net:
    """A committee of in-process members and the users' side (keys, envelopes)."""

    def __init__(self, n: int = 3, quorum: int = 2, min_types: int = 2, cfg: dict[str, Any] | None = None) -> None:
        self.members = [
            Member(InProcessEnclave(VENDORS[i % len(VENDORS)].new_platform(), DEFAULT_PROGRAM, cfg or CFG))
            for i in range(n)
        ]
        self.epoch_pub = form_committee(self.members, quorum, min_types)
        self.epoch = 0
        self.nonces: dict[str, int] = {}

    def env(self, acct: Any, to: str | None, *, data: bytes = b"", value: int = 0, gas: int = 100_000,
            nonce: int | None = None, chain_id: int = CHAIN, epoch: int | None = None,
            hint: bool = False) -> SealedRequest:
        if nonce is None:
            nonce = self.nonces.get(acct.address, 0)
            self.nonces[acct.address] = nonce + 1
        raw = sign_tx(bytes(acct.key), chain_id, nonce, to, data, value, gas)
        h = RoutingHint(address_bytes(acct.address), nonce) if hint else None
        return seal(raw, self.epoch_pub, CHAIN, self.epoch if epoch is None else epoch, h)

    def run(self, m: Member, height: int, prev: bytes, **kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        req = batch_request(height, prev, **kw)
        return req, m.call("execute_batch", **req)


def receipt_of(out: dict[str, Any], s: SealedRequest) -> Receipt:
    entry = out["receipts"][keccak256(s.envelope.encode())]
    return Receipt.decode(open_receipt(s.receipt_key, entry))


def dep(i: int, who: str, value: int, block: int, payload: bytes = b"", kind: int = 1) -> list[Any]:
    return [i, kind, who, value, block, payload]


@pytest.fixture(scope="module")
def funded() -> tuple[Net, Any, Any, dict[str, Any], dict[str, Any]]:
    """A net whose alice got a deposit and deployed the contract at height 1."""
    net = Net()
    alice, bob = Account.create(), Account.create()
    code, _ = contract_code()
    deploy = net.env(alice, None, data=code, gas=1_000_000)
    req, out = net.run(net.members[0], 1, bytes(32), l1_block=3,
                       messages=[dep(0, alice.address, 10**18, 2)], envelopes=[deploy.envelope.encode()])
    r = receipt_of(out, deploy)
    assert r.success and r.contract_address is not None
    for m in net.members[1:]:
        m.call("verify_batch", header=out["header"], **req)
    return net, alice, bob, out, {"contract": to_checksum(r.contract_address)}


def test_batch_headers_signatures_and_receipts(funded: Any) -> None:
    net, alice, bob, out1, info = funded
    h1 = Header.decode(out1["header"])
    assert h1.hash() == out1["header_hash"] and h1.height == 1 and h1.msg_count == 1 and h1.epoch_key == net.epoch_pub
    assert recover_address(h1.signing_digest(L1_CHAIN, CFG["rollup"]), out1["signature"]) == out1["signer"]
    assert out1["signer"] == net.members[0].address
    # batch data holds meta, envelopes and entries; the data commitment covers them
    items = batch_data_items(out1["batch_data"])
    assert len(items) == 3 and h1.tx_root == merkle_root([keccak256(items[1])])
    assert h1.receipts_root == merkle_root([keccak256(items[2])])
    assert h1.data_commitment == merkle_root([keccak256(x) for x in items])
    _, sels = contract_code()
    bump = net.env(alice, info["contract"], data=sels["bump"] + (7).to_bytes(32, "big"))
    pay = net.env(alice, bob.address, value=5 * GWEI, gas=21_000)
    req, out = net.run(net.members[1], 2, h1.hash(), l1_block=3,
                       envelopes=[bump.envelope.encode(), pay.envelope.encode()])
    rb, rp = receipt_of(out, bump), receipt_of(out, pay)
    assert rb.success and int.from_bytes(rb.output, "big") == 7
    assert rp.success and "n_ok" not in out and "n_failed" not in out  # no success counts for the host (H2)
    # the other members get the identical header and sign it
    for m in (net.members[0], net.members[2]):
        v = m.call("verify_batch", header=out["header"], **req)
        assert v["header_hash"] == out["header_hash"]
        assert recover_address(Header.decode(out["header"]).signing_digest(L1_CHAIN, CFG["rollup"]), v["signature"]) == m.address
    st = [m.call("status") for m in net.members]
    assert {s["state_root"] for s in st} == {Header.decode(out["header"]).state_root}
    assert all(s["height"] == 2 for s in st)


def test_bad_items_get_error_receipts_and_the_batch_goes_on() -> None:
    net = Net(n=2)
    alice, carol = Account.create(), Account.create()
    code, sels = contract_code()
    dep_msg = dep(0, alice.address, 10**18, 1)
    deploy = net.env(alice, None, data=code, gas=1_000_000)
    req1, out = net.run(net.members[0], 1, bytes(32), l1_block=1, messages=[dep_msg], envelopes=[deploy.envelope.encode()])
    net.members[1].call("verify_batch", header=out["header"], **req1)
    contract = receipt_of(out, deploy).contract_address
    assert contract is not None
    prev = out["header_hash"]

    good = net.env(alice, contract, data=sels["bump"] + (1).to_bytes(32, "big"))  # nonce 1
    replay = net.env(alice, contract, data=sels["bump"] + (1).to_bytes(32, "big"), nonce=1)
    gap = net.env(alice, contract, data=b"", nonce=9)
    wrong_chain = net.env(alice, contract, data=b"", nonce=2, chain_id=CHAIN + 1)
    revert = net.env(alice, contract, data=sels["bump"] + (500).to_bytes(32, "big"))  # nonce 2
    oog = net.env(alice, contract, data=sels["burn"], gas=60_000)  # nonce 3
    broke = net.env(carol, alice.address, value=1, gas=21_000)  # carol has nothing
    bad_hint = net.env(alice, contract, data=b"", nonce=4)
    hinted = seal(sign_tx(bytes(alice.key), CHAIN, 4, alice.address, gas=21_000), net.epoch_pub, CHAIN, 0,
                  RoutingHint(address_bytes(carol.address), 4))
    bad_sig_raw = bytearray(sign_tx(bytes(alice.key), CHAIN, 4, alice.address, gas=21_000))
    bad_sig_raw[-5] ^= 1
    bad_sig = seal(bytes(bad_sig_raw), net.epoch_pub, CHAIN, 0)
    inbox_fast = seal(encode_inbox_call(CHAIN, contract), net.epoch_pub, CHAIN, 0)
    tampered = bytearray(net.env(alice, contract, nonce=4).envelope.encode())
    tampered[-1] ^= 1
    unknown_epoch = seal(b"x", net.epoch_pub, CHAIN, 7).envelope.encode()
    oversized = bytes([1, 0]) + bytes(200 * 1024)  # above the 128 KiB a DAP can answer on chain
    wrong_version = bytes([9, 0]) + bytes(100)
    garbage = b"\x01\x02"
    envs = [good, replay, gap, wrong_chain, revert, oog, broke, hinted, bad_sig, inbox_fast]
    raws = [e.envelope.encode() for e in envs] + [bytes(tampered), unknown_epoch, wrong_version, garbage]
    with pytest.raises(EnclaveError, match=r"envelopes\[14\]. has 204802 bytes, more than 131072"):
        net.run(net.members[0], 2, prev, l1_block=1, envelopes=[*raws, oversized])  # the whole batch
    req, out = net.run(net.members[0], 2, prev, l1_block=1, envelopes=raws)
    r = {i: receipt_of(out, e) for i, e in enumerate(envs)}
    assert [i for i, x in r.items() if x.success] == [0]
    assert r[0].success
    assert "nonce 1 already used" in str(r[1].error)
    assert "nonce gap" in str(r[2].error)
    assert "wrong chain id" in str(r[3].error)
    assert r[4].status == 0 and r[4].error == "execution reverted: too big"
    assert r[5].status == 0 and r[5].error == "out of gas" and r[5].gas_used == 60_000
    assert "insufficient funds" in str(r[6].error)
    assert "routing hint" in str(r[7].error)
    assert r[8].status == 0 and (r[8].error or "").startswith("refused:") and r[8].sender != address_bytes(alice.address)
    assert "only from the L1 inbox" in str(r[9].error)
    entries = {rid: out["receipts"][rid] for rid in (keccak256(x) for x in raws[-4:])}
    msgs = [e[len(ERROR_ENTRY_PREFIX):].decode() for e in entries.values()]
    assert all(e.startswith(ERROR_ENTRY_PREFIX) for e in entries.values())
    # codes, not reason texts: batch data is public to DAPs and L1 observers
    assert msgs == ["decrypt", "epoch", "malformed", "malformed"]
    # the voter re-executes every failure identically
    v = net.members[1].call("verify_batch", header=out["header"], **req)
    assert v["header_hash"] == out["header_hash"]
    del bad_hint


def test_l1_inbox_payloads_deposits_and_withdrawals() -> None:
    net = Net(n=2)
    alice = Account.create()
    code, sels = contract_code()
    deploy = net.env(alice, None, data=code, gas=1_000_000)
    req1, out = net.run(net.members[0], 1, bytes(32), l1_block=1,
                        messages=[dep(0, alice.address, 10**18, 1)], envelopes=[deploy.envelope.encode()])
    net.members[1].call("verify_batch", header=out["header"], **req1)
    contract = receipt_of(out, deploy).contract_address
    assert contract is not None
    # an inbox call names its L1 sender in the routing hint (issue 14, H1: test_safety_input.py)
    inbox = seal(encode_inbox_call(CHAIN, contract, sels["bump"] + (3).to_bytes(32, "big")), net.epoch_pub, CHAIN, 0,
                 RoutingHint(address_bytes(alice.address), 0))
    withdraw = net.env(alice, "0x00000000000000000000000000000000000057d0", value=GWEI, gas=21_000)
    msgs = [dep(1, alice.address, 0, 2, inbox.envelope.encode()), dep(2, alice.address, 0, 2, withdraw.envelope.encode())]
    req, out2 = net.run(net.members[0], 2, out["header_hash"], l1_block=2, messages=msgs)
    ri, rw = receipt_of(out2, inbox), receipt_of(out2, withdraw)
    assert ri.success and int.from_bytes(ri.output, "big") == 3 and ri.sender == address_bytes(alice.address)
    assert rw.success and out2["withdrawals"] == [[alice.address, GWEI]]
    h = Header.decode(out2["header"])
    assert h.msg_count == 3 and h.l1_block == 2
    assert net.members[1].call("verify_batch", header=out2["header"], **req)["header_hash"] == h.hash()
    # a message chain that skips an index, or repeats consumed blocks, is refused
    with pytest.raises(EnclaveError, match="expected 3"):
        net.run(net.members[0], 3, h.hash(), l1_block=4, messages=[dep(4, alice.address, 1, 3)])
    # a message of a block the head covers is consumed in order (issue 14 H5: not stranded)
    _, out3 = net.run(net.members[0], 3, h.hash(), l1_block=4, messages=[dep(3, alice.address, 1, 2)])
    assert Header.decode(out3["header"]).msg_count == 4


def test_withdrawals_over_the_header_cap_carry_over_through_snapshots() -> None:
    """20 withdrawals in one batch: the header lists 16 (the Rollup's cap), the next one the other 4,
    also on a member restored from a snapshot taken in between."""
    net = Net(n=2)
    a, b = net.members
    alice = Account.create()
    req1, out1 = net.run(a, 1, bytes(32), l1_block=1, messages=[dep(0, alice.address, 10**18, 1)])
    ws = [net.env(alice, "0x00000000000000000000000000000000000057d0", value=GWEI * (i + 1), gas=21_000)
          for i in range(20)]
    req2, out2 = net.run(a, 2, out1["header_hash"], l1_block=1, envelopes=[w.envelope.encode() for w in ws])
    assert all(receipt_of(out2, w).success for w in ws)  # all 20 (receipt per envelope)
    expected = [[alice.address, GWEI * (i + 1)] for i in range(20)]
    assert out2["withdrawals"] == expected[:16]
    h2 = Header.decode(out2["header"])
    assert h2.withdrawals_hash == withdrawals_hash([Withdrawal(r, v) for r, v in expected[:16]])
    votes = [b.call("verify_batch", header=out["header"], **req) for req, out in ((req1, out1), (req2, out2))]
    assert [v["header_hash"] for v in votes] == [out1["header_hash"], out2["header_hash"]]
    # a fresh member restores the snapshot taken with 4 withdrawals queued and agrees on the next header
    snap = a.call("snapshot")
    fresh = Member(InProcessEnclave(VENDORS[2].new_platform(), DEFAULT_PROGRAM, CFG))
    quotes = [m.identity["quote"] for m in (a, b, fresh)]
    update_committee((a, b, fresh), (a, b), quotes, 2, 2)  # adding a member takes a QC of a and b
    share_epoch(a, [fresh], 0)
    qc = [out2["signature"], votes[1]["signature"]]
    assert fresh.call("restore", blob=snap["shared"], header=out2["header"], signatures=qc)["state_root"] == h2.state_root
    req3 = batch_request(3, out2["header_hash"], l1_block=1)
    outs = [m.call("execute_batch", **req3) for m in (a, fresh)]
    assert outs[0]["header"] == outs[1]["header"]
    assert outs[0]["withdrawals"] == outs[1]["withdrawals"] == expected[16:]
    assert Header.decode(outs[0]["header"]).withdrawals_hash == withdrawals_hash(
        [Withdrawal(r, v) for r, v in expected[16:]]
    )
    out4 = a.call("execute_batch", **batch_request(4, outs[0]["header_hash"], l1_block=1))
    assert out4["withdrawals"] == [] and Header.decode(out4["header"]).withdrawals_hash == EMPTY_WITHDRAWALS_HASH


def test_voter_refuses_a_different_header_and_never_signs_twice() -> None:
    net = Net(n=3)
    alice = Account.create()
    req, out = net.run(net.members[0], 1, bytes(32), l1_block=1, messages=[dep(0, alice.address, 10**18, 1)])
    voter = net.members[1]
    before = voter.call("status")
    forged = Header.decode(out["header"])
    forged = Header(**{**forged.__dict__, "balances_root": keccak256(b"lie")})
    with pytest.raises(EnclaveError, match="does not match this enclave's re-execution") as refused:
        voter.call("verify_batch", header=forged.encode(), **req)
    assert "balances_root" not in str(refused.value)  # which field differs is not said (issue 14, H2)
    assert voter.call("status") == before  # state and head unchanged by the refused vote
    v = voter.call("verify_batch", header=out["header"], **req)
    assert v["header_hash"] == out["header_hash"]
    assert voter.call("verify_batch", header=out["header"], **req) == v  # a host retry: same answer
    # a competing proposal at height 1 (by a third member) is refused, even after a rollback
    voter.call("rollback", height=0)
    other_req = batch_request(1, bytes(32), l1_block=1, messages=[dep(0, alice.address, 10**18, 1)], timestamp=1_800_000_000)
    other = net.members[2].call("execute_batch", **other_req)
    with pytest.raises(EnclaveError, match="second header at height 1"):
        voter.call("verify_batch", header=other["header"], **other_req)
    # ...and neither the voter nor the first proposer can propose a second header at height 1:
    # both already executed another batch input there, so this one is refused before it runs
    net.members[0].call("rollback", height=0)
    for m in (voter, net.members[0]):
        with pytest.raises(EnclaveError, match="second batch input at height 1 round 0"):
            m.call("execute_batch", **other_req)
    assert voter.call("status")["height"] == 0
    # the same header again is fine (a host retry)
    assert voter.call("verify_batch", header=out["header"], **req)["signature"] == v["signature"]


def test_accept_header_and_switch_to_the_winning_branch() -> None:
    net = Net(n=3)
    a, b, c = net.members
    alice = Account.create()
    m = [dep(0, alice.address, 10**18, 1)]
    req_x = batch_request(1, bytes(32), l1_block=1, messages=m, timestamp=1)
    req_y = batch_request(1, bytes(32), l1_block=1, messages=m, timestamp=2)
    x = a.call("execute_batch", **req_x)  # a proposes x
    y = b.call("execute_batch", **req_y)  # b races with y; c votes y
    vc = c.call("verify_batch", header=y["header"], **req_y)
    sigs = sorted([y["signature"], vc["signature"]])
    hy = Header.decode(y["header"])
    # a QC must have quorum, members only, distinct types
    with pytest.raises(EnclaveError, match="quorum is 2"):
        b.call("accept_header", header=y["header"], signatures=[y["signature"]])
    with pytest.raises(EnclaveError, match="not a committee member"):
        b.call("accept_header", header=y["header"], signatures=[x["signature"], vc["signature"]])
    assert b.call("accept_header", header=y["header"], signatures=sigs)["finalized_height"] == 1
    with pytest.raises(EnclaveError, match="diverged at height 1"):
        a.call("accept_header", header=y["header"], signatures=sigs)
    a.call("rollback", height=0)
    with pytest.raises(EnclaveError, match="QC"):
        a.call("apply_batch", header=y["header"], signatures=[y["signature"]], **req_y)
    st = a.call("apply_batch", header=y["header"], signatures=sigs, **req_y)
    assert st["height"] == 1 and st["head_hash"] == hy.hash() and st["finalized_height"] == 1
    assert st["state_root"] == hy.state_root
    with pytest.raises(EnclaveError, match="below the finalised height"):
        a.call("rollback", height=0)
    # the finalised height is never signed again, by anyone's request
    with pytest.raises(EnclaveError, match="finalised"):
        b.call("verify_batch", header=y["header"], **req_y)
    # all three continue on y
    req2 = batch_request(2, hy.hash(), l1_block=1, timestamp=3)
    z = c.call("execute_batch", **req2)
    assert a.call("verify_batch", header=z["header"], **req2)["header_hash"] == z["header_hash"]


def test_snapshot_restore_in_another_member_and_after_restart() -> None:
    net = Net(n=2)
    a, b = net.members
    alice, bob = Account.create(), Account.create()
    req1, out1 = net.run(a, 1, bytes(32), l1_block=1, messages=[dep(0, alice.address, 10**18, 1)])
    vote = b.call("verify_batch", header=out1["header"], **req1)
    qc = {"header": out1["header"], "signatures": [out1["signature"], vote["signature"]]}
    snap = a.call("snapshot")
    assert snap["height"] == 1 and snap["shared"].startswith(b"ENSS")
    # a fresh member (same committee, holds epoch 0) restores the shared blob and continues identically
    fresh_platform = VENDORS[1].new_platform()
    fresh = Member(InProcessEnclave(fresh_platform, DEFAULT_PROGRAM, CFG))
    quotes = [m.identity["quote"] for m in (a, b, fresh)]
    update_committee((a, b, fresh), (a, b), quotes, 2, 2)
    with pytest.raises(EnclaveError, match="does not hold"):
        fresh.call("restore", blob=snap["shared"], **qc)
    share_epoch(a, [fresh], 0)
    st = fresh.call("restore", blob=snap["shared"], **qc)
    assert st["height"] == 1 and st["head_hash"] == out1["header_hash"] and st["address"] == fresh.address
    pay = net.env(alice, bob.address, value=GWEI, gas=21_000)
    req2 = batch_request(2, out1["header_hash"], l1_block=1, envelopes=[pay.envelope.encode()])
    o_a = a.call("execute_batch", **req2)
    o_f = fresh.call("execute_batch", **req2)
    assert o_a["header"] == o_f["header"] and receipt_of(o_f, pay).success
    # the local blob restores identity, keys and the never-sign-twice record on the same machine
    local = fresh.call("snapshot")["local"]
    restarted = Member(InProcessEnclave(fresh_platform, DEFAULT_PROGRAM, CFG))
    assert restarted.address != fresh.address
    st2 = restarted.call("restore", blob=local)
    assert st2["address"] == fresh.address and st2["height"] == 2 and st2["epochs_held"] == [0]
    other_req = batch_request(2, out1["header_hash"], l1_block=1, timestamp=1_900_000_000)
    other = b.call("execute_batch", **other_req)
    with pytest.raises(EnclaveError, match="second header at height 2"):
        restarted.call("verify_batch", header=other["header"], **other_req)
    # another machine cannot open the local blob; a tampered shared blob is refused
    with pytest.raises(EnclaveError, match="different platform instance"):
        b.call("restore", blob=local)
    bad = bytearray(snap["shared"])
    bad[-1] ^= 1
    with pytest.raises(EnclaveError, match="does not decrypt"):
        b.call("restore", blob=bytes(bad), **qc)


VIEW_DOMAIN = ViewDomain(CHAIN, L1_CHAIN, CFG["rollup"])


def _view_env(net: Net, acct: Any, to: str, data: bytes, *, signer: Any = None, epoch: int = 0,
              nonce: int | None = None, expiry: int | None = None, domain: ViewDomain = VIEW_DOMAIN) -> SealedRequest:
    nonce = int.from_bytes(os.urandom(8), "big") if nonce is None else nonce
    expiry = int(time.time()) + 60 if expiry is None else expiry
    td = typed_data(domain, acct.address, to, data, 0, 100_000, epoch, nonce, expiry)
    sig = Account.sign_message(encode_typed_data(full_message=td), (signer or acct).key).signature
    req = {"from": acct.address, "to": to, "data": data, "value": 0, "gas": 100_000, "epoch": epoch,
           "nonce": nonce, "expiry": expiry, "sig": bytes(sig)}
    return seal(cbor2.dumps(req), net.epoch_pub, CHAIN, 0)


def _view(m: Member, s: SealedRequest, ecall: str = "view_call") -> tuple[bytes, dict[str, Any]]:
    sealed = m.call(ecall, envelope=s.envelope.encode())["result"]
    return sealed, cbor2.loads(open_receipt(s.receipt_key, sealed))


def test_a_host_replaying_a_view_learns_nothing(funded: Any) -> None:
    """M3: the host keeps a user's view envelope and replays it to see whether the answer changed
    (deterministic sealing: equal ciphertext = equal value). Now each signed request is answered
    once, before its expiry (at most MAX_VIEW_TTL ahead), and every answer is sealed with a random
    nonce; signatures for another deployment (Rollup, L1 chain) are refused."""
    net, alice, _, _, info = funded
    _, sels = contract_code()
    m = net.members[1]
    s = _view_env(net, alice, info["contract"], sels["counter"])
    first, res = _view(m, s)
    assert res["ok"]
    replayed, res2 = _view(m, s)  # the host's replay: the same bytes, nothing changed in between
    assert replayed != first, "a replayed view gave the same ciphertext: the host learns the value did not change"
    assert not res2["ok"] and "already answered" in res2["error"] and res2["return_data"] == b""
    _, res3 = _view(m, _view_env(net, alice, info["contract"], sels["counter"], expiry=int(time.time()) - 5))
    assert not res3["ok"] and "expired" in res3["error"]
    _, res4 = _view(m, _view_env(net, alice, info["contract"], sels["counter"], expiry=int(time.time()) + 3600))
    assert not res4["ok"] and "more than 600 s ahead" in res4["error"]
    other = ViewDomain(CHAIN, L1_CHAIN, "0x" + "77" * 20)  # signed for another deployment's Rollup
    _, res5 = _view(m, _view_env(net, alice, info["contract"], sels["counter"], domain=other))
    assert not res5["ok"] and "not by 'from'" in res5["error"]
    # a fresh request (new nonce) for the same value is answered, under another random nonce
    _, res6 = _view(m, _view_env(net, alice, info["contract"], sels["counter"]))
    assert res6["ok"] and res6["return_data"] == res["return_data"]


def test_view_calls_and_gas_estimates_are_signed_and_encrypted(funded: Any) -> None:
    net, alice, bob, _, info = funded
    _, sels = contract_code()
    m = net.members[2]
    s = _view_env(net, alice, info["contract"], sels["who"])
    res = cbor2.loads(open_receipt(s.receipt_key, m.call("view_call", envelope=s.envelope.encode())["result"]))
    assert res["ok"] and res["return_data"][12:] == address_bytes(alice.address)  # msg.sender is real
    s = _view_env(net, alice, info["contract"], sels["bump"] + (500).to_bytes(32, "big"))
    res = cbor2.loads(open_receipt(s.receipt_key, m.call("view_call", envelope=s.envelope.encode())["result"]))
    assert not res["ok"] and res["error"] == "execution reverted: too big"
    s = _view_env(net, alice, info["contract"], sels["who"], signer=bob)  # bob pretends to be alice
    res = cbor2.loads(open_receipt(s.receipt_key, m.call("view_call", envelope=s.envelope.encode())["result"]))
    assert not res["ok"] and "not by 'from'" in res["error"]
    s = _view_env(net, alice, info["contract"], sels["bump"] + (5).to_bytes(32, "big"))
    res = cbor2.loads(open_receipt(s.receipt_key, m.call("estimate_gas", envelope=s.envelope.encode())["result"]))
    assert res["ok"] and 21_000 < res["gas_used"] < 100_000
    before = m.call("status")["state_root"]
    assert m.call("status")["state_root"] == before  # views change nothing
    with pytest.raises(EnclaveError, match="epoch 9"):
        m.call("view_call", envelope=seal(b"{}", net.epoch_pub, CHAIN, 9).envelope.encode())


def test_epochs_rotate_export_only_to_members_and_erase() -> None:
    net = Net(n=2)
    a, b = net.members
    alice, bob = Account.create(), Account.create()
    _, out1 = net.run(a, 1, bytes(32), l1_block=1, messages=[dep(0, alice.address, 10**18, 1)])
    b.call("verify_batch", header=out1["header"], **batch_request(1, bytes(32), l1_block=1, messages=[dep(0, alice.address, 10**18, 1)]))
    old = net.env(alice, bob.address, value=1, gas=21_000)  # sealed to epoch 0
    rot = a.call("epoch_rotate")
    assert rot["epoch"] == 1 and rot["epoch_pub"] != net.epoch_pub
    # an outsider (valid quote, not in the committee) and an unknown vendor get nothing
    outsider = Member(InProcessEnclave(VENDORS[0].new_platform(), DEFAULT_PROGRAM, CFG))
    with pytest.raises(EnclaveError, match="not a member"):
        a.call("epoch_export", epoch=1, member=outsider.identity["quote"], member_enc_pub=outsider.identity["enc_pub"])
    rogue = Member(InProcessEnclave(SimulatedVendor.generate("sgx").new_platform(), DEFAULT_PROGRAM, CFG))
    with pytest.raises(EnclaveError, match="not signed by that platform's trusted root"):
        a.call("epoch_export", epoch=1, member=rogue.identity["quote"], member_enc_pub=rogue.identity["enc_pub"])
    with pytest.raises(EnclaveError, match="not the encryption key"):
        a.call("epoch_export", epoch=1, member=b.identity["quote"], member_enc_pub=os.urandom(32))
    # b cannot run an epoch-1 batch before it has the keys; after import both agree
    req2 = batch_request(2, out1["header_hash"], epoch=1, l1_block=1, envelopes=[old.envelope.encode()])
    with pytest.raises(EnclaveError, match="does not hold that epoch"):
        b.call("execute_batch", **req2)
    share_epoch(a, [b], 1)
    o2 = a.call("execute_batch", **req2)
    assert receipt_of(o2, old).success  # epoch-0 envelope still accepted within the grace window
    assert b.call("verify_batch", header=o2["header"], **req2)["header_hash"] == o2["header_hash"]
    assert Header.decode(o2["header"]).epoch_key == rot["epoch_pub"]
    # after erasure, epoch-0 envelopes are dead, and a batch at epoch 0 cannot run
    for m in (a, b):
        assert m.call("epoch_erase", keep_from=1)["erased"] == [0]
    late = net.env(alice, bob.address, value=1, gas=21_000)
    req3 = batch_request(3, o2["header_hash"], epoch=1, l1_block=1, envelopes=[late.envelope.encode()])
    with pytest.raises(EnclaveError, match="lacks the keys of epoch 0"):
        a.call("execute_batch", **req3)  # grace 1 would accept epoch 0, which is gone
    a.call("epoch_rotate")
    share_epoch(a, [b], 2)
    req3 = batch_request(3, o2["header_hash"], epoch=2, l1_block=1, envelopes=[late.envelope.encode()])
    o3 = a.call("execute_batch", **req3)
    assert o3["receipts"][keccak256(late.envelope.encode())]== ERROR_ENTRY_PREFIX + b"epoch"
    with pytest.raises(EnclaveError, match="already holds"):
        a.call("epoch_genesis")


def test_malformed_ecalls_are_refused_and_no_secret_leaks() -> None:
    net = Net(n=2)
    a = net.members[0]
    errors: list[str] = []
    bad_calls: list[tuple[str, bytes]] = [
        ("execute_batch", b"\xff\x00garbage"),
        ("execute_batch", cbor2.dumps([1, 2, 3])),
        ("execute_batch", cbor2.dumps({"height": "one"})),
        ("execute_batch", cbor2.dumps({**batch_request(1, bytes(32)), "envelopes": "nope"})),
        ("execute_batch", cbor2.dumps({**batch_request(1, bytes(32)), "messages": [[1, 2]]})),
        ("execute_batch", cbor2.dumps(batch_request(5, bytes(32)))),
        ("execute_batch", cbor2.dumps(batch_request(1, b"\x01" * 32))),
        ("execute_batch", cbor2.dumps(batch_request(1, bytes(32), epoch=3))),
        ("verify_batch", cbor2.dumps({**batch_request(1, bytes(32)), "header": b"short"})),
        ("accept_header", cbor2.dumps({"header": bytes(416), "signatures": [b"\x00" * 65]})),
        ("rollback", cbor2.dumps({"height": 3})),
        ("restore", cbor2.dumps({"blob": b"ENSS\x01" + bytes(40)})),
        ("restore", cbor2.dumps({"blob": os.urandom(100)})),
        ("epoch_import", cbor2.dumps({"bundle": os.urandom(50)})),
        ("view_call", cbor2.dumps({"envelope": b"\x01"})),
        ("committee", cbor2.dumps({"members": [b"not a quote"], "quorum": 1, "min_types": 1})),
        ("no_such_call", b""),
        ("status", b"\x9f" * 100_000),
    ]
    for method, payload in bad_calls:
        with pytest.raises(EnclaveError) as ei:
            a.handle.ecall(method, payload)
        msg = str(ei.value)
        assert "internal enclave error" not in msg, (method, msg)
        errors.append(msg)
    assert a.call("status")["height"] == 0  # nothing moved
    leaked = a.handle._server.program.compromised_export()  # type: ignore[attr-defined]
    secrets = [leaked["signing_key_hex"], leaked["enc_key_hex"]] + [
        v for keys in leaked["epochs"].values() for v in keys.values()
    ]
    assert recover_address(keccak256(b"x"), Account._sign_hash(keccak256(b"x"), leaked["signing_key"]).signature) == a.address
    for msg in errors:
        assert not any(s in msg.lower() for s in secrets)
    assert not any(s in repr(a.handle._server.program) for s in secrets)  # type: ignore[attr-defined]


def test_an_envelope_sealed_to_the_wrong_key_or_chain_is_an_error_entry() -> None:
    net = Net(n=2)
    alice = Account.create()
    foreign = seal(sign_tx(bytes(alice.key), CHAIN, 0, alice.address, gas=21_000), os.urandom(32), CHAIN, 0)
    other_chain = seal(sign_tx(bytes(alice.key), CHAIN, 0, alice.address, gas=21_000), net.epoch_pub, CHAIN + 1, 0)
    req, out = net.run(net.members[0], 1, bytes(32), envelopes=[foreign.envelope.encode(), other_chain.envelope.encode()])
    for s in (foreign, other_chain):
        e = out["receipts"][keccak256(s.envelope.encode())]
        assert e == ERROR_ENTRY_PREFIX + b"decrypt"
    assert Envelope.decode(foreign.envelope.encode()).epoch == 0
    assert net.members[1].call("verify_batch", header=out["header"], **req)["header_hash"] == out["header_hash"]


def test_random_payloads_never_crash_the_program() -> None:
    """Bounded fuzz (fixed seed): random CBOR fields into every ecall give refusals, never internal errors."""
    import random

    rng = random.Random(3)
    net = Net(n=2)
    a = net.members[0]
    methods = sorted(a.handle._server.program._handlers)  # type: ignore[attr-defined]
    names = ["height", "prev_hash", "epoch", "l1_block", "timestamp", "messages", "envelopes", "header",
             "signatures", "blob", "bundle", "envelope", "members", "quorum", "min_types", "member",
             "member_enc_pub", "keep_from", "reset"]

    def value(depth: int = 0) -> Any:
        c = rng.randrange(9 if depth < 3 else 6)
        if c == 0:
            return rng.randrange(-5, 2**70)
        if c == 1:
            return os.urandom(rng.choice([0, 1, 20, 32, 65, 416, 100]))
        if c in (2, 3, 4, 5):
            return ["x", None, 1.5, True][c - 2]
        if c in (6, 7):
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        return {rng.choice(names): value(depth + 1) for _ in range(rng.randrange(5))}

    for _ in range(600):
        method = rng.choice(methods)
        if method in ("epoch_rotate", "epoch_erase", "epoch_genesis"):
            continue
        fields = batch_request(1, bytes(32)) if rng.random() < 0.5 else {}
        for _ in range(rng.randrange(1, 4)):
            fields[rng.choice(names)] = value()
        payload = cbor2.dumps(fields) if rng.random() < 0.9 else os.urandom(rng.randrange(40))
        try:
            a.handle.ecall(method, payload)
        except EnclaveError as exc:
            assert "internal enclave error" not in str(exc), (method, str(exc))
    assert a.call("status")["address"] == a.address
