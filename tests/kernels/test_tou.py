"""Time-of-use split: tariff as data, straddling intervals, local time and DST, kernel vs reference."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.tou import EXAMPLE_TARIFF_SHANGHAI, load_tariff, local_offsets, tou_fractions, tou_split
from tests.kernels.reference_energy import tou_fractions_ref, tou_split_ref

MIN = 60_000_000_000
TARIFF = load_tariff(EXAMPLE_TARIFF_SHANGHAI)


def utc_ns(*args) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp()) * 1_000_000_000


def test_example_tariff_is_marked_and_complete():
    assert TARIFF.example and TARIFF.periods == ("valley", "flat", "peak")
    table = TARIFF.period_of_minute
    # 13:30 local is peak in July (summer row) but flat in January.
    assert table[6, 13 * 60 + 30] == 2 and table[0, 13 * 60 + 30] == 1
    assert table[0, 23 * 60] == 0 and table[0, 5 * 60] == 0


def test_straddling_interval_split_pro_rata_and_start_alternative():
    # 2024-01-15 07:30-08:30 Asia/Shanghai (= 2024-01-14 23:30 UTC), 10 kWh: 30 min flat
    # (07:30-08:00) and 30 min peak (08:00-08:30) -> 5 kWh each; cost 5 x 0.65 + 5 x 1.05 = 8.50 CNY.
    ts = np.array([utc_ns(2024, 1, 14, 23, 30)])
    r = tou_split(ts, np.array([10.0]), 60 * MIN, TARIFF)
    assert r.energy_kwh.tolist() == [0.0, 5.0, 5.0]
    assert r.cost_cny.sum() == pytest.approx(8.50)
    assert r.tariff_is_example and r.split == "pro_rata" and r.tz == "Asia/Shanghai"
    alt = tou_split(ts, np.array([10.0]), 60 * MIN, TARIFF, split="start")
    assert alt.energy_kwh.tolist() == [0.0, 10.0, 0.0]


def test_daylight_saving_gap_is_honoured():
    # Europe/Berlin 2024-03-31: 01:00 UTC jumps from 02:00 CET to 03:00 CEST. 00:30-01:30 UTC is
    # local 01:30-02:00 and 03:00-03:30: all valley.
    transitions, offsets = local_offsets(np.array([utc_ns(2024, 3, 31, 0, 30)]), "Europe/Berlin")
    assert transitions[-1] == utc_ns(2024, 3, 31, 1, 0) and offsets.tolist()[-2:] == [3600e9, 7200e9]
    # 05:30-06:30 UTC is local 07:30-08:30 CEST: half flat, half peak (in CET it would be all flat).
    ts = np.array([utc_ns(2024, 4, 2, 5, 30)])
    r = tou_split(ts, np.array([4.0]), 60 * MIN, TARIFF, tz="Europe/Berlin")
    assert r.energy_kwh.tolist() == [0.0, 2.0, 2.0]


def test_missing_intervals_counted_and_bad_tariffs_rejected(tmp_path):
    ts = utc_ns(2024, 1, 1) + np.arange(4) * 15 * MIN
    r = tou_split(ts, np.array([1.0, np.nan, 1.0, 1.0]), 15 * MIN, TARIFF)
    assert r.n_missing == 1 and r.energy_kwh.sum() == 3.0
    bad = tmp_path / "t.csv"
    bad.write_text("months,start,end,period,price_cny_per_kwh\n1-12,00:00,12:00,flat,1\n")
    with pytest.raises(ValueError, match="no period"):
        load_tariff(bad)
    bad.write_text("months,start,end,period,price_cny_per_kwh\n1-12,00:00,24:00,flat,1\n1,10:00,11:00,peak,2\n")
    with pytest.raises(ValueError, match="overlapping"):
        load_tariff(bad)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 400 * 24 * 60), min_size=0, max_size=12),
    st.sampled_from([15 * MIN, 60 * MIN, 90 * MIN]),
    st.sampled_from(["Asia/Shanghai", "Europe/Berlin", "America/New_York"]),
    st.sampled_from(["pro_rata", "start"]),
    st.data(),
)
def test_kernel_matches_reference(minutes, interval, tz, split, data):
    ts = utc_ns(2023, 12, 1) + np.array(minutes, dtype=np.int64) * MIN
    frac = tou_fractions(ts, interval, TARIFF, tz=tz, split=split)
    np.testing.assert_allclose(frac, tou_fractions_ref(ts, interval, TARIFF, tz=tz, split=split), atol=1e-12)
    np.testing.assert_allclose(frac.sum(axis=1), 1.0, rtol=1e-12)
    energy = np.array(data.draw(st.lists(st.one_of(st.floats(0, 1e6), st.just(np.nan)),
                                         min_size=ts.size, max_size=ts.size)))
    r = tou_split(ts, energy, interval, TARIFF, tz=tz, split=split)
    totals, missing = tou_split_ref(ts, energy, interval, TARIFF, tz=tz, split=split)
    np.testing.assert_allclose(r.energy_kwh, totals[0], rtol=1e-9, atol=1e-6)
    assert r.n_missing == missing[0]
