"""A throwaway PostgreSQL server on 127.0.0.1, for tests and benchmarks.

    with TempPostgres() as pg:                   # initdb + pg_ctl start in a temporary folder
        store = open_store(pg.create_database("dap0"))
    # stopped (pg_ctl stop -m fast) and the folder removed

The binaries are found on PATH or under /usr/lib/postgresql/*/bin (``make install`` installs
PostgreSQL with apt-get when neither has them). initdb and postgres refuse to run as root, so
when this process is root the server runs as the ``postgres`` system user (or ``nobody``) through
``runuser``/``setpriv``; the folder is handed to that user. Authentication is ``trust`` on
127.0.0.1 only (a test server with no secrets); fsync stays on, so benchmark numbers include
durable commits.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "dap"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries here, or the server would not start (the message says why)."""


def find_pg_bin() -> Path:
    """The folder holding initdb / pg_ctl / postgres."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent if (Path(found).resolve().parent / "pg_ctl").exists() else Path(found).parent
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(cand) / "initdb").exists() and (Path(cand) / "pg_ctl").exists():
            return Path(cand)
    raise PostgresUnavailable(
        "PostgreSQL is not installed (no initdb on PATH or under /usr/lib/postgresql/*/bin): "
        "run `make install`, or apt-get install postgresql"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _drop_privileges_prefix() -> tuple[list[str], int, int]:
    """argv prefix running a command as an unprivileged user (empty when not root)."""
    if os.geteuid() != 0:
        return [], os.getuid(), os.getgid()
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        if shutil.which("setpriv"):
            return (["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--"],
                    pw.pw_uid, pw.pw_gid)
        if shutil.which("runuser"):
            return ["runuser", "-u", name, "--"], pw.pw_uid, pw.pw_gid
    raise PostgresUnavailable("running as root and found neither a 'postgres' nor a 'nobody' user "
                              "(and setpriv/runuser) to run PostgreSQL as")


class TempPostgres:
    """One PostgreSQL server in a temporary folder, listening on 127.0.0.1:``port``."""

    def __init__(self, port: int | None = None, base_dir: str | Path | None = None) -> None:
        self.bin = find_pg_bin()
        self.port = port or _free_port()
        self._base = base_dir
        self.dir: Path | None = None
        self._prefix, self._uid, self._gid = _drop_privileges_prefix()
        self._running = False

    @property
    def data_dir(self) -> Path:
        assert self.dir is not None
        return self.dir / "data"

    @property
    def log_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *argv: str, timeout: float = 120.0) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C",
               "HOME": str(self.dir), "TZ": "UTC"}
        cmd = [*self._prefix, str(self.bin / argv[0]), *argv[1:]]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                             stdin=subprocess.DEVNULL, check=False)
        if res.returncode != 0:
            tail = ""
            with contextlib.suppress(OSError):
                tail = self.log_path.read_text()[-1500:]
            raise PostgresUnavailable(
                f"{argv[0]} failed (exit {res.returncode}): {(res.stderr or res.stdout).strip()[-800:]}"
                + (f"\n--- server log ---\n{tail}" if tail else "")
            )

    def start(self, timeout: float = 60.0) -> TempPostgres:
        base = Path(self._base) if self._base else None
        self.dir = Path(tempfile.mkdtemp(prefix="enclavenet-pg-", dir=base or ("/tmp" if os.geteuid() == 0 else None)))
        if os.geteuid() == 0:
            os.chown(self.dir, self._uid, self._gid)
            os.chmod(self.dir, 0o700)
        try:
            self._run("initdb", "-D", str(self.data_dir), "-U", USER, "--auth=trust", "-E", "UTF8",
                      "--locale=C", "--no-sync", "--no-instructions")
            opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                    "-c max_connections=50 -c shared_buffers=64MB")
            self._run("pg_ctl", "-D", str(self.data_dir), "-o", opts, "-l", str(self.log_path), "-w",
                      "-t", str(int(timeout)), "start", timeout=timeout + 10)
            self._running = True
            self._wait_accepting(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_accepting(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.dsn(), connect_timeout=2).close()
                return
            except psycopg.Error as exc:
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(f"PostgreSQL on port {self.port} does not accept connections: {exc}") from None
                time.sleep(0.1)

    def create_database(self, name: str) -> str:
        """A fresh, empty database; returns its DSN."""
        import psycopg

        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name must be alphanumeric/underscore, got {name!r}")
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        if self.dir is None:
            return
        if self._running:
            with contextlib.suppress(Exception):
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop", timeout=40)
            self._running = False
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["PostgresUnavailable", "TempPostgres", "find_pg_bin"]
