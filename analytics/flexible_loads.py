"""Flexible loads: curtailable/shiftable load envelopes with rebound, and DC-bus droop response.

Load envelope over a horizon of k intervals starting at t (IEA EBC Annex 67: flexibility needs a
reference load — here the measured or forecast ``p_kw`` — a flexible load and a signal):
  P_up(t)   = s·min(p[t … t+k−1])                                  if k ≤ D, else 0   (curtail)
  rebound   = r·s·Σ p[t … t+k−1]·Δt                                  (energy paid back afterwards)
  P_down(t) = max(0, min(min(P_rated − p[t … t+k−1]), s·Σ p[t+k … t+k+S−1] / k))   (pull load forward)
with s the flexible share, D the longest allowed curtailment, r the rebound fraction and S the
longest shift in intervals; a window with a NaN or past the end gives NaN.

DC-bus droop (PEDF "bus voltage as the signal", DOMAIN.md §1): P = P0 − (V − V_ref)/R, the V-P droop
V = V_ref − R·(P − P0) solved for power, clipped to [P_min, P_max]; T. Dragičević, X. Lu,
J. C. Vasquez, J. M. Guerrero, "DC Microgrids—Part I: A Review of Control Strategies and
Stabilization Techniques", IEEE Trans. Power Electron. 31(7) (2016) 4876-4891. P is power delivered
to the bus (a load has P0 < 0 and draws less when the bus sags); R [V/kW]; dP/dV = −1/R [kW/V].
PEDF voltage bands are unverified: nominal voltage, band and R are site parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics._numba import as_2d, kernel, per_row, prange

__all__ = ["DroopResponse", "LoadEnvelope", "droop_response", "flexible_load_envelope"]

LOAD_CONVENTION = (
    "IEA EBC Annex 67: reference = the given load; curtailment up to the longest allowed duration with "
    "rebound paid back afterwards; pull-forward sourced from the S intervals after the window"
)
DROOP_CONVENTION = (
    "V-P droop P = P0 - (V - V_ref)/R (Dragičević et al. 2016); + = delivered to the bus; the deadband "
    "is subtracted from the deviation; clipped to [P_min, P_max]"
)


@dataclass(frozen=True)
class LoadEnvelope:
    """p_up_kw / p_down_kw / rebound_kwh: (loads, intervals) for a k-step horizon from each interval."""

    p_up_kw: np.ndarray
    p_down_kw: np.ndarray
    rebound_kwh: np.ndarray
    horizon_steps: int
    convention: str = LOAD_CONVENTION


@kernel(parallel=True)
def _load_kernel(p, share, max_dur, rebound, p_rated, max_shift, k, dt_h):
    nb, nt = p.shape
    up = np.full((nb, nt), np.nan)
    down = np.full((nb, nt), np.nan)
    reb = np.full((nb, nt), np.nan)
    for b in prange(nb):
        for t in range(nt - k + 1):
            lo = np.inf
            head = np.inf
            tot = 0.0
            for j in range(t, t + k):
                lo = min(lo, p[b, j])
                head = min(head, p_rated[b] - p[b, j])
                tot += p[b, j]
            if tot != tot:
                continue
            if k <= max_dur[b]:
                up[b, t] = share[b] * lo
                reb[b, t] = rebound[b] * share[b] * tot * dt_h
            else:
                up[b, t] = 0.0
                reb[b, t] = 0.0
            if t + k + max_shift[b] > nt:
                continue
            later = 0.0
            for j in range(t + k, t + k + max_shift[b]):
                later += p[b, j]
            if later == later:
                down[b, t] = max(0.0, min(head, share[b] * later / k))
    return up, down, reb


def flexible_load_envelope(
    p_kw: np.ndarray,
    horizon_steps: int,
    dt_h: float,
    share: float | np.ndarray,
    max_duration_steps: int | np.ndarray,
    rebound_fraction: float | np.ndarray,
    p_rated_kw: float | np.ndarray,
    max_shift_steps: int | np.ndarray = 0,
) -> LoadEnvelope:
    """Curtail (up) and pull-forward (down) power of flexible loads over ``horizon_steps`` intervals.

    Formulas in the module docstring; a window with a NaN or past the end of the series gives NaN.

    Parameters
    ----------
    p_kw : ndarray [kW]
        Reference load (measured or forecast), (loads, intervals) or (intervals,); NaN = missing.
    horizon_steps : int [intervals]
        Horizon k, ≥ 1.
    dt_h : float [h]
        Interval length.
    share : float or ndarray [-]
        Flexible share s of the load, in [0, 1]; scalar or per load.
    max_duration_steps : int or ndarray [intervals]
        Longest allowed curtailment D; a horizon longer than D gives P_up = 0.
    rebound_fraction : float or ndarray [-]
        Share r ≥ 0 of the curtailed energy consumed later.
    p_rated_kw : float or ndarray [kW]
        Rated power of the load (bounds the pull-forward).
    max_shift_steps : int or ndarray [intervals]
        Longest shift S (0: not shiftable, P_down = 0).

    Returns
    -------
    LoadEnvelope
        ``p_up_kw`` [kW], ``p_down_kw`` [kW], ``rebound_kwh`` [kWh], each (loads, intervals), the
        horizon and ``convention``.

    Raises
    ------
    ValueError
        A ``p_kw`` that is not 1-D or 2-D, a parameter of the wrong shape, NaN or out of range, step
        counts that are not whole numbers.

    References
    ----------
    IEA EBC Annex 67, "Energy Flexible Buildings" (reference load, flexible load, signal); DOMAIN.md §4.
    """
    p = as_2d(p_kw, "p_kw")
    n = p.shape[0]
    if not (horizon_steps >= 1 and horizon_steps == int(horizon_steps)) or not dt_h > 0:
        raise ValueError("horizon_steps must be a whole number >= 1 and dt_h > 0")
    s = per_row(share, n, "share")
    r = per_row(rebound_fraction, n, "rebound_fraction")
    rated = per_row(p_rated_kw, n, "p_rated_kw")
    dur = per_row(max_duration_steps, n, "max_duration_steps", integer=True)
    shift = per_row(max_shift_steps, n, "max_shift_steps", integer=True)
    if np.any((s < 0) | (s > 1)) or np.any(r < 0) or np.any(dur < 0) or np.any(shift < 0):
        raise ValueError("need 0 <= share <= 1, rebound_fraction >= 0, step counts >= 0")
    up, down, reb = _load_kernel(p, s, dur, r, rated, shift, int(horizon_steps), float(dt_h))
    return LoadEnvelope(up, down, reb, int(horizon_steps))


@dataclass(frozen=True)
class DroopResponse:
    """p_kw: power delivered to the bus after droop [kW]; delta_kw: change from P0 [kW];
    kw_per_v: (rows,) droop gain −1/R [kW/V]."""

    p_kw: np.ndarray
    delta_kw: np.ndarray
    kw_per_v: np.ndarray
    convention: str = DROOP_CONVENTION


@kernel(parallel=True)
def _droop_kernel(v, p0, v_ref, r, p_min, p_max, deadband):
    nb, nt = v.shape
    out = np.empty((nb, nt))
    delta = np.empty((nb, nt))
    for b in prange(nb):
        for t in range(nt):
            dv = v[b, t] - v_ref[b]
            if dv > deadband[b]:
                dv -= deadband[b]
            elif dv < -deadband[b]:
                dv += deadband[b]
            elif dv == dv:
                dv = 0.0
            pw = min(max(p0[b] - dv / r[b], p_min[b]), p_max[b])
            out[b, t] = pw if dv == dv else np.nan
            delta[b, t] = out[b, t] - p0[b]
    return out, delta


def droop_response(
    v_bus_v: np.ndarray,
    p0_kw: float | np.ndarray,
    v_ref_v: float | np.ndarray,
    r_v_per_kw: float | np.ndarray,
    p_min_kw: float | np.ndarray = -np.inf,
    p_max_kw: float | np.ndarray = np.inf,
    deadband_v: float | np.ndarray = 0.0,
) -> DroopResponse:
    """Power of droop-controlled PEDF loads and converters for measured bus voltages.

    P = P0 − (V − V_ref)/R outside a ±deadband (the deviation beyond it), clipped to [P_min, P_max].

    Parameters
    ----------
    v_bus_v : ndarray [V]
        Measured DC bus voltage, (rows, intervals) or (intervals,); NaN gives NaN.
    p0_kw : float or ndarray [kW]
        Power delivered to the bus at V_ref (a load has P0 < 0); scalar or per row.
    v_ref_v : float or ndarray [V]
        Reference voltage of the droop line.
    r_v_per_kw : float or ndarray [V/kW]
        Droop resistance R > 0.
    p_min_kw, p_max_kw : float or ndarray [kW]
        Power limits, P_min ≤ P_max.
    deadband_v : float or ndarray [V]
        Half-width of the band around V_ref in which the power stays at P0, ≥ 0.

    Returns
    -------
    DroopResponse
        ``p_kw`` [kW] and ``delta_kw`` [kW] (change from P0), (rows, intervals); ``kw_per_v`` [kW/V]
        = −1/R per row; ``convention``.

    Raises
    ------
    ValueError
        A ``v_bus_v`` that is not 1-D or 2-D, a parameter of the wrong shape, NaN or out of range.

    References
    ----------
    T. Dragičević, X. Lu, J. C. Vasquez, J. M. Guerrero, "DC Microgrids—Part I: A Review of Control
    Strategies and Stabilization Techniques", IEEE Trans. Power Electron. 31(7) (2016) 4876-4891.
    DOMAIN.md §1 ("bus voltage as the signal"; PEDF voltage bands unverified: site parameters).
    """
    v = as_2d(v_bus_v, "v_bus_v")
    n = v.shape[0]
    p0 = per_row(p0_kw, n, "p0_kw")
    r = per_row(r_v_per_kw, n, "r_v_per_kw")
    lo = per_row(p_min_kw, n, "p_min_kw")
    hi = per_row(p_max_kw, n, "p_max_kw")
    db = per_row(deadband_v, n, "deadband_v")
    if np.any(r <= 0) or np.any(lo > hi) or np.any(db < 0):
        raise ValueError("need r_v_per_kw > 0, p_min_kw <= p_max_kw, deadband_v >= 0")
    p, delta = _droop_kernel(v, p0, per_row(v_ref_v, n, "v_ref_v"), r, lo, hi, db)
    return DroopResponse(p, delta, -1.0 / r)
