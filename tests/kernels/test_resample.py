"""Resampling to fixed intervals: hand-calculated cases, energy conservation, kernel vs reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.resample import STANDARD_INTERVALS_NS, resample_energy, resample_power
from tests.kernels.reference_energy import resample_energy_ref, resample_power_ref

MIN = 60_000_000_000
T0 = 1_704_038_400_000_000_000  # a whole hour


def test_hour_from_5_min_energy_with_one_missing():
    # 12 x 1 kWh, one missing: present energy 11 kWh, coverage 55/60 = 0.9167,
    # filled = 11 / (11/12) = 12 kWh (mean power 11 kWh / (55/60) h = 12 kW, x 1 h).
    e = np.ones(12)
    e[5] = np.nan
    r = resample_energy(T0 + np.arange(12) * 5 * MIN, e, 5 * MIN, 60 * MIN)
    assert r.energy_kwh.tolist() == [11.0]
    assert r.coverage[0] == pytest.approx(11 / 12)
    assert r.filled_kwh[0] == pytest.approx(12.0)
    assert r.mean_kw[0] == pytest.approx(12.0)
    # Below the minimum coverage there is no filled estimate, but the present energy stays.
    r = resample_energy(T0 + np.arange(12) * 5 * MIN, e, 5 * MIN, 60 * MIN, min_coverage=0.95)
    assert np.isnan(r.filled_kwh[0]) and r.energy_kwh[0] == 11.0


def test_power_to_energy_and_straddling_split():
    # Four 15-min intervals at 4 kW: 4 x 4 kW x 0.25 h = 4 kWh in the hour.
    r = resample_power(T0 + np.arange(4) * 15 * MIN, np.full(4, 4.0), 15 * MIN, 60 * MIN)
    assert r.energy_kwh.tolist() == [4.0] and r.filled_kw.tolist() == [4.0]
    # An input [07:30, 22:30) of 3 kWh straddles the 15-min boundary: 1.5 kWh on each side.
    r = resample_energy(np.array([T0 + 7 * MIN + 30_000_000_000]), [3.0], 15 * MIN, 15 * MIN,
                        start_ns=T0, n_intervals=2)
    assert r.energy_kwh.tolist() == [1.5, 1.5]
    assert r.coverage.tolist() == [0.5, 0.5]
    assert np.isnan(r.filled_kwh).all()


def test_no_data_is_nan_not_zero_and_bad_inputs_raise():
    r = resample_energy(T0 + np.arange(4) * MIN, np.full(4, np.nan), MIN, 5 * MIN)
    assert np.isnan(r.energy_kwh).all() and r.coverage.tolist() == [0.0]
    assert resample_energy(np.array([], dtype=np.int64), np.array([]), MIN, 5 * MIN).energy_kwh.size == 0
    with pytest.raises(ValueError):
        resample_energy(T0 + np.array([0, 30_000_000_000]), [1.0, 1.0], MIN, 5 * MIN)  # overlapping
    with pytest.raises(ValueError):
        resample_energy(T0 + np.arange(2) * MIN, [1.0, 1.0], MIN, 5 * MIN, min_coverage=0.0)


@st.composite
def resample_case(draw):
    src = draw(st.sampled_from([MIN, 5 * MIN, 7 * MIN, 15 * MIN]))
    out = draw(st.sampled_from(STANDARD_INTERVALS_NS))
    n = draw(st.integers(0, 40))
    gaps = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    steps = np.array([src * (1 + g) for g in gaps], dtype=np.int64)
    ts = T0 + draw(st.integers(0, 3 * out)) + np.cumsum(steps)
    value = st.one_of(st.floats(-1e6, 1e6), st.just(np.nan))
    rows = draw(st.integers(1, 3))
    v = np.array(draw(st.lists(st.lists(value, min_size=n, max_size=n), min_size=rows, max_size=rows)))
    return ts, v.reshape(rows, n), src, out, draw(st.sampled_from([0.5, 0.8, 1.0]))


@settings(max_examples=200, deadline=None)
@given(resample_case(), st.sampled_from(["energy", "power"]))
def test_kernel_matches_reference_and_conserves_energy(case, kind):
    ts, v, src, out, min_cov = case
    fn = resample_energy if kind == "energy" else resample_power
    start = T0
    n_out = int((ts[-1] + src - start) // out + 1) if ts.size else 1
    ref = resample_energy_ref if kind == "energy" else resample_power_ref
    r = fn(ts, v, src, out, start_ns=start, n_intervals=n_out, min_coverage=min_cov)
    e, c, f = ref(ts, v, src, out, start_ns=start, n_intervals=n_out, min_coverage=min_cov)
    np.testing.assert_allclose(r.energy_kwh, e, rtol=1e-9, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(r.coverage, c, rtol=1e-12)
    np.testing.assert_allclose(r.filled_kwh, f, rtol=1e-9, atol=1e-6, equal_nan=True)
    to_kwh = 1.0 if kind == "energy" else src / 3_600_000_000_000
    assert np.nansum(r.energy_kwh) == pytest.approx(np.nansum(v) * to_kwh, rel=1e-9, abs=1e-5)
    assert ((r.coverage >= 0) & (r.coverage <= 1 + 1e-12)).all()
