"""Building simulator: physics (balance, losses, clamping, determinism) and Modbus serving in a subprocess."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

from drivers.modbus import decode_value, encode_value, load_profile
from drivers.simulator import roles
from drivers.simulator.physics import SHANGHAI, BuildingModel, LossModel, solar_elevation_deg
from tests.harness import PythonModule
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
DAY = 86400.0
MIDNIGHT = datetime(2026, 6, 21, 0, 0, tzinfo=SHANGHAI)


# ---------------------------------------------------------------- physics


def _balance_terms(m: BuildingModel) -> tuple[float, float]:
    e = m.energy_kwh
    supply = e["pv_ac"] + e["import"] + e["discharge"]
    use = e["load_ac"] + e["load_dc"] + e["export"] + e["charge"] + e["losses"]
    return supply, use


@pytest.mark.parametrize("dt_s", [1.0, 60.0, 337.0])
def test_energy_balance_holds_at_every_step(dt_s: float) -> None:
    m = BuildingModel(seed=7, start=MIDNIGHT)
    m.set_battery_power(-20.0)  # charge in the morning, discharge later: both directions occur
    steps = int(DAY / dt_s)
    for k in range(steps):
        if k == steps // 2:
            m.set_battery_power(40.0)
        m.step(dt_s)
        supply, use = _balance_terms(m)
        assert abs(supply - use) <= 1e-9 * max(supply, 1e-12), (k, supply, use)
    t = m.totals()
    assert t["e_pv_ac_kwh"] > 100 and t["e_import_kwh"] > 100 and t["e_charge_kwh"] > 10
    assert t["e_discharge_kwh"] > 10 and t["e_losses_kwh"] > 1
    assert abs(t["balance_residual_kwh"]) < 1e-9 * t["e_import_kwh"]


def test_losses_come_from_the_efficiency_models() -> None:
    m = BuildingModel(seed=2, start=MIDNIGHT)
    m.set_battery_power(30.0)
    expected = {"grid_converter_loss": 0.0, "battery_converter_loss": 0.0}
    for _ in range(24 * 60):
        m.step(60.0)
        expected["grid_converter_loss"] += m.p.grid_converter.loss(m.now["grid_converter_dc_kw"]) / 60
        expected["battery_converter_loss"] += m.p.battery_converter.loss(m.now["battery_bus_kw"]) / 60
    e = m.energy_kwh
    assert e["grid_converter_loss"] == pytest.approx(expected["grid_converter_loss"], rel=1e-12)
    assert e["battery_converter_loss"] == pytest.approx(expected["battery_converter_loss"], rel=1e-12)
    # each converter's port counters differ by exactly its modelled loss
    gc = (e["gc_ac_in"] + e["gc_dc_in"]) - (e["gc_ac_out"] + e["gc_dc_out"])
    bc = (e["bat_bus_in"] + e["discharge"]) - (e["bat_bus_out"] + e["charge"])
    assert gc == pytest.approx(e["grid_converter_loss"], rel=1e-9)
    assert bc == pytest.approx(e["battery_converter_loss"], rel=1e-9)
    assert e["losses"] == pytest.approx(gc + bc, rel=1e-9)


def test_loss_model_schmidt_sauer_and_inverses() -> None:
    lm = LossModel(100.0, p_self=0.01, v_loss=0.02, r_loss=0.03)
    assert lm.loss(0.0) == 0.0
    assert lm.loss(50.0) == pytest.approx(100 * (0.01 + 0.02 * 0.5 + 0.03 * 0.25))
    x = lm.max_out_for_in(40.0)
    assert x + lm.loss(x) == pytest.approx(40.0)
    y = lm.max_in_for_out(40.0)
    assert y - lm.loss(y) == pytest.approx(40.0)


def test_setpoints_are_clamped_and_soc_bounds_hold() -> None:
    m = BuildingModel(seed=1, start=MIDNIGHT)
    assert m.set_battery_power(500.0) == m.p.p_discharge_max_kw
    assert m.set_battery_power(-500.0) == -m.p.p_charge_max_kw
    assert m.set_dc_limit(-3.0) == 0.0 and m.set_dc_limit(1e6) == m.p.dc_limit_max_kw
    assert m.set_grid_v_ref(1000.0) == pytest.approx(375 * 1.05)
    m.set_battery_power(-50.0)
    for _ in range(2000):  # long enough to fill the battery
        m.step(30.0)
        assert m.p.soc_min - 1e-12 <= m.soc <= m.p.soc_max + 1e-12
        assert -m.p.p_charge_max_kw - 1e-9 <= m.now["battery_terminal_kw"] <= m.p.p_discharge_max_kw + 1e-9
    assert m.soc == pytest.approx(m.p.soc_max)
    m.set_battery_power(50.0)
    for _ in range(3000):
        m.step(30.0)
        assert m.soc >= m.p.soc_min - 1e-12
    assert m.soc == pytest.approx(m.p.soc_min)
    m.set_dc_limit(5.0)
    m.step(60.0)
    assert m.now["load_dc_kw"] <= 5.0 and m.energy_kwh["dc_curtailed"] > 0


def test_droop_law_and_pv_day_shape() -> None:
    m = BuildingModel(seed=4, start=datetime(2026, 6, 21, 11, 0, tzinfo=SHANGHAI))
    m.set_battery_power(5.0)
    m.step(60.0)
    n, p = m.now, m.p
    # grid converter: P = (V_ref − V)/r; battery: P = P_set + (V_ref − V)/r (not at a limit here)
    assert n["grid_converter_dc_kw"] == pytest.approx((m.grid_v_ref_v - n["v_dc_v"]) / p.r_grid_v_per_kw)
    assert n["battery_bus_kw"] == pytest.approx(
        5.0 + (m.battery_v_ref_v - n["v_dc_v"]) / p.r_battery_v_per_kw
    )
    assert n["grid_converter_dc_kw"] + n["battery_bus_kw"] == pytest.approx(n["load_dc_kw"])
    # solar noon in Shanghai is near 11:50 local time; elevation at the June solstice ≈ 90 − 31.2 + 23.4
    noon = datetime(2026, 6, 21, 11, 50, tzinfo=SHANGHAI)
    assert solar_elevation_deg(noon, 31.23, 121.47) == pytest.approx(82.2, abs=0.6)
    night = BuildingModel(seed=4, start=datetime(2026, 6, 21, 1, 0, tzinfo=SHANGHAI))
    night.step(60.0)
    assert night.now["pv_ac_kw"] == 0.0 and m.now["pv_ac_kw"] > 20.0


def test_seed_makes_runs_deterministic() -> None:
    def run(seed: int, dt: float) -> dict[str, float]:
        m = BuildingModel(seed=seed, start=MIDNIGHT)
        for _ in range(int(DAY / dt)):
            m.step(dt)
        return m.totals()

    assert run(5, 60.0) == run(5, 60.0)
    assert run(5, 60.0)["e_pv_ac_kwh"] != run(6, 60.0)["e_pv_ac_kwh"]


# ---------------------------------------------------------------- over Modbus, simulator subprocess


def _free_ports(n: int) -> list[int]:
    return [free_port() for _ in range(n)]


@dataclass
class Sim:
    ports: dict[str, int]
    proc: subprocess.Popen
    poll_log: Path


SITE = [
    ("grid", "dtsu666", 1, "grid_meter"),
    ("load", "sdm630", 2, "ac_load"),
    ("pv", "sunspec_inverter", 1, None),
    ("bat", "sunspec_battery", 1, None),
    ("gc", "grid_converter", 1, None),
    ("bc", "dc_converter", 1, None),
    ("dcl", "dc_load_controller", 1, None),
]


def _start(tmp: Path, *args: str) -> Sim:
    ports = _free_ports(6)
    port_of = {
        "grid": ports[0],
        "load": ports[0],
        "pv": ports[1],
        "bat": ports[2],
        "gc": ports[3],
        "bc": ports[4],
        "dcl": ports[5],
    }
    devices = [
        {"name": n, "profile": p, "port": port_of[n], "unit_id": u} | ({"role": r} if r else {})
        for n, p, u, r in SITE
    ]
    (tmp / "devices.json").write_text(json.dumps(devices))
    log = tmp / "poll.log"
    args = ["--devices", str(tmp / "devices.json"), "--poll-log", str(log), *args]
    sim = PythonModule(tmp, "drivers.simulator", args, name="simulator").start()
    return Sim(port_of, sim.proc, log)


def _stop(sim: Sim) -> None:
    sim.proc.send_signal(signal.SIGTERM)
    try:
        sim.proc.wait(10)
    except subprocess.TimeoutExpired:
        sim.proc.kill()
        sim.proc.wait()


@pytest.fixture
def frozen_noon(tmp_path: Path) -> Iterator[Sim]:
    sim = _start(tmp_path, "--speed", "0", "--seed", "11", "--start-time", "2026-06-21T12:00:00+08:00")
    yield sim
    _stop(sim)


def _read(client: ModbusTcpClient, profile: str, unit: int) -> dict[str, float]:
    out = {}
    for p in load_profile(profile).points:
        read = (
            client.read_input_registers if p.register_type.value == "input" else client.read_holding_registers
        )
        rr = read(p.address, count=p.register_count, device_id=unit)
        assert not rr.isError(), (profile, p.name, rr)
        out[p.name] = (
            float(decode_value(rr.registers, p.type, p.word_order, p.byte_order)) * p.scale + p.offset
        )
    return out


def _expected_now(seed: int, start: datetime, role: str) -> dict[str, float]:
    return roles.fields_for("meter", role)(BuildingModel(seed=seed, start=start))


@pytest.mark.services
def test_mbpoll_reads_meter_registers(frozen_noon: Sim) -> None:
    port = frozen_noon.ports["grid"]
    out = subprocess.run(
        [
            "mbpoll",
            "-m",
            "tcp",
            "-p",
            str(port),
            "-a",
            "1",
            "-B",
            "-t",
            "4:float",
            "-r",
            str(0x2000 + 1),
            "-c",
            "11",
            "-1",
            "127.0.0.1",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    values = {int(a) - 1: float(v) for a, v in re.findall(r"^\[(\d+)\]:\s+(\S+)", out, re.M)}
    assert len(values) == 11  # 11 float32 values = 22 registers
    exp = _expected_now(11, datetime(2026, 6, 21, 12, tzinfo=SHANGHAI), "grid_meter")
    prof = load_profile("dtsu666")
    for name in ("v_l1_v", "v_l12_v", "i_l1_a", "p_kw", "p_l1_kw"):
        p = prof.point(name)
        assert values[p.address] * p.scale == pytest.approx(exp[name], rel=1e-5), name


@pytest.mark.services
def test_input_and_holding_registers_are_separate_blocks(frozen_noon: Sim) -> None:
    port = frozen_noon.ports["load"]  # sdm630 (unit 2) shares the port with the dtsu666 (unit 1)
    with ModbusTcpClient("127.0.0.1", port=port) as c:
        ir = c.read_input_registers(0x34, count=2, device_id=2)
        assert not ir.isError() and decode_value(ir.registers, "float32") > 0  # W of the AC loads
        assert c.read_holding_registers(0x34, count=2, device_id=2).isError()  # no such holding register
        assert c.read_input_registers(0x2000, count=2, device_id=1).isError()  # the DTSU666 map is FC 03
        assert not c.read_holding_registers(0x2000, count=2, device_id=1).isError()


@pytest.mark.services
def test_setpoints_over_modbus_are_clamped(frozen_noon: Sim) -> None:
    with ModbusTcpClient("127.0.0.1", port=frozen_noon.ports["bc"]) as c:
        p_set = load_profile("dc_converter").point("p_set_kw")
        assert not c.write_register(p_set.address, encode_value(800, "int16")[0], device_id=1).isError()
        assert decode_value(c.read_holding_registers(0, count=1, device_id=1).registers, "int16") == 500
        assert not c.write_register(0, encode_value(-123, "int16")[0], device_id=1).isError()
        assert decode_value(c.read_holding_registers(0, count=1, device_id=1).registers, "int16") == -123
    with ModbusTcpClient("127.0.0.1", port=frozen_noon.ports["dcl"]) as c:
        assert not c.write_register(0, 1500, device_id=1).isError()  # 150 kW > max 100
        assert c.read_holding_registers(0, count=1, device_id=1).registers == [1000]
    bat = load_profile("sunspec_battery")
    with ModbusTcpClient("127.0.0.1", port=frozen_noon.ports["bat"]) as c:
        out_rte, mod = bat.point("out_w_rte_pct"), bat.point("stor_ctl_mod")
        assert not c.write_register(out_rte.address, 500, device_id=1).isError()  # 50.0 %
        assert not c.write_register(mod.address, 2, device_id=1).isError()  # discharge
        assert c.write_register(bat.point("p_kw").address, 1, device_id=1).isError()  # not writable
    with ModbusTcpClient("127.0.0.1", port=frozen_noon.ports["bc"]) as c:
        # the same battery: 50 % of 50 kW discharge now shows as the converter's setpoint
        assert decode_value(c.read_holding_registers(0, count=1, device_id=1).registers, "int16") == 250


@pytest.mark.services
def test_pysunspec2_client_scans_inverter_and_battery(frozen_noon: Sim) -> None:
    inv = SunSpecModbusClientDeviceTCP(
        slave_id=1, ipaddr="127.0.0.1", ipport=frozen_noon.ports["pv"], timeout=5
    )
    try:
        inv.scan()
        assert {1, 103} <= set(inv.models)
        m103 = inv.models[103][0]
        assert 20_000 < m103.W.cvalue <= 100_000 and m103.PhVphA.cvalue == pytest.approx(230.0)
        assert m103.Hz.cvalue == pytest.approx(50.0) and m103.St.cvalue == 4
        assert inv.models[1][0].Mn.cvalue == "PEDF-Sim"
    finally:
        inv.close()
    bat = SunSpecModbusClientDeviceTCP(
        slave_id=1, ipaddr="127.0.0.1", ipport=frozen_noon.ports["bat"], timeout=5
    )
    try:
        bat.scan()
        assert {1, 713, 124, 802} <= set(bat.models)
        soc = bat.models[802][0].SoC.cvalue
        assert 10.0 <= soc <= 95.0 and bat.models[713][0].SoC.cvalue == pytest.approx(soc)
        assert bat.models[124][0].WChaMax.cvalue == pytest.approx(50_000)
        assert bat.models[713][0].WHRtg.cvalue == pytest.approx(200_000)
    finally:
        bat.close()


@pytest.mark.services
def test_energy_balance_from_counters_over_a_simulated_day(tmp_path: Path) -> None:
    sim = _start(
        tmp_path,
        "--speed",
        "43200",
        "--seed",
        "3",
        "--start-time",
        "2026-06-21T00:00:00+08:00",
        "--hold",
        "1.5",
        "--duration",
        str(DAY),
        "--step",
        "30",
        "--totals",
        str(tmp_path / "totals.json"),
    )
    try:

        def snapshot() -> dict[str, dict[str, float]]:
            out = {}
            for name, profile, unit, _ in SITE:
                with ModbusTcpClient("127.0.0.1", port=sim.ports[name]) as c:
                    out[name] = _read(c, profile, unit)
            return out

        start = snapshot()
        time.sleep(1.5 + DAY / 43200 + 0.5)
        end = snapshot()
        assert snapshot()["grid"]["e_import_kwh"] == end["grid"]["e_import_kwh"]  # time stopped
    finally:
        _stop(sim)

    def d(dev: str, field: str) -> float:
        return end[dev][field] - start[dev][field]

    pv, imp, exp = d("pv", "e_gen_kwh"), d("grid", "e_import_kwh"), d("grid", "e_export_kwh")
    dis, cha = d("bc", "e_discharge_kwh"), d("bc", "e_charge_kwh")
    load = d("load", "e_import_kwh") + d("dcl", "e_import_kwh")
    losses = (
        d("gc", "e_ac_in_kwh")
        + d("gc", "e_dc_in_kwh")
        - d("gc", "e_ac_out_kwh")
        - d("gc", "e_dc_out_kwh")
        + d("bc", "e_bus_in_kwh")
        + d("bc", "e_discharge_kwh")
        - d("bc", "e_bus_out_kwh")
        - d("bc", "e_charge_kwh")
    )
    assert pv > 100 and imp > 100 and load > 500 and losses > 1
    # the counters read over Modbus are the model's own integrals
    totals = json.loads((tmp_path / "totals.json").read_text())
    assert totals["simulated_s"] == DAY
    for measured, key in (
        (pv, "pv"),
        (imp, "grid import"),
        (exp, "grid export"),
        (dis, "battery discharge"),
        (cha, "battery charge"),
        (losses, "losses"),
    ):
        assert measured == pytest.approx(totals[key], abs=0.05), key
    # counter resolution: 0.01 kWh per integer counter (10 of them) + 1 Wh (WH) + float32 meters
    assert pv + imp + dis == pytest.approx(load + exp + cha + losses, abs=0.15)


@pytest.mark.services
def test_seed_makes_served_values_deterministic(tmp_path: Path) -> None:
    def grid_values(seed: str, sub: str) -> dict[str, float]:
        (tmp_path / sub).mkdir()
        sim = _start(
            tmp_path / sub, "--speed", "0", "--seed", seed, "--start-time", "2026-06-21T12:00:00+08:00"
        )
        try:
            with ModbusTcpClient("127.0.0.1", port=sim.ports["grid"]) as c:
                return _read(c, "dtsu666", 1)
        finally:
            _stop(sim)

    a, b, c = grid_values("21", "a"), grid_values("21", "b"), grid_values("22", "c")
    assert a == b
    assert a["p_kw"] != c["p_kw"]


@pytest.mark.services
def test_poll_log_has_one_line_per_answered_read(frozen_noon: Sim) -> None:
    with ModbusTcpClient("127.0.0.1", port=frozen_noon.ports["gc"]) as c:
        for _ in range(7):
            assert not c.read_input_registers(0, count=9, device_id=1).isError()
        assert c.read_input_registers(0, count=12, device_id=1).isError()  # bridges the hole at 9
    _stop(frozen_noon)
    lines = [ln.split() for ln in frozen_noon.poll_log.read_text().splitlines()]
    gc_lines = [ln for ln in lines if ln[1] == "gc"]
    assert len(gc_lines) == 7 and all(ln[2:] == ["4", "0", "9"] for ln in gc_lines)
    assert all(int(ln[0]) > 1_700_000_000 * 10**9 for ln in gc_lines)


@pytest.mark.services
def test_fault_injection(tmp_path: Path) -> None:
    sim = _start(
        tmp_path, "--speed", "0", "--fault", "grid=timeout", "--fault", "pv=exception2", "--fault", "gc=drop"
    )
    try:
        with socket.create_connection(("127.0.0.1", sim.ports["grid"]), timeout=1.0) as s:
            s.sendall(bytes([0, 1, 0, 0, 0, 6, 1, 3, 0x20, 0, 0, 2]))
            with pytest.raises(TimeoutError):
                s.recv(100)  # never answered
        with ModbusTcpClient("127.0.0.1", port=sim.ports["grid"], timeout=2, retries=0) as c:
            # the other unit id on the same port still answers
            assert not c.read_input_registers(0, count=2, device_id=2).isError()
        with ModbusTcpClient("127.0.0.1", port=sim.ports["pv"], timeout=2, retries=0) as c:
            rr = c.read_holding_registers(40000, count=2, device_id=1)
            assert rr.isError() and rr.exception_code == 2
        with socket.create_connection(("127.0.0.1", sim.ports["gc"]), timeout=2) as s:
            s.sendall(bytes([0, 1, 0, 0, 0, 6, 1, 4, 0, 0, 0, 2]))
            assert s.recv(100) == b""  # closed without an answer
    finally:
        _stop(sim)


@pytest.mark.services
def test_one_process_serves_1000_bench60_devices(tmp_path: Path) -> None:
    import asyncio

    from pymodbus.client import AsyncModbusTcpClient

    ports = _free_ports(1000)
    devices = [{"name": f"b{i}", "profile": "bench60", "port": p, "unit_id": 1} for i, p in enumerate(ports)]
    (tmp_path / "bench.json").write_text(json.dumps(devices))
    proc = subprocess.Popen(
        [sys.executable, "-m", "drivers.simulator", "--devices", str(tmp_path / "bench.json")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    sim = Sim({}, proc, tmp_path / "none")
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 40)
        assert ready and proc.stdout.readline().strip() == "ready", proc.stderr.read()

        async def poll_all() -> list[list[int]]:
            clients = [AsyncModbusTcpClient("127.0.0.1", port=p) for p in ports]
            await asyncio.gather(*(c.connect() for c in clients))
            try:
                res = await asyncio.gather(
                    *(c.read_holding_registers(0, count=60, device_id=1) for c in clients)
                )
            finally:
                for c in clients:
                    c.close()
            assert not any(r.isError() for r in res)
            return [r.registers for r in res]

        regs = asyncio.run(poll_all())
        assert len(regs) == 1000
        # static image: point k holds the value k as float32, high word first
        assert all(decode_value(r[58:60], "float32") == 29.0 for r in regs)
    finally:
        _stop(sim)


def _start_one(tmp: Path, device: dict, *args: str) -> tuple[subprocess.Popen, int]:
    port = _free_ports(1)[0]
    (tmp / "one.json").write_text(json.dumps([device | {"port": port}]))
    sim = PythonModule(tmp, "drivers.simulator", ["--devices", str(tmp / "one.json"), *args], name="simulator").start()
    return sim.proc, port


@pytest.mark.services
def test_counter_offset_rolls_over_at_width_times_scale(tmp_path: Path) -> None:
    point = load_profile("dc_load_controller").point("e_import_kwh")
    wrap = point.counter_wrap()
    assert wrap == pytest.approx(2**32 * 0.01)
    device = {"name": "dcl", "profile": "dc_load_controller", "unit_id": 1, "counter_offset_kwh": wrap - 0.3}
    proc, port = _start_one(tmp_path, device, "--speed", "600", "--hold", "0.5", "--seed", "1")
    try:
        with ModbusTcpClient("127.0.0.1", port=port) as c:
            first = decode_value(
                c.read_input_registers(point.address, count=2, device_id=1).registers, "uint32"
            )
            time.sleep(1.5)  # ≥ 10 simulated minutes at ≥ 8 kW: more than the 0.3 kWh left
            second = decode_value(
                c.read_input_registers(point.address, count=2, device_id=1).registers, "uint32"
            )
    finally:
        _stop(Sim({}, proc, tmp_path))
    assert first * 0.01 == pytest.approx(wrap - 0.3, abs=0.011)
    assert second < first  # rolled over
    delta_kwh = ((second - first) % 2**32) * 0.01
    assert 0.3 < delta_kwh < 20.0


@pytest.mark.services
def test_faults_file_switches_faults_while_serving(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    device = {"name": "gc", "profile": "grid_converter", "unit_id": 1}
    proc, port = _start_one(tmp_path, device, "--speed", "0", "--faults-file", str(faults))
    try:
        with ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0) as c:
            assert not c.read_input_registers(0, count=2, device_id=1).isError()
            faults.write_text(json.dumps({"gc": "exception2"}))
            time.sleep(0.5)
            rr = c.read_input_registers(0, count=2, device_id=1)
            assert rr.isError() and rr.exception_code == 2
            faults.write_text("{}")
            time.sleep(0.5)
            assert not c.read_input_registers(0, count=2, device_id=1).isError()
    finally:
        _stop(Sim({}, proc, tmp_path))
