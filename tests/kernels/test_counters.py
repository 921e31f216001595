"""Interval energy from cumulative counters: hand-calculated cases and kernel-vs-reference properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.counters import (
    FLAG_APPORTIONED,
    FLAG_GAP,
    FLAG_GAP_START,
    FLAG_RESET,
    FLAG_ROLLOVER,
    counter_wrap,
    interval_energy,
)
from tests.kernels.reference_energy import interval_energy_numpy_ongrid, interval_energy_ref

MIN = 60_000_000_000
Q = 15 * MIN
T0 = 1_704_038_400_000_000_000  # 2024-01-01 00:00 Asia/Shanghai, a multiple of 15 min


def test_uint32_rollover_at_0_01_kwh():
    # Acrel DDSY1352: UINT32 x 0.01 kWh -> wrap = 2**32 * 0.01 = 42,949,672.96 kWh.
    # 42,949,672.00 -> 0.54: wrapped delta = 0.54 - 42,949,672.00 + 42,949,672.96 = 1.50 kWh,
    # within P_max x dt = 100 kW x 0.25 h = 25 kWh -> rollover of 1.50 kWh.
    wrap = counter_wrap(32, 0.01)
    assert wrap == pytest.approx(42_949_672.96)
    ts = T0 + np.arange(3) * Q
    r = interval_energy(ts, [42_949_671.0, 42_949_672.0, 0.54], Q, wrap_kwh=wrap, p_max_kw=100.0)
    np.testing.assert_allclose(r.energy_kwh, [1.0, 1.50], rtol=0, atol=1e-6)
    assert r.flags.tolist() == [0, FLAG_ROLLOVER]
    assert r.n_rollovers == 1 and r.n_resets == 0


def test_meter_replacement_is_a_flagged_reset():
    # 5,000 -> 3 kWh: wrapped delta 3 - 5,000 + 42,949,672.96 far above 25 kWh -> reset, delta = 3.
    ts = T0 + np.arange(3) * Q
    r = interval_energy(ts, [4_999.0, 5_000.0, 3.0], Q, wrap_kwh=counter_wrap(32, 0.01), p_max_kw=100.0)
    assert r.energy_kwh.tolist() == [1.0, 3.0]
    assert r.flags.tolist() == [0, FLAG_RESET]
    # A counter that never wraps (wrap 0) treats every decrease as a reset.
    assert interval_energy(ts, [5.0, 6.0, 2.0], Q).flags.tolist() == [0, FLAG_RESET]


def test_missing_reading_makes_both_touching_intervals_nan_and_reports_gap_energy():
    # Readings 10, 11, (missing), 14, 15: intervals [15,30) and [30,45) touch the missing reading;
    # the energy across the gap, 14 - 11 = 3 kWh, is reported at the interval where it starts.
    ts = T0 + np.arange(5) * Q
    r = interval_energy(ts, [10.0, 11.0, np.nan, 14.0, 15.0], Q)
    np.testing.assert_array_equal(r.energy_kwh, [1.0, np.nan, np.nan, 1.0])
    np.testing.assert_array_equal(r.gap_energy_kwh, [0.0, 3.0, 0.0, 0.0])
    assert r.flags.tolist() == [0, FLAG_GAP | FLAG_GAP_START, FLAG_GAP, 0]
    assert r.n_gaps == 1
    (first,), (energy,) = r.gaps
    assert first == 1 and energy == 3.0


def test_jitter_snapped_within_tolerance_else_apportioned():
    # 15:00+1 min is 6.7 % off (<= 10 %) -> snapped to 15. 30:00+3 min is 20 % off -> kept.
    # Span [15, 33) carries 2.8 - 1 = 1.8 kWh over 18 min: [15,30) gets 15/18 x 1.8 = 1.5,
    # [30,45) gets 3/18 x 1.8 = 0.3 plus the span [33,45) of 4 - 2.8 = 1.2 -> 1.5 kWh.
    ts = T0 + np.array([0, 16, 33, 45, 60]) * MIN
    r = interval_energy(ts, [0.0, 1.0, 2.8, 4.0, 5.0], Q)
    np.testing.assert_allclose(r.energy_kwh, [1.0, 1.5, 1.5, 1.0], rtol=1e-12)
    assert r.flags.tolist() == [0, FLAG_APPORTIONED, FLAG_APPORTIONED, 0]


def test_duplicates_and_out_of_order_timestamps():
    # Sorted: 0:1, 15:2 then 15:2.5 (same timestamp, last wins), 30:3 -> [2.5 - 1, 3 - 2.5].
    ts = T0 + np.array([30, 0, 15, 15]) * MIN
    r = interval_energy(ts, [3.0, 1.0, 2.0, 2.5], Q)
    np.testing.assert_allclose(r.energy_kwh, [1.5, 0.5])
    # A duplicate whose later copy is missing keeps the earlier value.
    r = interval_energy(T0 + np.array([0, 15, 15]) * MIN, [1.0, 2.0, np.nan], Q)
    assert r.energy_kwh.tolist() == [1.0]


def test_edge_cases_empty_single_all_nan():
    assert interval_energy(np.array([], dtype=np.int64), np.array([]), Q).energy_kwh.shape == (0,)
    assert interval_energy(np.array([T0]), np.array([5.0]), Q).energy_kwh.shape == (0,)
    r = interval_energy(T0 + np.arange(4) * Q, np.full(4, np.nan), Q, start_ns=T0, n_intervals=3)
    assert np.isnan(r.energy_kwh).all() and r.n_gaps == 0
    with pytest.raises(ValueError):
        interval_energy(T0 + np.arange(3) * Q, np.zeros(4), Q)
    with pytest.raises(ValueError):
        interval_energy(T0 + np.arange(3) * Q, np.zeros(3), Q, snap_tolerance=0.6)
    with pytest.raises(ValueError, match="p_max_kw"):
        interval_energy(T0 + np.arange(3) * Q, np.zeros(3), Q, wrap_kwh=100.0)


@st.composite
def counter_case(draw):
    n = draw(st.integers(0, 30))
    slots = draw(st.lists(st.integers(0, 25), min_size=n, max_size=n))
    offsets = st.sampled_from([0.0, 0.0, 0.05, -0.08, 0.2, -0.35, 0.45])
    jitter = draw(st.lists(offsets, min_size=n, max_size=n))
    ts = np.array([T0 + int((s + j) * Q) for s, j in zip(slots, jitter, strict=True)], dtype=np.int64)
    value = st.one_of(st.floats(0, 1e3), st.floats(0, 1e12), st.just(np.nan), st.just(0.0))
    rows = draw(st.integers(1, 3))
    values = np.array(draw(st.lists(st.lists(value, min_size=n, max_size=n), min_size=rows, max_size=rows)))
    wrap = draw(st.sampled_from([0.0, 1e3, counter_wrap(32, 0.01)]))
    p_max = draw(st.sampled_from([np.inf, 10.0, 1e4]))
    tol = draw(st.sampled_from([0.0, 0.1, 0.3]))
    window = draw(st.one_of(st.just({}), st.builds(
        lambda first, count: {"start_ns": T0 + first * Q, "n_intervals": count},
        st.integers(-3, 10), st.integers(0, 30))))
    return ts, values.reshape(rows, n), wrap, p_max, tol, window


@settings(max_examples=300, deadline=None)
@given(counter_case())
def test_kernel_matches_reference(case):
    ts, values, wrap, p_max, tol, window = case
    r = interval_energy(ts, values, Q, wrap_kwh=wrap, p_max_kw=p_max, snap_tolerance=tol, **window)
    e, f, g = interval_energy_ref(ts, values, Q, wrap_kwh=wrap, p_max_kw=p_max, snap_tolerance=tol, **window)
    np.testing.assert_allclose(r.energy_kwh, e, rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(r.flags, f)
    np.testing.assert_allclose(r.gap_energy_kwh, g, rtol=1e-12, equal_nan=True)
    # Energy is never invented: every known interval is non-negative.
    assert not (r.energy_kwh < 0).any()


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.data())
def test_on_grid_kernel_matches_vectorised_numpy(n, data):
    ts = T0 + np.arange(n, dtype=np.int64) * Q
    value = st.one_of(st.floats(0, 100), st.just(np.nan))
    values = np.array(data.draw(st.lists(st.lists(value, min_size=n, max_size=n), min_size=1, max_size=3)))
    wrap, p_max = data.draw(st.sampled_from([(0.0, np.inf), (100.0, 200.0), (100.0, np.inf)]))
    r = interval_energy(ts, values, Q, wrap_kwh=wrap, p_max_kw=p_max)
    e, f, g = interval_energy_numpy_ongrid(ts, values, Q, wrap_kwh=wrap, p_max_kw=p_max)
    np.testing.assert_allclose(r.energy_kwh, e, rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(r.flags, f)
    np.testing.assert_allclose(r.gap_energy_kwh, g, rtol=1e-12, equal_nan=True)


def test_energy_of_snapped_readings_is_conserved_between_intervals_and_gaps():
    # Readings jittered by up to 5 % snap onto the grid, so known intervals plus gap energy add up
    # to last - first reading exactly (no rollover or reset in this series).
    rng = np.random.default_rng(7)
    ts = T0 + np.arange(200) * Q + rng.integers(-Q // 20, Q // 20, 200)
    values = np.cumsum(rng.uniform(0, 5, 200))
    values[[20, 21, 90]] = np.nan
    r = interval_energy(ts, values, Q)
    total = np.nansum(r.energy_kwh) + r.gap_energy_kwh.sum()
    assert total == pytest.approx(values[-1] - values[0], rel=1e-12)
    assert np.isnan(r.energy_kwh).sum() == 5 and r.n_gaps == 2
