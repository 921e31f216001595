"""Resampling of interval energy and mean power onto fixed intervals, with coverage.

Conventions (DOMAIN.md §7, "Intervals" and "Resampling"):

- An input value is labelled by its interval's start (UTC ns) and holds that interval's energy
  [kWh] or mean power [kW]; energy = mean power × duration. NaN means missing.
- An input interval that straddles an output boundary is split pro rata by time, so energy is
  conserved: the sum of ``energy_kwh`` over the output equals the sum over the input inside it.
- ``energy_kwh`` is the energy of the sub-intervals present (NaN when none is present);
  ``coverage`` = present duration / bin duration; ``filled_kwh`` = mean power of the bin × bin
  length = ``energy_kwh / coverage``, given only when ``coverage >= min_coverage``, else NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics._numba import NS_PER_HOUR, as_rows, kernel, prange

__all__ = ["STANDARD_INTERVALS_NS", "Resampled", "resample_energy", "resample_power"]

STANDARD_INTERVALS_NS = tuple(minutes * 60_000_000_000 for minutes in (1, 5, 15, 60))

CONVENTION = (
    "DOMAIN.md §7 resampling: straddling inputs split pro rata by time (energy conserved); "
    "coverage = present/expected; filled = energy/coverage only when coverage >= min_coverage"
)


@dataclass(frozen=True)
class Resampled:
    """Resampled series on a fixed grid; arrays are (n_bins,) or (n_series, n_bins).

    ``mean_kw`` is the mean power over the time present; ``filled_kw`` the filled estimate as power.
    """

    start_ns: int
    interval_ns: int
    energy_kwh: np.ndarray
    coverage: np.ndarray
    filled_kwh: np.ndarray
    min_coverage: float
    input_kind: str
    convention: str = CONVENTION

    @property
    def mean_kw(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.energy_kwh / (self.coverage * (self.interval_ns / NS_PER_HOUR))

    @property
    def filled_kw(self) -> np.ndarray:
        return self.filled_kwh / (self.interval_ns / NS_PER_HOUR)


@kernel(parallel=True)
def _resample_kernel(
    ts, values, src_interval, start, interval, is_power, min_coverage, energy, coverage, filled
):
    m, n = values.shape
    n_out = energy.shape[1]
    for r in prange(m):
        covered = np.zeros(n_out, dtype=np.int64)
        for k in range(n_out):
            energy[r, k] = 0.0
        for j in range(n):
            v = values[r, j]
            if np.isnan(v):
                continue
            a = ts[j]
            b = a + src_interval
            k0 = (a - start) // interval
            k1 = (b - start - 1) // interval
            for k in range(max(k0, 0), min(k1, n_out - 1) + 1):
                k_start = start + k * interval
                overlap = min(b, k_start + interval) - max(a, k_start)
                if is_power:
                    energy[r, k] += v * (overlap / NS_PER_HOUR)
                else:
                    energy[r, k] += v * (overlap / src_interval)
                covered[k] += overlap
        for k in range(n_out):
            c = covered[k] / interval
            coverage[r, k] = c
            if covered[k] == 0:
                energy[r, k] = np.nan
                filled[r, k] = np.nan
            elif c >= min_coverage:
                filled[r, k] = energy[r, k] / c
            else:
                filled[r, k] = np.nan


def _resample(ts_ns, values, src_interval_ns, interval_ns, start_ns, n_intervals, min_coverage, kind):
    src_interval_ns, interval_ns = int(src_interval_ns), int(interval_ns)
    if src_interval_ns <= 0 or interval_ns <= 0:
        raise ValueError("intervals must be positive")
    if not 0.0 < min_coverage <= 1.0:
        raise ValueError("min_coverage must be in (0, 1]")
    ts = np.ascontiguousarray(ts_ns, dtype=np.int64)
    if ts.ndim != 1:
        raise ValueError("ts_ns must be 1-D")
    rows, was_1d = as_rows(values, kind, ts.size)
    if ts.size > 1 and not bool(np.all(np.diff(ts) >= src_interval_ns)):
        raise ValueError("input intervals must be sorted and must not overlap")
    if start_ns is None:
        start_ns = 0 if ts.size == 0 else int(ts[0]) // interval_ns * interval_ns
    if n_intervals is None:
        end = start_ns if ts.size == 0 else int(ts[-1]) + src_interval_ns
        n_intervals = max(0, -(-(end - start_ns) // interval_ns))
    m = rows.shape[0]
    energy = np.empty((m, n_intervals))
    coverage = np.empty((m, n_intervals))
    filled = np.empty((m, n_intervals))
    _resample_kernel(
        ts, rows, np.int64(src_interval_ns), np.int64(start_ns), np.int64(interval_ns),
        kind == "power", float(min_coverage), energy, coverage, filled,
    )
    if was_1d:
        energy, coverage, filled = energy[0], coverage[0], filled[0]
    return Resampled(int(start_ns), interval_ns, energy, coverage, filled, float(min_coverage), kind)


def resample_energy(
    ts_ns: np.ndarray,
    energy_kwh: np.ndarray,
    src_interval_ns: int,
    interval_ns: int,
    *,
    start_ns: int | None = None,
    n_intervals: int | None = None,
    min_coverage: float = 0.8,
) -> Resampled:
    """Resample interval energy [kWh] onto ``interval_ns`` bins (DOMAIN.md §7, "Resampling").

    Parameters
    ----------
    ts_ns : ndarray [ns since epoch, UTC]
        Input interval starts, increasing, spaced at least ``src_interval_ns`` apart.
    energy_kwh : ndarray [kWh]
        Energy per input interval, (n,) or (n_series, n); NaN = missing.
    src_interval_ns : int [ns]
        Duration of each input interval.
    interval_ns : int [ns]
        Output bin length, typically one of ``STANDARD_INTERVALS_NS`` (1/5/15/60 min).
    start_ns : int [ns since epoch, UTC], optional
        First bin start; default: the bin containing the first input.
    n_intervals : int [bins], optional
        Number of bins; default: whole bins covering the input.
    min_coverage : float [-]
        Minimum coverage for a filled estimate, in (0, 1].

    Returns
    -------
    Resampled
        ``energy_kwh`` [kWh], ``coverage`` [-] and ``filled_kwh`` [kWh] per bin, (n_bins,) or
        (n_series, n_bins), with the grid and ``min_coverage``.

    References
    ----------
    DOMAIN.md §7 "Resampling" and "Intervals".
    """
    return _resample(ts_ns, energy_kwh, src_interval_ns, interval_ns, start_ns, n_intervals,
                     min_coverage, "energy")


def resample_power(
    ts_ns: np.ndarray,
    power_kw: np.ndarray,
    src_interval_ns: int,
    interval_ns: int,
    *,
    start_ns: int | None = None,
    n_intervals: int | None = None,
    min_coverage: float = 0.8,
) -> Resampled:
    """Resample interval-mean power [kW] onto ``interval_ns`` bins (DOMAIN.md §7, "Resampling").

    Energy of each input interval = mean power × duration (DOMAIN.md §7, "Intervals"); the result
    carries energy, coverage and filled energy, with ``mean_kw``/``filled_kw`` as power.

    Parameters
    ----------
    ts_ns : ndarray [ns since epoch, UTC]
        Input interval starts, increasing, spaced at least ``src_interval_ns`` apart.
    power_kw : ndarray [kW]
        Mean power per input interval, (n,) or (n_series, n); NaN = missing.
    src_interval_ns : int [ns]
        Duration of each input interval.
    interval_ns : int [ns]
        Output bin length, typically one of ``STANDARD_INTERVALS_NS`` (1/5/15/60 min).
    start_ns : int [ns since epoch, UTC], optional
        First bin start; default: the bin containing the first input.
    n_intervals : int [bins], optional
        Number of bins; default: whole bins covering the input.
    min_coverage : float [-]
        Minimum coverage for a filled estimate, in (0, 1].

    Returns
    -------
    Resampled
        ``energy_kwh`` [kWh], ``coverage`` [-] and ``filled_kwh`` [kWh] per bin, (n_bins,) or
        (n_series, n_bins), with the grid and ``min_coverage``.

    References
    ----------
    DOMAIN.md §7 "Resampling" and "Intervals".
    """
    return _resample(ts_ns, power_kw, src_interval_ns, interval_ns, start_ns, n_intervals,
                     min_coverage, "power")
