"""Durable storage of a DAP: SQLite (embedded, the default) or PostgreSQL (a real server).

    store = open_store("sqlite:///var/dap/dap.db")        # or a bare path, or ":memory:"
    store = open_store("postgresql://dap@127.0.0.1:5433/dap")
    store.put(StoredBatch(header, batch_data), snapshot=None, leaves=[])   # one transaction
    store.batch(data_commitment) -> StoredBatch | None

Five tables, the same on both backends:

    batches   (data_commitment PK, header_hash UNIQUE, height, header, data)
    snapshot_copies ((header_hash, keccak(blob)) PK, seq, height, epoch, blob)
                                                             -- sealed enclave snapshots: up to
                                                                MAX_SNAPSHOT_COPIES per header, first
                                                                come, never replaced
    leaves    (address, header_hash, height, sealed)  PK (address, header_hash)
                                                             -- escape leaves, each sealed to its user
    leafdiff_links (height, root, base, base_root)  PK (height, root, base)
    leafdiff_rows  (height, root, base, key, leaf)  PK (height, root, base, key)
                                                             -- the balances tree's salted leaf hashes
                                                                changed from the tree ``base_root`` at
                                                                ``base`` to the tree ``root`` at ``height``
                                                                (leaf b"" = removed); the service stores
                                                                one only once it checked that it gives
                                                                ``root`` (docs/SECURITY.md)

``put`` returns only once the transaction is committed (SQLite: WAL with ``synchronous=FULL``;
PostgreSQL: a plain COMMIT, which waits for the WAL flush): a receipt is signed after that.
Writes are idempotent (the same data again is a no-op). The store trusts nothing it is given
beyond what :mod:`enclavenet.dap.service` checked; readers check what they read
(:mod:`enclavenet.dap.client`).
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..crypto.hashing import ZERO32, address_bytes, keccak256, to_checksum
from ..crypto.header import Header

MAX_SNAPSHOT_COPIES = 4  # distinct snapshot blobs kept per header (a later upload never replaces one)
#: leaf-diff links kept per (height, tree root) from a base above 0 (one from base 0 comes on top):
#: every stored link was checked to give its root, so any one of them serves the tree
MAX_LEAF_DIFF_LINKS = 4


class StoreError(RuntimeError):
    """The storage backend failed or was given something it cannot hold."""


@dataclass(frozen=True)
class StoredBatch:
    header: Header
    batch_data: bytes = field(repr=False)

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def header_hash(self) -> bytes:
        return self.header.hash()

    @property
    def data_commitment(self) -> bytes:
        return self.header.data_commitment


@dataclass(frozen=True)
class Snapshot:
    """A sealed enclave snapshot (the ``shared`` blob of the ``snapshot`` ecall) after a header."""

    height: int
    header_hash: bytes
    epoch: int
    blob: bytes = field(repr=False)


@dataclass(frozen=True)
class SealedLeaf:
    """A user's escape leaf at a header, sealed to that user (crypto.escape.seal_escape_leaf)."""

    address: str
    height: int
    header_hash: bytes
    sealed: bytes = field(repr=False)


@dataclass(frozen=True)
class HeaderRef:
    height: int
    header_hash: bytes
    data_commitment: bytes


class Store(ABC):
    """A DAP's storage. Thread-safe: calls are serialised on one connection."""

    backend: str = "?"

    def __init__(self) -> None:
        self._lock = threading.Lock()

    # -- writes ----------------------------------------------------------------------------
    def put(self, batch: StoredBatch, snapshot: Snapshot | None = None, leaves: Sequence[SealedLeaf] = ()) -> None:
        """Store a header's batch data (and, if given, its snapshot and escape leaves) atomically."""
        with self._lock:
            self._put(batch, snapshot, list(leaves))

    def put_snapshot(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._put(None, snapshot, [])

    def put_leaves(self, leaves: Sequence[SealedLeaf]) -> None:
        with self._lock:
            self._put(None, None, list(leaves))

    def put_leaf_diff(self, height: int, base: int, diff: Sequence[tuple[bytes, bytes]], *,
                      root: bytes, base_root: bytes = ZERO32) -> None:
        """The balances tree's leaf hashes that changed from the tree ``base_root`` at header
        ``base`` to the tree ``root`` at header ``height`` (``base`` 0: from the empty tree, i.e.
        every leaf); a leaf of b"" removes the key. The caller checked that the fold gives
        ``root`` (:meth:`DapService.h_put_leafdiff`); a second diff for the same link is a no-op,
        and so is one from a base above 0 when MAX_LEAF_DIFF_LINKS such links lead to ``root``."""
        if not 0 <= base < height:
            raise StoreError(f"a leaf diff goes from a lower height to a higher one (got {base} -> {height})")
        if base == 0 and base_root != ZERO32:
            raise StoreError("a leaf diff from height 0 starts from the empty tree")
        rows = [(height, bytes(root), base, bytes(k), bytes(v)) for k, v in diff]
        with self._lock:
            self._write_diff((height, bytes(root), base, bytes(base_root)), rows)

    def leaf_links(self, height: int, root: bytes) -> list[int]:
        """The bases of the stored diffs leading to the tree ``root`` at ``height``."""
        return [int(r[0]) for r in self._query("SELECT base FROM leafdiff_links WHERE height = {p} AND root = {p}",
                                               (height, root))]

    def leaf_roots(self, height: int) -> list[bytes]:
        """The tree roots at ``height`` that have a stored diff, oldest first."""
        rows = self._query("SELECT root, MIN(seq) AS s FROM leafdiff_links WHERE height = {p} GROUP BY root "
                           "ORDER BY s", (height,))
        return [bytes(r[0]) for r in rows]

    def leaf_set(self, height: int, root: bytes | None = None) -> dict[bytes, bytes] | None:
        """Every non-empty leaf hash of the balances tree ``root`` at ``height`` (key -> leaf
        hash): the fold of the shortest chain of stored diffs from the empty tree up to it; None
        without one. ``root`` None: the oldest root stored at ``height``."""
        if root is None:
            roots = self.leaf_roots(height)
            if not roots:
                return None
            root = roots[0]
        links = self._query("SELECT height, root, base, base_root FROM leafdiff_links WHERE height <= {p}", (height,))
        bases: dict[tuple[int, bytes], list[tuple[int, bytes]]] = {}
        for h, r, b, br in links:
            bases.setdefault((int(h), bytes(r)), []).append((int(b), bytes(br)))
        # shortest chain (height, root) -> ... -> (0, empty tree), breadth-first over the stored links
        start, empty = (height, bytes(root)), (0, ZERO32)
        prev: dict[tuple[int, bytes], tuple[int, bytes]] = {}
        frontier, seen = [start], {start}
        while frontier and empty not in seen:
            nxt = []
            for node in frontier:
                for b in sorted(bases.get(node, [])):
                    if b not in seen:
                        seen.add(b)
                        prev[b] = node
                        nxt.append(b)
            frontier = nxt
        if empty not in seen:
            return None
        chain: list[tuple[int, bytes, int]] = []  # (height, root, base), oldest first
        node = empty
        while node != start:
            up = prev[node]
            chain.append((up[0], up[1], node[0]))
            node = up
        leaves: dict[bytes, bytes] = {}
        for h, r, b in chain:
            for k, v in self._query("SELECT key, leaf FROM leafdiff_rows WHERE height = {p} AND root = {p} "
                                    "AND base = {p}", (h, r, b)):
                if v:
                    leaves[bytes(k)] = bytes(v)
                else:
                    leaves.pop(bytes(k), None)
        return leaves

    # -- reads -----------------------------------------------------------------------------
    def batch(self, data_commitment: bytes) -> StoredBatch | None:
        rows = self._query("SELECT header, data FROM batches WHERE data_commitment = {p}", (data_commitment,))
        return _batch(rows[0]) if rows else None

    def batch_by_hash(self, header_hash: bytes) -> StoredBatch | None:
        rows = self._query("SELECT header, data FROM batches WHERE header_hash = {p}", (header_hash,))
        return _batch(rows[0]) if rows else None

    def batches_at(self, height: int) -> list[StoredBatch]:
        rows = self._query("SELECT header, data FROM batches WHERE height = {p} ORDER BY header_hash", (height,))
        return [_batch(r) for r in rows]

    def headers(self, from_height: int, to_height: int, limit: int = 1000) -> list[HeaderRef]:
        """The headers stored at heights ``from_height..to_height`` (several per height when a
        race left losers), at most ``limit``."""
        rows = self._query(
            "SELECT height, header_hash, data_commitment FROM batches WHERE height >= {p} AND height <= {p} "
            "ORDER BY height, header_hash LIMIT {p}", (from_height, to_height, limit))
        return [HeaderRef(int(h), bytes(hh), bytes(dc)) for h, hh, dc in rows]

    def latest_snapshot(self, max_height: int | None = None, copy: int = 0) -> Snapshot | None:
        """The newest header's snapshot at or below ``max_height``: its ``copy``-th stored blob
        (several uploaders may give different blobs for one header; none replaces another, and
        the reader's enclave refuses any that is not that header's state)."""
        rows = self._query(
            "SELECT height, header_hash FROM snapshot_copies WHERE height <= {p} "
            "ORDER BY height DESC, header_hash LIMIT 1", (max_height if max_height is not None else 1 << 62,))
        if not rows:
            return None
        copies = self.snapshot_copies(bytes(rows[0][1]))
        return copies[copy] if copy < len(copies) else None

    def snapshot(self, header_hash: bytes) -> Snapshot | None:
        copies = self.snapshot_copies(header_hash)
        return copies[0] if copies else None

    def snapshot_copies(self, header_hash: bytes) -> list[Snapshot]:
        """Every stored blob for ``header_hash``, oldest first (at most MAX_SNAPSHOT_COPIES)."""
        rows = self._query("SELECT height, header_hash, epoch, blob FROM snapshot_copies WHERE header_hash = {p} "
                           "ORDER BY seq", (header_hash,))
        return [Snapshot(int(h), bytes(hh), int(e), bytes(b)) for h, hh, e, b in rows]

    def leaf(self, address: str, max_height: int | None = None) -> SealedLeaf | None:
        """The newest sealed leaf of ``address`` at or below ``max_height``."""
        rows = self._query(
            "SELECT height, header_hash, sealed FROM leaves WHERE address = {p} AND height <= {p} "
            "ORDER BY height DESC, header_hash LIMIT 1",
            (address_bytes(address), max_height if max_height is not None else 1 << 62))
        if not rows:
            return None
        h, hh, sealed = rows[0]
        return SealedLeaf(to_checksum(address), int(h), bytes(hh), bytes(sealed))

    def summary(self) -> dict[str, int]:
        rows = self._query("SELECT COUNT(*), COALESCE(MIN(height), 0), COALESCE(MAX(height), 0) FROM batches", ())
        n, lo, hi = rows[0]
        (snaps,) = self._query("SELECT COUNT(*) FROM snapshot_copies", ())[0]
        (leaves,) = self._query("SELECT COUNT(*) FROM leaves", ())[0]
        return {"batches": int(n), "min_height": int(lo), "max_height": int(hi),
                "snapshots": int(snaps), "leaves": int(leaves)}

    # -- backend -----------------------------------------------------------------------------
    @abstractmethod
    def _put(self, batch: StoredBatch | None, snapshot: Snapshot | None, leaves: list[SealedLeaf]) -> None: ...

    @abstractmethod
    def _write_diff(self, meta: tuple[int, bytes, int, bytes], rows: list[tuple[int, bytes, int, bytes, bytes]]) -> None: ...

    @abstractmethod
    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def new_leaf_link(bases: list[int], base: int) -> bool:
    """Whether a diff from ``base`` is stored next to the links from ``bases`` (same tree)."""
    return base not in bases and (base == 0 or sum(1 for b in bases if b) < MAX_LEAF_DIFF_LINKS)


def _batch(row: tuple[Any, ...]) -> StoredBatch:
    return StoredBatch(Header.decode(bytes(row[0])), bytes(row[1]))


def _rows(batch: StoredBatch | None, snapshot: Snapshot | None, leaves: list[SealedLeaf]) -> tuple[
    tuple[Any, ...] | None, tuple[Any, ...] | None, list[tuple[Any, ...]]
]:
    b = None if batch is None else (
        batch.data_commitment, batch.header_hash, batch.height, batch.header.encode(), batch.batch_data)
    s = None if snapshot is None else (
        snapshot.header_hash, keccak256(snapshot.blob), snapshot.height, snapshot.epoch, snapshot.blob)
    ls = [(address_bytes(x.address), x.header_hash, x.height, x.sealed) for x in leaves]
    return b, s, ls


# ---------------------------------------------------------------------------------- SQLite

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    data_commitment BLOB PRIMARY KEY, header_hash BLOB NOT NULL UNIQUE, height INTEGER NOT NULL,
    header BLOB NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS batches_height ON batches (height);
CREATE TABLE IF NOT EXISTS snapshot_copies (
    header_hash BLOB NOT NULL, digest BLOB NOT NULL, seq INTEGER NOT NULL, height INTEGER NOT NULL,
    epoch INTEGER NOT NULL, blob BLOB NOT NULL, PRIMARY KEY (header_hash, digest));
CREATE INDEX IF NOT EXISTS snapshot_copies_height ON snapshot_copies (height);
CREATE TABLE IF NOT EXISTS leaves (
    address BLOB NOT NULL, header_hash BLOB NOT NULL, height INTEGER NOT NULL, sealed BLOB NOT NULL,
    PRIMARY KEY (address, header_hash));
CREATE INDEX IF NOT EXISTS leaves_address_height ON leaves (address, height);
CREATE TABLE IF NOT EXISTS leafdiff_links (
    height INTEGER NOT NULL, root BLOB NOT NULL, base INTEGER NOT NULL, base_root BLOB NOT NULL,
    seq INTEGER NOT NULL, PRIMARY KEY (height, root, base));
CREATE TABLE IF NOT EXISTS leafdiff_rows (
    height INTEGER NOT NULL, root BLOB NOT NULL, base INTEGER NOT NULL, key BLOB NOT NULL, leaf BLOB NOT NULL,
    PRIMARY KEY (height, root, base, key));
"""


class SQLiteStore(Store):
    backend = "sqlite"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SQLITE_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite store at {self.path}: {exc}") from None

    def _put(self, batch: StoredBatch | None, snapshot: Snapshot | None, leaves: list[SealedLeaf]) -> None:
        b, s, ls = _rows(batch, snapshot, leaves)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if b is not None:
                    self._db.execute("INSERT OR IGNORE INTO batches VALUES (?, ?, ?, ?, ?)", b)
                if s is not None:  # never replaced: up to MAX_SNAPSHOT_COPIES distinct blobs per header
                    (n,) = self._db.execute("SELECT COUNT(*) FROM snapshot_copies WHERE header_hash = ?", s[:1]).fetchone()
                    if n < MAX_SNAPSHOT_COPIES:
                        self._db.execute("INSERT OR IGNORE INTO snapshot_copies VALUES (?, ?, ?, ?, ?, ?)",
                                         (s[0], s[1], n, *s[2:]))
                if ls:
                    self._db.executemany("INSERT OR REPLACE INTO leaves VALUES (?, ?, ?, ?)", ls)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite write failed: {exc}") from None

    def _write_diff(self, meta: tuple[int, bytes, int, bytes], rows: list[tuple[int, bytes, int, bytes, bytes]]) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                bases = [b for (b,) in self._db.execute("SELECT base FROM leafdiff_links WHERE height = ? AND root = ?",
                                                         meta[:2]).fetchall()]
                if new_leaf_link(bases, meta[2]):
                    self._db.executemany("INSERT OR IGNORE INTO leafdiff_rows VALUES (?, ?, ?, ?, ?)", rows)
                    (seq,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM leafdiff_links").fetchone()
                    self._db.execute("INSERT INTO leafdiff_links VALUES (?, ?, ?, ?, ?)", (*meta, seq))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite write failed: {exc}") from None

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return list(self._db.execute(sql.replace("{p}", "?"), params).fetchall())
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite read failed: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()


# ------------------------------------------------------------------------------ PostgreSQL

_PG_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS batches (
        data_commitment BYTEA PRIMARY KEY, header_hash BYTEA NOT NULL UNIQUE, height BIGINT NOT NULL,
        header BYTEA NOT NULL, data BYTEA NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS batches_height ON batches (height)",
    """CREATE TABLE IF NOT EXISTS snapshot_copies (
        header_hash BYTEA NOT NULL, digest BYTEA NOT NULL, seq BIGINT NOT NULL, height BIGINT NOT NULL,
        epoch BIGINT NOT NULL, blob BYTEA NOT NULL, PRIMARY KEY (header_hash, digest))""",
    "CREATE INDEX IF NOT EXISTS snapshot_copies_height ON snapshot_copies (height)",
    """CREATE TABLE IF NOT EXISTS leaves (
        address BYTEA NOT NULL, header_hash BYTEA NOT NULL, height BIGINT NOT NULL, sealed BYTEA NOT NULL,
        PRIMARY KEY (address, header_hash))""",
    "CREATE INDEX IF NOT EXISTS leaves_address_height ON leaves (address, height)",
    """CREATE TABLE IF NOT EXISTS leafdiff_links (
        height BIGINT NOT NULL, root BYTEA NOT NULL, base BIGINT NOT NULL, base_root BYTEA NOT NULL,
        seq BIGSERIAL, PRIMARY KEY (height, root, base))""",
    """CREATE TABLE IF NOT EXISTS leafdiff_rows (
        height BIGINT NOT NULL, root BYTEA NOT NULL, base BIGINT NOT NULL, key BYTEA NOT NULL, leaf BYTEA NOT NULL,
        PRIMARY KEY (height, root, base, key))""",
    # the data is encrypted: TOAST compression would only burn CPU
    "ALTER TABLE batches ALTER COLUMN data SET STORAGE EXTERNAL",
    "ALTER TABLE snapshot_copies ALTER COLUMN blob SET STORAGE EXTERNAL",
]


class PostgresStore(Store):
    backend = "postgresql"

    def __init__(self, dsn: str) -> None:
        super().__init__()
        import psycopg

        self._psycopg = psycopg
        self.dsn = dsn
        try:
            self._db = psycopg.connect(dsn, autocommit=False, connect_timeout=10)
            with self._db.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(7365)")  # two DAPs creating the schema at once
                for stmt in _PG_SCHEMA:
                    cur.execute(stmt)
            self._db.commit()
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the PostgreSQL store ({_redact(dsn)}): {_pg_reason(exc)}") from None

    def _put(self, batch: StoredBatch | None, snapshot: Snapshot | None, leaves: list[SealedLeaf]) -> None:
        b, s, ls = _rows(batch, snapshot, leaves)
        try:
            with self._db.cursor() as cur:
                if b is not None:
                    cur.execute("INSERT INTO batches VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", b)
                if s is not None:  # never replaced: up to MAX_SNAPSHOT_COPIES distinct blobs per header
                    cur.execute("SELECT pg_advisory_xact_lock(7366)")
                    cur.execute("SELECT COUNT(*) FROM snapshot_copies WHERE header_hash = %s", s[:1])
                    row = cur.fetchone()
                    n = int(row[0]) if row else 0
                    if n < MAX_SNAPSHOT_COPIES:
                        cur.execute("INSERT INTO snapshot_copies VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                                    (s[0], s[1], n, *s[2:]))
                if ls:
                    cur.executemany(
                        "INSERT INTO leaves VALUES (%s, %s, %s, %s) ON CONFLICT (address, header_hash) "
                        "DO UPDATE SET sealed = EXCLUDED.sealed", ls)
            self._db.commit()
        except self._psycopg.Error as exc:
            self._db.rollback()
            raise StoreError(f"PostgreSQL write failed: {_pg_reason(exc)}") from None

    def _write_diff(self, meta: tuple[int, bytes, int, bytes], rows: list[tuple[int, bytes, int, bytes, bytes]]) -> None:
        try:
            with self._db.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(7367)")  # the count below, then the insert
                cur.execute("SELECT base FROM leafdiff_links WHERE height = %s AND root = %s", meta[:2])
                bases = [int(r[0]) for r in cur.fetchall()]
                if new_leaf_link(bases, meta[2]):
                    cur.execute("INSERT INTO leafdiff_links (height, root, base, base_root) VALUES (%s, %s, %s, %s) "
                                "ON CONFLICT DO NOTHING", meta)
                    cur.executemany("INSERT INTO leafdiff_rows VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", rows)
            self._db.commit()
        except self._psycopg.Error as exc:
            self._db.rollback()
            raise StoreError(f"PostgreSQL write failed: {_pg_reason(exc)}") from None

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                with self._db.cursor() as cur:
                    cur.execute(sql.replace("{p}", "%s"), params)
                    rows = list(cur.fetchall())
                self._db.commit()
                return rows
            except self._psycopg.Error as exc:
                self._db.rollback()
                raise StoreError(f"PostgreSQL read failed: {_pg_reason(exc)}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _pg_reason(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _redact(dsn: str) -> str:
    """A DSN without its password, for messages."""
    if "://" in dsn and "@" in dsn:
        scheme, rest = dsn.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}@{host}"
    return " ".join(p for p in dsn.split() if not p.startswith("password="))


def open_store(spec: str) -> Store:
    """``sqlite:///path`` / a bare path / ``:memory:`` -> SQLite; ``postgresql://...`` (or
    ``postgres://``, or a libpq ``key=value`` string with ``dbname=``) -> PostgreSQL."""
    if spec.startswith(("postgresql://", "postgres://")) or "dbname=" in spec:
        return PostgresStore(spec)
    if spec.startswith("sqlite://"):
        spec = spec[len("sqlite://"):]  # sqlite:///abs/path -> /abs/path
    if not spec:
        raise StoreError("empty store spec: give sqlite:///path, a path, :memory: or postgresql://...")
    return SQLiteStore(spec)


__all__ = [
    "MAX_LEAF_DIFF_LINKS",
    "MAX_SNAPSHOT_COPIES",
    "HeaderRef",
    "PostgresStore",
    "SQLiteStore",
    "SealedLeaf",
    "Snapshot",
    "Store",
    "StoreError",
    "StoredBatch",
    "open_store",
]
