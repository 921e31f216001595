"""Retention: rows every sink has delivered are deleted once older than ``retention_s``.

Why: without it a journal only shrinks at its size cap, so its steady state is "full" and a cap set
above the free space fills the disk.  With it the steady state is small: what live analytics reads
(the last hours) plus whatever a sink still owes.  Undelivered rows are never deleted here, however
old; only the size cap drops those (counted).

Why in batches of ``BATCH`` rows, each its own transaction and its own job on the journal thread: a
group commit queued meanwhile runs between two batches, so a first pass over days of rows never holds
up acknowledgements for more than one batch (a few ms).  Rows are found through the ``ts_ns`` index,
so late rows with old timestamps are found too.  What keeps a pass cheap while a sink is down for
longer than the retention (old rows that are not yet delivered, which the index walk would visit on
every pass): once a pass has deleted everything older than its cutoff, the next pass with the same
delivered seq only looks at timestamps between that cutoff and its own.
"""

from __future__ import annotations

import sqlite3

from gateway.journal._db import transaction
from gateway.journal._samples import SampleStore, store_head_floor

BATCH = 2000


class Retention:
    def __init__(self, samples: SampleStore, retention_s: float | None) -> None:
        """``retention_s`` None: keep delivered rows until the cap (tools that open a journal briefly)."""
        self.samples = samples
        self.retention_ns = None if retention_s is None else int(retention_s * 1e9)
        self.deleted = 0
        self._done: tuple[int, int] | None = None  # (delivered seq, cutoff) of the last complete pass

    def delete_batch(self, db: sqlite3.Connection, delivered_upto: int, now_ns: int) -> int:
        """Delete up to ``BATCH`` delivered rows older than the retention; returns how many (on the
        journal thread)."""
        if self.retention_ns is None or delivered_upto <= 0 or self.samples.rows == 0:
            return 0
        cutoff = now_ns - self.retention_ns
        lo = self._done[1] if self._done is not None and self._done[0] == delivered_upto else -(1 << 63)
        with transaction(db, "retention: cannot delete delivered rows"):
            n = db.execute("DELETE FROM samples WHERE seq IN (SELECT seq FROM samples WHERE ts_ns >= ? AND ts_ns < ? "
                           "AND seq <= ? ORDER BY ts_ns LIMIT ?)", (lo, cutoff, delivered_upto, BATCH)).rowcount
            if n:
                store_head_floor(db, self.samples.head)
        if n < BATCH:
            self._done = (delivered_upto, cutoff)
        if n:
            s = self.samples
            s.rows -= n
            s.first = s.next_seq(db, s.first - 1)
            self.deleted += n
            s.measure(db)
        return n
