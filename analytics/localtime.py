"""Site-local time: the one place that turns UTC instants into the site's wall clock and back.

Conventions (DOMAIN.md §7, "Intervals"): instants are int nanoseconds since the Unix epoch, UTC;
local-day logic (tariffs, baselines, months, reports) uses the site's IANA zone through ``zoneinfo``
(default Asia/Shanghai), so daylight-saving changes and historical offsets are honoured. A wall
time that occurs twice (the hour a DST zone falls back) is read as its first occurrence and one that
does not occur (the hour it springs forward) with the offset before the change, as ``zoneinfo``
does (PEP 495, ``fold=0``).

Scalar helpers (:func:`local_month`, :func:`local_iso`, :func:`local_midnight_ns`,
:func:`parse_local`, …) go through ``datetime``; the array helpers (:func:`local_offsets_ns`,
:func:`offset_steps`, :func:`local_months`) find the zone's offset changes over the span once
(cached) and look each timestamp up with a binary search.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

__all__ = [
    "DEFAULT_TZ",
    "UnknownTimeZoneError",
    "local_date",
    "local_datetime",
    "local_day_start_ns",
    "local_iso",
    "local_midnight_ns",
    "local_month",
    "local_months",
    "local_offsets_ns",
    "offset_steps",
    "parse_local",
    "zone",
]

DEFAULT_TZ = "Asia/Shanghai"
NS_PER_S = 1_000_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


class UnknownTimeZoneError(ValueError, ZoneInfoNotFoundError):
    """A zone name ``zoneinfo`` does not know (a ``ValueError`` and a ``ZoneInfoNotFoundError``)."""


@lru_cache(maxsize=128)
def zone(tz: str) -> ZoneInfo:
    """The ``ZoneInfo`` of an IANA zone name, cached.

    Parameters
    ----------
    tz : str
        IANA time zone, e.g. ``"Asia/Shanghai"``.

    Returns
    -------
    ZoneInfo
        The zone (one object per name for the life of the process).

    Raises
    ------
    UnknownTimeZoneError
        ``tz`` is not a zone of the tz database (``tzdata``).

    References
    ----------
    IANA Time Zone Database; Python ``zoneinfo`` (PEP 615).
    """
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise UnknownTimeZoneError(f"unknown time zone {tz!r}") from exc


def _to_utc_datetime(ts_ns: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=int(ts_ns) // 1000)


def _to_ns(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // _US * 1000


def local_datetime(ts_ns: int, tz: str = DEFAULT_TZ) -> dt.datetime:
    """The aware local ``datetime`` of an instant in the site's zone.

    Parameters
    ----------
    ts_ns : int [ns since epoch, UTC]
        The instant; the sub-microsecond part is dropped (``datetime`` resolution).
    tz : str
        Site's IANA zone.

    Returns
    -------
    datetime.datetime
        Aware, ``tzinfo`` = the site's zone.

    References
    ----------
    DOMAIN.md §7 "Intervals"; Python ``zoneinfo`` (PEP 615), ``fold`` semantics PEP 495.
    """
    return _to_utc_datetime(ts_ns).astimezone(zone(tz))


def local_date(ts_ns: int, tz: str = DEFAULT_TZ) -> dt.date:
    """The site-local calendar date of an instant.

    Parameters
    ----------
    ts_ns : int [ns since epoch, UTC]
        The instant.
    tz : str
        Site's IANA zone.

    Returns
    -------
    datetime.date
        Local date.

    References
    ----------
    DOMAIN.md §7 "Intervals" (local-day logic uses the site's zone).
    """
    return local_datetime(ts_ns, tz).date()


def local_month(ts_ns: int, tz: str = DEFAULT_TZ) -> str:
    """The site-local month of an instant as ``'YYYY-MM'``.

    Parameters
    ----------
    ts_ns : int [ns since epoch, UTC]
        The instant.
    tz : str
        Site's IANA zone.

    Returns
    -------
    str
        ``'YYYY-MM'``, e.g. ``'2025-01'`` for 2024-12-31T16:00Z in Asia/Shanghai.

    References
    ----------
    DOMAIN.md §7 "Intervals" (months are site-local); ISO 8601 calendar month notation.
    """
    local = local_datetime(ts_ns, tz)
    return f"{local.year:04d}-{local.month:02d}"


def local_iso(ts_ns: int, tz: str = DEFAULT_TZ) -> str:
    """ISO 8601 text of an instant in the site's local time, with its UTC offset.

    Parameters
    ----------
    ts_ns : int [ns since epoch, UTC]
        The instant; fractional seconds are written to the microsecond when not zero.
    tz : str
        Site's IANA zone.

    Returns
    -------
    str
        e.g. ``'2025-01-01T08:00:00+08:00'``.

    References
    ----------
    ISO 8601-1:2019 (date and time with UTC offset); DOMAIN.md §7 "Intervals".
    """
    return local_datetime(ts_ns, tz).isoformat()


def local_day_start_ns(day: dt.date, tz: str = DEFAULT_TZ) -> int:
    """The UTC instant at which a site-local calendar day starts.

    Parameters
    ----------
    day : datetime.date
        Local calendar date.
    tz : str
        Site's IANA zone.

    Returns
    -------
    int [ns since epoch, UTC]
        The first instant of ``day`` in ``tz`` (where midnight does not exist because of a DST change
        at 00:00, the instant the day begins).

    References
    ----------
    DOMAIN.md §7 "Intervals"; PEP 495 (``fold=0`` for ambiguous and missing wall times).
    """
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=zone(tz))
    return _to_ns(midnight.astimezone(dt.UTC))


def local_midnight_ns(ts_ns: int, tz: str = DEFAULT_TZ) -> int:
    """Start of the site-local day containing an instant.

    Parameters
    ----------
    ts_ns : int [ns since epoch, UTC]
        The instant.
    tz : str
        Site's IANA zone.

    Returns
    -------
    int [ns since epoch, UTC]
        Local midnight of the instant's local date, e.g. 2024-12-31T16:00Z for any instant of
        2025-01-01 in Asia/Shanghai.

    References
    ----------
    DOMAIN.md §7 "Intervals" (local-day logic uses the site's zone).
    """
    ts = int(ts_ns)
    start = local_day_start_ns(local_date(ts, tz), tz)
    if start > ts:
        # Midnight fell inside a forward DST gap: the day began at that change of offset.
        transitions, _ = offset_steps(np.array([ts]), tz)
        start = int(transitions[np.searchsorted(transitions, ts, side="right") - 1])
    return start


def parse_local(text: str, tz: str = DEFAULT_TZ) -> int:
    """Parse an ISO 8601 date or date-time; without a zone it is site-local time.

    Parameters
    ----------
    text : str
        ``'YYYY-MM-DD'`` (local midnight), ``'YYYY-MM-DDTHH:MM[:SS[.ffffff]]'`` (local wall time) or
        either with ``Z`` / ``±HH:MM`` (that offset is honoured and ``tz`` is ignored); a space may
        separate date and time.
    tz : str
        Site's IANA zone for text without an offset.

    Returns
    -------
    int [ns since epoch, UTC]
        The instant.

    Raises
    ------
    ValueError
        ``text`` is not ISO 8601, or ``tz`` is unknown.

    References
    ----------
    ISO 8601-1:2019; Python ``datetime.fromisoformat``; PEP 495 (``fold=0`` for ambiguous and
    missing local times); DOMAIN.md §7 "Intervals".
    """
    stripped = text.strip()
    try:
        if len(stripped) == 10:
            return local_day_start_ns(dt.date.fromisoformat(stripped), tz)
        moment = dt.datetime.fromisoformat(stripped)
    except ValueError as exc:
        raise ValueError(f"not an ISO 8601 date or date-time: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(tz))
    return _to_ns(moment.astimezone(dt.UTC))


def offset_steps(ts_ns: np.ndarray, tz: str = DEFAULT_TZ) -> tuple[np.ndarray, np.ndarray]:
    """UTC-offset steps of a zone over the span of ``ts_ns``: (transition times, offsets).

    Parameters
    ----------
    ts_ns : ndarray [ns since epoch, UTC]
        Instants; only their span matters.
    tz : str
        Site's IANA zone.

    Returns
    -------
    transitions : ndarray of int64 [ns since epoch, UTC]
        ``transitions[0]`` is the int64 minimum; ``offsets[i]`` applies from ``transitions[i]``.
    offsets : ndarray of int64 [ns]
        UTC offset (local − UTC). Both arrays are read-only and cached per zone and span.

    References
    ----------
    IANA Time Zone Database through Python ``zoneinfo`` (PEP 615); sampled every 6 h (zones change
    offset at most twice a year) and each change bisected to the second.
    """
    ts = np.asarray(ts_ns, dtype=np.int64)
    lo = 0 if ts.size == 0 else int(ts.min()) // NS_PER_S // 3600 * 3600 - 86400
    hi = lo + 86400 if ts.size == 0 else int(ts.max()) // NS_PER_S + 2 * 86400
    return _offset_steps(tz, lo, hi)


@lru_cache(maxsize=64)
def _offset_steps(tz: str, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    site = zone(tz)

    def offset_s(t: int) -> int:
        off = dt.datetime.fromtimestamp(t, site).utcoffset()
        return int(off.total_seconds()) if off is not None else 0

    step = 6 * 3600
    transitions, offsets = [np.iinfo(np.int64).min], [offset_s(lo)]
    prev_t, prev = lo, offsets[0]
    for t in range(lo + step, hi + step, step):
        cur = offset_s(t)
        if cur != prev:
            a, b = prev_t, t
            while b - a > 1:
                mid = (a + b) // 2
                a, b = (mid, b) if offset_s(mid) == prev else (a, mid)
            transitions.append(b * NS_PER_S)
            offsets.append(cur)
        prev_t, prev = t, cur
    steps = np.array(transitions, dtype=np.int64), np.array(offsets, dtype=np.int64) * NS_PER_S
    for arr in steps:
        arr.setflags(write=False)
    return steps


def local_offsets_ns(ts_ns: np.ndarray, tz: str = DEFAULT_TZ) -> np.ndarray:
    """UTC offset of the site's zone at each instant, daylight saving included.

    Parameters
    ----------
    ts_ns : ndarray [ns since epoch, UTC]
        Instants, any shape.
    tz : str
        Site's IANA zone.

    Returns
    -------
    ndarray of int64 [ns]
        Offset (local − UTC) per instant, the shape of ``ts_ns``; local wall time = ``ts_ns + offset``.

    References
    ----------
    IANA Time Zone Database through Python ``zoneinfo`` (PEP 615); DOMAIN.md §7 "Intervals".
    """
    ts = np.asarray(ts_ns, dtype=np.int64)
    transitions, offsets = offset_steps(ts, tz)
    return offsets[np.searchsorted(transitions, ts, side="right") - 1]


def local_months(ts_ns: np.ndarray, tz: str = DEFAULT_TZ) -> tuple[np.ndarray, np.ndarray]:
    """Site-local month of each instant.

    Parameters
    ----------
    ts_ns : ndarray [ns since epoch, UTC]
        Instants, 1-D, any order.
    tz : str
        Site's IANA zone.

    Returns
    -------
    months : ndarray of datetime64[M]
        Every local month from the first to the last instant's.
    index : ndarray of int64
        Index into ``months`` per instant.

    References
    ----------
    DOMAIN.md §7 "Intervals" and "Market-based Scope 2" (instruments per site-local month).
    """
    ts = np.ascontiguousarray(ts_ns, dtype=np.int64)
    if ts.size == 0:
        return np.array([], dtype="datetime64[M]"), np.array([], dtype=np.int64)
    transitions, offsets = offset_steps(ts, tz)

    def offset_at(t: np.ndarray) -> np.ndarray:
        return offsets[np.searchsorted(transitions, t, side="right") - 1]

    ends = np.array([ts.min(), ts.max()])
    first, last = (ends + offset_at(ends)).astype("datetime64[ns]").astype("datetime64[M]")
    months = np.arange(first, last + np.timedelta64(1, "M"))
    # The UTC instant each local month starts (offset looked up twice to settle across a DST step).
    start_local = months.astype("datetime64[ns]").astype(np.int64)
    start_utc = start_local - offset_at(start_local - offset_at(start_local))
    return months, np.maximum(np.searchsorted(start_utc, ts, side="right") - 1, 0)
