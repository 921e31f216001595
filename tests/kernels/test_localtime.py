"""Site-local time helpers: hand-checked instants in Asia/Shanghai and across Europe/Berlin's DST changes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import localtime as lt
from analytics.emissions import local_months as emissions_local_months
from analytics.tou import local_offsets
from tests.kernels.reference_energy import local_month_index_ref, local_offsets_ref, local_wall_ref

H = 3_600_000_000_000


def utc_ns(*args) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp()) * 1_000_000_000


def test_shanghai_is_utc_plus_8_all_year():
    # 2024-12-31 16:00 UTC = 2025-01-01 00:00 +08:00: a new local day, month and year.
    t = utc_ns(2024, 12, 31, 16)
    assert lt.local_iso(t, "Asia/Shanghai") == "2025-01-01T00:00:00+08:00"
    assert lt.local_month(t, "Asia/Shanghai") == "2025-01"
    assert lt.local_month(t - 1, "Asia/Shanghai") == "2024-12"
    assert lt.local_date(t, "Asia/Shanghai") == dt.date(2025, 1, 1)
    # 2025-01-01 23:59 local (15:59 UTC) still belongs to the day that began at 2024-12-31 16:00 UTC.
    assert lt.local_midnight_ns(utc_ns(2025, 1, 1, 15, 59), "Asia/Shanghai") == t
    assert lt.local_midnight_ns(t, "Asia/Shanghai") == t
    assert lt.local_offsets_ns(np.array([utc_ns(2024, 1, 1), utc_ns(2024, 7, 1)]), "Asia/Shanghai").tolist() == [
        8 * H, 8 * H]
    assert lt.parse_local("2025-01-01", "Asia/Shanghai") == t
    assert lt.parse_local("2025-01-01T08:30", "Asia/Shanghai") == utc_ns(2025, 1, 1, 0, 30)
    assert lt.parse_local("2025-01-01 08:30:00", "Asia/Shanghai") == utc_ns(2025, 1, 1, 0, 30)
    # A given offset wins over the site's zone.
    assert lt.parse_local("2025-01-01T08:30Z", "Asia/Shanghai") == utc_ns(2025, 1, 1, 8, 30)
    assert lt.parse_local("2025-01-01T08:30+01:00", "Asia/Shanghai") == utc_ns(2025, 1, 1, 7, 30)
    assert lt.local_iso(t + 1_500_000, "Asia/Shanghai") == "2025-01-01T00:00:00.001500+08:00"
    assert lt.DEFAULT_TZ == "Asia/Shanghai" and lt.local_month(t) == "2025-01"


def test_berlin_march_switch():
    # 2024-03-31 01:00 UTC: 02:00 CET (+01:00) jumps to 03:00 CEST (+02:00); that day is 23 h long.
    switch = utc_ns(2024, 3, 31, 1)
    assert lt.local_iso(switch - 1_000_000_000, "Europe/Berlin") == "2024-03-31T01:59:59+01:00"
    assert lt.local_iso(switch, "Europe/Berlin") == "2024-03-31T03:00:00+02:00"
    assert lt.local_offsets_ns(np.array([switch - 1, switch]), "Europe/Berlin").tolist() == [H, 2 * H]
    midnight = utc_ns(2024, 3, 30, 23)  # 00:00 CET
    assert lt.local_midnight_ns(switch, "Europe/Berlin") == midnight
    assert lt.local_midnight_ns(utc_ns(2024, 3, 31, 21, 59), "Europe/Berlin") == midnight  # 23:59 CEST
    assert lt.local_midnight_ns(utc_ns(2024, 3, 31, 22), "Europe/Berlin") == utc_ns(2024, 3, 31, 22)
    assert lt.local_day_start_ns(dt.date(2024, 4, 1), "Europe/Berlin") - midnight == 23 * H
    assert lt.parse_local("2024-03-31T01:30", "Europe/Berlin") == utc_ns(2024, 3, 31, 0, 30)
    assert lt.parse_local("2024-03-31T03:30", "Europe/Berlin") == utc_ns(2024, 3, 31, 1, 30)
    # 02:30 does not exist that night: read with the offset before the change (+01:00, PEP 495 fold=0).
    assert lt.parse_local("2024-03-31T02:30", "Europe/Berlin") == utc_ns(2024, 3, 31, 1, 30)


def test_berlin_october_switch():
    # 2024-10-27 01:00 UTC: 03:00 CEST (+02:00) falls back to 02:00 CET (+01:00); that day is 25 h long.
    switch = utc_ns(2024, 10, 27, 1)
    assert lt.local_iso(switch - 1_000_000_000, "Europe/Berlin") == "2024-10-27T02:59:59+02:00"
    assert lt.local_iso(switch, "Europe/Berlin") == "2024-10-27T02:00:00+01:00"
    assert lt.local_offsets_ns(np.array([switch - 1, switch]), "Europe/Berlin").tolist() == [2 * H, H]
    midnight = utc_ns(2024, 10, 26, 22)  # 00:00 CEST
    assert lt.local_midnight_ns(utc_ns(2024, 10, 27, 22, 59), "Europe/Berlin") == midnight  # 23:59 CET
    assert lt.local_day_start_ns(dt.date(2024, 10, 28), "Europe/Berlin") - midnight == 25 * H
    # 02:30 happens twice: the first (CEST) is taken.
    assert lt.parse_local("2024-10-27T02:30", "Europe/Berlin") == utc_ns(2024, 10, 27, 0, 30)
    assert lt.parse_local("2024-10-27T02:30+01:00", "Europe/Berlin") == utc_ns(2024, 10, 27, 1, 30)
    assert lt.local_month(utc_ns(2024, 10, 31, 23), "Europe/Berlin") == "2024-11"  # 00:00 CET Nov 1


def test_midnight_inside_a_dst_gap():
    # America/Santiago 2024-09-08: 00:00 (-04:00) jumps to 01:00 (-03:00); the day begins at 04:00 UTC.
    t = utc_ns(2024, 9, 8, 4, 30)
    assert lt.local_iso(t, "America/Santiago") == "2024-09-08T01:30:00-03:00"
    assert lt.local_midnight_ns(t, "America/Santiago") == utc_ns(2024, 9, 8, 4)


def test_offset_steps_alias_zone_cache_and_errors():
    assert local_offsets is lt.offset_steps and emissions_local_months is lt.local_months
    assert lt.zone("Europe/Berlin") is lt.zone("Europe/Berlin")
    transitions, offsets = lt.offset_steps(np.array([utc_ns(2024, 1, 1), utc_ns(2024, 12, 31)]), "Europe/Berlin")
    assert transitions[1:].tolist() == [utc_ns(2024, 3, 31, 1), utc_ns(2024, 10, 27, 1)]
    assert offsets.tolist() == [H, 2 * H, H] and not offsets.flags.writeable
    assert lt.local_offsets_ns(np.zeros(0, dtype=np.int64), "Europe/Berlin").shape == (0,)
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Base'"):
        lt.local_month(0, "Mars/Base")
    with pytest.raises(KeyError):  # also a zoneinfo.ZoneInfoNotFoundError
        lt.zone("Mars/Base")
    with pytest.raises(ValueError, match="not an ISO 8601"):
        lt.parse_local("31/03/2024", "Europe/Berlin")


ZONES = st.sampled_from(["Asia/Shanghai", "Europe/Berlin", "America/New_York", "America/Santiago",
                         "Australia/Lord_Howe"])
INSTANTS = st.integers(utc_ns(2020, 1, 1), utc_ns(2030, 1, 1))


@settings(max_examples=60, deadline=None)
@given(st.lists(INSTANTS, max_size=20), ZONES)
def test_offsets_and_months_match_reference(ts, tz):
    ts = np.array(ts, dtype=np.int64)
    np.testing.assert_array_equal(lt.local_offsets_ns(ts, tz), local_offsets_ref(ts, tz))
    if ts.size:
        months, idx = lt.local_months(ts, tz)
        np.testing.assert_array_equal(idx, local_month_index_ref(ts, tz))
        assert [str(m) for m in months[idx]] == [lt.local_month(int(t), tz) for t in ts]


@settings(max_examples=60, deadline=None)
@given(INSTANTS, ZONES)
def test_scalar_helpers_match_reference(t, tz):
    iso, month, start = local_wall_ref(t, tz)
    assert lt.local_iso(t, tz) == iso and lt.local_month(t, tz) == month
    assert lt.local_midnight_ns(t, tz) == start
    assert lt.parse_local(iso, tz) == t // 1000 * 1000
    assert lt.parse_local(lt.local_iso(start, tz)[:10], tz) == start
