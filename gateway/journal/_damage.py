"""Opening the journal when its file may be damaged: check, move aside, start fresh, say so.

Why: a power cut, a full disk or a failing card leaves a truncated, garbled or emptied file.  Raising
``sqlite3.DatabaseError`` at every start is an endless restart loop under systemd ``Restart=always``
with no reading kept; carrying on with a cut file kills the delivery task later.  So every open runs
``PRAGMA quick_check`` (structure of every page, https://sqlite.org/pragma.html#pragma_quick_check)
and reads the stored state; on damage the files are moved aside (kept: they may hold undelivered
readings, which ``pedf journal recover`` salvages), the event is logged at ERROR with what to do,
counted in the marker, and a fresh journal is started so that polling goes on.

What counts as damage: SQLite's ``SQLITE_CORRUPT`` / ``SQLITE_NOTADB`` or a failed ``quick_check``,
and a file of 0 bytes whose marker (``_marker``) says it held rows.  Not damage: a locked file, a
read-only disk, a missing directory — those stay errors, because moving a healthy journal aside
would hide its rows.

Commits lost without damage — a WAL frame garbled in the middle (SQLite stops replaying there) or a
head below the marker's — leave a consistent database that is kept; the loss is logged at ERROR and
counted, and a garbled WAL is copied aside before SQLite overwrites it.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.journal._db import Synchronous, ensure_schema, open_raw
from gateway.journal._files import companion, make_dirs, move_aside
from gateway.journal._marker import Marker
from gateway.journal._wal import WalScan, scan_wal

_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


class Damaged(Exception):
    pass


@dataclass(slots=True)
class OpenReport:
    created_dirs: list[Path]
    recovered: bool = False  # damaged files were moved aside and a fresh journal started
    moved: list[Path] = field(default_factory=list)
    wal: WalScan | None = None
    wal_copy: Path | None = None  # a WAL whose commits were not replayed, kept for inspection


def is_damage(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    return "malformed" in text or "not a database" in text


def quick_check(db: sqlite3.Connection, limit: int = 10) -> list[str]:
    """Problems ``PRAGMA quick_check`` reports (empty: the file is sound)."""
    rows = [str(r[0]) for r in db.execute(f"PRAGMA quick_check({limit})").fetchall()]
    return [] if rows == ["ok"] else rows


def open_checked(path: Path, synchronous: Synchronous, marker: Marker, load: Callable[[sqlite3.Connection], None],
                 log: logging.Logger) -> tuple[sqlite3.Connection, OpenReport]:
    """Open ``path`` and ``load`` its state; on damage move it aside and open (and load) a fresh one.
    Runs on the journal thread; raises ``sqlite3.Error``/``OSError`` for what is not damage."""
    report = OpenReport(created_dirs=make_dirs(path.parent))
    try:
        _refuse_emptied(path, marker)
        report.wal = scan_wal(path)
        if report.wal.lost or report.wal.torn_tail:  # SQLite overwrites them at the next checkpoint: copy
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            report.wal_copy = companion(path, f"-wal.unreplayed-{stamp}")
            shutil.copy2(companion(path, "-wal"), report.wal_copy)
        return _open(path, synchronous, load, report), report
    except Damaged as exc:
        reason = str(exc)
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        reason = f"SQLite says: {exc}"
    report.recovered = True
    report.moved = move_aside(path, "damaged")
    kept = report.moved[0] if report.moved else path
    log.error("journal %s is damaged (%s). Moved aside to %s (with its -wal/-shm, nothing deleted) and started "
              "a fresh journal; polling goes on. Readings no sink had delivered may be in the moved file: "
              "salvage them with `pedf journal recover %s --out RECOVERED.db` (see docs/journal.md)",
              path, reason, kept, kept)
    return _open(path, synchronous, load, report), report


def _refuse_emptied(path: Path, marker: Marker) -> None:
    """A 0-byte file opens as a new database: damage if the marker knows it held rows."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    wal = companion(path, "-wal")
    if size == 0 and marker.head_seq > 0 and not (wal.exists() and wal.stat().st_size > 0):
        raise Damaged(f"the file is empty (0 bytes) but held readings up to seq {marker.head_seq}")


def _open(path: Path, synchronous: Synchronous, load: Callable[[sqlite3.Connection], None],
          report: OpenReport) -> sqlite3.Connection:
    db = open_raw(path, synchronous)
    try:
        problems = quick_check(db)
        if problems:
            raise Damaged("quick_check: " + "; ".join(problems[:3]))
        ensure_schema(db, path, report.created_dirs)
        load(db)
    except BaseException:
        db.close()
        raise
    return db
