"""``enclavenet``: one command, with subcommands.

    enclavenet node --config FILE        one node (enclave host, L1 follower, JSON-RPC)
    enclavenet devnet [-n 4] [--l1 embedded|anvil] [--l1-rpc URL]
    enclavenet l1 [--port 8545]          the embedded L1 (eth-tester) served over JSON-RPC
    enclavenet gateway --node URL [--l1-rpc URL] [--port 8547] [--account KEY]   any Ethereum tool, unchanged
    enclavenet dap --key-file F --rollup A [--store sqlite:///dap.db|postgresql://...]   a DAP
    enclavenet explorer --node URL [--l1-rpc URL] [--port 0]     the explorer / operator dashboard
    enclavenet status URL                 a node's health on one screen

Subcommands register themselves in ``COMMANDS``: add one with ``@command("name", "help")`` on a
function ``(args) -> int`` and a ``configure(parser)`` attribute for its options.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, Handler, Callable[[argparse.ArgumentParser], None]]] = {}


def command(name: str, help_text: str, configure: Callable[[argparse.ArgumentParser], None] | None = None) -> Callable[[Handler], Handler]:
    """Register a subcommand: ``@command("demo", "run the demo", configure=add_options)``."""

    def deco(fn: Handler) -> Handler:
        COMMANDS[name] = (help_text, fn, configure or (lambda p: None))
        return fn

    return deco


# ---------------------------------------------------------------------------- node


def _node_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="node config file (JSON; see docs/NODE.md)")
    p.add_argument("--log-format", choices=["text", "json"], default=None,
                   help="log lines as text or one JSON object per line (default: the config's log_format)")
    p.add_argument("--check", action="store_true", help="only validate the config and exit (0: valid)")


@command("node", "run one node: its enclave, the L1 follower, the mempool, the committee protocol, JSON-RPC", _node_opts)
def cmd_node(args: argparse.Namespace) -> int:
    from .logs import setup_logging
    from .node.config import ConfigError, NodeConfig

    try:
        cfg = NodeConfig.load(args.config)
    except ConfigError as exc:
        print(f"enclavenet node: {args.config}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"enclavenet node: {args.config} is a valid node config ({cfg.name})")
        return 0
    # configured before the node starts (its own basicConfig is then a no-op): every line is
    # text or JSON, and the operator key / platform secrets are redacted should one slip through
    setup_logging(cfg.name, level=cfg.log_level, fmt=args.log_format or cfg.log_format, secrets=cfg.secrets())
    from .node.node import run_node

    try:
        run_node(args.config)
    except ConfigError as exc:
        print(f"enclavenet node: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


# ---------------------------------------------------------------------------- status


def _status_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="a node's JSON-RPC URL, e.g. http://127.0.0.1:9001")
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--json", action="store_true", help="print the raw enclavenet_status as JSON")


@command("status", "a node's health on one screen (exit 0 healthy, 1 warnings, 2 unreachable)", _status_opts)
def cmd_status(args: argparse.Namespace) -> int:
    from .opstatus import fetch_status, render_status

    try:
        st = fetch_status(args.url, timeout=args.timeout)
    except Exception as exc:
        print(f"enclavenet status: {args.url} did not answer enclavenet_status ({type(exc).__name__}: {exc}); "
              "is the node running and is this its rpc_port?", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(st, indent=1))
        return 0
    text, warnings = render_status(args.url, st)
    print(text)
    return 1 if warnings else 0


# ---------------------------------------------------------------------------- explorer


def _explorer_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", required=True, help="a node's JSON-RPC URL (its peers are found from its status)")
    p.add_argument("--l1-rpc", default=None, help="L1 JSON-RPC URL (headers, committee, challenges, DAPs)")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on the ready line)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    p.add_argument("--log-format", choices=["text", "json"], default="text")


@command("explorer", "the explorer and operator dashboard: committee, headers, QCs, epochs, challenges, DAPs, charts", _explorer_opts)
def cmd_explorer(args: argparse.Namespace) -> int:
    from .explorer import run_explorer
    from .logs import setup_logging

    setup_logging("explorer", level="INFO", fmt=args.log_format)
    if not args.node.startswith(("http://", "https://")):
        print(f"enclavenet explorer: --node must be an http(s) URL, got {args.node!r}", file=sys.stderr)
        return 2
    try:
        run_explorer(args.node, args.l1_rpc, port=args.port, interval=args.interval)
    except (ValueError, OSError) as exc:
        print(f"enclavenet explorer: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


# ---------------------------------------------------------------------------- l1


def _l1_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8545, help="0 picks a free port (printed on the ready line)")
    p.add_argument("--chain-id", type=int, default=None, help="L1 chain id (default 31337)")
    p.add_argument("--accounts", type=int, default=10, help="funded development accounts")


@command("l1", "serve the embedded L1 (eth-tester, auto-mining) over JSON-RPC on 127.0.0.1", _l1_opts)
def cmd_l1(args: argparse.Namespace) -> int:
    from .chain.l1server import serve_main

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s l1 %(levelname)s %(name)s: %(message)s")
    from .hosts import REFUSAL, private_bind_host

    if not private_bind_host(args.host):
        print(f"enclavenet l1: {REFUSAL} (a development chain with public keys), not {args.host!r}", file=sys.stderr)
        return 2
    serve_main(args.host, args.port, chain_id=args.chain_id, accounts=args.accounts)
    return 0


# ---------------------------------------------------------------------------- gateway


def _gateway_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", required=True, help="an EnclaveNet node's JSON-RPC URL")
    p.add_argument("--l1-rpc", default=None, help="the node's L1: cross-check the epoch key against the Rollup, date blocks")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8547, help="0 picks a free port (printed on the ready line)")
    p.add_argument("--account", action="append", default=[], metavar="KEY",
                   help="a private key: authorise a viewing session for its account (and sign eth_sendTransaction for it); repeatable")
    p.add_argument("--account-file", default=None, help="a file with one private key per line (like --account)")


@command("gateway", "serve standard Ethereum JSON-RPC (HTTP + WebSocket) on 127.0.0.1 for any wallet or tool: seals, signs views, decrypts", _gateway_opts)
def cmd_gateway(args: argparse.Namespace) -> int:
    from .gateway import serve_main

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s gateway %(levelname)s %(name)s: %(message)s")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print("enclavenet gateway: serves on 127.0.0.1 only (it holds your viewing sessions and receipt keys)", file=sys.stderr)
        return 2
    keys = list(args.account)
    if args.account_file:
        try:
            with open(args.account_file) as f:
                keys += [line.strip() for line in f if line.strip()]
        except OSError as exc:
            print(f"enclavenet gateway: cannot read --account-file: {exc.strerror}", file=sys.stderr)
            return 2
    secrets = []
    for i, k in enumerate(keys):
        try:
            raw = bytes.fromhex(k.removeprefix("0x"))
            if len(raw) != 32:
                raise ValueError
        except ValueError:
            print(f"enclavenet gateway: account key #{i + 1} is not a 32-byte hex private key", file=sys.stderr)
            return 2
        secrets.append(raw)
    try:
        serve_main(args.node, l1_rpc=args.l1_rpc, host=args.host, port=args.port, accounts=secrets)
    except Exception as exc:  # the node / L1 unreachable at start: say which, not a traceback
        message = getattr(exc, "message", None) or str(exc)
        print(f"enclavenet gateway: cannot start: {message}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------- devnet


def _devnet_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--nodes", type=int, default=4, help="committee size (default 4)")
    p.add_argument("--l1", choices=["embedded", "anvil"], default="embedded", help="which L1 to start")
    p.add_argument("--l1-rpc", default=None, help="use an L1 at this JSON-RPC URL instead of starting one")
    p.add_argument("--tee", default=None, help="comma-separated TEE types per node (default: sgx,tdx,sev-snp,csv,...)")
    p.add_argument("--quorum", type=int, default=None)
    p.add_argument("--min-types", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--batch-interval", type=float, default=0.2)
    p.add_argument("--proposer-timeout", type=float, default=3.0)
    p.add_argument("--dir", default=None, help="where configs, sealed enclaves and logs go (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="print the devnet description as one JSON line")
    p.add_argument("--daps", type=int, default=0, help="data availability providers to start (default 0)")
    p.add_argument("--no-explorer", action="store_true", help="do not start the explorer")
    p.add_argument("--no-gateway", action="store_true",
                   help="no gateway and no funded development accounts (the first mnemonic accounts stay the operators')")


def describe_devnet(info: dict[str, Any]) -> str:
    """What `enclavenet devnet` prints: one line per part, then the funded development accounts."""
    out: list[str] = []
    out.append(f"L1          {info['l1']}  (chain id {info['l1ChainId']})")
    out.append(f"Rollup      {info['rollup']}")
    out.append(f"Registry    {info['registry']}")
    out.append(f"EnclaveNet  chain id {info['chainId']}, quorum {info['quorum']} spanning >= {info['minTypes']} TEE types")
    for i, nd in enumerate(info["nodes"]):
        out.append(f"node{i}       {nd['url']}  {nd['tee']:8s} enclave {nd['enclave']}")
    if info.get("gateway"):
        out.append(f"gateway     {info['gateway']}  (any Ethereum tool: --rpc-url {info['gateway']}; "
                   f"MetaMask: {info['gateway']}/authorise)")
    if info.get("explorer"):
        out.append(f"explorer    {info['explorer']}")
    for i, d in enumerate(info.get("daps") or []):
        out.append(f"dap{i}        {d['url']}  {d['address']}")
    if info.get("devAccounts"):
        out.append(f"\nAvailable accounts ({len(info['devAccounts'])}, each holding "
                   f"{info['devDeposit'] / 10**18:g} ETH inside EnclaveNet, gateway pre-authorised; keys are PUBLIC, "
                   "development only):")
        for i, a in enumerate(info["devAccounts"]):
            out.append(f"({i}) {a['address']}  private key {a['key']}")
        out.append("mnemonic: test test test test test test test test test test test junk\n")
    out.append(f"logs        {info['dir']}")
    return "\n".join(out)


@command("devnet", "start an L1, deploy the contracts, start N nodes; run until Ctrl-C, then stop them all", _devnet_opts)
def cmd_devnet(args: argparse.Namespace) -> int:
    from .devnet import Devnet, DevnetError

    logging.basicConfig(level=logging.WARNING)
    tees = [t.strip() for t in args.tee.split(",")] if args.tee else None
    net = Devnet(
        n=args.nodes, l1=args.l1, l1_rpc=args.l1_rpc, tee_types=tees, quorum=args.quorum, min_types=args.min_types,
        batch_size=args.batch_size, batch_interval=args.batch_interval, proposer_timeout=args.proposer_timeout,
        base_dir=args.dir, progress=True, explorer=not args.no_explorer, daps=args.daps,
        gateway=not args.no_gateway,
    )
    stop = {"now": False}

    def on_signal(signum: int, frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        net.start()
    except DevnetError as exc:
        print(f"enclavenet devnet: {exc}", file=sys.stderr)
        net.stop()
        return 1
    try:
        info = net.info()
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            print(describe_devnet(info))
            print("running; Ctrl-C stops every process", flush=True)
        while not stop["now"]:
            time.sleep(0.2)
    finally:
        net.stop()
    return 0


# ---------------------------------------------------------------------------- demo


def _demo_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", type=int, default=4, help="committee members (default 4)")
    p.add_argument("--l1", default="embedded", choices=["embedded", "anvil"], help="the L1 to run on")


@command("demo", "the main job: a devnet, deposits and withdrawals, the examples, what an observer sees, gas", _demo_opts)
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(n=args.n, l1=args.l1)


# ---------------------------------------------------------------------------- dap


def _dap_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default="sqlite:///dap.db",
                   help="sqlite:///PATH (default sqlite:///dap.db), a path, or postgresql://user@host:port/db")
    p.add_argument("--key-file", required=True, help="the DAP's receipt key (hex secret; created, mode 0600, if missing)")
    p.add_argument("--rollup", required=True, help="the Rollup's address (receipts are bound to it)")
    p.add_argument("--l1-chain-id", type=int, default=None, help="L1 chain id (default: asked from --l1-rpc)")
    p.add_argument("--l1-rpc", default=None, help="L1 JSON-RPC URL: with --manager, answer data requests on chain")
    p.add_argument("--manager", default=None, help="the DapManager's address")
    p.add_argument("--from-block", type=int, default=0, help="first L1 block to scan for data requests")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on the ready line)")
    p.add_argument("--lazy", action="store_true", help="fault switch: never answer data requests (to see the slashing)")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between L1 scans for requests")
    p.add_argument("--log-format", choices=["text", "json"], default="text", help="text or one JSON object per line")


@command("dap", "run a data availability provider: store batch data, snapshots and escape leaves; sign receipts; serve them", _dap_opts)
def cmd_dap(args: argparse.Namespace) -> int:
    from .dap.service import DapConfig, load_key, run_dap
    from .dap.store import StoreError
    from .logs import setup_logging

    setup_logging("dap", level="INFO", fmt=args.log_format)
    chain_id = args.l1_chain_id
    if chain_id is None:
        if not args.l1_rpc:
            print("enclavenet dap: give --l1-chain-id or --l1-rpc", file=sys.stderr)
            return 2
        from web3 import Web3

        chain_id = int(Web3(Web3.HTTPProvider(args.l1_rpc)).eth.chain_id)
    try:
        key = load_key(args.key_file)
        setup_logging("dap", level="INFO", fmt=args.log_format, secrets=[key.secret])
        config = DapConfig(
            store=args.store, key=key, l1_chain_id=chain_id, rollup=args.rollup,
            host=args.host, port=args.port, l1_rpc=args.l1_rpc, manager=args.manager,
            manager_from_block=args.from_block, lazy=args.lazy, poll_interval=args.poll,
        )
        run_dap(config)
    except (ValueError, StoreError) as exc:
        print(f"enclavenet dap: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


# ---------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="enclavenet", description="EnclaveNet: confidential contracts on a TEE committee")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, _, configure) in COMMANDS.items():
        configure(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    _, handler, _ = COMMANDS[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
