"""``pedf analyze``: hand-calculated balance and emissions from a CSV and a Parquet file, write-back to a
real influxd read by InfluxQL, and a journal filled by a real simulator + gateway run."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import yaml

from tests.harness import GatewayProcess, SimulatorProcess, write_site
from tests.processes import free_port
from tests.servers import InfluxD

pytestmark = pytest.mark.services

SHANGHAI = ZoneInfo("Asia/Shanghai")
PEDF = str(Path(sys.executable).with_name("pedf"))
WRAP_UINT32_001 = 2**32 * 0.01  # dc_converter e_charge_kwh: uint32 × 0.01 kWh
T0 = int(datetime(2026, 11, 1, 16, 0, tzinfo=UTC).timestamp()) * 10**9  # 2026-11-02 00:00 Asia/Shanghai
STEP = 300 * 10**9
DEVICES = [  # name, role, profile, {field: (start value, kW)}
    ("grid", "grid_meter", "dtsu666", {"e_import_kwh": (1000.0, 20.0), "e_export_kwh": (50.0, 1.0)}),
    ("inv", "pv", "sunspec_inverter", {"e_gen_kwh": (300.0, 10.0)}),
    ("conv", "dc_bus_converter", "dc_converter",
     {"e_charge_kwh": (WRAP_UINT32_001 - 10.0, 2.0), "e_discharge_kwh": (7.0, 1.0)}),
    ("hvac", "ac_load", "sdm630", {"e_import_kwh": (0.0, 20.0)}),
    ("dcl", "dc_load", "dc_load_controller", {"e_import_kwh": (12.0, 7.0)}),
    ("bat", "battery", "sunspec_battery", {}),
]
ANALYTICS = {
    "interval_min": 15,
    "emissions": {
        "regime": "mee_nbs_grid_average", "data_year": 2022,
        "residual": {"regime": "mee_nbs_excl_market_nonfossil", "region": "national", "data_year": 2022},
        "certificates_mwh": {"b": {"2026-11": 0.1}},
    },
    "batteries": {"bat": {"energy_kwh": 200, "p_charge_max_kw": 50, "p_discharge_max_kw": 50, "eta_charge": 0.95,
                          "eta_discharge": 0.95, "soc_min_pct": 10, "soc_max_pct": 95}},
    "horizons_h": [0.25, 1],
    "p_max_kw": 1000,
}
EAST_2022, RESIDUAL_2022 = 0.5617, 0.5856  # DOMAIN.md §2


def _site(tmp_path: Path, analytics: dict | None = ANALYTICS, sinks: list | None = None) -> Path:
    doc = {
        "site": {"name": "t", "timezone": "Asia/Shanghai"},
        "parks": [{"name": "p", "grid_region": "east_china"}],
        "buildings": [{"name": "b", "park": "p", "floor_area_m2": 1000}],
        "devices": [{"name": n, "building": "b", "role": r, "profile": prof,
                     "connection": {"type": "tcp", "host": "127.0.0.1", "port": 15000 + i}}
                    for i, (n, r, prof, _) in enumerate(DEVICES)],
        "sinks": sinks or [],
        "journal": {"path": str(tmp_path / "j.db")},
    }
    if analytics is not None:
        doc["analytics"] = analytics
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _rows(days: int = 2) -> list[tuple[str, str, str, str, str, float]]:
    """Readings every 5 min from 5 min before the first day to 5 min after the last, ISO +08:00 times."""
    out = []
    for k in range(-1, days * 288 + 2):
        ts = T0 + k * STEP
        when = datetime.fromtimestamp(ts / 1e9, UTC)
        iso = when.strftime("%Y-%m-%dT%H:%M:%SZ") if k % 2 else when.astimezone(SHANGHAI).isoformat()
        hours = k * STEP / 3.6e12
        for name, role, _, counters in DEVICES:
            for field, (v0, kw) in counters.items():
                value = v0 + kw * hours
                if field == "e_charge_kwh":
                    value = round(value % WRAP_UINT32_001, 2)  # the register wraps after 5 h
                out.append((iso, "b", name, role, field, value))
            if role == "battery":
                out.append((iso, "b", name, role, "soc_pct", 20.0))
    return out


def _write_csv(path: Path) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ts", "building", "device", "role", "field", "value"])
        w.writerows(_rows())
    return path


def _analyze(site: Path, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([PEDF, "analyze", str(site), "--from", "2026-11-02", "--to", "2026-11-04", *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out


def _read(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _check_hand_calculated(out: Path) -> None:
    days = _read(out / "energy_balance_daily.csv")
    assert [d["day"] for d in days] == ["2026-11-02", "2026-11-03"]
    for d in days:
        assert float(d["complete_intervals"]) == 96
        assert float(d["grid_import_kwh"]) == pytest.approx(480.0)
        assert float(d["grid_export_kwh"]) == pytest.approx(24.0)
        assert float(d["pv_kwh"]) == pytest.approx(240.0)
        assert float(d["charge_kwh"]) == pytest.approx(48.0, abs=0.02)  # across the rollover
        assert float(d["discharge_kwh"]) == pytest.approx(24.0)
        assert float(d["load_kwh"]) == pytest.approx(480.0 + 168.0)
        assert float(d["losses_kwh"]) == pytest.approx(744.0 - 720.0, abs=0.02)
        assert float(d["self_consumption_ratio"]) == pytest.approx((240 - 24) / 240)
        assert float(d["self_sufficiency_ratio"]) == pytest.approx(1 - 480 / 648)
        assert float(d["scope2_location_kg"]) == pytest.approx(480 * EAST_2022)
        assert float(d["exported_pv_avoided_kg"]) == pytest.approx(24 * EAST_2022)
    # 100 kWh of certificates for November, used up by the first day (no carry-over beyond the month)
    assert float(days[0]["certificates_covered_kwh"]) == pytest.approx(100.0)
    assert float(days[0]["scope2_market_kg"]) == pytest.approx(380 * RESIDUAL_2022)
    assert float(days[1]["scope2_market_kg"]) == pytest.approx(480 * RESIDUAL_2022)
    month = _read(out / "emissions_monthly.csv")
    assert len(month) == 1 and month[0]["location_factor"] == "mee_nbs_grid_average/east/2022"
    assert month[0]["residual_factor"] == "mee_nbs_excl_market_nonfossil/national/2022"
    assert float(month[0]["scope2_market_kg"]) == pytest.approx(860 * RESIDUAL_2022)
    flex = _read(out / "flexibility_envelope.csv")
    assert len(flex) == 192
    # SoC 20 %: up over 1 h = (0.20 − 0.10) × 200 kWh × 0.95 / 1 h = 19 kW; over 15 min the 50 kW limit
    assert [float(r["p_up_1h_kw"]) for r in flex] == pytest.approx([19.0] * 192)
    assert [float(r["p_up_15min_kw"]) for r in flex] == [50.0] * 192
    assert float(flex[0]["p_down_1h_kw"]) == pytest.approx(50.0)
    for png in ("energy_balance_daily.png", "emissions_by_method.png", "flexibility_envelope.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, png


def test_csv_hand_calculated_balance_emissions_and_envelope(tmp_path: Path) -> None:
    site = _site(tmp_path)
    data = _write_csv(tmp_path / "readings.csv")
    out = tmp_path / "out"
    _analyze(site, "--source", f"csv:{data}", "--out", str(out))
    _check_hand_calculated(out)
    report = (out / "report.md").read_text()
    assert "mee_nbs_grid_average/east/2022" in report and "![flexibility_envelope](flexibility_envelope.png)" in report
    assert "## Daily energy balance" in report


def test_parquet_wide_html_and_write_back_to_influxd(tmp_path: Path, influxd: InfluxD) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _rows()
    wide: dict[tuple[str, str], dict[str, float]] = {}
    for iso, _, device, _, field, value in rows:
        wide.setdefault((iso, device), {})[field] = value
    fields = sorted({r[4] for r in rows})
    table = {"ts": [k[0] for k in wide], "device": [k[1] for k in wide]}  # building, role from the site file
    for f in fields:
        table[f] = [wide[k].get(f) for k in wide]
    pq.write_table(pa.table(table), tmp_path / "readings.parquet")
    influxd.create_database("pedf")
    site = _site(tmp_path)
    out = tmp_path / "out"
    run = _analyze(site, "--source", f"parquet:{tmp_path / 'readings.parquet'}", "--out", str(out), "--format",
                   "html", "--write-influx", "--influx-url", influxd.url, "--influx-db", "pedf")
    assert "lines written" in run.stderr
    _check_hand_calculated(out)
    assert "<img src='energy_balance_daily.png'" in (out / "report.html").read_text()
    kpi = influxd.query("SELECT * FROM energy_kpi", db="pedf")
    assert len(kpi) == 2 and {r["period"] for r in kpi} == {"P1D"}
    assert [r["grid_import_kwh"] for r in kpi] == [pytest.approx(480.0)] * 2
    assert kpi[0]["time"] == T0
    em = influxd.query("SELECT * FROM emissions", db="pedf")
    assert [r["scope2_market_kg"] for r in em] == [pytest.approx(380 * RESIDUAL_2022),
                                                   pytest.approx(480 * RESIDUAL_2022)]
    assert em[0]["location_factor"] == "mee_nbs_grid_average/east/2022" and em[0]["matching"] == "monthly"
    flex = influxd.query("SELECT count(p_up_1h_kw) FROM flexibility", db="pedf")
    assert flex[0]["count"] == 192


def test_time_of_use_split_with_the_example_tariff(tmp_path: Path) -> None:
    tariff = Path(__file__).resolve().parent.parent / "analytics" / "data" / "tariff_tou_shanghai_example.csv"
    site = _site(tmp_path, analytics=dict(ANALYTICS, tariff=str(tariff)))
    out = tmp_path / "out"
    _analyze(site, "--source", f"csv:{_write_csv(tmp_path / 'readings.csv')}", "--out", str(out))
    day = _read(out / "energy_balance_daily.csv")[0]
    # November: valley 22-06 (8 h), peak 08-11 and 18-21 (6 h), flat the other 10 h; 20 kW import throughout
    assert float(day["grid_import_valley_kwh"]) == pytest.approx(160.0)
    assert float(day["grid_import_peak_kwh"]) == pytest.approx(120.0)
    assert float(day["grid_import_flat_kwh"]) == pytest.approx(200.0)
    assert float(day["grid_import_cost_cny"]) == pytest.approx(160 * 0.30 + 120 * 1.05 + 200 * 0.65)
    assert "an EXAMPLE tariff" in (out / "report.md").read_text()


def test_factor_choice_is_required_without_an_analytics_section(tmp_path: Path) -> None:
    site = _site(tmp_path, analytics=None)
    data = _write_csv(tmp_path / "readings.csv")
    args = [PEDF, "analyze", str(site), "--from", "2026-11-02", "--to", "2026-11-03", "--source", f"csv:{data}",
            "--out", str(tmp_path / "out")]
    refused = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "--regime" in refused.stderr
    ok = subprocess.run([*args, "--regime", "mee_nbs_grid_average", "--year", "2021", "--p-max-kw", "1000"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    day = _read(tmp_path / "out" / "energy_balance_daily.csv")[0]
    assert float(day["scope2_location_kg"]) == pytest.approx(480 * 0.5992)  # East China 2021
    assert float(day["scope2_market_kg"]) == pytest.approx(480 * 0.5942)  # national excl. non-fossil 2021
    assert "no battery specs" in (tmp_path / "out" / "report.md").read_text()


def test_site_file_analytics_errors_are_located(tmp_path: Path) -> None:
    bad = dict(ANALYTICS, batteries={"grid": ANALYTICS["batteries"]["bat"]},
               emissions=dict(ANALYTICS["emissions"], data_year=2019))
    site = _site(tmp_path, analytics=bad)
    out = subprocess.run([PEDF, "check", str(site)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "analytics.batteries.grid" in out.stderr and "no battery or dc_bus_converter" in out.stderr
    assert "analytics.emissions.regime" in out.stderr and "2019" in out.stderr


SIM_DEVICES = [
    {"name": "grid", "profile": "dtsu666", "role": "grid_meter"},
    {"name": "hvac", "profile": "sdm630", "role": "ac_load"},
    {"name": "inv", "profile": "sunspec_inverter", "role": "pv"},
    {"name": "bat", "profile": "sunspec_battery", "role": "battery"},
    {"name": "gconv", "profile": "grid_converter", "role": "grid_converter"},
    {"name": "conv", "profile": "dc_converter", "role": "dc_bus_converter"},
    {"name": "dcl", "profile": "dc_load_controller", "role": "dc_load"},
]
NOON = ["--start-time", "2026-06-21T11:00:00+08:00"]  # PV producing


def counter_at(ts: np.ndarray, values: np.ndarray, point: int, tol: int) -> float:
    """The reading interval energy takes at a grid point: the first one within ``tol`` of it."""
    near = np.flatnonzero((np.abs(ts - point) <= tol) & ~np.isnan(values))
    assert near.size, "no reading near the grid point"
    return float(values[near[0]])


async def _journal_field(path: Path, device: str, field: str) -> tuple[np.ndarray, np.ndarray]:
    from gateway.journal import Journal

    journal = Journal(path)
    await journal.open()
    try:
        for arrays in await journal.query():
            key = journal.series(arrays.series_id)
            if key.tag("device") == device:
                return arrays.ts_ns, arrays.values[:, key.fields.index(field)]
    finally:
        await journal.close()
    raise AssertionError(f"no series of {device}")


def test_journal_of_a_real_simulator_and_gateway_run(tmp_path: Path) -> None:
    import asyncio

    devices = [dict(d, port=free_port()) for d in SIM_DEVICES]
    api_port = free_port()
    journal = tmp_path / "journal.db"
    site = write_site(tmp_path / "site.yaml", devices, journal=journal, api_port=api_port, interval_s=0.2,
                      analytics={k: v for k, v in ANALYTICS.items() if k != "batteries"}
                      | {"batteries": {"bat": ANALYTICS["batteries"]["bat"]}})
    step = 5 * 10**9
    with SimulatorProcess(tmp_path, devices, speed=120, extra=NOON), GatewayProcess(tmp_path, site, api_port) as gw:
        t0 = time.time_ns()
        time.sleep(18)
        assert gw.terminate() == 0
        t1 = time.time_ns()
    start, end = (t0 // step + 1) * step, (t1 - 10**9) // step * step
    n = (end - start) // step
    assert n >= 2
    iso = [datetime.fromtimestamp(t / 1e9, UTC).isoformat() for t in (start, end)]
    out = tmp_path / "out"
    run = subprocess.run([PEDF, "analyze", str(site), "--from", iso[0], "--to", iso[1], "--source", "journal",
                          "--interval-s", "5", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    days = _read(out / "energy_balance_daily.csv")
    tol = step // 10
    expected = {}
    for channel, device, field in (("grid_import_kwh", "grid", "e_import_kwh"), ("pv_kwh", "inv", "e_gen_kwh"),
                                   ("load_dc_kwh", "dcl", "e_import_kwh")):
        ts, values = asyncio.run(_journal_field(journal, device, field))
        expected[channel] = counter_at(ts, values, end, tol) - counter_at(ts, values, start, tol)
    assert sum(float(d["complete_intervals"]) for d in days) == n
    for channel, value in expected.items():
        assert value > 0, channel
        assert sum(float(d[channel]) for d in days) == pytest.approx(value, rel=1e-9), channel
    supply = sum(float(d["pv_kwh"]) + float(d["grid_import_kwh"]) + float(d["discharge_kwh"]) for d in days)
    losses = sum(float(d["losses_kwh"]) for d in days)
    assert -0.05 * supply < losses < 0.2 * supply  # converter losses; devices are read at slightly different times
    flex = _read(out / "flexibility_envelope.csv")
    assert len(flex) == n
    for row in flex:
        soc = float(row["soc_pct"])
        assert 10 <= soc <= 95
        assert float(row["p_up_1h_kw"]) == pytest.approx(min(50.0, (soc - 10) / 100 * 200 * 0.95))
    for png in ("energy_balance_daily.png", "emissions_by_method.png", "flexibility_envelope.png"):
        assert (out / png).stat().st_size > 10_000


BUILDINGS_SCRIPT = """
import json, sys
import numpy as np
from gateway.analysis._batch import analyze
from gateway.analysis._channels import DeviceReadings
from gateway.analysis._kpis import factor_choice
from gateway.config._site import load_site

site = load_site(sys.argv[1])
t0 = int(sys.argv[2])
ts = t0 + np.arange(-1, 98, dtype=np.int64) * 900 * 10**9
hours = (ts - t0) / 3.6e12
readings = [DeviceReadings(x, "m" + x, "grid_meter", ts, {"e_import_kwh": 100 + 10.0 * hours,
                                                        "e_export_kwh": np.zeros(ts.size)}) for x in "bc"]
factors = factor_choice(site, None, regime="mee_nbs_grid_average", year=2022)
result = analyze(site, readings, t0, t0 + 86400 * 10**9, factors)
rows = {r["building"]: {k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
        for r in result.daily}
print(json.dumps({"rows": rows, "notes": result.notes, "d": factors.location["d"].label}))
"""


def test_each_building_uses_its_own_grid_region_and_no_meter_means_unknown(tmp_path: Path) -> None:
    import json

    doc = {
        "site": {"name": "t"},
        "parks": [{"name": "p", "grid_region": "east_china"}, {"name": "q", "grid_region": "south"}],
        "buildings": [{"name": "b", "park": "p", "floor_area_m2": 1000},
                      {"name": "c", "park": "q", "floor_area_m2": 500},
                      {"name": "d", "park": "q", "floor_area_m2": 500, "grid_region": "southwest"}],
        "devices": [{"name": f"m{x}", "building": x, "role": "grid_meter", "profile": "dtsu666",
                     "connection": {"type": "tcp", "host": "127.0.0.1", "port": 15100}, "unit_id": i + 1}
                    for i, x in enumerate("bc")],
    }
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(doc))
    run = subprocess.run([sys.executable, "-c", BUILDINGS_SCRIPT, str(tmp_path / "site.yaml"), str(T0)],
                         capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    rows = out["rows"]
    assert rows["b"]["scope2_location_kg"] == pytest.approx(240 * 0.5617)  # East China 2022
    assert rows["c"]["scope2_location_kg"] == pytest.approx(240 * 0.3869)  # South 2022
    assert rows["c"]["grid_import_kwh"] == pytest.approx(240) and rows["c"]["peak_import_kw"] == pytest.approx(10)
    assert rows["c"]["self_consumption_ratio"] is None  # no PV: undefined, not 0
    assert out["d"] == "mee_nbs_grid_average/southwest/2022"
    assert rows["d"]["complete_intervals"] == 0 and rows["d"]["scope2_location_kg"] is None
    assert any("d: no grid_meter" in n for n in out["notes"])
