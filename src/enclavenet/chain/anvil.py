"""Run anvil (Foundry's development node) as a child process on 127.0.0.1.

    with start_anvil() as l1:          # an RpcL1 that stops anvil on close()
        ...

    with AnvilProcess(chain_id=5, block_time=1) as node:   # just the process
        l1 = node.connect()

The binary is ``$ENCLAVENET_ANVIL`` if set, else the one ``make install`` puts under the
project's ``node_modules`` (the native executable behind ``node_modules/.bin/anvil`` when it
can be found, which saves starting node), else ``anvil`` on ``PATH``. anvil gets a free port,
a temporary ``HOME`` (it writes caches there) and its own process group; it is stopped by
``stop()``, on leaving the ``with`` block, or at interpreter exit.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from eth_account.signers.local import LocalAccount

from .accounts import DEV_MNEMONIC, dev_accounts
from .base import DEFAULT_BALANCE_ETH, DEFAULT_CHAIN_ID, DEFAULT_GAS_LIMIT
from .errors import AnvilError
from .rpc import RpcL1

log = logging.getLogger(__name__)

ANVIL_ENV = "ENCLAVENET_ANVIL"
_INSTALL_HINT = "run `make install` (it installs node_modules/.bin/anvil) or set ENCLAVENET_ANVIL"
_running: set[AnvilProcess] = set()


def _project_roots() -> list[Path]:
    here = Path(__file__).resolve()
    roots = [here.parents[3]]  # <root>/src/enclavenet/chain/anvil.py
    cwd = Path.cwd().resolve()
    roots += [cwd, *cwd.parents]
    return roots


def find_anvil() -> str:
    """Path of the anvil executable to run; raises :class:`AnvilError` if there is none."""
    override = os.environ.get(ANVIL_ENV)
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise AnvilError(f"{ANVIL_ENV}={override} is not an executable file")
        return override
    for root in _project_roots():
        modules = root / "node_modules"
        if not (modules / ".bin" / "anvil").exists():
            continue
        # the platform package's native binary: what the node wrapper would exec
        for native in sorted(modules.glob("@foundry-rs/anvil-*/bin/anvil")):
            if os.access(native, os.X_OK):
                return str(native)
        return str(modules / ".bin" / "anvil")
    on_path = shutil.which("anvil")
    if on_path:
        return on_path
    raise AnvilError(f"anvil not found: {_INSTALL_HINT}")


def anvil_available() -> bool:
    try:
        find_anvil()
    except AnvilError:
        return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return b"result" in response.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


class AnvilProcess:
    """An anvil child process. Automine by default; ``block_time`` switches to interval
    mining. Its funded accounts are :func:`.accounts.dev_accounts`."""

    def __init__(
        self,
        *,
        chain_id: int = DEFAULT_CHAIN_ID,
        block_time: float | None = None,
        accounts: int = 10,
        balance_eth: int = DEFAULT_BALANCE_ETH,
        gas_limit: int = DEFAULT_GAS_LIMIT,
        extra_args: tuple[str, ...] = (),
        binary: str | None = None,
        start_timeout: float = 20.0,
        prefix: tuple[str, ...] = (),
        host: str = "127.0.0.1",
        url_host: str | None = None,
        port: int = 0,
    ) -> None:
        # prefix/host/url_host/port: where it runs (benchmarks/wan.py: ``ip netns exec NS``, the
        # namespace's address, the address a relay answers on, a fixed port)
        self.prefix = prefix
        self.host = host
        self.url_host = url_host or host
        self.fixed_port = port
        self.chain_id = chain_id
        self.block_time = block_time
        self.n_accounts = accounts
        self.balance_eth = balance_eth
        self.gas_limit = gas_limit
        self.extra_args = extra_args
        self.binary = binary
        self.start_timeout = start_timeout
        self.port = 0
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._home: tempfile.TemporaryDirectory[str] | None = None

    @property
    def accounts(self) -> list[LocalAccount]:
        return dev_accounts(self.n_accounts)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> Self:
        if self._proc is not None:
            return self
        binary = self.binary or find_anvil()
        self._home = tempfile.TemporaryDirectory(prefix="enclavenet-anvil-")
        for attempt in range(3):  # another process may grab the free port first
            self.port = self.fixed_port or _free_port()
            self.url = f"http://{self.url_host}:{self.port}"
            if self._launch(binary, attempt):
                _running.add(self)
                log.info("anvil %s (pid %d) at %s", binary, self.pid, self.url)
                return self
        raise AssertionError("unreachable")  # pragma: no cover

    def _launch(self, binary: str, attempt: int) -> bool:
        assert self._home is not None
        args = [
            *self.prefix, binary,
            "--host", self.host,
            "--port", str(self.port),
            "--chain-id", str(self.chain_id),
            "--accounts", str(self.n_accounts),
            "--balance", str(self.balance_eth),
            "--gas-limit", str(self.gas_limit),
            "--mnemonic", DEV_MNEMONIC,
            "--quiet",
        ]  # fmt: skip
        if self.block_time is not None:
            args += ["--block-time", str(self.block_time)]
        args += list(self.extra_args)
        log_path = Path(self._home.name) / "anvil.log"
        env = {**os.environ, "HOME": self._home.name}
        with open(log_path, "wb") as out:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own process group: stop() reaches node's child too
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                output = log_path.read_text(errors="replace").strip()
                self._proc = None
                if "in use" in output and attempt < 2:
                    return False
                raise AnvilError(f"anvil ({binary}) exited at start: {output[-2000:]}")
            if _answers(self.url):
                return True
            time.sleep(0.01)
        self.stop()
        raise AnvilError(
            f"anvil ({binary}) did not answer at {self.url} within {self.start_timeout}s"
        )

    def connect(self) -> RpcL1:
        """An :class:`RpcL1` on this node, signing with its funded accounts. Closing it
        leaves the node running."""
        if self._proc is None:
            self.start()
        return RpcL1(self.url, accounts=self.accounts)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        _running.discard(self)
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # our own child's group (start_new_session)
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass
        if self._home is not None:
            self._home.cleanup()
            self._home = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_anvil(**options: Any) -> RpcL1:
    """Start anvil (options as :class:`AnvilProcess`) and return an :class:`RpcL1` on it that
    owns the process: ``close()`` (or leaving ``with``) stops anvil."""
    process = AnvilProcess(**options).start()
    try:
        return RpcL1(process.url, accounts=process.accounts, owned_process=process)
    except BaseException:
        process.stop()
        raise


@atexit.register
def _stop_all() -> None:
    for process in list(_running):
        process.stop()
