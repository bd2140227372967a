"""A sealed-bid second-price (Vickrey) auction: three bidders, the highest pays the second bid.

python -m examples.auction.run
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from examples.common import artifact, main, need_accounts, refusal, send

RESERVE = 1_000  # wei
BIDS = {"bob": 5_000, "carol": 8_000, "dave": 6_000}


def run(w3: Any, accounts: Sequence[str]) -> dict[str, Any]:
    seller, bob, carol, dave, erin = need_accounts(accounts, 5, "auction")
    people = {"seller": seller, "bob": bob, "carol": carol, "dave": dave}
    auction = artifact("auction", "VickreyAuction").deploy(w3, "a painting", RESERVE, sender=seller)
    for name, amount in BIDS.items():
        send(w3, auction.functions.bid(), people[name], value=amount)

    sealed = {
        "winner": refusal(auction.functions.winner(), bob),
        "price": refusal(auction.functions.price(), bob),
        "seller_bid": refusal(auction.functions.bid(), seller, value=RESERVE),
        "below_reserve": refusal(auction.functions.bid(), erin, value=RESERVE - 1),
        "second_bid": refusal(auction.functions.bid(), bob, value=9_000),
    }
    escrow_before = w3.eth.get_balance(auction.address)
    send(w3, auction.functions.close(), seller)

    winner = auction.functions.winner().call()
    owed = {n: auction.functions.my_balance().call({"from": a}) for n, a in people.items()}
    for name, address in people.items():
        if owed[name]:
            send(w3, auction.functions.withdraw(), address)

    return {
        "item": auction.functions.item().call(),
        "bid_count": auction.functions.bid_count().call(),
        "refused_while_open": sealed,
        "escrow_before_close": escrow_before,
        "winner": winner,
        "winner_name": next(n for n, a in people.items() if a == winner),
        "price": auction.functions.price().call(),
        "owed_after_close": owed,
        "escrow_after_withdrawals": w3.eth.get_balance(auction.address),
        "late_bid": refusal(auction.functions.bid(), bob, value=10_000),
    }


if __name__ == "__main__":
    main(run)
