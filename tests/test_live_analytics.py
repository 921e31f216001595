"""``pedf run`` with an ``analytics:`` section: every closed interval's energy_kpi, emissions and
flexibility reach a real influxd through the journal, consistent with the readings stored beside them."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from tests.harness import GatewayProcess, SimulatorProcess, wait_until, write_site
from tests.processes import free_port
from tests.servers import InfluxD
from tests.test_analyze import ANALYTICS, EAST_2022, NOON, RESIDUAL_2022, SIM_DEVICES, counter_at

pytestmark = pytest.mark.services

STEP_S = 5


def test_live_kpis_of_every_interval_reach_influxd(tmp_path: Path, influxd: InfluxD) -> None:
    influxd.create_database("pedf")
    devices = [dict(d, port=free_port()) for d in SIM_DEVICES]
    api_port = free_port()
    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    analytics = dict(ANALYTICS, interval_s=STEP_S,
                     emissions=dict(ANALYTICS["emissions"], certificates_mwh={"b": {month: 0.02}}))
    site = write_site(
        tmp_path / "site.yaml", devices, journal=tmp_path / "journal.db", api_port=api_port, interval_s=0.2,
        sinks=[{"type": "influxdb_v1", "name": "influx", "url": influxd.url, "database": "pedf", "max_age_s": 0.2}],
        analytics=analytics,
    )

    def complete_kpis() -> list[dict]:
        rows = influxd.query("SELECT * FROM energy_kpi", db="pedf")
        return [r for r in rows if r.get("complete_intervals") == 1]

    with SimulatorProcess(tmp_path, devices, speed=120, extra=NOON), GatewayProcess(tmp_path, site, api_port) as gw:
        wait_until(lambda: len(complete_kpis()) >= 3, 45, what="three complete intervals in influxd")
        time.sleep(1.0)
        assert gw.terminate() == 0
    kpis = complete_kpis()
    assert {r["period"] for r in kpis} == {"PT5S"} and {r["site"] for r in kpis} == {"t"}
    readings = influxd.query("SELECT e_import_kwh FROM meter WHERE device = 'grid'", db="pedf")
    ts = np.array([r["time"] for r in readings], dtype=np.int64)
    values = np.array([r["e_import_kwh"] for r in readings], dtype=np.float64)
    step, tol = STEP_S * 10**9, STEP_S * 10**8
    for row in kpis:
        assert row["time"] % step == 0  # aligned to the wall clock, labelled by the interval start
        expected = counter_at(ts, values, row["time"] + step, tol) - counter_at(ts, values, row["time"], tol)
        assert expected > 0
        assert row["grid_import_kwh"] == pytest.approx(expected, rel=1e-9)
        load = row["load_ac_kwh"] + row["load_dc_kwh"]
        assert row["load_kwh"] == pytest.approx(load)
        assert row["self_sufficiency_ratio"] == pytest.approx(1 - row["grid_import_kwh"] / load)
    emissions = {r["time"]: r for r in influxd.query("SELECT * FROM emissions", db="pedf")}
    covered = 0.0
    for row in kpis:
        em = emissions[row["time"]]
        assert em["location_factor"] == "mee_nbs_grid_average/east/2022" and em["matching"] == "monthly"
        assert em["grid_import_kwh"] == pytest.approx(row["grid_import_kwh"])
        assert em["scope2_location_kg"] == pytest.approx(row["grid_import_kwh"] * EAST_2022)
        assert em["scope2_market_kg"] == pytest.approx(
            (row["grid_import_kwh"] - em["certificates_covered_kwh"]) * RESIDUAL_2022)
        covered += em["certificates_covered_kwh"]
    all_covered = sum(r.get("certificates_covered_kwh") or 0.0 for r in emissions.values())
    assert covered > 0 and all_covered <= 20.0 + 1e-9  # 0.02 MWh for the month, used up in time order
    # pedf analyze over InfluxQL reads the same readings back and agrees with the live intervals
    first, last = min(r["time"] for r in kpis), max(r["time"] for r in kpis) + step
    live = [r for r in influxd.query("SELECT * FROM energy_kpi", db="pedf") if first <= r["time"] < last]
    period = [datetime.fromtimestamp(t / 1e9, ZoneInfo("UTC")).isoformat() for t in (first, last)]
    out = tmp_path / "out"
    run = subprocess.run([str(Path(sys.executable).with_name("pedf")), "analyze", str(site), "--from", period[0],
                          "--to", period[1], "--source", "influx", "--influx-url", influxd.url, "--influx-db", "pedf",
                          "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    with (out / "energy_balance_daily.csv").open() as fh:
        days = list(csv.DictReader(fh))
    assert sum(float(d["complete_intervals"]) for d in days) == sum(r.get("complete_intervals") or 0 for r in live)
    assert sum(float(d["grid_import_kwh"]) for d in days) == pytest.approx(
        sum(r.get("grid_import_kwh") or 0.0 for r in live), rel=1e-9)
    flex = influxd.query("SELECT * FROM flexibility", db="pedf")
    assert len(flex) >= 3
    for row in flex:
        assert row["time"] % step == 0  # at the interval's end
        soc = row["soc_pct"]
        assert 10 <= soc <= 95
        assert row["p_up_1h_kw"] == pytest.approx(min(50.0, (soc - 10) / 100 * 200 * 0.95))
        assert row["p_down_1h_kw"] == pytest.approx(min(50.0, (95 - soc) / 100 * 200 / 0.95))
        assert row["e_up_15min_kwh"] == pytest.approx(row["p_up_15min_kw"] * 0.25)
