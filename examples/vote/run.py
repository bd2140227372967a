"""A private vote: public tally, secret ballots.

python -m examples.vote.run
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from examples.common import artifact, main, need_accounts, refusal, send


def run(w3: Any, accounts: Sequence[str]) -> dict[str, Any]:
    chair, bob, carol, dave = need_accounts(accounts, 4, "vote")
    art = artifact("vote", "PrivateVote")
    poll = art.deploy(w3, 3, [chair, bob, carol], sender=chair)  # dave is not on the electorate

    before = {
        "tally": refusal(poll.functions.tally(), dave),
        "turnout": refusal(poll.functions.turnout(), dave),
        "no such option": refusal(poll.functions.vote(7), chair),
    }
    send(w3, poll.functions.vote(2), chair)
    send(w3, poll.functions.vote(0), bob)
    send(w3, poll.functions.vote(2), carol)
    refused = {
        "second ballot": refusal(poll.functions.vote(1), bob),
        "not a voter": refusal(poll.functions.vote(1), dave),
        "bob reads carol's ballot": refusal(poll.functions.ballotOf(carol), bob),
        "close by bob": refusal(poll.functions.close(), bob),
    }
    own = {"bob": poll.functions.ballotOf(bob).call({"from": bob}),
           "carol": poll.functions.ballotOf(carol).call({"from": carol})}
    send(w3, poll.functions.close(), chair)
    return {
        "before_close": before,
        "refused": refused,
        "own_ballots": own,
        "tally": poll.functions.tally().call({"from": dave}),
        "turnout": poll.functions.turnout().call({"from": dave}),
        "late_ballot": refusal(poll.functions.vote(1), chair),
        "carol_after_close": refusal(poll.functions.ballotOf(carol), dave),
    }


if __name__ == "__main__":
    main(run)
