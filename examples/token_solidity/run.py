"""PrivateToken in Solidity: an ERC20 whose balances only their owners may read.

python -m examples.token_solidity.run
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from examples.common import artifact, main, need_accounts, refusal, send

SUPPLY = 5_000_000


def run(w3: Any, accounts: Sequence[str]) -> dict[str, Any]:
    alice, bob, carol = need_accounts(accounts, 3, "token_solidity")
    token = artifact("token_solidity", "PrivateToken").deploy(
        w3, "Private Token", "PRV", SUPPLY, sender=alice
    )
    send(w3, token.functions.transfer(bob, 1_200_000), alice)
    send(w3, token.functions.approve(carol, 500_000), bob)
    send(w3, token.functions.transferFrom(bob, carol, 300_000), carol)
    send(w3, token.functions.transfer(alice, 100_000), carol)

    people = {"alice": alice, "bob": bob, "carol": carol}
    return {
        "symbol": token.functions.symbol().call(),
        "total_supply": token.functions.totalSupply().call(),
        # each account reads its own balance ...
        "balances": {n: token.functions.balanceOf(a).call({"from": a}) for n, a in people.items()},
        "allowance_bob_to_carol": token.functions.allowance(bob, carol).call({"from": carol}),
        # ... but nobody else's, and no third party reads an allowance
        "bob_reads_alice": refusal(token.functions.balanceOf(alice), bob),
        "alice_reads_allowance": refusal(token.functions.allowance(bob, carol), alice),
        "overdraw": refusal(token.functions.transfer(bob, SUPPLY), carol),
    }


if __name__ == "__main__":
    main(run)
