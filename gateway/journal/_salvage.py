"""``pedf journal check`` and ``pedf journal recover``: look at a journal file without changing it,
and copy what is readable of a damaged one into a new journal.

Why a new file and never a repair in place: the damaged file is the only copy of its readings;
salvage must not make it worse.  Why two ways to salvage: SQLite's ``.recover`` (the ``sqlite3``
command-line shell, https://sqlite.org/recovery.html) reads pages one by one and also finds rows
whose b-tree is broken, but the shell is not part of a gateway install; without it every table is
copied row by row through SQL, jumping over ranges of rowids that raise an error.  Either way the
result is a journal with the schema of this version, its cursors included, so that the rows a sink
had not delivered can be delivered from it (``docs/journal.md``).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from gateway.errors import JournalError
from gateway.journal._damage import quick_check
from gateway.journal._db import connect
from gateway.journal._files import companion
from gateway.journal._marker import Marker, marker_path, read_marker
from gateway.journal._wal import WalScan, scan_wal

_CHUNK = 512
_MAX_JUMP = 1 << 40


@dataclass(slots=True)
class CheckReport:
    path: Path
    size: int
    wal: WalScan
    marker: Marker
    problems: list[str] = field(default_factory=list)
    rows: int | None = None
    head_seq: int | None = None
    cursors: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [f"journal {self.path}: {self.size} bytes, WAL {self.wal.size} bytes "
               f"({self.wal.frames} frames, {self.wal.commits_replayed} commits readable)"]
        if self.rows is not None:
            out.append(f"  {self.rows} rows, head seq {self.head_seq}, cursors "
                       + (", ".join(f"{k}={v}" for k, v in sorted(self.cursors.items())) or "none"))
        if marker_path(self.path).exists():
            out.append(f"  marker: head seq {self.marker.head_seq}, {self.marker.recoveries} recoveries, "
                       f"{self.marker.losses} losses reported")
        out += [f"  PROBLEM: {p}" for p in self.problems]
        out.append("  ok" if self.ok else f"  damaged: salvage with `pedf journal recover {self.path} --out NEW.db`")
        return out


def check_journal(path: Path) -> CheckReport:
    """Structure, WAL and marker of ``path``, read-only (the file is not changed)."""
    if not path.is_file():
        raise JournalError(f"no journal file at {path}")
    report = CheckReport(path, path.stat().st_size, scan_wal(path), read_marker(path))
    if report.wal.lost:
        report.problems.append(f"the WAL holds {report.wal.commits_lost} committed transaction(s) after a damaged "
                               f"frame (#{report.wal.valid_frames + 1}); SQLite will not replay them")
    if report.wal.torn_tail:
        report.problems.append("the last transaction in the WAL is incomplete (a commit cut off by a crash, or "
                               "a damaged frame); SQLite will not replay it")
    if report.size == 0:
        report.problems.append("the file is empty" + (f" but held rows up to seq {report.marker.head_seq}"
                                                      if report.marker.head_seq else ""))
        return report
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        try:
            report.problems += [f"quick_check: {p}" for p in quick_check(db, 20)]
            report.rows, hi = db.execute("SELECT count(*), max(seq) FROM samples").fetchone()
            report.cursors = dict(db.execute("SELECT sink, seq FROM cursors").fetchall())
            report.head_seq = max(hi or 0, *report.cursors.values(), 0)
        finally:
            db.close()
    except sqlite3.Error as exc:
        report.problems.append(f"SQLite: {exc}")
    if report.head_seq is not None and report.marker.head_seq > report.head_seq:
        report.problems.append(f"rows up to seq {report.marker.head_seq} were committed, the file ends at "
                               f"{report.head_seq}")
    return report


@dataclass(slots=True)
class RecoverReport:
    out: Path
    method: str  # "sqlite3 .recover" or "row by row"
    tables: dict[str, int] = field(default_factory=dict)  # rows in the new journal, per table
    skipped_ranges: int = 0  # ranges of rowids jumped over on errors (row by row only)

    def lines(self) -> list[str]:
        counts = ", ".join(f"{t} {n}" for t, n in sorted(self.tables.items()))
        extra = f", {self.skipped_ranges} damaged range(s) jumped over" if self.skipped_ranges else ""
        return [f"recovered into {self.out} ({self.method}): {counts}{extra}"]


def recover_journal(path: Path, out: Path, *, use_sqlite_cli: bool | None = None) -> RecoverReport:
    """Copy what is readable of ``path`` (and its WAL) into a new journal ``out``.  ``use_sqlite_cli``:
    None = the ``sqlite3`` shell's ``.recover`` when installed, else row by row."""
    if not path.is_file():
        raise JournalError(f"no journal file at {path}")
    if any(companion(out, s).exists() for s in ("", "-wal", "-shm")):
        raise JournalError(f"{out} exists already; choose another --out")
    shell = shutil.which("sqlite3")
    report = None
    if use_sqlite_cli is not False and shell is not None:
        try:
            report = _recover_with_shell(shell, path, out)
        except JournalError as exc:
            if use_sqlite_cli:
                raise
            fallback = f"row by row; sqlite3 .recover failed: {exc}"
    elif use_sqlite_cli:
        raise JournalError("the sqlite3 shell is not installed (apt install sqlite3); try --row-by-row")
    else:
        fallback = "row by row"
    if report is None:
        report = RecoverReport(out, fallback)
        dst = connect(out, "FULL", 1 << 30)
        try:
            _copy_rows(path, dst, report)
        finally:
            dst.close()
    dst = connect(out, "FULL", 1 << 30)  # the schema of this version around whatever was salvaged
    try:
        problems = quick_check(dst)
        if problems:
            raise JournalError(f"the recovered file {out} does not check out: {problems[:3]}")
        for table in ("series", "samples", "cursors", "dead_letters", "payload_dead_letters", "mqtt_arrivals"):
            report.tables[table] = int(dst.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        dst.close()
    return report


def _recover_with_shell(shell: str, path: Path, out: Path) -> RecoverReport:
    """``sqlite3 FILE .recover | sqlite3 OUT``.  Some builds lack what ``.recover`` needs (Debian's
    3.40 shell has no ``sqlite_dbpage``: "SQL logic error"): then nothing is left behind."""
    dump = subprocess.run([shell, str(path), ".recover"], capture_output=True, check=False)
    failed = dump.returncode != 0 or b"error" in dump.stderr.lower()
    load = None if failed else subprocess.run([shell, str(out)], input=dump.stdout, capture_output=True, check=False)
    if load is None or load.returncode != 0:
        for suffix in ("", "-wal", "-shm"):
            companion(out, suffix).unlink(missing_ok=True)
        why = (dump if load is None else load).stderr.decode(errors="replace").strip().splitlines()
        raise JournalError(why[0] if why else "no output")
    return RecoverReport(out, "sqlite3 .recover")


def _copy_rows(path: Path, dst: sqlite3.Connection, report: RecoverReport) -> None:
    try:
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise JournalError(f"cannot open {path}: {exc}") from exc
    try:
        try:
            tables = [r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                "AND name NOT LIKE 'sqlite_%'").fetchall()]
        except sqlite3.Error as exc:
            raise JournalError(f"the schema of {path} is unreadable ({exc}); install the sqlite3 shell "
                               "(apt install sqlite3) and run recover again: its .recover reads pages directly"
                               ) from exc
        wanted = {r[0] for r in dst.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
        dst.execute("BEGIN")
        for table in tables:
            if table in wanted:
                _copy_table(src, dst, table, report)
        dst.execute("COMMIT")
    finally:
        src.close()


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in db.execute(f'PRAGMA table_info("{table}")').fetchall()]


def _copy_table(src: sqlite3.Connection, dst: sqlite3.Connection, table: str, report: RecoverReport) -> None:
    try:
        cols = [c for c in _columns(src, table) if c in set(_columns(dst, table))]
    except sqlite3.Error:
        report.skipped_ranges += 1
        return
    names = ", ".join(f'"{c}"' for c in cols)
    insert = f'INSERT OR IGNORE INTO "{table}" ({names}) VALUES ({", ".join("?" * len(cols))})'
    without_rowid = "WITHOUT ROWID" in (src.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,))
                                        .fetchone()[0] or "").upper()
    if without_rowid:  # only dedup hints (MQTT arrivals): whatever reads before the first error
        try:
            for row in src.execute(f'SELECT {names} FROM "{table}"'):
                dst.execute(insert, row)
        except sqlite3.Error:
            report.skipped_ranges += 1
        return
    pos, jump = -(1 << 63), 1
    while True:
        got = 0
        try:
            for row in src.execute(f'SELECT rowid, {names} FROM "{table}" WHERE rowid > ? ORDER BY rowid LIMIT ?',
                                   (pos, _CHUNK)):
                dst.execute(insert, row[1:])
                pos, got, jump = row[0], got + 1, 1
        except sqlite3.Error:
            if jump == 1:
                report.skipped_ranges += 1
            start = max(pos, 0) if pos < 0 else pos
            pos, jump = start + jump, jump * 2  # jump over the damaged page, further each time
            if jump > _MAX_JUMP:
                return
            continue
        if got < _CHUNK:
            return
