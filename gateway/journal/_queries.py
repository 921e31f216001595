"""Reading committed rows: in seq order for the sinks, columnar per series for analytics.

Why columnar: analytics kernels take contiguous numpy arrays; one ``np.frombuffer`` over the joined
blobs of a series gives its (rows × fields) matrix without a Python object per value (DESIGN.md,
Data model).  Range queries are scans: there is no time index, because an index would cost every
commit on the hot path while queries are rare (reports, live KPIs once per interval).
Every function here runs on the journal thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from gateway.series import SeriesKey


class JournalRow(NamedTuple):  # a tuple: built thousands of times per batch, ~5× cheaper than a dataclass
    seq: int
    series_id: int
    ts_ns: int
    values: np.ndarray  # float64, one per field of the series; NaN = not reported
    texts: tuple[str | None, ...] | None


@dataclass(frozen=True, slots=True)
class SeriesArrays:
    series_id: int
    ts_ns: np.ndarray  # int64
    values: np.ndarray  # float64, shape (len(ts_ns), number of fields)


class UnreadableRow(NamedTuple):
    seq: int
    why: str


def select_rows(db: sqlite3.Connection, after: int, limit: int) -> tuple[list[JournalRow], list[UnreadableRow]]:
    """Rows after ``after`` in seq order, and those whose stored values cannot be decoded (a garbled
    page that SQLite's structure check passed): those are set apart, never a ``TypeError`` upstream."""
    raw = db.execute("SELECT seq, series_id, ts_ns, vals, texts FROM samples WHERE seq > ? ORDER BY seq LIMIT ?",
                     (after, limit)).fetchall()
    frombuffer, f64 = np.frombuffer, np.float64
    try:
        return [JournalRow(seq, sid, ts, frombuffer(vals, dtype=f64), None if texts is None
                           else tuple(json.loads(texts))) for seq, sid, ts, vals, texts in raw], []
    except (TypeError, ValueError):
        pass
    good, bad = [], []
    for seq, sid, ts, vals, texts in raw:  # the slow path, only once something failed to decode
        try:
            if not (isinstance(sid, int) and isinstance(ts, int) and isinstance(vals, bytes)):
                raise TypeError(f"stored types {type(sid).__name__}, {type(ts).__name__}, {type(vals).__name__}")
            decoded = None if texts is None else tuple(json.loads(texts))
            good.append(JournalRow(seq, sid, ts, frombuffer(vals, dtype=f64), decoded))
        except (TypeError, ValueError) as exc:
            bad.append(UnreadableRow(int(seq) if isinstance(seq, int) else -1, str(exc)))
    return good, bad


def select_arrays(db: sqlite3.Connection, series: Mapping[int, SeriesKey], series_ids: Iterable[int] | None,
                  start_ns: int | None, end_ns: int | None) -> list[SeriesArrays]:
    """Arrays per series for ``start_ns <= ts < end_ns``, in order of first appearance."""
    where, args = ["1"], []
    if series_ids is not None:
        ids = list(series_ids)
        where.append(f"series_id IN ({','.join('?' * len(ids))})")
        args += ids
    if start_ns is not None:
        where.append("ts_ns >= ?")
        args.append(start_ns)
    if end_ns is not None:
        where.append("ts_ns < ?")
        args.append(end_ns)
    sql = f"SELECT series_id, ts_ns, vals FROM samples WHERE {' AND '.join(where)} ORDER BY seq"
    grouped: dict[int, tuple[list[int], list[bytes]]] = {}
    for sid, ts, vals in db.execute(sql, args).fetchall():
        ts_list, blobs = grouped.setdefault(sid, ([], []))
        ts_list.append(ts)
        blobs.append(vals)
    out = []
    for sid, (ts_list, blobs) in grouped.items():
        values = np.frombuffer(b"".join(blobs), dtype=np.float64).reshape(len(ts_list), len(series[sid].fields))
        out.append(SeriesArrays(sid, np.asarray(ts_list, dtype=np.int64), values))
    return out


def empty_arrays(width: int) -> tuple[np.ndarray, np.ndarray]:
    return np.empty(0, dtype=np.int64), np.empty((0, width), dtype=np.float64)
