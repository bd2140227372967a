"""A constant-product DEX trading a Vyper ERC20 against a Solidity ERC20.

    python -m examples.dex.run

alice seeds the pool, bob trades both ways, alice takes half her liquidity back. Every swap
pays ``out = in*997*R_out / (R_in*1000 + in*997)`` (x*y=k with a 0.3% fee kept in the pool).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from examples.common import artifact, main, need_accounts, refusal, send

SUPPLY = 10_000_000
POOL_A, POOL_B = 1_000_000, 4_000_000  # alice's initial liquidity: 1 A = 4 B
BOB_A, BOB_B = 50_000, 200_000  # what alice gives bob to trade with


def run(w3: Any, accounts: Sequence[str]) -> dict[str, Any]:
    alice, bob = need_accounts(accounts, 2, "dex")
    token_a = artifact("token_vyper", "Token").deploy(w3, "Token A", "A", 18, SUPPLY, sender=alice)
    token_b = artifact("token_solidity", "PrivateToken").deploy(
        w3, "Token B", "B", SUPPLY, sender=alice
    )
    pair = artifact("dex", "Pair").deploy(w3, token_a.address, token_b.address, sender=alice)

    def balances(who: str) -> tuple[int, int]:
        a = token_a.functions.balanceOf(who).call({"from": who})
        b = token_b.functions.balanceOf(who).call({"from": who})  # PrivateToken: owner only
        return a, b

    def reserves() -> tuple[int, int]:
        return pair.functions.reserve0().call(), pair.functions.reserve1().call()

    send(w3, token_a.functions.transfer(bob, BOB_A), alice)
    send(w3, token_b.functions.transfer(bob, BOB_B), alice)

    # alice seeds the pool
    send(w3, token_a.functions.approve(pair.address, POOL_A), alice)
    send(w3, token_b.functions.approve(pair.address, POOL_B), alice)
    send(w3, pair.functions.add_liquidity(POOL_A, POOL_B), alice)
    seeded = reserves()

    # bob sells 10,000 A for B
    sell_a = 10_000
    quote_1 = pair.functions.get_amount_out(token_a.address, sell_a).call()
    before = balances(bob)
    send(w3, token_a.functions.approve(pair.address, sell_a), bob)
    send(w3, pair.functions.swap(token_a.address, sell_a, quote_1), bob)
    got_1 = balances(bob)[1] - before[1]
    after_1 = reserves()

    # bob sells 20,000 B back for A
    sell_b = 20_000
    quote_2 = pair.functions.get_amount_out(token_b.address, sell_b).call()
    before = balances(bob)
    send(w3, token_b.functions.approve(pair.address, sell_b), bob)
    send(w3, pair.functions.swap(token_b.address, sell_b, 0), bob)
    got_2 = balances(bob)[0] - before[0]
    after_2 = reserves()

    # a swap demanding more than the curve gives is refused (slippage guard)
    send(w3, token_a.functions.approve(pair.address, sell_a), bob)
    quote_3 = pair.functions.get_amount_out(token_a.address, sell_a).call()
    slippage = refusal(pair.functions.swap(token_a.address, sell_a, quote_3 + 1), bob)

    # alice withdraws half her shares
    shares = pair.functions.shares(alice).call()
    send(w3, pair.functions.remove_liquidity(shares // 2), alice)

    return {
        "reserves_seeded": list(seeded),
        "swap_a_for_b": {"in": sell_a, "quoted": quote_1, "received": got_1},
        "reserves_after_swap_1": list(after_1),
        "swap_b_for_a": {"in": sell_b, "quoted": quote_2, "received": got_2},
        "reserves_after_swap_2": list(after_2),
        "slippage_refusal": slippage,
        "alice_shares": shares,
        "total_shares_after_removal": pair.functions.total_shares().call(),
        "reserves_final": list(reserves()),
        "bob_balances": list(balances(bob)),
        "alice_balances": list(balances(alice)),
    }


if __name__ == "__main__":
    main(run)
