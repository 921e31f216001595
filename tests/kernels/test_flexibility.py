"""Battery envelopes, schedule SoC bands, aggregation, flexibility factor, EV, flexible loads, droop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from analytics import ev as ev_mod
from analytics import flex_metrics as fm
from analytics import flexibility as flex
from analytics import flexible_loads as fl
from tests.kernels import reference_flex as ref

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
    assert isinstance(env.convention, str) and "clipped at 0" in env.convention


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
    assert ff.convention.endswith("split=thresholds, high_at=5.0, low_at=1.0")
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
    assert skip.convention.endswith("missing=skip") and agg.convention.endswith("missing=propagate")


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
    assert two.convention.startswith("two-way") and one.convention.startswith("one-way")


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


# --- public functions against their twins ---------------------------------------------------------
# Inputs are 1-D (one row) or 2-D, parameters scalars or one per row: the wrappers' shaping and
# parameter handling are exercised along with the kernels.

def series(lo=-50.0, hi=150.0, max_rows=4, max_cols=40, nan=True):
    vector = hnp.arrays(np.float64, st.integers(0, max_cols),
                        elements=st.floats(lo, hi, allow_nan=False) | (st.just(np.nan) if nan else st.nothing()))
    return matrices(max_rows=max_rows, max_cols=max_cols, lo=lo, hi=hi, nan=nan) | vector


def n_rows(x: np.ndarray) -> int:
    return 1 if x.ndim == 1 else x.shape[0]


def param(draw, n, strategy):
    """A scalar or one value per row, drawn from ``strategy``."""
    if draw(st.booleans()):
        return draw(strategy)
    return np.array([draw(strategy) for _ in range(n)])


def battery_spec(n, draw):
    f = st.floats
    lo = param(draw, n, f(0.0, 50.0))
    return flex.BatterySpec(
        energy_kwh=param(draw, n, f(1.0, 1e4)), p_charge_max_kw=param(draw, n, f(0.0, 1e4)),
        p_discharge_max_kw=param(draw, n, f(0.0, 1e4)), eta_charge=param(draw, n, f(0.5, 1.0)),
        eta_discharge=param(draw, n, f(0.5, 1.0)), soc_min_pct=lo, soc_max_pct=lo + param(draw, n, f(0.0, 50.0)),
        ramp_kw_per_min=param(draw, n, f(0.1, 1e3)),
    )


@SETTINGS
@given(soc=series(lo=-20.0, hi=120.0), data=st.data(), dt=st.sampled_from([0.25, 1.0]))
def test_battery_envelope_matches_reference(soc, data, dt) -> None:
    spec = battery_spec(n_rows(soc), data.draw)
    horizons = data.draw(st.sampled_from([(0.25 * 4 * dt, 2.0 * 4 * dt), (dt,), (dt, 4.0 * dt, 8.0 * dt, 16.0 * dt)]))
    env = flex.battery_envelope(soc, spec, dt, horizons_h=horizons)
    up, down, ramp = ref.battery_envelope_ref(soc, spec, dt, horizons)
    close(env.p_up_kw, up)
    close(env.p_down_kw, down)
    close(env.ramp_kw_per_step, ramp)
    assert env.horizon_steps == tuple(round(h / dt) for h in horizons) and env.dt_h == dt
    for g in (env.p_up_kw, env.p_down_kw):
        assert np.all(np.isnan(g) | (g >= 0))


@SETTINGS
@given(plan=series(lo=-500.0, hi=500.0), data=st.data(), end_band=st.booleans())
def test_schedule_soc_band_matches_reference(plan, data, end_band) -> None:
    n = n_rows(plan)
    spec = battery_spec(n, data.draw)
    soc0 = param(data.draw, n, st.floats(0.0, 100.0))
    end = (param(data.draw, n, st.floats(0.0, 50.0)), param(data.draw, n, st.floats(50.0, 100.0))) if end_band \
        else (None, None)
    band = flex.schedule_soc_band(plan, soc0, spec, 0.5, *end)
    want = ref.schedule_soc_band_ref(plan, soc0, spec, 0.5, *end)
    for g, w in zip((band.soc_pct, band.unserved_kwh, band.feasible_min_pct, band.feasible_max_pct), want,
                    strict=True):
        close(g, w)


@SETTINGS
@given(values=series(max_rows=6), skip=st.booleans(), data=st.data(), grouped=st.booleans())
def test_aggregate_envelope_matches_reference(values, skip, data, grouped) -> None:
    n = n_rows(values)
    labels = np.array([data.draw(st.integers(0, 2)) for _ in range(n)], dtype=np.int64) if grouped else None
    missing = "skip" if skip else "propagate"
    agg = fm.aggregate_envelope(values, values * 2.0, groups=labels, missing=missing)
    want = ref.aggregate_envelope_ref(values, values * 2.0, groups=labels, missing=missing)
    for g, w in zip((agg.up_kw, agg.down_kw, agg.reporting, agg.group_ids), want, strict=True):
        close(g, w)


@SETTINGS
@given(energy=series(), data=st.data(), split=st.sampled_from(["thresholds", "mean"]))
def test_flexibility_factor_matches_reference(energy, data, split) -> None:
    rows = data.draw(st.sampled_from([0, n_rows(energy)])) if energy.ndim == 2 else 0
    shape = (energy.shape[-1],) if rows == 0 else (rows, energy.shape[-1])
    pen = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(0, 10) | st.just(np.nan)))
    lo = data.draw(st.floats(0, 10))
    hi = lo + data.draw(st.floats(0, 5) | st.just(0.0))
    kw = {"high_at": hi, "low_at": lo} if split == "thresholds" else {}
    ff = fm.flexibility_factor(energy, pen, split=split, **kw)
    want = ref.flexibility_factor_ref(energy, pen, split=split, **kw)
    for g, w in zip((ff.ff, ff.e_high_kwh, ff.e_low_kwh, ff.n_high, ff.n_low), want, strict=True):
        close(g, w)
    if not np.any(energy < 0):  # with non-negative energy FF lies in [−1, 1]
        assert np.all(np.isnan(ff.ff) | (np.abs(ff.ff) <= 1 + 1e-12))


@SETTINGS
@given(data=st.data(), n_int=st.integers(1, 30), two_way=st.booleans())
def test_ev_flexibility_matches_reference(data, n_int, two_way) -> None:
    ns = data.draw(st.integers(0, 5))
    arr = np.array([data.draw(st.integers(0, n_int - 1)) for _ in range(ns)], dtype=np.int64)
    dep = np.array([data.draw(st.integers(a + 1, n_int)) for a in arr], dtype=np.int64)
    pos = st.floats(0.0, 100.0)
    sessions = ev_mod.EvSessions(arr, dep, *(param(data.draw, ns, pos) for _ in range(4)))
    got = ev_mod.ev_flexibility(sessions, n_int, 0.25, two_way)
    fields = ("p_asap_kw", "p_alap_kw", "p_max_kw", "p_min_kw", "e_max_kwh", "e_min_kwh", "shiftable_kwh",
              "v2g_kwh", "unmet_kwh")
    for name, w in zip(fields, ref.ev_flexibility_ref(sessions, n_int, 0.25, two_way), strict=True):
        close(getattr(got, name), w)


@SETTINGS
@given(p=series(lo=0.0, hi=100.0), data=st.data(), k=st.integers(1, 6))
def test_flexible_load_envelope_matches_reference(p, data, k) -> None:
    n = n_rows(p)
    args = (param(data.draw, n, st.floats(0, 1)), param(data.draw, n, st.integers(0, 8)),
            param(data.draw, n, st.floats(0, 1.5)), param(data.draw, n, st.floats(0, 200)),
            param(data.draw, n, st.integers(0, 5)))
    env = fl.flexible_load_envelope(p, k, 0.25, *args)
    for g, w in zip((env.p_up_kw, env.p_down_kw, env.rebound_kwh),
                    ref.flexible_load_envelope_ref(p, k, 0.25, *args), strict=True):
        close(g, w)
    assert env.horizon_steps == k


@SETTINGS
@given(v=series(lo=300.0, hi=450.0), data=st.data())
def test_droop_response_matches_reference(v, data) -> None:
    n = n_rows(v)
    f = st.floats
    p0 = param(data.draw, n, f(-50, 50))
    args = (p0, param(data.draw, n, f(360.0, 390.0)), param(data.draw, n, f(0.1, 10)),
            p0 - param(data.draw, n, f(0, 30)) if np.ndim(p0) else p0 - data.draw(f(0, 30)),
            p0 + data.draw(f(0, 30)), param(data.draw, n, f(0, 10)))
    d = fl.droop_response(v, *args)
    for g, w in zip((d.p_kw, d.delta_kw, d.kw_per_v), ref.droop_response_ref(v, *args), strict=True):
        close(g, w)


# --- bad input: ValueError naming the argument -----------------------------------------------------

SPEC = flex.BatterySpec(100.0, 50.0, 50.0)
SESSION = (np.array([0]), np.array([2]), np.array([1.0]), np.array([1.0]))


@pytest.mark.parametrize(("call", "match"), [
    (lambda: flex.battery_envelope(np.ones((2, 2, 2)), SPEC, 0.25), "soc_pct: expected a 1-D or 2-D"),
    (lambda: flex.battery_envelope(np.ones((2, 3)), flex.BatterySpec(np.array([1.0, np.nan]), 1, 1), 0.25),
     "energy_kwh: NaN is not allowed"),
    (lambda: flex.battery_envelope(np.ones((2, 3)), flex.BatterySpec(np.ones(3), 1, 1), 0.25),
     r"energy_kwh: expected a scalar or one value per row \(2,\)"),
    (lambda: flex.battery_envelope(np.ones(3), SPEC, float("nan")), "dt_h must be > 0"),
    (lambda: flex.battery_envelope(np.array(["a"]), SPEC, 0.25), "soc_pct: expected numbers"),
    (lambda: flex.schedule_soc_band(np.ones((1, 1, 3)), 50.0, SPEC, 0.25), "schedule_kw: expected a 1-D or 2-D"),
    (lambda: flex.schedule_soc_band(np.ones(3), np.nan, SPEC, 0.25), "soc0_pct: NaN is not allowed"),
    (lambda: flex.schedule_soc_band(np.ones((2, 3)), [50.0, 50.0, 50.0], SPEC, 0.25), "soc0_pct: expected a scalar"),
    (lambda: flex.schedule_soc_band(np.ones(3), 50.0, SPEC, 0.25, soc_end_min_pct=np.nan),
     "soc_end_min_pct: NaN"),
    (lambda: fm.aggregate_envelope(np.ones((2, 3)), np.ones((2, 4))), "same shape"),
    (lambda: fm.aggregate_envelope(np.ones((2, 2, 3)), np.ones((2, 2, 3))), "up_kw: expected a 1-D or 2-D"),
    (lambda: fm.aggregate_envelope(np.ones((2, 3)), np.ones((2, 3)), groups=[1, 2, 3]), "groups: expected one label"),
    (lambda: fm.aggregate_envelope(np.ones(3), np.ones(3), missing="zero"), "missing must be"),
    (lambda: fm.flexibility_factor(np.ones((2, 3)), np.ones((3, 3)), 1.0, 0.0), "penalty must be"),
    (lambda: fm.flexibility_factor(np.ones(3), np.ones(4), 1.0, 0.0), "penalty must be"),
    (lambda: fm.flexibility_factor(np.ones(3), np.ones(3), np.nan, 0.0), "high_at >= low_at"),
    (lambda: fm.flexibility_factor(np.ones((1, 1, 3)), np.ones(3), 1.0, 0.0), "energy_kwh: expected a 1-D or 2-D"),
    (lambda: fm.flexibility_factor(np.ones(3), np.ones(3), split="median"), "split must be"),
    (lambda: ev_mod.ev_flexibility(ev_mod.EvSessions(np.array([np.nan]), *SESSION[1:]), 4, 1.0),
     "arrival: NaN is not allowed"),
    (lambda: ev_mod.ev_flexibility(ev_mod.EvSessions(np.array([0.5]), *SESSION[1:]), 4, 1.0),
     "arrival: expected whole numbers"),
    (lambda: ev_mod.ev_flexibility(ev_mod.EvSessions(SESSION[0], np.array([2, 3]), *SESSION[2:]), 4, 1.0),
     "departure: expected one value per session"),
    (lambda: ev_mod.ev_flexibility(ev_mod.EvSessions(*SESSION[:2], np.array([np.nan]), SESSION[3]), 4, 1.0),
     "energy_kwh: NaN is not allowed"),
    (lambda: ev_mod.ev_flexibility(ev_mod.EvSessions(*SESSION[:3], np.ones(2)), 4, 1.0),
     "p_max_kw: expected a scalar or one value per row"),
    (lambda: ev_mod.ev_flexibility(ev_mod.EvSessions(*SESSION, p_dis_max_kw=-1.0), 4, 1.0), "p_dis_max_kw: must be"),
    (lambda: ev_mod.ev_flexibility(ev_mod.EvSessions(*SESSION), 4, 0.0), "dt_h must be > 0"),
    (lambda: ev_mod.ev_flexibility(ev_mod.EvSessions(np.zeros((1, 1)), *SESSION[1:]), 4, 1.0),
     "arrival: expected a 1-D array"),
    (lambda: fl.flexible_load_envelope(np.ones((1, 1, 4)), 1, 0.25, 0.5, 4, 0.0, 10.0), "p_kw: expected a 1-D or 2-D"),
    (lambda: fl.flexible_load_envelope(np.ones(4), 1, 0.25, np.nan, 4, 0.0, 10.0), "share: NaN is not allowed"),
    (lambda: fl.flexible_load_envelope(np.ones(4), 1, 0.25, 0.5, 2.5, 0.0, 10.0),
     "max_duration_steps: expected whole numbers"),
    (lambda: fl.flexible_load_envelope(np.ones(4), 1, 0.25, 0.5, np.nan, 0.0, 10.0),
     "max_duration_steps: NaN is not allowed"),
    (lambda: fl.flexible_load_envelope(np.ones((2, 4)), 1, 0.25, 0.5, 4, 0.0, np.ones(3)),
     "p_rated_kw: expected a scalar or one value per row"),
    (lambda: fl.flexible_load_envelope(np.ones(4), 0, 0.25, 0.5, 4, 0.0, 10.0), "horizon_steps must be"),
    (lambda: fl.flexible_load_envelope(np.ones(4), 1.5, 0.25, 0.5, 4, 0.0, 10.0), "horizon_steps must be"),
    (lambda: fl.flexible_load_envelope(np.ones(4), 1, 0.25, 1.5, 4, 0.0, 10.0), "0 <= share <= 1"),
    (lambda: fl.droop_response(np.ones((1, 2, 2)), 0.0, 375.0, 1.0), "v_bus_v: expected a 1-D or 2-D"),
    (lambda: fl.droop_response(np.ones(2), np.nan, 375.0, 1.0), "p0_kw: NaN is not allowed"),
    (lambda: fl.droop_response(np.ones((2, 2)), 0.0, 375.0, np.ones(3)), "r_v_per_kw: expected a scalar"),
    (lambda: fl.droop_response(np.ones(2), 0.0, np.nan, 1.0), "v_ref_v: NaN is not allowed"),
    (lambda: fl.droop_response(np.ones(2), 0.0, 375.0, 1.0, p_min_kw=1.0, p_max_kw=0.0), "p_min_kw <= p_max_kw"),
])
def test_bad_input_raises_value_error(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()


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
