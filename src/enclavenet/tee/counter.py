"""The simulated platform's monotonic counter service (trusted; docs/ENCLAVE.md "Rollback").

Real deployments give an enclave a counter its host cannot move backwards: SGX's former PSE
counters, a TPM NV counter, or a replicated counter service (ROTE, Narrator). The enclave binds
the counter's value into every sealed blob and advances it before any output that depends on
new never-sign-twice state leaves; a blob whose value is below the counter's is then *stale*.

Here each simulated machine keeps its counters in its own non-volatile storage: the directory
``SimulatedPlatform.nv_dir`` (default ``$ENCLAVENET_NV_DIR`` or
``~/.local/state/enclavenet/nv``, then ``<tee>-<instance id>``). Only the platform layer inside
the enclave process (``EnclavePlatform.counter_read`` / ``counter_advance``) opens it; the host
side of the ecall boundary has no call that reaches it. Each counter is one file:

    canonical CBOR [count, high] || HMAC-SHA256(key, domain || name || that CBOR)

with ``key`` derived from the machine's instance secret and the enclave's measurement (like the
sealing key), so a file written by anyone else -- the host, another measurement -- fails its MAC
and every later use refuses (fail closed, never "counter 0"). Both fields only grow:

* ``count`` -- advanced by exactly one per ``advance``, compare-and-swap: the caller names the
  count it last saw, so two enclave processes run from one blob (a fork) cannot both advance;
* ``high`` -- a high-water mark the caller raises (the highest height the enclave may have
  signed at), never lowered.

Updates are atomic (``flock`` + write-temp + fsync + rename + fsync of the directory).

What the simulation cannot give: a host that owns the machine can copy an old counter file back
(the simulated NV is a directory on the host's disk, as the simulated CPU secret is in the
host's config). A hardware counter or a replicated counter service closes that; nothing in the
host's code path writes here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cbor2

COUNTER_DOMAIN = b"EnclaveNet.nv-counter.v1"
_TAG = 32
MAX_COUNT = (1 << 64) - 1


class CounterError(RuntimeError):
    """The counter cannot be read or advanced (corrupt store, concurrent advance, I/O).

    The message never carries a secret."""


class CounterConflict(CounterError):
    """``advance`` named a count that is no longer the counter's: another process advanced it."""


@dataclass(frozen=True)
class CounterValue:
    """A counter's value: ``count`` (advances) and ``high`` (a high-water mark); both only grow."""

    count: int = 0
    high: int = 0


def default_nv_root() -> Path:
    env = os.environ.get("ENCLAVENET_NV_DIR")
    if env:
        return Path(env)
    return Path.home() / ".local" / "state" / "enclavenet" / "nv"


class CounterStore:
    """The counters of one machine for one measurement (``EnclavePlatform`` builds it)."""

    def __init__(self, directory: Path, key: bytes, scope: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a counter key has 32 bytes")
        self.directory = Path(directory)
        self._key = key
        self._scope = scope  # the measurement: one measurement never sees another's counters

    def _name(self, counter_id: bytes) -> str:
        return hashlib.sha256(COUNTER_DOMAIN + self._scope + counter_id).hexdigest()[:32]

    def _tag(self, name: str, body: bytes) -> bytes:
        return hmac.new(self._key, COUNTER_DOMAIN + name.encode() + body, hashlib.sha256).digest()

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.ctr"

    def _load(self, name: str) -> CounterValue:
        try:
            raw = self._path(name).read_bytes()
        except FileNotFoundError:
            return CounterValue()
        except OSError as exc:
            raise CounterError(f"platform counter store unreadable ({type(exc).__name__})") from None
        body, tag = raw[:-_TAG], raw[-_TAG:]
        if len(raw) <= _TAG or not hmac.compare_digest(tag, self._tag(name, body)):
            raise CounterError("platform counter store is corrupt or was written by someone else (MAC fails)")
        try:
            count, high = cbor2.loads(body)
            value = CounterValue(int(count), int(high))
        except Exception:
            raise CounterError("platform counter store is corrupt (undecodable)") from None
        if value.count < 0 or value.high < 0:
            raise CounterError("platform counter store is corrupt (negative value)")
        return value

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.directory / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise CounterError(f"platform counter store unavailable ({type(exc).__name__})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def read(self, counter_id: bytes) -> CounterValue:
        """The counter's value (``CounterValue(0, 0)`` when it was never advanced)."""
        name = self._name(counter_id)
        with self._locked(name):
            return self._load(name)

    def advance(self, counter_id: bytes, expected: int, high: int) -> CounterValue:
        """Advance the counter by one and raise its high-water mark to at least ``high``, if its
        count is still ``expected`` (else ``CounterConflict``, nothing changes). Durable on return."""
        name = self._name(counter_id)
        with self._locked(name):
            cur = self._load(name)
            if cur.count != expected:
                raise CounterConflict(
                    f"platform counter is at {cur.count}, not {expected}: another process of this enclave "
                    "advanced it (or this one runs on stale state)"
                )
            if cur.count >= MAX_COUNT:
                raise CounterError("platform counter is exhausted")
            new = CounterValue(cur.count + 1, max(cur.high, int(high)))
            body = cbor2.dumps([new.count, new.high], canonical=True)
            self._write(name, body + self._tag(name, body))
            return new

    def _write(self, name: str, data: bytes) -> None:
        path = self._path(name)
        tmp = path.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            dfd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            raise CounterError(f"platform counter store not writable ({type(exc).__name__})") from None


__all__ = ["CounterConflict", "CounterError", "CounterStore", "CounterValue", "default_nv_root"]
