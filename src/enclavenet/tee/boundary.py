"""The host side of the ecall boundary: ``ProcessEnclave`` and ``InProcessEnclave``.

Both offer the same interface::

    with ProcessEnclave(platform, "enclavenet.enclave.program:EnclaveProgram", config) as enc:
        out: bytes = enc.ecall("method", payload_bytes)   # EnclaveError on refusal

* ``ProcessEnclave`` spawns ``python -m enclavenet.tee.runner --program ...`` as its own OS
  process and speaks length-prefixed CBOR frames (``tee.wire``) over its stdin/stdout pipes.
  The machine's secrets go in the first frame on stdin (``__boot__``), never on argv.
  ``ecall`` raises ``EnclaveTimeout`` when no answer arrives within the deadline (the enclave
  keeps running; a late answer is recognised by its id and dropped) and ``EnclaveCrashed``
  when the process has died (every later call raises it too).
* ``InProcessEnclave`` runs the same ``EnclaveServer`` in this process through the same
  encode/decode path, for fast unit tests. It cannot pre-empt a slow ecall; the ``hang`` and
  ``crash`` faults are emulated (later calls raise ``EnclaveTimeout`` / ``EnclaveCrashed``).

Fault hooks (only when started with ``allow_faults=True``): ``crash()``, ``hang()``,
``compromise() -> dict`` (the program's ``compromised_export()``) and, after that,
``compromised_sign(digest) -> 65-byte signature`` with the leaked signing key.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import IO, Any, Protocol

import cbor2

from . import wire
from .platform import SimulatedPlatform
from .server import DEFAULT_PROGRAM, EnclaveServer

log = logging.getLogger("enclavenet.tee.host")

DEFAULT_TIMEOUT = 30.0
DEFAULT_START_TIMEOUT = 60.0


class EnclaveError(Exception):
    """The enclave refused a call (or answered an error). The message carries no secret."""


class EnclaveTimeout(EnclaveError):
    """The enclave did not answer within the deadline."""


class EnclaveCrashed(EnclaveError):
    """The enclave process has died (or its pipes broke)."""


class Enclave(Protocol):
    """What the host (node, tests, benchmarks) holds: one running enclave."""

    info: dict[str, Any]

    @property
    def measurement(self) -> bytes: ...

    def ecall(self, method: str, payload: bytes = b"", *, timeout: float | None = None) -> bytes: ...

    def close(self) -> None: ...


class _EnclaveBase:
    info: dict[str, Any]

    def __init__(self, timeout: float, max_frame: int) -> None:
        self.timeout = timeout
        self.max_frame = max_frame
        self._next_id = 0
        self.info = {}

    @property
    def measurement(self) -> bytes:
        """The enclave's measurement as its loader computed it (from the boot answer)."""
        m: bytes = self.info["measurement"]
        return m

    @property
    def tee_type(self) -> int:
        t: int = self.info["tee_type"]
        return t

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _request(self, method: str, payload: bytes) -> tuple[int, bytes]:
        if not isinstance(method, str) or not 0 < len(method) <= wire.MAX_METHOD_LEN:
            raise EnclaveError(f"ecall method must be a string of 1..{wire.MAX_METHOD_LEN} characters")
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise EnclaveError("ecall payload must be bytes")
        req_id = self._new_id()
        body = wire.encode_request(req_id, method, bytes(payload))
        if len(body) > self.max_frame:
            raise EnclaveError(f"ecall request of {len(body)} bytes exceeds the frame limit of {self.max_frame}")
        return req_id, body

    @staticmethod
    def _answer(result: bytes | None, error: str | None) -> bytes:
        if error is not None:
            raise EnclaveError(error)
        assert result is not None
        return result

    def ecall(self, method: str, payload: bytes = b"", *, timeout: float | None = None) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> _EnclaveBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- boot and fault hooks (same on both kinds)
    def _boot_payload(self, platform: SimulatedPlatform, config: Mapping[str, Any] | None) -> bytes:
        return cbor2.dumps({"platform": platform.boot_spec(), "config": dict(config or {})})

    def ping(self, *, timeout: float | None = None) -> bool:
        return self.ecall(wire.PING, b"", timeout=timeout) == b"pong"

    def crash(self) -> None:
        """Fault: the enclave process exits at once."""
        self._fire_and_forget(wire.FAULT_CRASH)

    def hang(self) -> None:
        """Fault: the enclave stops answering (every later ecall times out)."""
        self._fire_and_forget(wire.FAULT_HANG)

    def compromise(self) -> dict[str, Any]:
        """Fault: the enclave hands out its keys (``program.compromised_export()``)."""
        out: dict[str, Any] = cbor2.loads(self.ecall(wire.FAULT_COMPROMISE))
        return out

    def compromised_sign(self, digest: bytes) -> bytes:
        """After ``compromise()``: the enclave signs any 32-byte digest with its signing key."""
        return self.ecall(wire.FAULT_SIGN, digest)

    def _fire_and_forget(self, method: str) -> None:
        raise NotImplementedError


class InProcessEnclave(_EnclaveBase):
    """The same interface and message path as ``ProcessEnclave``, without a process."""

    def __init__(
        self,
        platform: SimulatedPlatform,
        program: str = DEFAULT_PROGRAM,
        config: Mapping[str, Any] | None = None,
        *,
        allow_faults: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        max_frame: int = wire.DEFAULT_MAX_FRAME,
    ) -> None:
        super().__init__(timeout, max_frame)
        self._server: EnclaveServer | None = EnclaveServer(program, allow_faults=allow_faults)
        self._state = "running"  # running | hung | crashed | closed
        boot = self.ecall(wire.BOOT, self._boot_payload(platform, config))
        self.info = cbor2.loads(boot)

    def _roundtrip(self, frame_bytes: bytes) -> bytes | None:
        """Frame in, frame out: the runner's parsing, in this process."""
        assert self._server is not None
        (n,) = wire.LEN.unpack(frame_bytes[:4])
        if n > self.max_frame:
            return wire.frame(wire.encode_error(None, f"frame of {n} bytes exceeds the enclave's limit of {self.max_frame} bytes"))
        reply = self._server.handle(frame_bytes[4 : 4 + n])
        if reply.action == "crash":
            self._state = "crashed"
            self._server = None
            return None
        if reply.action == "hang":
            self._state = "hung"
            return None
        if reply.action == "exit":
            self._state = "crashed"
            self._server = None
        return None if reply.body is None else wire.frame(reply.body)

    def _check_state(self) -> None:
        if self._state == "crashed":
            raise EnclaveCrashed("enclave has crashed (in-process emulation)")
        if self._state == "hung":
            raise EnclaveTimeout("enclave did not answer (hung; in-process emulation)")
        if self._state == "closed":
            raise EnclaveError("enclave is closed")

    def raw_exchange(self, frame_bytes: bytes) -> tuple[int | None, bytes | None, str | None]:
        """Send a raw frame (tests of the boundary's robustness); returns the decoded answer."""
        self._check_state()
        out = self._roundtrip(frame_bytes)
        if out is None:
            raise EnclaveError("no answer")
        return wire.decode_response(out[4:])

    def ecall(self, method: str, payload: bytes = b"", *, timeout: float | None = None) -> bytes:
        self._check_state()
        req_id, body = self._request(method, payload)
        out = self._roundtrip(wire.frame(body))
        if out is None:
            self._check_state()
            raise EnclaveError("enclave gave no answer")
        rid, result, error = wire.decode_response(out[4:])
        if rid not in (req_id, None):
            raise EnclaveError(f"enclave answered request {rid}, expected {req_id}")
        return self._answer(result, error)

    def _fire_and_forget(self, method: str) -> None:
        self._check_state()
        _req_id, body = self._request(method, b"")
        out = self._roundtrip(wire.frame(body))
        if out is not None:
            _rid, result, error = wire.decode_response(out[4:])
            self._answer(result, error)

    def close(self) -> None:
        self._state = "closed"
        self._server = None

    def __enter__(self) -> InProcessEnclave:
        return self


class ProcessEnclave(_EnclaveBase):
    """An enclave in its own OS process (``python -m enclavenet.tee.runner``)."""

    def __init__(
        self,
        platform: SimulatedPlatform,
        program: str = DEFAULT_PROGRAM,
        config: Mapping[str, Any] | None = None,
        *,
        allow_faults: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        max_frame: int = wire.DEFAULT_MAX_FRAME,
        stderr: int | IO[bytes] | None = None,
        log_level: str = "WARNING",
    ) -> None:
        super().__init__(timeout, max_frame)
        argv = [sys.executable, "-m", "enclavenet.tee.runner", "--program", program, "--max-frame", str(max_frame),
                "--log-level", log_level]
        if allow_faults:
            argv.append("--allow-faults")
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, close_fds=True
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._wfd = self._proc.stdin.fileno()
        self._rfd = self._proc.stdout.fileno()
        os.set_blocking(self._wfd, False)
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversized answer still to drop
        self._dead = False
        self._last_timeout = start_timeout
        try:
            boot = self.ecall(wire.BOOT, self._boot_payload(platform, config), timeout=start_timeout)
        except BaseException:
            self.close()
            raise
        self.info = cbor2.loads(boot)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- low-level pipe I/O with deadlines
    def _crashed(self, why: str) -> EnclaveCrashed:
        self._dead = True
        code = None
        if self._proc is not None:
            try:
                code = self._proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                code = None
        return EnclaveCrashed(f"enclave process died ({why}; exit code {code})")

    def _write_all(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise EnclaveTimeout("enclave did not accept the request within the deadline")
            _, w, _ = select.select([], [self._wfd], [], left)
            if not w:
                continue
            try:
                n = os.write(self._wfd, view[: 1 << 20])
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError):
                raise self._crashed("broken pipe on write") from None
            view = view[n:]

    def _fill(self, need: int, deadline: float) -> None:
        while len(self._buf) < need:
            left = deadline - time.monotonic()
            if left <= 0:
                raise EnclaveTimeout(f"enclave did not answer within {self._last_timeout:.3g} s")
            r, _, _ = select.select([self._rfd], [], [], left)
            if not r:
                continue
            chunk = os.read(self._rfd, min(max(need - len(self._buf), 1 << 16), 1 << 22))
            if not chunk:
                raise self._crashed("end of output")
            self._buf += chunk

    def _discard_pending(self, deadline: float) -> None:
        """Skip the rest of an oversized answer (kept across timeouts, so frames stay in sync)."""
        while self._skip > 0:
            if not self._buf:
                self._fill(1, deadline)
            k = min(self._skip, len(self._buf))
            del self._buf[:k]
            self._skip -= k

    def _read_response(self, deadline: float) -> tuple[int | None, bytes | None, str | None]:
        # Nothing is consumed until a whole frame is buffered: a timeout never splits a frame.
        self._discard_pending(deadline)
        self._fill(wire.LEN.size, deadline)
        (n,) = wire.LEN.unpack(self._buf[: wire.LEN.size])
        if n > self.max_frame:
            del self._buf[: wire.LEN.size]
            self._skip = n
            self._discard_pending(deadline)
            raise EnclaveError(f"enclave answer of {n} bytes exceeds the frame limit of {self.max_frame}")
        self._fill(wire.LEN.size + n, deadline)
        body = bytes(self._buf[wire.LEN.size : wire.LEN.size + n])
        del self._buf[: wire.LEN.size + n]
        try:
            return wire.decode_response(body)
        except wire.FrameError as exc:
            raise EnclaveError(f"malformed enclave answer: {exc}") from None

    def _check_alive(self) -> None:
        if self._proc is None:
            raise EnclaveError("enclave is closed")
        if self._dead or self._proc.poll() is not None:
            raise self._crashed("not running")

    def raw_exchange(self, frame_bytes: bytes, *, timeout: float | None = None) -> tuple[int | None, bytes | None, str | None]:
        """Write raw bytes (tests of the boundary's robustness) and read one answer frame."""
        self._check_alive()
        self._last_timeout = timeout or self.timeout
        deadline = time.monotonic() + self._last_timeout
        self._write_all(frame_bytes, deadline)
        return self._read_response(deadline)

    def ecall(self, method: str, payload: bytes = b"", *, timeout: float | None = None) -> bytes:
        self._check_alive()
        req_id, body = self._request(method, payload)
        self._last_timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + self._last_timeout
        self._write_all(wire.frame(body), deadline)
        while True:
            rid, result, error = self._read_response(deadline)
            if rid is None or rid == req_id:
                return self._answer(result, error)
            if rid < req_id:
                log.debug("dropping a late answer to request %d", rid)
                continue
            raise EnclaveError(f"enclave answered request {rid}, expected {req_id}")

    def _fire_and_forget(self, method: str) -> None:
        self._check_alive()
        _req_id, body = self._request(method, b"")
        self._last_timeout = self.timeout
        self._write_all(wire.frame(body), time.monotonic() + self.timeout)

    def wait_dead(self, timeout: float = 5.0) -> int | None:
        """Wait until the process has exited; its exit code (None if still running)."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """Kill the enclave process now (the host may always do this)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=5.0)

    def close(self, timeout: float = 2.0) -> None:
        """Close stdin (the runner exits on EOF); kill if it has not exited within ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5.0)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> ProcessEnclave:
        return self

    def __del__(self) -> None:
        try:
            if getattr(self, "_proc", None) is not None:
                self.close(timeout=0.5)
        except Exception:
            pass
