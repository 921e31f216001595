"""Dead letters: what can never be delivered or decoded is kept with its reason, not dropped.

Two kinds: lines a sink's database rejected for good (4xx: the rest of the batch is delivered, the
cursor moves on, the line waits here for an operator), and MQTT payloads no decoder could read.
Both are counted and shown by ``pedf deadletter``; nothing is lost silently (DESIGN.md, Guarantees).
Every function here runs on the journal thread.

Why payload dead letters have a budget: they come from whoever can publish to the broker, and
4,000 junk messages of 60 KB once grew a journal by 254 MB and made its size cap delete nearly
every genuine reading.  So each payload is stored truncated (its original length kept), each source
keeps at most ``max_count`` rows and ``max_bytes`` bytes (the oldest dropped, counted), and when the
journal is over its cap the payload dead letters go first (:meth:`PayloadStore.shed`): junk never
pushes out a sample.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.errors import JournalError
from gateway.journal._db import transaction


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    sink: str
    at_ns: int
    line: str
    reason: str


@dataclass(frozen=True, slots=True)
class PayloadDeadLetter:
    """A received message no decoder could read (MQTT ingest), kept with its reason."""

    id: int
    source: str
    at_ns: int
    topic: str
    payload: bytes  # the first ``keep_bytes`` of it
    reason: str
    payload_bytes: int = 0  # its length as received


def store_line(db: sqlite3.Connection, sink: str, line: str, reason: str) -> None:
    with transaction(db, f"cannot store a dead letter of {sink}"):
        db.execute("INSERT INTO dead_letters (sink, at_ns, line, reason) VALUES (?,?,?,?)",
                   (sink, time.time_ns(), line, reason))


def select_lines(db: sqlite3.Connection, sink: str | None, limit: int) -> list[DeadLetter]:
    sql = "SELECT id, sink, at_ns, line, reason FROM dead_letters"
    args: tuple[Any, ...] = (limit,)
    if sink is not None:
        sql, args = sql + " WHERE sink = ?", (sink, limit)
    return [DeadLetter(*r) for r in db.execute(sql + " ORDER BY id LIMIT ?", args).fetchall()]


# (at_ns, topic, payload as kept, length as received, reason)
PayloadItem = tuple[int, str, bytes, int, str]
_SIZE = "length(payload) + length(CAST(topic AS BLOB)) + length(CAST(reason AS BLOB))"


class PayloadStore:
    """The ``payload_dead_letters`` table with its per-source budget; runs on the journal thread."""

    def __init__(self) -> None:
        self.per_source: dict[str, list[int]] = {}  # source → [rows, bytes]
        self.dropped = 0  # deleted by a source's budget or by the journal's size cap

    @property
    def rows(self) -> int:
        return sum(r for r, _ in self.per_source.values())

    @property
    def bytes(self) -> int:
        return sum(b for _, b in self.per_source.values())

    def load(self, db: sqlite3.Connection) -> None:
        """Count what is stored; add the ``payload_bytes`` column to a journal made before it existed."""
        columns = {row[1] for row in db.execute("PRAGMA table_info(payload_dead_letters)")}
        if "payload_bytes" not in columns:  # one statement: autocommit, no transaction needed
            db.execute("ALTER TABLE payload_dead_letters ADD COLUMN payload_bytes INTEGER")
        self.per_source = {src: [int(n), int(size or 0)] for src, n, size in db.execute(
            f"SELECT source, count(*), sum({_SIZE}) FROM payload_dead_letters GROUP BY source")}

    def store(self, db: sqlite3.Connection, source: str, items: Sequence[PayloadItem],
              max_count: int, max_bytes: int) -> int:
        """Insert ``items`` and drop the source's oldest rows beyond its budget, in one transaction.
        Returns how many were dropped (items past the budget on their own are never inserted)."""
        kept, size, skipped = _newest_within(items, max_count, max_bytes)
        rows, stored = self.per_source.get(source, [0, 0])
        excess_rows, excess_bytes = rows + len(kept) - max_count, stored + size - max_bytes
        with transaction(db, f"cannot store {len(items)} dead-lettered payloads of {source}"):
            db.executemany("INSERT INTO payload_dead_letters (source, at_ns, topic, payload, payload_bytes, reason)"
                           " VALUES (?,?,?,?,?,?)", [(source, at, t, p, n, r) for at, t, p, n, r in kept])
            gone, gone_bytes = (_delete_oldest(db, source, excess_rows, excess_bytes)
                                if excess_rows > 0 or excess_bytes > 0 else (0, 0))
        self.per_source[source] = [rows + len(kept) - gone, stored + size - gone_bytes]
        self.dropped += gone + skipped
        return gone + skipped

    def shed(self, db: sqlite3.Connection, over_cap: Callable[[], bool]) -> bool:
        """The journal is over its cap: delete the oldest payload dead letters, in growing steps,
        until it is not or none is left.  Returns whether it is still over (samples must go)."""
        step = 64
        while self.rows:
            try:
                with transaction(db, "cannot delete dead-lettered payloads"):
                    ids = [r[0] for r in db.execute("SELECT id FROM payload_dead_letters ORDER BY id LIMIT ?",
                                                    (step,))]
                    if ids:
                        db.execute("DELETE FROM payload_dead_letters WHERE id <= ?", (ids[-1],))
            except JournalError:
                return True  # the caller's cap logic logs the trouble; samples are still safe to drop
            self.dropped += len(ids)
            self.load(db)
            if not over_cap():
                return False
            step *= 4
        return over_cap()


def _newest_within(items: Sequence[PayloadItem], max_count: int, max_bytes: int) -> tuple[list[PayloadItem], int, int]:
    """The newest items that fit the budget by themselves, their size, and how many did not fit."""
    kept: list[PayloadItem] = []
    size = 0
    for item in reversed(items):
        n = _item_size(item)
        if len(kept) >= max_count or size + n > max_bytes:
            break
        kept.append(item)
        size += n
    kept.reverse()
    return kept, size, len(items) - len(kept)


def _item_size(item: PayloadItem) -> int:
    return len(item[2]) + len(item[1].encode("utf-8", "replace")) + len(item[4].encode("utf-8", "replace"))


def _delete_oldest(db: sqlite3.Connection, source: str, rows: int, size: int) -> tuple[int, int]:
    """Delete the source's oldest rows until ``rows`` rows and ``size`` bytes are gone."""
    gone = gone_bytes = 0
    last = None
    for row_id, n in db.execute(f"SELECT id, {_SIZE} FROM payload_dead_letters WHERE source = ? ORDER BY id",
                                (source,)):
        if gone >= rows and gone_bytes >= size:
            break
        gone, gone_bytes, last = gone + 1, gone_bytes + int(n), row_id
    if last is not None:
        db.execute("DELETE FROM payload_dead_letters WHERE source = ? AND id <= ?", (source, last))
    return gone, gone_bytes


def select_payloads(db: sqlite3.Connection, limit: int) -> list[PayloadDeadLetter]:
    sql = ("SELECT id, source, at_ns, topic, payload, reason, coalesce(payload_bytes, length(payload))"
           " FROM payload_dead_letters ORDER BY id LIMIT ?")
    return [PayloadDeadLetter(*r) for r in db.execute(sql, (limit,)).fetchall()]
