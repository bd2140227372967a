"""Run ``enclavenet dap`` as a child process (devnet, tests, benchmarks).

    p = DapProcess(key_file, "sqlite:///x.db", rollup, l1_chain_id, log_path=...).start()
    p.url, p.address        # from its ready line
    p.kill(); p.start()     # crash (SIGKILL) and come back on the same store and port
    p.stop()                # SIGTERM, then SIGKILL after a grace period
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any


class DapProcessError(RuntimeError):
    """The DAP process did not start; the message names its log."""


class DapProcess:
    def __init__(self, key_file: str | Path, store: str, rollup: str, l1_chain_id: int, *,
                 log_path: str | Path, l1_rpc: str | None = None, manager: str | None = None,
                 from_block: int = 0, lazy: bool = False, port: int = 0, poll: float = 0.3,
                 python: str | None = None, prefix: list[str] | None = None, host: str = "127.0.0.1") -> None:
        self.key_file = str(key_file)
        self.store = store
        self.rollup = rollup
        self.l1_chain_id = l1_chain_id
        self.log_path = Path(log_path)
        self.l1_rpc = l1_rpc
        self.manager = manager
        self.from_block = from_block
        self.lazy = lazy
        self.port = port
        self.poll = poll
        self.python = python or sys.executable
        self.prefix = list(prefix or [])  # e.g. ["ip", "netns", "exec", ns] (benchmarks/wan.py)
        self.host = host
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.url: str | None = None
        self.address: str | None = None
        self.ready: dict[str, Any] = {}

    def argv(self) -> list[str]:
        a = [*self.prefix, self.python, "-m", "enclavenet.cli", "dap", "--host", self.host,
             "--key-file", self.key_file, "--store", self.store,
             "--rollup", self.rollup, "--l1-chain-id", str(self.l1_chain_id), "--port", str(self.port),
             "--poll", str(self.poll), "--from-block", str(self.from_block)]
        if self.l1_rpc and self.manager:
            a += ["--l1-rpc", self.l1_rpc, "--manager", self.manager]
        if self.lazy:
            a.append("--lazy")
        return a

    def start(self, timeout: float = 30.0) -> DapProcess:
        if self.alive():
            return self
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(self.argv(), stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        out = self.popen.stdout
        assert out is not None
        box: list[bytes] = []
        t = threading.Thread(target=lambda: box.append(out.readline()), daemon=True)
        t.start()
        t.join(timeout)
        if not box or not box[0]:
            code = self.popen.poll()
            self.kill()
            raise DapProcessError(f"enclavenet dap did not start (exit code {code}); see {self.log_path}")
        self.ready = json.loads(box[0])
        self.url = str(self.ready["url"])
        self.address = str(self.ready["address"])
        self.port = int(self.url.rsplit(":", 1)[1])  # a restart keeps the port
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.popen.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        self.kill()

    def kill(self) -> None:
        """SIGKILL (a crash: nothing flushed beyond what was committed)."""
        if self.popen is not None:
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(5)
            if self.popen.stdout:
                self.popen.stdout.close()
            self.popen = None
        if self._log:
            self._log.close()
            self._log = None


__all__ = ["DapProcess", "DapProcessError"]
