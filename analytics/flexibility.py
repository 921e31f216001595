"""Battery flexibility: power/energy envelopes per interval and horizon, and planned-schedule SoC bands.

Dimensions of flexibility follow Ulbig & Andersson (power, energy, ramp): A. Ulbig, G. Andersson,
"Analyzing operational flexibility of electric power systems", Int. J. Electr. Power Energy Syst.
72 (2015) 155-164. The one-step battery bounds and the k-step horizon rule are the project's
conventions (DOMAIN.md §4 and §7). Arrays are (buildings, intervals) float64; power in kW, energy in
kWh, Δt in hours. SoC is a fraction inside the kernels and ``soc_pct`` in every argument and result.
Positive battery power is discharge (injection at the AC terminals), negative is charge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics._numba import as_2d, kernel, per_row, prange

__all__ = ["BatteryEnvelope", "BatterySpec", "ScheduleSocBand", "battery_envelope", "schedule_soc_band"]


@dataclass(frozen=True)
class BatterySpec:
    """Battery parameters, scalars or one value per building.

    energy_kwh: usable capacity [kWh]; p_charge_max_kw / p_discharge_max_kw: AC power limits [kW];
    eta_charge / eta_discharge: one-way efficiencies [-]; soc_min_pct / soc_max_pct: bounds [%];
    ramp_kw_per_min: ramp limit [kW/min] (reported as a per-step bound, not applied to the envelope).
    """

    energy_kwh: float | np.ndarray
    p_charge_max_kw: float | np.ndarray
    p_discharge_max_kw: float | np.ndarray
    eta_charge: float | np.ndarray = 1.0
    eta_discharge: float | np.ndarray = 1.0
    soc_min_pct: float | np.ndarray = 0.0
    soc_max_pct: float | np.ndarray = 100.0
    ramp_kw_per_min: float | np.ndarray = np.inf

    def arrays(self, n: int) -> dict[str, np.ndarray]:
        """Per-building float64 arrays, validated; SoC bounds as fractions."""
        out = {
            "energy_kwh": per_row(self.energy_kwh, n, "energy_kwh"),
            "p_ch": per_row(self.p_charge_max_kw, n, "p_charge_max_kw"),
            "p_dis": per_row(self.p_discharge_max_kw, n, "p_discharge_max_kw"),
            "eta_c": per_row(self.eta_charge, n, "eta_charge"),
            "eta_d": per_row(self.eta_discharge, n, "eta_discharge"),
            "soc_min": per_row(self.soc_min_pct, n, "soc_min_pct") / 100.0,
            "soc_max": per_row(self.soc_max_pct, n, "soc_max_pct") / 100.0,
            "ramp": per_row(self.ramp_kw_per_min, n, "ramp_kw_per_min"),
        }
        if np.any(out["energy_kwh"] <= 0) or np.any(out["p_ch"] < 0) or np.any(out["p_dis"] < 0):
            raise ValueError("energy_kwh must be > 0 and power limits >= 0")
        for eta in ("eta_c", "eta_d"):
            if np.any(out[eta] <= 0) or np.any(out[eta] > 1):
                raise ValueError("efficiencies must be in (0, 1]")
        lo, hi = out["soc_min"], out["soc_max"]
        if np.any(lo < 0) or np.any(hi > 1) or np.any(lo > hi):
            raise ValueError("need 0 <= soc_min_pct <= soc_max_pct <= 100")
        if np.any(out["ramp"] <= 0):
            raise ValueError("ramp_kw_per_min must be > 0")
        return out


ENVELOPE_CONVENTION = (
    "DOMAIN.md §7 battery envelope: relative to idle at the AC terminals; both directions clipped at 0 "
    "when SoC is outside its bounds; over a k-step horizon the energy is spread over k*dt and the power "
    "limit still holds; ramp limit reported as a separate per-step bound"
)
SCHEDULE_CONVENTION = (
    "sign: + discharge / - charge at the AC terminals; NaN propagates along the integration; "
    "SoC held at a bound, the excess reported as unserved"
)


def _outputs(out: tuple[np.ndarray, ...] | None, shape: tuple[int, ...], n: int) -> tuple[np.ndarray, ...]:
    if out is None:
        return tuple(np.empty(shape) for _ in range(n))
    if len(out) != n or any(
        o.shape != shape or o.dtype != np.float64 or not o.flags.c_contiguous for o in out
    ):
        raise ValueError(f"out must be {n} C-contiguous float64 arrays of shape {shape}")
    return tuple(out)


@dataclass(frozen=True)
class BatteryEnvelope:
    """p_up_kw / p_down_kw: (horizons, buildings, intervals) sustainable power [kW] over each horizon.

    p_up: can inject / reduce import; p_down: can absorb / increase import. ramp_kw_per_step: (buildings,)
    largest power change between consecutive intervals [kW].
    """

    p_up_kw: np.ndarray
    p_down_kw: np.ndarray
    horizons_h: tuple[float, ...]
    horizon_steps: tuple[int, ...]
    dt_h: float
    ramp_kw_per_step: np.ndarray
    convention: str = ENVELOPE_CONVENTION

    def energy_up_kwh(self, i: int) -> np.ndarray:
        """Energy deliverable over horizon ``i`` [kWh] = sustainable power × horizon length."""
        return self.p_up_kw[i] * self.horizons_h[i]

    def energy_down_kwh(self, i: int) -> np.ndarray:
        """Energy absorbable over horizon ``i`` [kWh] = sustainable power × horizon length."""
        return self.p_down_kw[i] * self.horizons_h[i]


@kernel(parallel=True)
def _envelope_kernel(soc_pct, energy_kwh, p_ch, p_dis, eta_c, eta_d, soc_min, soc_max, dt_h, steps, up, down):
    # One horizon at a time over a contiguous row: sequential writes the compiler can vectorise.
    # Comparisons are written so that a NaN SoC flows through to NaN (NaN < 0 and NaN > x are False).
    nb, nt = soc_pct.shape
    for b in prange(nb):
        srow = soc_pct[b]
        for h in range(steps.shape[0]):
            span = steps[h] * dt_h
            c_up = energy_kwh[b] * eta_d[b] / span
            c_down = energy_kwh[b] / (eta_c[b] * span)
            urow = up[h, b]
            drow = down[h, b]
            for t in range(nt):
                s = srow[t] * 0.01
                avail = s - soc_min[b]
                room = soc_max[b] - s
                if avail < 0.0:
                    avail = 0.0
                if room < 0.0:
                    room = 0.0
                pu = avail * c_up
                pd = room * c_down
                urow[t] = p_dis[b] if pu > p_dis[b] else pu
                drow[t] = p_ch[b] if pd > p_ch[b] else pd


def battery_envelope(
    soc_pct: np.ndarray,
    spec: BatterySpec,
    dt_h: float,
    horizons_h: tuple[float, ...] = (0.25, 1.0, 2.0, 4.0),
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> BatteryEnvelope:
    """Power envelope of batteries per interval and horizon, relative to idle at the AC terminals.

    One step (DOMAIN.md §4, after Ulbig & Andersson 2015):
    P_up = min(P_dis_max, (SoC − SoC_min)·E·η_d / Δt), P_down = min(P_ch_max, (SoC_max − SoC)·E / (η_c·Δt)).
    Over a horizon of k steps Δt becomes k·Δt and the power limit still holds (DOMAIN.md §7); both are
    clipped at 0 when SoC lies outside its bounds. A NaN SoC gives NaN.

    Parameters
    ----------
    soc_pct : ndarray [%]
        State of charge at each interval start, (buildings, intervals) or (intervals,); NaN = missing.
    spec : BatterySpec
        Capacity [kWh], power limits [kW], efficiencies [-], SoC bounds [%], ramp limit [kW/min];
        scalars or one value per building, NaN refused.
    dt_h : float [h]
        Interval length.
    horizons_h : tuple of float [h]
        Horizons, each a whole number of intervals.
    out : tuple of two ndarray [kW], optional
        (p_up, p_down) C-contiguous float64 arrays of shape (horizons, buildings, intervals) to write
        into, so that a caller running many batches reuses memory instead of faulting in fresh pages.

    Returns
    -------
    BatteryEnvelope
        ``p_up_kw`` / ``p_down_kw`` [kW] of shape (horizons, buildings, intervals) (a 1-D ``soc_pct``
        is one building), ``ramp_kw_per_step`` [kW] per building, the horizons and ``convention``.

    Raises
    ------
    ValueError
        A ``soc_pct`` that is not 1-D or 2-D, a parameter of the wrong shape or NaN, ``dt_h`` ≤ 0, a
        horizon that is not a whole number of intervals, or unusable ``out`` arrays.

    References
    ----------
    A. Ulbig, G. Andersson, "Analyzing operational flexibility of electric power systems",
    Int. J. Electr. Power Energy Syst. 72 (2015) 155-164. DOMAIN.md §4 (one-step bounds) and §7
    "Battery envelope".
    """
    soc = as_2d(soc_pct, "soc_pct")
    if not dt_h > 0:
        raise ValueError("dt_h must be > 0")
    steps = []
    for h in horizons_h:
        k = round(h / dt_h)
        if k < 1 or abs(k * dt_h - h) > 1e-9 * max(1.0, h):
            raise ValueError(f"horizon {h} h is not a whole number of {dt_h} h intervals")
        steps.append(k)
    p = spec.arrays(soc.shape[0])
    up, down = _outputs(out, (len(steps), *soc.shape), 2)
    _envelope_kernel(
        soc, p["energy_kwh"], p["p_ch"], p["p_dis"], p["eta_c"], p["eta_d"], p["soc_min"], p["soc_max"],
        float(dt_h), np.asarray(steps, dtype=np.int64), up, down,
    )
    return BatteryEnvelope(up, down, tuple(float(h) for h in horizons_h), tuple(steps), float(dt_h),
                           p["ramp"] * 60.0 * dt_h)


@dataclass(frozen=True)
class ScheduleSocBand:
    """Forward and backward integration of a planned battery schedule.

    soc_pct (buildings, intervals+1): SoC following the plan, held at a bound when the plan would cross
    it; unserved_kwh (buildings, intervals): AC energy of the plan not executed because of that [kWh, ≥ 0];
    feasible_min_pct / feasible_max_pct (buildings, intervals+1): band of SoC from which the rest of the
    plan (power-limited) can run to the end without crossing a bound (empty where min > max).
    """

    soc_pct: np.ndarray
    unserved_kwh: np.ndarray
    feasible_min_pct: np.ndarray
    feasible_max_pct: np.ndarray
    dt_h: float
    convention: str = SCHEDULE_CONVENTION


@kernel(parallel=True)
def _schedule_kernel(schedule_kw, soc0, energy_kwh, p_ch, p_dis, eta_c, eta_d, soc_min, soc_max, end_min,
                     end_max, dt_h, soc, unserved, lo, hi):
    # Branch-free inner loops: one clamp serves both directions (discharge never rises above the start,
    # charge never falls below it), and the NaN stretches are found first and filled afterwards.
    nb, nt = schedule_kw.shape
    for b in prange(nb):
        plan = schedule_kw[b]
        k_dis = dt_h / (eta_d[b] * energy_kwh[b])      # SoC drop per kW of discharge
        k_ch = eta_c[b] * dt_h / energy_kwh[b]         # SoC rise per kW of charge
        e_out = energy_kwh[b] * eta_d[b]
        e_in = energy_kwh[b] / eta_c[b]
        s_lo = soc_min[b]
        s_hi = soc_max[b]
        first_nan = nt
        last_nan = -1
        for t in range(nt):
            if plan[t] != plan[t]:
                first_nan = min(first_nan, t)
                last_nan = t
        srow = soc[b]
        urow = unserved[b]
        lrow = lo[b]
        hrow = hi[b]
        s = soc0[b]
        srow[0] = s
        if s != s:
            first_nan = 0
        a = end_min[b]
        z = end_max[b]
        lrow[nt] = a
        hrow[nt] = z
        # The forward chain (t rising) and the backward chains (t falling) are independent: running
        # them in one loop lets the CPU overlap their latencies.
        for i in range(nt):
            if i < first_nan:
                p = plan[i]
                k = k_dis if p >= 0.0 else k_ch
                coef = e_out if p >= 0.0 else e_in
                pc = min(max(p, -p_ch[b]), p_dis[b])
                new = min(max(s - pc * k, min(s, s_lo)), max(s, s_hi))
                urow[i] = abs(p) * dt_h - abs(new - s) * coef
                s = new
                srow[i + 1] = s
            else:
                urow[i] = np.nan
                srow[i + 1] = np.nan
            t = nt - 1 - i
            if t > last_nan:
                p = min(max(plan[t], -p_ch[b]), p_dis[b])
                d = -p * (k_dis if p >= 0.0 else k_ch)
                a = max(s_lo, a - d)
                z = min(s_hi, z - d)
                lrow[t] = a
                hrow[t] = z
            else:
                lrow[t] = np.nan
                hrow[t] = np.nan


def schedule_soc_band(
    schedule_kw: np.ndarray,
    soc0_pct: float | np.ndarray,
    spec: BatterySpec,
    dt_h: float,
    soc_end_min_pct: float | np.ndarray | None = None,
    soc_end_max_pct: float | np.ndarray | None = None,
) -> ScheduleSocBand:
    """Integrate a planned schedule forward from ``soc0_pct`` and backward from an end band.

    Forward: SoC(t+1) = SoC(t) − P·Δt/(η_d·E) when discharging (P ≥ 0), SoC(t) − P·η_c·Δt/E when
    charging — the same efficiency accounting as the envelope (DOMAIN.md §4) — with P first limited to
    [−P_ch_max, P_dis_max]; what the power limits or SoC bounds cut off is ``unserved_kwh``. Backward (Ulbig &
    Andersson 2015, energy dimension): lo(t) = max(SoC_min, lo(t+1) − ΔSoC(t)),
    hi(t) = min(SoC_max, hi(t+1) − ΔSoC(t)), from [soc_end_min, soc_end_max] (default: the SoC bounds).
    A NaN in the plan makes the SoC NaN from there on (forward) and the band NaN up to it (backward).

    Parameters
    ----------
    schedule_kw : ndarray [kW]
        Planned battery power, + discharge / − charge at the AC terminals, (buildings, intervals) or
        (intervals,); NaN = no plan from there on.
    soc0_pct : float or ndarray [%]
        SoC at the start of the plan, scalar or per building; NaN refused.
    spec : BatterySpec
        Battery parameters (see :class:`BatterySpec`).
    dt_h : float [h]
        Interval length.
    soc_end_min_pct, soc_end_max_pct : float or ndarray [%], optional
        Band the SoC must end in; default: the SoC bounds of ``spec``.

    Returns
    -------
    ScheduleSocBand
        ``soc_pct`` [%] (buildings, intervals+1), ``unserved_kwh`` [kWh] (buildings, intervals),
        ``feasible_min_pct`` / ``feasible_max_pct`` [%] (buildings, intervals+1), ``convention``.

    Raises
    ------
    ValueError
        A ``schedule_kw`` that is not 1-D or 2-D, a parameter of the wrong shape or NaN, ``dt_h`` ≤ 0.

    References
    ----------
    A. Ulbig, G. Andersson, Int. J. Electr. Power Energy Syst. 72 (2015) 155-164 (energy dimension).
    DOMAIN.md §4 (efficiency accounting) and §7 "Battery envelope" (SoC as ``soc_pct`` at the edges).
    """
    plan = as_2d(schedule_kw, "schedule_kw")
    n = plan.shape[0]
    if not dt_h > 0:
        raise ValueError("dt_h must be > 0")
    p = spec.arrays(n)
    soc0 = per_row(soc0_pct, n, "soc0_pct") / 100.0
    end_min = p["soc_min"] if soc_end_min_pct is None else per_row(soc_end_min_pct, n, "soc_end_min_pct") / 100
    end_max = p["soc_max"] if soc_end_max_pct is None else per_row(soc_end_max_pct, n, "soc_end_max_pct") / 100
    nb, nt = plan.shape
    soc, lo, hi = _outputs(None, (nb, nt + 1), 3)
    (unserved,) = _outputs(None, (nb, nt), 1)
    _schedule_kernel(
        plan, soc0, p["energy_kwh"], p["p_ch"], p["p_dis"], p["eta_c"], p["eta_d"],
        p["soc_min"], p["soc_max"], np.ascontiguousarray(end_min), np.ascontiguousarray(end_max), float(dt_h),
        soc, unserved, lo, hi,
    )
    for arr in (soc, lo, hi):
        arr *= 100.0
    return ScheduleSocBand(soc, unserved, lo, hi, float(dt_h))
