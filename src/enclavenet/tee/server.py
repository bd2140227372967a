"""The enclave side of the ecall boundary: one request body in, one response body out.

``EnclaveServer`` is shared by the runner process (``tee.runner``) and ``InProcessEnclave``,
so both go through the same encode/decode path. It never raises on input: malformed requests,
refusals and unexpected internal errors all become an error response. An unexpected error's
message is generic (method name and error type only), so no secret can leak through it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import cbor2

from ..crypto.secp256k1 import SigningKey
from ..enclave.errors import EnclaveRefusal
from . import wire
from .platform import EnclavePlatform, measure_enclave, platform_from_spec

log = logging.getLogger("enclavenet.tee.enclave")

DEFAULT_PROGRAM = "enclavenet.enclave.program:EnclaveProgram"


class EnclaveProgramProtocol(Protocol):
    """What the runner hosts. ``EnclaveProgram(platform, config)`` builds one.

    * ``ecall(method, payload) -> bytes``; refuses with ``enclave.errors.EnclaveRefusal(msg)``.
    * ``compromised_export() -> dict``: the program's keys, for the ``compromise`` fault only.
      It must contain ``"signing_key"`` (32-byte secp256k1 secret, as bytes or hex text) so the compromised enclave
      can sign whatever digest it is given; other entries are free (e.g. ``"enc_key"``,
      ``"epochs": {epoch: {"tx_key": .., "state_key": ..}}``).
    """

    def ecall(self, method: str, payload: bytes) -> bytes: ...

    def compromised_export(self) -> dict[str, Any]: ...


ProgramFactory = Callable[[EnclavePlatform, dict[str, Any]], EnclaveProgramProtocol]


def load_program_class(path: str) -> ProgramFactory:
    """Resolve ``"package.module:Class"`` (or ``"package.module.Class"``)."""
    if ":" in path:
        mod_name, _, attr = path.partition(":")
    else:
        mod_name, _, attr = path.rpartition(".")
    if not mod_name or not attr:
        raise ValueError(f"program path {path!r} must look like 'package.module:Class'")
    module = importlib.import_module(mod_name)
    try:
        cls: ProgramFactory = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {mod_name!r} has no program class {attr!r}") from None
    return cls


class _BootFailure(Exception):
    """The program cannot be loaded (its path is not secret)."""


@dataclass
class Reply:
    """A response body to send (or None), and a process-level action for the fault hooks."""

    body: bytes | None
    action: str | None = None  # "crash" | "hang" | "exit"


def _signing_key_of(key: Any) -> SigningKey | None:
    """The leaked signing key, given as 32 bytes or as (0x-)hex text."""
    try:
        if isinstance(key, str):
            key = bytes.fromhex(key.removeprefix("0x"))
        if isinstance(key, bytes | bytearray):
            return SigningKey(bytes(key))
    except ValueError:
        pass
    return None


def _safe_method(method: str) -> str:
    return method if method.isprintable() and len(method) <= wire.MAX_METHOD_LEN else "<unprintable>"


class EnclaveServer:
    """Hosts one program. Feed it request bodies with ``handle(body)``; never raises."""

    def __init__(self, program_path: str, *, allow_faults: bool = False, clock: Callable[[], float] | None = None):
        self.program_path = program_path
        self.allow_faults = allow_faults
        self._clock = clock
        self.program: EnclaveProgramProtocol | None = None
        self.platform: EnclavePlatform | None = None
        self._compromised_key: SigningKey | None = None

    # -- boot
    def _boot(self, payload: bytes) -> bytes:
        try:
            m = cbor2.loads(payload)
            spec = m["platform"]
            config = m.get("config") or {}
            if not isinstance(spec, Mapping) or not isinstance(config, dict):
                raise TypeError
        except Exception:
            raise EnclaveRefusal("boot payload must be a CBOR map {platform: map, config: map}") from None
        try:
            machine = platform_from_spec(spec)
        except (ValueError, TypeError) as exc:
            raise EnclaveRefusal(f"bad platform spec: {type(exc).__name__}") from None
        try:
            factory = load_program_class(self.program_path)
        except (ImportError, ValueError) as exc:
            raise _BootFailure(f"cannot load program {self.program_path!r}: {exc}") from None
        measurement = measure_enclave(self.program_path, config)
        self.platform = machine.enclave_view(measurement, clock=self._clock)
        self.program = factory(self.platform, config)
        return cbor2.dumps(
            {
                "measurement": measurement,
                "tee": machine.tee_name,
                "tee_type": machine.tee_type,
                "instance_id": machine.instance_id,
                "root": machine.root_address,
                "program": self.program_path,
                "faults": self.allow_faults,
            }
        )

    # -- one request
    def handle(self, body: bytes) -> Reply:
        try:
            req_id, method, payload = wire.decode_request(body)
        except wire.FrameError as exc:
            return Reply(wire.encode_error(getattr(exc, "req_id", None), f"malformed request: {exc}"))
        try:
            return self._dispatch(req_id, method, payload)
        except EnclaveRefusal as exc:
            return Reply(wire.encode_error(req_id, str(exc) or "refused"))
        except Exception as exc:  # never crash on input; never leak an internal message
            log.error("internal error in ecall %s: %s", _safe_method(method), type(exc).__name__)
            return Reply(
                wire.encode_error(req_id, f"internal enclave error in {_safe_method(method)!r} ({type(exc).__name__})")
            )

    def _dispatch(self, req_id: int, method: str, payload: bytes) -> Reply:
        if method == wire.BOOT:
            if self.program is not None:
                raise EnclaveRefusal("the enclave is already booted")
            try:
                return Reply(wire.encode_result(req_id, self._boot(payload)))
            except (_BootFailure, EnclaveRefusal) as exc:
                why = str(exc)
            except Exception as exc:  # the program's constructor: type only, its message may hold secrets
                why = f"the program could not start ({type(exc).__name__})"
            log.error("enclave failed to boot: %s", why)
            return Reply(wire.encode_error(req_id, f"enclave failed to boot: {why}"), action="exit")
        if self.program is None:
            raise EnclaveRefusal("the enclave is not booted yet (send __boot__ first)")
        if method == wire.PING:
            return Reply(wire.encode_result(req_id, b"pong"))
        if method.startswith("__fault__."):
            return self._fault(req_id, method, payload)
        if method.startswith("__"):
            raise EnclaveRefusal(f"unknown reserved method {method!r}")
        result = self.program.ecall(method, payload)
        if not isinstance(result, bytes | bytearray | memoryview):
            raise TypeError("program returned a non-bytes result")
        return Reply(wire.encode_result(req_id, bytes(result)))

    def _fault(self, req_id: int, method: str, payload: bytes) -> Reply:
        if not self.allow_faults:
            raise EnclaveRefusal("fault hooks are disabled (start the enclave with allow_faults=True)")
        assert self.program is not None
        if method == wire.FAULT_CRASH:
            return Reply(None, action="crash")
        if method == wire.FAULT_HANG:
            return Reply(None, action="hang")
        if method == wire.FAULT_COMPROMISE:
            exported = self.program.compromised_export()
            self._compromised_key = _signing_key_of(exported.get("signing_key"))
            log.warning("FAULT: enclave compromised; keys handed out")
            return Reply(wire.encode_result(req_id, cbor2.dumps(exported)))
        if method == wire.FAULT_SIGN:
            if self._compromised_key is None:
                raise EnclaveRefusal("the enclave is not compromised (call __fault__.compromise first)")
            if len(payload) != 32:
                raise EnclaveRefusal("__fault__.sign takes a 32-byte digest")
            return Reply(wire.encode_result(req_id, self._compromised_key.sign(payload)))
        raise EnclaveRefusal(f"unknown fault {method!r}")
