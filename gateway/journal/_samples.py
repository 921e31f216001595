"""The samples table: one row per poll, values packed in a float64 blob, and the size cap.

Why one row per poll: measured on the target machines at 5–7M fields/s, against ~0.85M fields/s for
one row per field (DESIGN.md, Known traps).  The commit path is hot: a group of polls becomes rows in
one list comprehension and one ``executemany``; nothing else here runs per row.

Sequence numbers are assigned here, on the journal thread, contiguous; the size cap deletes the
oldest rows and retention only rows below every cursor, so holes are at the front or below every
cursor, and a sink's backlog is ``head - max(cursor, first - 1)``.

Why the cap drops the oldest rows, counted and logged: the journal must be bounded (DESIGN.md,
Guarantees) and, once full, the newest readings are worth more than the oldest; dropping undelivered
data is never silent.  The cap counts what the journal takes on disk: the pages in use (samples,
dead letters, MQTT arrival records, the catalogue) plus the WAL, whose budget (``_db.wal_budget_pages``)
is reserved inside the cap.  A drop deletes at most ``DROP_BATCH`` rows, so that one commit never waits
long on it; the next commit drops more if still over.  Delivered rows older than the retention are
deleted in the background (``_retention``).  Deleting rows keeps their seqs used: the highest seq
ever committed is stored (``meta.head_floor``) with every delete, so an emptied table never reuses one.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from gateway.errors import JournalError
from gateway.journal._db import transaction
from gateway.series import Sample

DROP_BATCH = 10_000


def store_head_floor(db: sqlite3.Connection, head: int) -> None:
    """Inside a deleting transaction: the highest seq committed, so that it is never reused."""
    db.execute("INSERT INTO meta VALUES ('head_floor', ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
               (head,))


class SampleStore:
    def __init__(self, max_bytes: int, log: logging.Logger) -> None:
        self.max_bytes = max_bytes  # the cap in force (``_space``: never more than the disk can hold)
        self.log = log
        self.wal_path: Path | None = None
        self.wal_budget = 0  # bytes the WAL may reach before a checkpoint truncates it
        self.used = 0  # bytes of the database's pages in use
        self.head = 0  # last committed seq
        self.first = 1  # first seq still on disk
        self.rows = 0
        self.bytes = 0
        self.committed = 0
        self.commits = 0
        self.dropped_rows = 0
        self.dropped_undelivered = 0

    def load(self, db: sqlite3.Connection, acked_upto: int) -> None:
        """Find the stored rows; ``acked_upto`` (highest sink cursor) keeps seqs from being reused
        after the cap emptied the table.  Runs on the journal thread, like every method taking ``db``."""
        lo, hi, n = db.execute("SELECT min(seq), max(seq), count(*) FROM samples").fetchone()
        floor = db.execute("SELECT value FROM meta WHERE key = 'head_floor'").fetchone()
        self.rows = n
        self.head = max(hi or 0, acked_upto, floor[0] if floor else 0)
        self.first = lo if lo is not None else self.head + 1
        self.measure(db)

    def commit(self, db: sqlite3.Connection, samples: Sequence[Sample],
               also: Callable[[sqlite3.Connection], None] | None = None) -> int:
        """Insert one group in one transaction (with ``also``'s writes); returns the first seq.

        Raises JournalError when nothing was committed.  Once COMMIT has returned only arithmetic
        follows, so committed rows always get their seqs."""
        first = self.head + 1
        f64 = np.float64
        rows = [(first + i, s.series_id, s.ts_ns, np.ascontiguousarray(s.values, dtype=f64).tobytes(),
                 None if s.texts is None else json.dumps(s.texts)) for i, s in enumerate(samples)]
        with transaction(db, f"commit of {len(rows)} polls failed"):
            db.executemany("INSERT INTO samples VALUES (?,?,?,?,?)", rows)
            if also is not None:
                also(db)
        if self.rows == 0:
            self.first = first
        self.head = first + len(rows) - 1
        self.rows += len(rows)
        self.committed += len(rows)
        self.commits += 1
        return first

    def next_ts(self, db: sqlite3.Connection, after_seq: int) -> int | None:
        """Timestamp of the first row after ``after_seq`` (a sink's oldest unsent), None if none."""
        row = db.execute("SELECT ts_ns FROM samples WHERE seq > ? ORDER BY seq LIMIT 1", (after_seq,)).fetchone()
        return None if row is None else int(row[0])

    def next_seq(self, db: sqlite3.Connection, after_seq: int) -> int:
        """The first seq on disk after ``after_seq`` (head + 1 if none)."""
        row = db.execute("SELECT min(seq) FROM samples WHERE seq > ?", (after_seq,)).fetchone()
        return self.head + 1 if row[0] is None else int(row[0])

    def measure(self, db: sqlite3.Connection) -> bool:
        """Update :attr:`bytes` (pages in use plus the WAL); True when over the cap, the WAL's budget
        counted in full (deleting rows writes to the WAL before a checkpoint shrinks it)."""
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        self.used = int((pages - free) * size)
        wal = self.wal_path.stat().st_size if self.wal_path is not None and self.wal_path.exists() else 0
        self.bytes = self.used + wal
        return self.used + max(wal, self.wal_budget) > self.max_bytes

    def drop_oldest(self, db: sqlite3.Connection, delivered_upto: int) -> int | None:
        """Delete the oldest rows until ~10% under the cap; count and log the loss.  Returns the last
        seq deleted, or None if nothing was deleted (a failed delete is logged; the next commit tries
        again)."""
        if self.rows == 0:  # over the cap with dead letters alone: nothing here to drop
            return None
        target = 0.9 * self.max_bytes - max(self.bytes - self.used, self.wal_budget)
        per_row = self.used / max(self.rows, 1)
        n = min(self.rows, DROP_BATCH, max(1, int((self.used - target) / per_row) + 1))
        last = db.execute("SELECT seq FROM samples ORDER BY seq LIMIT 1 OFFSET ?", (n - 1,)).fetchone()[0]
        undelivered = max(0, last - max(delivered_upto, self.first - 1))
        try:
            with transaction(db, "cannot delete"):
                n = db.execute("DELETE FROM samples WHERE seq <= ?", (last,)).rowcount
                store_head_floor(db, self.head)
        except JournalError as exc:
            self.log.error("journal over its cap (%d bytes) and %s", self.bytes, exc)
            return None
        self.rows -= n
        self.first = self.next_seq(db, last)
        self.dropped_rows += n
        self.dropped_undelivered += undelivered
        self.measure(db)
        self.log.warning("journal cap %d bytes reached: dropped %d oldest polls (%d undelivered), seq <= %d",
                         self.max_bytes, n, undelivered, last)
        return int(last)
