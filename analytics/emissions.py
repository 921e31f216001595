"""Scope 2 emissions (location- and market-based), avoided emissions of exports and shifts, hourly CFE.

Sources: GHG Protocol Scope 2 Guidance (WRI/WBCSD, 2015) and the conventions of DOMAIN.md §3 and
§7, which fix every choice the guidance leaves open:

- location-based = Σ grid import × grid average factor; contractual instruments do not change it;
- market-based = instruments first (China GECs, 1 GEC = 1 MWh, 发改能源〔2023〕1044号; PPAs), the
  rest × residual factor. Instruments retired for a month cover that month's import only
  (``"monthly"``) [alt ``"pooled"`` over the period]; self-consumed on-site PV is zero-emission
  unless its certificates were sold, then it counts at the residual factor; never negative.
  China publishes no regional residual factor, so market-based (national residual) can exceed
  location-based (regional average): the result says so in ``notes``;
- exported PV is not netted off: it is reported separately as avoided emissions;
- avoided emissions of shifted energy = Σ shifted kWh × marginal factor (MOER);
- hourly CFE score = Σ_h min(consumption_h, CFE_h) / Σ_h consumption_h, no carry-over.

Months and hours are site-local (the site's zone) through :mod:`analytics.localtime`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics._numba import NS_PER_HOUR, as_rows, kernel, prange
from analytics.factors import FactorSeries, GridFactor
from analytics.localtime import local_months, local_offsets_ns

__all__ = [
    "MATCHING_CONVENTIONS",
    "AvoidedEmissions",
    "CfeScore",
    "Scope2",
    "cfe_score",
    "local_months",
    "scope2",
    "shift_avoided_emissions",
]

MATCHING_CONVENTIONS = ("monthly", "pooled")
Factor = GridFactor | FactorSeries


@dataclass(frozen=True)
class Scope2:
    """Scope 2 per building [kg CO2], arrays (n_buildings,); monthly arrays (n_buildings, n_months)."""

    months: np.ndarray
    grid_import_kwh: np.ndarray
    monthly_import_kwh: np.ndarray
    location_kg: np.ndarray
    market_kg: np.ndarray
    covered_kwh: np.ndarray
    pv_self_consumed_kwh: np.ndarray
    pv_sold_certificates_kwh: np.ndarray
    exported_pv_avoided_kg: np.ndarray
    market_exceeds_location: np.ndarray
    n_missing: np.ndarray
    location_factor: str
    residual_factor: str
    export_factor: str
    matching: str
    notes: tuple[str, ...]
    convention: str = "GHG Protocol Scope 2 Guidance (2015), DOMAIN.md §3/§7 market-based conventions"


@dataclass(frozen=True)
class AvoidedEmissions:
    avoided_kg: np.ndarray
    n_missing: np.ndarray
    factor: str
    convention: str = "avoided = Σ reduced kWh × marginal factor (DOMAIN.md §3)"


@dataclass(frozen=True)
class CfeScore:
    score: np.ndarray
    matched_kwh: np.ndarray
    consumption_kwh: np.ndarray
    n_hours: int
    n_hours_excluded: np.ndarray
    convention: str = "Σ_h min(consumption_h, CFE_h) / Σ_h consumption_h, no carry-over (DOMAIN.md §7)"


@kernel(reassociate=True)
def _weighted_row(row, factor, seg_bounds, seg_month, monthly_row):
    # Branch-free sums so the inner loop vectorises; intervals come in runs of one month.
    acc = 0.0
    missing = 0.0  # a float count keeps every accumulator in vector registers
    for k in range(monthly_row.size):
        monthly_row[k] = 0.0
    for s in range(seg_month.size):
        # Slices with a zero base index: LLVM vectorises this loop, not one over [lo, hi).
        seg = row[seg_bounds[s]:seg_bounds[s + 1]]
        seg_factor = factor[seg_bounds[s]:seg_bounds[s + 1]]
        e_sum = 0.0
        for j in range(seg.size):
            e = seg[j]
            w = e * seg_factor[j]
            e_sum += e if e == e else 0.0
            acc += w if w == w else 0.0
            missing += 0.0 if w == w else 1.0
        monthly_row[seg_month[s]] += e_sum
    return acc, int(missing)


@kernel(parallel=True)
def _weighted_kernel(energy, factor, seg_bounds, seg_month, monthly, weighted, n_missing):
    # Σ energy × factor per row, energy per month (seg_bounds[s]:seg_bounds[s + 1] is month seg_month[s]).
    for r in prange(energy.shape[0]):
        acc, missing = _weighted_row(energy[r], factor, seg_bounds, seg_month, monthly[r])
        weighted[r] = acc
        n_missing[r] = missing


def _month_runs(month_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of equal month index: (bounds, month of each run)."""
    if month_idx.size == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(month_idx[1:] != month_idx[:-1]) + 1
    bounds = np.concatenate([[0], change, [month_idx.size]]).astype(np.int64)
    return bounds, np.ascontiguousarray(month_idx[bounds[:-1]])


@kernel(parallel=True)
def _cfe_kernel(consumption, supply, hour_idx, n_hours, matched, total, excluded):
    m, n = consumption.shape
    for r in prange(m):
        c_h = np.zeros(n_hours)
        s_h = np.zeros(n_hours)
        bad = np.zeros(n_hours, dtype=np.bool_)
        for j in range(n):
            c = consumption[r, j]
            s = supply[r, j]
            if np.isnan(c) or np.isnan(s):
                bad[hour_idx[j]] = True
            else:
                c_h[hour_idx[j]] += c
                s_h[hour_idx[j]] += s
        acc_m = 0.0
        acc_c = 0.0
        n_bad = 0
        for h in range(n_hours):
            if bad[h]:
                n_bad += 1
                continue
            acc_m += min(c_h[h], s_h[h])
            acc_c += c_h[h]
        matched[r] = acc_m
        total[r] = acc_c
        excluded[r] = n_bad


def _factor_per_interval(factor: Factor, ts: np.ndarray, *, scope2_only: bool = True) -> np.ndarray:
    if isinstance(factor, GridFactor):
        if scope2_only and not factor.scope2:
            raise ValueError(f"{factor.label} is a lifecycle footprint factor, not a Scope 2 factor")
        return np.full(ts.size, factor.kg_per_kwh)
    return np.ascontiguousarray(factor.at(ts))


def _per_month(values, m: int, n_months: int, name: str) -> np.ndarray:
    if values is None:
        return np.zeros((m, n_months))
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        raise ValueError(f"{name}: give one value per month ({n_months}), not a scalar")
    arr = np.broadcast_to(arr, (m, n_months)) if arr.shape[-1] == n_months else None
    if arr is None or np.any(arr < 0) or np.any(np.isnan(arr)):
        raise ValueError(f"{name}: expected non-negative values of shape ({n_months},) or ({m}, {n_months})")
    return arr


def scope2(
    ts_ns: np.ndarray,
    grid_import_kwh: np.ndarray,
    *,
    location_factor: Factor,
    residual_factor: GridFactor,
    tz: str = "Asia/Shanghai",
    gec_mwh: np.ndarray | None = None,
    ppa_kwh: np.ndarray | None = None,
    pv_self_consumed_kwh: np.ndarray | None = None,
    pv_certificates_sold_kwh: np.ndarray | None = None,
    grid_export_kwh: np.ndarray | None = None,
    export_factor: Factor | None = None,
    matching: str = "monthly",
) -> Scope2:
    """Location- and market-based Scope 2 emissions (GHG Protocol Scope 2 Guidance, 2015; DOMAIN.md §3/§7).

    Parameters
    ----------
    ts_ns : ndarray [ns since epoch, UTC]
        Interval starts, shape (n,).
    grid_import_kwh : ndarray [kWh]
        Grid import per interval, (n,) or (n_buildings, n); NaN = missing.
    location_factor : GridFactor or FactorSeries [kgCO2/kWh]
        Grid average factor (a :class:`GridFactor`, or an ``"average"`` series).
    residual_factor : GridFactor [kgCO2/kWh]
        Factor for import not covered by instruments, e.g.
        ``mee_nbs_excl_market_nonfossil/national/<year>``.
    tz : str
        Site's zone; instruments are per site-local month (see :func:`local_months`).
    gec_mwh : ndarray [MWh], optional
        Green certificates retired per month, (n_months,) or (n_buildings, n_months).
    ppa_kwh : ndarray [kWh], optional
        PPA energy delivered per month, same shape rules.
    pv_self_consumed_kwh, pv_certificates_sold_kwh : ndarray [kWh], optional
        Per month; self-consumed PV whose certificates were sold (capped at the self-consumed
        amount) counts at the residual factor.
    grid_export_kwh : ndarray [kWh], optional
        Exported PV per interval, reported as avoided emissions.
    export_factor : GridFactor or FactorSeries [kgCO2/kWh], optional
        Factor for the avoided emissions of export (default: ``location_factor``).
    matching : str
        ``"monthly"`` (default, no carry-over) or ``"pooled"`` over the whole period.

    Returns
    -------
    Scope2
        ``location_kg`` / ``market_kg`` [kgCO2] per building, monthly import [kWh], covered and PV
        figures [kWh], ``exported_pv_avoided_kg`` [kgCO2], the factor labels, matching and notes.

    References
    ----------
    WRI/WBCSD, GHG Protocol Scope 2 Guidance (2015): location- and market-based methods, dual
    reporting. 发改能源〔2023〕1044号: GECs, 1 GEC = 1 MWh. MEE/NBS 电力二氧化碳排放因子 (factors, see
    :mod:`analytics.factors`). DOMAIN.md §3 and §7 "Market-based Scope 2".
    """
    if matching not in MATCHING_CONVENTIONS:
        raise ValueError(f"matching must be one of {MATCHING_CONVENTIONS}")
    if isinstance(location_factor, FactorSeries) and location_factor.kind != "average":
        raise ValueError("location-based Scope 2 needs an average factor, not a marginal one")
    if not residual_factor.scope2:
        raise ValueError(f"{residual_factor.label} is not a Scope 2 factor")
    ts = np.ascontiguousarray(ts_ns, dtype=np.int64)
    imp, was_1d = as_rows(grid_import_kwh, "grid_import_kwh", ts.size)
    m = imp.shape[0]
    months, month_idx = local_months(ts, tz)
    bounds, run_month = _month_runs(month_idx)
    n_months = months.size
    monthly = np.empty((m, n_months))
    location = np.empty(m)
    n_missing = np.empty(m, dtype=np.int64)
    _weighted_kernel(imp, _factor_per_interval(location_factor, ts), bounds, run_month, monthly, location,
                     n_missing)

    instruments = (_per_month(gec_mwh, m, n_months, "gec_mwh") * 1000.0
                   + _per_month(ppa_kwh, m, n_months, "ppa_kwh"))
    if matching == "monthly":
        covered = np.minimum(monthly, instruments).sum(axis=1)
    else:
        covered = np.minimum(monthly.sum(axis=1), instruments.sum(axis=1))
    pv_self = _per_month(pv_self_consumed_kwh, m, n_months, "pv_self_consumed_kwh")
    sold = np.minimum(_per_month(pv_certificates_sold_kwh, m, n_months, "pv_certificates_sold_kwh"),
                      pv_self).sum(axis=1)
    pv_total = pv_self.sum(axis=1)
    total_import = monthly.sum(axis=1)
    residual_kwh = np.maximum(total_import - covered, 0.0)
    market = (residual_kwh + sold) * residual_factor.kg_per_kwh

    export_factor = export_factor or location_factor
    avoided = np.zeros(m)
    if grid_export_kwh is not None:
        exp, _ = as_rows(grid_export_kwh, "grid_export_kwh", ts.size)
        if exp.shape != imp.shape:
            raise ValueError("grid_export_kwh must have the shape of grid_import_kwh")
        scratch = np.empty((exp.shape[0], n_months))
        missing_exp = np.empty(exp.shape[0], dtype=np.int64)
        export_f = _factor_per_interval(export_factor, ts)
        _weighted_kernel(exp, export_f, bounds, run_month, scratch, avoided, missing_exp)
    exceeds = market > location
    notes = []
    if bool(np.any(exceeds)):
        notes.append(
            "market-based exceeds location-based for some buildings: China publishes no regional "
            f"residual factor, so uncovered import is counted at {residual_factor.label} "
            f"({residual_factor.kg_per_kwh} kg/kWh) against the location factor {location_factor.label}"
        )
    for role, factor in (("location", location_factor), ("residual", residual_factor)):
        if isinstance(factor, GridFactor) and factor.unverified:
            notes.append(f"{role} factor {factor.label} is marked unverified in its source")
    per_building = dict(
        grid_import_kwh=total_import, monthly_import_kwh=monthly, location_kg=location, market_kg=market,
        covered_kwh=covered, pv_self_consumed_kwh=pv_total, pv_sold_certificates_kwh=sold,
        exported_pv_avoided_kg=avoided, market_exceeds_location=exceeds, n_missing=n_missing,
    )
    if was_1d:
        per_building = {k: v[0] for k, v in per_building.items()}
    return Scope2(
        months=months, **per_building, location_factor=location_factor.label,
        residual_factor=residual_factor.label, export_factor=export_factor.label, matching=matching,
        notes=tuple(notes),
    )


def shift_avoided_emissions(
    ts_ns: np.ndarray, reduced_kwh: np.ndarray, marginal: FactorSeries
) -> AvoidedEmissions:
    """Avoided emissions of shifted energy = Σ reduced_kwh × MOER (DOMAIN.md §3, marginal vs average).

    Parameters
    ----------
    ts_ns : ndarray [ns since epoch, UTC]
        Interval starts, shape (n,).
    reduced_kwh : ndarray [kWh]
        Reference minus actual consumption per interval, (n,) or (n_series, n): positive where load was
        taken away, negative where it was moved to; NaN = missing.
    marginal : FactorSeries [kgCO2/kWh]
        A ``"marginal"`` series (marginal operating emission rate, e.g. WattTime MOER).

    Returns
    -------
    AvoidedEmissions
        ``avoided_kg`` [kgCO2] and ``n_missing`` [intervals] per series, the factor label.

    References
    ----------
    DOMAIN.md §3 "Marginal vs average" (avoided emissions of a shift = Σ shifted MWh × MOER); WattTime
    MOER definition.
    """
    if marginal.kind != "marginal":
        raise ValueError("avoided emissions of a shift need a marginal factor series (MOER)")
    ts = np.ascontiguousarray(ts_ns, dtype=np.int64)
    rows, was_1d = as_rows(reduced_kwh, "reduced_kwh", ts.size)
    scratch = np.empty((rows.shape[0], 1))
    avoided = np.empty(rows.shape[0])
    n_missing = np.empty(rows.shape[0], dtype=np.int64)
    runs = _month_runs(np.zeros(ts.size, dtype=np.int64))
    _weighted_kernel(rows, _factor_per_interval(marginal, ts), *runs, scratch, avoided, n_missing)
    if was_1d:
        avoided, n_missing = avoided[0], n_missing[0]
    return AvoidedEmissions(avoided, n_missing, marginal.label)


def cfe_score(
    ts_ns: np.ndarray, consumption_kwh: np.ndarray, cfe_supply_kwh: np.ndarray, *, tz: str = "Asia/Shanghai"
) -> CfeScore:
    """Hourly carbon-free-energy score (DOMAIN.md §3 "Hourly matching", §7 "Hourly CFE score").

    Intervals are summed into site-local clock hours; an hour with any missing consumption or supply
    interval is left out of both sums and counted in ``n_hours_excluded``.

    Parameters
    ----------
    ts_ns : ndarray [ns since epoch, UTC]
        Interval starts, shape (n,).
    consumption_kwh : ndarray [kWh]
        Consumption per interval, (n,) or (n_series, n); NaN = missing.
    cfe_supply_kwh : ndarray [kWh]
        Carbon-free supply per interval, the shape of ``consumption_kwh``.
    tz : str
        Site's IANA zone (hours are local clock hours).

    Returns
    -------
    CfeScore
        ``score`` [-] = Σ_h min(consumption_h, CFE_h) / Σ_h consumption_h, ``matched_kwh`` and
        ``consumption_kwh`` [kWh], ``n_hours`` and ``n_hours_excluded`` [h].

    References
    ----------
    DOMAIN.md §3 "Hourly matching (24/7 carbon-free energy)" and §7 "Hourly CFE score".
    """
    ts = np.ascontiguousarray(ts_ns, dtype=np.int64)
    cons, was_1d = as_rows(consumption_kwh, "consumption_kwh", ts.size)
    supply, _ = as_rows(cfe_supply_kwh, "cfe_supply_kwh", ts.size)
    if supply.shape != cons.shape:
        raise ValueError("consumption_kwh and cfe_supply_kwh must have the same shape")
    if ts.size:
        local_hour = (ts + local_offsets_ns(ts, tz)) // NS_PER_HOUR
        hour_idx = np.ascontiguousarray(local_hour - local_hour.min())
        n_hours = int(hour_idx.max()) + 1
    else:
        hour_idx, n_hours = np.zeros(0, dtype=np.int64), 0
    m = cons.shape[0]
    matched, total = np.empty(m), np.empty(m)
    excluded = np.empty(m, dtype=np.int64)
    _cfe_kernel(cons, supply, hour_idx, n_hours, matched, total, excluded)
    score = np.full(m, np.nan)
    np.divide(matched, total, out=score, where=total > 0)
    if was_1d:
        score, matched, total, excluded = score[0], matched[0], total[0], excluded[0]
    return CfeScore(score, matched, total, n_hours, excluded)
