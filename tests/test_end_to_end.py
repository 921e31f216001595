"""Simulator (own process) → ``pedf run`` (own process) → influxd via /write and victoria-metrics via
the v2 API: the values read back equal the simulator's registers, decoded independently here."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from drivers.modbus import load_profile
from tests.harness import GatewayProcess, SimulatorProcess, wait_until, write_site
from tests.processes import free_port
from tests.reference_registers import decode as reference_decode
from tests.servers import InfluxD, VictoriaMetrics

pytestmark = pytest.mark.services

DEVICES = [
    {"name": "grid_meter", "profile": "dtsu666", "role": "grid_meter"},
    {"name": "hvac_meter", "profile": "sdm630", "role": "ac_load"},
    {"name": "bench", "profile": "bench60"},
]


async def _read_expected(port: int, profile: str) -> dict[str, float]:
    """Each point read on its own with a plain pymodbus client and decoded by the test's reference."""
    prof = load_profile(profile)
    client = AsyncModbusTcpClient("127.0.0.1", port=port)
    await client.connect()
    out = {}
    try:
        for p in prof.points:
            read = client.read_input_registers if p.register_type.value == "input" else client.read_holding_registers
            rr = await read(p.address, count=p.register_count, device_id=1)
            assert not rr.isError(), (profile, p.name, rr)
            raw = reference_decode(list(rr.registers), p.type.value, p.word_order.value, p.byte_order.value)
            out[p.name] = raw * p.scale + p.offset
    finally:
        client.close()
    return out


def test_values_in_influxd_and_victoria_metrics_equal_the_registers(
    tmp_path: Path, influxd: InfluxD, victoria_metrics: VictoriaMetrics
) -> None:
    devices = [dict(d, port=free_port()) for d in DEVICES]
    influxd.create_database("pedf")
    api_port = free_port()
    site = write_site(
        tmp_path / "site.yaml",
        devices,
        sinks=[
            {"type": "influxdb_v1", "name": "influx1", "url": influxd.url, "database": "pedf", "max_age_s": 0.2},
            {
                "type": "influxdb_v2",
                "name": "vm",
                "url": victoria_metrics.url,
                "org": "o",
                "bucket": "b",
                "token": "t0ken",
                "max_age_s": 0.2,
            },
        ],
        journal=tmp_path / "journal.db",
        api_port=api_port,
        interval_s=0.5,
    )
    # speed 0: simulated time stands still, so every read returns the same registers
    with SimulatorProcess(tmp_path, devices, speed=0) as _sim, GatewayProcess(tmp_path, site, api_port) as gw:
        expected = {d["name"]: asyncio.run(_read_expected(d["port"], d["profile"])) for d in devices}
        wait_until(
            lambda: all(
                len(influxd.query(f"SELECT * FROM /.*/ WHERE device='{d['name']}'", db="pedf")) >= 3 for d in devices
            ),
            30,
            what="three samples per device in influxd",
        )
        status = gw.status()
        assert status["devices_up"] == len(devices)
        assert gw.terminate() == 0
    for d in devices:
        rows = influxd.query(f"SELECT * FROM /.*/ WHERE device='{d['name']}' ORDER BY time DESC LIMIT 1", db="pedf")
        row = rows[0]
        assert row["site"] == "t" and row["building"] == "b"
        for field, value in expected[d["name"]].items():
            assert row[field] == pytest.approx(value, rel=1e-12, abs=1e-12), (d["name"], field)
    # the v2 path: victoria-metrics names a series measurement_field, keeps milliseconds
    series = victoria_metrics.export('{__name__=~"meter_p_kw|meter_x00_kw"}')
    by_device = {s["metric"]["device"]: s for s in series if s["metric"]["__name__"] == "meter_p_kw"}
    assert set(by_device) == {"grid_meter", "hvac_meter"}
    for name, s in by_device.items():
        assert s["values"][-1] == pytest.approx(expected[name]["p_kw"], rel=1e-9)
        # epoch milliseconds: after 2020-09 in ms, and not nanoseconds (which would be ~1e18)
        assert all(isinstance(ts, int) and 1_600_000_000_000 < ts < 10**14 for ts in s["timestamps"])
    bench = [s for s in series if s["metric"]["__name__"] == "meter_x00_kw"]
    assert bench and bench[0]["values"][-1] == pytest.approx(expected["bench"]["x00_kw"], rel=1e-9)


def test_pedf_check_prints_the_plan_without_touching_devices(tmp_path: Path) -> None:
    import subprocess
    import sys

    devices = [dict(d, port=free_port()) for d in DEVICES]  # nothing listens on these ports
    site = write_site(tmp_path / "site.yaml", devices, journal=tmp_path / "j.db", api_port=0)
    out = subprocess.run(
        [str(Path(sys.executable).with_name("pedf")), "check", str(site)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "configuration is valid" in out.stdout
    bench_line = next(line for line in out.stdout.splitlines() if line.strip().startswith("bench "))
    assert "1 request(s) [FC03@0+60]" in bench_line
    assert not (tmp_path / "j.db").exists()
