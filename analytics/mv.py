"""Measurement and verification of demand-response events: delivered response against a baseline.

Delivered response = baseline − measured, per interval, summed over the event; average power =
energy / event duration (Jiangsu rule, DOMAIN.md §5). Net by default — intervals where the load rose
above the baseline count against the total (DOMAIN.md §7). The alternative "clipped at 0 per
building" is offered in both readings: ``clip="per-building"`` clips each building's event total at 0
before the fleet sum; ``clip="per-interval"`` clips each building's intervals at 0. Missing data in the
event window gives NaN, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics._numba import as_2d, kernel, prange
from analytics.baselines import Baseline, DrEvents

__all__ = ["DeliveredResponse", "delivered_response"]


@dataclass(frozen=True)
class DeliveredResponse:
    """interval_kw: (buildings, events, intervals_per_day), NaN outside the event window [kW];
    energy_kwh / avg_kw: (buildings, events); fleet_energy_kwh / fleet_avg_kw: (events,), NaN if any
    building is NaN; duration_h: (events,)."""

    interval_kw: np.ndarray
    energy_kwh: np.ndarray
    avg_kw: np.ndarray
    fleet_energy_kwh: np.ndarray
    fleet_avg_kw: np.ndarray
    duration_h: np.ndarray
    convention: str


@kernel(parallel=True)
def _response_kernel(baseline, measured, ipd, event_day, event_start, event_stop, dt_h, clip):
    # clip: 0 net, 1 each interval at 0, 2 each building's event total at 0.
    nb, ne, _ = baseline.shape
    interval = np.full((nb, ne, ipd), np.nan)
    energy = np.empty((nb, ne))
    for b in prange(nb):
        for e in range(ne):
            acc = 0.0
            base = event_day[e] * ipd
            for i in range(event_start[e], event_stop[e]):
                d = baseline[b, e, i] - measured[b, base + i]
                if clip == 1 and d < 0.0:
                    d = 0.0
                interval[b, e, i] = d
                acc += d
            if clip == 2 and acc < 0.0:
                acc = 0.0
            energy[b, e] = acc * dt_h
    return interval, energy


def delivered_response(
    baseline_kw: Baseline | np.ndarray,
    measured_kw: np.ndarray,
    events: DrEvents,
    intervals_per_day: int,
    clip: str = "net",
) -> DeliveredResponse:
    """Delivered response per building and for the fleet (sum of buildings).

    E = Σ (baseline − measured)·Δt over the event; P̄ = E / duration (DOMAIN.md §5). Missing data in
    the event window gives NaN, never 0.

    Parameters
    ----------
    baseline_kw : Baseline or ndarray [kW]
        A :class:`~analytics.baselines.Baseline` or its (buildings, events, intervals_per_day) array.
    measured_kw : ndarray [kW]
        Measured load, (buildings, intervals) or (intervals,), from a local midnight like the
        baseline's input; NaN = missing.
    events : DrEvents
        The events the baseline was computed for.
    intervals_per_day : int [intervals]
        Intervals per local day (Δt = 24 h / intervals_per_day).
    clip : str
        ``"net"`` (default), ``"per-building"`` (each building's event total ≥ 0) or
        ``"per-interval"`` (each interval ≥ 0).

    Returns
    -------
    DeliveredResponse
        ``interval_kw`` [kW] (buildings, events, intervals_per_day), NaN outside the event window;
        ``energy_kwh`` [kWh] and ``avg_kw`` [kW] per (building, event); ``fleet_energy_kwh`` [kWh] and
        ``fleet_avg_kw`` [kW] per event; ``duration_h`` [h]; ``convention``.

    Raises
    ------
    ValueError
        A ``measured_kw`` that is not 1-D or 2-D or not whole days, a baseline of the wrong shape,
        bad events, an unknown ``clip``.

    References
    ----------
    Jiangsu delivered-response rule (DOMAIN.md §5 "Delivered response"); DOMAIN.md §7 "Delivered
    response" (net by default, clipping as the alternative).
    """
    modes = ("net", "per-interval", "per-building")
    if clip not in modes:
        raise ValueError(f"clip must be one of {modes}")
    base = baseline_kw.baseline_kw if isinstance(baseline_kw, Baseline) else baseline_kw
    try:
        base = np.ascontiguousarray(base, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError("baseline_kw: expected a Baseline or an array of numbers") from exc
    measured = as_2d(measured_kw, "measured_kw")
    if intervals_per_day < 1 or measured.shape[1] % intervals_per_day:
        raise ValueError("measured_kw must cover whole days of intervals_per_day intervals")
    day, start, stop = events.validated(measured.shape[1] // intervals_per_day, intervals_per_day)
    if base.ndim != 3 or base.shape != (measured.shape[0], day.size, intervals_per_day):
        raise ValueError(f"baseline_kw: expected shape {(measured.shape[0], day.size, intervals_per_day)} "
                         f"(buildings, events, intervals_per_day), got {base.shape}")
    dt_h = 24.0 / intervals_per_day
    interval, energy = _response_kernel(base, measured, intervals_per_day, day, start, stop, dt_h,
                                        modes.index(clip))
    duration = (stop - start) * dt_h
    fleet = energy.sum(axis=0)
    conv = f"delivered = baseline - measured (DOMAIN.md §5/§7); clip={clip}; average = energy / event duration"
    return DeliveredResponse(interval, energy, energy / duration, fleet, fleet / duration, duration, conv)
