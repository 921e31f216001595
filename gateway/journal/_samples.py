"""The samples table: one row per poll, values packed in a float64 blob, and the size cap.

Why one row per poll: measured on the target machines at 5–7M fields/s, against ~0.85M fields/s for
one row per field (DESIGN.md, Known traps).  The commit path is hot: a group of polls becomes rows in
one list comprehension and one ``executemany``; nothing else here runs per row.

Sequence numbers are assigned here, on the journal thread, contiguous; only the size cap deletes
rows, always the oldest, so holes are only ever at the front and a sink's backlog is
``head - max(cursor, first - 1)``.

Why the cap drops the oldest rows, counted and logged: the journal must be bounded (DESIGN.md,
Guarantees) and, once full, the newest readings are worth more than the oldest; dropping undelivered
data is never silent.  Delivered rows are only removed by the cap, so a cap above the free disk space
fills the disk; the WAL (~4 MB at the default checkpoint) is outside ``page_count × page_size``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Sequence

import numpy as np

from gateway.errors import JournalError
from gateway.journal._db import transaction
from gateway.series import Sample


class SampleStore:
    def __init__(self, max_bytes: int, log: logging.Logger) -> None:
        self.max_bytes = max_bytes
        self.log = log
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
        self.rows = n
        self.head = max(hi or 0, acked_upto)
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

    def measure(self, db: sqlite3.Connection) -> bool:
        """Update :attr:`bytes` (pages in use); True when over the cap."""
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        self.bytes = int((pages - free) * size)
        return self.bytes > self.max_bytes

    def drop_oldest(self, db: sqlite3.Connection, delivered_upto: int) -> int | None:
        """Delete the oldest rows until ~10% under the cap; count and log the loss.  Returns the last
        seq deleted, or None if nothing was deleted (a failed delete is logged; the next commit tries
        again)."""
        if self.rows == 0:  # over the cap with dead letters alone: nothing here to drop
            return None
        target = 0.9 * self.max_bytes
        per_row = self.bytes / max(self.rows, 1)
        n = min(self.rows, max(1, int((self.bytes - target) / per_row) + 1))
        last = db.execute("SELECT seq FROM samples ORDER BY seq LIMIT 1 OFFSET ?", (n - 1,)).fetchone()[0]
        undelivered = max(0, last - max(delivered_upto, self.first - 1))
        try:
            with transaction(db, "cannot delete"):
                db.execute("DELETE FROM samples WHERE seq <= ?", (last,))
        except JournalError as exc:
            self.log.error("journal over its cap (%d bytes) and %s", self.bytes, exc)
            return None
        self.rows -= n
        self.first = last + 1
        self.dropped_rows += n
        self.dropped_undelivered += undelivered
        self.measure(db)
        self.log.warning("journal cap %d bytes reached: dropped %d oldest polls (%d undelivered), seq <= %d",
                         self.max_bytes, n, undelivered, last)
        return int(last)
