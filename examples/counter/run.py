"""A counter that calls another counter: a chain first -> second -> last.

python -m examples.counter.run
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from examples.common import artifact, main, need_accounts, refusal, send

NOBODY = "0x" + "00" * 20


def run(w3: Any, accounts: Sequence[str]) -> dict[str, Any]:
    alice, bob = need_accounts(accounts, 2, "counter")
    art = artifact("counter", "Counter")
    last = art.deploy(w3, NOBODY, sender=alice)
    second = art.deploy(w3, last.address, sender=alice)
    first = art.deploy(w3, second.address, sender=alice)

    send(w3, first.functions.bump(2), alice)  # +2 on all three
    send(w3, first.functions.bump(3), bob)  # +3 on all three
    send(w3, second.functions.bump(10), bob)  # +10 on second and last only

    counters = {"first": first, "second": second, "last": last}
    return {
        "counts": {n: c.functions.count().call() for n, c in counters.items()},
        "next_counts": {n: c.functions.nextCount().call() for n, c in counters.items()},
        # what bump(1) on the first counter would return now: the chain's total after it
        "bump_preview": first.functions.bump(1).call({"from": alice}),
        "bump_zero": refusal(first.functions.bump(0), alice),
    }


if __name__ == "__main__":
    main(run)
