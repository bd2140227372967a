"""The non-confidential peer of benchmarks/throughput.py: the same ERC20 transfers on plain anvil.

    .venv/bin/python benchmarks/plain_anvil.py [--quick] [--txs N] [--senders N]

One anvil process (a plain single dev node, automine: every transaction is mined as it arrives),
the same Vyper token as the confidential run (``loadgen.TOKEN_SRC``), the same kind of senders
(fresh keys, each with its own nonce sequence) and the same transfers (1 token to one sink),
signed outside the timed region with the same signer, zero fees (``--base-fee 0``) as inside
EnclaveNet, sent as batched raw JSON-RPC (``eth_sendRawTransaction`` x 500 per HTTP request).
Timed: first request sent -> every transfer mined (receipts checked: all succeeded). CPU:
this process and anvil, from /proc (``loadgen.CpuMeter``).

``throughput.py`` calls :func:`run_plain` in the same run (``plain_anvil_tps``,
``confidential_over_plain``); run alone, this prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import requests  # noqa: E402
from eth_account import Account  # noqa: E402

from enclavenet.chain.anvil import AnvilProcess  # noqa: E402
from enclavenet.client.formats import sign_transaction  # noqa: E402
from enclavenet.crypto.hashing import address_bytes, keccak256  # noqa: E402
from enclavenet.loadgen import RPC_CHUNK, TOKEN_SRC, TRANSFER, CpuMeter  # noqa: E402

CHAIN_ID = 31337
GAS_LIMIT = 2_000_000_000  # a block holds every transfer of one request


def _rpc(session: requests.Session, url: str, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
    out = sorted(session.post(url, json=body, timeout=300).json(), key=lambda r: r["id"])
    for r in out:
        if "error" in r:
            raise RuntimeError(f"anvil refused {calls[r['id']][0]}: {r['error'].get('message')}")
    return [r["result"] for r in out]


def _wait_mined(session: requests.Session, url: str, hashes: list[str], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:  # the last one first (cheap), then all of them
        (last,) = _rpc(session, url, [("eth_getTransactionReceipt", [hashes[-1]])])
        if last is not None:
            out: list[dict[str, Any]] = []
            for i in range(0, len(hashes), 2000):
                out += _rpc(session, url, [("eth_getTransactionReceipt", [h]) for h in hashes[i : i + 2000]])
            if all(r is not None for r in out):
                return out
        if time.monotonic() > deadline:
            raise TimeoutError(f"transfers not mined on plain anvil after {timeout:.0f} s")
        time.sleep(0.02)


def run_plain(senders: list[Any], total: int) -> dict[str, Any]:
    """``total`` transfers from ``senders`` (round robin, nonces from 0) on a fresh plain anvil."""
    import rlp
    import vyper

    code = bytes.fromhex(vyper.compile_code(TOKEN_SRC, output_formats=["bytecode"])["bytecode"][2:])
    with AnvilProcess(chain_id=CHAIN_ID, gas_limit=GAS_LIMIT,
                      extra_args=("--base-fee", "0", "--gas-price", "0", "--no-mining")) as anvil, \
            requests.Session() as session:
        url = anvil.url
        deployer = Account.create()
        setup = [sign_transaction(bytes(deployer.key), CHAIN_ID, 0, None, code + (10**30).to_bytes(32, "big"), 0, 3_000_000)]
        token = "0x" + keccak256(rlp.encode([address_bytes(deployer.address), 0]))[12:].hex()
        setup += [sign_transaction(bytes(deployer.key), CHAIN_ID, i + 1, token,
                                   TRANSFER + address_bytes(s.address).rjust(32, b"\0") + (10**9).to_bytes(32, "big"), 0, 100_000)
                  for i, s in enumerate(senders)]
        hashes = []
        for i in range(0, len(setup), RPC_CHUNK):
            hashes += _rpc(session, url, [("eth_sendRawTransaction", ["0x" + r.hex()]) for r in setup[i : i + RPC_CHUNK]])
            _rpc(session, url, [("evm_mine", [])])
        assert all(int(r["status"], 16) == 1 for r in _wait_mined(session, url, hashes, 120)), "plain setup failed"
        sink = address_bytes(Account.create().address).rjust(32, b"\0")
        raws: list[bytes] = []
        nonces = {s.address: 0 for s in senders}
        while len(raws) < total:  # the same order as loadgen.run_cell: round robin across senders
            for s in senders:
                if len(raws) >= total:
                    break
                raws.append(sign_transaction(bytes(s.key), CHAIN_ID, nonces[s.address], token,
                                             TRANSFER + sink + (1).to_bytes(32, "big"), 0, 100_000))
                nonces[s.address] += 1
        bodies = [json.dumps([{"jsonrpc": "2.0", "id": k, "method": "eth_sendRawTransaction", "params": ["0x" + r.hex()]}
                              for k, r in enumerate(raws[i : i + RPC_CHUNK])]).encode()
                  for i in range(0, len(raws), RPC_CHUNK)]
        meter = CpuMeter().start()
        t0 = time.monotonic()
        hashes = []
        for body in bodies:
            out = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=300).json()
            for r in sorted(out, key=lambda r: r["id"]):
                if "error" in r:
                    raise RuntimeError(f"plain anvil refused a transfer: {r['error'].get('message')}")
                hashes.append(r["result"])
            _rpc(session, url, [("evm_mine", [])])  # one block per request of 500 transfers
        t_sent = time.monotonic()
        rcs = _wait_mined(session, url, hashes, 60 + total / 50)
        t_end = time.monotonic()
        cpu = meter.stop()
        failed = sum(1 for r in rcs if int(r["status"], 16) != 1)
        if failed:
            raise RuntimeError(f"{failed} of {total} plain transfers failed")
        return {"txs": total, "tps": total / (t_end - t0), "send_s": t_sent - t0, "cpu": cpu,
                "tps_per_cpu_s": total / cpu["cpu_s"] if cpu["cpu_s"] else 0.0,
                "gas_per_tx": sum(int(r["gasUsed"], 16) for r in rcs) / total}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="6,000 transfers")
    ap.add_argument("--txs", type=int, default=None)
    ap.add_argument("--senders", type=int, default=400)
    args = ap.parse_args()
    total = args.txs or (6000 if args.quick else 24000)
    senders = [Account.create() for _ in range(args.senders)]
    r = run_plain(senders, total)
    c = r["cpu"]
    print("| transfers | TPS | tx per CPU-s | CPU (s) by role | gas per transfer |")
    print("|---|---|---|---|---|")
    print(f"| {r['txs']} | {r['tps']:.0f} | {r['tps_per_cpu_s']:.0f} | "
          f"{', '.join(f'{k} {v:.1f}' for k, v in c['cpu_by_role'].items())} | {r['gas_per_tx']:.0f} |")
    print(json.dumps({"plain_anvil_tps": round(r["tps"], 1), "plain_anvil_tx_per_cpu_s": round(r["tps_per_cpu_s"], 1),
                      "txs": r["txs"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
