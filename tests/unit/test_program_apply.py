"""apply_batch with a state diff: a member outside the QC adopts a QC'd batch without re-executing.

In-process committee of three members of different vendors (quorum 2 of 2 types): the
proposer executes (and exports its sealed diff), one voter re-executes and signs, the third
member only applies the diff -- and must end in exactly the state re-execution gives (same roots,
and it goes on to propose a batch the others accept). A diff that is tampered with, for another
header, wrong (from a compromised proposer holding the epoch key) or paired with the wrong batch
data is refused and changes nothing.
"""

from __future__ import annotations

import os
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_account import Account

from enclavenet.crypto.envelope import SealedRequest, seal
from enclavenet.crypto.hashing import address_bytes, keccak256
from enclavenet.crypto.header import Header
from enclavenet.enclave.contract_keys import KEY_POLICY_ADDRESS
from enclavenet.enclave.diff import BatchDiff, DiffError
from enclavenet.enclave.harness import Member, batch_request, form_committee, program_config
from enclavenet.enclave.program import DIFF_MAGIC, DIFF_SUBKEY
from enclavenet.enclave.state import AccountChange
from enclavenet.enclave.tx import sign_tx
from enclavenet.tee import DEFAULT_PROGRAM, EnclaveError, InProcessEnclave, SimulatedVendor

CHAIN = 4242
VENDORS = [SimulatedVendor.generate(n) for n in ("sgx", "tdx", "sev-snp")]
CFG = program_config(VENDORS, chain_id=CHAIN)
WITHDRAW = "0x00000000000000000000000000000000000057d0"

TOKEN = """
# pragma version ^0.4.0
balanceOf: public(HashMap[address, uint256])
@deploy
def __init__(supply: uint256):
    self.balanceOf[msg.sender] = supply
@external
def transfer(to: address, amount: uint256) -> bool:
    self.balanceOf[msg.sender] -= amount
    self.balanceOf[to] += amount
    return True
"""


def token_code() -> bytes:
    import vyper

    return bytes.fromhex(vyper.compile_code(TOKEN, output_formats=["bytecode"])["bytecode"][2:])


class Committee:
    def __init__(self) -> None:
        self.m = [Member(InProcessEnclave(v.new_platform(), DEFAULT_PROGRAM, CFG)) for v in VENDORS]
        self.epoch_pub = form_committee(self.m, 2, 2)
        self.nonces: dict[str, int] = {}
        self.height = 0
        self.prev = bytes(32)
        self.msgs = 0
        self.ts = 1_700_000_000
        self.l1_block = 0

    def env(self, acct: Any, to: str | None, data: bytes = b"", value: int = 0, gas: int = 200_000) -> SealedRequest:
        n = self.nonces.get(acct.address, 0)
        self.nonces[acct.address] = n + 1
        return seal(sign_tx(bytes(acct.key), CHAIN, n, to, data, value, gas), self.epoch_pub, CHAIN, 0)

    def propose(self, proposer: int, envelopes: list[bytes], deposits: list[tuple[str, int]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
        h = self.height + 1
        msgs = [[self.msgs + i, 1, who, v, h, b""] for i, (who, v) in enumerate(deposits)]
        self.ts += 2
        l1_block = h if msgs else self.l1_block
        req = batch_request(h, self.prev, l1_block=l1_block, timestamp=self.ts, messages=msgs, envelopes=envelopes)
        out = self.m[proposer].call("execute_batch", with_diff=True, **req)
        return {"req": req, "out": out, "proposer": proposer}

    def vote(self, p: dict[str, Any], voter: int) -> list[bytes]:
        v = self.m[voter].call("verify_batch", header=p["out"]["header"], **p["req"])
        return [p["out"]["signature"], v["signature"]]

    def done(self, p: dict[str, Any]) -> None:
        self.height += 1
        self.prev = p["out"]["header_hash"]
        self.msgs += len(p["req"]["messages"])
        self.l1_block = p["req"]["l1_block"]

    def apply(self, member: int, p: dict[str, Any], sigs: list[bytes], **over: Any) -> dict[str, Any]:
        payload = {"header": p["out"]["header"], "signatures": sigs, "diff": p["out"]["diff"],
                   "batch_data": p["out"]["batch_data"]}
        payload.update(over)
        return self.m[member].call("apply_batch", **payload)

    def accept(self, member: int, p: dict[str, Any], sigs: list[bytes]) -> None:
        self.m[member].call("accept_header", header=p["out"]["header"], signatures=sigs)

    def program(self, i: int) -> Any:
        return self.m[i].handle._server.program  # type: ignore[attr-defined]


def roots(m: Member) -> tuple[Any, ...]:
    st = m.call("status")
    return (st["height"], st["head_hash"], st["state_root"], st["balances_root"], st["msg_count"], st["msg_acc"],
            st["timestamp"], st["l1_block"], st["finalized_height"])


@pytest.fixture(scope="module")
def chain() -> tuple[Committee, list[Any], str]:
    """Height 1: deposits + a token deploy; height 2: transfers, a withdrawal (proposer 0, voter 1,
    member 2 applies both diffs)."""
    c = Committee()
    alice, bob, carol = Account.create(), Account.create(), Account.create()
    deploy = c.env(alice, None, data=token_code() + (10**24).to_bytes(32, "big"), gas=3_000_000)
    p1 = c.propose(0, [deploy.envelope.encode()], [(alice.address, 10**18), (bob.address, 5 * 10**17)])
    sigs = c.vote(p1, 1)
    c.accept(0, p1, sigs)
    c.accept(1, p1, sigs)
    c.apply(2, p1, sigs)
    assert roots(c.m[2]) == roots(c.m[1])
    c.done(p1)
    token = "0x" + keccak256(bytes([0xD6, 0x94]) + address_bytes(alice.address) + b"\x80")[12:].hex()
    sel = keccak256(b"transfer(address,uint256)")[:4]
    envs = [c.env(alice, token, sel + address_bytes(x.address).rjust(32, b"\0") + (7 + i).to_bytes(32, "big")).envelope.encode()
            for i, x in enumerate([bob, carol, bob])]
    envs.append(c.env(bob, WITHDRAW, value=10**15, gas=21_000).envelope.encode())
    envs.append(c.env(bob, carol.address, value=3 * 10**15, gas=21_000).envelope.encode())
    # a per-contract state key policy for the token (contract_keys.py): rotate every execution
    policy = address_bytes(token) + (1).to_bytes(8, "big") + b"\x01" + (0).to_bytes(8, "big")
    envs.append(c.env(alice, "0x" + KEY_POLICY_ADDRESS.hex(), data=policy, gas=50_000).envelope.encode())
    p2 = c.propose(0, envs)
    return c, [p2, c.vote(p2, 1)], token


def test_applied_state_equals_reexecuted_state_and_the_applier_proposes_next(chain: Any) -> None:
    c, (p2, sigs2), token = chain
    c.accept(0, p2, sigs2)
    c.accept(1, p2, sigs2)
    before = c.program(2).stats.n.get("execute", 0)
    c.apply(2, p2, sigs2)
    assert c.program(2).stats.n.get("execute", 0) == before  # nothing was re-executed
    assert c.program(2).stats.n.get("apply_diff", 0) == 2
    assert roots(c.m[2]) == roots(c.m[1]) == roots(c.m[0])
    assert c.m[2].call("status")["finalized_height"] == 2
    chains = [c.program(i)._ex.contract_key_chain(token) for i in range(3)]
    assert chains[0] is not None and chains[0].keys  # the policy took effect, a key was drawn
    assert all((x.every_n, x.keep_history, x.count, x.rotation, x.keys) == (chains[0].every_n, chains[0].keep_history,
               chains[0].count, chains[0].rotation, chains[0].keys) for x in chains if x is not None)
    assert None not in chains
    c.done(p2)
    # the applier's state is complete (pyrevm's database too): it proposes height 3, the others agree
    dave = Account.create()
    sel = keccak256(b"transfer(address,uint256)")[:4]
    p3 = c.propose(2, [c.env(dave, WITHDRAW, value=1, gas=21_000).envelope.encode(),
                       c.env(dave, token, sel + bytes(32) + (1).to_bytes(32, "big")).envelope.encode()],
                   [(dave.address, 10**16)])
    for v in (0, 1):
        out = c.m[v].call("verify_batch", header=p3["out"]["header"], **p3["req"])
        assert out["header_hash"] == p3["out"]["header_hash"]
    rot = {c.program(i)._ex.contract_key_chain(token).rotation for i in range(3)}
    assert len(rot) == 1 and rot.pop() >= 1  # the transfer to the token rotated its key on every member


def _fresh_pair() -> tuple[Committee, dict[str, Any], list[bytes]]:
    c = Committee()
    alice = Account.create()
    p = c.propose(0, [c.env(alice, alice.address, value=1, gas=21_000).envelope.encode()], [(alice.address, 10**18)])
    return c, p, c.vote(p, 1)


def _forge(c: Committee, p: dict[str, Any], diff: BatchDiff, header_hash: bytes | None = None) -> bytes:
    """What a compromised proposer enclave (it holds the epoch state key) could seal."""
    key = c.program(0)._epochs.state_subkey(0, DIFF_SUBKEY)
    nonce = os.urandom(12)
    aad = DIFF_MAGIC + (header_hash or Header.decode(p["out"]["header"]).hash())
    return nonce + AESGCM(key).encrypt(nonce, diff.encode(), aad)


def test_wrong_tampered_or_mismatched_diffs_are_refused_and_change_nothing() -> None:
    c, p, sigs = _fresh_pair()
    before = roots(c.m[2])
    real = c.program(0)._ex.last_diff
    assert isinstance(real, BatchDiff) and real.accounts
    # 1. a bit flipped in the sealed blob
    bad = bytearray(p["out"]["diff"])
    bad[-1] ^= 1
    with pytest.raises(EnclaveError, match="does not decrypt"):
        c.apply(2, p, sigs, diff=bytes(bad))
    # 2. a well-sealed but wrong diff (compromised proposer): one balance changed
    a, ch = next(iter(real.accounts.items()))
    wrong = BatchDiff({**real.accounts, a: AccountChange(ch.nonce, ch.balance + 1, ch.code_hash, ch.code)},
                      real.storage, real.wiped, real.withdrawal_queue, real.queue_senders)
    with pytest.raises(EnclaveError, match="state/balances root"):
        c.apply(2, p, sigs, diff=_forge(c, p, wrong))
    assert roots(c.m[2]) == before
    # 3. a diff that leaves out a change
    with pytest.raises(EnclaveError, match="state/balances root"):
        c.apply(2, p, sigs, diff=_forge(c, p, BatchDiff()))
    assert roots(c.m[2]) == before
    # 4. the right diff, sealed for another header
    with pytest.raises(EnclaveError, match="does not decrypt"):
        c.apply(2, p, sigs, diff=_forge(c, p, real, header_hash=keccak256(b"another header")))
    # 5. batch data that is not the header's (one receipt entry changed)
    items = cbor2.loads(p["out"]["batch_data"])
    items[-1] = items[-1][:-1] + bytes([items[-1][-1] ^ 1])
    with pytest.raises(EnclaveError, match="batch data does not match"):
        c.apply(2, p, sigs, batch_data=cbor2.dumps(items))
    # 6. no QC
    with pytest.raises(EnclaveError, match=r"QC|signature|quorum"):
        c.apply(2, p, sigs[:1])
    assert roots(c.m[2]) == before
    # after all that, the real diff still applies
    c.apply(2, p, sigs)
    assert roots(c.m[2])[:8] == roots(c.m[1])[:8] and roots(c.m[2])[8] == 1


def test_a_header_that_does_not_extend_the_head_is_refused() -> None:
    c, p1, s1 = _fresh_pair()
    c.accept(0, p1, s1)
    c.accept(1, p1, s1)
    c.done(p1)
    p2 = c.propose(0, [], [(Account.create().address, 5)])
    s2 = c.vote(p2, 1)
    with pytest.raises(EnclaveError, match="does not extend"):
        c.apply(2, p2, s2)  # member 2 never got height 1
    c.apply(2, p1, s1)
    c.apply(2, p2, s2)
    c.accept(0, p2, s2)
    assert roots(c.m[2]) == roots(c.m[0])


def test_diff_codec_refuses_malformed_input() -> None:
    d = BatchDiff({b"\x01" * 20: AccountChange(1, 987654321, keccak256(b""))}, {b"\x02" * 20: {1: 2, 3: 0}},
                  {b"\x03" * 20})
    assert BatchDiff.decode(d.encode()).encode() == d.encode()
    assert "slots=2" in repr(d) and "987654321" not in repr(d)  # balances never in a repr
    for bad in (b"\xff", cbor2.dumps({"v": 2}), cbor2.dumps({"v": 1, "accounts": [[b"x", 1, 2, b"", None]]})):
        with pytest.raises(DiffError):
            BatchDiff.decode(bad)
    m = cbor2.loads(d.encode())
    m["accounts"][0][4] = b"not the code"  # code that does not hash to the code hash
    with pytest.raises(DiffError, match="code"):
        BatchDiff.decode(cbor2.dumps(m))
    m = cbor2.loads(d.encode())
    m["storage"][0][1] = [1, 1 << 256]
    with pytest.raises(DiffError, match="uint256"):
        BatchDiff.decode(cbor2.dumps(m))
