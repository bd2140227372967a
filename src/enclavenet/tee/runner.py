"""The enclave process: ``python -m enclavenet.tee.runner --program pkg.mod:Class [--allow-faults]``.

Started by its host (``tee.boundary.ProcessEnclave``). It talks ONLY through frames on its
stdin/stdout (``tee.wire``); anything the program prints goes to stderr, never into the frame
stream. The first frame is ``__boot__`` carrying the simulated machine's key material and the
program config (secrets never on argv). The process exits when its stdin closes.

Frames longer than ``--max-frame`` are skipped in chunks (never held in memory) and answered
with an error; the enclave keeps running.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import BinaryIO

from . import wire
from .server import DEFAULT_PROGRAM, EnclaveServer

_CHUNK = 1 << 20


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _discard(stream: BinaryIO, n: int) -> bool:
    while n > 0:
        chunk = stream.read(min(n, _CHUNK))
        if not chunk:
            return False
        n -= len(chunk)
    return True


def serve(server: EnclaveServer, inp: BinaryIO, out: BinaryIO, max_frame: int) -> int:
    """Answer frames until stdin closes. Returns the process exit code."""

    def send(body: bytes) -> None:
        out.write(wire.frame(body))
        out.flush()

    while True:
        head = _read_exact(inp, wire.LEN.size)
        if head is None:
            return 0
        (n,) = wire.LEN.unpack(head)
        if n > max_frame:
            if not _discard(inp, n):
                return 0
            send(wire.encode_error(None, f"frame of {n} bytes exceeds the enclave's limit of {max_frame} bytes"))
            continue
        body = _read_exact(inp, n)
        if body is None:
            return 0
        reply = server.handle(body)
        if reply.action == "crash":
            os._exit(70)
        if reply.action == "hang":
            while True:  # stop answering; the host times out and kills us
                time.sleep(3600)
        if reply.body is not None:
            send(reply.body)
        if reply.action == "exit":
            return 3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="EnclaveNet enclave process (speaks frames on stdin/stdout)")
    ap.add_argument("--program", default=DEFAULT_PROGRAM, help="dotted path of the program class")
    ap.add_argument("--allow-faults", action="store_true", help="enable the crash/hang/compromise hooks")
    ap.add_argument("--max-frame", type=int, default=wire.DEFAULT_MAX_FRAME)
    ap.add_argument("--log-level", default="WARNING")
    args = ap.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=args.log_level.upper(), format="enclave[%(process)d] %(levelname)s %(message)s"
    )
    # Keep the frame stream clean: the real stdout goes to a private fd, fd 1 becomes stderr.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = os.fdopen(os.dup(0), "rb", buffering=_CHUNK)
    out = os.fdopen(out_fd, "wb", buffering=_CHUNK)
    server = EnclaveServer(args.program, allow_faults=args.allow_faults)
    try:
        return serve(server, inp, out, args.max_frame)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
