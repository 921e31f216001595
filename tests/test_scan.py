"""`pedf scan` walks a SunSpec device's model chain (the simulator's inverter and battery) and prints a
profile that a site file can use: polling with it reads the same values as the shipped profile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from drivers.modbus import load_profile
from tests.harness import SimulatorProcess
from tests.processes import free_port

pytestmark = pytest.mark.services


def test_scan_prints_a_usable_profile_for_sunspec_devices(tmp_path: Path) -> None:
    devices = [{"name": "inv", "profile": "sunspec_inverter", "port": free_port(), "role": "pv"},
               {"name": "bat", "profile": "sunspec_battery", "port": free_port(), "role": "battery"}]
    pedf = str(Path(sys.executable).with_name("pedf"))
    with SimulatorProcess(tmp_path, devices, speed=0):
        for d in devices:
            out_file = tmp_path / f"{d['name']}.yaml"
            out = subprocess.run([pedf, "scan", f"127.0.0.1:{d['port']}", "--unit", "1", "-o", str(out_file)],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            scanned = load_profile(str(out_file))
            shipped = load_profile(d["profile"])
            by_name = {p.name: p for p in scanned.points}
            for p in shipped.points:
                if p.name in by_name:  # the mapped points must sit at the same address with the same scale
                    assert (by_name[p.name].address, by_name[p.name].type) == (p.address, p.type), p.name
                    assert abs(by_name[p.name].scale - p.scale) <= 1e-12 * abs(p.scale), p.name
            assert {"p_kw"} <= set(by_name)
            assert yaml.safe_load(out_file.read_text())["device_class"] == "pv_inverter"


def test_scan_of_a_device_without_sunspec_fails_clearly(tmp_path: Path) -> None:
    devices = [{"name": "m", "profile": "dtsu666", "port": free_port()}]
    pedf = str(Path(sys.executable).with_name("pedf"))
    with SimulatorProcess(tmp_path, devices, speed=0):
        out = subprocess.run([pedf, "scan", f"127.0.0.1:{devices[0]['port']}"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "failed: no SunSpec marker at any of (40000, 50000, 0)" in out.stderr
    assert "Traceback" not in out.stderr
