"""Device profiles: every profile loads, validates, has no overlapping registers, documents counters."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.modbus import DataType, Point, ProfileError, RegisterType, available_profiles, load_profile

REQUIRED = {
    "dtsu666",
    "sdm630",
    "sunspec_inverter",
    "sunspec_battery",
    "grid_converter",
    "dc_converter",
    "dc_load_controller",
    "bench60",
}
UNIT_SUFFIXES = ("_kw", "_kwh", "_v", "_a", "_hz", "_pct", "_c")
DIMENSIONLESS = {"pf", "state", "cha_state", "stor_ctl_mod"}


def test_required_profiles_available() -> None:
    assert set(available_profiles()) >= REQUIRED


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_profile_points_validate_and_do_not_overlap(name: str) -> None:
    prof = load_profile(name)
    assert prof.name == name and prof.sources and prof.description
    used: dict[tuple[RegisterType, int], str] = {}
    for p in prof.points:
        assert isinstance(p, Point)
        Point.model_validate(p.model_dump(by_alias=True))  # round-trips through the shared schema
        assert p.name.endswith(UNIT_SUFFIXES) or p.name in DIMENSIONLESS, p.name
        for a in range(p.address, p.end):
            assert (p.register_type, a) not in used, f"{p.name} overlaps {used[(p.register_type, a)]}"
            used[(p.register_type, a)] = p.name
        if p.writable:
            assert p.min is not None and p.max is not None, p.name
    if prof.max_registers is not None:
        for rtype in (RegisterType.HOLDING, RegisterType.INPUT):
            pts = [p for p in prof.points if p.register_type is rtype]
            assert all(p.register_count <= prof.max_registers for p in pts)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_counters_carry_width_and_scale(name: str) -> None:
    for p in load_profile(name).points:
        if (
            p.name.startswith("e_")
            and p.name.endswith("_kwh")
            and p.name not in ("e_rated_kwh", "e_avail_kwh")
        ):
            assert p.counter, p.name
        if p.counter:
            if p.type in (DataType.FLOAT32, DataType.FLOAT64):
                assert p.counter_wrap() is None
            else:
                assert p.type in (DataType.UINT32, DataType.UINT16, DataType.UINT64)
                assert p.counter_wrap() == pytest.approx(2 ** (16 * p.register_count) * p.scale)


def test_own_maps_use_uint32_counters_with_scale() -> None:
    for name in ("grid_converter", "dc_converter", "dc_load_controller"):
        counters = [p for p in load_profile(name).points if p.counter]
        assert counters and all(p.type is DataType.UINT32 and p.scale == 0.01 for p in counters)
        assert counters[0].counter_wrap() == pytest.approx(2**32 * 0.01)


def test_known_register_addresses() -> None:
    dtsu = load_profile("dtsu666")
    assert dtsu.point("p_kw").address == 0x2012 and dtsu.point("p_kw").scale == pytest.approx(1e-4)
    assert dtsu.point("e_import_kwh").address == 0x401E and dtsu.point("e_export_kwh").address == 0x4028
    assert "0x4000" in dtsu.notes and "0x401E" in dtsu.notes  # both sources documented
    sdm = load_profile("sdm630")
    assert {p.register_type for p in sdm.points} == {RegisterType.INPUT}
    assert sdm.point("p_kw").address == 0x34 and sdm.point("e_import_kwh").address == 0x48
    assert sdm.point("e_export_kwh").address == 0x4A and sdm.point("p_kw").type is DataType.FLOAT32
    bench = load_profile("bench60")
    assert len(bench.points) == 30 and max(p.end for p in bench.points) == 60


def test_sunspec_profiles_map_models() -> None:
    inv = load_profile("sunspec_inverter")
    assert inv.sunspec is not None and inv.sunspec.models == (1, 103)
    # model 1 is 68 registers from 40002, model 103 starts at 40070; W is offset 14, W_SF = 1
    w = inv.point("p_kw")
    assert w.address == 40070 + 14 and w.scale == pytest.approx(0.001 * 10)
    bat = load_profile("sunspec_battery")
    assert bat.sunspec is not None and set(bat.sunspec.models) == {1, 713, 124, 802}
    writable = {p.name for p in bat.points if p.writable}
    assert writable == {"stor_ctl_mod", "in_w_rte_pct", "out_w_rte_pct"}


def test_setpoints_are_writable_holding_registers_with_limits() -> None:
    assert load_profile("dc_load_controller").point("p_limit_kw").max == 100
    p_set = load_profile("dc_converter").point("p_set_kw")
    assert (
        p_set.writable and p_set.register_type is RegisterType.HOLDING and (p_set.min, p_set.max) == (-50, 50)
    )


def _write(tmp_path: Path, body: str) -> str:
    f = tmp_path / "bad.yaml"
    f.write_text(body, encoding="utf-8")
    return str(f)


def test_error_names_file_and_point(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
name: bad
description: x
device_class: meter
sources: [x]
points:
  - {name: p_kw, register: input, address: 0, type: float32}
  - {name: q_kvar, register: input, address: 1, type: float32}
""",
    )
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert "bad.yaml" in str(err.value) and "q_kvar" in str(err.value) and "overlaps" in str(err.value)


def test_invalid_point_is_reported_with_its_name(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
name: bad2
description: x
device_class: meter
sources: [x]
points:
  - {name: p_kw, register: input, address: 0, type: float32, writable: true}
""",
    )
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert "p_kw" in str(err.value) and "only holding registers" in str(err.value)


def test_unknown_profile_lists_available() -> None:
    with pytest.raises(ProfileError) as err:
        load_profile("no_such_meter")
    assert "dtsu666" in str(err.value)
