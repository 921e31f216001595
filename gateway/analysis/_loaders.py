"""Thin adapters that load device readings for the analytics: the local journal, CSV/Parquet files,
and InfluxDB 1.x through InfluxQL (DESIGN.md: ``analytics/`` loads nothing itself).

File format (CSV or Parquet), *long*: one reading per row, columns ``ts, building, device, role,
field, value``; or *wide*: ``ts, building, device, role`` and one column per field (``e_import_kwh``,
``soc_pct``, …). ``ts`` is an integer in ns since the epoch (UTC) or an ISO 8601 time (UTC when it
has no offset). ``building`` and ``role`` may be left out when the device is in the site file. The
counter wraps come from the site file's device points when the device is there.

InfluxQL: ``GET /query`` with ``chunked=true`` (InfluxDB 1.x HTTP API, "Query data with chunking",
https://docs.influxdata.com/influxdb/v1/tools/api/#query-http-endpoint), one query per day of the
period so that a long run shows its progress.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from drivers.balance import BALANCE_TERMS, SOC_FIELD
from gateway.analysis._channels import NEEDED_FIELDS, DeviceReadings, merge_readings
from gateway.config import Device, Site
from gateway.errors import AnalysisInputError
from gateway.journal import JournalReader

NS_PER_DAY = 86_400 * 10**9


class Progress:
    """A one-line progress bar on stderr: redrawn in place on a terminal, every 10 % otherwise."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.total, self.label, self.width = max(total, 1), label, width
        self.stream = stream or sys.stderr
        self.done = 0
        self._tty = self.stream.isatty()
        self._last_decile = -1
        self._t0 = time.monotonic()

    def update(self, n: int = 1, note: str = "") -> None:
        self.done = min(self.total, self.done + n)
        frac = self.done / self.total
        decile = int(frac * 10)
        if not self._tty and decile == self._last_decile and self.done < self.total:
            return
        self._last_decile = decile
        bar = "#" * int(frac * self.width)
        line = (f"{self.label} [{bar:<{self.width}}] {self.done}/{self.total} "
                f"{time.monotonic() - self._t0:5.1f} s {note}")
        self.stream.write(("\r" + line) if self._tty else line + "\n")
        if self._tty and self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


BALANCE_ROLES = frozenset(term.role for term in BALANCE_TERMS)


def device_wraps(device: Device | None) -> dict[str, float]:
    """Counter field → wrap [kWh] of a site device (``Point.counter_wrap``); float counters do not wrap."""
    if device is None:
        return {}
    s = device.section
    out = {}
    for p in device.points:
        wrap = p.counter_wrap(s.pt_ratio, s.ct_ratio)
        if wrap:
            out[p.name] = wrap
    return out


def load_reader(reader: JournalReader, site: Site, start_ns: int, end_ns: int) -> list[DeviceReadings]:
    """Readings of the site's devices from a journal: only the series of devices that feed the balance
    (or report a state of charge), only their balance fields, only the period's rows (the journal's
    time index)."""
    reader.refresh()
    devices = {d.name: d for d in site.devices}
    wanted: dict[int, list[str]] = {}
    for sid, key in list(reader.series.items()):
        tags = dict(key.tags)
        if tags.get("site") != site.name or not tags.get("device") or not tags.get("role"):
            continue
        fields = [f for f in key.fields if f in NEEDED_FIELDS and (tags["role"] in BALANCE_ROLES or f == SOC_FIELD)]
        if fields:
            wanted[sid] = fields
    out = []
    for sid, (ts, cols) in reader.interval(wanted, start_ns, end_ns).items():
        tags = dict(reader.series[sid].tags)
        out.append(DeviceReadings(tags.get("building", ""), tags["device"], tags["role"], ts, cols,
                                  device_wraps(devices.get(tags["device"]))))
    return merge_readings(out)


def _ts_column(column) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_timestamp(column.type):
        return pc.cast(column, pa.timestamp("ns", tz=column.type.tz)).cast(pa.int64()).to_numpy()
    if pa.types.is_integer(column.type):
        return column.to_numpy().astype(np.int64)
    text = [str(v).strip().replace(" ", "T") for v in column.to_pylist()]
    out = np.empty(len(text), dtype=np.int64)
    for i, t in enumerate(text):
        body, offset_ns = t.removesuffix("Z"), 0
        for sign in ("+", "-"):
            head, sep, tail = body.rpartition(sign)
            if sep and "T" in head and ":" in tail and len(tail) == 5:
                hours, minutes = tail.split(":")
                offset_ns = (1 if sign == "+" else -1) * (int(hours) * 3600 + int(minutes) * 60) * 10**9
                body = head
                break
        out[i] = np.datetime64(body, "ns").astype(np.int64) - offset_ns
    return out


def load_table(path: str | Path, site: Site, start_ns: int, end_ns: int) -> list[DeviceReadings]:
    """Readings from a CSV or Parquet file in the long or wide format of the module docstring."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    else:
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(path)
    names = set(table.column_names)
    for needed in ("ts", "device"):
        if needed not in names:
            raise AnalysisInputError(f"{path}: column {needed!r} is missing (columns: {sorted(names)})")
    ts = _ts_column(table.column("ts"))
    keep = (ts >= start_ns) & (ts < end_ns)
    device_col = np.array(table.column("device").to_pylist(), dtype=object)
    devices = {d.name: d for d in site.devices}

    def text(name: str) -> np.ndarray | None:
        return np.array(table.column(name).to_pylist(), dtype=object) if name in names else None

    building_col, role_col = text("building"), text("role")
    long = "field" in names
    field_col = text("field") if long else None
    values = table.column("value").to_numpy(zero_copy_only=False).astype(np.float64) if long else None
    out = []
    for name in sorted(set(device_col[keep])):
        rows = keep & (device_col == name)
        known = devices.get(name)
        first = int(np.flatnonzero(rows)[0])
        building = building_col[first] if building_col is not None else (known.building if known else None)
        role = role_col[first] if role_col is not None else (known.section.role if known else None)
        if not building or not role:
            raise AnalysisInputError(f"{path}: device {name!r} is not in the site file: give building and role columns")
        if long:
            fields = {}
            for f in sorted(set(field_col[rows]) & set(NEEDED_FIELDS)):
                sel = rows & (field_col == f)
                fields[f] = (ts[sel], values[sel])
            for f, (t, v) in fields.items():
                out.append(DeviceReadings(building, name, role, t, {f: v}, device_wraps(known)))
        else:
            cols = {f: table.column(f).to_numpy(zero_copy_only=False).astype(np.float64)[rows]
                    for f in NEEDED_FIELDS if f in names}
            out.append(DeviceReadings(building, name, role, ts[rows], cols, device_wraps(known)))
    return merge_readings(out)


@dataclass(frozen=True)
class InfluxSource:
    url: str
    database: str
    username: str | None = None
    password: str | None = None
    timeout_s: float = 60.0


def _quote(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def load_influx(source: InfluxSource, site: Site, start_ns: int, end_ns: int, *,
                      chunk_ns: int = NS_PER_DAY, progress: bool = True) -> list[DeviceReadings]:
    """Readings of the site's devices from InfluxDB 1.x, one chunked InfluxQL query per ``chunk_ns``."""
    import aiohttp

    fields = ", ".join(_quote(f) for f in NEEDED_FIELDS)
    devices = {d.name: d for d in site.devices}
    windows = [(a, min(a + chunk_ns, end_ns)) for a in range(start_ns, end_ns, chunk_ns)]
    bar = Progress(len(windows), "influx") if progress and len(windows) > 1 else None
    auth = aiohttp.BasicAuth(source.username, source.password or "") if source.username else None
    out: list[DeviceReadings] = []
    points = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=source.timeout_s), auth=auth) as http:
        for a, b in windows:
            q = (f"SELECT {fields} FROM /.*/ WHERE \"site\" = {_literal(site.name)} AND time >= {a} "
                 f"AND time < {b} GROUP BY \"building\", \"device\", \"role\"")
            params = {"db": source.database, "q": q, "epoch": "ns", "chunked": "true", "chunk_size": "10000"}
            async with http.get(source.url.rstrip("/") + "/query", params=params) as resp:
                if resp.status != 200:
                    raise AnalysisInputError(f"InfluxQL query failed: HTTP {resp.status}: {(await resp.text())[:500]}")
                async for raw in resp.content:
                    if raw.strip():
                        points += _collect(json.loads(raw), devices, out)
            if bar:
                bar.update(1, f"{points} rows")
    return merge_readings(out)


def _collect(message: dict, devices: dict[str, Device], out: list[DeviceReadings]) -> int:
    n = 0
    for result in message.get("results", []):
        if "error" in result:
            raise AnalysisInputError(f"InfluxQL error: {result['error']}")
        for series in result.get("series", []):
            tags = series.get("tags") or {}
            if not tags.get("device") or not tags.get("role"):
                continue
            cols = series["columns"]
            values = series["values"]
            ts = np.array([row[0] for row in values], dtype=np.int64)
            fields = {}
            for i, name in enumerate(cols[1:], start=1):
                col = np.array([np.nan if row[i] is None else float(row[i]) for row in values])
                if not np.all(np.isnan(col)):
                    fields[name] = col
            if fields:
                out.append(DeviceReadings(tags.get("building", ""), tags["device"], tags["role"], ts, fields,
                                          device_wraps(devices.get(tags["device"]))))
                n += ts.size
    return n
