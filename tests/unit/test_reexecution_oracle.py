"""Issue 14, H2: one host must not turn its enclave into a re-execution oracle.

The attack (as the security review ran it, with real in-process enclaves of three TEE types):
a victim's confidential transfer of a hidden amount X waits in the attacker's mempool. The
attacker's host puts a *fabricated* L1 deposit of d to the victim in front of it, executes the
batch, looks whether the transfer succeeded, rolls
back and tries another d -- a binary search that learns X in ~60 probes, with nothing signed
that anybody else sees (here: re-verifying a header it signed once, whose refusal said which
header fields differ). The enclave now executes at most one batch input per unfinalised
(height, parent, round); another input there needs a timeout certificate (honest members'
timeout votes, at most one more probe per round) or a QC.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account

from enclavenet.crypto.envelope import seal
from enclavenet.enclave.harness import Member, batch_request, form_committee, program_config
from enclavenet.enclave.tx import sign_tx
from enclavenet.tee import DEFAULT_PROGRAM, EnclaveError, InProcessEnclave, SimulatedVendor

CHAIN = 4242
VENDORS = [SimulatedVendor.generate(n) for n in ("sgx", "sev-snp", "tdx")]
CFG = program_config(VENDORS, chain_id=CHAIN)
HIDDEN = 123_456_789  # the victim's hidden transfer amount (wei)


PLATFORMS: list[Any] = []


def _committee() -> tuple[list[Member], bytes, bytes, Any, bytes]:
    """3 members (quorum 2, 2 types); height 1 finalised; a victim's transfer of HIDDEN sealed."""
    PLATFORMS[:] = [v.new_platform() for v in VENDORS]
    members = [Member(InProcessEnclave(p, DEFAULT_PROGRAM, CFG)) for p in PLATFORMS]
    epoch_pub = form_committee(members, quorum=2, min_types=2)
    req1 = batch_request(1, bytes(32), l1_block=1)
    out1 = members[0].call("execute_batch", **req1)
    v1 = members[1].call("verify_batch", header=out1["header"], **req1)
    members[2].call("verify_batch", header=out1["header"], **req1)
    for m in members:
        m.call("accept_header", header=out1["header"], signatures=[out1["signature"], v1["signature"]])
    victim, bob = Account.create(), Account.create()
    env = seal(sign_tx(bytes(victim.key), CHAIN, 0, bob.address, value=HIDDEN, gas=21_000), epoch_pub, CHAIN, 0)
    return members, out1["header_hash"], epoch_pub, victim, env.envelope.encode()


def _probe_request(h1: bytes, victim: Any, env: bytes, d: int) -> dict[str, Any]:
    fabricated = [0, 1, victim.address, d, 2, b""]  # an L1 deposit that never happened on L1
    return batch_request(2, h1, l1_block=2, messages=[fabricated], envelopes=[env])


def _binary_search(attacker: Member, h1: bytes, victim: Any, env: bytes) -> tuple[int | None, int, list[str]]:
    """The attacker host's search, as the review ran it; returns (learned amount or None,
    re-executions whose refusal told something, refusals that told nothing).

    Its enclave signs a reference header REF (deposit 10**18: the transfer surely succeeds). Then
    per probe: rollback, verify_batch REF with the deposit d. The re-execution runs (REF is what
    the enclave signed, so the guard lets it) and mismatches; a successful transfer gives the same
    sealed receipt as in REF, a failed one does not -- so "receipts_root" in the list of differing
    fields means the transfer failed with d."""
    ref = attacker.call("execute_batch", **_probe_request(h1, victim, env, 10**18))
    runs, refusals = 0, []

    def succeeded(d: int) -> bool | None:
        nonlocal runs
        attacker.call("rollback", height=1)
        try:
            attacker.call("verify_batch", header=ref["header"], **_probe_request(h1, victim, env, d))
            return True  # cannot happen: another deposit gives another state root
        except EnclaveError as exc:
            msg = str(exc)
        if "header mismatch" not in msg:  # refused before running, or without naming fields
            refusals.append(msg)
            return None
        runs += 1
        return "receipts_root" not in msg

    lo, hi = 0, 10**18  # the transfer fails with lo, succeeds with hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        res = succeeded(mid)
        if res is None:
            return None, runs, refusals
        lo, hi = (lo, mid) if res else (mid, hi)
    return hi, runs, refusals


def test_binary_searching_a_fabricated_deposit_after_rollback_learns_nothing() -> None:
    members, h1, _, victim, env = _committee()
    attacker = members[2]
    learned, runs, refusals = _binary_search(attacker, h1, victim, env)
    assert learned != HIDDEN, f"the attacker's host learned the hidden amount in {runs} executions"
    assert learned is None and runs == 0  # the reference execution at (height 2, round 0), then refusals
    assert "second batch input at height 2 round 0" in refusals[0] and "timeout certificate" in refusals[0]
    # verify_batch is no way round it: a fabricated header for another input is refused before it runs
    other = _probe_request(h1, victim, env, 5)
    fake = members[0].call("execute_batch", **other)  # any header will do: the input is what counts
    attacker.call("rollback", height=1)
    with pytest.raises(EnclaveError, match="second header at height 2"):
        attacker.call("verify_batch", header=fake["header"], **other)
    assert attacker.call("status")["height"] == 1  # nothing executed, nothing changed


def test_each_new_round_buys_the_attacker_one_execution_and_needs_the_honest_members() -> None:
    members, h1, _, victim, env = _committee()
    attacker = members[2]
    attacker.call("execute_batch", **_probe_request(h1, victim, env, 10**18))
    attacker.call("rollback", height=1)
    # the attacker's own timeout vote is no certificate (quorum 2)
    own = attacker.call("timeout", height=2, round=0)
    with pytest.raises(EnclaveError, match="1 member timeout votes, quorum is 2"):
        attacker.call("execute_batch", round=1, tc=[[own["locked"], own["signature"]]],
                      **_probe_request(h1, victim, env, 1))
    # honest members time out round 0 (their proposer_timeout expired): round 1 opens -- one probe
    votes = [m.call("timeout", height=2, round=0) for m in members[:2]]
    tc = [[v["locked"], v["signature"]] for v in votes]
    attacker.call("execute_batch", round=1, tc=tc, **_probe_request(h1, victim, env, 1))
    attacker.call("rollback", height=1)
    with pytest.raises(EnclaveError, match="second batch input at height 2 round 1"):
        attacker.call("execute_batch", round=1, tc=tc, **_probe_request(h1, victim, env, 2))
    # and round 0 stays closed to new inputs
    with pytest.raises(EnclaveError, match="second batch input at height 2 round 0"):
        attacker.call("execute_batch", **_probe_request(h1, victim, env, 3))


def test_restarting_the_enclave_from_its_sealed_blob_keeps_the_input_record() -> None:
    members, h1, _, victim, env = _committee()
    attacker = members[2]
    attacker.call("execute_batch", **_probe_request(h1, victim, env, 10**18))
    attacker.call("rollback", height=1)
    local = attacker.call("snapshot")["local"]  # persist: sign seals it before the signature leaves
    restarted = Member(InProcessEnclave(PLATFORMS[2], DEFAULT_PROGRAM, CFG))
    restarted.call("restore", blob=local)
    assert restarted.address == attacker.address
    with pytest.raises(EnclaveError, match="second batch input at height 2 round 0"):
        restarted.call("execute_batch", **_probe_request(h1, victim, env, 7))
