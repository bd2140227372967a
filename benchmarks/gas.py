"""L1 gas of every EnclaveNet contract function, against TeeRollup (Table IV) and POSE.

    .venv/bin/python benchmarks/gas.py [--quick] [--l1 embedded|anvil]

The Rollup contract (registry compiled in) is deployed on the embedded L1 (or anvil: the
numbers are the same, both run the Prague rules). Simulated enclaves: secp256k1 keys whose
quotes are signed by one root key per TEE type (sgx, tdx, sev-snp, csv, round robin).

Committees of 5, 10, 15 and 20 members; the QC of each header has quorum = ceil(2n/3)
signatures (4, 7, 10, 14) and min_types = 3. The headline is 10 members / 7 signatures from
3 types, in the steady state: not the first header (which writes fresh slots), the same
epoch, no withdrawals, and the header consumes every L1 message so far. Its msg_acc is
read from the Rollup's ring of recent accumulators and compared, whether or not newer
messages are pending (see the 'pending messages' row). The Rollup's deployment gas (the
constructor pre-initialises the 256 ring slots) and runtime code size are measured too.

Batch data lives with the DAPs; L1 sees the header only, so the L1 gas per transaction of a
batch of b transactions is header_gas / b.

The challenge / freeze / escape-hatch / reclaim functions are measured on the headline
deployment too: the escape proof is that of one account in a balances tree of 100,000
accounts (1,000 with --quick), as the enclaves build it (crypto.smt, salted leaves).

Targets: header (10 members, 7 sigs, 3 types) <= 90,000; deposit <= 45,000 (steady state);
registration <= 150,000. Ends with one JSON line: header_gas_10_members, deposit_gas,
register_gas, gas_per_tx_batch_2000, challenge_gas, freeze_gas, escape_gas, reclaim_gas,
dap_extra_gas_t1/t2/t3 (DAP storage receipts checked in submitHeader, over the t = 0 header),
erc20_deposit_gas, erc20_withdraw_gas, l2_to_l1_message_gas (the L1 Bridge) (and more).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm
from web3.logs import DISCARD

from enclavenet.chain import L1, TxSender, open_l1
from enclavenet.contracts import deploy_contracts, load_artifact
from enclavenet.contracts.simulate import SimEnclave, SimPlatform, pick_qc, sign_qc, spread_types
from enclavenet.crypto.hashing import to_checksum
from enclavenet.crypto.header import (
    EMPTY_WITHDRAWALS_HASH,
    GENESIS_PREV_HASH,
    Header,
    Withdrawal,
    withdrawals_hash,
)
from enclavenet.crypto.messages import MSG_GENESIS_ACC, L1Message, accumulate
from enclavenet.crypto.smt import SparseMerkleTree, smt_key, smt_leaf

OUT = Path(__file__).resolve().parent / "out"
COMMITTEES = (5, 10, 15, 20)
MIN_TYPES = 3
BATCH_SIZES = (500, 1000, 1500, 2000)
DAY = 86_400

# TeeRollup (Wen et al., 2024), Table IV, and POSE (Frassetto et al., NDSS 2023)
TEEROLLUP = {"deposit": 48_551, "header_10": 156_263, "transfer": 21_000, "per_tx_2000": 78}
POSE_REGISTER = {"ECDSA": 152_950, "RSA": 172_900}
TARGETS = {"header_10": 90_000, "deposit": 45_000, "register": 150_000}


def _median(values: Any) -> int:
    return int(statistics.median(list(values)))


def quorum_for(n: int) -> int:
    return math.ceil(2 * n / 3)


class Bench:
    """One deployment with an n-member committee; measures each call's gasUsed."""

    def __init__(self, l1: L1, n: int) -> None:
        self.l1, self.n = l1, n
        self.owner: TxSender = l1.sender(0)
        self.user: TxSender = l1.sender(1)
        self.platforms = {t: SimPlatform(t) for t in (1, 2, 3, 4)}
        self.measurement = {t: os.urandom(32) for t in self.platforms}
        self.quorum = quorum_for(n)
        dep = deploy_contracts(
            self.owner, self.owner.address, self.quorum, MIN_TYPES,
            platform_roots={t: p.root_address for t, p in self.platforms.items()},
            measurements={t: [m] for t, m in self.measurement.items()},
        )
        self.rollup = dep.rollup
        self.f = dep.rollup.functions
        self.members = [SimEnclave(t) for t in spread_types(n)]
        self.register_gas = [self.gas(self.owner, self.f.register(*self.quote(e).args())) for e in self.members]
        self.prev = GENESIS_PREV_HASH

    def quote(self, e: SimEnclave, extra: int = 0) -> Any:
        return self.platforms[e.tee_type].quote(e, self.measurement[e.tee_type], self.l1.timestamp() + DAY + extra)

    @staticmethod
    def gas(sender: TxSender, fn: Any, value: int = 0) -> int:
        return int(sender.transact(fn, value=value)["gasUsed"])

    def header_gas(self, *, pending: int = 0, pending_acc: bytes = b"", epoch: int = 1,
                   withdrawals: Sequence[Withdrawal] = (), signers: Sequence[SimEnclave] | None = None) -> int:
        """Submit the next header; ``pending`` = newest messages it leaves for later, and
        ``pending_acc`` the accumulator before them (the Rollup checks it)."""
        total = int(self.f.msgCount().call())
        h = Header(
            height=int(self.f.lastHeight().call()) + 1, prev_hash=self.prev, epoch=epoch,
            epoch_key=os.urandom(32), l1_block=self.l1.block_number() - 1,
            msg_count=total - pending, msg_acc=pending_acc if pending else bytes(self.f.msgAcc().call()),
            tx_root=os.urandom(32), receipts_root=os.urandom(32), state_root=os.urandom(32),
            balances_root=os.urandom(32),
            withdrawals_hash=withdrawals_hash(list(withdrawals)) if withdrawals else EMPTY_WITHDRAWALS_HASH,
            data_commitment=os.urandom(32),
        )
        qc = signers if signers is not None else pick_qc(self.members, self.quorum, MIN_TYPES)
        sigs = sign_qc(h, qc, self.l1.chain_id, self.rollup.address)
        g = self.gas(self.owner, self.f.submitHeader(h.as_tuple(), [(w.recipient, w.amount) for w in withdrawals], sigs))
        self.prev = h.hash()
        return g


def measure(l1: L1, quick: bool) -> dict[str, Any]:
    reps = 2 if quick else 5
    res: dict[str, Any] = {"header": {}, "header_pending": {}}
    for n in tqdm(COMMITTEES, desc="committees", file=sys.stderr):
        b = Bench(l1, n)
        b.gas(b.user, b.f.deposit(), value=10**18)
        b.header_gas()  # the first header writes fresh slots (lastHeaderHash, epochKey)
        res["header"][n] = _median(b.header_gas() for _ in range(reps))
        pend = []
        for _ in range(reps):
            acc = bytes(b.f.msgAcc().call())
            b.gas(b.user, b.f.deposit(), value=1)
            pend.append(b.header_gas(pending=1, pending_acc=acc))
        res["header_pending"][n] = _median(pend)
        if n != 10:
            continue
        # everything else on the headline deployment
        f, o, u = b.f, b.owner, b.user
        res["register_first"] = _median(b.register_gas)
        res["register_reattest"] = b.gas(u, f.register(*b.quote(b.members[0], extra=DAY).args()))
        res["deposit_first"] = _first_deposit(l1)  # on a fresh deployment
        res["deposit"] = _median(b.gas(u, f.deposit(), value=10**15) for _ in range(reps))
        res["submit_200B"] = _median(b.gas(u, f.submit(os.urandom(200))) for _ in range(reps))
        res["submit_1KiB"] = b.gas(u, f.submit(os.urandom(1024)))
        res["submitLarge_20KiB"] = b.gas(u, f.submitLarge(os.urandom(20 * 1024)))
        res["header_new_epoch"] = b.header_gas(epoch=2)
        ws = [Withdrawal(to_checksum(os.urandom(20)), 10**12 + i) for i in range(4)]
        res["header_4_withdrawals_new_accounts"] = b.header_gas(epoch=2, withdrawals=ws)
        res["header_4_withdrawals_existing"] = b.header_gas(epoch=2, withdrawals=ws)
        res["setPolicy"] = b.gas(o, f.setPolicy(b.quorum, MIN_TYPES))
        res["setPlatformRoot"] = b.gas(o, f.setPlatformRoot(5, to_checksum(os.urandom(20))))
        res["allowMeasurement"] = b.gas(o, f.allowMeasurement(1, os.urandom(32)))
        spare = b.members[-1]
        res["revokeEnclave"] = b.gas(o, f.revokeEnclave(spare.address))
        extra = os.urandom(32)
        b.gas(o, f.allowMeasurement(4, extra))
        res["revokeMeasurement"] = b.gas(o, f.revokeMeasurement(4, extra))
        res["revokeType"] = b.gas(o, f.revokeType(5))
        alive = [m for m in b.members if m is not spare]
        qc = pick_qc(alive, b.quorum, MIN_TYPES)
        res["header_after_revocation"] = b.header_gas(epoch=3, signers=qc)  # re-checks each signer once
        res["header_after_revocation_next"] = b.header_gas(epoch=3, signers=qc)
        res["transferOwnership"] = b.gas(o, f.transferOwnership(u.address))
    res["header_first"] = _first_header(l1)
    res["rollup_deploy"], res["rollup_runtime_bytes"] = _rollup_deploy(l1)
    res.update(_escape_hatch(l1, 1_000 if quick else 100_000))
    res.update(_dap(l1, reps))
    res.update(_bridge(l1, reps))
    return res


TRIVIAL_TARGET = """# pragma version 0.4.3
@external
@payable
def __default__():
    pass
"""


def _bridge(l1: L1, reps: int) -> dict[str, Any]:
    """The L1 Bridge next to the headline deployment: depositERC20 (steady state: the token's
    and the Bridge's balances exist; incl. Rollup.submit), and relayMessage with a 1-header
    chain of an ERC20 withdrawal (to a recipient that holds the token) and of a generic message
    of 64 bytes to a trivial target, each the 2nd of a batch's 4 messages."""
    import vyper
    from web3 import Web3

    from enclavenet.contracts import deploy_bridge
    from enclavenet.contracts.simulate import simulated_batch
    from enclavenet.crypto.bridge import L2ToL1Message, l2_token_address, withdrawal_data
    from enclavenet.crypto.hashing import address_bytes

    fixtures = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "contracts"
    b = Bench(l1, 10)
    bridge = deploy_bridge(b.owner, b.rollup.address)
    w3 = l1.w3

    def deploy(source: str, *args: Any) -> Any:
        out = vyper.compile_code(source, output_formats=["abi", "bytecode"])
        return w3.eth.contract(address=Web3.to_checksum_address(b.owner.deploy(out["abi"], out["bytecode"], *args)), abi=out["abi"])

    token = deploy((fixtures / "TestToken.vy").read_text(), 6, 0)
    target = deploy(TRIVIAL_TARGET)
    u = b.user
    b.gas(b.owner, token.functions.mint(u.address, 10**12))
    b.gas(u, token.functions.approve(bridge.address, 2**256 - 1))
    out: dict[str, Any] = {"erc20_deposit_first": b.gas(u, bridge.functions.depositERC20(token.address, u.address, 10**9))}
    out["erc20_deposit"] = _median(b.gas(u, bridge.functions.depositERC20(token.address, u.address, 10**6))
                                   for _ in range(reps))
    out["bridge_send_message_64B"] = b.gas(u, bridge.functions.sendMessage(target.address, os.urandom(64), 100_000))
    recipient = u.address  # holds the token already
    l2_token = l2_token_address(token.address)

    def relay_gas(sender: bytes, to: bytes, data: bytes) -> int:
        from enclavenet.client.bridge import relay_args

        height = int(b.f.lastHeight().call()) + 1
        specs = [(os.urandom(20), os.urandom(20), os.urandom(64)), (sender, to, data),
                 (os.urandom(20), os.urandom(20), os.urandom(64)), (os.urandom(20), os.urandom(20), os.urandom(64))]
        items = [L2ToL1Message(height, i, s, t, d).encode() for i, (s, t, d) in enumerate(specs)]
        batch_data, dc = simulated_batch(height, items, envelopes=[os.urandom(200) for _ in range(100)],
                                         entries=[os.urandom(100) for _ in range(100)], prev_hash=b.prev)
        total = int(b.f.msgCount().call())
        h = Header(
            height=height, prev_hash=b.prev, epoch=1, epoch_key=os.urandom(32), l1_block=l1.block_number() - 1,
            msg_count=total, msg_acc=bytes(b.f.msgAcc().call()), tx_root=os.urandom(32),
            receipts_root=os.urandom(32), state_root=os.urandom(32), balances_root=os.urandom(32),
            withdrawals_hash=EMPTY_WITHDRAWALS_HASH, data_commitment=dc,
        )
        b.gas(b.owner, b.f.submitHeader(h.as_tuple(), [], sign_qc(h, pick_qc(b.members, b.quorum, MIN_TYPES), l1.chain_id, b.rollup.address)))
        b.prev = h.hash()
        args = relay_args([h], batch_data, 1)
        out["bridge_meta_siblings"] = len(args.meta_siblings)
        return b.gas(b.owner, bridge.functions.relayMessage(*args.args()))

    wd = withdrawal_data(token.address, recipient, 1000)
    out["erc20_withdraw"] = _median(relay_gas(l2_token, address_bytes(bridge.address), wd) for _ in range(reps))
    out["l2_to_l1_message_64B"] = _median(relay_gas(os.urandom(20), address_bytes(target.address), os.urandom(64))
                                          for _ in range(reps))
    out["bridge_anchor"] = b.gas(b.owner, bridge.functions.anchor())
    art = load_artifact("Bridge")
    out["bridge_runtime_bytes"] = (len(art["deployedBytecode"]) - 2) // 2
    return out


def _dap(l1: L1, reps: int) -> dict[str, Any]:
    """DAP storage receipts on the headline deployment (10 members, QC 7 / 3 types): the header
    with t = 0 (no DapManager: today's path), then with t = 1, 2, 3 receipts; and the DapManager's
    own calls (register, leave, requestData naming 3 DAPs, answerData, resolveRequest)."""
    from eth_account import Account

    from enclavenet.crypto.dap import dap_receipt_digest, data_commitment, piece_index, piece_proof
    from enclavenet.crypto.secp256k1 import SigningKey
    from enclavenet.dap.l1 import deploy_dap_manager, receipts_arg

    b = Bench(l1, 10)
    b.gas(b.user, b.f.deposit(), value=10**18)
    b.header_gas()
    out: dict[str, Any] = {"dap_header_t0": _median(b.header_gas() for _ in range(reps))}
    manager = deploy_dap_manager(b.owner, b.rollup.address, answer_period=5, leave_delay=10,
                                 min_collateral=10**18, request_fee=10**15, lazy_penalty=10**17)
    keys = sorted((SigningKey.generate() for _ in range(4)), key=lambda k: k.address.lower())
    senders = []
    funder = l1.sender(3)
    for k in keys:
        funder.send_raw(k.address, value=3 * 10**18)
        senders.append(l1.sender(Account.from_key(k.secret)))
    regs = [b.gas(s, manager.functions.register(f"http://127.0.0.1:{8600 + i}"), value=10**18)
            for i, s in enumerate(senders)]
    out["dap_register"] = _median(regs)
    items = [os.urandom(200) for _ in range(1000)]  # a batch of ~1,000 items: depth 10
    dc = data_commitment(items)

    def receipts(t: int) -> list[tuple[bytes, bytes]]:
        digest = dap_receipt_digest(l1.chain_id, b.rollup.address, dc)
        return receipts_arg([(k.address, k.sign(digest)) for k in keys[:t]])

    for t in (1, 2, 3):
        b.gas(b.owner, manager.functions.setThreshold(t))
        gs = []
        for _ in range(reps):
            total = int(b.f.msgCount().call())
            h = Header(
                height=int(b.f.lastHeight().call()) + 1, prev_hash=b.prev, epoch=1, epoch_key=os.urandom(32),
                l1_block=l1.block_number() - 1, msg_count=total, msg_acc=bytes(b.f.msgAcc().call()),
                tx_root=os.urandom(32), receipts_root=os.urandom(32), state_root=os.urandom(32),
                balances_root=os.urandom(32), withdrawals_hash=EMPTY_WITHDRAWALS_HASH, data_commitment=dc,
            )
            sigs = sign_qc(h, pick_qc(b.members, b.quorum, MIN_TYPES), l1.chain_id, b.rollup.address)
            gs.append(b.gas(b.owner, b.f.submitHeader(h.as_tuple(), [], sigs, receipts(t))))
            b.prev = h.hash()
        out[f"dap_header_t{t}"] = _median(gs)
    m = manager.functions
    out["dap_setThreshold"] = b.gas(b.owner, m.setThreshold(3))
    rc = b.user.transact(m.requestData(dc, 777, receipts(3)), value=10**15)
    out["dap_request_3"] = int(rc["gasUsed"])
    rid = manager.events.DataRequested().process_receipt(rc)[0].args.request_id
    index = piece_index(777, len(items))
    _, siblings = piece_proof(items, index)
    out["dap_answer_200B_depth10"] = b.gas(senders[0], m.answerData(rid, items[index], siblings))
    out["dap_answer_siblings"] = len(siblings)
    l1.mine(6)
    out["dap_resolve_3"] = b.gas(b.user, m.resolveRequest(rid, [k.address for k in keys[:3]]))
    out["dap_leave"] = b.gas(senders[3], m.leave())
    l1.mine(10)
    out["dap_withdraw"] = b.gas(senders[3], m.withdraw())
    return out


def _escape_hatch(l1: L1, accounts: int) -> dict[str, Any]:
    """challenge, freeze, escape (proof in a tree of ``accounts``), reclaim, proveMessages."""
    b = Bench(l1, 10)
    f, o, u = b.f, b.owner, b.user
    bond, period = 10**15, 5
    b.gas(o, f.setChallengeParams(period, bond))
    msgs: list[L1Message] = []

    def send(fn: Any, value: int = 0) -> int:
        rc = u.transact(fn, value=value)
        for ev in b.rollup.events.L1Message().process_receipt(rc, errors=DISCARD):
            a = ev.args
            msgs.append(L1Message(a.index, a.kind, to_checksum(a.sender), a.value, a.l1_block, bytes(a.payload)))
        return int(rc["gasUsed"])

    send(f.deposit(), 10**18)
    # the balances tree as the enclaves build it; the user's leaf is one of ``accounts``
    salt, balance = os.urandom(32), 10**17
    leaves = {smt_key(os.urandom(20)): os.urandom(32) for _ in range(accounts - 1)}
    key = smt_key(u.address)
    leaves[key] = smt_leaf(key, balance, salt)
    tree = SparseMerkleTree()
    tree.update(leaves)
    siblings = tree.proof(key)
    h = Header(
        height=int(f.lastHeight().call()) + 1, prev_hash=b.prev, epoch=1, epoch_key=os.urandom(32),
        l1_block=b.l1.block_number() - 1, msg_count=len(msgs), msg_acc=accumulate(MSG_GENESIS_ACC, msgs),
        tx_root=os.urandom(32), receipts_root=os.urandom(32), state_root=os.urandom(32),
        balances_root=tree.root, withdrawals_hash=EMPTY_WITHDRAWALS_HASH, data_commitment=os.urandom(32),
    )
    sigs = sign_qc(h, pick_qc(b.members, b.quorum, MIN_TYPES), b.l1.chain_id, b.rollup.address)
    b.gas(o, f.submitHeader(h.as_tuple(), [], sigs))
    out: dict[str, Any] = {"escape_accounts": accounts, "escape_siblings": len(siblings)}
    out["challenge_200B"] = send(f.challenge(os.urandom(200)), bond)
    challenged = len(msgs) - 1
    for _ in range(17):
        send(f.deposit(), 10**15)
    b.l1.mine(period + 1)
    out["freeze"] = b.gas(u, f.freeze(challenged))
    out["escape"] = b.gas(u, f.escape(h.as_tuple(), balance, salt, siblings, u.address))

    def seg(start: int, end: int) -> tuple[bytes, list[tuple[Any, ...]]]:
        return accumulate(MSG_GENESIS_ACC, msgs[:start]), [
            (m.kind, m.sender, m.value, m.l1_block, m.payload_hash) for m in msgs[start:end]
        ]

    n = len(msgs)
    out["reclaim_1"] = b.gas(u, f.reclaim(*seg(n - 1, n), 0))
    out["reclaim_16"] = b.gas(u, f.reclaim(*seg(n - 16, n), 0))
    out["proveMessages_16"] = b.gas(u, f.proveMessages(*seg(n - 16, n)))
    out["setChallengeParams"] = b.gas(o, f.setChallengeParams(period, bond))
    return out


def _first_deposit(l1: L1) -> int:
    owner = l1.sender(0)
    dep = deploy_contracts(owner, owner.address, 1, 1)
    return Bench.gas(l1.sender(2), dep.rollup.functions.deposit(), value=10**15)


def _rollup_deploy(l1: L1) -> tuple[int, int]:
    """Gas of the Rollup's deployment transaction (no configuration calls) and its runtime size."""
    art = load_artifact("Rollup")
    owner = l1.sender(0)
    data = l1.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"]).constructor(owner.address, 1, 1).data_in_transaction
    rc = owner.send_raw(None, data, what="deploying the Rollup")
    return int(rc["gasUsed"]), len(bytes(l1.w3.eth.get_code(rc["contractAddress"])))


def _first_header(l1: L1) -> int:
    b = Bench(l1, 10)
    b.gas(b.user, b.f.deposit(), value=1)
    return b.header_gas()


def table(res: dict[str, Any]) -> str:
    h10 = res["header"][10]
    rows: list[tuple[str, Any, str]] = [
        ("submitHeader, 10 members, QC 7 sigs / 3 types (steady state)", h10,
         f"TeeRollup UpdateState 156,263 (10 sequencers); target <= 90,000: {'ok' if h10 <= 90_000 else 'MISSED'}"),
        ("  same, leaving newer messages pending", res["header_pending"][10], "msg_acc checked against the ring too"),
        ("  first header (fresh slots: lastHeaderHash, epochKey)", res["header_first"], ""),
        ("  new epoch (records the epoch key)", res["header_new_epoch"], ""),
        ("  + 4 withdrawals to new accounts", res["header_4_withdrawals_new_accounts"], "25,000 per new account is the EVM's"),
        ("  + 4 withdrawals to existing accounts", res["header_4_withdrawals_existing"], ""),
        ("  first header after a type/measurement revocation", res["header_after_revocation"], "each signer re-checked once"),
        ("  the header after that", res["header_after_revocation_next"], ""),
        ("deposit (steady state)", res["deposit"],
         f"TeeRollup Deposit 48,551; target <= 45,000: {'ok' if res['deposit'] <= 45_000 else 'MISSED'}"),
        ("deposit, first ever on a deployment", res["deposit_first"], "no fresh slot: the constructor initialises them"),
        ("submit, 200-byte envelope", res["submit_200B"], "the inbox (forced inclusion) path"),
        ("submit, 1 KiB envelope", res["submit_1KiB"], ""),
        ("submitLarge, 20 KiB envelope", res["submitLarge_20KiB"], ""),
        ("register (first registration)", res["register_first"],
         f"POSE 152,950 (ECDSA) / 172,900 (RSA); target <= 150,000: {'ok' if res['register_first'] <= 150_000 else 'MISSED'}"),
        ("register (re-attestation)", res["register_reattest"], ""),
        ("setPolicy", res["setPolicy"], "owner"),
        ("setPlatformRoot (new type)", res["setPlatformRoot"], "owner"),
        ("allowMeasurement", res["allowMeasurement"], "owner"),
        ("revokeEnclave", res["revokeEnclave"], "owner"),
        ("revokeMeasurement", res["revokeMeasurement"], "owner"),
        ("revokeType", res["revokeType"], "owner"),
        ("transferOwnership", res["transferOwnership"], "owner"),
        ("challenge, 200-byte envelope (+ bond)", res["challenge_200B"], "submit + the deadline slot; TeeRollup: -"),
        ("freeze (unresolved challenge past its deadline)", res["freeze"], "anyone"),
        (f"escape ({res['escape_siblings']} siblings: 1 of {res['escape_accounts']:,} accounts)", res["escape"],
         "header preimage + salted SMT proof + one flag + the payment"),
        ("reclaim, segment of 1 message", res["reclaim_1"], "the message is the newest"),
        ("reclaim, segment of 16 messages", res["reclaim_16"], "~1,750 per message of the segment"),
        ("proveMessages, 16 messages", res["proveMessages_16"], "a checkpoint for segments > 256"),
        ("setChallengeParams", res["setChallengeParams"], "owner"),
        ("submitHeader with DAP receipts: t = 0 (no DAPs configured)", res["dap_header_t0"], "same path as the headline"),
        ("  t = 1 storage receipt", res["dap_header_t1"], f"+{res['dap_header_t1'] - res['dap_header_t0']:,} over t = 0"),
        ("  t = 2 storage receipts", res["dap_header_t2"], f"+{res['dap_header_t2'] - res['dap_header_t0']:,} over t = 0"),
        ("  t = 3 storage receipts", res["dap_header_t3"], f"+{res['dap_header_t3'] - res['dap_header_t0']:,} over t = 0"),
        ("DapManager.register (+ Rollup flag)", res["dap_register"], "collateral 1 ETH; cross-contract call to the Rollup"),
        ("DapManager.setThreshold", res["dap_setThreshold"], "owner"),
        ("DapManager.requestData naming 3 DAPs", res["dap_request_3"], "3 receipts checked, request stored"),
        (f"DapManager.answerData, 200-byte piece, {res['dap_answer_siblings']} siblings", res["dap_answer_200B_depth10"], "first answer: earns the fee"),
        ("DapManager.resolveRequest, 3 named (1 answered)", res["dap_resolve_3"], "2 lazy DAPs slashed"),
        ("DapManager.leave", res["dap_leave"], "stops counting at once"),
        ("DapManager.withdraw (after the delay)", res["dap_withdraw"], ""),
        ("Bridge.depositERC20 (steady state, incl. Rollup.submit)", res["erc20_deposit"],
         f"test ERC20's transferFrom included; first deposit of a token {res['erc20_deposit_first']:,}"),
        ("Bridge.sendMessage, 64 bytes of call data", res["bridge_send_message_64B"], "L1 -> EnclaveNet contract call"),
        ("Bridge.relayMessage: ERC20 withdrawal, 1-header chain", res["erc20_withdraw"],
         f"4 messages; meta is 1 of 201 items ({res['bridge_meta_siblings']} siblings); recipient holds the token"),
        ("Bridge.relayMessage: 64-byte message to a trivial target", res["l2_to_l1_message_64B"], "via the executor; xDomainMessageSender set/reset"),
        ("Bridge.anchor", res["bridge_anchor"], f"Bridge runtime code {res['bridge_runtime_bytes']:,} bytes"),
        ("Rollup deployment (constructor only)", res["rollup_deploy"],
         f"incl. 256 ring slots x 22,100; runtime code {res['rollup_runtime_bytes']:,} of 24,576 bytes"),
        ("plain ETH transfer (reference)", 21_000, "TeeRollup Transfer 21,000"),
    ]
    w = max(len(r[0]) for r in rows)
    lines = [f"{'function':<{w}}  {'gas':>10}  note", "-" * (w + 62)]
    lines += [f"{name:<{w}}  {gas:>10,}  {note}" for name, gas, note in rows]
    lines += ["", "header gas by committee size (QC = ceil(2n/3) signatures, >= 3 TEE types):",
              f"{'members':>8} {'QC sigs':>8} {'all consumed':>13} {'pending msgs':>13}"]
    for n in COMMITTEES:
        lines.append(f"{n:>8} {quorum_for(n):>8} {res['header'][n]:>13,} {res['header_pending'][n]:>13,}")
    lines += ["", "amortised L1 gas per transaction (header only; batch data is with the DAPs):",
              f"{'batch':>8} {'EnclaveNet':>11} {'TeeRollup':>10}"]
    for bs in BATCH_SIZES:
        tee = f"{TEEROLLUP['per_tx_2000']}" if bs == 2000 else "-"
        lines.append(f"{bs:>8} {h10 / bs:>11.1f} {tee:>10}")
    return "\n".join(lines)


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.5))
    labels = ["header\n(10 members)", "deposit", "register"]
    ours = [res["header"][10], res["deposit"], res["register_first"]]
    theirs = [TEEROLLUP["header_10"], TEEROLLUP["deposit"], POSE_REGISTER["ECDSA"]]
    x = range(len(labels))
    a.bar([i - 0.2 for i in x], ours, 0.4, label="EnclaveNet")
    a.bar([i + 0.2 for i in x], theirs, 0.4, label="TeeRollup / POSE (ECDSA)")
    a.set_xticks(list(x), labels)
    a.set_ylabel("gas")
    a.set_title("L1 gas per call")
    a.legend()
    b.plot(COMMITTEES, [res["header"][n] for n in COMMITTEES], "o-", label="all messages consumed")
    b.plot(COMMITTEES, [res["header_pending"][n] for n in COMMITTEES], "s--", label="newer messages pending")
    b.axhline(TARGETS["header_10"], color="grey", ls=":", label="target (10 members)")
    b.set_xlabel("committee size n (QC = ceil(2n/3))")
    b.set_ylabel("submitHeader gas")
    b.set_title("header gas vs committee")
    b.legend()
    c.plot(BATCH_SIZES, [res["header"][10] / s for s in BATCH_SIZES], "o-", label="EnclaveNet")
    c.plot([2000], [TEEROLLUP["per_tx_2000"]], "x", ms=10, label="TeeRollup @2000")
    c.set_xlabel("transactions per batch")
    c.set_ylabel("L1 gas per tx")
    c.set_title("amortised L1 gas per transaction")
    c.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repetitions (the gas is deterministic anyway)")
    p.add_argument("--l1", default="embedded", choices=("embedded", "anvil"), help="L1 backend")
    args = p.parse_args(argv)
    load_artifact("Rollup")
    with open_l1(args.l1) as l1:
        res = measure(l1, args.quick)
    print(table(res))
    png = OUT / "gas.png"
    plot(res, png)
    print(f"\nplot: {png}")
    summary = {
        "header_gas_10_members": int(res["header"][10]),
        "header_gas_10_members_pending_msgs": int(res["header_pending"][10]),
        "header_gas_by_members": {str(n): int(res["header"][n]) for n in COMMITTEES},
        "deposit_gas": int(res["deposit"]),
        "register_gas": int(res["register_first"]),
        "submit_gas_200B": int(res["submit_200B"]),
        "gas_per_tx_batch_2000": round(res["header"][10] / 2000, 1),
        "teerollup_header_gas_10": TEEROLLUP["header_10"],
        "challenge_gas": int(res["challenge_200B"]),
        "freeze_gas": int(res["freeze"]),
        "escape_gas": int(res["escape"]),
        "escape_siblings": int(res["escape_siblings"]),
        "reclaim_gas": int(res["reclaim_1"]),
        "dap_header_gas_t0": int(res["dap_header_t0"]),
        "dap_extra_gas_t1": int(res["dap_header_t1"] - res["dap_header_t0"]),
        "dap_extra_gas_t2": int(res["dap_header_t2"] - res["dap_header_t0"]),
        "dap_extra_gas_t3": int(res["dap_header_t3"] - res["dap_header_t0"]),
        "dap_register_gas": int(res["dap_register"]),
        "dap_request_gas_3": int(res["dap_request_3"]),
        "dap_answer_gas": int(res["dap_answer_200B_depth10"]),
        "dap_resolve_gas_3": int(res["dap_resolve_3"]),
        "erc20_deposit_gas": int(res["erc20_deposit"]),
        "erc20_withdraw_gas": int(res["erc20_withdraw"]),
        "l2_to_l1_message_gas": int(res["l2_to_l1_message_64B"]),
        "rollup_deploy_gas": int(res["rollup_deploy"]),
        "rollup_runtime_bytes": int(res["rollup_runtime_bytes"]),
        "targets_met": bool(
            res["header"][10] <= TARGETS["header_10"]
            and res["deposit"] <= TARGETS["deposit"]
            and res["register_first"] <= TARGETS["register"]
        ),
        "l1": args.l1,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
