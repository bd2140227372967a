"""The fault matrix: inject every fault of issue 5 into a real devnet and measure the recovery.

    .venv/bin/python benchmarks/faults.py [--quick] [--only 'row,row']

Two devnets of 4 node processes (sgx, tdx, sev-snp, csv; quorum 3 spanning >= 3 types), each
node with its enclave process: the embedded L1 for the committee faults, anvil (confirmations 1)
for the L1 reorganisation and the challenge / freeze / escape rows. While the faults are injected,
one user per node sends plain transfers through that node's JSON-RPC (fast path); a transaction
counts as *acknowledged* when the node returned its receipt id, and as *lost* when no node ever
serves its receipt (checked at the end on every node).

Per row: faults injected, recovered, transactions lost, and the time to recover:

* proposer crash / hang, voter crash, all nodes restarted: from the fault to the next header
  accepted on L1 (the header the victim would have proposed, or the first after the restart,
  counted from when every node serves again and has read L1; ``outage_s`` includes start-up);
* messages dropped / delayed / replayed / reordered (a hostile host on EVERY node, for a few
  seconds under load): from lifting the fault to the next accepted header (headers keep coming
  during it too: the largest gap between headers during the fault is printed); replays also go
  to the enclaves (stale batch inputs), whose answers are counted: refused / identical / violations;
* one host delays the proposal to everyone (its ``propose`` messages late by 3 x proposer_timeout):
  from the transaction to the next header (a fallback adopts the proposal from its proposer);
* split vote: two proposals at one height, votes split 2-2 (the primary's proposal ``cut`` to two
  members, the first fallback's requests for pending proposals ``cut``): from clearing the
  faults to the next header -- needs rounds; recovered 0 until the committee has them. These two
  rows run on a devnet of their own (an unresolved split wedges it);
* compromised TEE types below / at the bound: min_types-1 (then min_types) enclaves of distinct
  types leak their keys; a forged header (a wrong state root and a withdrawal to the thief) is
  submitted with the leaked signatures: refused below the bound, accepted at it (recovered = the
  L1 did what the bound says). Run last on the first devnet: at the bound the committee is broken;
* L1 reorg: a deposit in a block replaced by a reorganisation (re-included elsewhere), then a reorg
  deeper than ``confirmations`` that takes an accepted header away: credited once, header re-anchored;
* frivolous challenge (bond forfeited), ignored transaction challenged (executed, bond back): from
  the challenge to the header resolving it;
* freeze and escape: every node killed, a challenge left past its deadline, freeze, every user's
  escape withdrawal paid from the leaf fetched earlier: from the freeze to the last payment.

``max_recovery_over_timeout`` is the largest recovery / proposer_timeout over the committee rows
(crash, hang, voter, restart and link rows). Prints a table, writes benchmarks/out/faults.png and
ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import requests  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_account.signers.local import LocalAccount  # noqa: E402
from web3 import Web3  # noqa: E402

from enclavenet.client import (  # noqa: E402
    challenge,
    challenge_status,
    deposit,
    escape_withdraw,
    fetch_escape_leaf,
    freeze,
    wrap,
)
from enclavenet.client.l1 import _l1_transact  # noqa: E402
from enclavenet.contracts import qc_signatures  # noqa: E402
from enclavenet.crypto.header import Header, Withdrawal, withdrawals_hash  # noqa: E402
from enclavenet.crypto.secp256k1 import SigningKey  # noqa: E402
from enclavenet.devnet import Devnet  # noqa: E402

ETH = 10**18
OUT = ROOT / "benchmarks" / "out"


@dataclass
class Row:
    fault: str
    injected: int = 0
    recovered: int = 0
    lost: int = 0
    recovery_s: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self, timeout: float) -> dict[str, Any]:
        out: dict[str, Any] = {"fault": self.fault, "injected": self.injected, "recovered": self.recovered,
                               "transactions_lost": self.lost,
                               "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 3)}
        if self.recovery_s is not None and self.extra.get("timed"):
            out["recovery_over_timeout"] = round(self.recovery_s / timeout, 3)
        out.update({k: v for k, v in self.extra.items() if k != "timed"})
        if self.note:
            out["note"] = self.note
        return out


def l1_pay(l1: Web3, frm: LocalAccount, to: str, value: int) -> None:
    tx = {"to": to, "value": value, "gas": 21_000, "chainId": l1.eth.chain_id,
          "nonce": l1.eth.get_transaction_count(frm.address, "pending"),
          "maxFeePerGas": 2 * l1.eth.get_block("latest")["baseFeePerGas"] + 10**9, "maxPriorityFeePerGas": 10**9}
    assert l1.eth.wait_for_transaction_receipt(l1.eth.send_raw_transaction(frm.sign_transaction(tx).raw_transaction),
                                               timeout=60).status == 1


def until(what: str, fn: Any, timeout: float = 60.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(every)


def settles(fn: Any, timeout: float = 15.0) -> bool:
    """True once ``fn()`` holds (within ``timeout``): a node's head can trail L1 by a header."""
    try:
        return bool(until("the expected state", fn, timeout, every=0.1))
    except TimeoutError:
        return False


def rpc(url: str, method: str, *params: Any, timeout: float = 5.0) -> Any:
    out = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
                        timeout=timeout).json()
    if "error" in out:
        raise RuntimeError(out["error"].get("message"))
    return out["result"]


class Load:
    """One user per node sends a plain transfer through that node every ``period`` seconds."""

    def __init__(self, net: Devnet, period: float = 0.25) -> None:
        assert net.w3 is not None
        self.net = net
        self.period = period
        self.users = [Account.create() for _ in range(net.n)]
        self.sink = Account.create().address
        self.acked: list[str] = []
        self.refused = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.paused: set[int] = set()
        for u in self.users:
            l1_pay(net.w3, net.accounts[0], u.address, ETH // 10)
            deposit(net.w3, u, net.rollup.address, ETH // 100)
        w = self.w3(0, 0)
        until("the load's deposits", lambda: all(w.eth.get_balance(u.address) == ETH // 100 for u in self.users), 120)

    def w3(self, i: int, user: int) -> Web3:
        return wrap(Web3(Web3.HTTPProvider(self.net.rpc_urls[i], request_kwargs={"timeout": 10})), self.users[user],
                    l1=self.net.w3)

    def _run(self, i: int) -> None:
        w3 = self.w3(i, i)
        u = self.users[i].address
        while not self._stop.is_set():
            if i not in self.paused:
                try:
                    h = w3.eth.send_transaction({"from": u, "to": self.sink, "value": 1, "gas": 21_000})
                    self.acked.append("0x" + bytes(h).hex())
                except Exception:  # a node down or refusing: not acknowledged, so not counted
                    self.refused += 1
                    w3 = self.w3(i, i)  # the client re-reads its nonce privately
                    time.sleep(0.2)
            self._stop.wait(self.period)

    def start(self) -> Load:
        self._stop.clear()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.net.n)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def lost(self, timeout: float = 90.0) -> int:
        """Acknowledged transactions whose receipt no node serves within ``timeout``."""
        pending = set(self.acked)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for rid in list(pending):
                for url in self.net.rpc_urls:
                    try:
                        if rpc(url, "eth_getTransactionReceipt", rid) is not None:
                            pending.discard(rid)
                            break
                    except Exception:
                        continue
            if pending:
                time.sleep(0.5)
        return len(pending)


def next_header_after(net: Devnet, h0: int, t0: float, timeout: float = 60.0) -> float:
    until(f"a header above {h0}", lambda: net.l1_height() > h0, timeout, every=0.02)
    return time.monotonic() - t0


def settle(net: Devnet, nodes: list[int] | None = None) -> None:
    """Wait until the given nodes follow L1's height (after a fault)."""
    idx = nodes if nodes is not None else list(range(net.n))
    target = net.l1_height()
    until("nodes following L1", lambda: all(net.height(i) >= target for i in idx), 90, every=0.1)


def after_a_header(net: Devnet) -> int:
    """Return right after a new header was accepted (the next height just became due)."""
    h = net.l1_height()
    until("the next header", lambda: net.l1_height() > h, 30, every=0.01)
    return net.l1_height()


# ---------------------------------------------------------------- committee faults
def proposer_crash(net: Devnet, load: Load) -> Row:
    h0 = after_a_header(net)
    p = net.proposer_index(h0 + 1)
    load.paused.add(p)
    t0 = time.monotonic()
    net.kill(p)
    rec = next_header_after(net, h0, t0)
    time.sleep(2)
    net.restart(p)
    load.paused.discard(p)
    settle(net)
    return Row("proposer crash", 1, 1, recovery_s=rec, extra={"timed": True})


def proposer_hang(net: Devnet, load: Load) -> Row:
    h0 = after_a_header(net)
    p = net.proposer_index(h0 + 1)
    t0 = time.monotonic()
    net.hang_enclave(p)
    rec = next_header_after(net, h0, t0)
    time.sleep(2)
    load.paused.add(p)
    net.kill(p)
    net.restart(p)
    load.paused.discard(p)
    settle(net)
    return Row("proposer hang", 1, 1, recovery_s=rec, extra={"timed": True})


def voter_crash(net: Devnet, load: Load) -> Row:
    h0 = after_a_header(net)
    v = (net.proposer_index(h0 + 1) + 2) % net.n
    load.paused.add(v)
    t0 = time.monotonic()
    net.kill(v)
    rec = next_header_after(net, h0, t0)
    time.sleep(2)
    net.restart(v)
    load.paused.discard(v)
    settle(net)
    return Row("voter crash", 1, 1, recovery_s=rec, extra={"timed": True})


def all_restarted(net: Devnet, load: Load) -> Row:
    h0 = net.l1_height()
    load.paused.update(range(net.n))
    t0 = time.monotonic()
    for i in range(net.n):
        net.kill(i)
    for i in range(net.n):
        p = net._node_proc(i)
        p.start(wait_ready=False)
        net.procs[i] = p
    until("every node serving again", lambda: all(net.status(i) is not None for i in range(net.n)), 120, every=0.05)
    until("every node having read L1", lambda: all((net.status(i) or {}).get("height", -1) >= h0 for i in range(net.n)),
          120, every=0.05)
    t_back = time.monotonic()
    load.paused.clear()
    rec = next_header_after(net, h0, t_back, 120)
    net.wait_healthy(120)
    settle(net)
    # the recovery is counted from the moment the restarted nodes serve again and have read L1
    # once (process start-up: Python, the enclave process, restoring the sealed state, the first
    # L1 poll -- seconds on a loaded machine -- is not the protocol's doing; outage_s has it all)
    return Row("all nodes restarted", 1, 1, recovery_s=rec,
               extra={"timed": True, "outage_s": round(t_back - t0 + rec, 3)})


def link_fault(net: Devnet, name: str, links: dict[str, Any], window: float, enclave_link: dict[str, Any] | None = None) -> Row:
    before = [net.faults(i) for i in range(net.n)]
    for i in range(net.n):
        net.faults(i, links={**links, "seed": 1000 + i}, enclave_link=enclave_link)
    heights: list[tuple[float, int]] = []
    t_end = time.monotonic() + window
    while time.monotonic() < t_end:
        heights.append((time.monotonic(), net.l1_height()))
        time.sleep(0.05)
    after = [net.faults(i) for i in range(net.n)]
    for i in range(net.n):
        net.faults(i, links=None, enclave_link=None)
    t0 = time.monotonic()
    h0 = net.l1_height()
    rec = next_header_after(net, h0, t0)
    kinds = [k for k in ("drop", "delay", "reorder", "replay") if links.get(k)]
    injected = sum(a["links"]["injected"][k] - b["links"]["injected"][k] for a, b in zip(after, before, strict=True) for k in kinds)
    extra: dict[str, Any] = {"timed": True, "headers_during_fault": heights[-1][1] - heights[0][1]}
    gaps, last_t, last_h = [], heights[0][0], heights[0][1]
    for t, h in heights:
        if h > last_h:
            gaps.append(t - last_t)
            last_t, last_h = t, h
    extra["max_header_gap_s"] = round(max([*gaps, t_end - last_t]), 3)
    if enclave_link is not None:
        reps = {"refused": 0, "identical": 0, "violations": 0}
        for a in after:
            el = a.get("enclaveLink") or {}
            injected += int((el.get("injected") or {}).get("replay", 0))
            for k in reps:
                reps[k] += int((el.get("replays") or {}).get(k, 0))
        extra["enclave_replays"] = reps
    settle(net)
    ok = extra["headers_during_fault"] > 0 and extra.get("enclave_replays", {}).get("violations", 0) == 0
    return Row(name, injected, injected if ok else 0, recovery_s=rec, extra=extra)


# ---------------------------------------------------------------- proposals a hostile host holds back
def quiesce(net: Devnet, load: Load) -> int:
    """Pause the load and wait until nothing is pending (so the next height starts exactly when
    the row sends its transaction, under the policies it set). Returns L1's height."""
    load.paused.update(range(net.n))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        h = net.l1_height()
        time.sleep(0.6)
        sts = [net.status(i) or {} for i in range(net.n)]
        if net.l1_height() == h and all(int((st.get("mempool") or {}).get("pending", 1)) == 0 for st in sts) \
                and all(st.get("head") == h for st in sts):
            return h
    raise TimeoutError("the committee did not go quiet")


def one_tx(net: Devnet, load: Load, via: int) -> None:
    """One transfer of load user ``via`` through node ``via`` (acknowledged like the load's)."""
    w3 = load.w3(via, via)
    h = w3.eth.send_transaction({"from": load.users[via].address, "to": load.sink, "value": 1, "gas": 21_000})
    load.acked.append("0x" + bytes(h).hex())


def delayed_proposal(net: Devnet, load: Load, timeout: float) -> Row:
    """The proposer's host delays its proposal to every peer by 3 x proposer_timeout: a fallback
    adopts it (asking the peers for a pending proposal) or builds one; the late copies arrive
    after and change nothing."""
    h0 = quiesce(net, load)
    p = net.proposer_index(h0 + 1)
    net.faults(p, links={"delay": 3 * timeout, "ops": ["propose"]})
    t0 = time.monotonic()
    one_tx(net, load, (p + 1) % net.n)
    try:
        rec = next_header_after(net, h0, t0, 10 * timeout + 10)
        ok = 1
    except TimeoutError:
        rec, ok = None, 0
    injected = net.faults(p)["links"]["injected"]["delay"]
    net.faults(p, links=None)
    load.paused.clear()
    settle(net)
    return Row("one host delays the proposal to everyone", 1, ok, recovery_s=rec,
               extra={"timed": True, "delayed_messages": injected, "delay_s": 3 * timeout})


def split_vote(net: Devnet, load: Load, timeout: float) -> Row:
    """Two proposals at one height, votes split 2-2 (quorum 3 of 4): the primary's host delivers
    its proposal to one voter only; the first fallback's host drops its requests for pending
    proposals, so it builds a second one, which the fourth member signs. Neither reaches a quorum
    without a round change (an enclave never signs two headers at one (height, round))."""
    h0 = quiesce(net, load)
    t = h0 + 1
    p = net.proposer_index(t)
    order = [net.proposer_index(t + j) for j in range(net.n)]  # rotation order after the primary
    f, x, y = order[1], order[2], order[3]
    net.faults(p, links={"cut": 1.0, "ops": ["propose"], "peers": [net.rpc_urls[f], net.rpc_urls[y]]})
    net.faults(f, links={"cut": 1.0, "ops": ["batch"]})
    t0 = time.monotonic()
    one_tx(net, load, x)
    time.sleep(3 * timeout)  # the primary collects from x only; f times out and proposes its own
    for i in (p, f):
        net.faults(i, links=None)
    t_clear = time.monotonic()
    try:
        rec = next_header_after(net, h0, t_clear, 10 * timeout + 10)
        ok, note = 1, ""
    except TimeoutError:
        rec, ok, note = None, 0, "split vote not resolved (no header within 10 x timeout + 10 s): needs rounds"
    load.paused.clear()
    if ok:
        settle(net)
    return Row("split vote", 1, ok, recovery_s=rec, note=note,
               extra={"timed": True, "fault_window_s": round(t_clear - t0, 3)})

# ---------------------------------------------------------------- broken TEEs
def forged_header(net: Devnet, leaked: list[str], thief: str) -> tuple[bool, str]:
    """A header with a wrong state and a withdrawal of 0.01 ETH to the thief, signed by the leaked keys."""
    f = net.rollup.functions
    h = int(f.lastHeight().call())
    epoch = int(f.currentEpoch().call())
    ws = [Withdrawal(thief, ETH // 100)]
    hdr = Header(
        height=h + 1, prev_hash=bytes(f.lastHeaderHash().call()), epoch=epoch, epoch_key=bytes(f.epochKey(epoch).call()),
        l1_block=int(f.lastL1Block().call()), msg_count=int(f.msgCount().call()), msg_acc=bytes(f.msgAcc().call()),
        tx_root=os.urandom(32), receipts_root=os.urandom(32), state_root=os.urandom(32), balances_root=os.urandom(32),
        withdrawals_hash=withdrawals_hash(ws), data_commitment=os.urandom(32),
    )
    digest = hdr.signing_digest(net.l1_chain_id, net.rollup.address)
    sigs = []
    for k in leaked:
        sk = SigningKey(bytes.fromhex(k[2:]))
        sigs.append((sk.address, sk.sign(digest)))
    fn = f.submitHeader(hdr.as_tuple(), [(w.recipient, w.amount) for w in ws], qc_signatures(sigs))
    try:
        fn.call({"from": net.accounts[1].address})
    except Exception as exc:
        return False, str(exc)
    _l1_transact(net.w3, net.accounts[1], fn, 0, 60)  # type: ignore[arg-type]
    return True, "accepted"


def compromised(net: Devnet, load: Load, k: int, bound: int) -> Row:
    load.stop()
    until("the committee idle", lambda: all(not (net.status(i) or {}).get("mempool", {}).get("pending") for i in range(net.n))
          and net.rollup.functions.msgConsumed().call() == net.rollup.functions.msgCount().call(), 60)
    time.sleep(1.0)
    by_type: dict[str, int] = {}
    for i, t in enumerate(net.tee_types):
        by_type.setdefault(t, i)
    victims = list(by_type.values())[:k]
    leaked = [net.compromise(i)["signingKey"] for i in victims]
    thief = Account.create().address
    accepted, why = forged_header(net, leaked, thief)
    assert net.w3 is not None
    paid = net.w3.eth.get_balance(thief)
    expect_accept = k >= bound
    ok = accepted == expect_accept and (paid > 0) == expect_accept
    name = f"compromised types {'at' if expect_accept else 'below'} the bound ({k} of min_types {bound})"
    m = re.search(r"(Registry|Rollup): [^'\"]+", why)
    note = "forged header accepted, thief paid" if accepted else f"forged header refused ({m.group(0) if m else why[:60]})"
    return Row(name, 1, 1 if ok else 0, note=note)


# ---------------------------------------------------------------- L1 rows (anvil)
def l1_reorg(net: Devnet) -> Row:
    assert net.w3 is not None
    l1 = net.w3
    f = net.rollup.functions
    user = Account.create()
    l1_pay(l1, net.accounts[0], user.address, ETH // 10)
    w3u = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[0], request_kwargs={"timeout": 10})), user, l1=l1)
    # 1. a deposit in a block the reorganisation replaces (depth = confirmations): re-included elsewhere
    tx = f.deposit().build_transaction({"from": user.address, "value": 12345, "nonce": l1.eth.get_transaction_count(user.address),
                                        "gas": 200_000, "chainId": l1.eth.chain_id})
    raw = bytes(user.sign_transaction(tx).raw_transaction)
    block = int(l1.eth.wait_for_transaction_receipt(l1.eth.send_raw_transaction(raw))["blockNumber"])
    net.l1_reorg(transactions=[(raw, 0)], from_block=block)
    t0 = time.monotonic()
    until("the re-included deposit credited", lambda: w3u.eth.get_balance(user.address) == 12345, 60)
    rec1 = time.monotonic() - t0
    # 2. a reorganisation deeper than confirmations takes an accepted header away
    l1_pay(l1, net.accounts[0], Account.create().address, 1)  # some work so a header comes
    h = w3u.eth.send_transaction({"from": user.address, "to": Account.create().address, "value": 5, "gas": 21_000})
    w3u.eth.wait_for_transaction_receipt(h, timeout=60)
    h0 = int(f.lastHeight().call())
    until("every node following the header", lambda: all(net.height(i) >= h0 for i in range(net.n)), 30)
    first = int(l1.eth.get_transaction_receipt(net.rpc(0, "enclavenet_getHeader", hex(h0))["l1TxHash"])["blockNumber"])
    net.l1_reorg(from_block=first)
    t1 = time.monotonic()
    after = int(f.lastHeight().call())
    until("the header re-anchored", lambda: int(f.lastHeight().call()) >= h0, 60, every=0.05)
    rec2 = time.monotonic() - t1
    net.w3.provider.make_request("anvil_mine", ["0x3"])  # type: ignore[arg-type]
    time.sleep(1.0)
    ok = settles(lambda: w3u.eth.get_balance(user.address) == 12345 - 5 and f.msgConsumed().call() == f.msgCount().call())
    reanch = sum(int((net.status(i) or {}).get("counters", {}).get("reanchored", 0)) for i in range(net.n))
    return Row("L1 reorg", 2, 2 if ok else (1 if w3u.eth.get_balance(user.address) else 0),
               recovery_s=max(rec1, rec2),
               extra={"headers_removed": h0 - after, "reanchored": reanch, "deposit_credited_once": ok})


def challenges(net: Devnet) -> tuple[Row, Row]:
    assert net.w3 is not None and net.owner is not None
    l1 = net.w3
    f = net.rollup.functions
    _l1_transact(l1, net.owner, f.setChallengeParams(1_000, 10**15), 0, 60)  # type: ignore[arg-type]
    alice, carol = Account.create(), Account.create()
    for u in (alice, carol):
        l1_pay(l1, net.accounts[0], u.address, ETH // 10)
    w3a = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[0], request_kwargs={"timeout": 30})), alice, l1=l1)
    w3c = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[1], request_kwargs={"timeout": 30})), carol, l1=l1)
    deposit(l1, alice, net.rollup.address, ETH // 100)
    until("alice's deposit", lambda: w3a.eth.get_balance(alice.address) == ETH // 100, 60)
    t0 = time.monotonic()
    ch = challenge(w3a, l1, {"to": carol.address, "value": 5}, gas=21_000, bond=10**15)
    until("the challenge resolved", lambda: challenge_status(l1, net.rollup.address, ch.index).resolved, 60)
    rec_ignored = time.monotonic() - t0
    ok1 = settles(lambda: w3a.eth.get_balance(alice.address) == ETH // 100 - 5 + 10**15)
    t1 = time.monotonic()
    ch2 = challenge(w3c, l1, envelope=ch.envelope, bond=10**15)
    until("the frivolous challenge consumed", lambda: challenge_status(l1, net.rollup.address, ch2.index).resolved, 60)
    rec_friv = time.monotonic() - t1
    ok2 = settles(lambda: w3c.eth.get_balance(carol.address) == 5
                  and w3a.eth.get_balance(alice.address) == ETH // 100 - 5 + 10**15)
    return (Row("frivolous challenge", 1, int(ok2), recovery_s=rec_friv, note="bond forfeited to the treasury"),
            Row("ignored transaction challenged", 1, int(ok1), recovery_s=rec_ignored, note="executed, bond back"))


def freeze_and_escape(net: Devnet, tmp: Path) -> Row:
    assert net.w3 is not None and net.owner is not None
    l1 = net.w3
    f = net.rollup.functions
    users = [Account.create() for _ in range(3)]
    keeper = Account.create()
    for u in [*users, keeper]:
        l1_pay(l1, net.accounts[0], u.address, ETH // 10)
    for u in users:
        deposit(l1, u, net.rollup.address, ETH // 50)
    w3s = [wrap(Web3(Web3.HTTPProvider(net.rpc_urls[i % net.n], request_kwargs={"timeout": 30})), u, l1=l1)
           for i, u in enumerate(users)]
    until("deposits credited", lambda: all(w.eth.get_balance(u.address) == ETH // 50 for w, u in zip(w3s, users, strict=True))
          and f.msgConsumed().call() == f.msgCount().call(), 60)
    paths = []
    for i, (w, _u) in enumerate(zip(w3s, users, strict=True)):
        p = tmp / f"user{i}.leaf"

        def fresh(w: Web3 = w, p: Path = p) -> bool:
            leaf = fetch_escape_leaf(w, save_to=p)
            return bool(leaf.header_hash == bytes(f.lastHeaderHash().call()))

        until("a leaf at the last accepted header", fresh, 60, every=0.3)
        paths.append(p)
    for i in range(net.n):
        net.kill(i)
    _l1_transact(l1, net.owner, f.setChallengeParams(5, 10**15), 0, 60)  # type: ignore[arg-type]
    # the nodes are dead: the ignored transaction is sealed from L1 data alone (the epoch key on L1)
    from enclavenet.client.formats import sign_transaction
    from enclavenet.crypto.envelope import seal

    epoch = int(f.currentEpoch().call())
    env = seal(sign_transaction(bytes(users[0].key), net.chain_id, 0, keeper.address, b"", 1, 21_000),
               bytes(f.epochKey(epoch).call()), net.chain_id, epoch).envelope.encode()
    r = _l1_transact(l1, users[0], f.challenge(env), 10**15, 60)  # type: ignore[arg-type]
    (ev,) = net.rollup.events.ChallengeStarted().process_receipt(r)
    l1.provider.make_request("anvil_mine", ["0x6"])  # type: ignore[arg-type]
    t0 = time.monotonic()
    freeze(l1, keeper, net.rollup.address, int(ev["args"]["index"]))
    paid = 0
    for u, p in zip(users, paths, strict=True):
        to = Account.create().address
        escape_withdraw(l1, u, net.rollup.address, p, recipient=to)
        paid += int(l1.eth.get_balance(to) > 0)
    rec = time.monotonic() - t0
    return Row("freeze and escape", 1, int(paid == len(users) and f.frozen().call()), recovery_s=rec,
               note=f"{paid}/{len(users)} escapes paid with every enclave dead")


def devnet1_rows(opts: dict[str, Any], timeout: float, window: float, wanted: Any) -> list[Row]:
    """The committee rows on the embedded L1 (the load runs through all of them)."""
    rows: list[Row] = []
    with Devnet(n=4, **opts) as net:
        load = Load(net).start()
        time.sleep(1.0)
        for name, fn in (("proposer crash", proposer_crash), ("proposer hang", proposer_hang),
                         ("voter crash", voter_crash), ("all nodes restarted", all_restarted)):
            if not wanted(name):
                continue
            r = fn(net, load)
            rows.append(r)
            print(f"  {r.fault}: {r.recovery_s:.2f}s", flush=True)
        for name, links, el in (
            ("messages dropped", {"drop": 0.2}, None),
            ("messages delayed", {"delay": 0.15}, None),
            ("messages replayed", {"replay": 0.5}, {"replay": 0.5}),
            ("messages reordered", {"reorder": 0.6, "reorder_window": 0.3}, None),
        ):
            if not wanted(name):
                continue
            r = link_fault(net, name, links, window, el)
            rows.append(r)
            print(f"  {r.fault}: {r.recovery_s:.2f}s ({r.injected} injected)", flush=True)
        load.stop()
        lost = load.lost()
        print(f"  load: {len(load.acked)} acknowledged, {lost} lost", flush=True)
        for r in rows:  # the load ran through every committee row
            r.lost = lost if r is rows[-1] else 0
        if wanted("compromised TEE types"):
            rows.append(compromised(net, load, net.min_types - 1, net.min_types))
            rows.append(compromised(net, load, net.min_types, net.min_types))
    return rows


# ---------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short fault windows (CI)")
    ap.add_argument("--timeout", type=float, default=1.5, help="proposer_timeout of the devnets (seconds)")
    ap.add_argument("--only", default="", help="comma-separated rows to run (fault names as printed, plus "
                    "'compromised TEE types' and 'L1 rows' for the anvil devnet); default: every row")
    args = ap.parse_args()
    only = {x.strip() for x in args.only.split(",") if x.strip()}

    def wanted(name: str) -> bool:
        return not only or name in only

    timeout = args.timeout
    window = 3.0 if args.quick else 8.0
    rows: list[Row] = []
    t_start = time.monotonic()
    opts = {"batch_interval": 0.05, "proposer_timeout": timeout, "allow_faults": True, "batch_size": 200}
    lost_before = 0
    devnet1 = ("proposer crash", "proposer hang", "voter crash", "all nodes restarted", "messages dropped",
               "messages delayed", "messages replayed", "messages reordered", "compromised TEE types")
    if any(wanted(n) for n in devnet1):
        print(f"devnet 1: embedded L1, 4 nodes, proposer_timeout {timeout}s", flush=True)
        rows.extend(devnet1_rows(opts, timeout, window, wanted))
        lost_before = sum(r.lost for r in rows)
    if wanted("one host delays the proposal to everyone") or wanted("split vote"):
        # a devnet of their own: an unresolved split vote leaves the committee wedged for good
        print("devnet 2: embedded L1, 4 nodes: proposals held back by a hostile host", flush=True)
        with Devnet(n=4, **opts) as net:  # type: ignore[arg-type]
            load = Load(net).start()
            time.sleep(1.0)
            for name, fn3 in (("one host delays the proposal to everyone", delayed_proposal), ("split vote", split_vote)):
                if not wanted(name):
                    continue
                r = fn3(net, load, timeout)
                rows.append(r)
                print(f"  {r.fault}: {'-' if r.recovery_s is None else f'{r.recovery_s:.2f}s'} {r.note}", flush=True)
            load.stop()
            if rows[-1].recovered:
                rows[-1].lost = load.lost()
                lost_before += rows[-1].lost
    n_l1_rows = 0
    if wanted("L1 rows"):
        print("devnet 3: anvil L1 (confirmations 1), 4 nodes", flush=True)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp, Devnet(n=4, l1="anvil", confirmations=1, **opts) as net:  # type: ignore[arg-type]
            before = len(rows)
            rows.append(l1_reorg(net))
            rows.extend(challenges(net))
            rows.append(freeze_and_escape(net, Path(tmp)))
            n_l1_rows = len(rows) - before
    total_lost = lost_before + sum(r.lost for r in rows[len(rows) - n_l1_rows:])
    timed = [r.recovery_s / timeout for r in rows if r.extra.get("timed") and r.recovery_s is not None]
    print()
    print(f"{'fault':<52} {'injected':>8} {'recovered':>9} {'lost':>5} {'recovery (s)':>12} {'/timeout':>8}")
    for r in rows:
        rs = "-" if r.recovery_s is None else f"{r.recovery_s:.2f}"
        ratio = f"{r.recovery_s / timeout:.2f}" if r.extra.get("timed") and r.recovery_s is not None else "-"
        print(f"{r.fault:<52} {r.injected:>8} {r.recovered:>9} {r.lost:>5} {rs:>12} {ratio:>8}  {r.note}")
    print(f"({time.monotonic() - t_start:.0f} s in all)")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        OUT.mkdir(parents=True, exist_ok=True)
        tr = [r for r in rows if r.extra.get("timed") and r.recovery_s is not None]
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.barh([r.fault for r in tr], [r.recovery_s / timeout for r in tr])  # type: ignore[operator]
        ax.axvline(2.0, color="red", linestyle="--", label="target: 2 x proposer timeout")
        ax.set_xlabel("recovery / proposer timeout")
        ax.set_xlim(left=0)
        ax.legend()
        fig.tight_layout()
        fig.savefig(OUT / "faults.png", dpi=120)
    except Exception as exc:  # the plot is a bonus
        print(f"(no plot: {exc})")
    print(json.dumps({
        "faults": [r.as_json(timeout) for r in rows],
        "transactions_lost": total_lost,
        "max_recovery_over_timeout": round(max(timed), 3) if timed else None,
        "proposer_timeout_s": timeout,
        "all_recovered": all(r.recovered == r.injected for r in rows),
    }))
    if total_lost or not all(r.recovered == r.injected for r in rows):
        sys.exit(1)  # a row that did not recover fails the run (the JSON line above says which)


if __name__ == "__main__":
    main()
