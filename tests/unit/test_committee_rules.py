"""The committee protocol's decisions (node/committee.py), without a node, an enclave or a clock."""

from __future__ import annotations

from enclavenet.node.committee import (
    allowed_proposers,
    first_voters,
    takeover_due,
    takeover_offset,
    timeouts_elapsed,
)
from enclavenet.node.core import qc_complete

M = ["0xA", "0xB", "0xC", "0xD"]
TYPES = {"0xA": 1, "0xB": 2, "0xC": 1, "0xD": 3}


def test_allowed_proposers_widen_one_member_per_timeout_and_never_past_everyone() -> None:
    assert allowed_proposers(M, 1, 0) == ["0xB"]
    assert allowed_proposers(M, 1, 1) == ["0xB", "0xC"]
    assert allowed_proposers(M, 3, 2) == ["0xD", "0xA", "0xB"]
    assert allowed_proposers(M, 0, 99) == M
    assert allowed_proposers([], 0, 5) == []


def test_timeouts_elapsed_counts_whole_timeouts() -> None:
    assert [timeouts_elapsed(x, 2.0) for x in (0.0, 1.99, 2.0, 5.9)] == [0, 0, 1, 2]
    assert timeouts_elapsed(10.0, 0.0) == 0


def test_takeover_is_one_fallback_at_a_time_in_rotation_order() -> None:
    slot = 1  # primary 0xB
    assert takeover_offset(M, "0xB", slot) == 0
    assert takeover_offset(M, "0xA", slot) == 3
    assert not takeover_due(M, "0xB", slot, 100.0, 1.0)  # the primary never "takes over"
    assert not takeover_due(M, "0xC", slot, 0.99, 1.0)
    assert takeover_due(M, "0xC", slot, 1.0, 1.0)
    assert not takeover_due(M, "0xD", slot, 1.5, 1.0)  # offset 2: after two timeouts
    assert takeover_due(M, "0xD", slot, 2.0, 1.0)
    assert not takeover_due(M, "0xE", slot, 99.0, 1.0)  # not a member
    assert not takeover_due(["0xA"], "0xA", 0, 99.0, 1.0)  # alone: nobody to take over from


def test_qc_needs_quorum_of_active_members_spanning_min_types() -> None:
    assert qc_complete(["0xA", "0xB", "0xD"], TYPES, 3, 2)
    assert not qc_complete(["0xA", "0xC"], TYPES, 2, 2)  # two signers, one type
    assert not qc_complete(["0xA", "0xB", "0xZ"], TYPES, 3, 2)  # 0xZ is not an active member


def test_first_voters_are_the_fewest_that_complete_the_qc_types_first() -> None:
    # proposer 0xA (type 1) signed; quorum 3 of 2 types: the next in rotation that add a type
    assert first_voters(["0xA"], ["0xB", "0xC", "0xD"], TYPES, 3, 2) == ["0xB", "0xC"]
    # 3 types needed: 0xC (type 1 again) is skipped for 0xD while a type is missing
    assert first_voters(["0xA"], ["0xC", "0xB", "0xD"], TYPES, 3, 3) == ["0xB", "0xD"]
    # already complete: nobody more on the critical path
    assert first_voters(["0xA", "0xB", "0xD"], ["0xC"], TYPES, 3, 2) == []
    # candidates outside the committee are never asked
    assert first_voters(["0xA"], ["0xZ", "0xB", "0xC"], TYPES, 3, 2) == ["0xB", "0xC"]
