"""Issue 14 H5 / M1, the voters' side (node/inputs.py): the whole-blocks check applies to a
proposal with no messages, and the proposer's timestamp is bounded by the L1 time of its
l1_block and the voter's clock. The node calls these in its vote path (test_node_committee.py
runs them in a devnet)."""

from __future__ import annotations

from enclavenet.crypto.messages import KIND_USER, L1Message
from enclavenet.node.inputs import (
    CLOCK_SKEW,
    TIMESTAMP_DRIFT,
    proposal_timestamp,
    timestamp_refusal,
    whole_blocks_refusal,
)

ALICE = "0x" + "11" * 20
L1T = 1_700_000_000


def _msg(index: int, block: int) -> L1Message:
    return L1Message(index, KIND_USER, ALICE, 10**18, block, b"")


def test_h5_an_empty_proposal_past_a_pending_deposit_is_refused() -> None:
    deposit = _msg(0, 2)
    # the review's proposal: no messages (msg_count stays 0), l1_block 3 past the deposit's block 2
    why = whole_blocks_refusal(0, 3, deposit)
    assert why is not None and "leaves out L1 message 0 of block 2" in why
    assert whole_blocks_refusal(0, 2, deposit) is not None
    assert whole_blocks_refusal(0, 1, deposit) is None  # stops before the deposit's block
    assert whole_blocks_refusal(1, 3, None) is None  # nothing pending
    assert whole_blocks_refusal(1, 3, _msg(1, 4)) is None  # the next message is later


def test_m1_the_far_future_timestamp_is_refused_and_honest_ones_accepted() -> None:
    now = L1T + 30.0
    head = L1T - 100
    assert timestamp_refusal(2**64 - 1, head, now, L1T) is not None
    assert "more than" in str(timestamp_refusal(L1T + TIMESTAMP_DRIFT + 1, head, now + 10_000, L1T))
    assert "ahead of this member's clock" in str(timestamp_refusal(L1T + 60, head, L1T + 30, L1T))
    assert "before the head" in str(timestamp_refusal(head - 1, head, now, L1T))
    # what an honest proposer picks is accepted by a voter whose clock is a bit behind
    for l1_time, clock in ((L1T, now), (L1T - 3600, now), (L1T + 5, L1T)):
        ts = proposal_timestamp(head, clock, l1_time)
        assert timestamp_refusal(ts, head, clock - CLOCK_SKEW + 1, l1_time) is None, (l1_time, clock, ts)
        assert ts >= head
    # an idle L1 (no block for an hour): the timestamp lags, never goes back
    assert proposal_timestamp(L1T, L1T + 3600, L1T - 7200) == L1T
    assert timestamp_refusal(L1T, L1T, L1T + 3600, L1T - 7200) is None
