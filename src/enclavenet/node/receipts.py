"""The receipts a node serves: per accepted header, its receipt entries as they are, indexed by id.

Untrusted glue: every receipt is sealed by the committee (only its sender opens it) and carries a
Merkle proof against the header's receipts root that the client checks on L1 (issue 14 M6), so
nothing here needs to be believed.

Kept compact (issue 9): an accepted header costs one dict insert per transaction and one log
frame (``receipts.log``: ``{"v": 2, "base", "ids", "entries"}``); the JSON-RPC receipt, its hex
and its Merkle proof are built when asked for (the tree of the last ``TREES`` heights asked about
is kept). Before, every node built 2,000 hex proofs and dicts per header and wrote them all out.

Rules: the first inclusion of an id wins -- except that a sealed receipt replaces an error entry
(a copy of an inbox call submitted by another account is refused before its sender's own
submission runs, issue 14 H1, and the sender waits for the real receipt).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Any

from ..crypto.hashing import keccak256
from ..crypto.merkle import merkle_levels, merkle_siblings
from ..enclave.batch import ERROR_CODES, ERROR_ENTRY_PREFIX

TREES = 16  # receipt trees kept for the heights asked about last
FRAME_VERSION = 2


_SEQ = itertools.count()


class _Height:
    __slots__ = ("base", "count", "entries", "seq")

    def __init__(self, base: dict[str, Any], entries: list[bytes]) -> None:
        self.base = base
        self.entries = entries
        self.count = hex(len(entries))
        self.seq = next(_SEQ)  # the tree cache's key (never reused, unlike id())


class ReceiptIndex:
    """receipt id -> the receipt of the accepted header that included it (JSON-RPC form on demand)."""

    def __init__(self) -> None:
        self._at: dict[bytes, tuple[_Height, int]] = {}
        self._legacy: dict[bytes, dict[str, Any]] = {}  # receipts.log frames written before v2
        self._trees: OrderedDict[int, list[list[bytes]]] = OrderedDict()

    def __contains__(self, rid: object) -> bool:
        return rid in self._at or rid in self._legacy

    def __len__(self) -> int:
        return len(self._at) + len(self._legacy)

    def _is_error(self, rid: bytes) -> bool:
        x = self._at.get(rid)
        if x is not None:
            return x[0].entries[x[1]].startswith(ERROR_ENTRY_PREFIX)
        return "error" in self._legacy.get(rid, {})

    def add(self, base: dict[str, Any], ids: list[bytes], entries: list[bytes]) -> int:
        """An accepted header's receipts (``base``: height, headerHash, l1TxHash, l1BlockNumber;
        ``ids[i]`` names ``entries[i]``). Returns how many ids got a receipt here."""
        h = _Height(base, entries)
        fresh = 0
        for i, (rid, entry) in enumerate(zip(ids, entries, strict=False)):
            if rid in self and (not self._is_error(rid) or entry.startswith(ERROR_ENTRY_PREFIX)):
                continue
            self._at[rid] = (h, i)
            self._legacy.pop(rid, None)
            fresh += 1
        return fresh

    def add_frame(self, frame: Any) -> None:
        """A frame read back from ``receipts.log`` (v2, or an older ``{id: receipt}`` map)."""
        if isinstance(frame, dict) and frame.get("v") == FRAME_VERSION:
            self.add(dict(frame["base"]), list(frame["ids"]), list(frame["entries"]))
        elif isinstance(frame, dict):
            for rid, r in frame.items():
                if isinstance(rid, bytes) and isinstance(r, dict):
                    self._legacy[rid] = r
                    self._at.pop(rid, None)

    @staticmethod
    def frame(base: dict[str, Any], ids: list[bytes], entries: list[bytes]) -> dict[str, Any]:
        return {"v": FRAME_VERSION, "base": base, "ids": ids, "entries": entries}

    def height_of(self, rid: bytes) -> str | None:
        x = self._at.get(rid)
        if x is not None:
            return str(x[0].base["height"])
        r = self._legacy.get(rid)
        return None if r is None else str(r["height"])

    def get(self, rid: bytes) -> dict[str, Any] | None:
        x = self._at.get(rid)
        if x is None:
            return self._legacy.get(rid)
        h, i = x
        entry = h.entries[i]
        r = dict(h.base)
        r["receiptId"] = "0x" + rid.hex()
        r["encryptedReceipt"] = "0x" + entry.hex()
        r["receiptIndex"] = hex(i)
        r["receiptCount"] = h.count
        r["receiptProof"] = ["0x" + s.hex() for s in merkle_siblings(self._tree(h), i)]
        if entry.startswith(ERROR_ENTRY_PREFIX):
            code = entry[len(ERROR_ENTRY_PREFIX) :].decode(errors="replace")
            r["error"] = f"{code}: {ERROR_CODES.get(code, 'unknown error code')}"
        return r

    def _tree(self, h: _Height) -> list[list[bytes]]:
        key = h.seq
        t = self._trees.get(key)
        if t is None:
            t = merkle_levels([keccak256(e) for e in h.entries])
            self._trees[key] = t
            if len(self._trees) > TREES:
                self._trees.popitem(last=False)
        else:
            self._trees.move_to_end(key)
        return t
