"""Values that cannot be represented: sentinels decode to NaN (counted per point as not available),
64-bit integers beyond 2^53 keep their exact text to the line protocol (both encoders)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from pydantic import ValidationError

from drivers.modbus import DeviceDecoder, Point, encode_value, plan_requests
from gateway.journal import JournalRow
from gateway.series import SeriesKey
from gateway.service._availability import Availability
from gateway.sinks import LineEncoder


def _point(name: str, dtype: str, address: int, **extra: object) -> Point:
    return Point(name=name, register="holding", address=address, type=dtype, **extra)


def _decode(points: list[Point], values: list[float | int]) -> tuple[np.ndarray, tuple[str | None, ...] | None]:
    regs: list[int] = []
    for p, v in zip(points, values, strict=True):
        regs += [0] * (p.address - len(regs))
        regs += encode_value(v, p.type, p.word_order, p.byte_order)
    return DeviceDecoder(points, plan_requests(points)).decode([regs])


@pytest.mark.parametrize(("dtype", "sentinel"), [("uint16", 0xFFFF), ("int16", -0x8000), ("uint32", 2**32 - 1),
                                                 ("int32", -(2**31)), ("uint64", 2**64 - 1), ("int64", -(2**63))])
def test_each_integer_type_has_its_sentinel(dtype: str, sentinel: int) -> None:
    points = [_point("a", dtype, 0), _point("b", dtype, 4)]
    values, _ = _decode(points, [sentinel, 7])
    assert math.isnan(values[0]) and values[1] == 7


def test_declared_sentinels_none_and_counters() -> None:
    points = [_point("own", "uint16", 0, not_available=[0x7FFF]), _point("pattern", "int16", 1, not_available=[0xFFFF]),
              _point("none", "uint16", 2, not_available=[]), _point("count", "uint16", 3, counter=True),
              _point("scaled", "int16", 4, scale=0.1), _point("f", "float32", 5, not_available=[-9999.0])]
    values, _ = _decode(points, [0x7FFF, -1, 0xFFFF, 0xFFFF, -0x8000, -9999.0])
    assert math.isnan(values[0]) and math.isnan(values[1])  # 0xFFFF is int16's -1
    assert values[2] == 0xFFFF and values[3] == 0xFFFF  # switched off; a counter's all-ones is a reading
    assert math.isnan(values[4]) and math.isnan(values[5])
    values, _ = _decode(points, [0xFFFF, 5, 1, 2, 3, 1.5])
    assert values.tolist() == [0xFFFF, 5, 1, 2, pytest.approx(0.3), 1.5]


def test_a_sentinel_that_is_no_raw_value_of_the_type_is_refused() -> None:
    with pytest.raises(ValidationError, match="not a raw uint16"):
        _point("a", "uint16", 0, not_available=[0x10000])
    with pytest.raises(ValidationError, match="numeric points"):
        Point(name="c", register="coil", address=0, type="bool", not_available=[1])


def test_integers_beyond_2_53_travel_as_exact_text() -> None:
    points = [_point("big", "uint64", 0), _point("neg", "int64", 4), _point("small", "uint64", 8),
              _point("huge", "uint64", 12), _point("scaled", "uint64", 16, scale=0.001), _point("x", "uint16", 20)]
    values, texts = _decode(points, [2**53 + 1, -(2**60) - 3, 12, 2**63 + 5, 2**60 + 1, 3])
    assert texts == (str(2**53 + 1), str(-(2**60) - 3), None, None, None, None)
    assert math.isnan(values[3])  # above int64: line protocol's i cannot carry it
    assert values[4] == pytest.approx(2**60 * 0.001)  # a float field: a float is what it is
    values, texts = _decode(points, [1, 2, 3, 4, 5, 6])
    assert texts is None and values.tolist() == [1, 2, 3, 4, pytest.approx(0.005), 6]


def test_single_type_fast_paths_check_too() -> None:
    in_order = [_point(f"x{i}", "uint16", i) for i in range(4)]
    values, _ = _decode(in_order, [1, 0xFFFF, 3, 0xFFFF])
    assert np.isnan(values).tolist() == [False, True, False, True]
    wide = [_point(f"y{i}", "uint64", 4 * i, word_order="little") for i in range(2)]
    values, texts = _decode(wide, [2**62 + 1, 2**64 - 1])
    assert texts == (str(2**62 + 1), None) and math.isnan(values[1])


@pytest.mark.parametrize("compiled", [False, True])
def test_encoder_writes_the_exact_text(compiled: bool) -> None:
    key = SeriesKey("m", (("device", "d"),), ("big", "f", "n"), ("int", "float", "int"))
    enc = LineEncoder(lambda _sid: key, compiled=compiled)
    rows = [JournalRow(1, 1, 10, np.array([2.0**53, 1.5, 3.0]), (str(2**53 + 1), None, None)),
            JournalRow(2, 1, 11, np.array([5.0, 1.5, np.nan]), None),
            JournalRow(3, 1, 12, np.array([np.nan, 2.5, 3.0]), (str(2**53 + 1), None, None))]  # deadband: left out
    assert enc.encode_lines_bytes(rows).decode().split("\n") == [
        "m,device=d big=9007199254740993i,f=1.5,n=3i 10", "m,device=d big=5i,f=1.5 11", "m,device=d f=2.5,n=3i 12"]


def test_availability_counts_per_point_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    points = (_point("a", "uint16", 0), _point("name", "string", 1, length=2), _point("f", "float32", 3))
    av = Availability()
    av.register("dev", points)
    with caplog.at_level(logging.WARNING, logger="pedf.values"):
        for _ in range(3):
            av.check("dev", np.array([np.nan, np.nan, np.inf]))
        av.check("dev", np.array([1.0, np.nan, 2.0]))
    assert av.counts() == {"dev": {"a": 3, "f": 3}}  # the string field's NaN is no miss
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["dev.a", "dev.f"]
    assert "sentinel 0xFFFF" in caplog.records[0].getMessage()


def test_override_declares_or_switches_off_a_sentinel(tmp_path) -> None:
    import yaml

    from gateway.config import load_site

    site = {"site": {"name": "t"}, "parks": [{"name": "p", "grid_region": "east_china"}],
            "buildings": [{"name": "b", "park": "p", "floor_area_m2": 1}],
            "devices": [{"name": "d", "building": "b", "role": "sub_meter", "profile": "bench60u16",
                         "connection": {"type": "tcp", "host": "127.0.0.1"},
                         "overrides": {"x00_kw": {"not_available": []}, "x01_kw": {"not_available": [0x7FFF]}}}]}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    points = {p.name: p for p in load_site(path).devices[0].points}
    assert points["x00_kw"].sentinels == () and points["x01_kw"].sentinels == (0x7FFF,)
    assert points["x02_kw"].sentinels == (0xFFFF,)


def test_the_mqtt_publisher_keeps_an_exact_integer_a_number() -> None:
    from gateway.sinks._mqtt_publish import _exact_or_text

    big = 2**53 + 1
    assert _exact_or_text(str(big), float(big)) == big and isinstance(_exact_or_text(str(-big), -float(big)), int)
    assert _exact_or_text("SN-1234", math.nan) == "SN-1234"  # a string field stays a string
    assert _exact_or_text("1234", math.nan) == "1234"  # a string field of digits is still a string
