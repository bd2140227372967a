"""A whole EnclaveNet on this machine: an L1, the contracts, and N nodes, each its own process.

    with Devnet(n=4) as net:                 # sgx, tdx, sev-snp, csv; quorum 3 spanning >= 3 types
        w3 = Web3(Web3.HTTPProvider(net.rpc_urls[0]))
        net.kill(1); net.restart(1)          # crash and bring back a node (same sealed enclave)
        net.suspend(2); net.resume(2)        # SIGSTOP / SIGCONT
    # every process started here is stopped on exit -- also on errors and at interpreter exit

The L1 is the embedded chain served over JSON-RPC (``enclavenet l1``, a child process) by
default, ``l1="anvil"`` for anvil, or ``l1_rpc=URL`` for a node someone else runs (the
development accounts must be funded there). The devnet deploys the Registry and the Rollup,
sets one simulated vendor root per TEE type and allows the enclave measurement, writes one
config per node (``<base_dir>/nodeI/config.json``, mode 0600: it holds the operator's L1 key and
the simulated machine's secrets) and starts the nodes. Healthy = every node follows a first
header (height 1) carrying the epoch key, and sees its peers.

With ``gateway=True`` (what ``enclavenet devnet`` does) the first ten development accounts of
the ``test test ... junk`` mnemonic (the owner and the operators then use the next ones) each
deposit ``dev_deposit`` wei into EnclaveNet on L1 during start-up, and a gateway process
(``enclavenet gateway``) is started in front of node 0, pre-authorised for those ten accounts:
``cast send --rpc-url <gateway_url> --private-key <dev key 0> ...`` works at once.

CLI: ``enclavenet devnet [-n 4] [--l1 embedded|anvil] [--l1-rpc URL] [--no-gateway]``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests
from eth_account.signers.local import LocalAccount
from web3 import Web3

from .chain.accounts import dev_accounts
from .chain.errors import TxReverted
from .chain.rpc import RpcL1
from .chain.sender import TxSender
from .crypto.quote import TEE_TYPES
from .node.config import NodeConfig, normalize_enclave_config

log = logging.getLogger("enclavenet.devnet")

DEFAULT_TYPES = ("sgx", "tdx", "sev-snp", "csv")
DEFAULT_CHAIN_ID = 1337
DEV_ACCOUNTS = 10  # funded development accounts a devnet with a gateway hands its user (like anvil)
PROGRAM = "enclavenet.enclave.program:EnclaveProgram"

_live: weakref.WeakSet[Devnet] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for net in list(_live):
        with contextlib.suppress(Exception):
            net.stop()


@dataclass(frozen=True)
class Placement:
    """Where one devnet process runs: argv prefix, the address it binds, the host others put in
    its URL (a relay may stand between), and its port (0: a free one)."""

    prefix: tuple[str, ...] = ()
    bind: str = "127.0.0.1"
    url_host: str = "127.0.0.1"
    port: int = 0


def _exit_on_sigterm() -> None:
    """A SIGTERM (``kill``, a CI timeout) unwinds like Ctrl-C, so ``with Devnet(...)`` stops its
    node, enclave and L1 processes instead of leaving them running (they start in their own
    sessions). Only when the process still has the default handler, and only from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        def _raise(signum: int, frame: Any) -> None:
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, _raise)


class DevnetError(RuntimeError):
    """The devnet could not start (the message says which part and where its log is)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_quorum(n: int) -> int:
    """More than two thirds of the committee (3 of 4, 5 of 7, 7 of 10)."""
    return n * 2 // 3 + 1


class _Proc:
    """A child process in its own process group (so its enclave child dies with it)."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._pump: threading.Thread | None = None
        self.ready_line: dict[str, Any] | None = None

    def start(self, timeout: float = 60.0, wait_ready: bool = True) -> dict[str, Any] | None:
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
            start_new_session=True, env=self.env,
        )
        if not wait_ready:
            self._pump_stdout()
            return None
        deadline = time.monotonic() + timeout
        assert self.popen.stdout is not None
        out = self.popen.stdout
        line_box: list[bytes] = []

        def read() -> None:
            line_box.append(out.readline())

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(max(0.0, deadline - time.monotonic()))
        if not line_box or not line_box[0]:
            code = self.popen.poll()
            self.stop()
            raise DevnetError(
                f"{self.argv[3] if len(self.argv) > 3 else self.argv[0]} did not start "
                f"(exit code {code}); see {self.log_path}"
            )
        try:
            self.ready_line = json.loads(line_box[0])
        except json.JSONDecodeError:
            self.ready_line = {"raw": line_box[0].decode(errors="replace")}
        self._pump_stdout()
        return self.ready_line

    def _pump_stdout(self) -> None:
        """Copy the rest of the child's stdout into its log (so the pipe never fills)."""
        assert self.popen is not None and self.popen.stdout is not None
        src = self.popen.stdout
        dst = self._log

        def pump() -> None:
            for line in iter(src.readline, b""):
                if dst is not None and not dst.closed:
                    with contextlib.suppress(ValueError):
                        dst.write(line)
                        dst.flush()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 5.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(timeout)
        # the group may still hold the enclave child
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        # the whole group is gone, so the pipe reaches EOF: let the pump finish, then close it
        if self._pump is not None:
            self._pump.join(2.0)
            self._pump = None
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        if self.popen is not None:
            self.signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5)


class Devnet:
    """An L1, the contracts and ``n`` nodes on 127.0.0.1. See the module docstring."""

    def __init__(
        self,
        n: int = 4,
        l1: str = "embedded",
        *,
        l1_rpc: str | None = None,
        tee_types: list[str] | tuple[str, ...] | None = None,
        quorum: int | None = None,
        min_types: int | None = None,
        chain_id: int = DEFAULT_CHAIN_ID,
        batch_size: int = 500,
        batch_interval: float = 0.2,
        proposer_timeout: float = 3.0,
        pipeline: int = 2,
        confirmations: int = 0,
        persist: str = "sign",
        base_dir: str | Path | None = None,
        user_accounts: int = 8,
        allow_faults: bool = False,
        progress: bool = False,
        start_timeout: float = 120.0,
        node_options: dict[str, Any] | None = None,
        log_level: str = "INFO",
        daps: int = 0,
        dap_threshold: int | None = None,
        dap_store: str = "sqlite",
        gateway: bool = False,
        dev_deposit: int = 1000 * 10**18,
        explorer: bool = False,
        placement: Callable[[str], Placement] | None = None,
        min_base_fee: int = 0,
    ) -> None:
        if n < 1:
            raise ValueError("a devnet needs at least one node")
        types = list(tee_types) if tee_types else [DEFAULT_TYPES[i % len(DEFAULT_TYPES)] for i in range(n)]
        if len(types) != n:
            raise ValueError(f"tee_types names {len(types)} platforms for {n} nodes")
        for t in types:
            if t not in TEE_TYPES:
                raise ValueError(f"unknown TEE type {t!r}; expected one of {sorted(TEE_TYPES)}")
        self.n = n
        self.min_base_fee = min_base_fee  # fees (docs/FEES.md): 0 = off
        self.tee_types = types
        self.quorum = quorum or min(n, default_quorum(n))
        distinct = len(set(types))
        self.min_types = min_types or min(3, distinct, self.quorum)
        self.l1_kind = "rpc" if l1_rpc else l1
        if self.l1_kind not in ("embedded", "anvil", "rpc"):
            raise ValueError(f"l1 must be 'embedded' or 'anvil' (or give l1_rpc=URL), got {l1!r}")
        self._l1_rpc = l1_rpc
        self.chain_id = chain_id
        self.batch_size = batch_size
        self.batch_interval = batch_interval
        self.proposer_timeout = proposer_timeout
        self.pipeline = pipeline
        self.confirmations = confirmations
        self.persist = persist
        self.user_accounts = user_accounts
        self.allow_faults = allow_faults
        self.progress = progress
        self.start_timeout = start_timeout
        self.node_options = dict(node_options or {})
        self.log_level = log_level
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="enclavenet-devnet-"))
        self._l1_proc: _Proc | None = None
        self._anvil: RpcL1 | None = None
        self.l1_url = ""
        self.w3: Web3 | None = None
        self.rollup: Any = None
        self.registry: Any = None
        self.deployment: Any = None
        self.measurement = b""
        self.vendors: dict[str, Any] = {}
        self.configs: list[NodeConfig] = []
        self.config_paths: list[Path] = []
        self.procs: list[_Proc | None] = []
        self.rpc_urls: list[str] = []
        self.addresses: list[str] = []
        self.accounts: list[LocalAccount] = []  # funded L1 accounts for users (not the operators')
        self.owner: LocalAccount | None = None
        self.deploy_block = 0
        self._started = False
        self._mine_lock = threading.Lock()
        self._miner_stop = threading.Event()
        self._miner: threading.Thread | None = None
        # data availability providers (docs/DAP.md): ``daps`` DAP processes on ``dap_store``
        # ("sqlite" or "postgres": a throwaway server), t = ``dap_threshold`` (default daps - 1, >= 1)
        if dap_store not in ("sqlite", "postgres"):
            raise ValueError(f"dap_store must be 'sqlite' or 'postgres', got {dap_store!r}")
        self.n_daps = daps
        self.dap_threshold = dap_threshold if dap_threshold is not None else max(1, daps - 1) if daps else 0
        self.dap_store = dap_store
        self.gateway = gateway
        self.dev_deposit = dev_deposit
        self.dev_accounts: list[LocalAccount] = []  # with gateway: the ten funded, pre-authorised accounts
        self.gateway_url = ""
        self._gateway_proc: _Proc | None = None
        self.dap_manager: Any = None
        self.bridge: Any = None  # the L1 Bridge contract (web3), once deployed
        self.dap_procs: list[Any] = []
        self._postgres: Any = None
        # the explorer (enclavenet explorer, its own process) once the nodes are healthy
        # where each process runs: role ("l1", "node3", "dap0") -> Placement; default: this
        # host's 127.0.0.1, a free port. benchmarks/wan.py puts each in its own network namespace
        # (prefix ["ip", "netns", "exec", ns]) at a private address, reached through url_host.
        self.placement = placement or (lambda role: Placement())
        self.want_explorer = explorer
        self._explorer: _Proc | None = None
        self.explorer_url = ""

    # ------------------------------------------------------------------ context
    def __enter__(self) -> Devnet:
        _exit_on_sigterm()
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ start
    def start(self) -> Devnet:
        _live.add(self)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._start_l1()
        self._deploy()
        if self.n_daps:
            self._start_daps()
        self._write_configs()
        self._start_nodes()
        self.wait_healthy(self.start_timeout)
        if self.gateway:
            self._start_gateway()
        if self.want_explorer:
            self.start_explorer()
        self._started = True
        return self

    def start_explorer(self, interval: float = 1.0) -> str:
        """Start ``enclavenet explorer`` on node0 and the L1; returns its URL (also ``explorer_url``)."""
        if self._explorer is not None and self._explorer.alive:
            return self.explorer_url
        self._explorer = _Proc(
            [self._python(), "-m", "enclavenet.cli", "explorer", "--node", self.rpc_urls[0], "--l1-rpc", self.l1_url,
             "--port", "0", "--interval", str(interval)],
            self.base_dir / "explorer.log", env=self._env(),
        )
        ready = self._explorer.start(timeout=60)
        self.explorer_url = str((ready or {}).get("url", ""))
        if not self.explorer_url:
            raise DevnetError(f"the explorer did not print its URL; see {self.base_dir / 'explorer.log'}")
        return self.explorer_url

    def _python(self) -> str:
        return sys.executable

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    def _start_l1(self) -> None:
        n_dev = DEV_ACCOUNTS if self.gateway else 0
        n_accounts = n_dev + self.n + 1 + self.user_accounts
        if self.l1_kind == "embedded":
            pl = self.placement("l1")
            port = pl.port or free_port()
            self._l1_proc = _Proc(
                [*pl.prefix, self._python(), "-m", "enclavenet.cli", "l1", "--host", pl.bind, "--port", str(port),
                 "--accounts", str(n_accounts)],
                self.base_dir / "l1.log", env=self._env(),
            )
            ready = self._l1_proc.start(timeout=60)
            assert ready is not None
            self.l1_url = str(ready.get("url") or f"http://{pl.bind}:{port}")
            if pl.url_host != pl.bind:
                self.l1_url = f"http://{pl.url_host}:{port}"
        elif self.l1_kind == "anvil":
            from .chain.anvil import start_anvil

            pl = self.placement("l1")
            self._anvil = start_anvil(accounts=n_accounts, prefix=pl.prefix, host=pl.bind, url_host=pl.url_host,
                                      port=pl.port)
            self.l1_url = self._anvil.url
            if self.confirmations > 0 or int(self.node_options.get("confirmations", 0)) > 0:
                self._miner = threading.Thread(target=self._keep_mining, daemon=True, name="devnet-miner")
                self._miner.start()
        else:
            assert self._l1_rpc is not None
            self.l1_url = self._l1_rpc
        self.w3 = Web3(Web3.HTTPProvider(self.l1_url, request_kwargs={"timeout": 60}))
        accts = dev_accounts(n_accounts)
        self.dev_accounts = accts[:n_dev]
        self.owner = accts[n_dev]
        self._operator_accounts = accts[n_dev + 1 : n_dev + 1 + self.n]
        self.accounts = accts[n_dev + 1 + self.n :]

    def _deploy(self) -> None:
        from .contracts import deploy_contracts
        from .tee.platform import SimulatedVendor, measure_enclave

        assert self.w3 is not None and self.owner is not None
        l1 = RpcL1(self.l1_url, accounts=[self.owner])
        sender = TxSender(l1, self.owner)
        seed = os.urandom(16)
        self.vendors = {t: SimulatedVendor.from_seed(t, seed) for t in sorted(set(self.tee_types))}
        roots = {TEE_TYPES[t]: v.root_address for t, v in self.vendors.items()}
        dep = deploy_contracts(sender, self.owner.address, self.quorum, self.min_types, platform_roots=roots,
                               bridge=True)
        self.deployment = dep
        self.rollup = self.w3.eth.contract(address=dep.rollup.address, abi=dep.rollup.abi)
        assert dep.bridge is not None
        # the L1 Bridge (docs/BRIDGE.md): ERC20s and messages; its address is in the measured config
        self.bridge = self.w3.eth.contract(address=dep.bridge.address, abi=dep.bridge.abi)
        self.registry = self.w3.eth.contract(address=dep.registry.address, abi=dep.registry.abi)
        self.deploy_block = int(dep.block_number)
        l1_chain_id = int(self.w3.eth.chain_id)
        # Every member runs the same enclave program with the same config (docs/ENCLAVE.md: the
        # config is measured, and an enclave trusts members of its own measurement), so there is
        # one measurement; it is allowed for every TEE type of the committee.
        self.enclave_config = normalize_enclave_config({
            "chain_id": self.chain_id,
            "l1_chain_id": l1_chain_id,
            "rollup": dep.rollup.address,
            "bridge": dep.bridge.address,
            "platform_roots": {str(k): v for k, v in roots.items()},
            "measurements": [],
            "epoch_grace": 1,
            # the QC floors: measured, so no host can make its enclave accept a weaker QC
            "min_quorum": self.quorum,
            "min_types": self.min_types,
            **({"min_base_fee": self.min_base_fee} if self.min_base_fee else {}),
        })
        self.measurement = measure_enclave(PROGRAM, self.enclave_config)
        for t in sorted(roots):
            fn = dep.registry.functions.allowMeasurement(t, self.measurement)
            try:
                sender.transact(fn)
            except TxReverted as exc:
                if "already allowed" not in str(exc):
                    raise
        self.l1_chain_id = l1_chain_id

    def _start_daps(self) -> None:
        """Deploy the DapManager, start and register the DAPs, set the receipt threshold."""
        from eth_account import Account

        from .crypto.secp256k1 import SigningKey
        from .dap.l1 import deploy_dap_manager, register_dap, set_threshold
        from .dap.process import DapProcess

        assert self.owner is not None
        owner = self.owner_sender()
        self.dap_manager = deploy_dap_manager(owner, self.deployment.rollup.address, answer_period=20, leave_delay=40)
        if self.dap_store == "postgres":
            from .dap.pgserver import TempPostgres

            self._postgres = TempPostgres().start()
        for i in range(self.n_daps):
            d = self.base_dir / f"dap{i}"
            d.mkdir(parents=True, exist_ok=True)
            key = SigningKey.generate()
            key_file = d / "key"
            key_file.write_text(key.secret.hex())
            key_file.chmod(0o600)
            store = self._postgres.create_database(f"dap{i}") if self._postgres else f"sqlite://{d}/dap.db"
            owner.send_raw(key.address, value=10 * 10**18)
            pl = self.placement(f"dap{i}")
            proc = DapProcess(key_file, store, self.deployment.rollup.address, self.l1_chain_id,
                              log_path=self.base_dir / f"dap{i}.log", l1_rpc=self.l1_url,
                              manager=self.dap_manager.address, from_block=self.deploy_block,
                              prefix=list(pl.prefix), host=pl.bind, port=pl.port)
            proc.start()
            if pl.url_host != pl.bind:
                proc.url = f"http://{pl.url_host}:{proc.port}"
            self.dap_procs.append(proc)
            dap_l1 = RpcL1(self.l1_url, accounts=[Account.from_key(key.secret)])
            register_dap(TxSender(dap_l1, dap_l1.accounts[0]), self.dap_manager, str(proc.url))
        set_threshold(owner, self.dap_manager, self.dap_threshold)
        self.node_options.setdefault("dap_manager", self.dap_manager.address)

    def _start_gateway(self) -> None:
        """Deposit for the ten development accounts on L1, start a gateway pre-authorised for them,
        and wait until the deposits are credited inside EnclaveNet."""
        from .client.l1 import deposit

        assert self.w3 is not None
        for a in self.dev_accounts:
            deposit(self.w3, a, self.deployment.rollup.address, self.dev_deposit)
        keys = self.base_dir / "gateway-accounts.txt"
        keys.write_text("".join("0x" + bytes(a.key).hex() + "\n" for a in self.dev_accounts))
        keys.chmod(0o600)
        self._gateway_proc = _Proc(
            [self._python(), "-m", "enclavenet.cli", "gateway", "--node", self.rpc_urls[0], "--l1-rpc", self.l1_url,
             "--port", str(free_port()), "--account-file", str(keys)],
            self.base_dir / "gateway.log", env=self._env(),
        )
        ready = self._gateway_proc.start(timeout=60)
        if not ready or not ready.get("url"):
            raise DevnetError(f"the gateway did not start; see {self.base_dir / 'gateway.log'}")
        self.gateway_url = str(ready["url"])
        last = self.dev_accounts[-1].address if self.dev_accounts else None
        deadline = time.monotonic() + self.start_timeout
        while last is not None:
            try:
                r = requests.post(self.gateway_url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance",
                                                          "params": [last, "latest"]}, timeout=10).json()
                if int(r.get("result") or "0x0", 16) >= self.dev_deposit:
                    break
            except (requests.RequestException, ValueError):
                pass
            if time.monotonic() > deadline:
                raise DevnetError(f"the development accounts' deposits were not credited; see {self.base_dir}")
            time.sleep(0.2)

    def kill_dap(self, i: int) -> None:
        self.dap_procs[i].kill()

    def restart_dap(self, i: int) -> None:
        self.dap_procs[i].start()

    def _write_configs(self) -> None:
        places = [self.placement(f"node{i}") for i in range(self.n)]
        ports = [pl.port or free_port() for pl in places]
        hosts = [pl.bind for pl in places]
        self.rpc_urls = [f"http://{pl.url_host}:{p}" for pl, p in zip(places, ports, strict=True)]
        self.configs, self.config_paths = [], []
        for i, tee in enumerate(self.tee_types):
            # the simulated machine's NV storage (its monotonic counters) sits beside the node's data
            # directory, not in it: wiping a node's disk does not reset its hardware, and nothing
            # lands in $HOME
            platform = self.vendors[tee].new_platform(nv_dir=self.base_dir / "machines" / f"node{i}")
            opts = dict(self.node_options)
            cfg = NodeConfig(
                name=f"node{i}",
                data_dir=str(self.base_dir / f"node{i}"),
                l1_rpc=self.l1_url,
                l1_key="0x" + bytes(self._operator_accounts[i].key).hex(),
                rollup=self.deployment.rollup.address,
                registry=self.deployment.registry.address,
                bridge=self.bridge.address,
                l1_chain_id=self.l1_chain_id,
                chain_id=self.chain_id,
                platform=platform.boot_spec(),
                enclave=self.enclave_config,
                rpc_port=ports[i],
                rpc_host=hosts[i],
                start_block=self.deploy_block,
                # a node drops its own URL from peers; one reached through a relay cannot tell
                peers=[u for j, u in enumerate(self.rpc_urls) if j != i or places[i].url_host == places[i].bind],
                expected_members=self.n,
                batch_size=opts.pop("batch_size", self.batch_size),
                batch_interval=opts.pop("batch_interval", self.batch_interval),
                proposer_timeout=opts.pop("proposer_timeout", self.proposer_timeout),
                pipeline=opts.pop("pipeline", self.pipeline),
                confirmations=opts.pop("confirmations", self.confirmations),
                persist=opts.pop("persist", self.persist),
                allow_faults=self.allow_faults,
                log_level=self.log_level,
                **opts,
            )
            path = self.base_dir / f"node{i}" / "config.json"
            cfg.save(path)
            self.configs.append(cfg)
            self.config_paths.append(path)
        self.procs = [None] * self.n

    def _node_proc(self, i: int) -> _Proc:
        return _Proc(
            [*self.placement(f"node{i}").prefix, self._python(), "-m", "enclavenet.cli", "node", "--config",
             str(self.config_paths[i])],
            self.base_dir / f"node{i}.log", env=self._env(),
        )

    def _start_nodes(self) -> None:
        self.addresses = [""] * self.n
        for i in range(self.n):
            p = self._node_proc(i)
            p.start(wait_ready=False)
            self.procs[i] = p
        # the ready line comes once each node registered its enclave: read them all
        for i, p in enumerate(self.procs):
            assert p is not None
            self.addresses[i] = self._await_ready(i, p)

    def _await_ready(self, i: int, p: _Proc) -> str:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if not p.alive:
                raise DevnetError(f"node{i} exited during start-up; see {p.log_path}")
            st = self.status(i)
            if st is not None and st.get("address"):
                return str(st["address"])
            time.sleep(0.1)
        raise DevnetError(f"node{i} did not answer on {self.rpc_urls[i]}; see {p.log_path}")

    # ------------------------------------------------------------------ health
    def rpc(self, i: int, method: str, *params: Any, timeout: float = 10.0) -> Any:
        r = requests.post(self.rpc_urls[i], json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
                          timeout=timeout)
        out = r.json()
        if "error" in out:
            raise DevnetError(f"node{i} {method}: {out['error'].get('message')}")
        return out["result"]

    def status(self, i: int) -> dict[str, Any] | None:
        try:
            st: dict[str, Any] = self.rpc(i, "enclavenet_status", timeout=3)
            return st
        except (requests.RequestException, ValueError, DevnetError):
            return None

    def healthy(self, i: int, min_height: int = 1) -> bool:
        st = self.status(i)
        return bool(
            st and st.get("epoch") is not None and st.get("height", 0) >= min_height
            and st.get("finalized", 0) >= min_height and all(p.get("address") for p in st.get("peers", []))
        )

    def wait_healthy(self, timeout: float = 120.0, *, nodes: list[int] | None = None, min_height: int = 1) -> None:
        """Block until the given (default: all running) nodes are healthy; tqdm progress when asked."""
        idx = nodes if nodes is not None else [i for i, p in enumerate(self.procs) if p is not None and p.alive]
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(idx), desc="nodes healthy", unit="node", leave=True)
        deadline = time.monotonic() + timeout
        done: set[int] = set()
        try:
            while time.monotonic() < deadline:
                for i in idx:
                    if i in done:
                        continue
                    p = self.procs[i]
                    if p is None or not p.alive:
                        raise DevnetError(f"node{i} is not running; see {self.base_dir / f'node{i}.log'}")
                    if self.healthy(i, min_height):
                        done.add(i)
                        if bar is not None:
                            bar.update(1)
                if len(done) == len(idx):
                    return
                time.sleep(0.1)
        finally:
            if bar is not None:
                bar.close()
        missing = sorted(set(idx) - done)
        raise DevnetError(
            f"node(s) {missing} not healthy after {timeout:.0f}s; logs in {self.base_dir}: "
            + "; ".join(f"node{i}: {self.status(i)}" for i in missing)
        )

    def height(self, i: int = 0) -> int:
        st = self.status(i)
        return int(st["height"]) if st else -1

    def wait_height(self, h: int, timeout: float = 60.0, nodes: list[int] | None = None) -> None:
        idx = nodes if nodes is not None else [i for i, p in enumerate(self.procs) if p is not None and p.alive]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.height(i) >= h for i in idx):
                return
            time.sleep(0.1)
        raise DevnetError(f"not all of nodes {idx} reached height {h} within {timeout}s")

    def l1_height(self) -> int:
        assert self.rollup is not None
        return int(self.rollup.functions.lastHeight().call())

    # ------------------------------------------------------------------ faults
    def proposer_index(self, height: int | None = None) -> int:
        """Index of the node whose enclave is the primary proposer of ``height`` (default: the next)."""
        h = (self.l1_height() + 1) if height is None else height
        members = sorted((a for a in self.addresses if a), key=lambda a: int(a, 16))
        addr = members[(h // int(self.node_options.get("proposer_run", 1))) % len(members)]
        return self.addresses.index(addr)

    def kill(self, i: int) -> None:
        """SIGKILL node i (and its enclave): a crash."""
        p = self.procs[i]
        if p is not None:
            p.kill()
            p.stop()

    def restart(self, i: int, *, wait: bool = True) -> None:
        """Start node i again from its config and data dir (its enclave restores its sealed snapshot)."""
        p = self.procs[i]
        if p is not None:
            p.stop()
        p = self._node_proc(i)
        p.start(wait_ready=False)
        self.procs[i] = p
        self.addresses[i] = self._await_ready(i, p)
        if wait:
            self.wait_healthy(self.start_timeout, nodes=[i])

    def suspend(self, i: int) -> None:
        p = self.procs[i]
        if p is not None:
            p.signal(signal.SIGSTOP)

    def resume(self, i: int) -> None:
        p = self.procs[i]
        if p is not None:
            p.signal(signal.SIGCONT)

    # ------------------------------------------------------------------ fault controls (docs/FAULTS.md)
    def faults(
        self,
        i: int,
        *,
        links: dict[str, Any] | bool | None = False,
        enclave_link: dict[str, Any] | bool | None = False,
        enclave: str | None = None,
        l1: dict[str, Any] | bool | None = False,
    ) -> dict[str, Any]:
        """Set node i's hostile-host policy (needs ``allow_faults=True``): ``links`` for its peer
        messages (drop/delay/reorder/replay probabilities...; None clears), ``enclave_link`` for
        what its host hands its enclave (drop/delay/replay; None clears), ``enclave`` = "crash" or
        "hang", ``l1`` for its L1 link (``{"down_s": s}``: every L1 call fails for s seconds;
        ``{"hold_submits": True}``: QCs are collected, never submitted; None clears). Arguments
        left out are unchanged. Returns the policies with their counters."""
        policy: dict[str, Any] = {}
        if links is not False:
            policy["links"] = links or {}
        if enclave_link is not False:
            policy["enclaveLink"] = enclave_link
        if enclave is not None:
            policy["enclave"] = enclave
        if l1 is not False:
            policy["l1"] = l1
        out: dict[str, Any] = self.rpc(i, "enclavenet_adminFaults", policy)
        return out

    def crash_enclave(self, i: int) -> None:
        """Node i's enclave process exits (the node keeps running without it)."""
        self.faults(i, enclave="crash")

    def hang_enclave(self, i: int) -> None:
        """Node i's enclave stops answering (its ecalls time out)."""
        self.faults(i, enclave="hang")

    def compromise(self, i: int) -> dict[str, Any]:
        """Node i's enclave leaks its keys (a broken TEE): ``{address, signingKey, epochs}``."""
        out: dict[str, Any] = self.rpc(i, "enclavenet_adminCompromise")
        return out

    def owner_sender(self) -> TxSender:
        assert self.owner is not None
        return TxSender(RpcL1(self.l1_url, accounts=[self.owner]), self.owner)

    def revoke_enclave(self, i: int) -> Any:
        """The Registry owner revokes node i's enclave (takes effect on the next header)."""
        return self.owner_sender().transact(self.registry.functions.revokeEnclave(self.addresses[i]))

    def revoke_type(self, tee: str) -> Any:
        """The Registry owner revokes a whole TEE type (sgx, tdx, sev-snp, csv)."""
        return self.owner_sender().transact(self.registry.functions.revokeType(TEE_TYPES[tee]))

    def l1_reorg(
        self, depth: int = 0, transactions: list[tuple[bytes, int]] | None = None, *, from_block: int | None = None
    ) -> int:
        """anvil only: replace the latest ``depth`` L1 blocks, or every block from ``from_block``
        on (re-including the given raw transactions at the given block offsets; every other
        transaction of those blocks is gone). Returns the depth."""
        if self._anvil is None:
            raise DevnetError("an L1 reorganisation needs the anvil L1 (Devnet(l1='anvil'))")
        with self._mine_lock:
            if from_block is not None:
                depth = self._anvil.block_number() - from_block + 1
            self._anvil.reorg(depth, transactions or [])
        return depth

    def _keep_mining(self) -> None:
        """anvil mines only when a transaction arrives; with ``confirmations`` the nodes need
        the chain to move on, as a real one does: an empty block every 0.2 s."""
        while not self._miner_stop.wait(0.2):
            with self._mine_lock, contextlib.suppress(Exception):
                if self._anvil is not None:
                    self._anvil.mine(1)

    def restart_all(self) -> None:
        """Kill every node (and enclave) at once, then start them all again from their sealed state."""
        for i in range(self.n):
            self.kill(i)
        for i in range(self.n):
            p = self._node_proc(i)
            p.start(wait_ready=False)
            self.procs[i] = p
        for i in range(self.n):
            p = self.procs[i]
            assert p is not None
            self.addresses[i] = self._await_ready(i, p)
        self.wait_healthy(self.start_timeout)

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        if self._gateway_proc is not None:
            with contextlib.suppress(Exception):
                self._gateway_proc.stop()
            self._gateway_proc = None
        if self._explorer is not None:
            with contextlib.suppress(Exception):
                self._explorer.stop()
            self._explorer = None
        for p in self.procs:
            if p is not None:
                with contextlib.suppress(Exception):
                    p.stop()
        for d in self.dap_procs:
            with contextlib.suppress(Exception):
                d.stop()
        if self._postgres is not None:
            with contextlib.suppress(Exception):
                self._postgres.stop()
            self._postgres = None
        if self._l1_proc is not None:
            self._l1_proc.stop()
            self._l1_proc = None
        self._miner_stop.set()
        if self._miner is not None:
            self._miner.join(2)
        if self._anvil is not None:
            with contextlib.suppress(Exception):
                self._anvil.close()
            self._anvil = None
        _live.discard(self)
        if self._own_dir and os.environ.get("ENCLAVENET_KEEP_DEVNET") != "1":
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def logs(self, i: int | None = None, tail: int = 40) -> str:
        path = self.base_dir / ("l1.log" if i is None else f"node{i}.log")
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-tail:])
        except FileNotFoundError:
            return ""

    def info(self) -> dict[str, Any]:
        return {
            "l1": self.l1_url,
            "l1ChainId": getattr(self, "l1_chain_id", None),
            "chainId": self.chain_id,
            "rollup": self.deployment.rollup.address if self.deployment else None,
            "registry": self.deployment.registry.address if self.deployment else None,
            "nodes": [{"url": u, "enclave": a, "tee": t} for u, a, t in zip(self.rpc_urls, self.addresses, self.tee_types, strict=False)],
            "quorum": self.quorum,
            "minTypes": self.min_types,
            "dir": str(self.base_dir),
            "dapManager": self.dap_manager.address if self.dap_manager is not None else None,
            "bridge": self.bridge.address if self.bridge is not None else None,
            "daps": [{"url": d.url, "address": d.address} for d in self.dap_procs],
            "dapThreshold": self.dap_threshold if self.n_daps else 0,
            "gateway": self.gateway_url or None,
            "devAccounts": [{"address": a.address, "key": "0x" + bytes(a.key).hex()} for a in self.dev_accounts],
            "devDeposit": self.dev_deposit if self.dev_accounts else 0,
            "explorer": self.explorer_url or None,
        }
