"""The enclave program in real enclave processes (ProcessEnclave): sgx and sev-snp agree,
a sealed snapshot moves to another member, and the voter refuses to sign a lie or twice."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account import Account

from enclavenet.crypto.envelope import open_receipt, seal
from enclavenet.crypto.hashing import keccak256
from enclavenet.crypto.header import Header
from enclavenet.crypto.secp256k1 import recover_address
from enclavenet.enclave.executor import Receipt
from enclavenet.enclave.harness import (
    Member,
    batch_request,
    form_committee,
    program_config,
    share_epoch,
    update_committee,
)
from enclavenet.enclave.tx import sign_tx
from enclavenet.tee import DEFAULT_PROGRAM, EnclaveError, ProcessEnclave, SimulatedVendor

pytestmark = pytest.mark.integration

CHAIN = 777
VENDORS = [SimulatedVendor.generate("sgx"), SimulatedVendor.generate("sev-snp"), SimulatedVendor.generate("tdx")]
CFG = program_config(VENDORS, chain_id=CHAIN)


@pytest.fixture(scope="module")
def members() -> Iterator[list[Member]]:
    ms: list[Member] = []
    try:
        for v in VENDORS:
            ms.append(Member(ProcessEnclave(v.new_platform(), DEFAULT_PROGRAM, CFG, timeout=60)))
        yield ms
    finally:
        for m in ms:
            m.close()


def test_process_enclaves_of_two_vendors_agree_snapshot_moves_and_voter_refuses(members: list[Member]) -> None:
    sgx, snp, tdx = members
    assert {m.identity["tee_name"] for m in members} == {"sgx", "sev-snp", "tdx"}
    # committee of sgx + sev-snp; tdx is a member too but gets the epoch later (via a snapshot)
    epoch_pub = form_committee([sgx, snp], quorum=2, min_types=2)
    quotes = [m.identity["quote"] for m in members]
    tdx.call("committee", members=quotes, quorum=2, min_types=2)  # its first committee: the host's word
    update_committee([sgx, snp], [sgx, snp], quotes, 2, 2)  # adding tdx takes a QC of sgx and sev-snp

    users = [Account.create() for _ in range(4)]
    deposits = [[i, 1, u.address, 10**18, 10, b""] for i, u in enumerate(users)]
    req1 = batch_request(1, bytes(32), l1_block=10, messages=deposits)
    out1 = sgx.call("execute_batch", **req1)
    v1 = snp.call("verify_batch", header=out1["header"], **req1)
    assert v1["header_hash"] == out1["header_hash"]  # sgx and sev-snp: identical header and roots

    txs = [seal(sign_tx(bytes(u.key), CHAIN, 0, users[(i + 1) % 4].address, value=10**15, gas=21_000), epoch_pub, CHAIN, 0)
           for i, u in enumerate(users)]
    req2 = batch_request(2, out1["header_hash"], l1_block=10, envelopes=[t.envelope.encode() for t in txs])
    out2 = snp.call("execute_batch", **req2)  # now sev-snp proposes
    v2 = sgx.call("verify_batch", header=out2["header"], **req2)
    h2 = Header.decode(out2["header"])
    assert v2["header_hash"] == h2.hash() and out2["n_ok"] == 4
    for t in txs:
        assert Receipt.decode(open_receipt(t.receipt_key, out2["receipts"][keccak256(t.envelope.encode())])).success
    sigs = sorted([out2["signature"], v2["signature"]])
    assert {recover_address(h2.signing_digest(CFG["l1_chain_id"], CFG["rollup"]), s) for s in sigs} == {sgx.address, snp.address}
    for m in (sgx, snp):
        assert m.call("accept_header", header=out2["header"], signatures=sigs)["finalized_height"] == 2

    # sealed snapshot from sgx, restored in the tdx member (same epoch keys): continues identically
    snap = sgx.call("snapshot")
    share_epoch(sgx, [tdx], 0)
    st = tdx.call("restore", blob=snap["shared"], header=out2["header"], signatures=sigs)
    assert st["height"] == 2 and st["head_hash"] == h2.hash() and st["state_root"] == h2.state_root
    txs3 = [seal(sign_tx(bytes(u.key), CHAIN, 1, users[0].address, value=10**14, gas=21_000), epoch_pub, CHAIN, 0)
            for u in users[1:]]
    req3 = batch_request(3, h2.hash(), l1_block=11, envelopes=[t.envelope.encode() for t in txs3],
                         messages=[[4, 1, users[0].address, 5, 11, b""]])
    out3 = tdx.call("execute_batch", **req3)
    assert snp.call("verify_batch", header=out3["header"], **req3)["header_hash"] == out3["header_hash"]
    assert sgx.call("verify_batch", header=out3["header"], **req3)["header_hash"] == out3["header_hash"]

    # the voter refuses a header that differs, and refuses to sign twice at one height
    req4 = batch_request(4, out3["header_hash"], l1_block=12)
    out4 = sgx.call("execute_batch", **req4)
    lie = Header(**{**Header.decode(out4["header"]).__dict__, "state_root": keccak256(b"forged")})
    with pytest.raises(EnclaveError, match="header mismatch"):
        snp.call("verify_batch", header=lie.encode(), **req4)
    assert snp.call("status")["height"] == 3
    snp.call("verify_batch", header=out4["header"], **req4)
    snp.call("rollback", height=3)
    req4b = batch_request(4, out3["header_hash"], l1_block=12, timestamp=2_000_000_000)
    out4b = tdx.call("execute_batch", **req4b)
    with pytest.raises(EnclaveError, match="second header at height 4"):
        snp.call("verify_batch", header=out4b["header"], **req4b)
    # every enclave process is still alive and answering after all refusals
    assert all(m.call("status")["address"] == m.address for m in members)
