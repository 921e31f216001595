"""The gateway's side of live analytics against a real worker process: the worker is ready (kernels
loaded) before ``start`` returns, an interval's records come back and land in the journal, a worker
that dies is replaced at the next close, and the gateway process never imports numba."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from gateway.config import load_site
from gateway.journal import Journal
from gateway.series import Sample
from gateway.service import LiveAnalytics
from tests.harness import write_site
from tests.test_analyze import ANALYTICS

pytestmark = pytest.mark.services  # starts the analytics worker process

INTERVAL_S = 60
T0 = 1_800_000_000 // INTERVAL_S * INTERVAL_S * 10**9  # an interval boundary (2027-01-15, UTC)


def site_file(tmp_path: Path) -> Path:
    devices = [{"name": "grid", "profile": "dtsu666", "role": "grid_meter", "port": 1},
               {"name": "hvac", "profile": "sdm630", "role": "ac_load", "port": 2}]
    return write_site(tmp_path / "site.yaml", devices, journal=tmp_path / "j.db", api_port=3,
                      analytics=dict(ANALYTICS, interval_s=INTERVAL_S, batteries={}))


async def store_readings(journal: Journal, site, minutes: int) -> None:
    """A reading every 10 s (only the one on a boundary is within the 10 % snap tolerance of a
    one-minute interval): the grid meter imports 3.6 kW, the load draws 3.6 kW."""
    for device in site.devices:
        sid = await journal.series_id(device.series_key(site.name))
        fields = journal.series(sid).fields
        samples = []
        for s in range(0, minutes * 60 + 1, 10):
            values = np.full(len(fields), np.nan)
            values[fields.index("e_import_kwh")] = 1000.0 + 0.001 * s
            if "e_export_kwh" in fields:
                values[fields.index("e_export_kwh")] = 50.0
            samples.append(Sample(sid, T0 + s * 10**9, values))
        await journal.append_many(samples)


async def kpi_rows(journal: Journal) -> list[dict[str, float]]:
    rows = []
    for arrays in await journal.query():
        key = journal.series(arrays.series_id)
        if key.measurement == "energy_kpi":
            rows += [dict(zip(key.fields, map(float, v), strict=True)) | {"ts_ns": int(t)}
                     for t, v in zip(arrays.ts_ns, arrays.values, strict=True)]
    return sorted(rows, key=lambda r: r["ts_ns"])


async def test_worker_computes_closes_and_is_replaced_when_it_dies(tmp_path: Path) -> None:
    site = load_site(site_file(tmp_path))
    async with Journal(tmp_path / "j.db", synchronous="NORMAL") as journal:
        await store_readings(journal, site, minutes=3)
        live = LiveAnalytics(site, journal)
        assert await live.start()
        assert live.last["warm_up_s"] > 0 and live.worker_starts == 1
        try:
            assert await live.close_interval(T0, T0 + INTERVAL_S * 10**9) >= 2  # energy_kpi, emissions
            os.kill(live._proc.pid, signal.SIGKILL)  # a worker that dies between closes
            await live._proc.wait()
            n = await live.close_interval(T0 + INTERVAL_S * 10**9, T0 + 2 * INTERVAL_S * 10**9)
        finally:
            await live.close()
        rows = await kpi_rows(journal)
    assert n >= 2 and live.worker_starts == 2 and live.intervals_done == 2 and live.errors == 0
    assert [r["ts_ns"] for r in rows] == [T0, T0 + INTERVAL_S * 10**9]
    for r in rows:
        assert r["complete_intervals"] == 1
        assert r["grid_import_kwh"] == pytest.approx(0.06)  # 3.6 kW for a minute
        assert r["load_ac_kwh"] == pytest.approx(0.06)


async def test_a_worker_that_cannot_start_is_an_error_not_a_crash(tmp_path: Path) -> None:
    site = load_site(site_file(tmp_path))
    async with Journal(tmp_path / "j.db", synchronous="NORMAL") as journal:
        live = LiveAnalytics(site, journal)
        live.journal = SimpleNamespace(path=tmp_path / "missing" / "j.db")  # the worker finds no journal
        assert await live.start() is False
        assert live.errors == 1 and "did not start" in live.last_error


def test_the_gateway_process_does_not_load_numba(tmp_path: Path) -> None:
    """Loading a site with an analytics: section (its factors are checked) and building its gateway
    loads no kernel: numba (~110 MB with its kernels) belongs to the worker."""
    code = ("import sys; from gateway.config import load_site; from gateway.service import Gateway; "
            "import gateway.cli, gateway.ingest, gateway.sinks; "
            f"site = load_site({str(site_file(tmp_path))!r}); Gateway(site); "
            "print(sorted(m for m in ('numba', 'llvmlite') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
