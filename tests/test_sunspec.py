"""SunSpec images and discovery: pure walk over a register image, and over Modbus against the simulator."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from pymodbus.client import AsyncModbusTcpClient

from drivers.modbus import _sunspec as sunspec
from drivers.modbus import decode_value, discover_sunspec, load_profile
from drivers.simulator.physics import SHANGHAI
from drivers.simulator.server import SimulatedDevice, serve
from tests.processes import free_port as _free_port

INV_MAP = [
    sunspec.FieldMap(103, "W", "p_kw", 0.001, "kW"),
    sunspec.FieldMap(103, "WH", "e_gen_kwh", 0.001, counter=True),
    sunspec.FieldMap(103, "PhVphA", "v_l1_v"),
]


def test_model_layout_comes_from_pysunspec2() -> None:
    lay = sunspec.model_layout(103)
    assert lay.length == 50  # the L register of model 103
    assert lay.points["W"].offset == 14 and lay.points["W"].sf == "W_SF" and lay.points["WH"].type == "acc32"
    assert sunspec.model_layout(1).length == 66
    with pytest.raises(sunspec.SunSpecError):
        sunspec.model_layout(64999)


def test_image_has_marker_chain_and_end() -> None:
    img = sunspec.build_image([1, 103], {"W_SF": 1, "WH_SF": 0, "V_SF": -1}, {(1, "Mn"): "ACME"}, base=40000)
    r = img.registers
    assert r[:2] == (0x5375, 0x6E53)
    assert r[2:4] == (1, 66) and r[70:72] == (103, 50)
    assert r[-2:] == (0xFFFF, 0)
    assert decode_value(list(r[4:20]), "string") == "ACME"
    assert img.address_of(103, "W") == 40070 + 14
    assert img.scale_factors[(103, "W_SF")] == 1


def test_points_from_registers_bakes_scale_factors() -> None:
    img = sunspec.build_image([1, 103], {"W_SF": 2, "WH_SF": 0, "V_SF": -1}, base=50000)
    pts = {p.name: p for p in sunspec.points_from_registers(img.registers, 50000, INV_MAP)}
    assert pts["p_kw"].address == 50070 + 14 and pts["p_kw"].scale == pytest.approx(0.001 * 100)
    assert pts["v_l1_v"].scale == pytest.approx(0.1) and pts["e_gen_kwh"].counter
    assert pts["e_gen_kwh"].counter_wrap() == pytest.approx(2**32 * 0.001)


def test_unimplemented_scale_factor_drops_point_and_unknown_model_is_skipped() -> None:
    img = sunspec.build_image([1, 103], {"WH_SF": 0, "V_SF": -1}, base=0)  # W_SF not served
    regs = list(img.registers)
    # splice an undefined model id (length 3) in front of the end marker: the walk steps over it
    regs[-2:] = [64999, 3, 1, 2, 3, 0xFFFF, 0]
    names = {p.name for p in sunspec.points_from_registers(regs, 0, INV_MAP)}
    assert names == {"e_gen_kwh", "v_l1_v"}


def test_broken_chain_and_missing_marker_raise() -> None:
    img = sunspec.build_image([1], {}, base=0)
    with pytest.raises(sunspec.SunSpecError):
        sunspec.points_from_registers(img.registers[:40], 0, INV_MAP)
    with pytest.raises(sunspec.SunSpecError):
        sunspec.points_from_registers([0, 0, 1, 66], 0, INV_MAP)


@pytest.mark.services
async def test_discover_over_modbus_matches_profile() -> None:
    port = _free_port()
    ready = asyncio.Event()
    devices = [
        SimulatedDevice("pv", "sunspec_inverter", port, 1),
        SimulatedDevice("bat", "sunspec_battery", port, 2),
    ]
    start = datetime(2026, 6, 21, 12, 0, tzinfo=SHANGHAI)
    task = asyncio.create_task(serve(devices, speed=0.0, seed=3, start_time=start, ready=ready))
    await asyncio.wait_for(ready.wait(), 10)
    client = AsyncModbusTcpClient("127.0.0.1", port=port)
    await client.connect()
    try:
        for unit, profile in ((1, "sunspec_inverter"), (2, "sunspec_battery")):
            found = {p.name: p for p in await discover_sunspec(client, unit)}
            expected = {p.name: p for p in load_profile(profile).points}
            assert set(found) == set(expected)
            for name, p in expected.items():
                assert (found[name].address, found[name].type) == (p.address, p.type), name
                assert found[name].scale == pytest.approx(p.scale), name
        pts = {p.name: p for p in await discover_sunspec(client, 1)}
        rr = await client.read_holding_registers(pts["p_kw"].address, count=1, device_id=1)
        p_kw = decode_value(rr.registers, pts["p_kw"].type) * pts["p_kw"].scale
        assert 20.0 < p_kw <= 100.0  # noon in June, 120 kWp behind a 100 kW inverter
        with pytest.raises(sunspec.SunSpecError):
            await discover_sunspec(client, 1, bases=(0, 50000))
    finally:
        client.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
