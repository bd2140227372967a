"""Rounds / view change without processes: the pure state machine (node/rounds.py) drives real
in-process enclaves of four TEE types (quorum 3, min_types 3) on a simulated clock."""

from __future__ import annotations

from typing import Any

import pytest

from enclavenet.crypto.hashing import ZERO32, keccak256
from enclavenet.crypto.header import header_signing_digest
from enclavenet.crypto.timeout import timeout_digest
from enclavenet.enclave.errors import EnclaveRefusal
from enclavenet.enclave.guard import SignGuard
from enclavenet.enclave.harness import Member, batch_request, form_committee, program_config
from enclavenet.node.rounds import CommitteeRule, Rounds, TimeoutVote, check_timeout_vote
from enclavenet.tee import DEFAULT_PROGRAM, EnclaveError, InProcessEnclave, SimulatedVendor

TYPES = ("sgx", "tdx", "sev-snp", "csv")
VENDORS = {n: SimulatedVendor.generate(n) for n in TYPES}
CFG = program_config(VENDORS.values())
L1, ROLLUP = CFG["l1_chain_id"], CFG["rollup"]
T = 3.0  # proposer_timeout


class Sim:
    """n members, each with its enclave and its own Rounds; height 1 finalised everywhere."""

    def __init__(self, types: tuple[str, ...] = TYPES, quorum: int = 3, min_types: int = 3) -> None:
        ms = [Member(InProcessEnclave(VENDORS[t].new_platform(), DEFAULT_PROGRAM, CFG, allow_faults=True))
              for t in types]
        form_committee(ms, quorum, min_types)
        self.by = {m.address: m for m in ms}
        self.rule = CommitteeRule(tuple(sorted(self.by)), {m.address: int(m.identity["tee_type"]) for m in ms},
                                  quorum, min_types)
        self.now = 0.0
        req = batch_request(1, bytes(32), l1_block=1)
        out = ms[0].call("execute_batch", **req)
        sigs = [out["signature"]] + [m.call("verify_batch", header=out["header"], **req)["signature"] for m in ms[1:]]
        for m in ms:
            m.call("accept_header", header=out["header"], signatures=sigs)
        self.h1 = out["header_hash"]
        self.rounds = {a: Rounds(self.rule, lambda r: T) for a in self.by}
        for r in self.rounds.values():
            r.due(2, self.h1, self.now)

    def m(self, i: int) -> Member:
        return self.by[self.rule.members[i % len(self.rule.members)]]

    def req(self, ts: int) -> dict[str, Any]:
        return batch_request(2, self.h1, l1_block=1, timestamp=ts)

    def vote(self, m: Member, header: bytes, req: dict[str, Any], **kw: Any) -> bytes:
        if m.call("status")["height"] == 2 and m.call("status")["head_hash"] != keccak256(header):
            m.call("rollback", height=1)  # its head holds the other proposal: go back to the parent
        return bytes(m.call("verify_batch", header=header, **req, **kw)["signature"])

    def time_out_all(self, who: list[str]) -> list[list[bytes]] | None:
        """Advance the clock past the round's timeout; the members in ``who`` sign and broadcast
        their timeout votes; return the TC every member's state machine assembled (or None)."""
        self.now += T + 0.01
        tc = None
        for a in who:
            rs = self.rounds[a]
            assert rs.should_time_out(self.now)
            out = self.by[a].call("timeout", height=2, round=rs.round)
            rs.timed_out()
            v = TimeoutVote(2, out["round"], out["parent"], out["locked"], out["signature"], out["signer"])
            assert check_timeout_vote(self.rule, v, L1, ROLLUP) is None
            for r in self.rounds.values():
                got = r.add_timeout(v, self.now)
                tc = got if got is not None else tc
        return tc

    def qc(self, hh: bytes, sigs: dict[str, bytes], header: bytes) -> None:
        assert self.rule.complete(list(sigs))
        for m in self.by.values():
            assert m.call("accept_header", header=header, signatures=list(sigs.values()))["finalized_hash"] == hh


def _split(sim: Sim) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Round 0 at height 2: the proposer's A reaches one member, the fallback's B another: 2-2."""
    p0 = sim.m(sim.rule.members.index(sim.rule.proposer(2, 0)))
    others = [sim.by[a] for a in sim.rule.members if a != p0.address]
    fb, va, vb = others[0], others[1], others[2]
    ra, rb = sim.req(1_700_000_001), sim.req(1_700_000_002)
    a = p0.call("execute_batch", **ra)
    b = fb.call("execute_batch", **rb)  # the proposal was delayed to the fallback, which proposed B
    sig_a = {p0.address: a["signature"], va.address: sim.vote(va, a["header"], ra)}
    sig_b = {fb.address: b["signature"], vb.address: sim.vote(vb, b["header"], rb)}
    assert not sim.rule.complete(list(sig_a)) and not sim.rule.complete(list(sig_b))  # no QC either way
    # the guard refuses a second header in round 0 to every member (two headers at one (height, round))
    for m, other, req in ((va, b, rb), (vb, a, ra)):
        with pytest.raises(EnclaveError, match="second header at height 2"):
            sim.vote(m, other["header"], req)
    return a, b, {"sigs": sig_a, "req": ra}, {"sigs": sig_b, "req": rb}


@pytest.mark.parametrize("timeouts", [3, 4])
def test_a_2_2_split_vote_is_resolved_in_round_1(timeouts: int) -> None:
    sim = Sim()
    a, b, sa, sb = _split(sim)
    # the first `timeouts` members to time out (A's two signers first) form round 0's TC
    order = [*sa["sigs"], *sb["sigs"]][:timeouts]
    tc = sim.time_out_all(order)
    assert tc is not None and len(tc) == timeouts
    for r in sim.rounds.values():
        assert r.enter(1, sim.now) and r.round == 1
    forced = sim.rounds[order[0]].forced(0)
    p1 = sim.by[sim.rule.proposer(2, 1)]
    if timeouts == 3:  # locks A, A, B: A may hold a QC elsewhere (2 + 1 outside = quorum), so round 1 carries A
        assert forced == {a["header_hash"]}
        header, req = a["header"], sa["req"]
        with pytest.raises(EnclaveError, match="may hold a QC"):
            sim.vote(sim.by[order[2]], b["header"], sb["req"], round=1, tc=tc)  # B is refused in round 1
    else:  # locks A, A, B, B: neither can hold a QC; round 1's proposer cuts a fresh batch
        assert forced is None
        sim.by[p1.address].call("rollback", height=1)
        c = p1.call("execute_batch", round=1, tc=tc, **sim.req(1_700_000_003))
        header, req = c["header"], sim.req(1_700_000_003)
    hh = keccak256(header)
    sigs = {a_: sim.vote(m, header, req, round=1, tc=tc) for a_, m in sim.by.items()}
    assert all(len(s) == 65 for s in sigs.values())
    sim.qc(hh, dict(list(sigs.items())[:3]), header)
    # round 1 finished within one more timeout: 2 x proposer_timeout after the split began
    assert sim.now <= 2 * T


def test_a_delayed_proposal_is_overtaken_by_round_1() -> None:
    sim = Sim()
    p0 = sim.by[sim.rule.proposer(2, 0)]
    late_req = sim.req(1_700_000_001)
    late = p0.call("execute_batch", **late_req)  # its host delays it to everyone
    rest = [a for a in sim.rule.members if a != p0.address]
    tc = sim.time_out_all(rest)  # the three others time out round 0 (they saw nothing)
    assert tc is not None and sim.rounds[rest[0]].forced(0) is None  # no lock anywhere but the proposer's
    for a in rest:  # the delayed proposal arrives now: round 0 is over for whoever timed it out
        with pytest.raises(EnclaveError, match="timed out that round"):
            sim.vote(sim.by[a], late["header"], late_req)
    for r in sim.rounds.values():
        r.enter(1, sim.now)
    p1 = sim.by[sim.rule.proposer(2, 1)]
    assert p1 is not p0
    req = sim.req(1_700_000_004)
    c = p1.call("execute_batch", round=1, tc=tc, **req)
    sigs = {p1.address: c["signature"]}
    for a in sim.rule.members:
        if a != p1.address:
            sigs[a] = sim.vote(sim.by[a], c["header"], req, round=1, tc=tc)  # the delayed proposer joins too
    sim.qc(c["header_hash"], dict(list(sigs.items())[:3]), c["header"])


def test_a_compromised_minority_makes_no_tc_and_no_qc_alone() -> None:
    # three members of one type (sgx), one tdx; quorum 3, min_types 2; sgx is compromised
    sim = Sim(types=("sgx", "sgx", "sgx", "tdx"), quorum=3, min_types=2)
    sgx = [m for m in sim.by.values() if m.identity["tee_name"] == "sgx"]
    honest = next(m for m in sim.by.values() if m.identity["tee_name"] == "tdx")
    leaked = [m.handle.compromise() for m in sgx]  # every key of the broken type
    assert all(k["address"] == m.address for k, m in zip(leaked, sgx, strict=True))
    # the thief signs timeout votes for any round with the leaked keys: quorum, but one type
    tc = [[ZERO32, m.handle.compromised_sign(timeout_digest(L1, ROLLUP, 2, 0, sim.h1, ZERO32))] for m in sgx]
    assert not sim.rule.complete([m.address for m in sgx])
    req = sim.req(1_700_000_009)
    with pytest.raises(EnclaveError, match="span 1 TEE types, 2 required"):
        honest.call("execute_batch", round=1, tc=tc, **req)
    with pytest.raises(EnclaveError, match="needs a timeout certificate"):
        honest.call("execute_batch", round=1, **req)
    # a QC of the broken type alone is refused as well (the header of their own execution)
    out = sgx[0].call("execute_batch", **req)
    digest = header_signing_digest(out["header_hash"], L1, ROLLUP)
    sigs = [out["signature"]] + [m.handle.compromised_sign(digest) for m in sgx[1:]]
    with pytest.raises(EnclaveError, match="QC: signers span 1 TEE types"):
        honest.call("accept_header", header=out["header"], signatures=sigs)
    assert honest.call("status")["finalized_height"] == 1
    # forged votes of non-members or a repeated member do not count either
    dup = [tc[0], tc[0], tc[1]]
    with pytest.raises(EnclaveError, match="voted twice"):
        honest.call("verify_batch", header=out["header"], round=1, tc=dup, **req)


def test_the_guard_refuses_two_headers_at_one_height_and_round() -> None:
    g = SignGuard()
    h1, h2 = keccak256(b"one"), keccak256(b"two")
    g.record(5, h1)
    with pytest.raises(EnclaveRefusal, match="second header at height 5"):
        g.record(5, h2)
    with pytest.raises(EnclaveRefusal, match="is in round 0 there"):
        g.record(5, h2, 1)  # a later round needs a TC first
    assert g.timeout(5, 0) == h1  # the timeout reports the lock
    with pytest.raises(EnclaveRefusal, match="timed out that round"):
        g.record(5, h2, 0)
    g.enter_round(5, 1, None)
    g.record(5, h2, 1)  # one header per (height, round)
    with pytest.raises(EnclaveRefusal, match="second header at height 5"):
        g.record(5, keccak256(b"three"), 1)
    # one header per (height, round) *on one parent*: a pipelined height built on a header that
    # lost at height - 1 does not block the one built on the winner (both parents cannot be final)
    pa, pb = keccak256(b"parent a"), keccak256(b"parent b")
    g.record(6, h1, 0, pa)
    g.record(6, h2, 0, pb)
    with pytest.raises(EnclaveRefusal, match="second header at height 6"):
        g.record(6, keccak256(b"three"), 0, pa)
    assert g.lock(6, pa) == h1 and g.lock(6, pb) == h2
    # persistence keeps everything (rounds, timeouts, inputs) and a merge forgets nothing
    g.record_input(5, ZERO32, 1, b"d" * 32)
    g2 = SignGuard()
    g2.merge(SignGuard.from_cbor(g.to_cbor()))
    with pytest.raises(EnclaveRefusal, match="second header at height 5"):
        g2.check(5, keccak256(b"three"), 1)
    with pytest.raises(EnclaveRefusal, match="second batch input at height 5 round 1"):
        g2.check_input(5, ZERO32, 1, b"e" * 32)
    assert g2.lock(5) == h2 and g2.round(5) == 1
    g.enter_round(5, 2, None)
    with pytest.raises(EnclaveRefusal, match="round 1 is over"):
        g.timeout(5, 1)  # round 1 is over once the guard is in round 2
    # a v1 record (before rounds) still loads as round-0 signatures
    old = SignGuard.from_cbor({"floor": 2, "signed": [[5, h1]]})
    with pytest.raises(EnclaveRefusal, match="second header at height 5"):
        old.check(5, h2)



def test_the_round_timer_tc_assembly_and_back_off_without_enclaves() -> None:
    from enclavenet.crypto.secp256k1 import SigningKey
    from enclavenet.node.viewchange import round_timeout

    keys = sorted((SigningKey.generate() for _ in range(4)), key=lambda k: int(k.address, 16))
    rule = CommitteeRule(tuple(k.address for k in keys), {k.address: i + 1 for i, k in enumerate(keys)}, 3, 3)
    assert [rule.proposer(5, r) for r in range(5)] == [rule.members[(5 + r) % 4] for r in range(5)]
    rs = Rounds(rule, lambda r: round_timeout(T, r))
    parent = keccak256(b"h4")
    rs.due(5, parent, 100.0)
    rs.restart_clock(101.0)  # work appeared later: the timeout counts from then
    assert not rs.should_time_out(101.0 + T - 0.01) and rs.should_time_out(101.0 + T)
    # the node's own stalls (a timeout policy's elapsed()) do not count as the proposer's silence
    assert not rs.should_time_out(101.0 + T, elapsed=lambda since: 101.0 + T - 1.0 - since)
    rs.timed_out()
    assert not rs.should_time_out(200.0)  # once per round

    def vote(k: SigningKey, r: int, locked: bytes = ZERO32, h: int = 5, p: bytes = parent) -> TimeoutVote:
        return TimeoutVote(h, r, p, locked, k.sign(timeout_digest(L1, ROLLUP, h, r, p, locked)), k.address)

    assert check_timeout_vote(rule, vote(keys[0], 0), L1, ROLLUP) is None
    forged = vote(keys[0], 0)
    assert "recovers to" in str(check_timeout_vote(rule, TimeoutVote(5, 1, parent, ZERO32, forged.signature,
                                                                     keys[0].address), L1, ROLLUP))
    outsider = SigningKey.generate()
    assert "not a committee member" in str(check_timeout_vote(rule, vote(outsider, 0), L1, ROLLUP))
    # votes for another height or parent never count; a TC needs quorum distinct members
    assert rs.add_timeout(vote(keys[0], 0, h=6), 102.0) is None
    assert rs.add_timeout(vote(keys[1], 0, p=keccak256(b"other")), 102.0) is None
    assert rs.add_timeout(vote(keys[0], 0), 102.0) is None
    assert rs.add_timeout(vote(keys[0], 0), 102.0) is None  # the same member again
    assert rs.add_timeout(vote(keys[1], 0), 102.0) is None
    tc = rs.add_timeout(vote(keys[2], 0), 102.0)
    assert tc is not None and len(tc) == 3 and rs.forced(0) is None
    assert rs.enter(1, 103.0) and not rs.enter(1, 104.0) and rs.proposer() == rule.proposer(5, 1)
    assert rs.deadline() == 103.0 + T
    # back-off: rounds 0 and 1 take T, then doubling up to 8 T
    assert [round_timeout(T, r) / T for r in range(7)] == [1, 1, 2, 4, 8, 8, 8]
    # a TC whose locks could hide a QC forces that header into the next round
    x = keccak256(b"X")
    assert rule.forced({keys[0].address: x, keys[1].address: x, keys[2].address: ZERO32}) == {x}
    assert rule.forced({k.address: (x if i < 2 else keccak256(b"Y")) for i, k in enumerate(keys)}) is None
    # a new height starts at round 0 again
    rs.due(6, keccak256(b"h5"), 110.0)
    assert rs.round == 0 and rs.tc(0) is None
