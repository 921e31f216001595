"""The journal's SQLite connection: pragmas, schema, durable directory entries, and the one
transaction helper every store writes through.

Why WAL with ``synchronous=FULL`` by default: WAL+NORMAL survives ``kill -9`` but not a power cut,
and a box on a building site does lose power (DESIGN.md, Known traps; SQLite docs, "PRAGMA
synchronous" and "Write-Ahead Logging", https://sqlite.org/wal.html).

Why the parent directory is fsync'd after opening: SQLite fsyncs its files, not the directory
entries that name them.  Power cuts simulated with LazyFS lost nothing acknowledged with FULL, but
the directory entries (creating the journal's folder and files) were not covered (DESIGN.md,
"Verified on these machines"); a new ``-wal`` file whose name is lost takes its commits with it.
So every open fsyncs the directories it created and the one holding the database and its WAL.

Why one :func:`transaction` helper: every multi-statement write is ``BEGIN IMMEDIATE`` … ``COMMIT``
with a ROLLBACK on any error, and a ``sqlite3.Error`` becomes a :class:`JournalError` naming what
failed; written once, no store can forget the ROLLBACK (which would leave the connection inside a
transaction and make every later BEGIN fail).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from gateway.errors import JournalError
from gateway.journal._files import create_private, make_dirs

Synchronous = Literal["FULL", "NORMAL"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, measurement TEXT NOT NULL, tags TEXT NOT NULL,
    fields TEXT NOT NULL, kinds TEXT NOT NULL, UNIQUE (measurement, tags, fields, kinds));
CREATE TABLE IF NOT EXISTS samples (seq INTEGER PRIMARY KEY, series_id INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL, vals BLOB NOT NULL, texts TEXT);
CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts_ns);
CREATE TABLE IF NOT EXISTS cursors (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (id INTEGER PRIMARY KEY, sink TEXT NOT NULL, at_ns INTEGER NOT NULL,
    line TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mqtt_arrivals (digest BLOB PRIMARY KEY, at_ns INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mqtt_arrivals_at ON mqtt_arrivals (at_ns);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS payload_dead_letters (id INTEGER PRIMARY KEY, source TEXT NOT NULL,
    at_ns INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, reason TEXT NOT NULL);
"""


def connect(path: Path, synchronous: Synchronous, max_bytes: int) -> sqlite3.Connection:
    """Open (creating it and its folders if needed) the journal at ``path`` with its schema, without
    the damage checks of ``_damage`` (which :class:`Journal` runs).  Raises JournalError."""
    try:
        created = make_dirs(path.parent)
        db = open_raw(path, synchronous)
        try:
            set_wal_budget(db, wal_budget_pages(max_bytes))
            ensure_schema(db, path, created)
        except BaseException:
            db.close()
            raise
    except (sqlite3.Error, OSError) as exc:
        raise JournalError(f"cannot open the journal {path}: {exc}") from exc
    return db


def open_raw(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    """Open (creating it 0600 if needed) the database at ``path`` in WAL mode, without touching its
    schema: the damage checks (``_damage``) look at it first.  Runs on the journal thread; raises
    ``sqlite3.Error``."""
    create_private(path)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
    except BaseException:
        db.close()
        raise
    return db


def ensure_schema(db: sqlite3.Connection, path: Path, created_dirs: list[Path]) -> None:
    """Create what is missing of the schema and make the new names durable."""
    db.executescript(SCHEMA)  # also creates the -wal file, whose name must be durable too
    for directory in (path.parent, *created_dirs):
        fsync_dir(directory)


def wal_budget_pages(max_bytes: int, page_size: int = 4096) -> int:
    """Pages the WAL may hold before a checkpoint: SQLite's 1000 (~4 MB), less for a small cap so
    that the WAL, which the cap counts, stays about an eighth of it."""
    return max(16, min(1000, max_bytes // 8 // page_size))


def set_wal_budget(db: sqlite3.Connection, pages: int) -> int:
    """Checkpoint every ``pages`` pages and truncate the WAL back to that size; returns its bytes."""
    page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
    db.execute(f"PRAGMA wal_autocheckpoint={pages}")
    limit = pages * (page_size + 24) + 32
    db.execute(f"PRAGMA journal_size_limit={limit}")
    return limit


def fsync_dir(directory: Path) -> None:
    """Make the names in ``directory`` durable (a file's fsync does not cover its directory entry)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # file systems that cannot sync a directory
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, failure: str) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; on any error ROLLBACK, and a ``sqlite3.Error`` (COMMIT's
    included) becomes ``JournalError(f"{failure}: {error}")``.  Leaving normally means committed."""
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
        db.execute("COMMIT")
    except BaseException as exc:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the first error is the one to report
                db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise JournalError(f"{failure}: {exc}") from exc
        raise
