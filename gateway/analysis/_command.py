"""``pedf analyze`` end to end: load a period's readings, compute, write tables, plots and the report,
optionally write the results back to InfluxDB.

Readings come from the local journal, a CSV/Parquet file or InfluxDB 1.x (:mod:`gateway.analysis._loaders`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from gateway.analysis import _loaders as loaders
from gateway.analysis._batch import analyze, parse_time, write_records
from gateway.analysis._channels import DeviceReadings
from gateway.analysis._kpis import factor_choice
from gateway.analysis._loaders import InfluxSource, Progress
from gateway.analysis._report import render
from gateway.analysis._results import Analysis
from gateway.config import InfluxV1Sink, Site
from gateway.errors import AnalysisInputError
from gateway.journal import JournalReader
from gateway.sinks import InfluxV1Writer, LineWriter, make_writer


def _influx_source(site: Site, url: str | None, database: str | None):
    if url:
        return InfluxSource(url, database or "pedf")
    sink = next((s for s in site.config.sinks if isinstance(s, InfluxV1Sink)), None)
    if sink is None:
        raise AnalysisInputError("--source influx needs --influx-url or an influxdb_v1 sink in the site file")
    return InfluxSource(sink.url, database or sink.database, sink.username,
                        sink.password.get_secret_value() if sink.password else None)


async def load_readings(site: Site, source: str, start_ns: int, end_ns: int, *, journal_path: str | None = None,
                        influx_url: str | None = None, influx_db: str | None = None) -> list[DeviceReadings]:
    """Readings of the period from ``journal``, ``csv:PATH``, ``parquet:PATH`` or ``influx``."""
    kind, _, path = source.partition(":")
    if kind == "journal":
        path = Path(journal_path or site.config.journal.path)
        if not path.is_file():
            raise AnalysisInputError(f"no journal at {path}")
        with JournalReader(path) as reader:  # read-only: a running gateway may be writing it
            return loaders.load_reader(reader, site, start_ns, end_ns)
    if kind in ("csv", "parquet"):
        if not path:
            raise AnalysisInputError(f"--source {kind}:PATH needs a path")
        return loaders.load_table(path, site, start_ns, end_ns)
    if kind == "influx":
        return await loaders.load_influx(_influx_source(site, influx_url, influx_db), site, start_ns, end_ns)
    raise AnalysisInputError(f"unknown source {source!r} (journal, csv:PATH, parquet:PATH, influx)")


def _writers(site: Site, influx_url: str | None, influx_db: str | None) -> list[LineWriter]:
    if influx_url:
        return [InfluxV1Writer(influx_url, influx_db or "pedf")]
    writers = [make_writer(s) for s in site.config.sinks]
    if not writers:
        raise AnalysisInputError("--write-influx needs --influx-url or an InfluxDB sink in the site file")
    return writers


async def run_analyze(site: Site, *, start: str, end: str | None, source: str = "journal", out: str = "analysis",
                      fmt: str = "md", regime: str | None = None, year: int | None = None,
                      residual: str | None = None, write_influx: bool = False, journal_path: str | None = None,
                      influx_url: str | None = None, influx_db: str | None = None,
                      interval_s: float | None = None, p_max_kw: float | None = None) -> Analysis:
    """What ``pedf analyze`` does: load, compute, write tables, plots and the report, write back."""
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
