"""``pedf analyze``: a period's energy balance, emissions and flexibility from stored readings.

Readings come from the local journal, a CSV/Parquet file or InfluxDB 1.x (:mod:`gateway.loaders`);
channels per building from :mod:`gateway.channels`; KPIs from :mod:`gateway.kpis`. Results are
tables (CSV), a report (Markdown or HTML) with PNG plots (:mod:`gateway.report`), and, with
``--write-influx``, the measurements ``energy_kpi`` (per site-local day), ``emissions`` (per day) and
``flexibility`` (per interval) written to InfluxDB with the project's line-protocol encoder — the
same measurements the live component writes per interval, told apart by the ``period`` tag.

Days and months are site-local (DOMAIN.md §7 "Intervals"); intervals are labelled by their start.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from gateway.analytics_config import AnalyticsSection, BatterySection
from gateway.channels import BuildingChannels, DeviceReadings, battery_soc, building_channels
from gateway.kpis import (
    CertificatePool,
    FactorChoice,
    balance_fields,
    emission_fields,
    envelope_fields,
    local_month,
    period_label,
    series_key,
)
from gateway.series import Sample
from gateway.site import Site


@dataclass(frozen=True)
class Record:
    """One result row as a time-series point: measurement, tags, time [ns], float fields."""

    measurement: str
    tags: dict[str, str]
    ts_ns: int
    fields: dict[str, float]


@dataclass
class Analysis:
    site: str
    tz: str
    start_ns: int
    end_ns: int
    interval_ns: int
    factors: FactorChoice
    channels: dict[str, BuildingChannels]
    daily: list[dict] = field(default_factory=list)  # one row per building and local day
    monthly_emissions: list[dict] = field(default_factory=list)
    flexibility: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # building → fields at grid points
    flex_points_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    horizons_h: list[float] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_time(text: str, tz: str) -> int:
    """A date (local midnight) or ISO 8601 time; without an offset it is the site's local time."""
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(tz))
    return int(value.timestamp()) * 10**9 + value.microsecond * 1000


def local_days(start_ns: int, end_ns: int, tz: str) -> list[tuple[str, int, int]]:
    """Site-local days overlapping [start, end): (date, first ns, end ns), clipped to the period."""
    zone = ZoneInfo(tz)
    day = dt.datetime.fromtimestamp(start_ns / 1e9, zone).date()
    out = []
    while True:
        a = int(dt.datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()) * 10**9
        nxt = day + dt.timedelta(days=1)
        b = int(dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).timestamp()) * 10**9
        if a >= end_ns:
            return out
        out.append((day.isoformat(), max(a, start_ns), min(b, end_ns)))
        day = nxt


def analyze(site: Site, readings: list[DeviceReadings], start_ns: int, end_ns: int, factors: FactorChoice, *,
            section: AnalyticsSection | None = None, interval_ns: int | None = None,
            p_max_kw: float | None = None) -> Analysis:
    """Every table of the report for the period [start_ns, end_ns) (grid aligned to ``start_ns``)."""
    tz = site.config.site.timezone
    interval_ns = interval_ns or (section.interval_ns if section else 15 * 60 * 10**9)
    p_max_kw = p_max_kw if p_max_kw is not None else (section.p_max_kw if section else None)
    n = (end_ns - start_ns) // interval_ns
    channels = {b.name: building_channels(readings, b.name, start_ns, n, interval_ns, p_max_kw=p_max_kw)
                for b in site.config.buildings}
    result = Analysis(site.name, tz, start_ns, start_ns + n * interval_ns, interval_ns, factors, channels)
    for name, ch in channels.items():
        if not ch.devices["grid_import"]:
            result.notes.append(f"{name}: no grid_meter readings: its balance and emissions are unknown")
        if ch.n_resets:
            result.notes.append(f"{name}: {ch.n_resets} counter reset(s) (interval energy is a lower bound there)")
        if ch.gap_energy_kwh:
            result.notes.append(f"{name}: {ch.gap_energy_kwh:.3f} kWh across gaps in the readings, "
                                "reported apart (intervals touching a gap are missing)")
    _daily(site, result, section)
    _flexibility(site, readings, result, section)
    return result


def _daily(site: Site, result: Analysis, section: AnalyticsSection | None) -> None:
    suff = section.self_sufficiency if section else "import"
    tariff = None
    if section is not None and section.tariff:
        from analytics import load_tariff

        tariff = load_tariff(section.tariff)
        result.notes.append(f"time-of-use split of grid import with tariff {tariff.name}"
                            + (" - an EXAMPLE tariff, not the site's own" if tariff.example else ""))
    monthly: dict[tuple[str, str], dict] = {}
    for building, ch in result.channels.items():
        area = site.building(building).floor_area_m2
        pool = CertificatePool(result.factors, building)
        for day, a, b in local_days(result.start_ns, result.end_ns, result.tz):
            sel = slice((a - ch.start_ns) // ch.interval_ns, (b - ch.start_ns) // ch.interval_ns)
            if sel.stop <= sel.start:
                continue
            row = {"building": building, "day": day, "start_ns": a}
            kpi = balance_fields(ch, sel, area, suff)
            if tariff is not None:
                kpi |= tou_fields(ch, sel, tariff, result.tz)
            em = emission_fields(ch, sel, result.factors, pool, result.tz)
            row |= kpi | {k: v for k, v in em.items() if k != "grid_import_kwh"}
            result.daily.append(row)
            tags = {"site": result.site, "building": building, "period": "P1D"}
            result.records.append(Record("energy_kpi", tags, a, kpi))
            result.records.append(Record("emissions", tags | result.factors.tags(building), a, em))
            month = monthly.setdefault((building, local_month(a, result.tz)), {
                "building": building, "month": local_month(a, result.tz), "grid_import_kwh": 0.0,
                "scope2_location_kg": 0.0, "scope2_market_kg": 0.0, "certificates_covered_kwh": 0.0,
                "exported_pv_avoided_kg": 0.0, "missing_intervals": 0.0,
                **result.factors.tags(building)})
            for k in ("grid_import_kwh", "scope2_location_kg", "scope2_market_kg", "certificates_covered_kwh",
                      "exported_pv_avoided_kg", "missing_intervals"):
                month[k] += em[k]
    result.monthly_emissions = list(monthly.values())
    if any(m["scope2_market_kg"] > m["scope2_location_kg"] for m in result.monthly_emissions):
        result.notes.append(
            "market-based exceeds location-based in some months: China publishes no regional residual factor, "
            f"so import not covered by certificates counts at {result.factors.residual.label} "
            f"({result.factors.residual.kg_per_kwh} kg/kWh) (DOMAIN.md §7)")


def tou_fields(ch: BuildingChannels, sel: slice, tariff, tz: str) -> dict[str, float]:
    """Grid import per tariff period [kWh] and its cost [CNY] (DOMAIN.md §7 "Time of use", pro rata)."""
    from analytics import tou_split

    split = tou_split(ch.ts_ns[sel], ch.energy_kwh["grid_import"][sel], ch.interval_ns, tariff, tz=tz)
    out = {f"grid_import_{p}_kwh": float(e) for p, e in zip(split.periods, split.energy_kwh, strict=True)}
    out["grid_import_cost_cny"] = float(np.sum(split.cost_cny))
    return out


def _flexibility(site: Site, readings: list[DeviceReadings], result: Analysis,
                 section: AnalyticsSection | None) -> None:
    specs: dict[str, BatterySection] = dict(section.batteries) if section else {}
    if not specs:
        result.notes.append("no battery specs in the analytics: section: no flexibility envelope")
        return
    result.horizons_h = list(section.horizons_h) if section else []
    n = (result.end_ns - result.start_ns) // result.interval_ns
    points = result.start_ns + np.arange(n, dtype=np.int64) * result.interval_ns
    result.flex_points_ns = points
    label = period_label(result.interval_ns)
    for b in site.config.buildings:
        mine = {d.name: specs[d.name] for d in site.devices if d.building == b.name and d.name in specs}
        if not mine:
            continue
        soc = {name: battery_soc(readings, name, points, result.interval_ns) for name in mine}
        fields = envelope_fields(soc, mine, result.horizons_h)
        result.flexibility[b.name] = fields
        tags = {"site": result.site, "building": b.name, "period": label}
        for k, t in enumerate(points):
            values = {f: float(v[k]) for f, v in fields.items() if not np.isnan(v[k])}
            if "soc_pct" in values:
                result.records.append(Record("flexibility", tags, int(t), values))


def records_as_samples(records: list[Record]) -> tuple[dict[int, object], list[Sample]]:
    """Records as (series key by id, samples) for :class:`gateway.lineprotocol.LineEncoder`."""
    ids: dict[object, int] = {}
    keys: dict[int, object] = {}
    samples = []
    for r in records:
        names = sorted(r.fields)
        key = series_key(r.measurement, r.tags, names)
        sid = ids.setdefault(key, len(ids) + 1)
        keys[sid] = key
        samples.append(Sample(sid, r.ts_ns, np.array([r.fields[f] for f in names], dtype=np.float64)))
    return keys, samples


async def write_records(records: list[Record], writers: list, batch: int = 5000) -> int:
    """Encode with the project's line-protocol encoder and write to every writer; returns lines written."""
    from gateway.lineprotocol import LineEncoder

    keys, samples = records_as_samples(records)
    encoder = LineEncoder(keys.__getitem__)
    lines = 0
    for i in range(0, len(samples), batch):
        body = encoder.encode_lines_bytes(samples[i:i + batch])
        lines += body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)
        for w in writers:
            await w.write(body)
    for w in writers:
        await w.close()
    return lines


def output_paths(out: Path) -> dict[str, Path]:
    return {"daily": out / "energy_balance_daily.csv", "monthly": out / "emissions_monthly.csv",
            "flex": out / "flexibility_envelope.csv", "flex_summary": out / "flexibility_summary.csv"}


def _influx_source(site: Site, url: str | None, database: str | None):
    from gateway.config import InfluxV1Sink
    from gateway.loaders import InfluxSource

    if url:
        return InfluxSource(url, database or "pedf")
    sink = next((s for s in site.config.sinks if isinstance(s, InfluxV1Sink)), None)
    if sink is None:
        raise ValueError("--source influx needs --influx-url or an influxdb_v1 sink in the site file")
    return InfluxSource(sink.url, database or sink.database, sink.username,
                        sink.password.get_secret_value() if sink.password else None)


async def load_readings(site: Site, source: str, start_ns: int, end_ns: int, *, journal_path: str | None = None,
                        influx_url: str | None = None, influx_db: str | None = None) -> list[DeviceReadings]:
    """Readings of the period from ``journal``, ``csv:PATH``, ``parquet:PATH`` or ``influx``."""
    from gateway import loaders

    kind, _, path = source.partition(":")
    if kind == "journal":
        from gateway.journal import Journal

        path = Path(journal_path or site.config.journal.path)
        if not path.is_file():
            raise ValueError(f"no journal at {path}")
        journal = Journal(path)
        await journal.open()
        try:
            return await loaders.load_journal(journal, site, start_ns, end_ns)
        finally:
            await journal.close()
    if kind in ("csv", "parquet"):
        if not path:
            raise ValueError(f"--source {kind}:PATH needs a path")
        return loaders.load_table(path, site, start_ns, end_ns)
    if kind == "influx":
        return await loaders.load_influx(_influx_source(site, influx_url, influx_db), site, start_ns, end_ns)
    raise ValueError(f"unknown source {source!r} (journal, csv:PATH, parquet:PATH, influx)")


def _writers(site: Site, influx_url: str | None, influx_db: str | None) -> list:
    from gateway.service import make_writer
    from gateway.sinks.influx_v1 import InfluxV1Writer

    if influx_url:
        return [InfluxV1Writer(influx_url, influx_db or "pedf")]
    writers = [make_writer(s) for s in site.config.sinks]
    if not writers:
        raise ValueError("--write-influx needs --influx-url or an InfluxDB sink in the site file")
    return writers


async def run_analyze(site: Site, *, start: str, end: str | None, source: str = "journal", out: str = "analysis",
                      fmt: str = "md", regime: str | None = None, year: int | None = None,
                      residual: str | None = None, write_influx: bool = False, journal_path: str | None = None,
                      influx_url: str | None = None, influx_db: str | None = None,
                      interval_s: float | None = None, p_max_kw: float | None = None) -> Analysis:
    """What ``pedf analyze`` does: load, compute, write tables, plots and the report, write back."""
    import sys

    from gateway.kpis import factor_choice
    from gateway.loaders import Progress
    from gateway.report import render

    tz = site.config.site.timezone
    section = site.config.analytics
    factors = factor_choice(site, section, regime=regime, year=year, residual=residual)
    start_ns = parse_time(start, tz)
    end_ns = parse_time(end, tz) if end else time.time_ns()
    interval_ns = round(interval_s * 1e9) if interval_s else (section.interval_ns if section else 900 * 10**9)
    steps = Progress(4 if write_influx else 3, "analyze")
    # the readings that open the first interval and close the last one lie just outside the period
    margin = 2 * interval_ns
    readings = await load_readings(site, source, start_ns - margin, end_ns + margin, journal_path=journal_path,
                                   influx_url=influx_url, influx_db=influx_db)
    steps.update(1, f"{sum(r.ts_ns.size for r in readings)} readings of {len(readings)} devices")
    result = analyze(site, readings, start_ns, end_ns, factors, section=section,
                     interval_ns=interval_ns, p_max_kw=p_max_kw)
    steps.update(1, "computed")
    report = render(result, Path(out), fmt, source)
    steps.update(1, f"report {report}")
    if write_influx:
        lines = await write_records(result.records, _writers(site, influx_url, influx_db))
        steps.update(1, f"{lines} lines written (energy_kpi, emissions, flexibility)")
    print(f"report: {report}", file=sys.stdout)
    return result
