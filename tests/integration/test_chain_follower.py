"""EventFollower on both backends: confirmation depth, exactly-once delivery in chain order,
reorganisations within and beyond the confirmation depth, resuming from a cursor.

The ground truth is always the chain itself: after every scenario, the events the follower
returned, minus the ones it retracted in Reorg reports, must be exactly the canonical chain's
events up to the confirmed height -- each once, none lost.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
import vyper
from web3.contract import Contract

from enclavenet.chain import L1, Cursor, Event, EventFollower, Reorg, ReorgTooDeep, RpcL1, TxSender

EMITTER = """
event Ping:
    who: indexed(address)
    n: uint256

event Pong:
    n: uint256

@external
def ping(n: uint256, times: uint256):
    for i: uint256 in range(times, bound=8):
        log Ping(who=msg.sender, n=n + i)

@external
def pong(n: uint256):
    log Pong(n=n)
"""


@pytest.fixture(scope="module")
def emitter_artifact() -> dict:
    return vyper.compile_code(EMITTER, output_formats=["abi", "bytecode"])


@pytest.fixture
def emitter(l1: L1, emitter_artifact: dict) -> tuple[Contract, TxSender]:
    sender = l1.sender(0)
    address = sender.deploy(emitter_artifact["abi"], emitter_artifact["bytecode"])
    return l1.w3.eth.contract(address=address, abi=emitter_artifact["abi"]), sender


class Ledger:
    """What a consumer of the follower holds: events added, minus events retracted."""

    def __init__(self, follower: EventFollower) -> None:
        self.follower = follower
        self.held: dict[tuple[bytes, int], Event] = {}
        self.ever: Counter[tuple[bytes, int]] = Counter()
        self.reorgs: list[Reorg] = []
        follower.on_reorg = self._on_reorg

    def _on_reorg(self, reorg: Reorg) -> None:
        self.reorgs.append(reorg)
        for event in reorg.removed:
            assert event.key in self.held, "retracted an event that was never handed out"
            del self.held[event.key]

    def poll(self) -> list[Event]:
        events = self.follower.poll()
        positions = [e.position for e in events]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
        if self.held and events:
            assert events[0].position > max(e.position for e in self.held.values())
        for event in events:
            self.ever[event.key] += 1
            assert self.ever[event.key] == 1, f"event {event.position} handed out twice"
            self.held[event.key] = event
        return events

    def check(self, l1: L1, contract: Contract, names: tuple[str, ...] = ("Ping", "Pong")) -> None:
        """Held events == the canonical chain's events up to the confirmed height."""
        confirmed = l1.block_number() - self.follower.confirmations
        self.poll()
        confirmed = min(confirmed, self.follower.next_block - 1)
        truth = set()
        if confirmed >= 0:
            for name in names:
                for log in contract.events[name]().get_logs(from_block=0, to_block=confirmed):
                    truth.add((bytes(log["blockHash"]), log["logIndex"]))
        assert set(self.held) == truth


def test_events_in_order_exactly_once(l1: L1, emitter: tuple[Contract, TxSender]) -> None:
    contract, sender = emitter
    follower = EventFollower(l1, contract, ["Ping"], start_block=l1.block_number())
    assert follower.poll() == []
    sender.transact(contract.functions.ping(10, 3))
    sender.transact(contract.functions.pong(7))  # not followed
    sender.transact(contract.functions.ping(20, 1))
    events = follower.poll()
    assert [(e.name, e.args["n"]) for e in events] == [
        ("Ping", 10),
        ("Ping", 11),
        ("Ping", 12),
        ("Ping", 20),
    ]
    assert events[0].args["who"] == sender.address
    assert follower.poll() == []
    assert follower.cursor == Cursor(
        l1.block_number(), l1.w3.eth.get_block("latest")["hash"].to_0x_hex()
    )
    both = EventFollower(l1, contract)  # all events, from genesis
    assert [e.name for e in both.poll()] == ["Ping"] * 3 + ["Pong", "Ping"]


def test_confirmation_depth(l1: L1, emitter: tuple[Contract, TxSender]) -> None:
    contract, sender = emitter
    follower = EventFollower(l1, contract, confirmations=3)
    sender.transact(contract.functions.ping(1, 1))
    assert follower.poll() == []
    l1.mine(2)
    assert follower.poll() == []
    l1.mine(1)
    assert [e.args["n"] for e in follower.poll()] == [1]
    assert follower.cursor.block_number == l1.block_number() - 3


def test_reorg_within_confirmation_depth_is_invisible(
    l1: L1, emitter: tuple[Contract, TxSender]
) -> None:
    contract, sender = emitter
    ledger = Ledger(EventFollower(l1, contract, confirmations=3))
    sender.transact(contract.functions.ping(1, 2))
    l1.mine(3)
    assert len(ledger.poll()) == 2
    sender.transact(contract.functions.ping(100, 1))  # will be dropped
    sender.transact(contract.functions.ping(200, 1))  # will be dropped
    ledger.poll()
    l1.rollback(2)  # both pings gone, never confirmed
    sender.transact(contract.functions.ping(300, 2))
    l1.mine(3)
    ledger.check(l1, contract)
    assert ledger.reorgs == []
    assert sorted(e.args["n"] for e in ledger.held.values()) == [1, 2, 300, 301]


def test_reorg_beyond_confirmation_depth_retracts_and_rereads(
    l1: L1, emitter: tuple[Contract, TxSender]
) -> None:
    contract, sender = emitter
    ledger = Ledger(EventFollower(l1, contract, confirmations=1))
    for n in range(5):
        sender.transact(contract.functions.ping(n, 1))
    l1.mine(1)
    assert [e.args["n"] for e in ledger.poll()] == [0, 1, 2, 3, 4]
    head = l1.block_number()
    l1.rollback(4)  # drops the empty block and pings 2, 3, 4
    sender.transact(contract.functions.ping(50, 2))
    sender.transact(contract.functions.pong(60))
    l1.mine(2)
    ledger.check(l1, contract)
    (reorg,) = ledger.reorgs
    assert [e.args["n"] for e in reorg.removed] == [2, 3, 4]
    assert reorg.fork_block <= head - 4 and reorg.replaced_to == head - 1
    names = sorted((e.name, e.args["n"]) for e in ledger.held.values())
    assert names == [("Ping", 0), ("Ping", 1), ("Ping", 50), ("Ping", 51), ("Pong", 60)]


def test_revert_to_a_snapshot_then_a_different_history(
    l1: L1, emitter: tuple[Contract, TxSender]
) -> None:
    contract, sender = emitter
    ledger = Ledger(EventFollower(l1, contract, confirmations=2))
    sender.transact(contract.functions.ping(1, 1))
    snap = l1.snapshot()
    for n in (2, 3, 4):
        sender.transact(contract.functions.ping(n, 2))
    l1.mine(2)
    assert [e.args["n"] for e in ledger.poll()] == [1, 2, 3, 3, 4, 4, 5]
    l1.revert(snap)  # pings 2..4 gone (beyond the confirmation depth)
    sender.transact(contract.functions.pong(9))
    l1.mine(2)
    ledger.check(l1, contract)
    (reorg,) = ledger.reorgs
    assert [e.args["n"] for e in reorg.removed] == [2, 3, 3, 4, 4, 5]
    assert sorted((e.name, e.args["n"]) for e in ledger.held.values()) == [("Ping", 1), ("Pong", 9)]


def test_same_height_reorg_of_empty_blocks(l1: L1, emitter: tuple[Contract, TxSender]) -> None:
    """A reorg that keeps the height (new hashes, no events) is still found and rewound."""
    contract, sender = emitter
    ledger = Ledger(EventFollower(l1, contract))
    sender.transact(contract.functions.ping(1, 1))
    sender.transact(contract.functions.ping(2, 1))
    assert len(ledger.poll()) == 2
    l1.reorg(1)  # replaces the block of ping 2 with an empty one
    ledger.check(l1, contract)
    assert [e.args["n"] for e in ledger.reorgs[0].removed] == [2]
    assert [e.args["n"] for e in ledger.held.values()] == [1]


def test_reorg_while_a_poll_reads(l1: L1, emitter: tuple[Contract, TxSender]) -> None:
    """The chain changes between the reads of one poll (small ranges): no mixed history."""
    contract, sender = emitter
    follower = EventFollower(l1, contract, max_range=2)
    ledger = Ledger(follower)
    for n in range(6):
        sender.transact(contract.functions.ping(n, 1))
    real_logs = follower._logs
    calls = 0

    def logs_then_reorg(first: int, last: int) -> list:
        nonlocal calls
        calls += 1
        result = real_logs(first, last)
        if calls == 2:  # after reading the second range, the chain changes under us
            l1.rollback(4)
            sender.transact(contract.functions.ping(77, 3))
        return result

    follower._logs = logs_then_reorg  # type: ignore[method-assign]
    ledger.poll()
    follower._logs = real_logs  # type: ignore[method-assign]
    ledger.check(l1, contract)
    assert 77 in [e.args["n"] for e in ledger.held.values()]


def test_resume_from_cursor(l1: L1, emitter: tuple[Contract, TxSender]) -> None:
    contract, sender = emitter
    first = EventFollower(l1, contract)
    sender.transact(contract.functions.ping(1, 2))
    assert len(first.poll()) == 2
    saved = first.cursor.to_dict()
    sender.transact(contract.functions.ping(3, 1))
    resumed = EventFollower(l1, contract, cursor=Cursor.from_dict(saved))
    assert [e.args["n"] for e in resumed.poll()] == [3]
    # a cursor whose block was replaced cannot be resumed from: say so, lose nothing silently
    stale = EventFollower(l1, contract, cursor=resumed.cursor)
    l1.reorg(1)
    with pytest.raises(ReorgTooDeep, match="restart it from an earlier block"):
        stale.poll()


def test_reorg_deeper_than_history(l1: L1, emitter: tuple[Contract, TxSender]) -> None:
    contract, sender = emitter
    follower = EventFollower(l1, contract, history=2)
    for n in range(6):
        sender.transact(contract.functions.ping(n, 1))
    follower.poll()
    l1.reorg(5)
    with pytest.raises(ReorgTooDeep, match="history=2"):
        follower.poll()


@pytest.mark.parametrize(("seed", "confirmations"), [(1, 0), (2, 1), (3, 3), (5, 1)])
def test_random_reorgs_lose_nothing_and_repeat_nothing(
    l1: L1, emitter: tuple[Contract, TxSender], seed: int, confirmations: int
) -> None:
    """Random emits, empty blocks, reorgs and rollbacks (within and beyond the confirmation
    depth), with polls in between; the ledger always matches the chain."""
    contract, sender = emitter
    rng = random.Random(seed)
    ledger = Ledger(EventFollower(l1, contract, confirmations=confirmations, history=64))
    floor = l1.block_number()  # never reorganise the deployment away
    for step in range(40):
        op = rng.random()
        if op < 0.45:
            sender.transact(contract.functions.ping(step * 10, rng.randint(0, 3)))
        elif op < 0.6:
            l1.mine(rng.randint(1, 3))
        elif op < 0.75:
            l1.reorg(min(rng.randint(1, 6), l1.block_number() - floor))
        elif op < 0.85:
            l1.rollback(min(rng.randint(1, 6), l1.block_number() - floor))
            sender.transact(contract.functions.pong(step))
        if rng.random() < 0.5:
            ledger.poll()
    ledger.check(l1, contract)
    # these seeds do reorganise blocks the follower had already handed out events from
    assert sum(len(r.removed) for r in ledger.reorgs) > 0


@pytest.mark.integration
def test_anvil_reorg_moves_an_event_to_another_block(
    anvil_l1: RpcL1, emitter_artifact: dict
) -> None:
    """anvil_reorg re-includes the same transaction in a different block: the event is
    retracted from its old block and handed out again from the new one."""
    l1 = anvil_l1
    sender = l1.sender(0)
    contract = l1.w3.eth.contract(
        address=sender.deploy(emitter_artifact["abi"], emitter_artifact["bytecode"]),
        abi=emitter_artifact["abi"],
    )
    ledger = Ledger(EventFollower(l1, contract, confirmations=1))
    account = l1.accounts[4]
    nonce = l1.w3.eth.get_transaction_count(account.address)
    call = contract.functions.ping(42, 1).build_transaction(
        {"from": account.address, "nonce": nonce, "gas": 100_000, "chainId": l1.chain_id,
         "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9}
    )  # fmt: skip
    raw = account.sign_transaction(call).raw_transaction
    l1.w3.eth.send_raw_transaction(raw)
    l1.mine(2)
    (first,) = ledger.poll()
    l1.reorg(3, [(raw, 2)])  # same transaction, two blocks later
    l1.mine(1)
    ledger.check(l1, contract)
    (reorg,) = ledger.reorgs
    assert [e.key for e in reorg.removed] == [first.key]
    (again,) = ledger.held.values()
    assert again.tx_hash == first.tx_hash and again.block_number == first.block_number + 2
