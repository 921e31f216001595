"""Delivered response of demand-response events (baseline − measured), per building and per fleet."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reference_flex as ref

from analytics import baselines as bl
from analytics import mv


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
    assert np.isnan(r.interval_kw[0, 0, 13]) and r.convention["clip"] == "net"


def test_delivered_response_clipped_per_building_and_per_interval() -> None:
    load, events, base = _constructed_event()
    r = mv.delivered_response(base, load, events, 24, clip="per-building")
    close(r.energy_kwh[:, 0], [10.8, 0.0])
    close(r.fleet_energy_kwh, [10.8])
    close(r.fleet_avg_kw, [5.4])
    assert r.convention["clip"] == "per-building"
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


@settings(max_examples=40, deadline=None)
@given(data=st.data(), ipd=st.sampled_from([4, 24]), clip=st.sampled_from([0, 1, 2]))
def test_kernel_matches_reference(data, ipd, clip) -> None:
    nb = data.draw(st.integers(0, 3))
    nd = data.draw(st.integers(1, 5))
    ne = data.draw(st.integers(0, 3))
    elems = st.floats(-1e3, 1e6) | st.just(np.nan)
    measured = data.draw(hnp.arrays(np.float64, (nb, nd * ipd), elements=elems))
    baseline = data.draw(hnp.arrays(np.float64, (nb, ne, ipd), elements=elems))
    day = np.array([data.draw(st.integers(0, nd - 1)) for _ in range(ne)], dtype=np.int64)
    start = np.array([data.draw(st.integers(0, ipd - 1)) for _ in range(ne)], dtype=np.int64)
    stop = np.array([data.draw(st.integers(s + 1, ipd)) for s in start], dtype=np.int64)
    args = (baseline, measured, ipd, day, start, stop, 24.0 / ipd, clip)
    for g, w in zip(mv._response_kernel(*args), ref.response(*args), strict=True):
        close(g, w)
