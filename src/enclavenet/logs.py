"""Log set-up for the processes (node, DAP, explorer): text or one JSON object per line, and
never a secret.

    setup_logging("node0", level="INFO", fmt="json", secrets=[cfg.l1_key])

``fmt="json"`` writes ``{"ts", "level", "process", "logger", "msg"}`` (+ ``exc`` with a
traceback) per line. Every handler gets a :class:`RedactSecrets` filter: the secret values given
(an operator key, a simulated platform's secrets; hex with or without ``0x``, any case) are
replaced by ``[redacted]`` in the message, its arguments and tracebacks -- a last line of
defence; the code itself never logs them (tests/unit/test_ops.py checks both).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import IO, Any

REDACTED = "[redacted]"
FORMATS = ("text", "json")


def secret_strings(values: Iterable[Any]) -> list[str]:
    """The forms a secret can take in a log line: the text as given, and for bytes / hex strings
    their lowercase hex without ``0x`` (the filter matches case-insensitively)."""
    out: set[str] = set()
    for v in values:
        if isinstance(v, bytes | bytearray):
            if len(v) >= 8:
                out.add(bytes(v).hex())
        elif isinstance(v, str) and len(v) >= 8:
            s = v.removeprefix("0x").removeprefix("0X")
            out.add(s.lower() if re.fullmatch(r"[0-9a-fA-F]+", s) else v)
        elif isinstance(v, dict):
            out.update(secret_strings(v.values()))
        elif isinstance(v, list | tuple):
            out.update(secret_strings(v))
    return sorted(out, key=len, reverse=True)


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[Any] = ()) -> None:
        super().__init__()
        self._strings: list[str] = []
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[Any]) -> None:
        self._strings = sorted(set(self._strings) | set(secret_strings(secrets)), key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in self._strings), re.IGNORECASE) if self._strings else None

    def scrub(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text) if self._pattern else text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True
        msg = record.getMessage()
        clean = self.scrub(msg)
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if clean != msg or record.args:
            record.msg, record.args = clean, None
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "process": self.process, "logger": record.name, "msg": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


def setup_logging(process: str, *, level: str = "INFO", fmt: str = "text", secrets: Iterable[Any] = (),
                  stream: IO[str] | None = None) -> RedactSecrets:
    """Configure the root logger (replacing earlier handlers); returns the redaction filter."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    lvl = getattr(logging, str(level).upper(), None)
    if not isinstance(lvl, int):
        raise ValueError(f"log level must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(process))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s"))
    redact = RedactSecrets(secrets)
    handler.addFilter(redact)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(lvl)
    return redact
