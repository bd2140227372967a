"""The example confidential contracts: each script on the embedded L1, and the same in pyrevm.

Every example's ``run(w3, accounts)`` runs on the embedded L1 (web3 + eth-tester, py-evm) with
its results checked against independently computed expectations, then again on
``Web3(RevmProvider())`` -- plain pyrevm, the EVM the enclaves run -- and must give identical
results: the plain-versus-confidential comparison the confidential client builds on.
"""

from __future__ import annotations

import sys
from functools import cache
from math import isqrt
from pathlib import Path
from typing import Any

import pyrevm
import pytest
from eth_abi import decode, encode
from eth_utils import keccak
from web3 import EthereumTesterProvider, Web3

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import examples  # noqa: E402
from examples.common import artifact  # noqa: E402
from examples.kmeans import run as kmeans_example  # noqa: E402
from examples.revm_provider import RevmProvider, dev_accounts  # noqa: E402


def _l1() -> Web3:
    return Web3(EthereumTesterProvider())


@cache
def on_l1(name: str) -> dict[str, Any]:
    """Results of example ``name`` on a fresh embedded L1 (computed once per test session)."""
    w3 = _l1()
    return examples.load(name).run(w3, w3.eth.accounts)


def in_pyrevm(name: str) -> dict[str, Any]:
    w3 = Web3(RevmProvider())
    return examples.load(name).run(w3, w3.eth.accounts)


# --- each example on the embedded L1 ------------------------------------------------------------


def test_token_vyper_transfers_and_allowances() -> None:
    r = on_l1("token_vyper")
    assert r["symbol"] == "ENT" and r["total_supply"] == 1_000_000
    # alice -> bob 250k; bob approves carol 100k; carol pulls 60k from bob
    assert r["balances"] == {"alice": 750_000, "bob": 190_000, "carol": 60_000}
    assert sum(r["balances"].values()) == r["total_supply"]
    assert r["allowance_bob_to_carol"] == 40_000
    assert r["overdraw"] == "balance too low"
    assert r["over_allowance"] == "allowance too low"


def test_token_solidity_keeps_balances_private() -> None:
    r = on_l1("token_solidity")
    assert r["symbol"] == "PRV"
    assert r["balances"] == {"alice": 3_900_000, "bob": 900_000, "carol": 200_000}
    assert sum(r["balances"].values()) == r["total_supply"] == 5_000_000
    assert r["allowance_bob_to_carol"] == 200_000
    assert r["bob_reads_alice"] == "balance is private"
    assert r["alice_reads_allowance"] == "allowance is private"
    assert r["overdraw"] == "balance too low"


def _amount_out(amount_in: int, r_in: int, r_out: int) -> int:
    return amount_in * 997 * r_out // (r_in * 1000 + amount_in * 997)


def test_dex_swaps_follow_constant_product() -> None:
    from examples.dex import run as dex

    r = on_l1("dex")
    r0, r1 = r["reserves_seeded"]
    assert (r0, r1) == (dex.POOL_A, dex.POOL_B)
    assert r["alice_shares"] == isqrt(dex.POOL_A * dex.POOL_B)

    s1 = r["swap_a_for_b"]
    assert s1["quoted"] == s1["received"] == _amount_out(s1["in"], r0, r1) == 39_486
    assert r["reserves_after_swap_1"] == [r0 + s1["in"], r1 - s1["received"]]
    k0 = r0 * r1
    k1 = r["reserves_after_swap_1"][0] * r["reserves_after_swap_1"][1]
    assert k1 >= k0  # the fee stays in the pool: k never falls

    a1, b1 = r["reserves_after_swap_1"]
    s2 = r["swap_b_for_a"]
    assert s2["quoted"] == s2["received"] == _amount_out(s2["in"], b1, a1)
    assert r["reserves_after_swap_2"] == [a1 - s2["received"], b1 + s2["in"]]
    assert r["reserves_after_swap_2"][0] * r["reserves_after_swap_2"][1] >= k1
    assert r["slippage_refusal"] == "slippage: output below min_out"

    # half the shares out: half of each reserve (rounded down) leaves the pool
    a2, b2 = r["reserves_after_swap_2"]
    assert r["total_shares_after_removal"] == r["alice_shares"] // 2
    assert r["reserves_final"] == [a2 - a2 // 2, b2 - b2 // 2]
    # no token is created or lost: alice + bob + pool hold each supply
    for i in (0, 1):
        held = r["alice_balances"][i] + r["bob_balances"][i] + r["reserves_final"][i]
        assert held == dex.SUPPLY
    assert r["bob_balances"] == [
        dex.BOB_A - s1["in"] + s2["received"],
        dex.BOB_B + s1["received"] - s2["in"],
    ]


def test_auction_winner_pays_second_price() -> None:
    from examples.auction import run as auction

    r = on_l1("auction")
    bids = auction.BIDS
    top, second = sorted(bids.values())[-1], sorted(bids.values())[-2]
    winner = max(bids, key=lambda n: bids[n])
    assert r["winner_name"] == winner == "carol"
    assert r["winner"] == dev_accounts()[2]
    assert r["price"] == second == 6_000
    assert r["bid_count"] == 3
    assert r["escrow_before_close"] == sum(bids.values())
    owed = r["owed_after_close"]
    assert owed["seller"] == second
    assert owed[winner] == top - second
    assert all(owed[n] == bids[n] for n in bids if n != winner)
    assert r["escrow_after_withdrawals"] == 0
    assert r["refused_while_open"] == {
        "winner": "sealed until the auction closes",
        "price": "sealed until the auction closes",
        "seller_bid": "the seller may not bid",
        "below_reserve": "bid below the reserve price",
        "second_bid": "one sealed bid per bidder",
    }
    assert r["late_bid"] == "the auction is closed"


def _kmeans_reference(points: list[tuple[int, int]], k: int, rounds: int) -> list[list[int]]:
    """Lloyd's algorithm with the contract's integer rules (floor means, ties to lower index)."""

    def nearest(p: tuple[int, int], cents: list[list[int]]) -> int:
        d = [(p[0] - c[0]) ** 2 + (p[1] - c[1]) ** 2 for c in cents]
        return d.index(min(d))

    cents = [list(p) for p in points[:k]]
    for _ in range(rounds):
        groups: list[list[tuple[int, int]]] = [[] for _ in range(k)]
        for p in points:
            groups[nearest(p, cents)].append(p)
        for j, g in enumerate(groups):
            if g:
                cents[j] = [sum(p[0] for p in g) // len(g), sum(p[1] for p in g) // len(g)]
    return cents


def test_kmeans_centroids_match_reference() -> None:
    r = on_l1("kmeans")
    pts = [(x, y) for _, x, y in kmeans_example.POINTS]
    expected = _kmeans_reference(pts, kmeans_example.K, kmeans_example.ROUNDS)
    assert r["centroids"] == expected
    assert r["centroids_after_2_rounds"] == _kmeans_reference(pts, kmeans_example.K, 2)
    assert r["k"] == kmeans_example.K and r["point_count"] == len(pts)
    assert r["rounds_run"] == kmeans_example.ROUNDS
    # the three blobs are found; the outlier (30, 40) drags alice's centroid a little
    assert expected == [[15, 16], [49, 92], [96, 23]]
    assert r["clusters"] == {"alice": [0] * 5, "bob": [2] * 4, "carol": [1] * 4}
    assert r["bob_asks_about_alice"] == "only the point's submitter may ask"
    assert r["before_iterating"] == "no centroids yet: call iterate first"
    assert r["too_many_rounds"] == "rounds must be between 1 and 10"
    assert r["huge_coordinate"] == "coordinates must be below 2**64"


def test_kmeans_reference_is_not_trivial() -> None:
    # guard against a vacuous comparison: the rounds matter (convergence in round 4)
    pts = [(x, y) for _, x, y in kmeans_example.POINTS]
    by_round = [_kmeans_reference(pts, 3, n) for n in range(1, 6)]
    assert by_round[0] != by_round[1] != by_round[2] != by_round[3] == by_round[4]


def test_counter_calls_the_next_counter() -> None:
    r = on_l1("counter")
    # bump(2) and bump(3) on first reach all three; bump(10) on second reaches second and last
    assert r["counts"] == {"first": 5, "second": 15, "last": 15}
    assert r["next_counts"] == {"first": 15, "second": 15, "last": 0}
    assert r["bump_preview"] == (5 + 1) + (15 + 1) + (15 + 1)
    assert r["bump_zero"] == "bump by at least 1"


def test_vote_tally_is_public_and_ballots_are_not() -> None:
    r = on_l1("vote")
    closed = "the tally is public once the vote is closed"
    assert r["before_close"] == {"tally": closed, "turnout": "the turnout is public once the vote is closed",
                                 "no such option": "no such option"}
    assert r["refused"] == {"second ballot": "already voted", "not a voter": "not on the electorate",
                            "bob reads carol's ballot": "a ballot is readable by its voter only",
                            "close by bob": "only the chair closes the vote"}
    assert r["own_ballots"] == {"bob": 0, "carol": 2}
    assert r["tally"] == [1, 0, 2] and r["turnout"] == 3  # chair 2, bob 0, carol 2
    assert r["late_ballot"] == "the vote is closed"
    assert r["carol_after_close"] == "a ballot is readable by its voter only"  # closing reveals no ballot


# --- the same scripts in pyrevm -----------------------------------------------------------------


@pytest.mark.parametrize("name", examples.EXAMPLES)
def test_same_results_in_pyrevm(name: str) -> None:
    assert in_pyrevm(name) == on_l1(name)


def test_pyrevm_accounts_and_addresses_match_the_l1() -> None:
    l1, revm = _l1(), Web3(RevmProvider())
    assert revm.eth.accounts == l1.eth.accounts[:10] == dev_accounts()
    assert revm.eth.chain_id == l1.eth.chain_id
    art = artifact("token_vyper", "Token")
    sender = dev_accounts()[0]
    on_l1_token = art.deploy(l1, "T", "T", 18, 100, sender=sender)
    in_revm_token = art.deploy(revm, "T", "T", 18, 100, sender=sender)
    assert on_l1_token.address == in_revm_token.address  # same sender nonce on both
    assert l1.eth.get_code(on_l1_token.address) == art.runtime
    code = revm.eth.get_code(in_revm_token.address)
    assert code[: len(art.runtime)] == art.runtime  # pyrevm pads analysed code with zeros
    assert not code[len(art.runtime) :].strip(b"\0")


def test_raw_pyrevm_counter_chain() -> None:
    """The counter example straight through pyrevm.EVM.deploy / message_call, no web3."""
    art = artifact("counter", "Counter")
    me, bob = dev_accounts()[:2]
    evm = pyrevm.EVM()
    evm.set_balance(me, 10**18)
    last = evm.deploy(me, art.deploy_code("0x" + "00" * 20))
    second = evm.deploy(me, art.deploy_code(last))
    first = evm.deploy(me, art.deploy_code(second))

    def call(who: str, to: str, sig: str, *args: int) -> int:
        data = keccak(sig.encode())[:4] + encode(["uint256"] * len(args), list(args))
        return int(decode(["uint256"], evm.message_call(who, to, data))[0])

    assert call(me, first, "bump(uint256)", 2) == 6  # 2 + 2 + 2
    assert call(bob, first, "bump(uint256)", 3) == 15
    assert call(bob, second, "bump(uint256)", 10) == 30  # second 15 + last 15
    counts = {
        n: call(me, a, "count()") for n, a in [("first", first), ("second", second), ("last", last)]
    }
    assert counts == on_l1("counter")["counts"]
    with pytest.raises(RuntimeError, match="Revert") as err:
        call(me, first, "bump(uint256)", 0)
    assert b"bump by at least 1".hex() in str(err.value)


def test_revm_provider_failed_transaction_changes_nothing() -> None:
    w3 = Web3(RevmProvider())
    alice, bob = w3.eth.accounts[:2]
    token = artifact("token_vyper", "Token").deploy(w3, "T", "T", 18, 100, sender=alice)
    nonce = w3.eth.get_transaction_count(bob)
    # explicit gas skips estimation, so the reverting transaction is mined with status 0
    tx = token.functions.transfer(alice, 1).transact({"from": bob, "gas": 200_000})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    assert receipt["status"] == 0 and receipt["logs"] == []
    assert token.functions.balanceOf(alice).call() == 100
    assert w3.eth.get_transaction_count(bob) == nonce + 1
    # a successful one carries its event
    tx = token.functions.transfer(bob, 7).transact({"from": alice})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    (event,) = token.events.Transfer().process_receipt(receipt)
    assert (event["args"]["receiver"], event["args"]["value"]) == (bob, 7)
    # calls never change state
    assert token.functions.transfer(bob, 1).call({"from": alice}) is True
    assert token.functions.balanceOf(bob).call() == 7


def test_examples_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="no example named 'nope'"):
        examples.load("nope")
    w3 = Web3(RevmProvider())
    with pytest.raises(ValueError, match="auction needs 5 funded accounts, got 2"):
        examples.load("auction").run(w3, w3.eth.accounts[:2])
