"""The enclave's sealed log index, per accepted height (issue 11 item 2; enclave/logs.py).

Untrusted glue. The proposer's enclave returns, with each executed batch, one blob holding the
batch's logs and who may read each, sealed under the batch epoch's state subkey; the blob rides
with the batch record (proposals, announces, ``batch`` answers) like the state diff, and every
node keeps the blob of each height accepted on L1 here (and in ``logs.log``). The node reads only
the blob's clear prefix (epoch, height, header hash) and hands the blobs of a queried range to
the enclave's ``logs`` ecall (``enclavenet_getLogs``); it can withhold or mix up blobs, which the
answer shows (``missing`` heights; each log names its header hash), never read or forge them.

With each blob the node keeps what the enclave needs to trust it (the blob alone is only the
proposer enclave's word): the accepted header, its QC (the L1 ``submitHeader`` signatures), the
batch data's meta item and the meta's Merkle proof (leaf 0) against ``header.data_commitment``.
The enclave uses the blob only when its plaintext gives the meta's ``logs_hash``, which every QC
signer computed by re-execution (enclave/batch.py, enclave/program.py ``_proven_log_index``).

A height whose record came without a blob (fetched from a DAP, or proposed by a node before this
version), or whose ``logs.log`` frame is of the earlier format (v1: no proof), has none: queries
report it ``missing``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..crypto.hashing import keccak256
from ..crypto.merkle import merkle_levels, merkle_siblings
from ..enclave.errors import EnclaveRefusal
from ..enclave.logs import MAX_QUERY_HEIGHTS, blob_prefix

MAX_HEIGHTS = 200_000  # heights whose blob is kept in memory (the oldest dropped)
MAX_BLOB = 16 * 1024 * 1024  # one height's blob
MAX_QUERY_BYTES = 48 * 1024 * 1024  # blobs one query hands the enclave (its frame is 64 MiB)


class LogQueryTooLarge(ValueError):
    pass


def meta_proof(items: list[bytes]) -> tuple[bytes, list[bytes]]:
    """(meta item, its Merkle siblings as leaf 0 of the data commitment) of batch data items."""
    return items[0], merkle_siblings(merkle_levels([keccak256(x) for x in items]), 0)


class LogIndex:
    def __init__(self) -> None:
        self._at: OrderedDict[int, dict[str, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._at)

    def add(self, height: int, header_hash: bytes, blob: bytes, header: bytes, signatures: list[bytes],
            meta: bytes, proof: list[bytes]) -> bool:
        """Keep ``blob`` for ``height`` (with the header, its QC, the meta item and its proof) if
        its clear prefix names that height and header and it is within bounds; the first blob for
        a height wins. Returns whether it was kept."""
        if height in self._at or not 0 < len(blob) <= MAX_BLOB:
            return False
        try:
            _, h, hh = blob_prefix(blob)
        except EnclaveRefusal:
            return False
        if h != height or hh != header_hash or keccak256(header) != header_hash:
            return False
        self._at[height] = {"blob": blob, "header": header, "signatures": list(signatures), "meta": meta,
                            "proof": list(proof)}
        while len(self._at) > MAX_HEIGHTS:
            self._at.popitem(last=False)
        return True

    @staticmethod
    def frame(height: int, header_hash: bytes, blob: bytes, header: bytes, signatures: list[bytes],
              meta: bytes, proof: list[bytes]) -> dict[str, Any]:
        return {"v": 2, "height": height, "hash": header_hash, "blob": blob, "header": header,
                "signatures": list(signatures), "meta": meta, "proof": list(proof)}

    def add_frame(self, frame: Any) -> None:
        """A ``logs.log`` frame; one of the earlier format (v1, no proof) is skipped (missing)."""
        if isinstance(frame, dict) and frame.get("v") == 2:
            try:
                self.add(int(frame["height"]), bytes(frame["hash"]), bytes(frame["blob"]), bytes(frame["header"]),
                         [bytes(s) for s in frame["signatures"]], bytes(frame["meta"]),
                         [bytes(p) for p in frame["proof"]])
            except (KeyError, TypeError, ValueError):
                pass

    def blobs(self, lo: int, hi: int) -> list[dict[str, Any]]:
        """The blobs (with their proofs) of heights ``lo..hi`` held here; LogQueryTooLarge past the bounds."""
        if hi < lo:
            raise LogQueryTooLarge(f"toBlock {hi} is below fromBlock {lo}")
        if hi - lo + 1 > MAX_QUERY_HEIGHTS:
            raise LogQueryTooLarge(f"a log query spans at most {MAX_QUERY_HEIGHTS} heights, not {hi - lo + 1}: ask in smaller ranges")
        out: list[dict[str, Any]] = []
        size = 0
        for h in range(lo, hi + 1):
            b = self._at.get(h)
            if b is not None:
                size += len(b["blob"]) + len(b["meta"]) + 2048
                if size > MAX_QUERY_BYTES:
                    raise LogQueryTooLarge(
                        f"heights {lo}..{hi} hold more than {MAX_QUERY_BYTES // (1 << 20)} MiB of logs: ask in smaller ranges")
                out.append(b)
        return out
