"""Interval energy from cumulative energy counters (kWh registers of meters and inverters).

Conventions (DOMAIN.md §7, "Cumulative counters" and "Clock jitter"; every one a named parameter):

- Readings are sorted by time; duplicate timestamps collapse to the last non-missing reading
  (the same series and timestamp overwrite, as in InfluxDB). NaN means a missing reading.
- A decrease is a *rollover* when the wrapped delta ``new − old + wrap`` is at most the plausible
  maximum ``p_max_kw × Δt``; otherwise it is a *reset* (meter replaced or cleared): the delta is the
  new value (a lower bound) and the interval is flagged. ``wrap`` is 2^width raw counts × scale
  (× PT/CT ratio) in kWh, e.g. an Acrel DDSY1352 UINT32 × 0.01 kWh register wraps at
  2^32 × 0.01 = 42,949,672.96 kWh (DOMAIN.md §6).
- A reading within ``snap_tolerance`` × interval of a grid point (default 10 %) is moved onto it; a
  reading further off the grid keeps its time and the energy of the spans it bounds is apportioned
  to the grid intervals linearly in time.
- A span between consecutive readings longer than ``max_span`` × interval (default 1.5) means at
  least one reading is missing: every interval the span touches is NaN (never 0, never
  interpolated) and the span's energy is reported on its own in ``gap_energy_kwh``, at the interval
  where the gap starts (flagged ``FLAG_GAP_START``; the array is 0 elsewhere, and is allocated
  lazily zeroed so the rare gaps cost no pass over it).

Intervals are labelled by their start in UTC ns (DOMAIN.md §7, "Intervals").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analytics._numba import NS_PER_HOUR, as_rows, kernel, prange

__all__ = [
    "FLAG_APPORTIONED",
    "FLAG_GAP",
    "FLAG_GAP_START",
    "FLAG_RESET",
    "FLAG_ROLLOVER",
    "CounterEnergy",
    "counter_wrap",
    "interval_energy",
]

FLAG_ROLLOVER = 1
FLAG_RESET = 2
FLAG_APPORTIONED = 4
FLAG_GAP = 8
FLAG_GAP_START = 16

CONVENTION = (
    "DOMAIN.md §7 cumulative counters: sort, collapse duplicates (last wins); decrease = rollover if "
    "wrapped delta <= P_max*dt else reset (delta = new value, flagged); span > max_span intervals = gap "
    "(touched intervals NaN, energy reported separately); jitter snapped within tolerance, else "
    "apportioned linearly in time"
)


def counter_wrap(width_bits: int, scale: float, ratio: float = 1.0) -> float:
    """Counter wrap in the field's unit: ``2**width_bits × scale × ratio`` (DOMAIN.md §7).

    Parameters
    ----------
    width_bits : int [bits]
        Register width, e.g. 32 for a UINT32 register.
    scale : float [kWh]
        Value of one raw count, e.g. 0.01.
    ratio : float [-]
        PT × CT ratio applied by the meter profile.

    Returns
    -------
    float [kWh]
        The value at which the counter wraps to 0.

    References
    ----------
    DOMAIN.md §7 "Cumulative counters"; DOMAIN.md §6 (e.g. Acrel DDSY1352 energy UINT32 × 0.01 kWh:
    2^32 × 0.01 = 42,949,672.96 kWh).
    """
    if width_bits <= 0 or scale <= 0 or ratio <= 0:
        raise ValueError("width_bits, scale and ratio must be positive")
    return float(2**width_bits) * scale * ratio


@dataclass(frozen=True)
class CounterEnergy:
    """Interval energy derived from one or more cumulative counters sharing a time axis.

    ``energy_kwh``, ``flags`` and ``gap_energy_kwh`` have shape ``(n_intervals,)`` for one counter or
    ``(n_series, n_intervals)`` for several. ``flags`` is a bit set of ``FLAG_*``;
    ``gap_energy_kwh`` holds a gap's energy where ``flags & FLAG_GAP_START``, 0 elsewhere.
    """

    start_ns: int
    interval_ns: int
    energy_kwh: np.ndarray
    flags: np.ndarray
    gap_energy_kwh: np.ndarray
    wrap_kwh: float
    p_max_kw: float
    snap_tolerance: float
    max_span: float
    convention: str = CONVENTION

    @property
    def n_rollovers(self) -> int:
        return int(np.count_nonzero(self.flags & FLAG_ROLLOVER))

    @property
    def n_resets(self) -> int:
        return int(np.count_nonzero(self.flags & FLAG_RESET))

    @property
    def n_gaps(self) -> int:
        return int(np.count_nonzero(self.flags & FLAG_GAP_START))

    @property
    def gaps(self) -> tuple[np.ndarray, ...]:
        """Gaps as arrays: (series index, first interval index, energy [kWh]); 1-D input: no series."""
        where = np.nonzero(self.flags & FLAG_GAP_START)
        return (*where, self.gap_energy_kwh[where])


@kernel()
def _close(energy, flags, r, cur, upto, acc_e, acc_cov, acc_gap, acc_flag, interval):
    # Close intervals cur..upto-1: the first holds what the spans so far put into it, the rest saw
    # no span. An interval is known only when fully covered by spans and touched by no gap.
    if cur < upto:
        energy[r, cur] = acc_e if acc_cov == interval and not acc_gap else np.nan
        flags[r, cur] = acc_flag
        for k in range(cur + 1, upto):
            energy[r, k] = np.nan
            flags[r, k] = 0
    return max(cur, upto)


@kernel()
def _regular_run(row, j, end, prev_v, k, max_step_kwh, wrap, energy_row, flags_row):
    # Readings j..end-1 each lie exactly one grid step after the one before: a tight loop that
    # stops at the first missing reading. Returns (next reading, next interval, last value).
    while j < end:
        v = row[j]
        if np.isnan(v):
            break
        delta = v - prev_v
        flag = 0
        if delta < 0.0:
            wrapped = delta + wrap
            if wrap > 0.0 and wrapped >= 0.0 and wrapped <= max_step_kwh:
                delta = wrapped
                flag = FLAG_ROLLOVER
            else:
                delta = v
                flag = FLAG_RESET
        energy_row[k] = delta
        flags_row[k] = flag
        prev_v = v
        k += 1
        j += 1
    return j, k, prev_v


@kernel(parallel=True)
def _interval_energy_kernel(
    ts, regular, run_end, values, start, interval, wrap, p_max_kw, tol_ns, max_span_ns,
    energy, flags, gap_energy,
):
    m, n = values.shape
    n_out = energy.shape[1]
    max_step_kwh = p_max_kw * (interval / NS_PER_HOUR)
    for r in prange(m):
        cur = 0  # first interval not yet closed; acc_* accumulate into it
        acc_e = 0.0
        acc_cov = 0
        acc_gap = False
        acc_flag = 0
        have_prev = False
        prev_t = 0
        prev_v = 0.0
        prev_k = 0  # interval containing prev_t
        prev_j = -2
        prev_on_grid = False
        j = -1
        while j + 1 < n:
            j += 1
            v = values[r, j]
            if np.isnan(v):
                continue
            if regular[j] and prev_j == j - 1 and prev_k >= 0 and prev_k + (run_end[j] - j) <= n_out:
                # The common case, a run of readings one grid step apart: same result as below.
                cur = _close(energy, flags, r, cur, prev_k, acc_e, acc_cov, acc_gap, acc_flag, interval)
                acc_e, acc_cov, acc_gap, acc_flag = 0.0, 0, False, 0
                j_stop, cur, prev_v = _regular_run(
                    values[r], j, run_end[j], prev_v, prev_k, max_step_kwh, wrap, energy[r], flags[r]
                )
                prev_k = cur
                prev_j = j_stop - 1
                prev_t = ts[prev_j]
                j = prev_j
                continue
            t = ts[j]
            if j + 1 < n and ts[j + 1] == t:
                later = j + 1
                superseded = False
                while later < n and ts[later] == t:
                    if not np.isnan(values[r, later]):
                        superseded = True
                        break
                    later += 1
                if superseded:
                    continue  # a later reading with the same timestamp wins
            rel = t - start
            nearest = (rel + interval // 2) // interval
            on_grid = abs(rel - nearest * interval) <= tol_ns
            if on_grid:
                t = start + nearest * interval
                k_t = nearest
            else:
                k_t = rel // interval
            if have_prev and t <= prev_t:
                continue  # snapped onto the previous reading's grid point: the first one stands
            if have_prev:
                span = t - prev_t
                delta = v - prev_v
                flag = 0
                if delta < 0.0:
                    wrapped = delta + wrap
                    if wrap > 0.0 and wrapped >= 0.0 and wrapped <= p_max_kw * (span / NS_PER_HOUR):
                        delta = wrapped
                        flag = FLAG_ROLLOVER
                    else:
                        delta = v
                        flag = FLAG_RESET
                is_gap = span > max_span_ns
                if is_gap:
                    flag |= FLAG_GAP
                elif not (prev_on_grid and span == interval):
                    flag |= FLAG_APPORTIONED
                k0 = max(prev_k, 0)
                k1 = min(k_t - 1 if on_grid else k_t, n_out - 1)  # last interval the span touches
                for k in range(k0, k1 + 1):
                    if cur < k:
                        cur = _close(energy, flags, r, cur, k, acc_e, acc_cov, acc_gap, acc_flag, interval)
                        acc_e, acc_cov, acc_gap, acc_flag = 0.0, 0, False, 0
                    k_start = start + k * interval
                    overlap = min(t, k_start + interval) - max(prev_t, k_start)
                    acc_cov += overlap
                    acc_flag |= flag
                    if is_gap:
                        acc_gap = True
                        if k == k0:
                            gap_energy[r, k] = delta
                            acc_flag |= FLAG_GAP_START
                    else:
                        acc_e += delta * (overlap / span)
            have_prev = True
            prev_t = t
            prev_v = v
            prev_k = k_t
            prev_j = j
            prev_on_grid = on_grid
        _close(energy, flags, r, cur, n_out, acc_e, acc_cov, acc_gap, acc_flag, interval)


def _nearest_grid(t: int, interval: int) -> int:
    return (t + interval // 2) // interval * interval


def interval_energy(
    ts_ns: np.ndarray,
    counter_kwh: np.ndarray,
    interval_ns: int,
    *,
    wrap_kwh: float = 0.0,
    p_max_kw: float | None = None,
    start_ns: int | None = None,
    n_intervals: int | None = None,
    snap_tolerance: float = 0.1,
    max_span: float = 1.5,
) -> CounterEnergy:
    """Energy per fixed interval from cumulative counter readings (DOMAIN.md §7).

    Parameters
    ----------
    ts_ns : ndarray [ns since epoch, UTC]
        Reading times, shape (n,), any order, duplicates allowed.
    counter_kwh : ndarray [kWh]
        Counter readings, shape (n,) or (n_series, n) sharing ``ts_ns``; NaN = missing.
    interval_ns : int [ns]
        Output interval; grid points are ``start_ns + k × interval_ns``.
    wrap_kwh : float [kWh]
        Counter wrap (see :func:`counter_wrap`); 0 = the counter never wraps, so every decrease is a
        reset.
    p_max_kw : float [kW], optional
        Plausible maximum power of the metered circuit (e.g. breaker rating × voltage); a wrapped delta
        above ``p_max_kw × Δt`` is a reset, not a rollover. Required when ``wrap_kwh > 0`` (without it
        a meter replacement would pass for a rollover); ``math.inf`` may be given explicitly to accept
        every wrapped delta.
    start_ns : int [ns since epoch, UTC], optional
        First grid point; default: the grid point (epoch-aligned, UTC) nearest the first reading.
    n_intervals : int [intervals], optional
        Output length; default: up to the grid point nearest the last reading.
    snap_tolerance : float [-]
        Readings within this fraction of ``interval_ns`` of a grid point are snapped onto it.
    max_span : float [intervals]
        A span between readings longer than this is a gap.

    Returns
    -------
    CounterEnergy
        ``energy_kwh`` [kWh] per interval (NaN where unknown), ``flags`` (``FLAG_*`` bits) and
        ``gap_energy_kwh`` [kWh]; the parameters used are recorded in the result.

    References
    ----------
    DOMAIN.md §7 "Cumulative counters", "Clock jitter"; register widths and scales from the meter
    profiles (DOMAIN.md §6, e.g. Acrel DDSY1352 energy UINT32 × 0.01 kWh).
    """
    interval_ns = int(interval_ns)
    if interval_ns <= 0:
        raise ValueError("interval_ns must be positive")
    if not 0.0 <= snap_tolerance < 0.5:
        raise ValueError("snap_tolerance must be in [0, 0.5)")
    if max_span < 1.0:
        raise ValueError("max_span must be at least 1 interval")
    if wrap_kwh > 0 and p_max_kw is None:
        raise ValueError("a wrapping counter needs p_max_kw to tell a rollover from a reset")
    p_max_kw = math.inf if p_max_kw is None else p_max_kw
    if wrap_kwh < 0 or not p_max_kw > 0:
        raise ValueError("wrap_kwh must be >= 0 and p_max_kw > 0")
    ts = np.ascontiguousarray(ts_ns, dtype=np.int64)
    if ts.ndim != 1:
        raise ValueError("ts_ns must be 1-D")
    values, was_1d = as_rows(counter_kwh, "counter_kwh", ts.size)
    if ts.size > 1 and not bool(np.all(ts[1:] >= ts[:-1])):
        order = np.argsort(ts, kind="stable")
        ts, values = ts[order], np.ascontiguousarray(values[:, order])
    if start_ns is None:
        start_ns = 0 if ts.size == 0 else _nearest_grid(int(ts[0]), interval_ns)
    if n_intervals is None:
        end = start_ns if ts.size == 0 else _nearest_grid(int(ts[-1]), interval_ns)
        n_intervals = max(0, (end - start_ns) // interval_ns)
    # A reading exactly on the grid, one interval after the previous timestamp, both unique.
    on_grid = (ts - start_ns) % interval_ns == 0
    unique = np.ones(ts.size, dtype=bool)
    unique[:-1] = ts[1:] != ts[:-1]
    unique[1:] &= ts[1:] != ts[:-1]
    regular = np.zeros(ts.size, dtype=np.bool_)
    regular[1:] = (ts[1:] - ts[:-1] == interval_ns) & on_grid[1:] & unique[1:] & unique[:-1]
    irregular = np.append(np.flatnonzero(~regular), ts.size)
    run_end = irregular[np.searchsorted(irregular, np.arange(ts.size), side="right")]
    m = values.shape[0]
    energy = np.empty((m, n_intervals))
    flags = np.empty((m, n_intervals), dtype=np.uint8)
    gap = np.zeros((m, n_intervals))
    _interval_energy_kernel(
        ts, regular, run_end, values, np.int64(start_ns), np.int64(interval_ns), float(wrap_kwh),
        float(p_max_kw),
        np.int64(int(snap_tolerance * interval_ns)), np.int64(int(max_span * interval_ns)),
        energy, flags, gap,
    )
    if was_1d:
        energy, flags, gap = energy[0], flags[0], gap[0]
    return CounterEnergy(
        start_ns=int(start_ns), interval_ns=interval_ns, energy_kwh=energy, flags=flags,
        gap_energy_kwh=gap, wrap_kwh=float(wrap_kwh), p_max_kw=float(p_max_kw),
        snap_tolerance=float(snap_tolerance), max_span=float(max_span),
    )
