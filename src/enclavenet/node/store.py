"""What a node keeps on disk (``data_dir``): its enclave's sealed snapshot and two append-only logs.

* ``enclave.sealed``: the enclave's newest sealed LOCAL snapshot (identity, keys, the
  never-sign-twice record); only this platform's enclave of the same measurement opens it.
* ``pending.log``: acknowledged envelopes, so a node restarted (even with every other node)
  offers them again until they are included. Appended and fsynced *before* the receipt id is
  returned (node/ingress.py, group commit); rewritten at start only atomically (a temporary
  file, fsync, rename, fsync of the directory), so a crash at any point keeps every entry.
* ``receipts.log``: accepted headers' encrypted receipts, so a receipt stays servable after a
  restart.
* ``logs.log``: accepted headers' sealed log index (the enclave's per-batch blobs, with the header,
  its QC and the batch meta's Merkle proof the enclave checks them against, node/logindex.py).
* ``signed/``: every batch this enclave signed (the record, the proposer's and this enclave's
  signatures), one file each, written before the signature leaves the host and deleted
  ``KEEP_FINAL`` heights after it is final (so peers restarted with this node can still fetch the
  last final batches from it). Without it a committee restarted at once lost
  the only copies of batches a quorum had signed, and -- an enclave never signs two headers at
  one height -- could never complete that height again (docs/NODE.md, stall causes).

Both logs are ``u32 length | CBOR`` frames; a torn last write (a crash mid-append) ends the log.
This module is plain file handling: no enclave, no network, no asyncio.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2

log = logging.getLogger("enclavenet.node.store")

SEALED = "enclave.sealed"
SIGNED = "signed"
KEEP_FINAL = 32  # final heights whose signed batch stays on disk (catch-up of peers restarted too)
PENDING = "pending.log"
RECEIPTS = "receipts.log"
LOGS = "logs.log"


def frame(obj: Any) -> bytes:
    """One ``u32 length | CBOR`` frame."""
    data = cbor2.dumps(obj)
    return len(data).to_bytes(4, "big") + data


def append_frame(path: Path, obj: Any, *, sync: bool = False) -> None:
    """Append one frame to an append-only log (raises OSError). ``sync``: on disk when this
    returns (fsync of the file, and of the directory when this append created the file)."""
    created = sync and not path.exists()
    with open(path, "ab") as fh:
        fh.write(frame(obj))
        if sync:
            fh.flush()
            os.fsync(fh.fileno())
    if created:
        fsync_dir(path.parent)


def fsync_dir(d: Path) -> None:
    """Make a file's creation, rename or removal in ``d`` durable."""
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_frames(path: Path) -> Iterator[Any]:
    """The frames of an append-only log, up to a torn last write or an undecodable frame."""
    data = path.read_bytes()
    pos = 0
    while pos + 4 <= len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        if pos + 4 + n > len(data):
            return  # a torn last write
        try:
            obj = cbor2.loads(data[pos + 4 : pos + 4 + n])
        except Exception:
            return
        yield obj
        pos += 4 + n


def _replace(path: Path, data: bytes, *, sync: bool = False) -> None:
    """Replace ``path`` by ``data`` at once (a reader sees the old or the new file, never a
    mix). ``sync``: also across a power loss -- the new bytes are fsynced before the rename and
    the rename is fsynced (the directory) before this returns."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        if sync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if sync:
        fsync_dir(path.parent)


class NodeStore:
    """The files of one node's ``data_dir``."""

    def __init__(self, data_dir: Path, name: str = "") -> None:
        self.dir = data_dir
        self.name = name

    def ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ sealed snapshot
    def read_sealed(self) -> bytes | None:
        path = self.dir / SEALED
        return path.read_bytes() if path.exists() else None

    def write_sealed(self, blob: bytes) -> None:
        _replace(self.dir / SEALED, blob)

    # ------------------------------------------------------------------ signed/
    def save_signed(self, height: int, header_hash: bytes, obj: dict[str, Any]) -> None:
        d = self.dir / SIGNED
        try:
            d.mkdir(exist_ok=True)
            _replace(d / f"{height:016d}-{header_hash.hex()}.cbor", cbor2.dumps(obj))
        except OSError as exc:
            log.warning("%s: signed batch %d not persisted: %s", self.name, height, exc)

    def load_signed(self, above: int) -> list[dict[str, Any]]:
        """The saved signed batches above height ``above`` (the others are deleted), by height."""
        self.forget_signed(above)
        d = self.dir / SIGNED
        out: list[dict[str, Any]] = []
        for f in sorted(d.glob("*.cbor")) if d.is_dir() else []:
            try:
                obj = cbor2.loads(f.read_bytes())
            except (OSError, ValueError, EOFError) as exc:  # a torn write (crash mid-save): useless
                log.warning("%s: unreadable signed batch %s dropped: %s", self.name, f.name, exc)
                f.unlink(missing_ok=True)
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def forget_signed(self, up_to: int) -> None:
        """Delete the saved batches at heights <= ``up_to`` (final: L1 holds the header)."""
        d = self.dir / SIGNED
        if not d.is_dir():
            return
        for f in d.glob("*.cbor"):
            try:
                if int(f.name.split("-", 1)[0]) <= up_to:
                    f.unlink(missing_ok=True)
            except (ValueError, OSError):
                continue

    # ------------------------------------------------------------------ pending.log
    def append_pending(self, envelopes: list[bytes]) -> None:
        """Append acknowledged envelopes, on disk (fsynced) when this returns. Raises OSError:
        the caller must then not acknowledge them (node/ingress.py). Blocking: run it in a
        thread (one writer at a time)."""
        append_frame(self.dir / PENDING, envelopes, sync=True)

    def read_pending(self) -> list[bytes] | None:
        """Every logged envelope (up to a torn last frame); None when there is no log."""
        path = self.dir / PENDING
        if not path.exists():
            return None
        return [e for fr in read_frames(path) if isinstance(fr, list) for e in fr if isinstance(e, bytes)]

    def compact_pending(self, keep: list[bytes]) -> None:
        """Rewrite the log to hold just ``keep`` (one frame), atomically and durably: a crash
        before the rename leaves the old log whole, after it the new one (raises OSError)."""
        _replace(self.dir / PENDING, frame(keep) if keep else b"", sync=True)

    # ------------------------------------------------------------------ receipts.log
    def append_receipts(self, frame: dict[str, Any]) -> None:
        """One accepted header's receipts (``ReceiptIndex.frame``)."""
        try:
            append_frame(self.dir / RECEIPTS, frame)
        except OSError as exc:
            log.warning("%s: receipts not persisted: %s", self.name, exc)

    def append_logs(self, frame: dict[str, Any]) -> None:
        """One accepted height's sealed log index (``LogIndex.frame``)."""
        try:
            append_frame(self.dir / LOGS, frame)
        except OSError as exc:
            log.warning("%s: log index not persisted: %s", self.name, exc)

    def load_logs(self) -> list[Any] | None:
        path = self.dir / LOGS
        if not path.exists():
            return None
        return [part for part in read_frames(path) if isinstance(part, dict)]

    def load_receipts(self) -> list[Any] | None:
        """The frames of ``receipts.log`` in order (``ReceiptIndex.add_frame`` replays them)."""
        path = self.dir / RECEIPTS
        if not path.exists():
            return None
        return [part for part in read_frames(path) if isinstance(part, dict)]
