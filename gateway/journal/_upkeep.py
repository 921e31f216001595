"""The journal's upkeep of its disk and its file: the checks at open, the cap in force, retention,
the marker, and rows set apart — everything the journal does besides storing and reading rows.

Why one place: each of these needs the same few things (the path, the sample store, the log) at the
same moments (open, after each commit, every few seconds, close); kept here, the facade only calls
in.  Every method taking ``db`` runs on the journal thread.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from gateway.errors import JournalError
from gateway.journal._damage import OpenReport, open_checked
from gateway.journal._db import Synchronous, set_wal_budget, wal_budget_pages
from gateway.journal._files import companion
from gateway.journal._marker import Marker, read_marker, write_marker
from gateway.journal._queries import UnreadableRow
from gateway.journal._retention import Retention
from gateway.journal._samples import SampleStore
from gateway.journal._space import SpaceGuard


class Upkeep:
    def __init__(self, path: Path, samples: SampleStore, max_bytes: int, reserve_bytes: int,
                 retention_s: float | None, log: logging.Logger) -> None:
        self.path, self.samples, self.log = path, samples, log
        self.space = SpaceGuard(path, max_bytes, reserve_bytes, log)
        self.retention = Retention(samples, retention_s)
        self.marker = Marker()
        self.unreadable = 0
        self._unreadable_upto = 0
        self._wal_pages = 0
        samples.wal_path = companion(path, "-wal")

    def open(self, synchronous: Synchronous, load: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
        """Check the disk and the file, open and ``load`` it, report what was found."""
        self.space.check_at_start()
        self.marker = read_marker(self.path)
        try:
            db, report = open_checked(self.path, synchronous, self.marker, load, self.log)
            self._report(report)
            self.fit_cap(db)
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"cannot open the journal {self.path}: {exc}") from exc
        if synchronous == "NORMAL":
            self.log.warning("journal %s runs with synchronous: NORMAL: commits acknowledged in the last moments "
                             "before a power loss can be lost (a crash of the process loses nothing); use FULL "
                             "where the power may fail", self.path)
        return db

    def _report(self, report: OpenReport) -> None:
        """Log and count commits found missing; keep the marker in step."""
        lost, wal, head = 0, report.wal, self.samples.head
        if wal is not None and wal.lost:
            lost = 1
            self.log.error("journal %s: its WAL held %d committed transaction(s) that SQLite could not replay "
                           "(the frame after #%d of %d is damaged); the readings in them are lost from the journal. "
                           "A copy of the WAL is kept at %s", self.path, wal.commits_lost, wal.valid_frames,
                           wal.frames, report.wal_copy)
        elif wal is not None and wal.torn_tail:
            self.log.warning("journal %s: the last transaction in its WAL is incomplete and was not replayed: a "
                             "commit cut off by a crash before it returned (never acknowledged) or a damaged frame. "
                             "A copy of the WAL is kept at %s", self.path, report.wal_copy)
        if not lost and not report.recovered and self.marker.head_seq > head:
            lost = 1
            self.log.error("journal %s ends at seq %d but seq %d had been committed: its end (or its WAL) was lost "
                           "— a power cut with synchronous: NORMAL, a restored copy or a disk fault; %d readings are "
                           "missing", self.path, head, self.marker.head_seq, self.marker.head_seq - head)
        self.marker = self.marker.bumped(recoveries=int(report.recovered), losses=lost, head_seq=head)
        write_marker(self.path, self.marker, durable=report.recovered or lost > 0)

    def fit_cap(self, db: sqlite3.Connection) -> None:
        """The cap in force for the next commit, and a WAL budget in proportion to it."""
        self.samples.max_bytes = self.space.update()
        pages = wal_budget_pages(self.samples.max_bytes)
        if pages != self._wal_pages:
            self.samples.wal_budget = set_wal_budget(db, pages)
            self._wal_pages = pages

    def housekeep(self, db: sqlite3.Connection, delivered_upto: int) -> bool:
        """One retention batch (True if more may follow), the marker, and the free space (also when
        nothing is committed, so that ``low_space`` is current)."""
        n = self.retention.delete_batch(db, delivered_upto, time.time_ns())
        self.fit_cap(db)
        if self.samples.head != self.marker.head_seq:
            self.marker = self.marker.bumped(head_seq=self.samples.head)
            with contextlib.suppress(OSError):  # a stale marker only misses a loss (``_marker``)
                write_marker(self.path, self.marker)
        return n > 0

    def closed(self) -> None:
        """After the database is closed: the marker, durably."""
        with contextlib.suppress(OSError):
            write_marker(self.path, self.marker.bumped(head_seq=self.samples.head), durable=True)

    def set_apart(self, bad: list[UnreadableRow]) -> None:
        """Rows that cannot be decoded are skipped by delivery (it must not stall on them), counted
        once each and logged; they stay in the file for ``pedf journal recover``."""
        fresh = [b for b in bad if b.seq > self._unreadable_upto]
        if fresh:
            self.unreadable += len(fresh)
            self._unreadable_upto = max(b.seq for b in fresh)
            self.log.error("journal %s: %d stored row(s) cannot be decoded and are skipped (seq %s: %s)", self.path,
                           len(fresh), ", ".join(str(b.seq) for b in fresh[:5]), fresh[0].why)
