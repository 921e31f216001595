"""Customer baselines for demand-response events: 10-in-10, high-X-of-Y, Beijing and Jiangsu rules.

Sources (DOMAIN.md §5, conventions §7): CAISO "10-in-10" (mean of the 10 most recent eligible
non-event days, same interval, day-of adjustment capped at ±20 %); Beijing (of working days #2-#11
before the event, average the 5 with the highest daily peak); Jiangsu (last 5 normal working days).
The load is one (buildings, intervals) float64 array [kW] starting at a site-local midnight with
``intervals_per_day`` intervals per local day (see ``analytics.calendar.local_day_grid``). Day
eligibility (weekends, holidays, make-up working days) comes from ``analytics.calendar``; every event
day passed in is excluded as well. A day with any missing interval is not a candidate for that
building. Baseline days are numbered back from the event: #1 is the last candidate day before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics._numba import as_2d, as_index, kernel, prange

__all__ = [
    "Baseline",
    "DayOfAdjustment",
    "DrEvents",
    "beijing_high_5_of_10",
    "high_x_of_y",
    "jiangsu_last_5",
    "ten_in_ten",
]


@dataclass(frozen=True)
class DrEvents:
    """Events on local days: ``day`` index into the series' days, ``start``/``stop`` interval of that day.

    ``stop`` is exclusive and ≤ intervals_per_day (an event lies within one local day).
    """

    day: np.ndarray
    start: np.ndarray
    stop: np.ndarray

    def validated(self, n_days: int, intervals_per_day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(day, start, stop) as int64 arrays, checked against the series' days and day length."""
        day = as_index(self.day, "events.day")
        start = as_index(self.start, "events.start")
        stop = as_index(self.stop, "events.stop")
        if not day.shape == start.shape == stop.shape:
            raise ValueError("event day/start/stop must be 1-D arrays of equal length")
        if day.size and (day.min() < 0 or day.max() >= n_days):
            raise ValueError("event day outside the series")
        if np.any(start < 0) or np.any(stop <= start) or np.any(stop > intervals_per_day):
            raise ValueError("need 0 <= start < stop <= intervals_per_day for every event")
        return day, start, stop


@dataclass(frozen=True)
class DayOfAdjustment:
    """Multiplicative day-of adjustment (DOMAIN.md §7): ratio of mean measured to mean baseline load over
    [event start − from_h, event start − to_h), clipped to [cap_low, cap_high]. Default: the 3 hours
    ending one hour before the event, [0.8, 1.2] (the CAISO ±20 % cap)."""

    from_h: float = 4.0
    to_h: float = 1.0
    cap_low: float = 0.8
    cap_high: float = 1.2


@dataclass(frozen=True)
class Baseline:
    """baseline_kw: (buildings, events, intervals_per_day) for the whole event day [kW];
    days: (buildings, events, x) chosen day indices, most recent first (−1 if none);
    adjustment: (buildings, events) factor applied (1 without adjustment; NaN where the window had a
    missing value or a zero baseline and the baseline is left unadjusted); NaN baseline where fewer
    than y candidate days exist before the event."""

    baseline_kw: np.ndarray
    days: np.ndarray
    adjustment: np.ndarray
    method: str
    convention: str


@kernel(parallel=True)
def _baseline_kernel(load, ipd, eligible, event_day, event_start, first_rank, y, x,
                     adjust, adj_from, adj_to, cap_lo, cap_hi):
    nb = load.shape[0]
    ne = event_day.shape[0]
    out = np.full((nb, ne, ipd), np.nan)
    days = np.full((nb, ne, x), -1, dtype=np.int64)
    factor = np.full((nb, ne), np.nan)
    nd = load.shape[1] // ipd
    for b in prange(nb):
        # One forward pass per building gives each day's peak and completeness (prefetch-friendly and
        # it leaves the row in cache for the per-event gathers that follow).
        day_peak = np.empty(nd)
        usable = np.empty(nd, dtype=np.bool_)
        for d in range(nd):
            pk = -np.inf
            gaps = 0
            for i in range(d * ipd, (d + 1) * ipd):
                v = load[b, i]
                gaps += v != v
                if v > pk:
                    pk = v
            day_peak[d] = pk
            usable[d] = eligible[d] and gaps == 0
        cand = np.empty(y, dtype=np.int64)
        peak = np.empty(y)
        taken = np.empty(y, dtype=np.bool_)
        sel = np.empty(x, dtype=np.int64)
        for e in range(ne):
            d0 = event_day[e]
            rank = 0
            nc = 0
            d = d0 - 1
            while d >= 0 and nc < y:
                if usable[d]:
                    rank += 1
                    if rank >= first_rank:
                        cand[nc] = d
                        peak[nc] = day_peak[d]
                        nc += 1
                d -= 1
            if nc < y:
                continue
            taken[:] = False
            for _ in range(x):
                best = -1
                for c in range(y):
                    if not taken[c] and (best < 0 or peak[c] > peak[best]):
                        best = c
                taken[best] = True
            j = 0
            for c in range(y):
                if taken[c]:
                    sel[j] = cand[c]
                    days[b, e, j] = cand[c]
                    j += 1
            row = out[b, e]
            row[:] = 0.0
            for j in range(x):
                day = load[b, sel[j] * ipd:(sel[j] + 1) * ipd]
                for i in range(ipd):
                    row[i] += day[i]
            for i in range(ipd):
                row[i] /= x
            if not adjust:
                factor[b, e] = 1.0
                continue
            m_sum = 0.0
            b_sum = 0.0
            ok = True
            for o in range(event_start[e] - adj_from, event_start[e] - adj_to):
                m = load[b, d0 * ipd + o] if d0 * ipd + o >= 0 else np.nan
                acc = 0.0
                for j in range(x):
                    k = sel[j] * ipd + o
                    acc += load[b, k] if k >= 0 else np.nan
                if m != m or acc != acc:
                    ok = False
                    break
                m_sum += m
                b_sum += acc / x
            if ok and b_sum != 0.0:
                r = min(max(m_sum / b_sum, cap_lo), cap_hi)
                factor[b, e] = r
                for i in range(ipd):
                    row[i] *= r
    return out, days, factor


def high_x_of_y(
    load_kw: np.ndarray,
    day_eligible: np.ndarray,
    events: DrEvents,
    intervals_per_day: int,
    x: int,
    y: int,
    first_rank: int = 1,
    adjustment: DayOfAdjustment | None = None,
    method: str = "high-x-of-y",
) -> Baseline:
    """Generic rule: average the ``x`` of ``y`` candidate days with the highest daily peak.

    Candidates are days #first_rank … #first_rank+y−1 back from the event; the ``x`` with the highest
    daily peak (ties: the more recent day) are averaged interval by interval. With x = y this is the
    plain mean of the y most recent days (CAISO 10-in-10, Jiangsu last-5; DOMAIN.md §5); x=4, y=5
    gives a PJM-style "High 4 of 5" (PJM's own details are unverified, DOMAIN.md §5). Optional
    multiplicative day-of adjustment (DOMAIN.md §7).

    Parameters
    ----------
    load_kw : ndarray [kW]
        Load, (buildings, intervals) or (intervals,), from a site-local midnight, whole local days of
        ``intervals_per_day`` intervals (see :func:`analytics.calendar.local_day_grid`); NaN = missing
        (a day with a gap is no candidate for that building).
    day_eligible : ndarray of bool
        One flag per local day (see :func:`analytics.calendar.day_eligibility`); event days are
        excluded in any case.
    events : DrEvents
        Event day [day index] and start/stop [interval of the day] of each event.
    intervals_per_day : int [intervals]
        Intervals per local day.
    x, y : int [days]
        Days averaged and candidate days, 1 ≤ x ≤ y.
    first_rank : int [day rank]
        Rank of the first candidate day (#1 = the last candidate day before the event).
    adjustment : DayOfAdjustment, optional
        Day-of adjustment window [h] and cap [-]; None = unadjusted.
    method : str
        Name recorded in the result.

    Returns
    -------
    Baseline
        ``baseline_kw`` [kW] (buildings, events, intervals_per_day) for the whole event day (NaN where
        fewer than y candidate days exist), ``days`` [day index] chosen, most recent first (−1 if none),
        ``adjustment`` [-] factor applied, ``method`` and ``convention``.

    Raises
    ------
    ValueError
        A ``load_kw`` that is not 1-D or 2-D or not whole days, ``day_eligible`` of the wrong
        length, events outside the series or with NaN / not whole indices, bad rule parameters.

    References
    ----------
    CAISO "10-in-10" customer baseline; PJM "High 4 of 5" (details unverified); DOMAIN.md §5
    "Baselines" and §7 "10-in-10".
    """
    load = as_2d(load_kw, "load_kw")
    if intervals_per_day < 1 or load.shape[1] % intervals_per_day:
        raise ValueError("load_kw must cover whole days of intervals_per_day intervals")
    n_days = load.shape[1] // intervals_per_day
    eligible = np.array(day_eligible, dtype=np.bool_)
    if eligible.shape != (n_days,):
        raise ValueError(f"day_eligible: expected one flag per day ({n_days},), got shape {eligible.shape}")
    if not 1 <= x <= y or first_rank < 1:
        raise ValueError("need 1 <= x <= y and first_rank >= 1")
    day, start, _ = events.validated(n_days, intervals_per_day)
    eligible[day] = False
    adj = adjustment or DayOfAdjustment()
    steps_per_h = intervals_per_day / 24.0
    adj_from = round(adj.from_h * steps_per_h)
    adj_to = round(adj.to_h * steps_per_h)
    if adjustment is not None:
        if adj_from <= adj_to or adj_to < 0 or abs(adj_from - adj.from_h * steps_per_h) > 1e-9 \
                or abs(adj_to - adj.to_h * steps_per_h) > 1e-9:
            raise ValueError("adjustment window must be whole intervals with from_h > to_h >= 0")
        if not 0 < adj.cap_low <= 1 <= adj.cap_high:
            raise ValueError("need 0 < cap_low <= 1 <= cap_high")
    out, days, factor = _baseline_kernel(
        load, intervals_per_day, eligible, day, start, first_rank, y, x,
        adjustment is not None, adj_from, adj_to, float(adj.cap_low), float(adj.cap_high),
    )
    adjusted = "none" if adjustment is None else (
        f"multiplicative, [start-{adj.from_h} h, start-{adj.to_h} h), clip [{adj.cap_low}, {adj.cap_high}]"
    )
    conv = (
        f"days: #{first_rank}-#{first_rank + y - 1} back from the event, highest {x} daily peaks; "
        f"excluded: ineligible calendar days, event days, days with missing data; adjustment: {adjusted}"
    )
    return Baseline(out, days, factor, method, conv)


def ten_in_ten(
    load_kw: np.ndarray,
    day_eligible: np.ndarray,
    events: DrEvents,
    intervals_per_day: int,
    adjustment: DayOfAdjustment | None = DayOfAdjustment(),
) -> Baseline:
    """CAISO 10-in-10: mean of the 10 most recent eligible non-event days, same interval, adjusted.

    The day-of adjustment is capped (default window: the 3 hours ending one hour before the event,
    clip [0.8, 1.2]); the CAISO window details are unverified, hence parameters.

    Parameters
    ----------
    load_kw : ndarray [kW]
        Load, (buildings, intervals) or (intervals,), from a site-local midnight, whole local days of
        ``intervals_per_day`` intervals (see :func:`analytics.calendar.local_day_grid`); NaN = missing
        (a day with a gap is no candidate for that building).
    day_eligible : ndarray of bool
        One flag per local day (see :func:`analytics.calendar.day_eligibility`); event days are
        excluded in any case.
    events : DrEvents
        Event day [day index] and start/stop [interval of the day] of each event.
    intervals_per_day : int [intervals]
        Intervals per local day.
    adjustment : DayOfAdjustment, optional
        Day-of adjustment window [h] and cap [-]; None gives the unadjusted baseline.

    Returns
    -------
    Baseline
        ``baseline_kw`` [kW] (buildings, events, intervals_per_day) for the whole event day (NaN where
        fewer than y candidate days exist), ``days`` [day index] chosen, most recent first (−1 if none),
        ``adjustment`` [-] factor applied, ``method`` and ``convention``.

    Raises
    ------
    ValueError
        A ``load_kw`` that is not 1-D or 2-D or not whole days, ``day_eligible`` of the wrong
        length, events outside the series or with NaN / not whole indices, bad rule parameters.

    References
    ----------
    CAISO "10-in-10" customer baseline; DOMAIN.md §5 "Baselines" and §7 "10-in-10".
    """
    return high_x_of_y(load_kw, day_eligible, events, intervals_per_day, 10, 10, 1, adjustment, "10-in-10")


def beijing_high_5_of_10(
    load_kw: np.ndarray,
    day_eligible: np.ndarray,
    events: DrEvents,
    intervals_per_day: int,
    window: str = "2-11",
) -> Baseline:
    """Beijing: of 10 working days before the event, average the 5 with the highest daily peak.

    The source's "from 2 to 12 days before" is ambiguous (DOMAIN.md §7): ``window="2-11"`` (default)
    takes working days #2-#11, ``"1-10"`` takes #1-#10. No day-of adjustment.

    Parameters
    ----------
    load_kw : ndarray [kW]
        Load, (buildings, intervals) or (intervals,), from a site-local midnight, whole local days of
        ``intervals_per_day`` intervals (see :func:`analytics.calendar.local_day_grid`); NaN = missing
        (a day with a gap is no candidate for that building).
    day_eligible : ndarray of bool
        One flag per local day (see :func:`analytics.calendar.day_eligibility`); event days are
        excluded in any case.
    events : DrEvents
        Event day [day index] and start/stop [interval of the day] of each event.
    intervals_per_day : int [intervals]
        Intervals per local day.
    window : str
        ``"2-11"`` (default) or ``"1-10"``: the ranks of the 10 candidate working days.

    Returns
    -------
    Baseline
        ``baseline_kw`` [kW] (buildings, events, intervals_per_day) for the whole event day (NaN where
        fewer than y candidate days exist), ``days`` [day index] chosen, most recent first (−1 if none),
        ``adjustment`` [-] factor applied, ``method`` and ``convention``.

    Raises
    ------
    ValueError
        A ``load_kw`` that is not 1-D or 2-D or not whole days, ``day_eligible`` of the wrong
        length, events outside the series or with NaN / not whole indices, bad rule parameters.

    References
    ----------
    Beijing demand-response baseline rule, DOMAIN.md §5 "Baselines" and §7 "Beijing high-5-of-10".
    """
    if window not in ("2-11", "1-10"):
        raise ValueError("window must be '2-11' or '1-10'")
    first = 2 if window == "2-11" else 1
    return high_x_of_y(load_kw, day_eligible, events, intervals_per_day, 5, 10, first, None,
                       f"beijing-high-5-of-10 #{window}")


def jiangsu_last_5(
    load_kw: np.ndarray, day_eligible: np.ndarray, events: DrEvents, intervals_per_day: int
) -> Baseline:
    """Jiangsu: mean of the last 5 normal working days before the event, #1-#5.

    Parameters
    ----------
    load_kw : ndarray [kW]
        Load, (buildings, intervals) or (intervals,), from a site-local midnight, whole local days of
        ``intervals_per_day`` intervals (see :func:`analytics.calendar.local_day_grid`); NaN = missing
        (a day with a gap is no candidate for that building).
    day_eligible : ndarray of bool
        One flag per local day (see :func:`analytics.calendar.day_eligibility`); event days are
        excluded in any case.
    events : DrEvents
        Event day [day index] and start/stop [interval of the day] of each event.
    intervals_per_day : int [intervals]
        Intervals per local day.

    Returns
    -------
    Baseline
        ``baseline_kw`` [kW] (buildings, events, intervals_per_day) for the whole event day (NaN where
        fewer than y candidate days exist), ``days`` [day index] chosen, most recent first (−1 if none),
        ``adjustment`` [-] factor applied, ``method`` and ``convention``.

    Raises
    ------
    ValueError
        A ``load_kw`` that is not 1-D or 2-D or not whole days, ``day_eligible`` of the wrong
        length, events outside the series or with NaN / not whole indices, bad rule parameters.

    References
    ----------
    Jiangsu demand-response baseline rule, DOMAIN.md §5 "Baselines" and §7 "Jiangsu".
    """
    return high_x_of_y(load_kw, day_eligible, events, intervals_per_day, 5, 5, 1, None, "jiangsu-last-5")
