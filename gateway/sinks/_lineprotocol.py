"""InfluxDB line protocol, encoded fast: one precompiled format string per series, or a compiled kernel.

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
``float`` as Python's ``repr`` would, ``str`` quoted.  An ``int`` field beyond 2^53, which a float64
cannot hold exactly, comes with its exact decimal text in the row's texts (the Modbus decoder puts
it there) and is written from that text; such rows, rare, take the per-field path.

Two encoders, same output values:

- the default, pure Python: one ``%``-format string per field layout (escaped field keys already in
  it, ``%r`` per float), shared by every series with those fields, so a row is one C-level
  ``fmt % (prefix, *values, ts)``; rows with fields left out use a format cached per pattern of
  present fields.  Its text is exactly ``repr``'s.
- ``compiled=True`` (or ``PEDF_LP_ENCODER=compiled`` in the environment): one numba kernel per batch
  (:mod:`gateway.sinks._lp_kernels`), 3–5× faster on full-precision doubles, but importing numba costs
  ~60 MB of resident memory, so the gateway does not load it unless asked
  (benchmarks/bench_pipeline.py measures both).

Rows of series with string fields, rare, are formatted by :meth:`LineEncoder.encode_row`, the plain
reference both encoders are tested against.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import Literal, Protocol

import numpy as np

from gateway.series import SeriesKey

_NAME_FIX = str.maketrans({"\n": " ", "\r": " ", "\\": "/"})
_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_INT64_LIMIT = 9.223372036854775e18  # largest float below 2**63
_DIVISOR = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_SPEC = {"float": "%r", "int": "%di", "bool": "%s"}
_MASKED_CACHE = 256  # formats kept per series for rows with some fields left out
ENV_ENCODER = "PEDF_LP_ENCODER"


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


@dataclass(slots=True)
class _Layout:
    """What a series' fields decide, shared by every series with the same fields (a profile's devices)."""

    keys: tuple[str, ...]  # "field_key=" per field, escaped
    kinds: tuple[str, ...]
    fmt: str | None  # "%s" (the prefix) + "key=%r,…" + " %d"; None when there is a string field
    fmt_b: bytes | None  # the same as bytes: a write body is built without a str join and encode
    bools: tuple[int, ...]  # positions of bool fields (written true/false through %s)
    ints: tuple[int, ...]  # positions of int fields (range-checked)
    masked: dict[bytes, tuple[str, bytes]] = field(default_factory=dict)  # formats by present fields


@dataclass(slots=True)
class _Plan:
    index: int  # position in the compiled kernel's tables, -1 when not there (string field, or pure Python)
    prefix: str  # "measurement,tag=value "
    prefix_b: bytes
    layout: _Layout


def _fmt(keys: Iterable[str], kinds: Iterable[str]) -> str:
    """A %-format of one line, the prefix as its first argument; the keys' own ``%`` signs are doubled."""
    body = ",".join(k.replace("%", "%%") + _SPEC[kind] for k, kind in zip(keys, kinds, strict=True))
    return f"%s{body} %d"


def _use_compiled(compiled: bool | None) -> bool:
    if compiled is not None:
        return compiled
    choice = os.environ.get(ENV_ENCODER, "python").strip().lower()
    if choice not in ("python", "compiled"):
        raise ValueError(f"{ENV_ENCODER} must be 'python' or 'compiled', not {choice!r}")
    return choice == "compiled"


class LineEncoder:
    """Encode journal rows for the series ``key_lookup`` names; timestamps in ``precision``."""

    def __init__(self, key_lookup: Callable[[int], SeriesKey],
                 precision: Literal["ns", "us", "ms", "s"] = "ns", *, compiled: bool | None = None) -> None:
        if precision not in _DIVISOR:
            raise ValueError(f"precision must be one of {sorted(_DIVISOR)}")
        self.key_lookup = key_lookup
        self.precision = precision
        self._divisor = _DIVISOR[precision]
        self._plans: dict[int, _Plan] = {}
        self._layouts: dict[tuple[tuple[str, ...], tuple[str, ...]], _Layout] = {}
        self.compiled = _use_compiled(compiled)
        self._tables = None
        if self.compiled:
            from gateway.sinks._lp_kernels import CompiledTables

            self._tables = CompiledTables()

    def _plan(self, series_id: int) -> _Plan:
        plan = self._plans.get(series_id)
        if plan is not None:
            return plan
        key = self.key_lookup(series_id)
        tags = "".join(f",{escape_key(k)}={escape_key(v)}" for k, v in key.tags if k and v)
        prefix = f"{escape_measurement(key.measurement)}{tags} "
        layout = self._layouts.get((key.fields, key.kinds))
        if layout is None:
            kinds = tuple(key.kinds)
            keys = tuple(escape_key(f) + "=" for f in key.fields)
            fmt = None if "str" in kinds else _fmt(keys, kinds)
            layout = self._layouts[(key.fields, key.kinds)] = _Layout(
                keys, kinds, fmt, None if fmt is None else fmt.encode(),
                tuple(i for i, k in enumerate(kinds) if k == "bool"),
                tuple(i for i, k in enumerate(kinds) if k == "int"))
        index = -1
        if self._tables is not None and layout.fmt is not None:
            index = self._tables.add(prefix, layout.keys, layout.kinds)
        plan = self._plans[series_id] = _Plan(index, prefix, prefix.encode(), layout)
        return plan

    def forget(self, series_id: int) -> None:
        """Drop a cached prefix (after a series is renamed); a compiled table entry stays unused."""
        self._plans.pop(series_id, None)

    def _plans_of(self, rows: Sequence[EncodableRow]) -> list[_Plan]:
        get = self._plans.get
        return [get(r.series_id) or self._plan(r.series_id) for r in rows]

    @staticmethod
    def _flat_values(rows: Sequence[EncodableRow], widths: Sequence[int], size: int) -> np.ndarray:
        """All rows' values in one float64 array; journal rows are joined straight from their blobs."""
        bases = [r.values.base for r in rows]
        if all(type(b) is bytes for b in bases):
            blob = b"".join(bases)
            if len(blob) == 8 * size:
                return np.frombuffer(blob, dtype=np.float64)
        values = [r.values if w else r.values[:0] for r, w in zip(rows, widths, strict=True)]
        flat = np.concatenate(values).astype(np.float64, copy=False)
        if len(flat) != size:
            raise ValueError("a row's values do not match its series' fields")
        return flat

    # -- pure Python -----------------------------------------------------------------------------
    def _python_lines(self, rows: Sequence[EncodableRow], as_bytes: bool) -> list:
        """One line per row with a field left: ``bytes`` lines for a write body, else ``str``."""
        plans = self._plans_of(rows)
        widths = [len(p.layout.kinds) for p in plans]
        ends = np.cumsum(widths)
        flat = self._flat_values(rows, widths, int(ends[-1]))
        finite = np.isfinite(flat)
        bad_rows: frozenset[int] | tuple[()] = ()
        if not finite.all():
            bad_rows = frozenset(np.searchsorted(ends, np.flatnonzero(~finite), side="right").tolist())
        true, false = (b"true", b"false") if as_bytes else ("true", "false")
        div = self._divisor
        lines: list = []
        append = lines.append
        start = 0
        for i, (row, plan) in enumerate(zip(rows, plans, strict=True)):
            layout = plan.layout
            stop = start + len(layout.kinds)
            vals = row.values.tolist()  # per row: a batch's worth of float objects never lives at once
            fmt = layout.fmt_b if as_bytes else layout.fmt
            ts = row.ts_ns if div == 1 else row.ts_ns // div
            if fmt is None or row.texts is not None or (layout.ints and not _ints_fit(vals, layout.ints)):
                line = self._general(plan, vals, row.texts, ts)
                if line is not None:
                    append(line.encode() if as_bytes else line)
            elif i in bad_rows:
                mask = finite[start:stop].tobytes()
                pair = layout.masked.get(mask) or self._masked_fmt(layout, mask)
                if pair[0]:
                    for j in layout.bools:
                        vals[j] = true if vals[j] else false
                    append(pair[as_bytes] % (plan.prefix_b if as_bytes else plan.prefix, *compress(vals, mask), ts))
            else:
                for j in layout.bools:
                    vals[j] = true if vals[j] else false
                append(fmt % (plan.prefix_b if as_bytes else plan.prefix, *vals, ts))
            start = stop
        return lines

    @staticmethod
    def _masked_fmt(layout: _Layout, mask: bytes) -> tuple[str, bytes]:
        """The formats (str, bytes) of a row whose present fields are ``mask`` (empty when none is)."""
        if len(layout.masked) >= _MASKED_CACHE:
            layout.masked.clear()
        keys = list(compress(layout.keys, mask))
        fmt = _fmt(keys, compress(layout.kinds, mask)) if keys else ""
        pair = layout.masked[mask] = (fmt, fmt.encode())
        return pair

    # -- compiled --------------------------------------------------------------------------------
    def _run_kernel(self, rows: Sequence[EncodableRow]) -> tuple[np.ndarray, np.ndarray, int, list[_Plan]]:
        tables = self._tables
        assert tables is not None
        plans = self._plans_of(rows)
        n = len(rows)
        # a row with texts (exact integers beyond 2^53) is left to Python, like one with string fields
        index = np.fromiter([-1 if r.texts is not None else p.index for r, p in zip(rows, plans, strict=True)],
                            dtype=np.int64, count=n)
        width = tables.widths(index)
        starts = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(width, out=starts[1:])
        flat = self._flat_values(rows, width.tolist(), int(starts[-1]))
        ts = np.fromiter([r.ts_ns for r in rows], dtype=np.int64, count=n) // self._divisor
        out, line_end, pos = tables.run(flat, starts, ts, index)
        return out, line_end, pos, plans

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

    # -- public ----------------------------------------------------------------------------------
    def encode_lines_bytes(self, rows: Iterable[EncodableRow]) -> bytes:
        """The body of a write: one line per row that has a field left, joined by newlines."""
        rows = rows if isinstance(rows, Sequence) else list(rows)
        if not rows:
            return b""
        if not self.compiled:
            return b"\n".join(self._python_lines(rows, True))
        out, line_end, pos, plans = self._run_kernel(rows)
        if (line_end == -2).any():
            return "\n".join(self._merge(rows, plans, out, line_end)).encode()
        return out[:max(pos - 1, 0)].tobytes()

    def encode_rows(self, rows: Iterable[EncodableRow]) -> list[str]:
        """One line per row that has at least one field to write; NaN and ±inf fields are left out."""
        rows = rows if isinstance(rows, Sequence) else list(rows)
        if not rows:
            return []
        if not self.compiled:
            return self._python_lines(rows, False)
        out, line_end, pos, plans = self._run_kernel(rows)
        if not (line_end == -2).any():
            return out[:pos - 1].tobytes().decode().split("\n") if pos else []
        return self._merge(rows, plans, out, line_end)

    def encode_row(self, row: EncodableRow) -> str | None:
        """One row formatted field by field with ``repr`` for floats: the reference for both encoders."""
        plan = self._plan(row.series_id)
        return self._general(plan, row.values.tolist(), row.texts, row.ts_ns // self._divisor)

    @staticmethod
    def _general(plan: _Plan, vals: Sequence[float], texts: Sequence[str | None] | None,
                 ts: int) -> str | None:
        parts = []
        for i, (key, kind, v) in enumerate(zip(plan.layout.keys, plan.layout.kinds, vals, strict=True)):
            if kind == "str":
                text = None if texts is None else texts[i]
                if text is not None:
                    parts.append(f'{key}"{escape_string_field(text)}"')
            elif v - v != 0.0:  # NaN or ±inf: not reported
                continue
            elif kind == "float":
                parts.append(key + repr(v))
            elif kind == "int":
                exact = None if texts is None else texts[i]
                if exact is not None and _exact_int(exact):
                    parts.append(f"{key}{exact}i")
                elif -_INT64_LIMIT < v < _INT64_LIMIT:
                    parts.append(f"{key}{int(v)}i")
            else:
                parts.append(key + ("true" if v else "false"))
        if not parts:
            return None
        return f"{plan.prefix}{','.join(parts)} {ts}"


def _exact_int(text: str) -> bool:
    """True when ``text`` is the decimal of an int64 (the exact value of a field beyond 2^53)."""
    return text.isascii() and text.lstrip("-").isdigit() and -(2**63) <= int(text) < 2**63


def _ints_fit(vals: list[float], ints: tuple[int, ...]) -> bool:
    """True when every present int field is inside the int64 range (else the general path leaves it out)."""
    for j in ints:
        v = vals[j]
        if v == v and not -_INT64_LIMIT < v < _INT64_LIMIT and v - v == 0.0:
            return False
    return True
