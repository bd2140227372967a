"""Fuzz, differential: the enclave's EVM (enclave/executor.py: pyrevm under the confidential
state layer, signed EnclaveNet transactions) against the plain L1 EVM (the embedded L1:
eth-tester on py-evm, another EVM implementation) on Hypothesis-generated transaction sequences
for the example contracts (examples/token_vyper Token.vy, examples/counter Counter.sol: a chain
of two counters calling each other).

Both sides deploy the same creation code from the same development accounts (so the contracts
get the same addresses), then run the same sequence of calls (transfer, approve, transferFrom,
bump, each with amounts around and past the balances, allowances and uint256 limits; some from
accounts that hold nothing). Per call: the same success, the same return data (on L1: the
``eth_call`` just before the transaction; a reverted call is not sent there) and the same logs.
After the sequence: every storage-visible result (balanceOf of each account, every allowance,
totalSupply, both counts and nextCount) equal on both.

Each example starts from the deployed state: the L1 reverts to a snapshot, the Executor aborts
its open batch. What is not compared: gas (the schedules differ: shanghai in the enclave, the
L1's fork in py-evm) and native balances (the L1 charges fees, EnclaveNet does not).
"""

from __future__ import annotations

from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from examples.common import artifact
from hexbytes import HexBytes
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit._fuzz import examples
from web3.exceptions import ContractLogicError

from enclavenet.chain import EmbeddedL1
from enclavenet.crypto.hashing import keccak256, to_checksum
from enclavenet.enclave.executor import BlockInfo, Executor
from enclavenet.enclave.tx import decode_tx, sign_tx

try:
    from eth_tester.exceptions import TransactionFailed

    REVERTS: tuple[type[Exception], ...] = (ContractLogicError, TransactionFailed)
except ImportError:  # pragma: no cover
    REVERTS = (ContractLogicError,)

GAS = 1_000_000
TOKEN = artifact("token_vyper", "Token")
COUNTER = artifact("counter", "Counter")
SUPPLY = 10**6
USERS = 3


def _sel(sig: str) -> bytes:
    return keccak256(sig.encode())[:4]


class Sides:
    """The two EVMs, each with the token and the two counters deployed."""

    def __init__(self) -> None:
        self.l1 = EmbeddedL1()
        self.accounts = self.l1.accounts[:USERS]
        self.addrs = [bytes.fromhex(a.address[2:]) for a in self.accounts]
        self.ex = Executor(self.l1.chain_id)
        self.nonces = [0] * USERS
        self.ex.begin_batch(BlockInfo(1, 1_700_000_000))
        for a in self.addrs:
            self.ex.credit(a, 10**20)
        self.token = self._deploy(0, TOKEN.deploy_code("Fuzz", "FZ", 18, SUPPLY))
        self.c1 = self._deploy(0, COUNTER.deploy_code("0x" + "00" * 20))
        self.c2 = self._deploy(0, COUNTER.deploy_code("0x" + self.c1.hex()))
        self.ex.end_batch()
        self.snapshot = self.l1.snapshot()
        self.height = 2

    def _deploy(self, who: int, code: bytes) -> bytes:
        r = self.ex.execute(decode_tx(self._raw(who, None, code), self.l1.chain_id))
        assert r.success and r.contract_address, r
        tx = self.l1.w3.eth.send_transaction({"from": self.accounts[who].address, "data": HexBytes(code), "gas": 3_000_000})
        rc = self.l1.w3.eth.wait_for_transaction_receipt(tx)
        assert rc["status"] == 1 and bytes(HexBytes(rc["contractAddress"])) == r.contract_address, \
            "the same creation from the same account must give the same address"
        return r.contract_address

    def _raw(self, who: int, to: bytes | None, data: bytes) -> bytes:
        raw = sign_tx(bytes(self.accounts[who].key), self.l1.chain_id, self.nonces[who], to, data, 0, GAS if to else 3_000_000)
        self.nonces[who] += 1
        return raw

    # -- one example ---------------------------------------------------------------------------
    def begin(self) -> None:
        self.l1.revert(self.snapshot)
        self.snapshot = self.l1.snapshot()
        self.saved_nonces = list(self.nonces)
        self.ex.begin_batch(BlockInfo(self.height, 1_700_000_012))

    def end(self) -> None:
        self.ex.abort_batch()
        self.nonces = self.saved_nonces

    def send(self, who: int, to: bytes, data: bytes) -> None:
        """The same call on both sides: same success, return data and logs."""
        r = self.ex.execute(decode_tx(self._raw(who, to, data), self.l1.chain_id))
        tx = {"from": self.accounts[who].address, "to": to_checksum(to), "data": HexBytes(data), "gas": GAS}
        try:
            out = bytes(self.l1.w3.eth.call(tx))  # type: ignore[arg-type]
        except REVERTS:
            assert not r.success, f"the L1 reverts {data[:4].hex()} from {who}, the enclave EVM succeeded"
            return
        assert r.success, f"the enclave EVM refused {data[:4].hex()} from {who} ({r.error}), the L1 ran it"
        assert r.output == out, (r.output.hex(), out.hex())
        rc = self.l1.w3.eth.wait_for_transaction_receipt(self.l1.w3.eth.send_transaction(tx))  # type: ignore[arg-type]
        assert rc["status"] == 1
        l1_logs = [(bytes(HexBytes(lg["address"])), [bytes(t) for t in lg["topics"]], bytes(lg["data"])) for lg in rc["logs"]]
        assert [(lg.address, list(lg.topics), lg.data) for lg in r.logs] == l1_logs

    def view(self, to: bytes, data: bytes) -> tuple[bool, bytes]:
        mine = self.ex.call(self.addrs[0], to, data)
        try:
            theirs = (True, bytes(self.l1.w3.eth.call({"from": self.accounts[0].address, "to": to_checksum(to),
                                                       "data": HexBytes(data)})))
        except REVERTS:
            theirs = (False, b"")
        assert (mine.success, mine.output if mine.success else b"") == theirs, (data.hex(), mine, theirs)
        return theirs

    def compare_state(self, pairs: set[tuple[int, int]] | None = None) -> dict[str, int]:
        """Every storage-visible result (the allowances of ``pairs``: those the sequence can have
        set; None: all). An eth_call costs ~20 ms on py-evm: this is most of the target's time."""
        seen: dict[str, int] = {}
        for i, a in enumerate(self.addrs):
            _ok, out = self.view(self.token, _sel("balanceOf(address)") + abi_encode(["address"], [a]))
            seen[f"balance{i}"] = abi_decode(["uint256"], out)[0]
        for i, j in sorted(pairs) if pairs is not None else [(i, j) for i in range(USERS) for j in range(USERS)]:
            data = _sel("allowance(address,address)") + abi_encode(["address", "address"], [self.addrs[i], self.addrs[j]])
            seen[f"allowance{i}{j}"] = abi_decode(["uint256"], self.view(self.token, data)[1])[0]
        for name, c in (("c1", self.c1), ("c2", self.c2)):
            seen[name] = abi_decode(["uint256"], self.view(c, _sel("count()"))[1])[0]
        seen["next"] = abi_decode(["uint256"], self.view(self.c2, _sel("nextCount()"))[1])[0]
        seen["supply"] = abi_decode(["uint256"], self.view(self.token, _sel("totalSupply()"))[1])[0]
        return seen


_sides: Sides | None = None


def sides() -> Sides:
    global _sides
    if _sides is None:
        _sides = Sides()
    return _sides


amounts = st.one_of(st.integers(0, SUPPLY + 10), st.sampled_from([0, 1, SUPPLY, SUPPLY + 1, 2**255, 2**256 - 1]))
user = st.integers(0, USERS - 1)
ops = st.one_of(
    st.tuples(st.just("transfer"), user, user, amounts),
    st.tuples(st.just("approve"), user, user, amounts),
    st.tuples(st.just("transferFrom"), user, user, user, amounts),
    st.tuples(st.just("bump"), user, st.sampled_from(["c1", "c2"]), st.one_of(st.integers(0, 5), st.sampled_from([2**255, 2**256 - 1]))),
    st.tuples(st.just("raw"), user, st.sampled_from(["token", "c1", "c2"]), st.binary(max_size=72)),
)


def _call(s: Sides, op: tuple[Any, ...]) -> None:
    kind, who = op[0], op[1]
    a = s.addrs
    if kind == "transfer":
        s.send(who, s.token, _sel("transfer(address,uint256)") + abi_encode(["address", "uint256"], [a[op[2]], op[3]]))
    elif kind == "approve":
        s.send(who, s.token, _sel("approve(address,uint256)") + abi_encode(["address", "uint256"], [a[op[2]], op[3]]))
    elif kind == "transferFrom":
        s.send(who, s.token, _sel("transferFrom(address,address,uint256)")
               + abi_encode(["address", "address", "uint256"], [a[op[2]], a[op[3]], op[4]]))
    elif kind == "bump":
        s.send(who, s.c1 if op[2] == "c1" else s.c2, _sel("bump(uint256)") + abi_encode(["uint256"], [op[3]]))
    else:  # raw calldata: unknown selectors, short arguments
        s.send(who, {"token": s.token, "c1": s.c1, "c2": s.c2}[op[2]], op[3])


def test_the_deployed_state_agrees() -> None:
    s = sides()
    s.begin()
    try:
        assert s.compare_state()["balance0"] == SUPPLY
    finally:
        s.end()


@settings(max_examples=examples(20))
@given(st.lists(ops, min_size=1, max_size=5))
def test_transaction_sequences_agree(seq: list[tuple[Any, ...]]) -> None:
    s = sides()
    s.begin()
    try:
        for op in seq:
            _call(s, op)
        # approve(owner=who, spender=op[2]); transferFrom(spender=who, owner=op[2])
        pairs = {(op[1], op[2]) for op in seq if op[0] == "approve"} | {(op[2], op[1]) for op in seq if op[0] == "transferFrom"}
        s.compare_state(pairs)
    finally:
        s.end()
