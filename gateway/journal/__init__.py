"""The local journal: readings committed to SQLite on disk before any source is told they are safe,
kept until every sink has delivered them (or the size cap drops the oldest, counted).

This package owns the journal's file, its schema and the one thread that touches it; other packages
import only from here, never from its private modules.  ``async with Journal(path) as journal:``
makes the calling task the owner of the journal's writer: if the writer stops, the block is
cancelled and leaving it raises ``gateway.errors.JournalError``.
"""

from __future__ import annotations

from gateway.journal._cursors import SinkBacklog
from gateway.journal._dead_letters import DeadLetter, PayloadDeadLetter
from gateway.journal._holes import HoleRecord
from gateway.journal._journal import Journal, JournalStats
from gateway.journal._queries import JournalRow, SeriesArrays
from gateway.journal._reader import JournalReader
from gateway.journal._salvage import CheckReport, RecoverReport, check_journal, recover_journal

__all__ = [
    "CheckReport",
    "DeadLetter",
    "HoleRecord",
    "Journal",
    "JournalReader",
    "JournalRow",
    "JournalStats",
    "PayloadDeadLetter",
    "RecoverReport",
    "SeriesArrays",
    "SinkBacklog",
    "check_journal",
    "recover_journal",
]
