"""The committee protocol's decisions (node/committee.py), without a node, an enclave or a clock."""

from __future__ import annotations

from enclavenet.node.committee import (
    first_voters,
)
from enclavenet.node.core import qc_complete

M = ["0xA", "0xB", "0xC", "0xD"]
TYPES = {"0xA": 1, "0xB": 2, "0xC": 1, "0xD": 3}


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
