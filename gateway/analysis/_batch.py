"""``pedf analyze``: a period's energy balance, emissions and flexibility from stored readings.

Readings come from the local journal, a CSV/Parquet file or InfluxDB 1.x (:mod:`gateway.analysis._loaders`);
channels per building from :mod:`gateway.analysis._channels`; KPIs from :mod:`gateway.analysis._kpis`. Results are
tables (CSV), a report (Markdown or HTML) with PNG plots (:mod:`gateway.analysis._report`), and, with
``--write-influx``, the measurements ``energy_kpi`` (per site-local day), ``emissions`` (per day) and
``flexibility`` (per interval) written to InfluxDB with the project's line-protocol encoder — the
same measurements the live component writes per interval, told apart by the ``period`` tag.

Days and months are site-local (DOMAIN.md §7 "Intervals"); intervals are labelled by their start.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from analytics.localtime import local_date, local_day_start_ns, local_month, parse_local
from gateway.analysis._channels import BuildingChannels, DeviceReadings, battery_soc, building_channels
from gateway.analysis._kpis import (
    CertificatePool,
    FactorSet,
    balance_fields,
    emission_fields,
    envelope_fields,
    period_label,
    series_key,
)
from gateway.analysis._results import Analysis, Record
from gateway.config import AnalyticsSection, BatterySection, Site
from gateway.errors import AnalysisInputError
from gateway.series import Sample
from gateway.sinks import LineEncoder


def parse_time(text: str, tz: str) -> int:
    """A date (local midnight) or ISO 8601 time; without an offset it is the site's local time."""
    try:
        return parse_local(text, tz)
    except ValueError as exc:
        raise AnalysisInputError(f"not a date or ISO 8601 time: {text!r}") from exc


def local_days(start_ns: int, end_ns: int, tz: str) -> list[tuple[str, int, int]]:
    """Site-local days overlapping [start, end): (date, first ns, end ns), clipped to the period."""
    day = local_date(start_ns, tz)
    out = []
    while True:
        a = local_day_start_ns(day, tz)
        nxt = day + dt.timedelta(days=1)
        b = local_day_start_ns(nxt, tz)
        if a >= end_ns:
            return out
        out.append((day.isoformat(), max(a, start_ns), min(b, end_ns)))
        day = nxt


def analyze(site: Site, readings: list[DeviceReadings], start_ns: int, end_ns: int, factors: FactorSet, *,
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
    """Records as (series key by id, samples) for :class:`gateway.sinks.LineEncoder`."""
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


