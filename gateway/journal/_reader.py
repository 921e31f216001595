"""A read-only view of a journal for analysis: its own SQLite connection (in WAL mode readers never
block the writer, nor the writer them; https://sqlite.org/wal.html §2.2), so a query of an hour of
readings never delays a group commit — in this process on another thread, or in another process.

Reads go through the ``ts_ns`` index: a period is a range scan of its own rows, never the whole
table, and only the fields asked for leave SQLite (each value cut out of the row's float64 blob
with ``substr``), so a close of 1,000 devices × 60 fields that needs one counter per device moves
8 bytes per row, not 480.  Why a time index and not ``(series_id, ts_ns)``: rows arrive in time
order, so the time index grows at its end, while a per-series index takes an insert in 1,000
places a second — measured on the commit path at 1,000 series: 6.6 µs CPU per row without an
index, 8.1 with ``ts_ns``, 28.7 with ``(series_id, ts_ns)`` (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from gateway.errors import JournalError
from gateway.journal import _holes
from gateway.journal._series import SeriesCatalog
from gateway.series import SeriesKey

_CHUNK = 50_000


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
            # mode=ro keeps the journal read-only; only this connection's temp table is written
            self._db.execute("CREATE TEMP TABLE wanted (sid INTEGER PRIMARY KEY, off INTEGER NOT NULL)")
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

    def learned_holes(self) -> dict[str, list[_holes.HoleRecord]]:
        """The register ranges each device refused, as the gateway learned them."""
        try:
            return _holes.select(self._conn())
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read {self.path}: {exc}") from exc

    @property
    def series(self) -> dict[int, SeriesKey]:
        return self._catalog.keys

    def columns(self, series_id: int, fields: Sequence[str], start_ns: int, end_ns: int
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Timestamps [ns] and the named fields' values of one series for ``start_ns <= ts < end_ns``,
        in time order (NaN where a row did not report a field).  Fields the series lacks are left out."""
        return self.interval({series_id: fields}, start_ns, end_ns).get(
            series_id, (np.empty(0, dtype=np.int64), {f: np.empty(0) for f in fields
                                                       if f in self.series[series_id].fields}))

    def interval(self, wanted: Mapping[int, Sequence[str]], start_ns: int, end_ns: int
                 ) -> dict[int, tuple[np.ndarray, dict[str, np.ndarray]]]:
        """For each series of ``wanted`` with rows in ``start_ns <= ts < end_ns``: its timestamps and
        the named fields, in time order.  One range scan of the time index per field name, only the
        rows of the wanted series, 8 bytes of each."""
        by_field: dict[str, dict[int, int]] = {}
        for sid, fields in wanted.items():
            names = self.series[sid].fields
            for f in fields:
                if f in names:
                    by_field.setdefault(f, {})[sid] = 8 * names.index(f) + 1
        pieces: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        for field, offsets in by_field.items():
            sids, ts, vals = self._scan(offsets, start_ns, end_ns)
            order = np.lexsort((ts, sids))
            sids, ts, vals = sids[order], ts[order], vals[order]
            bounds = np.flatnonzero(np.diff(sids)) + 1
            for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, sids.size], strict=True):
                if hi > lo:
                    pieces.setdefault(int(sids[lo]), {})[field] = (ts[lo:hi], vals[lo:hi])
        out = {}
        for sid, cols in pieces.items():
            ts_all = np.unique(np.concatenate([c[0] for c in cols.values()]))
            fields_out = {}
            for field, (ts, vals) in cols.items():
                column = np.full(ts_all.size, np.nan)
                column[np.searchsorted(ts_all, ts)] = vals
                fields_out[field] = column
            out[sid] = (ts_all, fields_out)
        return out

    def _scan(self, offsets: Mapping[int, int], start_ns: int, end_ns: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(series id, ts, value) of one field in the rows of the period, read in chunks so that no
        more than ``_CHUNK`` rows are Python objects at a time."""
        # the wanted series in a temporary table with a primary key: one lookup per row of the range
        # (joining json_each instead made SQLite scan the range once per series: 80 s for a close)
        sql = ("SELECT s.series_id, s.ts_ns, substr(s.vals, w.off, 8) FROM samples AS s "
               "CROSS JOIN temp.wanted AS w ON w.sid = s.series_id WHERE s.ts_ns >= ? AND s.ts_ns < ?")
        sids, tss, vals = [], [], []
        try:
            db = self._conn()
            db.execute("DELETE FROM temp.wanted")
            db.executemany("INSERT INTO temp.wanted VALUES (?, ?)", offsets.items())
            cur = db.execute(sql, (start_ns, end_ns))
            while rows := cur.fetchmany(_CHUNK):
                sids.append(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)))
                tss.append(np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)))
                vals.append(np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float64))
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read {self.path}: {exc}") from exc
        if not sids:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0)
        return np.concatenate(sids), np.concatenate(tss), np.concatenate(vals)
