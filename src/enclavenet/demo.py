"""The main job, end to end on the embedded default (``make demo`` / ``enclavenet demo``).

1. A devnet comes up: the embedded L1 (eth-tester, in its own process), the Rollup (with the
   Registry compiled in), four nodes with enclaves of four TEE types (sgx, tdx, sev-snp, csv) that
   register with their quotes, the committee policy 3 of 4 spanning >= 3 types.
2. A deposit on L1 is credited inside EnclaveNet; a confidential withdrawal is paid on L1 when the
   header holding it is accepted with a quorum certificate (QC) -- whose signers the demo shows.
3. The examples run confidentially through ``enclavenet.client.wrap`` and are compared with the
   same scripts executed plainly on an L1 EVM; then the platform calls: a lottery drawn with
   private randomness and a contract wallet whose enclave-held key signs an L1 transaction;
   then an L1 ERC20 bridged in, transferred confidentially (its receiver reads the Transfer)
   and withdrawn to L1 (docs/BRIDGE.md).
4. One token transfer seen side by side: what its sender reads, and what an L1 observer reads;
   then one transfer by foundry's ``cast``, unmodified, through the gateway (docs/GATEWAY.md).
5. A short load: throughput, latency and L1 gas per transaction; then the gas of every L1
   function the demo called, next to TeeRollup's and POSE's published figures.

``make demo`` runs it on the embedded default; ``enclavenet demo --l1 anvil`` on anvil.

Everything started is stopped on exit, also on errors and Ctrl-C.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from eth_account import Account
from web3 import EthereumTesterProvider, Web3

from .chain.accounts import eth_tester_accounts, pay
from .crypto.quote import TEE_NAMES

ETHER = 10**18
REFERENCE_GAS = {  # TeeRollup Table IV and POSE's registration, for the gas table
    "deposit": ("TeeRollup Deposit", 48_551),
    "submitHeader": ("TeeRollup UpdateState (10 sequencers)", 156_263),
    "register": ("POSE registration (ECDSA)", 152_950),
}


def _rule(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 74 - len(title)))


def _short(x: str | bytes, n: int = 10) -> str:
    s = x if isinstance(x, str) else "0x" + x.hex()
    return s if len(s) <= 2 * n + 3 else f"{s[: n + 2]}…{s[-n:]}"




def _wait(cond: Any, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


class Demo:
    def __init__(self, net: Any, n_users: int = 5) -> None:
        self.net = net
        self.l1: Web3 = net.w3
        self.users = eth_tester_accounts(n_users)
        self.gas: dict[str, list[int]] = {}

    def note_gas(self, fn: str, rc: Any) -> None:
        self.gas.setdefault(fn, []).append(int(rc["gasUsed"]))

    # ------------------------------------------------------------------ 1
    def committee(self) -> None:
        net = self.net
        info = net.info()
        _rule("1. Devnet: L1, contracts, committee")
        print(f"L1 (embedded eth-tester) at {info['l1']}, chain id {info['l1ChainId']}")
        print(f"Rollup + Registry at {info['rollup']}; EnclaveNet chain id {info['chainId']}")
        print(f"committee policy: quorum {net.quorum} of {net.n}, spanning >= {net.min_types} TEE types")
        regs = net.rollup.events.EnclaveRegistered().get_logs(from_block=net.deploy_block)
        print(f"\n{'enclave (from L1 EnclaveRegistered)':44} {'TEE':8} {'measurement':24} {'node RPC'}")
        urls = dict(zip(net.addresses, net.rpc_urls, strict=False))
        for ev in regs:
            a = ev.args
            print(f"{a.enclave:44} {TEE_NAMES.get(a.tee_type, str(a.tee_type)):8} "
                  f"{_short(a.measurement, 10):24} {urls.get(a.enclave, '-')}")
            self.note_gas("register", self.l1.eth.get_transaction_receipt(ev.transactionHash))
        epoch = net.rollup.functions.currentEpoch().call()
        print(f"epoch {epoch} key on L1 (set by a QC'd header): "
              f"{_short(net.rollup.functions.epochKey(epoch).call(), 12)}")

    # ------------------------------------------------------------------ 2
    def deposit_and_withdraw(self) -> None:
        from .client import client_of, deposit, withdraw, wrap

        _rule("2. Deposit on L1, confidential withdrawal paid on L1")
        faucet = self.net.accounts[0]
        for u in self.users:
            pay(self.l1, faucet, u.address, 2 * ETHER)
        self.w3 = wrap(
            Web3(Web3.HTTPProvider(self.net.rpc_urls[0], request_kwargs={"timeout": 60})),
            self.users,
            l1=self.l1,
        )
        for u in self.users:
            rc = deposit(self.l1, u, self.net.rollup.address, ETHER)
            self.note_gas("deposit", rc)
        alice = self.users[0]
        print(f"alice = {alice.address}: deposited 1 ETH on L1 (Rollup.deposit, gas {self.gas['deposit'][0]:,})")
        _wait(lambda: all(self.w3.eth.get_balance(u.address) == ETHER for u in self.users),
              "the deposits to be credited inside EnclaveNet")
        print("credited inside EnclaveNet: alice's private balance (a signed view only she can read) = "
              f"{self.w3.eth.get_balance(alice.address) / ETHER} ETH")
        fresh = Account.create().address
        before = self.l1.eth.get_balance(fresh)
        t0 = time.monotonic()
        res = withdraw(self.w3, self.l1, ETHER // 4, recipient=fresh, sender=alice.address)
        paid = self.l1.eth.get_balance(fresh) - before
        print(f"alice withdraws 0.25 ETH to a fresh L1 address {fresh}: paid on L1 = {paid / ETHER} ETH "
              f"({time.monotonic() - t0:.1f}s)")
        if paid != ETHER // 4 or not res.paid:
            raise RuntimeError("the withdrawal was not paid on L1")
        self._show_qc(res.l1_tx_hash)
        print(f"alice's private balance now: {self.w3.eth.get_balance(alice.address) / ETHER} ETH")
        client_of(self.w3)  # the client stays usable for the next steps

    def _show_qc(self, l1_tx_hash: str) -> None:
        """Decode the submitHeader that paid the withdrawal: which enclaves of which TEE types signed."""
        from .contracts.encoding import expand_signature
        from .crypto.header import Header
        from .crypto.secp256k1 import recover_address

        tx = self.l1.eth.get_transaction(l1_tx_hash)
        rcpt = self.l1.eth.get_transaction_receipt(l1_tx_hash)
        self.note_gas("submitHeader", rcpt)
        _, args = self.net.rollup.decode_function_input(tx["input"])
        raw = args["header"]
        header = Header(**raw) if isinstance(raw, dict) else Header(*raw)
        digest = header.signing_digest(self.l1.eth.chain_id, self.net.rollup.address)
        types = dict(zip(self.net.addresses, self.net.tee_types, strict=False))
        sigs = [(sig["r"], sig["vs"]) if isinstance(sig, dict) else tuple(sig) for sig in args["signatures"]]
        signers = [recover_address(digest, expand_signature(sig)) for sig in sigs]
        print(f"header {header.height} accepted on L1 (gas {rcpt['gasUsed']:,}) with a QC of "
              f"{len(signers)} enclave signatures:")
        for a in signers:
            print(f"  {a} ({types.get(a, '?')})")
        print(f"  state root {_short(header.state_root, 8)}, balances root {_short(header.balances_root, 8)}, "
              f"{len(args['withdrawals'])} withdrawal(s) paid")

    # ------------------------------------------------------------------ 3
    def examples(self) -> None:
        import examples

        _rule("3. Examples: confidential (through wrap) vs plain L1 execution")
        print(f"{'example':16} {'confidential = plain':22} {'time':>6}  results")
        for name in sorted(examples.EXAMPLES):
            plain_w3 = Web3(EthereumTesterProvider())
            expected = examples.load(name).run(plain_w3, plain_w3.eth.accounts)
            t0 = time.monotonic()
            got = examples.load(name).run(self.w3, [u.address for u in self.users])
            same = "yes" if got == expected else "NO"
            summary = ", ".join(f"{k}={v}" for k, v in list(got.items())[:3])
            print(f"{name:16} {same:22} {time.monotonic() - t0:5.1f}s  {summary[:60]}")
            if got != expected:
                raise RuntimeError(f"example {name}: confidential results differ from plain execution")

    # ------------------------------------------------------------------ 3b
    def platform(self) -> None:
        """Platform calls (docs/ENCLAVE_EVM.md): private randomness and a contract-held key."""
        from examples.platform.run import run_live

        _rule("3b. Platform calls: private randomness, a contract-held key signing an L1 transaction")
        faucet = self.net.accounts[0]
        r = run_live(self.w3, [u.address for u in self.users], self.l1, lambda a, wei: pay(self.l1, faucet, a, wei))
        print(f"lottery: 4 players entered; draw() picked {_short(r['winner'], 4)} with EnclaveNet.randomBytes "
              "(seeded inside the enclaves: no host can predict or re-roll it)")
        print(f"wallet: its secp256k1 key was generated inside the enclaves; its L1 address {r['wallet_l1_address']}")
        print(f"  signL1Transfer(...) returned a raw EIP-155 transaction signed by that key; eth_account recovers "
              f"{_short(r['recovered_sender'], 4)}; bob asking gets: {r['not_owner']!r}")
        print(f"  sent to L1: status {r.get('l1_status')}, from {_short(str(r.get('l1_sender')), 4)}, "
              f"bob received {r.get('l1_received', 0) / ETHER:g} ETH on L1")
        if r["recovered_sender"] != r["wallet_l1_address"] or r.get("l1_status") != 1:
            raise RuntimeError("platform example: the wallet's L1 transaction did not verify or was not mined")

    # ------------------------------------------------------------------ 3c
    def bridge(self) -> None:
        """L1 bridges beyond ETH (docs/BRIDGE.md): a bridged ERC20 in and out."""
        from examples.bridge.run import run_live

        _rule("3c. Bridge: an L1 ERC20 in, a confidential transfer, a withdrawal back to L1")
        alice, bob, carol = self.users[0], self.users[1], self.users[2]
        r = run_live(self.w3, self.l1, self.net.bridge.address, alice, bob, carol.address)
        print(f"alice deposited 1000 TST (L1 {_short(r['l1_token'], 4)}) through the Bridge "
              f"({r['deposit_gas']:,} L1 gas); minted inside as its canonical token {_short(r['l2_token'], 4)} "
              f"after {r['credited_after_s']}s")
        print(f"alice -> bob 400 inside (confidential); bob's signed log query finds {r['bob_transfer_logs']} "
              f"Transfer of {r['bob_log_value'] / 10**6:g} TST; carol asking the same: {r['carol_transfer_logs']}")
        print(f"bob withdrew 150 to L1: the node relayed the L2 -> L1 message once its header was accepted "
              f"({r['relay_gas']:,} L1 gas), bob received {r['bob_l1_received'] / 10**6:g} TST on L1 after "
              f"{r['withdrawn_after_s']}s; still locked in the Bridge: {r['locked_on_l1'] / 10**6:g}")
        if r["bob_l1_received"] != 150 * 10**6 or r["carol_transfer_logs"] != 0 or r["bob_transfer_logs"] != 1:
            raise RuntimeError("bridge example: the withdrawal was not paid or the log visibility is wrong")

    # ------------------------------------------------------------------ 4
    def observer(self) -> None:

        _rule("4. One transfer: what the user sees vs what an L1 observer sees")
        from examples.common import artifact


        art = artifact("token_vyper", "Token")
        alice, bob = self.users[0].address, self.users[1].address
        c = art.deploy(self.w3, "Demo", "DMO", 18, 1_000_000, sender=alice)
        h = c.functions.transfer(bob, 4242).transact({"from": alice})
        rc = self.w3.eth.wait_for_transaction_receipt(h, timeout=60)
        ev = c.events.Transfer().process_receipt(rc)
        print("the sender (decrypted receipt):")
        a = ev[0].args
        print(f"  status {rc['status']}, gas used {rc['gasUsed']}, "
              f"event Transfer(sender={_short(a.sender, 4)}, receiver={_short(a.receiver, 4)}, value={a.value})")
        print(f"  bob's balance (his own signed view): "
              f"{c.functions.balanceOf(bob).call({'from': bob})}")
        # the receiver reads the incoming Transfer too (its address is an indexed topic); a third
        # party asking the same gets nothing (docs/CLIENT.md "Logs: who may read an event")
        carol, height, mk = self.users[2].address, int(rc["blockNumber"]), self.w3.manager.provider.make_request

        def seen(who: str) -> list[Any]:
            res = self.w3.enclavenet.get_logs(mk, height, height, address=c.address, sender=who, full=True)
            return [] if res.missing else list(res.logs)

        _wait(lambda: bool(seen(bob)), "bob's log query to find the Transfer", timeout=30)
        print(f"  bob's signed log query (enclavenet_getLogs, what eth_getLogs serves): {len(seen(bob))} Transfer to him; "
              f"carol asking the same: {len(seen(carol))} logs")
        print("an L1 observer / a node operator:")
        print(f"  the transaction hash they see is the envelope's: {_short(h, 12)}")
        print(f"  the token address {_short(c.address, 6)}, transfer() selector 0xa9059cbb, bob's address and "
              "4242: nowhere in the node's JSON-RPC or the L1 calldata (checked by tests/integration/test_client_devnet.py)")
        ev = self.net.rollup.events.HeaderAccepted().get_logs(from_block=self.net.deploy_block)
        last = ev[-1]
        tx = self.l1.eth.get_transaction(last.transactionHash)
        data = bytes(tx["input"])
        print(f"  on L1: submitHeader, {len(data)} bytes of calldata = 13 header words + the QC; "
              f"contains the token address? {bytes.fromhex(c.address[2:]) in data}; "
              f"contains bob's address? {bytes.fromhex(bob[2:]) in data}")

    # ------------------------------------------------------------------ 4b
    def cast_through_gateway(self) -> None:
        """An unmodified tool: foundry's cast deploys a token and transfers through the gateway."""
        import json
        import subprocess
        from pathlib import Path

        from examples.common import artifact

        _rule("4b. Any Ethereum tool, unchanged: foundry cast through the gateway")
        root = Path(__file__).resolve().parents[2]
        cast = next(iter(sorted(root.glob("node_modules/@foundry-rs/cast-*/bin/cast"))), None)
        if cast is None or not self.net.gateway_url:
            print("cast is not installed (make install does it): skipped")
            return
        gw, dev = self.net.gateway_url, self.net.dev_accounts[0]
        key, bob = "0x" + bytes(dev.key).hex(), self.net.dev_accounts[1].address

        def run(*args: str) -> str:
            r = subprocess.run([str(cast), args[0], "--rpc-url", gw, *args[1:]], capture_output=True, text=True,
                               timeout=120)
            if r.returncode != 0:
                raise RuntimeError(f"cast {args[0]} failed: {r.stderr.strip()[-300:]}")
            return r.stdout.strip()

        print(f"gateway {gw}; dev account (0) {dev.address}: {int(run('balance', dev.address)) / ETHER:g} ETH "
              "inside EnclaveNet (deposited on L1 at start-up)")
        art = artifact("token_solidity", "PrivateToken")
        dep = json.loads(run("send", "--private-key", key, "--json", "--create", "0x" + art.bytecode.hex(),
                             "constructor(string,string,uint256)", "Cast", "CST", "1000"))
        token = dep["contractAddress"]
        print(f"$ cast send --create <PrivateToken> ...       -> token {token}, status {int(dep['status'], 16)}")
        rc = json.loads(run("send", "--private-key", key, "--json", token, "transfer(address,uint256)", bob, "7"))
        print(f"$ cast send {_short(token, 4)} 'transfer(address,uint256)' {_short(bob, 4)} 7"
              f"  -> status {int(rc['status'], 16)}, block {int(rc['blockNumber'], 16)}, "
              f"tx hash {_short(rc['transactionHash'], 6)} (cast's own), {len(rc['logs'])} Transfer log decrypted")
        mine = run("call", "--from", dev.address, token, "balanceOf(address)(uint256)", dev.address).split()[0]
        print(f"$ cast call --from (0) {_short(token, 4)} 'balanceOf(address)(uint256)' (0)  -> {mine} "
              "(a view signed under the gateway's viewing session)")

    # ------------------------------------------------------------------ 5
    def load(self, total: int = 2000, batch: int = 500) -> None:
        from .loadgen import Chain, run_cell, setup_token

        _rule(f"5. Load: {total} confidential ERC20 transfers through the JSON-RPC fast path")
        chain = Chain(self.net)
        token, senders = setup_token(chain, 100, 0)
        nonces = {s.address: 0 for s in senders}
        r = run_cell(chain, token, senders, nonces, batch, total)
        print(f"{r['txs']} transfers from {len(senders)} senders in {r['headers']} headers (batch size {batch}):")
        print(f"  throughput {r['tps']:.0f} tx/s, latency p50 {r['p50_s']:.2f}s / p99 {r['p99_s']:.2f}s "
              "(acknowledged -> header accepted on L1)")
        print(f"  L1 gas per transaction {r['l1_gas_per_tx']:.1f} (TeeRollup: 78 at batch 2000)")
        print("  the full grid (4/7/10 members, batches 500-2000): .venv/bin/python benchmarks/throughput.py")

    def gas_table(self) -> None:
        _rule("L1 gas of the functions this demo called (median)")
        print(f"{'function':16} {'gas':>9}   reference")
        for fn in ("register", "deposit", "submit", "submitHeader"):
            if fn not in self.gas:
                continue
            ref = REFERENCE_GAS.get(fn)
            refs = f"{ref[0]}: {ref[1]:,}" if ref else ""
            print(f"{fn:16} {int(statistics.median(self.gas[fn])):>9,}   {refs}")
        print(f"{'ETH transfer':16} {21_000:>9,}   (for scale)")
        print("per-committee-size figures: .venv/bin/python benchmarks/gas.py")


def run_demo(n: int = 4, l1: str = "embedded") -> int:
    from .devnet import Devnet

    t0 = time.monotonic()
    print("EnclaveNet demo: confidential contracts executed by a committee of heterogeneous TEEs, "
          "anchored on an L1")
    with Devnet(n=n, l1=l1, batch_interval=0.05, progress=True, log_level="WARNING",
                node_options={"admin_rpc": True}, gateway=True) as net:
        d = Demo(net)
        d.committee()
        d.deposit_and_withdraw()
        d.examples()
        d.platform()
        d.bridge()
        d.observer()
        d.cast_through_gateway()
        d.load()
        d.gas_table()
    print(f"\ndemo finished in {time.monotonic() - t0:.0f}s; every process it started has stopped.")
    return 0
