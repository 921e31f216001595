"""Per-sink cursors: the last seq each sink's database accepted, and what it still has to send.

Why a newly registered sink starts at 0: it then receives the whole backlog still on disk — a sink
added after an outage should not miss it.  Why a cursor moves only on :meth:`CursorStore.write`
(an ``ack`` after the database accepted a batch): delivery is at-least-once, a batch read but not
acknowledged comes again after a restart.

The oldest unsent timestamp per sink is kept in memory for ``/metrics`` (data age) and refreshed
only when it may have changed — after an ack, after the first commit into an empty backlog, after
the size cap dropped rows — never per row.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from gateway.journal._db import transaction
from gateway.journal._samples import SampleStore

_UNKNOWN = -1  # oldest unsent timestamp not looked up yet


@dataclass(frozen=True, slots=True)
class SinkBacklog:
    cursor: int
    backlog_rows: int
    oldest_unsent_ns: int | None  # timestamp of the oldest row not yet delivered


class CursorStore:
    def __init__(self, samples: SampleStore) -> None:
        self.samples = samples
        self.seq: dict[str, int] = {}
        self.oldest: dict[str, int | None] = {}

    def load(self, db: sqlite3.Connection) -> None:
        """Read the stored cursors; runs on the journal thread (as does every method taking ``db``)."""
        self.seq.update(db.execute("SELECT sink, seq FROM cursors").fetchall())

    def find_oldest(self, db: sqlite3.Connection) -> None:
        """After the samples are loaded: every sink's oldest unsent timestamp."""
        for sink, seq in self.seq.items():
            self.oldest[sink] = self.samples.next_ts(db, seq)

    def register(self, sink: str) -> None:
        if sink not in self.seq:
            self.seq[sink] = 0
            self.oldest[sink] = None if self.samples.rows == 0 else _UNKNOWN

    def write(self, db: sqlite3.Connection, sink: str, seq: int) -> int | None:
        """Store ``sink``'s cursor at ``seq``; returns its new oldest unsent timestamp."""
        with transaction(db, f"cannot advance cursor of {sink}"):
            db.execute("INSERT INTO cursors VALUES (?, ?) ON CONFLICT(sink) DO UPDATE SET seq=excluded.seq",
                       (sink, seq))
        return self.samples.next_ts(db, seq)

    def moved(self, sink: str, seq: int, oldest: int | None) -> None:
        """On the event loop, once :meth:`write` returned."""
        self.oldest[sink] = oldest
        self.seq[sink] = seq

    def after_commit(self, db: sqlite3.Connection) -> None:
        """Sinks that had nothing to send (or not looked up) now may have: look their oldest up."""
        for sink, oldest in self.oldest.items():
            if oldest is None or oldest == _UNKNOWN:
                self.oldest[sink] = self.samples.next_ts(db, self.seq[sink])

    def after_drop(self, db: sqlite3.Connection, last_dropped: int) -> None:
        for sink in self.oldest:
            self.oldest[sink] = self.samples.next_ts(db, max(self.seq[sink], last_dropped))

    def delivered_upto(self) -> int:
        """The seq every sink has delivered (0 without sinks: then nothing counts as delivered)."""
        return min(self.seq.values(), default=0)

    def backlogs(self) -> dict[str, SinkBacklog]:
        head, first = self.samples.head, self.samples.first
        out = {}
        for sink, cursor in self.seq.items():
            oldest = self.oldest.get(sink)
            out[sink] = SinkBacklog(cursor, max(0, head - max(cursor, first - 1)),
                                    None if oldest == _UNKNOWN else oldest)
        return out
