"""Charging flexibility of electric vehicles from arrival, departure and energy need.

One-way flexibility is the charging energy that can be shifted before departure; two-way (V2G) adds
discharge (DOMAIN.md §4; IEA EBC Annex 67: a reference load — here charging as soon as possible — a
flexible load and a signal). Each session's cumulative charged energy E(t) at interval boundaries lies
between the as-late-as-possible and as-soon-as-possible trajectories:
  E_max(t) = min(E_need, P_max·(t − t_arr)·Δt)
  E_min(t) = max(0, E_need − P_max·(t_dep − t)·Δt)                       (one-way)
  E_min(t) = max(−E_dis, −P_dis·(t − t_arr)·Δt, E_need − P_max·(t_dep − t)·Δt)   (two-way)
with E_need capped at P_max·(t_dep − t_arr)·Δt (the shortfall is reported). Energies are at the
charger's AC terminals [kWh], power [kW], Δt [h]; sessions occupy intervals [arrival, departure).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics._numba import as_index, kernel, per_row

__all__ = ["EvFlexibility", "EvSessions", "ev_flexibility"]


@dataclass(frozen=True)
class EvSessions:
    """One value per session: arrival/departure interval index (departure exclusive), energy_kwh needed
    by departure, p_max_kw charging limit, p_dis_max_kw and e_dis_max_kwh discharge limits (two-way)."""

    arrival: np.ndarray
    departure: np.ndarray
    energy_kwh: np.ndarray
    p_max_kw: np.ndarray
    p_dis_max_kw: np.ndarray | float = 0.0
    e_dis_max_kwh: np.ndarray | float = 0.0


@dataclass(frozen=True)
class EvFlexibility:
    """Fleet sums per interval (intervals,) or boundary (intervals+1,) and per-session figures.

    p_asap_kw / p_alap_kw: charging as soon / as late as possible; p_max_kw / p_min_kw: power band of
    the connected vehicles (p_min negative when discharging is allowed); e_max_kwh / e_min_kwh:
    cumulative energy band; shiftable_kwh: energy whose timing can move (min(E, P_max·slack));
    v2g_kwh: energy that can be discharged and still recharged in time; unmet_kwh: need beyond reach.
    """

    p_asap_kw: np.ndarray
    p_alap_kw: np.ndarray
    p_max_kw: np.ndarray
    p_min_kw: np.ndarray
    e_max_kwh: np.ndarray
    e_min_kwh: np.ndarray
    shiftable_kwh: np.ndarray
    v2g_kwh: np.ndarray
    unmet_kwh: np.ndarray
    convention: str


@kernel()
def _ev_kernel(arrival, departure, need, p_max, p_dis, e_dis, n_intervals, dt_h, two_way):
    ns = arrival.shape[0]
    e_max = np.zeros(n_intervals + 1)
    e_min = np.zeros(n_intervals + 1)
    p_hi = np.zeros(n_intervals)
    p_lo = np.zeros(n_intervals)
    shift = np.empty(ns)
    v2g = np.zeros(ns)
    unmet = np.empty(ns)
    for s in range(ns):
        a = arrival[s]
        d = departure[s]
        reach = p_max[s] * (d - a) * dt_h
        en = min(need[s], reach)
        unmet[s] = need[s] - en
        shift[s] = min(en, reach - en)
        for t in range(n_intervals + 1):
            if t <= a:
                hi = 0.0
                lo = 0.0
            elif t >= d:
                hi = en
                lo = en
            else:
                hi = min(en, p_max[s] * (t - a) * dt_h)
                lo = en - p_max[s] * (d - t) * dt_h
                floor = max(-e_dis[s], -p_dis[s] * (t - a) * dt_h) if two_way else 0.0
                lo = max(lo, floor)
            e_max[t] += hi
            e_min[t] += lo
            v2g[s] = max(v2g[s], -lo)
        for t in range(max(a, 0), min(d, n_intervals)):
            p_hi[t] += p_max[s]
            if two_way:
                p_lo[t] -= p_dis[s]
    p_asap = (e_max[1:] - e_max[:-1]) / dt_h
    p_alap = (e_min[1:] - e_min[:-1]) / dt_h
    return p_asap, p_alap, p_hi, p_lo, e_max, e_min, shift, v2g, unmet


def ev_flexibility(
    sessions: EvSessions, n_intervals: int, dt_h: float, two_way: bool = False
) -> EvFlexibility:
    """Energy and power band of a set of charging sessions over ``n_intervals`` intervals of ``dt_h`` h.

    The fleet band is the sum of the session bands (sessions are independent); formulas in the module
    docstring.

    Parameters
    ----------
    sessions : EvSessions
        ``arrival`` / ``departure`` [interval index] (departure exclusive), ``energy_kwh`` [kWh] needed
        by departure, ``p_max_kw`` [kW] charging limit, ``p_dis_max_kw`` [kW] and ``e_dis_max_kwh``
        [kWh] discharge limits (two-way); one value per session (the limits may be scalars), NaN refused.
    n_intervals : int [intervals]
        Length of the horizon.
    dt_h : float [h]
        Interval length.
    two_way : bool
        False (default): charging only; True: discharge allowed within the discharge limits (V2G).

    Returns
    -------
    EvFlexibility
        Fleet power [kW] per interval (``p_asap_kw``, ``p_alap_kw``, ``p_max_kw``, ``p_min_kw``), fleet
        energy band [kWh] per boundary (``e_max_kwh``, ``e_min_kwh``), per-session ``shiftable_kwh``,
        ``v2g_kwh``, ``unmet_kwh`` [kWh], ``convention``.

    Raises
    ------
    ValueError
        Session arrays of unequal length, NaN, negative or not whole indices, sessions outside
        [0, n_intervals), ``dt_h`` ≤ 0.

    References
    ----------
    IEA EBC Annex 67, "Energy Flexible Buildings" (reference load = charging as soon as possible);
    DOMAIN.md §4 (EV one-way and two-way flexibility).
    """
    if not dt_h > 0 or not n_intervals >= 0 or n_intervals != int(n_intervals):
        raise ValueError("dt_h must be > 0 and n_intervals a whole number >= 0")
    arrival = as_index(sessions.arrival, "arrival")
    departure = as_index(sessions.departure, "departure")
    n = arrival.shape[0]
    if departure.shape != arrival.shape:
        raise ValueError(f"departure: expected one value per session ({n},), got shape {departure.shape}")
    cols = {}
    for name in ("energy_kwh", "p_max_kw", "p_dis_max_kw", "e_dis_max_kwh"):
        arr = per_row(getattr(sessions, name), n, name)
        if np.any(arr < 0):
            raise ValueError(f"{name}: must be >= 0")
        cols[name] = arr
    if np.any(departure <= arrival) or np.any(arrival < 0) or np.any(departure > n_intervals):
        raise ValueError("need 0 <= arrival < departure <= n_intervals for every session")
    out = _ev_kernel(arrival, departure, cols["energy_kwh"], cols["p_max_kw"], cols["p_dis_max_kw"],
                     cols["e_dis_max_kwh"], int(n_intervals), float(dt_h), bool(two_way))
    direction = "two-way" if two_way else "one-way"
    return EvFlexibility(*out, f"{direction}; reference = charging as soon as possible; AC terminals (DOMAIN.md §4)")
