"""A read-only view of a journal for analysis: its own SQLite connection (in WAL mode readers never
block the writer, nor the writer them; https://sqlite.org/wal.html §2.2), so a query of an hour of
readings never delays a group commit — in this process on another thread, or in another process.

Reads go through the ``(series_id, ts_ns)`` index: one interval of one series is a range scan of
that series' rows, never the whole table, and only the fields asked for leave SQLite (each value
cut out of the row's float64 blob with ``substr``), so a close of 1,000 devices × 60 fields that
needs one counter per device moves 8 bytes per row, not 480.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gateway.errors import JournalError
from gateway.journal._series import SeriesCatalog
from gateway.series import SeriesKey


class JournalReader:
    """``with JournalReader(path) as r: r.columns(sid, ("e_import_kwh",), start, end)``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._catalog = SeriesCatalog()

    def open(self) -> JournalReader:
        if not self.path.is_file():
            raise JournalError(f"no journal at {self.path}")
        try:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA query_only=1")
            self.refresh()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc}") from exc
        return self

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> JournalReader:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError("journal reader is not open")
        return self._db

    def refresh(self) -> None:
        """Read series created since the last look (the writer adds them as devices appear)."""
        self._catalog.load(self._conn())

    @property
    def series(self) -> dict[int, SeriesKey]:
        return self._catalog.keys

    def columns(self, series_id: int, fields: Sequence[str], start_ns: int, end_ns: int
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Timestamps [ns] and the named fields' values of one series for ``start_ns <= ts < end_ns``,
        in time order (NaN where a row did not report a field).  Fields the series lacks are left out."""
        key = self.series[series_id]
        wanted = [(f, key.fields.index(f)) for f in fields if f in key.fields]
        cols = "".join(f", substr(vals, {8 * i + 1}, 8)" for _, i in wanted)
        sql = f"SELECT ts_ns{cols} FROM samples WHERE series_id = ? AND ts_ns >= ? AND ts_ns < ? ORDER BY ts_ns"
        try:
            rows = self._conn().execute(sql, (series_id, start_ns, end_ns)).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read series {series_id} of {self.path}: {exc}") from exc
        ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        out = {}
        for j, (name, _) in enumerate(wanted, start=1):
            out[name] = np.frombuffer(b"".join(r[j] for r in rows), dtype=np.float64).copy()
        return ts, out
