"""Issue 14 H3: every batch item fits what DapManager.answerData takes, so nobody can get honest
DAPs slashed for data they hold, and slashing never switches the availability check off.

The attack as the review ran it: a 190-byte transaction emits one 200 KB log; its sealed
receipt was one 200 KB item of the batch data; the DAPs signed the batch; ``requestData`` for
that piece could not be answered (``answerData`` takes at most 128 KiB), ``resolveRequest``
slashed every named DAP to 0 and deactivated them, and the Rollup's threshold fell to
min(t, active) = 0. Here the batch comes from real in-process enclaves, a real DAP service
(aiohttp, in process) stores and signs it, and the game runs on the embedded L1.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import cbor2
import pytest
from aiohttp.test_utils import TestClient, TestServer
from eth_account import Account
from web3.logs import DISCARD

from enclavenet.chain import EmbeddedL1, TxReverted, TxSender
from enclavenet.contracts import deploy_contracts
from enclavenet.contracts.simulate import SimEnclave, SimPlatform, sign_qc
from enclavenet.crypto.dap import MAX_PIECE_BYTES, dap_receipt_digest, data_commitment, piece_path
from enclavenet.crypto.envelope import open_receipt, seal
from enclavenet.crypto.hashing import keccak256
from enclavenet.crypto.header import EMPTY_WITHDRAWALS_HASH, Header
from enclavenet.crypto.secp256k1 import SigningKey
from enclavenet.dap.l1 import deploy_dap_manager, receipts_arg, register_dap
from enclavenet.dap.service import DapConfig, DapService
from enclavenet.enclave.batch import batch_data_items
from enclavenet.enclave.executor import Receipt
from enclavenet.enclave.harness import Member, batch_request, form_committee, program_config
from enclavenet.enclave.tx import sign_tx
from enclavenet.tee import DEFAULT_PROGRAM, InProcessEnclave, SimulatedVendor

CHAIN = 4242
DAY = 86_400
ETH = 10**18
PERIOD = 5
FEE = 10**15
LAZY = ETH // 10
# init code returning the runtime ``LOG0(0, calldataload(0)); STOP``: one log of n zero bytes
LOGGER_RUNTIME = bytes.fromhex("600035" "6000" "a0" "00")
LOGGER_INIT = bytes.fromhex("6006600c60003960066000f3") + LOGGER_RUNTIME


def _committee(l1_chain: int) -> tuple[list[Member], bytes]:
    vendors = [SimulatedVendor.generate(n) for n in ("sgx", "sev-snp", "tdx")]
    cfg = program_config(vendors, chain_id=CHAIN, l1_chain_id=l1_chain)
    members = [Member(InProcessEnclave(v.new_platform(), DEFAULT_PROGRAM, cfg)) for v in vendors]
    return members, form_committee(members, 2, 2)


def _big_log_batch(l1: EmbeddedL1) -> tuple[dict[str, Any], Any, int]:
    """Height 1 executed by real enclaves: deploy the logger, then one call logging 200 KB."""
    members, epoch_pub = _committee(l1.chain_id)
    alice = Account.create()
    deploy = seal(sign_tx(bytes(alice.key), CHAIN, 0, None, LOGGER_INIT, 0, 200_000), epoch_pub, CHAIN, 0)
    from enclavenet.client.formats import create_address

    logger = create_address(alice.address, 0)
    call = seal(sign_tx(bytes(alice.key), CHAIN, 1, logger, (200_000).to_bytes(32, "big"), 0, 5_000_000),
                epoch_pub, CHAIN, 0)
    assert len(call.envelope.encode()) < 400  # a small transaction (its 256-byte bucket + envelope header and tag)
    req = batch_request(1, bytes(32), l1_block=max(0, l1.block_number() - 1),
                        envelopes=[deploy.envelope.encode(), call.envelope.encode()])
    out = members[0].call("execute_batch", **req)
    assert members[1].call("verify_batch", header=out["header"], **req)["header_hash"] == out["header_hash"]
    entry = out["receipts"][keccak256(call.envelope.encode())]
    r = Receipt.decode(open_receipt(call.receipt_key, entry))
    items = batch_data_items(out["batch_data"])
    return out, (r, entry, items), items.index(entry)


class World:
    """Rollup (simulated committee on L1, quorum 2 of 2 types) + DapManager + 2 DAP accounts."""

    def __init__(self, l1: EmbeddedL1) -> None:
        self.l1 = l1
        self.owner: TxSender = l1.sender(0)
        self.user: TxSender = l1.sender(1)
        platforms = {t: SimPlatform(t) for t in (1, 2)}
        meas = {t: os.urandom(32) for t in (1, 2)}
        dep = deploy_contracts(self.owner, self.owner.address, 2, 2,
                               platform_roots={t: p.root_address for t, p in platforms.items()},
                               measurements={t: [m] for t, m in meas.items()})
        self.rollup = dep.rollup
        self.signers = [SimEnclave(t) for t in (1, 2)]
        for e in self.signers:
            q = platforms[e.tee_type].quote(e, meas[e.tee_type], l1.timestamp() + DAY)
            self.owner.transact(self.rollup.functions.register(*q.args()))
        self.manager = deploy_dap_manager(self.owner, self.rollup.address, min_collateral=ETH, leave_delay=20,
                                          request_fee=FEE, answer_period=PERIOD, lazy_penalty=LAZY)
        self.keys = sorted((SigningKey.generate() for _ in range(2)), key=lambda k: k.address.lower())
        self.daps = []
        for i, k in enumerate(self.keys):
            l1.sender(2).send_raw(k.address, value=5 * ETH)
            s = l1.sender(Account.from_key(k.secret))
            register_dap(s, self.manager, f"http://127.0.0.1:{8700 + i}", ETH)
            self.daps.append(s)
        self.owner.transact(self.manager.functions.setThreshold(2))

    def submit(self, h: Header, receipts: list[tuple[bytes, bytes]]) -> Any:
        sigs = sign_qc(h, self.signers, self.l1.chain_id, self.rollup.address)
        return self.owner.transact(self.rollup.functions.submitHeader(h.as_tuple(), [], sigs, receipts))

    def events(self, rc: Any, name: str) -> list[Any]:
        return list(getattr(self.manager.events, name)().process_receipt(rc, errors=DISCARD))


def _dap_store(svc: DapService, posts: list[tuple[bytes, bytes]], piece: int | None = None) -> list[tuple[int, Any, Any]]:
    """POST batches to an in-process DAP service; GET a piece (its answer) of each stored one."""
    async def go() -> list[tuple[int, Any, Any]]:
        res = []
        async with TestClient(TestServer(svc.app)) as c:
            for header, batch_data in posts:
                r = await c.post("/v1/batch", data=cbor2.dumps({"header": header, "batch_data": batch_data}))
                raw = await r.read()
                out = cbor2.loads(raw) if r.content_type == "application/cbor" else await r.json()
                if r.status != 200 or piece is None:
                    res.append((r.status, out, None))
                    continue
                h = Header.decode(header)
                n = len(batch_data_items(batch_data))
                g = await c.get(f"/v1/piece/{h.data_commitment.hex()}/{piece_path(piece, n)[0]}")
                res.append((r.status, out, cbor2.loads(await g.read())))
        return res
    return asyncio.run(go())


def test_a_200kb_log_no_longer_makes_an_unanswerable_piece_and_nobody_is_slashed(embedded_l1: EmbeddedL1) -> None:
    l1 = embedded_l1
    w = World(l1)
    out, (receipt, entry, items), index = _big_log_batch(l1)
    # the transaction ran (state changes kept) but its receipt is bounded, and says so
    assert receipt.status == 1 and receipt.logs == () and "receipt truncated" in str(receipt.error)
    assert "1 of 1 logs (200000 data bytes) left out" in str(receipt.error)
    assert len(entry) <= MAX_PIECE_BYTES
    assert max(len(x) for x in items) <= MAX_PIECE_BYTES  # every piece is answerable
    # the DAPs store and sign it; the header goes on L1 with both receipts (t = 2)
    header = Header.decode(out["header"])
    svcs = [DapService(DapConfig(store=":memory:", key=k, l1_chain_id=l1.chain_id, rollup=w.rollup.address))
            for k in w.keys]
    answers = []
    signed = []
    for k, svc in zip(w.keys, svcs, strict=True):
        ((status, res, piece),) = _dap_store(svc, [(out["header"], out["batch_data"])], index)
        assert status == 200, res
        signed.append((k.address, res["receipt"]))
        answers.append(piece)
    receipts = receipts_arg(signed)
    w.submit(header, receipts)
    # the attack: request exactly the receipt piece, then resolve after the deadline
    m = w.manager.functions
    path, _ = piece_path(index, len(items))
    rc = w.user.transact(m.requestData(header.data_commitment, path, receipts), value=FEE)
    (ev,) = w.events(rc, "DataRequested")
    rid = ev.args.request_id
    for dap, piece in zip(w.daps, answers, strict=True):  # each honest DAP answers with what it holds
        assert piece["index"] == index and piece["item"] == entry
        dap.transact(m.answerData(rid, piece["item"], piece["siblings"]))
    l1.mine(PERIOD + 1)
    rc = w.user.transact(m.resolveRequest(rid, [k.address for k in w.keys]))
    (res,) = w.events(rc, "DataRequestResolved")
    assert res.args.responders == 2 and res.args.slashed == 0
    assert not w.events(rc, "DapSlashed")
    for k in w.keys:
        info = m.info(k.address).call()
        assert info[0] == ETH and info[2]  # collateral whole, still active
    assert w.rollup.functions.dapThreshold().call() == 2  # availability still checked


def test_a_dap_refuses_to_sign_a_piece_it_could_not_answer() -> None:
    key = SigningKey.generate()
    svc = DapService(DapConfig(store=":memory:", key=key, l1_chain_id=31337, rollup="0x" + "ab" * 20))
    items = [cbor2.dumps({"v": 1}), os.urandom(100), os.urandom(MAX_PIECE_BYTES + 1), os.urandom(50)]
    h = Header(1, os.urandom(32), 0, os.urandom(32), 1, 0, os.urandom(32), os.urandom(32), os.urandom(32),
               os.urandom(32), os.urandom(32), EMPTY_WITHDRAWALS_HASH, data_commitment(items))
    big = list(items)
    items[2] = items[2][:-1]  # one byte less is stored and signed
    h2 = Header(1, os.urandom(32), 0, os.urandom(32), 1, 0, os.urandom(32), os.urandom(32), os.urandom(32),
                os.urandom(32), os.urandom(32), EMPTY_WITHDRAWALS_HASH, data_commitment(items))
    (status, res, _), (status2, res2, _) = _dap_store(svc, [(h.encode(), cbor2.dumps(big)),
                                                           (h2.encode(), cbor2.dumps(items))])
    assert status == 400
    assert res["error"] == (f"batch_data item 2 has {MAX_PIECE_BYTES + 1} bytes, above the {MAX_PIECE_BYTES} bytes "
                            "DapManager.answerData accepts: it could not be answered on chain; not stored, not signed")
    assert status2 == 200 and res2["data_commitment"] == h2.data_commitment
    assert svc.stats["stored"] == 1


def test_slashed_daps_do_not_switch_the_availability_check_off(embedded_l1: EmbeddedL1) -> None:
    """A lazy DAP slashed below the minimum stops counting, but headers still need t receipts
    (before: the Rollup was told min(t, active) and with no active DAP the check was off)."""
    l1 = embedded_l1
    w = World(l1)
    m = w.manager.functions
    items = [cbor2.dumps({"v": 1}), os.urandom(64), os.urandom(64)]

    def header(h: int, prev: bytes) -> Header:
        f = w.rollup.functions
        return Header(h, prev, 1, b"\x11" * 32, l1.block_number() - 1, f.msgCount().call(), bytes(f.msgAcc().call()),
                      os.urandom(32), os.urandom(32), os.urandom(32), os.urandom(32), EMPTY_WITHDRAWALS_HASH,
                      data_commitment(items))

    h1 = header(1, bytes(32))
    digest = dap_receipt_digest(l1.chain_id, w.rollup.address, h1.data_commitment)
    receipts = receipts_arg([(k.address, k.sign(digest)) for k in w.keys])
    w.submit(h1, receipts)
    rc = w.user.transact(m.requestData(h1.data_commitment, piece_path(1, 3)[0], receipts), value=FEE)
    rid = w.events(rc, "DataRequested")[0].args.request_id
    l1.mine(PERIOD + 1)  # nobody answers: both fully slashed, both inactive
    w.user.transact(m.resolveRequest(rid, [k.address for k in w.keys]))
    assert m.activeCount().call() == 0
    assert w.rollup.functions.dapThreshold().call() == 2  # not min(2, 0) = 0
    h2 = header(2, h1.hash())
    sigs = sign_qc(h2, w.signers, l1.chain_id, w.rollup.address)
    with pytest.raises(TxReverted) as info:
        w.owner.transact(w.rollup.functions.submitHeader(h2.as_tuple(), [], sigs))
    assert "too few storage receipts" in info.value.reason
    d2 = dap_receipt_digest(l1.chain_id, w.rollup.address, h2.data_commitment)
    with pytest.raises(TxReverted) as info:  # the slashed DAPs' receipts no longer count
        w.submit(h2, receipts_arg([(k.address, k.sign(d2)) for k in w.keys]))
    assert "receipt not by an active DAP" in info.value.reason
    # the owner may lower the threshold, in the open; then headers go on
    w.owner.transact(m.setThreshold(0))
    w.submit(h2, [])
    assert w.rollup.functions.lastHeight().call() == 2
