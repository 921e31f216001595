"""Delivered response of demand-response events (baseline − measured), per building and per fleet."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from analytics import baselines as bl
from analytics import mv
from tests.kernels import reference_flex as ref


def close(a, b) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True)


def _constructed_event():
    # Two buildings, hourly data, 11 days; event day 10, 14:00-16:00 (2 h).
    # Building A: the 10-in-10 case of test_baselines (days 10 … 19 kW, 20 kW in the adjustment window)
    #   → baseline 17.4 kW; measured 12 kW in the event → (17.4 − 12)·2 h = 10.8 kWh, 5.4 kW average.
    # Building B: flat 10 kW on every day → baseline 10 kW (ratio 1); measured 13 kW then 9 kW →
    #   net (−3 + 1)·1 h = −2 kWh, −1 kW; total clipped per building: 0; intervals clipped: 0 + 1 = 1 kWh.
    # Fleet: net (10.8 − 2) = 8.8 kWh / 2 h = 4.4 kW; per building 10.8 kWh, 5.4 kW;
    #   per interval 11.8 kWh, 5.9 kW.
    a = np.concatenate([np.full(24, 10.0 + d) for d in range(10)] + [np.full(24, 20.0)])
    a[240 + 14:240 + 16] = 12.0
    b = np.full(264, 10.0)
    b[240 + 14] = 13.0
    b[240 + 15] = 9.0
    load = np.vstack([a, b])
    events = bl.DrEvents(np.array([10]), np.array([14]), np.array([16]))
    return load, events, bl.ten_in_ten(load, np.ones(11, bool), events, 24)


def test_delivered_response_net_by_hand() -> None:
    load, events, base = _constructed_event()
    r = mv.delivered_response(base, load, events, 24)
    close(base.baseline_kw[:, 0, 14], [17.4, 10.0])
    close(r.energy_kwh[:, 0], [10.8, -2.0])
    close(r.avg_kw[:, 0], [5.4, -1.0])
    close(r.fleet_energy_kwh, [8.8])
    close(r.fleet_avg_kw, [4.4])
    close(r.duration_h, [2.0])
    close(r.interval_kw[1, 0, 14:16], [-3.0, 1.0])
    assert np.isnan(r.interval_kw[0, 0, 13]) and "clip=net" in r.convention


def test_delivered_response_clipped_per_building_and_per_interval() -> None:
    load, events, base = _constructed_event()
    r = mv.delivered_response(base, load, events, 24, clip="per-building")
    close(r.energy_kwh[:, 0], [10.8, 0.0])
    close(r.fleet_energy_kwh, [10.8])
    close(r.fleet_avg_kw, [5.4])
    assert "clip=per-building" in r.convention
    r = mv.delivered_response(base, load, events, 24, clip="per-interval")
    close(r.energy_kwh[:, 0], [10.8, 1.0])
    close(r.fleet_energy_kwh, [11.8])
    close(r.fleet_avg_kw, [5.9])


def test_missing_measurement_gives_nan_not_zero() -> None:
    load, events, base = _constructed_event()
    load[1, 240 + 15] = np.nan
    r = mv.delivered_response(base.baseline_kw, load, events, 24)
    assert np.isnan(r.energy_kwh[1, 0]) and np.isnan(r.fleet_energy_kwh[0])
    assert r.energy_kwh[0, 0] == pytest.approx(10.8)


def test_shape_validation() -> None:
    load, events, base = _constructed_event()
    with pytest.raises(ValueError, match="baseline_kw"):
        mv.delivered_response(base.baseline_kw[:1], load, events, 24)
    with pytest.raises(ValueError, match="clip"):
        mv.delivered_response(base, load, events, 24, clip="gross")


EVENTS = bl.DrEvents(np.array([1]), np.array([5]), np.array([7]))


@pytest.mark.parametrize(("call", "match"), [
    (lambda: mv.delivered_response(np.ones((1, 1, 24)), np.ones((1, 1, 48)), EVENTS, 24),
     "measured_kw: expected a 1-D or 2-D"),
    (lambda: mv.delivered_response(np.ones((1, 1, 24)), np.ones(50), EVENTS, 24), "whole days"),
    (lambda: mv.delivered_response(np.ones((1, 2, 24)), np.ones(48), EVENTS, 24),
     r"baseline_kw: expected shape \(1, 1, 24\)"),
    (lambda: mv.delivered_response(np.ones((1, 1, 24)), np.ones(48),
                                   bl.DrEvents(np.array([1]), np.array([np.nan]), np.array([7])), 24),
     "events.start: NaN is not allowed"),
    (lambda: mv.delivered_response(np.ones((1, 1, 24)), np.ones(48),
                                   bl.DrEvents(np.array([1]), np.array([7]), np.array([5])), 24), "start < stop"),
    (lambda: mv.delivered_response("x", np.ones(48), EVENTS, 24), "baseline_kw: expected"),
])
def test_bad_input_raises_value_error(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()


@settings(max_examples=40, deadline=None)
@given(data=st.data(), ipd=st.sampled_from([4, 24]), clip=st.sampled_from(["net", "per-interval", "per-building"]),
       as_result=st.booleans())
def test_delivered_response_matches_reference(data, ipd, clip, as_result) -> None:
    nb = data.draw(st.integers(0, 3))
    nd = data.draw(st.integers(1, 5))
    ne = data.draw(st.integers(0, 3))
    elems = st.floats(-1e3, 1e6) | st.just(np.nan)
    shape = (nd * ipd,) if nb == 1 and data.draw(st.booleans()) else (nb, nd * ipd)
    measured = data.draw(hnp.arrays(np.float64, shape, elements=elems))
    baseline = data.draw(hnp.arrays(np.float64, (nb, ne, ipd), elements=elems))
    day = np.array([data.draw(st.integers(0, nd - 1)) for _ in range(ne)], dtype=np.int64)
    start = np.array([data.draw(st.integers(0, ipd - 1)) for _ in range(ne)], dtype=np.int64)
    stop = np.array([data.draw(st.integers(s + 1, ipd)) for s in start], dtype=np.int64)
    events = bl.DrEvents(day, start, stop)
    if as_result:
        baseline = bl.Baseline(baseline, np.zeros((nb, ne, 1), dtype=np.int64), np.ones((nb, ne)), "given", "")
    got = mv.delivered_response(baseline, measured, events, ipd, clip=clip)
    fields = (got.interval_kw, got.energy_kwh, got.avg_kw, got.fleet_energy_kwh, got.fleet_avg_kw, got.duration_h)
    for g, w in zip(fields, ref.delivered_response_ref(baseline, measured, events, ipd, clip), strict=True):
        close(g, w)
