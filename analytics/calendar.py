"""Working-day calendar for demand-response baselines, kept as data.

Baseline rules (CAISO 10-in-10, Beijing high-5-of-10, Jiangsu last-5) count *working days*: weekdays
that are not public holidays, plus the weekend days the government turns into make-up working days
(调休). Those dates change every year by State Council notice, so they live in a CSV file
(``date,kind,name`` with ``kind`` ``holiday`` or ``workday``; ``#`` starts a comment), not in code.
``analytics/data/calendar_cn_example.csv`` is an example for 2025-2026 (sources in its header);
a site ships its own. Dates are site-local calendar dates (DOMAIN.md §7: local-day logic uses the
site's zone, default Asia/Shanghai).
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analytics.localtime import local_datetime, local_day_start_ns

__all__ = [
    "EXAMPLE_CALENDAR_CN",
    "WorkdayCalendar",
    "day_eligibility",
    "load_calendar",
    "local_day_grid",
]

EXAMPLE_CALENDAR_CN = Path(__file__).parent / "data" / "calendar_cn_example.csv"

_KINDS = ("holiday", "workday")


@dataclass(frozen=True)
class WorkdayCalendar:
    """Holidays and make-up working days (site-local dates) read from one calendar file.

    ``years``: first and last calendar year with an entry; outside them the file knows nothing.
    """

    holidays: frozenset[dt.date]
    makeup_workdays: frozenset[dt.date]
    source: str
    years: tuple[int, int]

    def is_working_day(self, day: dt.date) -> bool:
        """A make-up working day works; a holiday does not; otherwise Monday-Friday work."""
        if day in self.makeup_workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5


def load_calendar(path: str | Path = EXAMPLE_CALENDAR_CN) -> WorkdayCalendar:
    """Read a ``date,kind,name`` calendar CSV of holidays and make-up working days.

    Parameters
    ----------
    path : str or Path
        The calendar file (site-local dates); default: the bundled example for 2025-2026.

    Returns
    -------
    WorkdayCalendar
        Holidays, make-up working days, the file and the years it covers.

    Raises
    ------
    ValueError
        Unknown kinds, bad dates, dates listed twice, a file without dates.

    References
    ----------
    State Council holiday notices (国务院办公厅关于部分节假日安排的通知), cited in the example file's header;
    DOMAIN.md §7 "10-in-10" (calendar as data, with make-up working days).
    """
    path = Path(path)
    holidays: set[dt.date] = set()
    workdays: set[dt.date] = set()
    with path.open(encoding="utf-8", newline="") as fh:
        lines = [line for line in fh if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(lines)
    if reader.fieldnames is None or not {"date", "kind"} <= set(reader.fieldnames):
        raise ValueError(f"{path}: header must contain 'date' and 'kind'")
    for row_no, row in enumerate(reader, start=2):
        try:
            day = dt.date.fromisoformat(row["date"].strip())
        except ValueError as exc:
            raise ValueError(f"{path}: data row {row_no}: bad date {row['date']!r}") from exc
        kind = row["kind"].strip()
        if kind not in _KINDS:
            raise ValueError(f"{path}: data row {row_no}: kind must be one of {_KINDS}, got {kind!r}")
        if day in holidays or day in workdays:
            raise ValueError(f"{path}: data row {row_no}: {day} listed twice")
        (holidays if kind == "holiday" else workdays).add(day)
    listed = holidays | workdays
    if not listed:
        raise ValueError(f"{path}: no dates")
    years = (min(d.year for d in listed), max(d.year for d in listed))
    return WorkdayCalendar(frozenset(holidays), frozenset(workdays), str(path), years)


def day_eligibility(
    calendar: WorkdayCalendar,
    first_day: dt.date,
    n_days: int,
    event_days: np.ndarray | list[int] | None = None,
    allow_uncovered: bool = False,
) -> np.ndarray:
    """Boolean mask over ``n_days`` local days from ``first_day``: True where a day may be a baseline day.

    A day is eligible when it is a working day of ``calendar`` and not an event day. Baseline functions
    also exclude every event day they are given, so passing the events here is only needed for events
    they are not told about. A range reaching outside the calendar's years is refused (its holidays
    would silently count as working days) unless ``allow_uncovered`` is True.

    Parameters
    ----------
    calendar : WorkdayCalendar
        From :func:`load_calendar`.
    first_day : datetime.date
        First site-local day.
    n_days : int [days]
        Length of the range, ≥ 0.
    event_days : ndarray or list of int [day index], optional
        Indices into the same range that are event days.
    allow_uncovered : bool
        Accept days outside the calendar's years (the weekday rule applies there).

    Returns
    -------
    ndarray of bool
        Shape (n_days,).

    References
    ----------
    DOMAIN.md §5 "Baselines" and §7 "10-in-10" (eligible days: weekdays that are not holidays or prior
    event days, with make-up working days).
    """
    if n_days < 0:
        raise ValueError("n_days must be >= 0")
    last_day = first_day + dt.timedelta(days=max(n_days - 1, 0))
    lo, hi = calendar.years
    if n_days and not allow_uncovered and (first_day.year < lo or last_day.year > hi):
        raise ValueError(f"{first_day}..{last_day} reaches outside the calendar's years {lo}-{hi}")
    mask = np.fromiter(
        (calendar.is_working_day(first_day + dt.timedelta(days=i)) for i in range(n_days)),
        dtype=np.bool_,
        count=n_days,
    )
    if event_days is not None:
        idx = np.asarray(event_days, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n_days):
            raise ValueError("event_days must index into the day range")
        mask[idx] = False
    return mask


def local_day_grid(
    start_utc: dt.datetime, n_intervals: int, interval_min: int, tz: str = "Asia/Shanghai"
) -> tuple[dt.date, int, int]:
    """Check that a UTC interval grid splits into whole, equal site-local days.

    ``start_utc`` must be a local midnight; days whose length differs (a daylight-saving change) are
    rejected, because the day-major baseline kernels assume equal days.

    Parameters
    ----------
    start_utc : datetime.datetime
        Timezone-aware start of the grid.
    n_intervals : int [intervals]
        Length of the grid.
    interval_min : int [min]
        Interval length; must divide 24 h.
    tz : str
        Site's IANA zone.

    Returns
    -------
    tuple of (datetime.date, int, int)
        ``(first_local_date, intervals_per_day, n_days)``.

    Raises
    ------
    ValueError
        A naive or non-midnight start, an interval that does not divide the day, partial days, or a
        day of another length (DST change).

    References
    ----------
    DOMAIN.md §7 "Intervals" (local-day logic uses the site's zone); local time through
    :mod:`analytics.localtime`.
    """
    if start_utc.tzinfo is None:
        raise ValueError("start_utc must be timezone-aware")
    start_ns = (start_utc - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1) * 1000
    local = local_datetime(start_ns, tz)
    if local_day_start_ns(local.date(), tz) != start_ns:
        raise ValueError(f"start_utc is not a local midnight in {tz}: {local.isoformat()}")
    if not interval_min > 0 or interval_min != int(interval_min):
        raise ValueError("interval_min must be a positive whole number of minutes")
    interval_min = int(interval_min)
    per_day, rem = divmod(24 * 60, interval_min)
    if rem:
        raise ValueError("interval_min must divide 24 h")
    n_days, rem = divmod(n_intervals, per_day)
    if rem or n_intervals < 0:
        raise ValueError("n_intervals must cover whole local days")
    day_ns = interval_min * per_day * 60_000_000_000
    for i in range(n_days + 1):
        day = local.date() + dt.timedelta(days=i)
        if local_day_start_ns(day, tz) != start_ns + i * day_ns:
            raise ValueError(f"local day {day} in {tz} is not {per_day} intervals long (DST change)")
    return local.date(), per_day, n_days
