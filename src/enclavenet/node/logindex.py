"""The enclave's sealed log index, per accepted height (issue 11 item 2; enclave/logs.py).

Untrusted glue. The proposer's enclave returns, with each executed batch, one blob holding the
batch's logs and who may read each, sealed under the batch epoch's state subkey; the blob rides
with the batch record (proposals, announces, ``batch`` answers) like the state diff, and every
node keeps the blob of each height accepted on L1 here (and in ``logs.log``). The node reads only
the blob's clear prefix (epoch, height, header hash) and hands the blobs of a queried range to
the enclave's ``logs`` ecall (``enclavenet_getLogs``); it can withhold or mix up blobs, which the
answer shows (``missing`` heights; each log names its header hash), never read or forge them.

A height whose record came without a blob (fetched from a DAP, or proposed by a node before this
version) has none: queries report it ``missing``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..enclave.errors import EnclaveRefusal
from ..enclave.logs import MAX_QUERY_HEIGHTS, blob_prefix

MAX_HEIGHTS = 200_000  # heights whose blob is kept in memory (the oldest dropped)
MAX_BLOB = 16 * 1024 * 1024  # one height's blob
MAX_QUERY_BYTES = 48 * 1024 * 1024  # blobs one query hands the enclave (its frame is 64 MiB)


class LogQueryTooLarge(ValueError):
    pass


class LogIndex:
    def __init__(self) -> None:
        self._at: OrderedDict[int, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._at)

    def add(self, height: int, header_hash: bytes, blob: bytes) -> bool:
        """Keep ``blob`` for ``height`` if its clear prefix names that height and header and it is
        within bounds; the first blob for a height wins. Returns whether it was kept."""
        if height in self._at or not 0 < len(blob) <= MAX_BLOB:
            return False
        try:
            _, h, hh = blob_prefix(blob)
        except EnclaveRefusal:
            return False
        if h != height or hh != header_hash:
            return False
        self._at[height] = blob
        while len(self._at) > MAX_HEIGHTS:
            self._at.popitem(last=False)
        return True

    @staticmethod
    def frame(height: int, header_hash: bytes, blob: bytes) -> dict[str, Any]:
        return {"v": 1, "height": height, "hash": header_hash, "blob": blob}

    def add_frame(self, frame: Any) -> None:
        if isinstance(frame, dict) and frame.get("v") == 1:
            try:
                self.add(int(frame["height"]), bytes(frame["hash"]), bytes(frame["blob"]))
            except (KeyError, TypeError, ValueError):
                pass

    def blobs(self, lo: int, hi: int) -> list[bytes]:
        """The blobs of heights ``lo..hi`` held here; LogQueryTooLarge past the bounds."""
        if hi < lo:
            raise LogQueryTooLarge(f"toBlock {hi} is below fromBlock {lo}")
        if hi - lo + 1 > MAX_QUERY_HEIGHTS:
            raise LogQueryTooLarge(f"a log query spans at most {MAX_QUERY_HEIGHTS} heights, not {hi - lo + 1}: ask in smaller ranges")
        out: list[bytes] = []
        size = 0
        for h in range(lo, hi + 1):
            b = self._at.get(h)
            if b is not None:
                size += len(b)
                if size > MAX_QUERY_BYTES:
                    raise LogQueryTooLarge(
                        f"heights {lo}..{hi} hold more than {MAX_QUERY_BYTES // (1 << 20)} MiB of logs: ask in smaller ranges")
                out.append(b)
        return out
