"""Battery envelopes, schedule SoC bands, aggregation, flexibility factor, EV, flexible loads, droop."""

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

from analytics import ev as ev_mod
from analytics import flex_metrics as fm
from analytics import flexibility as flex
from analytics import flexible_loads as fl

SETTINGS = settings(max_examples=40, deadline=None)


def close(a, b) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-7, equal_nan=True)


def matrices(min_rows=0, max_rows=4, max_cols=40, lo=-50.0, hi=150.0, nan=True):
    elems = st.floats(lo, hi, allow_nan=False) | (st.just(np.nan) if nan else st.nothing())
    shape = st.tuples(st.integers(min_rows, max_rows), st.integers(0, max_cols))
    return hnp.arrays(np.float64, shape, elements=elems)


def battery_params(n, draw):
    f = st.floats
    e = np.array([draw(f(1.0, 1e4)) for _ in range(n)])
    lo = np.array([draw(f(0.0, 0.5)) for _ in range(n)])
    return {
        "energy_kwh": e,
        "p_ch": np.array([draw(f(0.0, 1e4)) for _ in range(n)]),
        "p_dis": np.array([draw(f(0.0, 1e4)) for _ in range(n)]),
        "eta_c": np.array([draw(f(0.5, 1.0)) for _ in range(n)]),
        "eta_d": np.array([draw(f(0.5, 1.0)) for _ in range(n)]),
        "soc_min": lo,
        "soc_max": lo + np.array([draw(f(0.0, 0.5)) for _ in range(n)]),
    }


# --- hand-calculated ------------------------------------------------------------------------------

def test_battery_envelope_at_and_beyond_soc_bounds() -> None:
    # E = 200 kWh, P_ch = P_dis = 100 kW, η_c = 0.8, η_d = 0.9, SoC in [10 %, 90 %], Δt = 0.25 h.
    # SoC 10 % (lower bound): P_up = 0; room = (0.9 − 0.1)·200/0.8 = 200 kWh →
    #   15 min: min(100, 800) = 100; 1 h: min(100, 200) = 100; 2 h: 100; 4 h: 200/4 = 50.
    # SoC 90 % (upper bound): P_down = 0; available = (0.9 − 0.1)·200·0.9 = 144 kWh →
    #   15 min 100 (576 capped), 1 h 100 (144 capped), 2 h 72, 4 h 36.
    # SoC 95 % (above): P_down clipped to 0; available = 0.85·200·0.9 = 153 kWh → 4 h 38.25.
    # SoC 5 % (below): P_up clipped to 0; room = 0.85·200/0.8 = 212.5 kWh → 4 h 53.125.
    # SoC 50 %: available 0.4·200·0.9 = 72 → 100, 72, 36, 18; room 0.4·200/0.8 = 100 → 100, 100, 50, 25.
    spec = flex.BatterySpec(200.0, 100.0, 100.0, eta_charge=0.8, eta_discharge=0.9,
                            soc_min_pct=10.0, soc_max_pct=90.0, ramp_kw_per_min=20.0)
    env = flex.battery_envelope(np.array([10.0, 90.0, 95.0, 5.0, 50.0, np.nan]), spec, 0.25)
    close(env.p_up_kw[:, 0], [[0, 100, 100, 0, 100, np.nan], [0, 100, 100, 0, 72, np.nan],
                              [0, 72, 76.5, 0, 36, np.nan], [0, 36, 38.25, 0, 18, np.nan]])
    close(env.p_down_kw[:, 0], [[100, 0, 0, 100, 100, np.nan], [100, 0, 0, 100, 100, np.nan],
                                [100, 0, 0, 100, 50, np.nan], [50, 0, 0, 53.125, 25, np.nan]])
    assert env.horizon_steps == (1, 4, 8, 16)
    close(env.ramp_kw_per_step, [300.0])  # 20 kW/min × 15 min
    close(env.energy_up_kwh(3)[0, 1], 144.0)
    assert env.convention["outside_bounds"] == "clipped at 0"


def test_schedule_band_by_hand() -> None:
    # E = 100 kWh, η = 0.95 both ways, SoC 10-90 %, Δt = 1 h, start at 50 %.
    # t0: discharge 50 kW → wants 50/0.95 = 52.63 kWh stored, only 40 available → SoC 10 %,
    #     delivered 40·0.95 = 38 kWh, unserved 12 kWh.
    # t1: discharge 50 kW at the bound → nothing, unserved 50.
    # t2: charge 100 kW → 95 kWh stored wanted, room 80 → SoC 90 %, unserved 100 − 80/0.95 = 15.789.
    # Backward from [10, 90] %: t3 idle keeps it; t2 (+95 %) → lo max(10, 10 − 95) = 10,
    #   hi min(90, 90 − 95) = −5 → empty band: the plan cannot run from any SoC.
    spec = flex.BatterySpec(100.0, 200.0, 50.0, 0.95, 0.95, 10.0, 90.0)
    band = flex.schedule_soc_band(np.array([50.0, 50.0, -100.0, 0.0]), 50.0, spec, 1.0)
    close(band.soc_pct[0], [50, 10, 10, 90, 90])
    close(band.unserved_kwh[0], [12.0, 50.0, 100 - 80 / 0.95, 0.0])
    close(band.feasible_min_pct[0, 2:], [10, 10, 10])
    close(band.feasible_max_pct[0, 2:], [-5, 90, 90])
    # A 60 kW discharge against a 50 kW limit from 90 %: 50/0.95 = 52.63 kWh leave, SoC 37.37 %,
    # unserved = 60 − 50 = 10 kWh.
    capped = flex.schedule_soc_band(np.array([60.0]), 90.0, spec, 1.0)
    close(capped.soc_pct[0], [90.0, 90.0 - 5000 / 95])
    close(capped.unserved_kwh[0], [10.0])


def test_flexibility_factor_thresholds_and_mean_split() -> None:
    # penalty [1, 5, 3, 10], energy [1, 2, 3, 4]; high ≥ 5 → E_high = 2 + 4 = 6; low ≤ 1 → E_low = 1;
    # FF = (1 − 6)/(1 + 6) = −5/7. Mean split (mean 4.75): high {5, 10} = 6, low {1, 3} = 4 → −0.2.
    e = np.array([1.0, 2.0, 3.0, 4.0])
    pen = np.array([1.0, 5.0, 3.0, 10.0])
    ff = fm.flexibility_factor(e, pen, high_at=5.0, low_at=1.0)
    close(ff.ff, [-5 / 7])
    assert ff.convention["split"] == "thresholds"
    assert (ff.n_high[0], ff.n_low[0]) == (2, 1)
    close(fm.flexibility_factor(e, pen, split="mean").ff, [-0.2])
    with pytest.raises(ValueError):
        fm.flexibility_factor(e, pen)


def test_aggregate_building_and_fleet() -> None:
    up = np.array([[1.0, 2.0], [3.0, np.nan], [10.0, 20.0]])
    agg = fm.aggregate_envelope(up, up * 2, groups=np.array([7, 7, 9]))
    close(agg.up_kw, [[4.0, np.nan], [10.0, 20.0]])
    assert list(agg.group_ids) == [7, 9]
    skip = fm.aggregate_envelope(up, up * 2, missing="skip")
    close(skip.up_kw, [[14.0, 22.0]])
    assert skip.reporting.tolist() == [[3, 2]]
    assert skip.convention["missing"] == "skip"


def test_ev_one_way_and_two_way_by_hand() -> None:
    # Session A: intervals 0-3 (4 h), 10 kWh, 5 kW → ASAP 5,5 then idle; slack 2 h → shiftable 10 kWh.
    # Session B: intervals 2-5, 5 kWh at 5 kW. Fleet E_max = 0,5,10,15,15,… ; E_min (ALAP) 0,0,0,5,10,10,15.
    # Two-way with 3 kWh / 5 kW of discharge: A's E_min(1) = max(−3, −5, 10 − 15) = −3 → v2g 3 kWh.
    s = ev_mod.EvSessions(np.array([0, 2]), np.array([4, 6]), np.array([10.0, 5.0]), np.array([5.0, 5.0]),
                          5.0, 3.0)
    one = ev_mod.ev_flexibility(s, 8, 1.0)
    close(one.e_max_kwh, [0, 5, 10, 15, 15, 15, 15, 15, 15])
    close(one.e_min_kwh, [0, 0, 0, 5, 10, 10, 15, 15, 15])
    close(one.shiftable_kwh, [10, 5])
    close(one.p_max_kw, [5, 5, 10, 10, 5, 5, 0, 0])
    two = ev_mod.ev_flexibility(s, 8, 1.0, two_way=True)
    close(two.e_min_kwh[:3], [0, -3, 0])
    close(two.v2g_kwh, [3, 3])
    assert two.convention["direction"] == "two-way"


def test_flexible_load_and_droop_by_hand() -> None:
    # load 0..9 kW, share 0.5, k = 2, D = 4, r = 0.8, Δt = 0.25: P_up(1) = 0.5·min(1, 2) = 0.5;
    # rebound(1) = 0.8·0.5·(1 + 2)·0.25 = 0.3; P_down(0) = min(20 − 1, 0.5·(2 + 3)/2) = 1.25 (S = 2).
    env = fl.flexible_load_envelope(np.arange(10.0), 2, 0.25, 0.5, 4, 0.8, 20.0, 2)
    close(env.p_up_kw[0, :3], [0.0, 0.5, 1.0])
    close(env.rebound_kwh[0, 1], 0.3)
    close(env.p_down_kw[0, 0], 1.25)
    assert np.isnan(env.p_up_kw[0, -1])
    longer = fl.flexible_load_envelope(np.arange(10.0), 5, 0.25, 0.5, 4, 0.8, 20.0)
    close(longer.p_up_kw[0, :6], np.zeros(6))
    # load P0 = −10 kW (draws 10), V_ref 375 V, R = 2 V/kW, deadband 1 V: V = 370 → dv beyond = −4 →
    # P = −10 + 2 = −8 (draws 2 kW less); V = 380 → −12, clipped to P_min = −11.
    d = fl.droop_response(np.array([370.0, 375.0, 380.0, np.nan]), -10.0, 375.0, 2.0, -11.0, 0.0, 1.0)
    close(d.p_kw[0], [-8.0, -10.0, -11.0, np.nan])
    close(d.kw_per_v, [-0.5])


# --- kernels against their twins ------------------------------------------------------------------

@SETTINGS
@given(soc=matrices(lo=-20.0, hi=120.0), data=st.data(), dt=st.sampled_from([0.25, 1.0]))
def test_envelope_kernel_matches_reference(soc, data, dt) -> None:
    p = battery_params(soc.shape[0], data.draw)
    steps = np.array([1, 4, 8, 16], dtype=np.int64)
    shape = (4, *soc.shape)
    got = (np.full(shape, -1.0), np.full(shape, -1.0))
    want = (np.full(shape, -2.0), np.full(shape, -2.0))
    flex._envelope_kernel(soc, *p.values(), dt, steps, *got)
    ref.envelope(soc, *p.values(), dt, steps, *want)
    for g, w in zip(got, want, strict=True):
        close(g, w)
        assert np.all(np.isnan(g) | (g >= 0))


@SETTINGS
@given(plan=matrices(lo=-500.0, hi=500.0), data=st.data())
def test_schedule_kernel_matches_reference(plan, data) -> None:
    n = plan.shape[0]
    p = battery_params(n, data.draw)
    soc0 = np.array([data.draw(st.floats(0.0, 1.0)) for _ in range(n)])
    args = (plan, soc0, p["energy_kwh"], p["p_ch"], p["p_dis"], p["eta_c"], p["eta_d"],
            p["soc_min"], p["soc_max"],
            p["soc_min"].copy(), p["soc_max"].copy(), 0.5)
    nt = plan.shape[1]
    shapes = [(n, nt + 1), (n, nt), (n, nt + 1), (n, nt + 1)]
    got = [np.full(s, -1.0) for s in shapes]
    want = [np.full(s, -2.0) for s in shapes]
    flex._schedule_kernel(*args, *got)
    ref.schedule(*args, *want)
    for g, w in zip(got, want, strict=True):
        close(g, w)


@SETTINGS
@given(values=matrices(max_rows=6), skip=st.booleans(), data=st.data())
def test_group_sum_kernel_matches_reference(values, skip, data) -> None:
    n = values.shape[0]
    labels = np.array([data.draw(st.integers(0, 2)) for _ in range(n)], dtype=np.int64)
    _, inv = np.unique(labels, return_inverse=True)
    order = np.argsort(inv, kind="stable").astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(inv))]).astype(np.int64)
    for g, w in zip(fm._group_sum_kernel(values, order, offsets, skip),
                    ref.group_sum(values, order, offsets, skip), strict=True):
        close(g, w)


@SETTINGS
@given(energy=matrices(min_rows=1), data=st.data())
def test_ff_kernel_matches_reference(energy, data) -> None:
    rows = data.draw(st.sampled_from([1, energy.shape[0]]))
    pen = data.draw(hnp.arrays(np.float64, (rows, energy.shape[1]),
                               elements=st.floats(0, 10) | st.just(np.nan)))
    lo = np.array([data.draw(st.floats(0, 10)) for _ in range(rows)])
    hi = lo + np.array([data.draw(st.floats(0, 5)) for _ in range(rows)])
    for g, w in zip(fm._ff_kernel(energy, pen, hi, lo), ref.flexibility_factor(energy, pen, hi, lo),
                    strict=True):
        close(g, w)
    ff = fm._ff_kernel(energy, pen, hi, lo)[0]
    if not np.any(energy < 0):  # with non-negative energy FF lies in [−1, 1]
        assert np.all(np.isnan(ff) | (np.abs(ff) <= 1 + 1e-12))


@SETTINGS
@given(data=st.data(), n_int=st.integers(1, 30), two_way=st.booleans())
def test_ev_kernel_matches_reference(data, n_int, two_way) -> None:
    ns = data.draw(st.integers(0, 5))
    arr = np.array([data.draw(st.integers(0, n_int - 1)) for _ in range(ns)], dtype=np.int64)
    dep = np.array([data.draw(st.integers(a + 1, n_int)) for a in arr], dtype=np.int64)
    pos = st.floats(0.0, 100.0)
    cols = [np.array([data.draw(pos) for _ in range(ns)], dtype=np.float64) for _ in range(4)]
    args = (arr, dep, *cols, n_int, 0.25, two_way)
    for g, w in zip(ev_mod._ev_kernel(*args), ref.ev(*args), strict=True):
        close(g, w)


@SETTINGS
@given(p=matrices(lo=0.0, hi=100.0), data=st.data(), k=st.integers(1, 6))
def test_load_kernel_matches_reference(p, data, k) -> None:
    n = p.shape[0]
    share = np.array([data.draw(st.floats(0, 1)) for _ in range(n)])
    dur = np.array([data.draw(st.integers(0, 8)) for _ in range(n)], dtype=np.int64)
    reb = np.array([data.draw(st.floats(0, 1.5)) for _ in range(n)])
    rated = np.array([data.draw(st.floats(0, 200)) for _ in range(n)])
    shift = np.array([data.draw(st.integers(0, 5)) for _ in range(n)], dtype=np.int64)
    args = (p, share, dur, reb, rated, shift, k, 0.25)
    for g, w in zip(fl._load_kernel(*args), ref.load_envelope(*args), strict=True):
        close(g, w)


@SETTINGS
@given(v=matrices(lo=300.0, hi=450.0), data=st.data())
def test_droop_kernel_matches_reference(v, data) -> None:
    n = v.shape[0]
    f = st.floats
    p0 = np.array([data.draw(f(-50, 50)) for _ in range(n)])
    args = (v, p0, np.full(n, 375.0), np.array([data.draw(f(0.1, 10)) for _ in range(n)]),
            p0 - np.array([data.draw(f(0, 30)) for _ in range(n)]),
            p0 + np.array([data.draw(f(0, 30)) for _ in range(n)]),
            np.array([data.draw(f(0, 10)) for _ in range(n)]))
    for g, w in zip(fl._droop_kernel(*args), ref.droop(*args), strict=True):
        close(g, w)


# --- edges ------------------------------------------------------------------------------------------

def test_edges_empty_one_interval_all_nan_extreme() -> None:
    spec = flex.BatterySpec(1e9, 1e12, 1e12)
    assert flex.battery_envelope(np.zeros((0, 0)), spec, 0.25).p_up_kw.shape == (4, 0, 0)
    buf = (np.full((1, 1, 2), -1.0), np.full((1, 1, 2), -1.0))
    reused = flex.battery_envelope(np.array([0.0, 100.0]), spec, 1.0, horizons_h=(1.0,), out=buf)
    assert reused.p_up_kw is buf[0] and buf[0][0, 0, 1] == 1e9 and buf[1][0, 0, 0] == 1e9
    with pytest.raises(ValueError, match="out must be"):
        flex.battery_envelope(np.ones(2), spec, 1.0, horizons_h=(1.0,), out=(buf[0], buf[1][..., :1]))
    one = flex.battery_envelope(np.array([[50.0]]), spec, 1.0, horizons_h=(1.0,))
    close(one.p_up_kw, [[[5e8]]])  # half of 1e9 kWh over 1 h, limit 1e12 kW not binding
    assert np.isnan(flex.battery_envelope(np.full((2, 3), np.nan), spec, 0.25).p_down_kw).all()
    band = flex.schedule_soc_band(np.array([[np.nan, 1.0]]), 50.0, spec, 1.0)
    assert band.soc_pct[0, 0] == 50.0 and np.isnan(band.soc_pct[0, 1:]).all()
    assert np.isnan(band.feasible_min_pct[0, 0]) and band.feasible_min_pct[0, 2] == 0.0
    assert 0.0 < band.feasible_min_pct[0, 1] < 1e-6  # 1 kWh out of 1e9 kWh must still be there
    ff = fm.flexibility_factor(np.full(3, np.nan), np.ones(3), high_at=1.0, low_at=0.0)
    assert np.isnan(ff.ff[0]) and ff.n_high[0] == 0
    empty_ev = ev_mod.ev_flexibility(ev_mod.EvSessions(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)),
                                     4, 0.25)
    close(empty_ev.e_max_kwh, np.zeros(5))


def test_validation_errors() -> None:
    with pytest.raises(ValueError, match="whole number"):
        flex.battery_envelope(np.ones(3), flex.BatterySpec(1, 1, 1), 0.25, horizons_h=(0.3,))
    with pytest.raises(ValueError, match="efficien"):
        flex.battery_envelope(np.ones(3), flex.BatterySpec(1, 1, 1, eta_charge=1.2), 0.25)
    with pytest.raises(ValueError, match="soc_min"):
        flex.battery_envelope(np.ones(3), flex.BatterySpec(1, 1, 1, soc_min_pct=60, soc_max_pct=50), 0.25)
    with pytest.raises(ValueError, match="arrival"):
        ev_mod.ev_flexibility(ev_mod.EvSessions(np.array([3]), np.array([2]), np.ones(1), np.ones(1)), 4, 1)
    with pytest.raises(ValueError, match="r_v_per_kw"):
        fl.droop_response(np.ones(2), 0.0, 375.0, 0.0)
