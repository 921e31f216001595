"""Baselines (10-in-10, Beijing high-5-of-10, Jiangsu last-5, high-X-of-Y) and the working-day calendar."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from analytics import baselines as bl
from analytics.calendar import day_eligibility, load_calendar, local_day_grid
from tests.kernels import reference_flex as ref


def close(a, b) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True)


def test_ten_in_ten_on_eleven_days_with_capped_adjustment() -> None:
    # Hourly data (24 intervals a day), 11 working days 0-10, event on day 10, 14:00-16:00.
    # Day d (0-9) is flat at 10 + d kW → same-interval mean of days 0-9 = (10 + … + 19)/10 = 14.5 kW.
    # Day-of window: [14 − 4, 14 − 1) = hours 10, 11, 12 of day 10, measured 20 kW;
    # ratio = 20/14.5 = 1.379 → capped at 1.2 → baseline 14.5 × 1.2 = 17.4 kW all day.
    # With a 16 kW window instead: 16/14.5 = 1.1034 (inside the cap) → 16 kW.
    load = np.concatenate([np.full(24, 10.0 + d) for d in range(10)] + [np.full(24, 20.0)])
    events = bl.DrEvents(np.array([10]), np.array([14]), np.array([16]))
    base = bl.ten_in_ten(load, np.ones(11, bool), events, 24)
    close(base.baseline_kw[0, 0], np.full(24, 17.4))
    close(base.adjustment, [[1.2]])
    assert base.days[0, 0].tolist() == list(range(9, -1, -1))
    assert base.method == "10-in-10" and "adjustment: multiplicative" in base.convention
    assert "clip [0.8, 1.2]" in base.convention
    load[240 + 10:240 + 13] = 16.0
    close(bl.ten_in_ten(load, np.ones(11, bool), events, 24).baseline_kw[0, 0], np.full(24, 16.0))
    close(bl.ten_in_ten(load, np.ones(11, bool), events, 24, adjustment=None).baseline_kw[0, 0],
          np.full(24, 14.5))
    wide = bl.ten_in_ten(load, np.ones(11, bool), events, 24, bl.DayOfAdjustment(cap_low=0.5, cap_high=1.05))
    close(wide.adjustment, [[1.05]])
    # One day short (day 3 ineligible) → the rule cannot be applied: NaN, no days recorded.
    short = bl.ten_in_ten(load, np.arange(11) != 3, events, 24)
    assert np.isnan(short.baseline_kw).all() and (short.days == -1).all()


def _feb_2025_series() -> tuple[np.ndarray, np.ndarray, bl.DrEvents, list[dt.date]]:
    # 2025-01-13 (Mon) … 2025-02-10 (Mon, event). With the example calendar the working days before the
    # event, #1 first: Feb 8 (Sat, make-up), Feb 7, 6, 5, Jan 27, Jan 26 (Sun, make-up), Jan 24, 23, 22,
    # 21, 20, 17 — Jan 28 - Feb 4 is the Spring Festival holiday.
    first = dt.date(2025, 1, 13)
    dates = [first + dt.timedelta(days=i) for i in range(29)]
    eligible = day_eligibility(load_calendar(), first, 29)
    peaks = {dt.date(2025, 2, 8): 200.0,                     # #1: highest, outside #2-#11
             dt.date(2025, 2, 6): 60.0, dt.date(2025, 1, 27): 70.0, dt.date(2025, 1, 26): 80.0,
             dt.date(2025, 1, 22): 90.0, dt.date(2025, 1, 20): 55.0}
    load = np.full((29, 24), 5.0)
    for i, day in enumerate(dates):
        load[i, 15] = peaks.get(day, 50.0) if eligible[i] else 500.0   # days off: never chosen
    events = bl.DrEvents(np.array([28]), np.array([14]), np.array([16]))
    return load.reshape(-1), eligible, events, dates


def test_beijing_high_5_of_10_picks_known_days() -> None:
    # #2-#11: Feb 7 (50), 6 (60), 5 (50), Jan 27 (70), 26 (80), 24 (50), 23 (50), 22 (90), 21 (50), 20 (55).
    # Top 5 peaks: Jan 22 (90), Jan 26 (80), Jan 27 (70), Feb 6 (60), Jan 20 (55) → hour 15 baseline
    # (90 + 80 + 70 + 60 + 55)/5 = 71 kW, other hours 5 kW.
    # Alternative #1-#10 brings in Feb 8 (200) and drops Jan 20: (200 + 90 + 80 + 70 + 60)/5 = 100 kW.
    load, eligible, events, dates = _feb_2025_series()
    base = bl.beijing_high_5_of_10(load, eligible, events, 24)
    picked = {dates[d] for d in base.days[0, 0]}
    assert picked == {dt.date(2025, 1, 22), dt.date(2025, 1, 26), dt.date(2025, 1, 27),
                      dt.date(2025, 2, 6), dt.date(2025, 1, 20)}
    assert base.baseline_kw[0, 0, 15] == pytest.approx(71.0)
    assert base.baseline_kw[0, 0, 3] == pytest.approx(5.0)
    alt = bl.beijing_high_5_of_10(load, eligible, events, 24, window="1-10")
    assert alt.baseline_kw[0, 0, 15] == pytest.approx(100.0)
    assert "#1-10" in alt.method and "#2-11" in base.method


def test_jiangsu_last_5_and_missing_day_skipped() -> None:
    # #1-#5: Feb 8 (200), 7 (50), 6 (60), 5 (50), Jan 27 (70) → (200 + 50 + 60 + 50 + 70)/5 = 86 kW.
    # A gap on Feb 7 makes it no candidate: #1-#5 become Feb 8, 6, 5, Jan 27, 26 → (200+60+50+70+80)/5 = 92.
    load, eligible, events, dates = _feb_2025_series()
    assert bl.jiangsu_last_5(load, eligible, events, 24).baseline_kw[0, 0, 15] == pytest.approx(86.0)
    feb7 = dates.index(dt.date(2025, 2, 7))
    load[feb7 * 24 + 2] = np.nan
    base = bl.jiangsu_last_5(load, eligible, events, 24)
    assert base.baseline_kw[0, 0, 15] == pytest.approx(92.0)
    assert feb7 not in base.days[0, 0]


def test_prior_event_days_are_excluded() -> None:
    load = np.concatenate([np.full(24, float(d)) for d in range(8)])
    events = bl.DrEvents(np.array([5, 7]), np.array([10, 10]), np.array([12, 12]))
    base = bl.high_x_of_y(load, np.ones(8, bool), events, 24, x=3, y=3)
    assert base.days[0, 1].tolist() == [6, 4, 3]      # day 5 was an event day
    close(base.baseline_kw[0, 1], np.full(24, 13 / 3))


def test_edges_all_nan_one_day_extreme_and_empty() -> None:
    ev = bl.DrEvents(np.array([2]), np.array([20]), np.array([24]))
    nan = bl.ten_in_ten(np.full((2, 72), np.nan), np.ones(3, bool), ev, 24)
    assert np.isnan(nan.baseline_kw).all() and (nan.days == -1).all() and np.isnan(nan.adjustment).all()
    one = bl.high_x_of_y(np.ones(48), np.ones(2, bool), bl.DrEvents(np.array([1]), np.array([0]),
                                                                     np.array([1])), 24, x=1, y=1)
    close(one.baseline_kw[0, 0], np.ones(24))
    assert one.adjustment[0, 0] == 1.0  # no adjustment asked for
    big = np.full(72, 1e300)
    close(bl.high_x_of_y(big, np.ones(3, bool), ev, 24, x=2, y=2).baseline_kw[0, 0], np.full(24, 1e300))
    none = bl.ten_in_ten(np.ones((0, 72)), np.ones(3, bool), bl.DrEvents(np.zeros(0), np.zeros(0),
                                                                           np.zeros(0)), 24)
    assert none.baseline_kw.shape == (0, 0, 24)


def test_calendar_file_and_grid() -> None:
    cal = load_calendar()
    assert dt.date(2026, 2, 17) in cal.holidays and dt.date(2026, 2, 14) in cal.makeup_workdays
    assert cal.is_working_day(dt.date(2025, 9, 28)) and not cal.is_working_day(dt.date(2025, 10, 8))
    assert not cal.is_working_day(dt.date(2025, 3, 1)) and cal.is_working_day(dt.date(2025, 3, 3))
    mask = day_eligibility(cal, dt.date(2025, 1, 24), 4, event_days=[3])
    assert mask.tolist() == [True, False, True, False]   # Fri, Sat, Sun make-up, Mon = event
    assert cal.years == (2025, 2026)
    with pytest.raises(ValueError, match="outside the calendar"):
        day_eligibility(cal, dt.date(2026, 12, 30), 5)
    assert day_eligibility(cal, dt.date(2026, 12, 30), 5, allow_uncovered=True).tolist() == [
        True, True, True, False, False]   # Wed, Thu, Fri 2027-01-01 (not in the file: weekday rule), Sat, Sun
    assert local_day_grid(dt.datetime(2024, 12, 31, 16, tzinfo=dt.UTC), 96 * 2, 15) == (
        dt.date(2025, 1, 1), 96, 2)
    with pytest.raises(ValueError, match="DST"):
        local_day_grid(dt.datetime(2025, 3, 8, 5, tzinfo=dt.UTC), 96 * 3, 15, "America/New_York")
    with pytest.raises(ValueError, match="midnight"):
        local_day_grid(dt.datetime(2025, 1, 1, tzinfo=dt.UTC), 96, 15)


def test_bad_calendar_rows(tmp_path: Path) -> None:
    f = tmp_path / "cal.csv"
    f.write_text("date,kind,name\n2025-01-01,holiday,x\n2025-01-01,workday,y\n")
    with pytest.raises(ValueError, match="twice"):
        load_calendar(f)
    f.write_text("date,kind,name\n2025-01-01,vacation,x\n")
    with pytest.raises(ValueError, match="kind"):
        load_calendar(f)


def test_validation() -> None:
    ev = bl.DrEvents(np.array([1]), np.array([5]), np.array([3]))
    with pytest.raises(ValueError, match="start < stop"):
        bl.ten_in_ten(np.ones(48), np.ones(2, bool), ev, 24)
    with pytest.raises(ValueError, match="whole days"):
        bl.ten_in_ten(np.ones(50), np.ones(2, bool), ev, 24)
    with pytest.raises(ValueError, match="window"):
        bl.ten_in_ten(np.ones(48), np.ones(2, bool), bl.DrEvents(np.array([1]), np.array([5]), np.array([6])),
                      24, bl.DayOfAdjustment(from_h=1.0, to_h=2.0))


@pytest.mark.parametrize(("call", "match"), [
    (lambda: bl.high_x_of_y(np.ones((1, 1, 48)), np.ones(2, bool), EV, 24, 1, 1), "load_kw: expected a 1-D or 2-D"),
    (lambda: bl.ten_in_ten(np.ones(48), np.ones(3, bool), EV, 24), r"day_eligible: expected one flag per day \(2,\)"),
    (lambda: bl.beijing_high_5_of_10(np.ones(48), np.ones(2, bool),
                                     bl.DrEvents(np.array([np.nan]), np.array([5]), np.array([6])), 24),
     "events.day: NaN is not allowed"),
    (lambda: bl.jiangsu_last_5(np.ones(48), np.ones(2, bool),
                               bl.DrEvents(np.array([1]), np.array([5.5]), np.array([6])), 24),
     "events.start: expected whole numbers"),
    (lambda: bl.jiangsu_last_5(np.ones(48), np.ones(2, bool),
                               bl.DrEvents(np.array([1, 1]), np.array([5]), np.array([6])), 24), "equal length"),
    (lambda: bl.ten_in_ten(np.ones(48), np.ones(2, bool), bl.DrEvents(np.array([2]), np.array([5]), np.array([6])),
                           24), "event day outside"),
    (lambda: bl.high_x_of_y(np.ones(48), np.ones(2, bool), EV, 24, 3, 2), "1 <= x <= y"),
    (lambda: bl.beijing_high_5_of_10(np.ones(48), np.ones(2, bool), EV, 24, window="3-12"), "window must be"),
    (lambda: bl.ten_in_ten(np.ones(48), np.ones(2, bool), EV, 24, bl.DayOfAdjustment(cap_low=1.1)), "cap_low"),
    (lambda: bl.ten_in_ten(np.ones(48), np.ones(2, bool), EV, 0), "whole days"),
    (lambda: day_eligibility(load_calendar(), dt.date(2025, 1, 1), -1), "n_days"),
    (lambda: day_eligibility(load_calendar(), dt.date(2025, 1, 1), 3, event_days=[3]), "event_days"),
    (lambda: local_day_grid(dt.datetime(2025, 1, 1), 96, 15), "timezone-aware"),
    (lambda: local_day_grid(dt.datetime(2024, 12, 31, 16, tzinfo=dt.UTC), 95, 15), "whole local days"),
    (lambda: local_day_grid(dt.datetime(2024, 12, 31, 16, tzinfo=dt.UTC), 96, 7), "divide 24 h"),
    (lambda: local_day_grid(dt.datetime(2024, 12, 31, 16, tzinfo=dt.UTC), 96, 15, "Mars/Base"), "unknown time zone"),
])
def test_bad_input_raises_value_error(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()


EV = bl.DrEvents(np.array([1]), np.array([5]), np.array([6]))


@settings(max_examples=40, deadline=None)
@given(data=st.data(), ipd=st.sampled_from([4, 24]), adjust=st.booleans(),
       rule=st.sampled_from(["generic", "10-in-10", "beijing", "beijing-1-10", "jiangsu"]))
def test_baselines_match_reference(data, ipd, adjust, rule) -> None:
    nb = data.draw(st.integers(0, 3))
    nd = data.draw(st.integers(1, 16))
    elems = st.floats(0.0, 1e6) | st.just(np.nan) | st.sampled_from([0.0, 7.0])
    shape = (nd * ipd,) if nb == 1 and data.draw(st.booleans()) else (nb, nd * ipd)
    load = data.draw(hnp.arrays(np.float64, shape, elements=elems))
    eligible = np.array(data.draw(st.lists(st.booleans(), min_size=nd, max_size=nd)), dtype=np.bool_)
    ne = data.draw(st.integers(0, 3))
    day = np.array([data.draw(st.integers(0, nd - 1)) for _ in range(ne)], dtype=np.int64)
    start = np.array([data.draw(st.integers(0, ipd - 1)) for _ in range(ne)], dtype=np.int64)
    events = bl.DrEvents(day, start, np.minimum(start + 1, ipd))
    flags = eligible.copy()
    steps_h = 24 / ipd
    adj_to = data.draw(st.integers(0, 2))
    adj = bl.DayOfAdjustment(from_h=(adj_to + data.draw(st.integers(1, 3))) * steps_h, to_h=adj_to * steps_h) \
        if adjust else None
    if rule == "generic":
        y = data.draw(st.integers(1, 5))
        x = data.draw(st.integers(1, y))
        first = data.draw(st.integers(1, 2))
        got = bl.high_x_of_y(load, eligible, events, ipd, x, y, first, adj)
        want = ref.high_x_of_y_ref(load, eligible, events, ipd, x, y, first, adj)
    elif rule == "10-in-10":
        got = bl.ten_in_ten(load, eligible, events, ipd, adj)
        want = ref.high_x_of_y_ref(load, eligible, events, ipd, 10, 10, 1, adj)
    elif rule.startswith("beijing"):
        window = "1-10" if rule.endswith("1-10") else "2-11"
        got = bl.beijing_high_5_of_10(load, eligible, events, ipd, window)
        want = ref.high_x_of_y_ref(load, eligible, events, ipd, 5, 10, 1 if window == "1-10" else 2)
    else:
        got = bl.jiangsu_last_5(load, eligible, events, ipd)
        want = ref.high_x_of_y_ref(load, eligible, events, ipd, 5, 5, 1)
    for g, w in zip((got.baseline_kw, got.days, got.adjustment), want, strict=True):
        close(g, w)
    assert np.array_equal(eligible, flags)  # the caller's flags are not modified
