"""The first committee a node gives its enclave (node/epochs.py ``update_committee``).

Members whose first committees differ cannot certify each other's next one, so at bootstrap a node
waits until L1 lists the members epoch genesis waits for (``expected_members``) -- seen with 10
members, where two nodes that set their first committee while L1 showed 8 registrations stayed
out of the committee for good ("not an allowed committee member")."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from enclavenet.node import epochs as epochs_mod
from enclavenet.node.epochs import Epochs


class FakeHost:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []


class FakeSync:
    """certify.CommitteeSync without quotes to decode: records what the enclave would be told."""

    def __init__(self, name: str, host: FakeHost, *_: Any) -> None:
        self.host = host

    async def update(self, fields: dict[str, Any]) -> bool:
        self.host.calls.append(("committee", fields))
        return True


@pytest.fixture(autouse=True)
def _fake_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(epochs_mod, "CommitteeSync", FakeSync)


def _node(registered: int, *, expected: int = 10, height: int = 0) -> Any:
    addrs = [f"0x{i:040x}" for i in range(1, registered + 1)]
    watcher = SimpleNamespace(quorum=7, min_types=3, height=height)
    cfg = SimpleNamespace(name="n0", expected_members=expected, peers=["http://p"] * (expected - 1))
    return SimpleNamespace(
        cfg=cfg, host=FakeHost(), watcher=watcher, members=lambda: addrs,
        quotes={a: bytes([i]) * 8 for i, a in enumerate(addrs)},
        peers=[SimpleNamespace(address=f"0x{i:040x}", url="http://p") for i in range(2, expected + 1)],
    )


def _committee_calls(node: Any) -> list[Any]:
    return [p for m, p in node.host.calls if m == "committee"]


def test_the_first_committee_waits_for_every_expected_registration_at_bootstrap() -> None:
    node = _node(registered=8)  # every peer answered, L1 shows 8 of the 10 registrations so far
    e = Epochs(node, poll_l1=lambda: asyncio.sleep(0))
    asyncio.run(e.update_committee())
    assert _committee_calls(node) == []  # not a first committee of 8 that could never add the other 2
    registered = [f"0x{i:040x}" for i in range(1, 11)]
    node.members = lambda: registered
    node.quotes = {a: bytes([i]) * 8 for i, a in enumerate(registered)}
    asyncio.run(e.update_committee())
    (fields,) = _committee_calls(node)
    assert len(fields["members"]) == 10 and fields["quorum"] == 7


def test_after_the_wait_or_past_bootstrap_the_committee_is_what_l1_shows() -> None:
    # a restart (headers exist): L1's member list is the committee, nobody to wait for
    node = _node(registered=8, height=5)
    asyncio.run(Epochs(node, poll_l1=lambda: asyncio.sleep(0)).update_committee())
    assert len(_committee_calls(node)[0]["members"]) == 8
    # bootstrap, but the wait is over (a member never registered): go on without it
    node = _node(registered=8)
    e = Epochs(node, poll_l1=lambda: asyncio.sleep(0))
    e._born -= epochs_mod.COMMITTEE_WAIT + 1
    asyncio.run(e.update_committee())
    assert len(_committee_calls(node)[0]["members"]) == 8
