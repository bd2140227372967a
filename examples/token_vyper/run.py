"""ERC20 token in Vyper: transfer, approve/transferFrom, balanceOf.

python -m examples.token_vyper.run
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from examples.common import artifact, main, need_accounts, refusal, send

SUPPLY = 1_000_000


def run(w3: Any, accounts: Sequence[str]) -> dict[str, Any]:
    alice, bob, carol = need_accounts(accounts, 3, "token_vyper")
    token = artifact("token_vyper", "Token").deploy(
        w3, "Enclave Token", "ENT", 18, SUPPLY, sender=alice
    )
    send(w3, token.functions.transfer(bob, 250_000), alice)  # alice pays bob
    send(w3, token.functions.approve(carol, 100_000), bob)  # bob lets carol spend 100k
    send(w3, token.functions.transferFrom(bob, carol, 60_000), carol)  # carol takes 60k of it

    people = {"alice": alice, "bob": bob, "carol": carol}
    return {
        "symbol": token.functions.symbol().call(),
        "total_supply": token.functions.totalSupply().call(),
        "balances": {n: token.functions.balanceOf(a).call({"from": a}) for n, a in people.items()},
        "allowance_bob_to_carol": token.functions.allowance(bob, carol).call({"from": bob}),
        # what the token refuses
        "overdraw": refusal(token.functions.transfer(alice, SUPPLY), bob),
        "over_allowance": refusal(token.functions.transferFrom(bob, carol, 50_000), carol),
    }


if __name__ == "__main__":
    main(run)
