"""What an honest voter's host checks of a proposal's inputs before its enclave re-executes
it, and what an honest proposer picks (issue 14, H5 and M1). Pure functions: the committee
code calls them with what its L1 watcher and clock say.

* **Whole L1 blocks** (H5): a proposal consumes every L1 message of the blocks up to its
  ``l1_block``. The first message it leaves pending (index = the header's ``msg_count``) must be
  from a later block -- also when the proposal consumes no message at all (that case was not
  checked: an empty proposal with ``l1_block`` past a pending deposit was voted). The Rollup
  checks the same (``submitHeader``), the enclave only that messages continue the chain.
* **The EVM timestamp** (M1): the proposer's word, bounded by the voters. It must not go back
  (``>= `` the head's), not run ahead of the L1 time of the proposal's ``l1_block`` by more than
  ``drift`` seconds, nor of the voter's own clock by more than ``skew``. The enclave refuses one
  past year 9999 (2^64-1 froze ``block.timestamp``: it never goes back). The proposer picks
  ``max(head, min(now, L1 time + drift))``, which every honest voter accepts.
"""

from __future__ import annotations

from ..crypto.messages import L1Message

#: seconds the EVM timestamp may run ahead of the L1 time of the batch's l1_block
TIMESTAMP_DRIFT = 120
#: seconds a voter allows for clock differences between members (and the L1's own clock)
CLOCK_SKEW = 15


def whole_blocks_refusal(msg_count: int, l1_block: int, next_message: L1Message | None) -> str | None:
    """Why a header with ``msg_count`` and ``l1_block`` leaves out a message it must consume
    (``next_message`` = the L1 message at index ``msg_count``, None if none exists yet)."""
    if next_message is not None and next_message.l1_block <= l1_block:
        return (
            f"proposal leaves out L1 message {msg_count} of block {next_message.l1_block} <= its l1_block "
            f"{l1_block} (a header consumes whole L1 blocks)"
        )
    return None


def proposal_timestamp(head_timestamp: int, now: float, l1_time: int, drift: int = TIMESTAMP_DRIFT) -> int:
    """The timestamp an honest proposer gives a batch whose l1_block has L1 time ``l1_time``."""
    return max(head_timestamp, min(int(now), l1_time + drift))


def timestamp_refusal(
    timestamp: int,
    head_timestamp: int,
    now: float,
    l1_time: int,
    *,
    drift: int = TIMESTAMP_DRIFT,
    skew: int = CLOCK_SKEW,
) -> str | None:
    """Why a voter refuses a proposal's timestamp (None: acceptable)."""
    if timestamp < head_timestamp:
        return f"proposal timestamp {timestamp} is before the head's {head_timestamp}"
    # a proposer may keep the head's timestamp even when the L1 time is older (it never goes back)
    bound = max(head_timestamp, l1_time + drift)
    if timestamp > bound:
        return (
            f"proposal timestamp {timestamp} is more than {drift} s after the L1 time {l1_time} of its "
            f"l1_block (at most {bound})"
        )
    if timestamp > now + skew and timestamp > head_timestamp:
        return f"proposal timestamp {timestamp} is more than {skew} s ahead of this member's clock ({int(now)})"
    return None
