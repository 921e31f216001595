"""InfluxDB line protocol, encoded fast: a cached prefix per series and one compiled pass per batch.

Syntax and escaping follow the InfluxDB line protocol reference
(https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/):

=====================  ==========================================
element                escaped characters
=====================  ==========================================
measurement            comma, space
tag key / tag value    comma, equals sign, space
field key              comma, equals sign, space
string field value     double quote, backslash
=====================  ==========================================

Choices where the protocol has no answer, applied to every name (measurement, tag key and value,
field key): a newline or carriage return cannot be written at all, so it becomes a space (then
escaped); a backslash cannot be escaped in a name (InfluxDB only unescapes ``\\,``, ``\\=``, ``\\ ``),
and one before a separator or at the end corrupts the line, so it becomes ``/``.  A tag whose key or
value is empty is left out (InfluxDB rejects it).  String field values keep newlines (allowed inside
quotes).  A measurement starting with ``#`` would read as a comment; names come from validated site
files, so it is not rewritten here.

Values: a NaN (not reported) or ±inf field is left out, and a row with no field left yields no line;
``int`` fields are written ``123i`` (left out beyond the int64 range), ``bool`` ``true``/``false``,
``float`` as Python's ``repr`` would, ``str`` quoted.

Why compiled: ``influxdb-client``'s ``Point`` formats ~60k lines/s on the target machine (DESIGN.md,
Known traps) and ``repr`` of one 17-digit double takes ~0.4 µs here, so a batch of rows is written by
one numba kernel (:mod:`gateway._lp_kernels`) from a cached prefix and cached field keys per series.
Rows of series with string fields, rare, are formatted in Python by :meth:`LineEncoder.encode_row`,
which is also the plain reference the kernel is tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from gateway._lp_kernels import KIND_CODE, encode_batch
from gateway.series import SeriesKey

_NAME_FIX = str.maketrans({"\n": " ", "\r": " ", "\\": "/"})
_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_INT64_LIMIT = 9.223372036854775e18  # largest float below 2**63
_DIVISOR = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def escape_measurement(name: str) -> str:
    return name.translate(_NAME_FIX).translate(_MEASUREMENT)


def escape_key(name: str) -> str:
    """Escape a tag key, tag value or field key."""
    return name.translate(_NAME_FIX).translate(_KEY)


def escape_string_field(value: str) -> str:
    """Body of a string field value, without its surrounding double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


class EncodableRow(Protocol):
    series_id: int
    ts_ns: int
    values: np.ndarray
    texts: tuple[str | None, ...] | None


@dataclass(frozen=True, slots=True)
class _Plan:
    index: int  # position in the kernel's tables, -1 when the series has a string field
    prefix: str  # "measurement,tag=value "
    keys: tuple[str, ...]  # "field_key=" per field, escaped
    kinds: tuple[str, ...]


class LineEncoder:
    """Encode journal rows for the series ``key_lookup`` names; timestamps in ``precision``."""

    def __init__(self, key_lookup: Callable[[int], SeriesKey],
                 precision: Literal["ns", "us", "ms", "s"] = "ns") -> None:
        if precision not in _DIVISOR:
            raise ValueError(f"precision must be one of {sorted(_DIVISOR)}")
        self.key_lookup = key_lookup
        self.precision = precision
        self._divisor = _DIVISOR[precision]
        self._plans: dict[int, _Plan] = {}
        self._prefixes = bytearray()
        self._prefix_off = [0]
        self._keys = bytearray()
        self._key_off = [0]
        self._field_base: list[int] = []
        self._kinds: list[int] = []
        self._widths: list[int] = []
        self._max_len: list[int] = []
        self._tables: tuple[np.ndarray, ...] | None = None
        self._out = np.empty(0, dtype=np.uint8)  # reused output buffer

    def _plan(self, series_id: int) -> _Plan:
        plan = self._plans.get(series_id)
        if plan is not None:
            return plan
        key = self.key_lookup(series_id)
        tags = "".join(f",{escape_key(k)}={escape_key(v)}" for k, v in key.tags if k and v)
        prefix = f"{escape_measurement(key.measurement)}{tags} "
        keys = tuple(escape_key(f) + "=" for f in key.fields)
        index = -1
        if "str" not in key.kinds:
            index = len(self._widths)
            raw_prefix, raw_keys = prefix.encode(), [k.encode() for k in keys]
            self._prefixes += raw_prefix
            self._prefix_off.append(len(self._prefixes))
            self._field_base.append(len(self._kinds))
            for raw, kind in zip(raw_keys, key.kinds, strict=True):
                self._keys += raw
                self._key_off.append(len(self._keys))
                self._kinds.append(KIND_CODE[kind])
            self._widths.append(len(keys))
            # longest line: prefix, every key, 26 bytes per value and separator, sign + 19 digits + space + \n
            self._max_len.append(len(raw_prefix) + sum(map(len, raw_keys)) + 26 * len(keys) + 22)
            self._tables = None
        plan = _Plan(index, prefix, keys, tuple(key.kinds))
        self._plans[series_id] = plan
        return plan

    def forget(self, series_id: int) -> None:
        """Drop a cached prefix (after a series is renamed); its table entry stays unused."""
        self._plans.pop(series_id, None)

    def _arrays(self) -> tuple[np.ndarray, ...]:
        if self._tables is None:
            self._tables = (
                np.frombuffer(bytes(self._prefixes) or b"\0", dtype=np.uint8),
                np.array(self._prefix_off, dtype=np.int64),
                np.frombuffer(bytes(self._keys) or b"\0", dtype=np.uint8),
                np.array(self._key_off, dtype=np.int64),
                np.array(self._field_base or [0], dtype=np.int64),
                np.array(self._kinds or [0], dtype=np.int8),
                np.array(self._widths or [0], dtype=np.int64),
                np.array(self._max_len or [0], dtype=np.int64),
            )
        return self._tables

    def _run_kernel(self, rows: Sequence[EncodableRow]) -> tuple[np.ndarray, np.ndarray, int, list[_Plan]]:
        get = self._plans.get
        plans = [get(r.series_id) or self._plan(r.series_id) for r in rows]
        n = len(rows)
        index = np.fromiter([p.index for p in plans], dtype=np.int64, count=n)
        prefixes, prefix_off, keys, key_off, field_base, kinds, widths, max_len = self._arrays()
        known = index >= 0
        all_known = bool(known.all())
        width = widths[index] if all_known else np.where(known, widths[index], 0)
        starts = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(width, out=starts[1:])
        flat = self._flat_values(rows, known, all_known, int(starts[-1]))
        ts = np.fromiter([r.ts_ns for r in rows], dtype=np.int64, count=n) // self._divisor
        need = int((max_len[index] if all_known else np.where(known, max_len[index], 0)).sum())
        if len(self._out) < need:
            self._out = np.empty(max(need, 2 * len(self._out)), dtype=np.uint8)
        out = self._out
        line_end = np.empty(n, dtype=np.int64)
        pos = encode_batch(flat, flat.view(np.uint64), starts, ts, index, prefixes, prefix_off, keys, key_off,
                           field_base, kinds, out, line_end)
        return out, line_end, pos, plans

    @staticmethod
    def _flat_values(rows: Sequence[EncodableRow], known: np.ndarray, all_known: bool,
                     size: int) -> np.ndarray:
        """All rows' values in one float64 array; journal rows are joined straight from their blobs."""
        if all_known:
            bases = [r.values.base for r in rows]
            if all(type(b) is bytes for b in bases):
                blob = b"".join(bases)
                if len(blob) == 8 * size:
                    return np.frombuffer(blob, dtype=np.float64)
        values = [r.values if k else r.values[:0] for r, k in zip(rows, known.tolist(), strict=True)]
        flat = np.concatenate(values).astype(np.float64, copy=False)
        if len(flat) != size:
            raise ValueError("a row's values do not match its series' fields")
        return flat

    def encode_lines_bytes(self, rows: Iterable[EncodableRow]) -> bytes:
        """The body of a write: one line per row that has a field left, joined by newlines."""
        rows = rows if isinstance(rows, Sequence) else list(rows)
        if not rows:
            return b""
        out, line_end, pos, plans = self._run_kernel(rows)
        if (line_end == -2).any():
            return "\n".join(self._merge(rows, plans, out, line_end)).encode()
        return out[:max(pos - 1, 0)].tobytes()

    def encode_rows(self, rows: Iterable[EncodableRow]) -> list[str]:
        """One line per row that has at least one field to write; NaN and ±inf fields are left out."""
        rows = rows if isinstance(rows, Sequence) else list(rows)
        if not rows:
            return []
        out, line_end, pos, plans = self._run_kernel(rows)
        if not (line_end == -2).any():
            return out[:pos - 1].tobytes().decode().split("\n") if pos else []
        return self._merge(rows, plans, out, line_end)

    def _merge(self, rows: Sequence[EncodableRow], plans: list[_Plan], out: np.ndarray,
               line_end: np.ndarray) -> list[str]:
        """Lines in row order when some rows (string fields) were left to Python by the kernel."""
        lines: list[str] = []
        start = 0
        for row, plan, end in zip(rows, plans, line_end.tolist(), strict=True):
            if end == -2:
                line = self._general(plan, row.values.tolist(), row.texts, row.ts_ns // self._divisor)
                if line is not None:
                    lines.append(line)
            elif end >= 0:
                lines.append(out[start:end - 1].tobytes().decode())
                start = end
        return lines

    def encode_row(self, row: EncodableRow) -> str | None:
        """One row formatted in Python with ``repr`` for floats: the reference for the compiled path."""
        plan = self._plan(row.series_id)
        return self._general(plan, row.values.tolist(), row.texts, row.ts_ns // self._divisor)

    @staticmethod
    def _general(plan: _Plan, vals: Sequence[float], texts: Sequence[str | None] | None,
                 ts: int) -> str | None:
        parts = []
        for i, (key, kind, v) in enumerate(zip(plan.keys, plan.kinds, vals, strict=True)):
            if kind == "str":
                text = None if texts is None else texts[i]
                if text is not None:
                    parts.append(f'{key}"{escape_string_field(text)}"')
            elif v - v != 0.0:  # NaN or ±inf: not reported
                continue
            elif kind == "float":
                parts.append(key + repr(v))
            elif kind == "int":
                if -_INT64_LIMIT < v < _INT64_LIMIT:
                    parts.append(f"{key}{int(v)}i")
            else:
                parts.append(key + ("true" if v else "false"))
        if not parts:
            return None
        return f"{plan.prefix}{','.join(parts)} {ts}"
