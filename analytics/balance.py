"""Energy balance of a PEDF building (photovoltaics, storage, DC distribution, flexible load).

Channels are interval energies [kWh] on one grid (DOMAIN.md §7, "Intervals"), one row per
building. Formulas (DOMAIN.md §7, "Energy balance"):

- losses = (PV + import + discharge) − (load + export + charge), load = DC load + AC load
  (conversion and storage losses close the balance; a negative value points at a metering error);
- self-consumption = (PV − export) / PV;
- self-sufficiency = 1 − import / load [alt ``"pv_share"``: (PV − export) / load];
- peak demand = the largest interval-mean grid import power, import / Δt [kW] (intervals labelled
  by start, power = interval mean, DOMAIN.md §7);
- load factor = mean load power / peak load power (IEEE Std 100 "load factor": the ratio of the
  average load over a period to the peak load in that period);
- EUI = load energy / floor area [kWh/m²] (energy use intensity, GB/T 51161-2016 style: annual
  consumption per m² of floor area).

Only *complete* intervals, where every channel is present, enter any sum, so the balance closes
over the same time for every channel; ``n_complete`` records how many there were.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics._numba import NS_PER_HOUR, as_rows, kernel, prange

__all__ = ["SELF_SUFFICIENCY_CONVENTIONS", "EnergyBalance", "energy_balance"]

SELF_SUFFICIENCY_CONVENTIONS = ("import", "pv_share")
CHANNELS = ("pv", "charge", "discharge", "grid_import", "grid_export", "load_dc", "load_ac")


@dataclass(frozen=True)
class EnergyBalance:
    """Per-building balance totals [kWh], ratios [-], peaks [kW]; arrays of shape (n_buildings,)."""

    pv_kwh: np.ndarray
    charge_kwh: np.ndarray
    discharge_kwh: np.ndarray
    grid_import_kwh: np.ndarray
    grid_export_kwh: np.ndarray
    load_kwh: np.ndarray
    losses_kwh: np.ndarray
    self_consumption: np.ndarray
    self_sufficiency: np.ndarray
    peak_import_kw: np.ndarray
    peak_load_kw: np.ndarray
    load_factor: np.ndarray
    eui_kwh_per_m2: np.ndarray
    n_complete: np.ndarray
    n_intervals: int
    self_sufficiency_convention: str
    convention: str = "DOMAIN.md §7 energy balance; complete intervals only"


@kernel(reassociate=True)
def _balance_row(pv, charge, discharge, imp, exp, load_dc, load_ac, totals, peaks):
    # Branch-free over complete intervals so the loop vectorises; returns the number of them.
    s_pv = 0.0
    s_ch = 0.0
    s_dis = 0.0
    s_imp = 0.0
    s_exp = 0.0
    s_load = 0.0
    peak_imp = -np.inf
    peak_load = -np.inf
    count = 0
    for j in range(pv.size):
        a = pv[j]
        b = charge[j]
        c = discharge[j]
        d = imp[j]
        e = exp[j]
        f = load_dc[j] + load_ac[j]
        check = a + b + c + d + e + f
        ok = check == check
        s_pv += a if ok else 0.0
        s_ch += b if ok else 0.0
        s_dis += c if ok else 0.0
        s_imp += d if ok else 0.0
        s_exp += e if ok else 0.0
        s_load += f if ok else 0.0
        peak_imp = max(peak_imp, d if ok else -np.inf)
        peak_load = max(peak_load, f if ok else -np.inf)
        count += ok
    totals[0] = s_pv
    totals[1] = s_ch
    totals[2] = s_dis
    totals[3] = s_imp
    totals[4] = s_exp
    totals[5] = s_load
    peaks[0] = peak_imp if count > 0 else np.nan
    peaks[1] = peak_load if count > 0 else np.nan
    return count


@kernel(parallel=True)
def _balance_kernel(pv, charge, discharge, imp, exp, load_dc, load_ac, totals, peaks, n_complete):
    for r in prange(pv.shape[0]):
        n_complete[r] = _balance_row(pv[r], charge[r], discharge[r], imp[r], exp[r], load_dc[r], load_ac[r],
                                     totals[r], peaks[r])


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, np.nan)
    with np.errstate(over="ignore"):
        np.divide(num, den, out=out, where=den > 0)
    return out


def energy_balance(
    pv_kwh: np.ndarray,
    charge_kwh: np.ndarray,
    discharge_kwh: np.ndarray,
    grid_import_kwh: np.ndarray,
    grid_export_kwh: np.ndarray,
    load_dc_kwh: np.ndarray,
    load_ac_kwh: np.ndarray,
    interval_ns: int,
    *,
    floor_area_m2: float | np.ndarray | None = None,
    self_sufficiency: str = "import",
) -> EnergyBalance:
    """Energy balance per building over a period (formulas and sources in the module docstring).

    Parameters
    ----------
    pv_kwh, charge_kwh, discharge_kwh, grid_import_kwh, grid_export_kwh, load_dc_kwh, load_ac_kwh : ndarray [kWh]
        Interval energy, all (n,) or all (n_buildings, n), non-negative; NaN = missing. Only intervals
        where every channel is present enter the sums.
    interval_ns : int [ns]
        Interval length; converts interval energy to mean power.
    floor_area_m2 : float or ndarray [m²], optional
        Floor area per building for EUI; ``None`` leaves EUI NaN.
    self_sufficiency : str
        ``"import"`` (default, 1 − import/load) or ``"pv_share"`` ((PV − export)/load).

    Returns
    -------
    EnergyBalance
        Per building (numpy scalars for a 1-D input): totals [kWh], ``losses_kwh`` [kWh], ratios [-],
        ``peak_import_kw`` / ``peak_load_kw`` [kW], ``eui_kwh_per_m2`` [kWh/m²], ``n_complete``
        [intervals]; the conventions used.

    References
    ----------
    DOMAIN.md §7 "Energy balance"; IEEE Std 100 (load factor); GB/T 51161-2016 (energy use per
    unit floor area).
    """
    if self_sufficiency not in SELF_SUFFICIENCY_CONVENTIONS:
        raise ValueError(f"self_sufficiency must be one of {SELF_SUFFICIENCY_CONVENTIONS}")
    if int(interval_ns) <= 0:
        raise ValueError("interval_ns must be positive")
    pv, was_1d = as_rows(pv_kwh, "pv_kwh")
    shape = pv.shape
    channels = [pv] + [
        as_rows(a, name, shape[1])[0]
        for a, name in zip(
            (charge_kwh, discharge_kwh, grid_import_kwh, grid_export_kwh, load_dc_kwh, load_ac_kwh),
            CHANNELS[1:],
            strict=True,
        )
    ]
    for arr, name in zip(channels, CHANNELS, strict=True):
        if arr.shape != shape:
            raise ValueError(f"{name}: shape {arr.shape} differs from pv {shape}")
    m = shape[0]
    totals = np.empty((m, 6))
    peaks = np.empty((m, 2))
    n_complete = np.empty(m, dtype=np.int64)
    _balance_kernel(*channels, totals, peaks, n_complete)
    pv_t, ch_t, dis_t, imp_t, exp_t, load_t = totals.T
    dt_h = int(interval_ns) / NS_PER_HOUR
    peak_import_kw, peak_load_kw = peaks[:, 0] / dt_h, peaks[:, 1] / dt_h
    mean_load_kw = _ratio(load_t, n_complete * dt_h)
    import_based = self_sufficiency == "import"
    sufficiency = 1.0 - _ratio(imp_t, load_t) if import_based else _ratio(pv_t - exp_t, load_t)
    area = np.full(m, np.nan) if floor_area_m2 is None else np.broadcast_to(
        np.asarray(floor_area_m2, dtype=np.float64), (m,))
    out = dict(
        pv_kwh=pv_t, charge_kwh=ch_t, discharge_kwh=dis_t, grid_import_kwh=imp_t,
        grid_export_kwh=exp_t, load_kwh=load_t,
        losses_kwh=(pv_t + imp_t + dis_t) - (load_t + exp_t + ch_t),
        self_consumption=_ratio(pv_t - exp_t, pv_t), self_sufficiency=sufficiency,
        peak_import_kw=peak_import_kw, peak_load_kw=peak_load_kw,
        load_factor=_ratio(mean_load_kw, peak_load_kw),
        eui_kwh_per_m2=_ratio(load_t, area), n_complete=n_complete,
    )
    if was_1d:
        out = {k: v[0] for k, v in out.items()}
    return EnergyBalance(**out, n_intervals=shape[1], self_sufficiency_convention=self_sufficiency)
