"""Time-of-use (peak / flat / valley) split of interval energy by the site's local time.

Conventions (DOMAIN.md §7, "Intervals" and "Time of use"):

- Intervals are labelled by their start in UTC; tariff periods are site-local clock times (the
  site's IANA zone through :mod:`analytics.localtime`, default Asia/Shanghai, DESIGN.md "Data
  model"), so local months and daylight-saving shifts are honoured.
- An interval that straddles a period boundary is split pro rata by time (``"pro_rata"``, default)
  [alt ``"start"``: the whole interval goes to the period of its start].
- The tariff is data (a CSV file, see :func:`load_tariff`); ``EXAMPLE_TARIFF_SHANGHAI`` is an
  example to replace with the site's own tariff, and results say which tariff produced them.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analytics._numba import as_rows, kernel, prange
from analytics.localtime import offset_steps

__all__ = [
    "EXAMPLE_TARIFF_SHANGHAI",
    "SPLIT_CONVENTIONS",
    "TouSplit",
    "TouTariff",
    "load_tariff",
    "local_offsets",
    "tou_fractions",
    "tou_split",
]

EXAMPLE_TARIFF_SHANGHAI = Path(__file__).parent / "data" / "tariff_tou_shanghai_example.csv"
SPLIT_CONVENTIONS = ("pro_rata", "start")
NS_PER_MIN = 60_000_000_000
NS_PER_DAY = 1440 * NS_PER_MIN
MIN_PER_DAY = 1440

#: UTC-offset steps of a zone over a span: kept under its old name, see :func:`analytics.localtime.offset_steps`.
local_offsets = offset_steps


@dataclass(frozen=True)
class TouTariff:
    """A tariff table: ``period_of_minute[month − 1, minute_of_day]`` indexes ``periods``."""

    name: str
    periods: tuple[str, ...]
    period_of_minute: np.ndarray
    price_cny_per_kwh: np.ndarray
    example: bool


@dataclass(frozen=True)
class TouSplit:
    """Energy per tariff period [kWh], shape (n_periods,) or (n_series, n_periods)."""

    periods: tuple[str, ...]
    energy_kwh: np.ndarray
    cost_cny: np.ndarray
    n_missing: np.ndarray
    tariff: str
    tariff_is_example: bool
    tz: str
    split: str
    convention: str = "DOMAIN.md §7 time of use: local time of the site's zone; straddling intervals split"


def _hhmm(text: str) -> int:
    hours, minutes = text.strip().split(":")
    value = int(hours) * 60 + int(minutes)
    if not 0 <= value <= MIN_PER_DAY:
        raise ValueError(f"time out of range: {text!r}")
    return value


def _months(text: str) -> list[int]:
    months: list[int] = []
    for part in text.split(";"):
        lo, _, hi = part.strip().partition("-")
        months.extend(range(int(lo), int(hi or lo) + 1))
    if not months or min(months) < 1 or max(months) > 12:
        raise ValueError(f"months out of range: {text!r}")
    return months


def load_tariff(path: str | Path) -> TouTariff:
    """Read a tariff CSV (``months,start,end,period,price_cny_per_kwh``; ``#`` lines are comments).

    Every minute of every month must belong to exactly one period. A file whose comments contain
    ``EXAMPLE`` is marked ``example=True`` so reports can say the tariff is not the site's.

    Parameters
    ----------
    path : str or Path
        The tariff file; ``start``/``end`` are site-local ``HH:MM`` [local time], ``months`` like
        ``1-6;9``, ``price_cny_per_kwh`` [CNY/kWh].

    Returns
    -------
    TouTariff
        Periods, the (12, 1440) period-of-minute table, prices [CNY/kWh] and the example flag.

    Raises
    ------
    ValueError
        Overlapping periods, a minute without a period, two prices for one period, bad times or months.

    References
    ----------
    DOMAIN.md §7 "Time of use" (the tariff is data); the tariff file names its own source.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    table = np.full((12, MIN_PER_DAY), -1, dtype=np.int64)
    periods: list[str] = []
    prices: dict[str, float] = {}
    for row in csv.DictReader(lines):
        period = row["period"].strip()
        if period not in periods:
            periods.append(period)
        price = float(row.get("price_cny_per_kwh") or "nan")
        if prices.setdefault(period, price) != price and not np.isnan(price):
            raise ValueError(f"{path}: period {period!r} has two prices")
        start, end = _hhmm(row["start"]), _hhmm(row["end"])
        spans = [(start, end)] if start < end else [(start, MIN_PER_DAY), (0, end)]
        for month in _months(row["months"]):
            for lo, hi in spans:
                if np.any(table[month - 1, lo:hi] >= 0):
                    raise ValueError(f"{path}: overlapping periods in month {month} at {row['start']}")
                table[month - 1, lo:hi] = periods.index(period)
    if np.any(table < 0):
        month, minute = np.argwhere(table < 0)[0]
        raise ValueError(f"{path}: month {month + 1} minute {minute} has no period")
    comments = "\n".join(ln for ln in text.splitlines() if ln.lstrip().startswith("#"))
    return TouTariff(
        name=path.stem, periods=tuple(periods), period_of_minute=table,
        price_cny_per_kwh=np.array([prices[p] for p in periods]), example="EXAMPLE" in comments,
    )


def _next_change(table: np.ndarray) -> np.ndarray:
    """For each (month, minute), the minute of day where the period next changes (1440 = midnight)."""
    minutes = np.arange(MIN_PER_DAY)
    nxt = np.empty_like(table)
    for month, row in enumerate(table):
        changes = np.append(np.flatnonzero(row[1:] != row[:-1]) + 1, MIN_PER_DAY)
        nxt[month] = changes[np.searchsorted(changes, minutes, side="right")]
    return nxt


@kernel()
def _civil_month(days):
    # Month (0-11) of a day count since 1970-01-01; H. Hinnant, "chrono-compatible low-level date
    # algorithms", civil_from_days.
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    return mp + 2 if mp < 10 else mp - 10


@kernel()
def _tou_fraction_kernel(ts, duration, transitions, offsets, table, next_change, whole_interval, frac):
    n = ts.size
    n_tr = transitions.size
    ti = 0
    for j in range(n):
        a = ts[j]
        b = a + duration
        for p in range(frac.shape[1]):
            frac[j, p] = 0.0
        t = a
        while t < b:
            while ti + 1 < n_tr and transitions[ti + 1] <= t:
                ti += 1
            while ti > 0 and transitions[ti] > t:
                ti -= 1
            local = t + offsets[ti]
            day = local // NS_PER_DAY
            minute = (local - day * NS_PER_DAY) // NS_PER_MIN
            month = _civil_month(day)
            if whole_interval:
                frac[j, table[month, minute]] = 1.0
                break
            seg_end = day * NS_PER_DAY + next_change[month, minute] * NS_PER_MIN - offsets[ti]
            if ti + 1 < n_tr:
                seg_end = min(seg_end, transitions[ti + 1])
            seg_end = min(seg_end, b)
            frac[j, table[month, minute]] += (seg_end - t) / duration
            t = seg_end


@kernel(parallel=True)
def _tou_totals_kernel(energy, frac, totals, n_missing):
    m, n = energy.shape
    n_p = frac.shape[1]
    for r in prange(m):
        for p in range(n_p):
            totals[r, p] = 0.0
        missing = 0
        for j in range(n):
            e = energy[r, j]
            if np.isnan(e):
                missing += 1
                continue
            for p in range(n_p):
                totals[r, p] += e * frac[j, p]
        n_missing[r] = missing


def tou_fractions(
    ts_ns: np.ndarray, interval_ns: int, tariff: TouTariff, *, tz: str = "Asia/Shanghai",
    split: str = "pro_rata",
) -> np.ndarray:
    """Share of each interval in each tariff period, by the site's local time.

    Parameters
    ----------
    ts_ns : ndarray [ns since epoch, UTC]
        Interval starts, shape (n,).
    interval_ns : int [ns]
        Interval length.
    tariff : TouTariff
        From :func:`load_tariff`.
    tz : str
        Site's IANA time zone.
    split : str
        ``"pro_rata"`` (default) or ``"start"`` (whole interval to the period of its start).

    Returns
    -------
    ndarray [-]
        Shape (n, n_periods); each row sums to 1.

    References
    ----------
    DOMAIN.md §7 "Time of use" and "Intervals"; local time through :mod:`analytics.localtime`.
    """
    if split not in SPLIT_CONVENTIONS:
        raise ValueError(f"split must be one of {SPLIT_CONVENTIONS}")
    if int(interval_ns) <= 0:
        raise ValueError("interval_ns must be positive")
    ts = np.ascontiguousarray(ts_ns, dtype=np.int64)
    if ts.ndim != 1:
        raise ValueError("ts_ns must be 1-D")
    transitions, offsets = offset_steps(ts, tz)
    frac = np.empty((ts.size, len(tariff.periods)))
    _tou_fraction_kernel(
        ts, np.int64(interval_ns), transitions, offsets, np.ascontiguousarray(tariff.period_of_minute),
        _next_change(tariff.period_of_minute), split == "start", frac,
    )
    return frac


def tou_split(
    ts_ns: np.ndarray,
    energy_kwh: np.ndarray,
    interval_ns: int,
    tariff: TouTariff,
    *,
    tz: str = "Asia/Shanghai",
    split: str = "pro_rata",
) -> TouSplit:
    """Energy [kWh] and cost [CNY] per tariff period (DOMAIN.md §7, "Time of use").

    Parameters
    ----------
    ts_ns : ndarray [ns since epoch, UTC]
        Interval starts, shape (n,).
    energy_kwh : ndarray [kWh]
        Interval energy, (n,) or (n_series, n); NaN intervals are counted in ``n_missing`` and left out.
    interval_ns : int [ns]
        Interval length.
    tariff : TouTariff
        From :func:`load_tariff`.
    tz : str
        Site's IANA time zone.
    split : str
        ``"pro_rata"`` (default) or ``"start"`` (whole interval to the period of its start).

    Returns
    -------
    TouSplit
        ``energy_kwh`` [kWh] and ``cost_cny`` [CNY] per period, (n_periods,) or (n_series, n_periods),
        ``n_missing`` [intervals], the tariff's name, zone, split and convention.

    References
    ----------
    DOMAIN.md §7 "Time of use" and "Intervals"; the tariff file names its own source.
    """
    rows, was_1d = as_rows(energy_kwh, "energy_kwh", np.asarray(ts_ns).size)
    frac = tou_fractions(ts_ns, interval_ns, tariff, tz=tz, split=split)
    totals = np.empty((rows.shape[0], len(tariff.periods)))
    n_missing = np.empty(rows.shape[0], dtype=np.int64)
    _tou_totals_kernel(rows, frac, totals, n_missing)
    cost = totals * tariff.price_cny_per_kwh
    if was_1d:
        totals, cost, n_missing = totals[0], cost[0], n_missing[0]
    return TouSplit(
        periods=tariff.periods, energy_kwh=totals, cost_cny=cost, n_missing=n_missing,
        tariff=tariff.name, tariff_is_example=tariff.example, tz=tz, split=split,
    )
