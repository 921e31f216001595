"""Energy balance of a PEDF building: hand-calculated case and kernel vs reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.balance import energy_balance
from tests.kernels.reference_energy import energy_balance_ref

Q = 900_000_000_000


def test_hand_calculated_balance():
    # One 15-min interval: PV 10, charge 2, discharge 1, import 5, export 3, DC load 4, AC load 6.5 kWh.
    # losses = (10 + 5 + 1) - (10.5 + 3 + 2) = 0.5 kWh; self-consumption = (10 - 3) / 10 = 0.7;
    # self-sufficiency = 1 - 5 / 10.5 = 0.52381 [alt (10 - 3) / 10.5 = 0.66667];
    # peak import = 5 kWh / 0.25 h = 20 kW; EUI = 10.5 kWh / 100 m2 = 0.105 kWh/m2.
    args = [np.array([x]) for x in (10.0, 2.0, 1.0, 5.0, 3.0, 4.0, 6.5)]
    b = energy_balance(*args, Q, floor_area_m2=100.0)
    assert b.losses_kwh == pytest.approx(0.5)
    assert b.self_consumption == pytest.approx(0.7)
    assert b.self_sufficiency == pytest.approx(1 - 5 / 10.5)
    assert b.peak_import_kw == pytest.approx(20.0)
    assert b.eui_kwh_per_m2 == pytest.approx(0.105)
    assert b.load_factor == pytest.approx(1.0)
    alt = energy_balance(*args, Q, self_sufficiency="pv_share")
    assert alt.self_sufficiency == pytest.approx(7 / 10.5)
    assert alt.self_sufficiency_convention == "pv_share"


def test_load_factor_and_incomplete_intervals():
    # Load 1, 3 kWh per 15 min -> 4 kWh, mean 8 kW, peak 12 kW, load factor 2/3. The third interval has a
    # missing PV reading, so none of its channels count.
    load = np.array([1.0, 3.0, 100.0])
    z = np.zeros(3)
    pv = np.array([0.0, 0.0, np.nan])
    b = energy_balance(pv, z, z, load, z, z, load, Q)
    assert b.n_complete == 2 and b.load_kwh == 4.0
    assert b.load_factor == pytest.approx(2 / 3)
    assert np.isnan(b.self_consumption)  # no PV: ratio undefined, not 0
    empty = energy_balance(*[np.full((2, 0), 0.0)] * 7, Q)
    assert (empty.n_complete == 0).all() and np.isnan(empty.peak_load_kw).all()
    with pytest.raises(ValueError):
        energy_balance(pv, z, z, load, z, z, load, Q, self_sufficiency="other")


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4), st.integers(0, 30), st.data())
def test_kernel_matches_reference(m, n, data):
    value = st.one_of(st.floats(0, 1e9), st.just(np.nan), st.floats(0, 1e-300))
    chans = [np.array(data.draw(st.lists(value, min_size=m * n, max_size=m * n))).reshape(m, n)
             for _ in range(7)]
    b = energy_balance(*chans, Q)
    ref = energy_balance_ref(*chans, Q)
    for name, got in (("pv", b.pv_kwh), ("grid_import", b.grid_import_kwh), ("load", b.load_kwh),
                      ("charge", b.charge_kwh), ("grid_export", b.grid_export_kwh)):
        np.testing.assert_allclose(got, ref[name], rtol=1e-12)
    np.testing.assert_allclose(b.peak_import_kw, ref["peak_import_kw"], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(b.peak_load_kw, ref["peak_load_kw"], rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(b.n_complete, ref["n_complete"])
    expected_losses = (ref["pv"] + ref["grid_import"] + ref["discharge"]) - (
        ref["load"] + ref["grid_export"] + ref["charge"])
    np.testing.assert_allclose(b.losses_kwh, expected_losses, rtol=1e-9, atol=1e-3)
