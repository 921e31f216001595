"""Values that a float64 or the line protocol cannot carry, from a real Modbus server through
``pedf run`` into a real influxd: 64-bit integers beyond 2^53 arrive exact, and sentinels, NaN and
±inf are counted per point as "not available" (``/status``, ``pedf status``, one log line each)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from drivers.modbus import DataType, encode_value
from tests.harness import GatewayProcess, wait_until
from tests.processes import free_port
from tests.servers import InfluxD, ModbusTestServer

pytestmark = pytest.mark.services

BIG = 2**53 + 1  # 9007199254740993: the nearest float64 is 9007199254740992
NEG_BIG = -(2**60) - 3

POINTS = [  # name, type, address, raw value served, extra point keys
    ("count_big", "uint64", 0, BIG, {}),
    ("count_neg", "int64", 4, NEG_BIG, {}),
    ("p_kw", "uint16", 8, 0xFFFF, {}),
    ("t_c", "int16", 9, -0x8000, {}),
    ("f_kw", "float32", 10, float("nan"), {}),
    ("g_kw", "float32", 12, float("inf"), {}),
    ("ok_kw", "uint16", 14, 42, {}),
    ("own_kw", "uint16", 15, 0x7FFF, {"not_available": [0x7FFF]}),
    ("full_kw", "uint16", 16, 0xFFFF, {"not_available": []}),
]
MISSING = {"p_kw", "t_c", "f_kw", "g_kw", "own_kw"}


def _registers() -> list[int]:
    regs: list[int] = []
    for _name, dtype, address, value, _extra in POINTS:
        assert len(regs) == address
        regs += encode_value(value, DataType(dtype))
    return regs


def _site(path: Path, modbus_port: int, influx_url: str, api_port: int, journal: Path) -> Path:
    site = {
        "site": {"name": "t"},
        "parks": [{"name": "p", "grid_region": "east_china"}],
        "buildings": [{"name": "b", "park": "p", "floor_area_m2": 1000}],
        "devices": [{
            "name": "meter", "building": "b", "role": "sub_meter", "device_class": "meter",
            "connection": {"type": "tcp", "host": "127.0.0.1", "port": modbus_port},
            "interval_s": 0.2, "timeout_s": 0.5,
            "points": [{"name": n, "register": "holding", "address": a, "type": t, **extra}
                       for n, t, a, _v, extra in POINTS],
        }],
        "sinks": [{"type": "influxdb_v1", "url": influx_url, "database": "pedf", "max_age_s": 0.2}],
        "journal": {"path": str(journal)},
        "api": {"host": "127.0.0.1", "port": api_port},
    }
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


def test_exact_integers_and_not_available_counted_end_to_end(tmp_path: Path, influxd: InfluxD) -> None:
    influxd.create_database("pedf")
    port, api_port = free_port(), free_port()
    server = ModbusTestServer(tmp_path / "modbus", {"tcp": ["127.0.0.1", port],
                                                    "devices": [{"id": 1, "registers": _registers()}]})
    site = _site(tmp_path / "site.yaml", port, influxd.url, api_port, tmp_path / "journal.db")
    with server, GatewayProcess(tmp_path, site, api_port) as gw:
        wait_until(lambda: len(influxd.query("SELECT * FROM meter", db="pedf")) >= 5, 30,
                   what="five polls in influxd")
        rows = influxd.query("SELECT * FROM meter", db="pedf")
        status = gw.status()
        pedf = str(Path(sys.executable).with_name("pedf"))
        text = subprocess.run([pedf, "status", "--url", f"http://127.0.0.1:{api_port}"], capture_output=True,
                              text=True, timeout=30).stdout
        time.sleep(0.5)
        log = gw.log.read_text()

    for row in rows:
        assert row["count_big"] == BIG and type(row["count_big"]) is int, row  # exact, not 9007199254740992
        assert row["count_neg"] == NEG_BIG, row
        assert row["ok_kw"] == 42 and row["full_kw"] == 0xFFFF, row
        assert all(row.get(name) is None for name in MISSING), row
    counts = status["not_available"]["meter"]
    assert set(counts) == MISSING, counts
    assert all(n >= 5 for n in counts.values()), counts
    assert "not available (polls):" in text and "own_kw" in text and "p_kw" in text, text
    logged = [entry for line in log.splitlines() if line.startswith("{")
              and "not available" in (entry := json.loads(line))["msg"]]
    # once per point, however many polls
    assert sorted(entry["msg"].split(":")[0] for entry in logged) == sorted(f"meter.{n}" for n in MISSING), log
