"""Issue 13 item 4: a host that restarts its enclave from an OLDER sealed blob must not get a
second header signed at a (height, round) the enclave already signed.

The enclave advances its machine's monotonic counter (tee/counter.py) before any output that
depends on a new signature, timeout or input record leaves, and binds the count into every
sealed blob. A blob below the counter is stale: the restored enclave may have signed anything up
to the counter's high-water mark since, so it signs, times out and executes nothing at those
heights until they are finalised (guard.py "amnesia"). These tests fail when that check is
removed (see docs/ENCLAVE.md "Rollback protection").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from enclavenet.enclave.errors import EnclaveRefusal
from enclavenet.enclave.guard import SignGuard
from enclavenet.enclave.harness import Member, batch_request, form_committee, program_config
from enclavenet.tee import DEFAULT_PROGRAM, EnclaveError, InProcessEnclave, SimulatedVendor
from enclavenet.tee.platform import SimulatedPlatform, platform_from_spec

CHAIN = 4343
VENDORS = [SimulatedVendor.generate(n) for n in ("sgx", "sev-snp", "tdx")]
CFG = program_config(VENDORS, chain_id=CHAIN)
STALE = "restored from a sealed blob older than its platform monotonic counter"


class World:
    """3 members (quorum 2 of 2 types), height 1 finalised; ``victim`` = member 2, whose host
    keeps every sealed blob it ever got."""

    def __init__(self, nv: Path) -> None:
        self.platforms: list[SimulatedPlatform] = [v.new_platform(nv_dir=nv / v.tee_name) for v in VENDORS]
        self.members = [Member(InProcessEnclave(p, DEFAULT_PROGRAM, CFG)) for p in self.platforms]
        form_committee(self.members, quorum=2, min_types=2)
        req1 = batch_request(1, bytes(32), l1_block=1)
        out1 = self.members[0].call("execute_batch", **req1)
        votes = [m.call("verify_batch", header=out1["header"], **req1) for m in self.members[1:]]
        for m in self.members:
            m.call("accept_header", header=out1["header"], signatures=[out1["signature"], votes[0]["signature"]])
        self.h1: bytes = out1["header_hash"]

    @property
    def victim(self) -> Member:
        return self.members[2]

    def restart_victim(self, blob: bytes, platform: SimulatedPlatform | None = None) -> Member:
        """The host kills the victim's enclave and starts a fresh one from ``blob``."""
        self.members[2].close()
        self.members[2] = Member(InProcessEnclave(platform or self.platforms[2], DEFAULT_PROGRAM, CFG))
        self.members[2].call("restore", blob=blob)
        return self.members[2]

    def two_headers_at_2(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Two different proposals at (2, 0) on the finalised h1: X by member 0, Y by member 1."""
        req_x = batch_request(2, self.h1, l1_block=1, timestamp=1_700_000_010)
        req_y = batch_request(2, self.h1, l1_block=1, timestamp=1_700_000_020)
        x = self.members[0].call("execute_batch", **req_x)
        y = self.members[1].call("execute_batch", **req_y)
        assert x["header_hash"] != y["header_hash"]
        return req_x, x, req_y, y


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    yield w
    for m in w.members:
        m.close()


def test_guard_in_safe_mode_refuses_up_to_the_high_water_mark() -> None:
    g = SignGuard()
    g.record(3, b"\x01" * 32)
    assert g.dirty == 3
    g.dirty = None
    g.record(3, b"\x01" * 32)  # an idempotent retry records nothing new: no counter advance
    assert g.dirty is None
    fresh = SignGuard.from_cbor(SignGuard().to_cbor())  # a blob from before the signature
    fresh.forget_up_to(3)
    restored = SignGuard.from_cbor(fresh.to_cbor())  # the safe mode survives sealing
    for action in (
        lambda: restored.check(3, b"\x02" * 32),
        lambda: restored.check(2, b"\x02" * 32),
        lambda: restored.timeout(3, 0),
        lambda: restored.check_input(3, bytes(32), 0, b"\x03" * 32),
    ):
        with pytest.raises(EnclaveRefusal, match="older than its platform monotonic counter"):
            action()
    restored.check(4, b"\x02" * 32)  # above the mark: nothing was ever signed there
    restored.finalize(3)  # a QC'd header at 3 ends it
    restored.record(4, b"\x02" * 32)


def test_a_host_replaying_an_older_blob_cannot_make_the_enclave_sign_a_conflicting_header(world: World) -> None:
    req_x, x, req_y, y = world.two_headers_at_2()
    b0 = world.victim.call("snapshot")["local"]  # saved by the host before the vote
    vote = world.victim.call("verify_batch", header=x["header"], **req_x)  # signs X at (2, 0)
    b1 = world.victim.call("snapshot")["local"]
    assert b1 != b0
    # the host restarts the enclave from the OLDER blob and asks for Y at (2, 0): refused
    replayed = world.restart_victim(b0)
    assert replayed.address == vote["signer"]
    with pytest.raises(EnclaveError, match=STALE):
        replayed.call("verify_batch", header=y["header"], **req_y)
    st = replayed.call("status")
    assert st["height"] == 1 and st["amnesia"] == 2
    # nor a timeout vote that would report no lock at height 2, nor a second execution there
    with pytest.raises(EnclaveError, match=STALE):
        replayed.call("timeout", height=2, round=0)
    with pytest.raises(EnclaveError, match=STALE):
        replayed.call("execute_batch", **req_y)
    # a snapshot now keeps the safe mode: restoring it does not clear it
    b2 = replayed.call("snapshot")["local"]
    again = world.restart_victim(b2)
    with pytest.raises(EnclaveError, match=STALE):
        again.call("verify_batch", header=y["header"], **req_y)
    # the way out is finality: X gets its QC from the others' and the victim's released vote
    qc = [x["signature"], vote["signature"]]
    st = again.call("apply_batch", header=x["header"], signatures=qc, **req_x)
    assert st["finalized_height"] == 2
    req3 = batch_request(3, x["header_hash"], l1_block=1, timestamp=1_700_000_030)
    world.members[0].call("accept_header", header=x["header"], signatures=qc)
    x3 = world.members[0].call("execute_batch", **req3)
    assert again.call("verify_batch", header=x3["header"], **req3)["header_hash"] == x3["header_hash"]


def test_a_normal_restart_from_the_newest_blob_keeps_signing(world: World) -> None:
    req_x, x, req_y, y = world.two_headers_at_2()
    vote = world.victim.call("verify_batch", header=x["header"], **req_x)
    newest = world.victim.call("snapshot")["local"]  # persist: sign
    restarted = world.restart_victim(newest)
    assert restarted.call("status")["amnesia"] == 0  # not stale: full record, no safe mode
    with pytest.raises(EnclaveError, match="second header at height 2"):
        restarted.call("verify_batch", header=y["header"], **req_y)
    # the host re-asks for the vote it lost in the crash: the same signature
    assert restarted.call("verify_batch", header=x["header"], **req_x)["signature"] == vote["signature"]
    # and it keeps signing at the next height (pipelined on X) after another normal restart
    req3 = batch_request(3, x["header_hash"], l1_block=1, timestamp=1_700_000_030)
    x3 = world.members[0].call("execute_batch", **req3)
    restarted = world.restart_victim(restarted.call("snapshot")["local"])
    assert restarted.call("verify_batch", header=x3["header"], **req3)["header_hash"] == x3["header_hash"]


def test_two_enclave_processes_from_one_blob_cannot_both_sign(world: World) -> None:
    """A forking host: two live copies restored from the same (newest) blob. The counter's
    compare-and-swap lets only the first sign; the other refuses wherever that one may have."""
    req_x, x, req_y, y = world.two_headers_at_2()
    blob = world.victim.call("snapshot")["local"]
    world.victim.close()
    copies = [Member(InProcessEnclave(world.platforms[2], DEFAULT_PROGRAM, CFG)) for _ in range(2)]
    for c in copies:
        c.call("restore", blob=blob)
    copies[0].call("verify_batch", header=x["header"], **req_x)
    with pytest.raises(EnclaveError, match="counter moved on without this enclave"):
        copies[1].call("verify_batch", header=y["header"], **req_y)
    with pytest.raises(EnclaveError, match=STALE):
        copies[1].call("verify_batch", header=y["header"], **req_y)
    for c in copies:
        c.close()


def test_a_wiped_or_foreign_counter_store_is_refused(world: World, tmp_path: Path) -> None:
    req_x, x, _, _ = world.two_headers_at_2()
    world.victim.call("verify_batch", header=x["header"], **req_x)
    blob = world.victim.call("snapshot")["local"]
    spec = {**world.platforms[2].boot_spec(), "nv_dir": str(tmp_path / "empty")}  # same machine, NV wiped
    with pytest.raises(EnclaveError, match=r"counter \(0\) is below the sealed blob"):
        world.restart_victim(blob, platform_from_spec(spec))
