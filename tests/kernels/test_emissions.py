"""Factor sets and Scope 2: hand-calculated cases (arithmetic in comments) and kernel vs reference."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.emissions import cfe_score, scope2, shift_avoided_emissions
from analytics.factors import factor_series, grid_factor, load_factor_series, load_factors
from analytics.rollups import reduction_credits, rollup
from tests.kernels.reference_energy import cfe_ref, rollup_ref, scope2_ref

H = 3_600_000_000_000
Q = H // 4
EAST_2022 = grid_factor("mee_nbs_grid_average", "east", 2022)
RESIDUAL_2022 = grid_factor("mee_nbs_excl_market_nonfossil", "national", 2022)


def utc_ns(*args) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp()) * 1_000_000_000


def month_of_imports(year, month, kwh_per_interval, n=4):
    """n 15-min intervals starting 10:00 Asia/Shanghai on the 10th of the month."""
    return utc_ns(year, month, 10, 2, 0) + np.arange(n) * Q, np.full(n, kwh_per_interval)


def test_factor_sets_are_data_with_units_and_sources():
    assert EAST_2022.kg_per_kwh == 0.5617 and EAST_2022.source.startswith("MEE/NBS")
    assert grid_factor("mee_carbon_market", "national", 2022).kg_per_kwh == 0.5703
    # Shanghai local regime: 4.2 tCO2 / 10^4 kWh = 4,200 kg / 10,000 kWh = 0.42 kg/kWh.
    assert grid_factor("shanghai_local", "shanghai", 2022).kg_per_kwh == pytest.approx(0.42)
    assert grid_factor("mee_nbs_grid_average", "shanghai", 2022).unverified
    regions = {f.region for f in load_factors() if f.regime == "mee_nbs_grid_average" and f.data_year == 2023}
    assert regions == {"national", "north", "northeast", "east", "central", "northwest", "south", "southwest"}
    with pytest.raises(KeyError, match="available"):
        grid_factor("mee_nbs_grid_average", "east", 2019)
    with pytest.raises(TypeError):
        grid_factor("mee_nbs_grid_average")  # no silent default region or year


def test_user_series_from_csv(tmp_path):
    path = tmp_path / "moer.csv"
    path.write_text("# marginal rates\nts_utc,kg_per_kwh\n2024-03-10T00:00:00Z,0.9\n2024-03-10T01:00:00Z,\n")
    series = load_factor_series(path, name="moer", kind="marginal", source="vendor export")
    assert series.at(np.array([utc_ns(2024, 3, 10, 0, 30)]))[0] == 0.9
    assert np.isnan(series.at(np.array([utc_ns(2024, 3, 10, 1, 30), utc_ns(2024, 3, 10, 2, 0)]))).all()
    with pytest.raises(ValueError):
        factor_series(np.array([0, 1]), np.array([0.1, 0.2]), name="x", kind="median", source="x")


def test_location_based_1000_kwh_east_china_2022():
    # 1,000 kWh imported x 0.5617 kg/kWh (East China grid, 2022) = 561.7 kg.
    ts, imp = month_of_imports(2024, 3, 250.0)
    r = scope2(ts, imp, location_factor=EAST_2022, residual_factor=RESIDUAL_2022)
    assert r.location_kg == pytest.approx(561.7)
    assert r.location_factor == "mee_nbs_grid_average/east/2022"
    # No instruments: 1,000 x 0.5856 (national, excl. market-traded non-fossil) = 585.6 kg > 561.7.
    assert r.market_kg == pytest.approx(585.6)
    assert r.market_exceeds_location and "no regional residual factor" in r.notes[0]
    # The Shanghai provincial factor is single-sourced: a result that uses it says so.
    # 1,000 x 0.5849 = 584.9 kg.
    shanghai = grid_factor("mee_nbs_grid_average", "shanghai", 2022)
    r = scope2(ts, imp, location_factor=shanghai, residual_factor=RESIDUAL_2022)
    assert r.location_kg == pytest.approx(584.9) and any("unverified" in note for note in r.notes)


def test_market_based_with_certificates_covering_part():
    # 1,000 kWh imported, 0.4 GEC (= 400 kWh) retired in March: residual 600 kWh x 0.5856 = 351.36 kg.
    # Location-based is unchanged by certificates: 561.7 kg.
    ts, imp = month_of_imports(2024, 3, 250.0)
    r = scope2(ts, imp, location_factor=EAST_2022, residual_factor=RESIDUAL_2022, gec_mwh=[0.4])
    assert r.market_kg == pytest.approx(351.36)
    assert r.location_kg == pytest.approx(561.7) and not r.market_exceeds_location
    # Self-consumed PV 300 kWh of which 100 kWh had its certificates sold: + 100 x 0.5856 = 58.56 kg.
    r = scope2(ts, imp, location_factor=EAST_2022, residual_factor=RESIDUAL_2022, gec_mwh=[0.4],
               pv_self_consumed_kwh=[300.0], pv_certificates_sold_kwh=[100.0])
    assert r.market_kg == pytest.approx(351.36 + 58.56)
    assert r.pv_self_consumed_kwh == 300.0 and r.pv_sold_certificates_kwh == 100.0
    # Certificates beyond the import never make the result negative: 2 MWh against 1,000 kWh -> 0 kg.
    r = scope2(ts, imp, location_factor=EAST_2022, residual_factor=RESIDUAL_2022, gec_mwh=[2.0])
    assert r.market_kg == 0.0


def test_monthly_matching_has_no_carry_over_pooled_does():
    # January 1,000 kWh, February 1,000 kWh; 1.5 MWh of GECs retired in January.
    # Monthly: Jan covered 1,000 (500 kWh of certificates unused), Feb uncovered: 1,000 x 0.5856 = 585.6.
    # Pooled: 1,500 of 2,000 covered: 500 x 0.5856 = 292.8 kg.
    ts = np.concatenate([month_of_imports(2024, 1, 250.0)[0], month_of_imports(2024, 2, 250.0)[0]])
    imp = np.full(8, 250.0)
    kw = dict(location_factor=EAST_2022, residual_factor=RESIDUAL_2022, gec_mwh=[1.5, 0.0])
    assert scope2(ts, imp, **kw).market_kg == pytest.approx(585.6)
    pooled = scope2(ts, imp, matching="pooled", **kw)
    assert pooled.market_kg == pytest.approx(292.8) and pooled.matching == "pooled"
    assert [str(m) for m in pooled.months] == ["2024-01", "2024-02"]


def test_exported_pv_reported_separately_as_avoided():
    # 200 kWh exported x 0.5617 = 112.34 kg avoided; the inventory (location_kg) is not reduced.
    ts, imp = month_of_imports(2024, 3, 250.0)
    r = scope2(ts, imp, location_factor=EAST_2022, residual_factor=RESIDUAL_2022,
               grid_export_kwh=np.full(4, 50.0))
    assert r.exported_pv_avoided_kg == pytest.approx(112.34)
    assert r.location_kg == pytest.approx(561.7)


def test_hourly_series_and_shift_with_marginal_factor():
    t0 = utc_ns(2024, 3, 10, 0)
    moer = factor_series(t0 + np.arange(2) * H, [0.9, 0.3], name="moer", kind="marginal", source="test")
    # 10 kWh taken away in hour 0 (MOER 0.9), 10 kWh added in hour 1 (MOER 0.3):
    # avoided = 10 x 0.9 - 10 x 0.3 = 6 kg.
    r = shift_avoided_emissions(t0 + np.array([0, H]), np.array([10.0, -10.0]), moer)
    assert r.avoided_kg == pytest.approx(6.0) and r.factor == "series:marginal:moer"
    with pytest.raises(ValueError):
        scope2(t0 + np.array([0]), np.array([1.0]), location_factor=moer, residual_factor=RESIDUAL_2022)
    avg = factor_series(t0 + np.arange(2) * H, [0.5, 0.7], name="em", kind="average", source="test")
    # 4 x 1 kWh in hour 0 at 0.5 + 4 x 1 kWh in hour 1 at 0.7 = 4.8 kg; hour 2 has no factor.
    ts = t0 + np.arange(9) * Q
    r = scope2(ts, np.ones(9), location_factor=avg, residual_factor=RESIDUAL_2022)
    assert r.location_kg == pytest.approx(4.8) and r.n_missing == 1
    ref_location = scope2_ref(ts, np.ones(9), location_factor=avg, residual_factor=RESIDUAL_2022)[0]
    assert ref_location == pytest.approx(4.8)


def test_cfe_score_is_consumption_weighted_without_carry_over():
    # Hour 1: consumption 30, CFE 40 (surplus 10 lost); hour 2: 10 and 5.
    # Score = (30 + 5) / (30 + 10) = 0.875 (mean of hourly scores would be 0.75; carry-over 1.0).
    t0 = utc_ns(2024, 3, 10, 0)
    ts = t0 + np.arange(8) * Q
    r = cfe_score(ts, np.array([7.5] * 4 + [2.5] * 4), np.array([10.0] * 4 + [1.25] * 4))
    assert r.score == pytest.approx(0.875) and r.n_hours == 2


def test_rollup_uses_each_childs_factor_and_total_over_area():
    # Building A (East grid): devices 600 + 400 kWh x 0.5617 = 561.7 kg, 1,000 m2.
    # Building B (South grid 2022, 0.3869): 100 kWh -> 38.69 kg, 100 m2.
    # Park: 600.39 kg / 1,100 m2 = 0.54581 kg/m2 (not the mean of 0.5617 and 0.3869 = 0.4743).
    south = grid_factor("mee_nbs_grid_average", "south", 2022)
    kg = np.array([600 * EAST_2022.kg_per_kwh, 400 * EAST_2022.kg_per_kwh, 100 * south.kg_per_kwh])
    r = rollup(kg, [EAST_2022.label, EAST_2022.label, south.label],
               [np.array([0, 0, 1]), np.array([0, 0]), np.array([0])],
               building_area_m2=np.array([1000.0, 100.0]), building_output=np.array([10.0, 1.0]))
    building, park, region = r.levels[1:]
    np.testing.assert_allclose(building.kg_per_m2, [0.5617, 0.3869])
    assert park.emissions_kg[0] == pytest.approx(600.39)
    assert park.kg_per_m2[0] == pytest.approx(600.39 / 1100)
    assert region.kg_per_output[0] == pytest.approx(600.39 / 11)
    assert r.factor_sets == (EAST_2022.label, south.label)


def test_reduction_credits():
    # Project 1: 10,000 -> 8,000 kWh: 2,000 x 0.5617 = 1,123.4 kg. Project 2: 5,000 -> 5,500 kWh:
    # -500 x 0.5617 = -280.85 kg -> credit 0. Fleet net 1,123.4 - 280.85 = 842.55 kg.
    r = reduction_credits(np.array([10_000.0, 5_000.0]), np.array([8_000.0, 5_500.0]), EAST_2022)
    np.testing.assert_allclose(r.reduction_kg, [1123.4, -280.85])
    np.testing.assert_allclose(r.credit_kg, [1123.4, 0.0])
    assert r.fleet_net_kg == pytest.approx(842.55) and r.factor == EAST_2022.label
    # Intensity method: baseline 10,000 kWh for 100 units, reporting 150 units at 12,000 kWh:
    # adjusted baseline 100 kWh/unit x 150 = 15,000; reduction 3,000 x 0.5617 = 1,685.1 kg.
    r = reduction_credits(np.array([10_000.0]), np.array([12_000.0]), EAST_2022, method="intensity",
                          baseline_activity=np.array([100.0]), reporting_activity=np.array([150.0]))
    assert r.reduction_kg[0] == pytest.approx(1685.1)
    with pytest.raises(ValueError, match="baseline uses"):
        reduction_credits(np.array([1.0]), np.array([1.0]), EAST_2022,
                          reporting_factor=grid_factor("mee_nbs_grid_average", "east", 2023))
    with pytest.raises(ValueError):
        footprint = grid_factor("footprint_lifecycle", "national", 2023)
        reduction_credits(np.array([1.0]), np.array([1.0]), footprint)


@st.composite
def import_case(draw):
    n = draw(st.integers(0, 30))
    hours = sorted(draw(st.lists(st.integers(0, 24 * 120), min_size=n, max_size=n, unique=True)))
    ts = utc_ns(2023, 12, 20) + np.array(hours, dtype=np.int64) * H
    m = draw(st.integers(1, 3))
    value = st.one_of(st.floats(0, 1e7), st.just(np.nan))
    imp = np.array(draw(st.lists(value, min_size=m * n, max_size=m * n))).reshape(m, n)
    return ts, imp


@settings(max_examples=100, deadline=None)
@given(import_case(), st.sampled_from(["monthly", "pooled"]), st.floats(0, 5),
       st.sampled_from(["Asia/Shanghai", "Europe/Berlin", "America/New_York"]))
def test_scope2_kernel_matches_reference(case, matching, gec, tz):
    ts, imp = case
    n_months = scope2(ts, imp, location_factor=EAST_2022, residual_factor=RESIDUAL_2022, tz=tz).months.size
    kw = dict(location_factor=EAST_2022, residual_factor=RESIDUAL_2022, gec_mwh=np.full(n_months, gec), tz=tz,
              ppa_kwh=np.full(n_months, 100.0), pv_self_consumed_kwh=np.full(n_months, 50.0),
              pv_certificates_sold_kwh=np.full(n_months, 80.0), matching=matching)
    r = scope2(ts, imp, **kw)
    loc, market, monthly = scope2_ref(ts, imp, **kw)
    np.testing.assert_allclose(r.location_kg, loc, rtol=1e-9)
    np.testing.assert_allclose(r.market_kg, market, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(r.monthly_import_kwh, monthly, rtol=1e-9)
    assert (r.market_kg >= 0).all()


@settings(max_examples=100, deadline=None)
@given(import_case(), st.data())
def test_cfe_and_rollup_match_reference(case, data):
    ts, cons = case
    supply = np.array(data.draw(st.lists(st.floats(0, 1e7), min_size=cons.size, max_size=cons.size)))
    supply = supply.reshape(cons.shape)
    r = cfe_score(ts, cons, supply)
    score, matched, total, excluded = cfe_ref(ts, cons, supply)
    np.testing.assert_allclose(r.consumption_kwh, total, rtol=1e-9)
    np.testing.assert_allclose(r.score, score, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(r.matched_kwh, matched, rtol=1e-9)
    np.testing.assert_array_equal(r.n_hours_excluded, excluded)
    assert ((r.score[~np.isnan(r.score)] >= 0) & (r.score[~np.isnan(r.score)] <= 1 + 1e-12)).all()
    kg = np.nan_to_num(cons.ravel())
    parents = data.draw(st.lists(st.integers(0, 3), min_size=kg.size, max_size=kg.size))
    parent = np.array(parents, dtype=np.int64)
    n_b = int(parent.max()) + 1 if parent.size else 1
    up = np.zeros(n_b, dtype=np.int64)
    got = rollup(kg, ["x"] * kg.size, [parent, up], level_names=("device", "building", "park"),
                 building_area_m2=np.ones(n_b))
    for level, expected in zip(got.levels, rollup_ref(kg, [parent, up]), strict=True):
        np.testing.assert_allclose(level.emissions_kg, expected, rtol=1e-12)
