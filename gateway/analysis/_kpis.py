"""Building KPIs from channel energies: energy balance, Scope 2 by both methods, battery envelopes.

Shared by ``pedf analyze`` (days and months of a period) and the live component (each closed
interval), so both write the same measurements with the same fields:

- ``energy_kpi``: the balance of :func:`analytics.energy_balance` (DOMAIN.md §7 "Energy balance");
- ``emissions``: :func:`analytics.scope2` (GHG Protocol Scope 2 Guidance 2015; DOMAIN.md §3, §7).
  Certificates retired for a site-local month are used up in time order, each slice taking what
  is left of its month (``monthly``, no carry-over) or of the period (``pooled``); the slices of a
  month then sum to the monthly-matching figure, which the report also gives per month;
- ``flexibility``: :func:`analytics.battery_envelope` at a grid point per horizon (DOMAIN.md §4),
  summed over the batteries of a building.

Every result records its factor labels (regime/region/data year) as tags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analytics import BatterySpec, GridFactor, battery_envelope, energy_balance, grid_factor, local_month, scope2
from gateway.analysis._channels import BuildingChannels
from gateway.config import AnalyticsSection, BatterySection, factor_region
from gateway.errors import AnalysisInputError
from gateway.series import SeriesKey

NS_PER_HOUR = 3_600 * 10**9
EMISSION_AMOUNTS = ("grid_import_kwh", "scope2_location_kg", "scope2_market_kg", "certificates_covered_kwh",
                    "exported_pv_avoided_kg")


@dataclass(frozen=True)
class FactorSet:
    """The factors every emissions result was computed with."""

    location: dict[str, GridFactor]  # building → grid average factor of its region
    residual: GridFactor
    certificates_mwh: dict[str, dict[str, float]]  # building → {YYYY-MM: MWh}
    matching: str

    def tags(self, building: str) -> dict[str, str]:
        return {"location_factor": self.location[building].label, "residual_factor": self.residual.label,
                "matching": self.matching}


def factor_choice(site, section: AnalyticsSection | None, *, regime: str | None = None, year: int | None = None,
                  residual: str | None = None) -> FactorSet:
    """Factors from the site's ``analytics:`` section, or from the command line (which wins).

    Without the section, ``regime`` and ``year`` are required (no default factor, DOMAIN.md §2); the
    residual is then ``REGIME/REGION/YEAR`` as given, or the national "excluding market-traded
    non-fossil" factor of the same year, the closest Chinese residual-mix factor (DOMAIN.md §3).
    """
    em = section.emissions if section else None
    regime = regime or (em.regime if em else None)
    year = year or (em.data_year if em else None)
    if regime is None or year is None:
        raise AnalysisInputError("no emission factor chosen: give --regime and --year, or an analytics: section")
    files = None
    if em and em.factor_files:
        from analytics.factors import BUNDLED_FACTOR_FILES

        files = (*BUNDLED_FACTOR_FILES, *em.factor_files)
    parks = {p.name: p for p in site.config.parks}
    try:
        location = {b.name: grid_factor(regime, factor_region(b.grid_region or parks[b.park].grid_region), year,
                                        paths=files) for b in site.config.buildings}
        if residual is not None:
            r_regime, r_region, r_year = residual.split("/")
            res = grid_factor(r_regime, r_region, int(r_year), paths=files)
        elif em is not None:
            res = grid_factor(em.residual.regime, em.residual.region, em.residual.data_year, paths=files)
        else:
            res = grid_factor("mee_nbs_excl_market_nonfossil", "national", year)
    except (KeyError, ValueError) as exc:  # analytics' factor lookup: unknown factor, residual not R/R/Y
        raise AnalysisInputError(f"emission factors: {exc}") from exc
    return FactorSet(location, res, dict(em.certificates_mwh) if em else {}, em.matching if em else "monthly")


def battery_spec(b: BatterySection) -> BatterySpec:
    return BatterySpec(b.energy_kwh, b.p_charge_max_kw, b.p_discharge_max_kw, b.eta_charge, b.eta_discharge,
                       b.soc_min_pct, b.soc_max_pct)


def period_label(interval_ns: int) -> str:
    """ISO 8601 duration of an interval, e.g. PT15M, PT10S, PT1H."""
    seconds = interval_ns / 1e9
    if seconds % 3600 == 0:
        return f"PT{int(seconds // 3600)}H"
    if seconds % 60 == 0:
        return f"PT{int(seconds // 60)}M"
    return f"PT{seconds:g}S"


def horizon_label(hours: float) -> str:
    """Field-name label of a horizon: 1h, 4h, 15min, 90min, 30s."""
    if float(hours).is_integer():
        return f"{int(hours)}h"
    minutes = hours * 60
    if abs(minutes - round(minutes)) < 1e-9:
        return f"{round(minutes)}min"
    return f"{round(hours * 3600)}s"


def balance_fields(ch: BuildingChannels, sel: slice, floor_area_m2: float | None,
                   self_sufficiency: str = "import") -> dict[str, float]:
    """``energy_kpi`` fields of the intervals ``sel`` (complete intervals only, see analytics.balance)."""
    e = ch.energy_kwh
    eb = energy_balance(e["pv"][sel], e["charge"][sel], e["discharge"][sel], e["grid_import"][sel],
                        e["grid_export"][sel], e["load_dc"][sel], e["load_ac"][sel], ch.interval_ns,
                        floor_area_m2=floor_area_m2, self_sufficiency=self_sufficiency)
    complete = ~np.isnan(e["pv"][sel] + e["charge"][sel] + e["discharge"][sel] + e["grid_import"][sel]
                         + e["grid_export"][sel] + e["load_dc"][sel] + e["load_ac"][sel])
    load_ac = float(np.sum(e["load_ac"][sel][complete]))
    out = {
        "pv_kwh": float(eb.pv_kwh), "grid_import_kwh": float(eb.grid_import_kwh),
        "grid_export_kwh": float(eb.grid_export_kwh), "charge_kwh": float(eb.charge_kwh),
        "discharge_kwh": float(eb.discharge_kwh), "load_ac_kwh": load_ac,
        "load_dc_kwh": float(eb.load_kwh) - load_ac, "load_kwh": float(eb.load_kwh),
        "losses_kwh": float(eb.losses_kwh), "self_consumption_ratio": float(eb.self_consumption),
        "self_sufficiency_ratio": float(eb.self_sufficiency), "peak_import_kw": float(eb.peak_import_kw),
        "peak_load_kw": float(eb.peak_load_kw), "eui_kwh_per_m2": float(eb.eui_kwh_per_m2),
        "complete_intervals": float(eb.n_complete), "coverage_ratio": float(eb.n_complete) / max(eb.n_intervals, 1),
    }
    if eb.n_complete == 0:  # nothing known: no energy fields rather than zeros
        out = {k: (v if k in ("complete_intervals", "coverage_ratio") else np.nan) for k, v in out.items()}
    return out


@dataclass
class CertificatePool:
    """What is left of the certificates [kWh] of each month (or of the period when pooled)."""

    choice: FactorSet
    building: str
    used_kwh: dict[str, float] = field(default_factory=dict)

    def remaining_kwh(self, month: str) -> float:
        months = self.choice.certificates_mwh.get(self.building, {})
        if self.choice.matching == "pooled":
            return max(0.0, 1000.0 * sum(months.values()) - sum(self.used_kwh.values()))
        return max(0.0, 1000.0 * months.get(month, 0.0) - self.used_kwh.get(month, 0.0))

    def use(self, month: str, kwh: float) -> None:
        self.used_kwh[month] = self.used_kwh.get(month, 0.0) + kwh


def emission_fields(ch: BuildingChannels, sel: slice, choice: FactorSet, pool: CertificatePool,
                    tz: str) -> dict[str, float]:
    """``emissions`` fields of the intervals ``sel`` (all in one site-local month), using up certificates."""
    ts = ch.ts_ns[sel]
    imp = ch.energy_kwh["grid_import"][sel]
    month = local_month(int(ts[0]), tz)
    remaining_mwh = pool.remaining_kwh(month) / 1000.0
    s2 = scope2(ts, imp, location_factor=choice.location[ch.building], residual_factor=choice.residual, tz=tz,
                gec_mwh=np.array([remaining_mwh]), grid_export_kwh=ch.energy_kwh["grid_export"][sel],
                matching="monthly")
    pool.use(month, float(s2.covered_kwh))
    out = {
        "grid_import_kwh": float(s2.grid_import_kwh), "scope2_location_kg": float(s2.location_kg),
        "scope2_market_kg": float(s2.market_kg), "certificates_covered_kwh": float(s2.covered_kwh),
        "exported_pv_avoided_kg": float(s2.exported_pv_avoided_kg),
        "location_factor_kg_per_kwh": choice.location[ch.building].kg_per_kwh,
        "residual_factor_kg_per_kwh": choice.residual.kg_per_kwh, "missing_intervals": float(s2.n_missing),
    }
    if s2.n_missing == ts.size:  # no import known: unknown emissions, not zero
        out = {k: (np.nan if k in EMISSION_AMOUNTS else v) for k, v in out.items()}
    return out


def envelope_fields(soc_by_battery: dict[str, np.ndarray], specs: dict[str, BatterySection],
                    horizons_h: list[float]) -> dict[str, np.ndarray]:
    """``flexibility`` fields at grid points, summed over batteries: soc_pct (capacity-weighted mean),
    p_up_<h>_kw, p_down_<h>_kw, e_up_<h>_kwh, e_down_<h>_kwh per horizon (NaN where any SoC is missing)."""
    names = sorted(soc_by_battery)
    soc = np.vstack([soc_by_battery[n] for n in names])
    cap = np.array([specs[n].energy_kwh for n in names])
    out = {"soc_pct": (soc * cap[:, None]).sum(axis=0) / cap.sum(), "energy_capacity_kwh": np.full(soc.shape[1],
                                                                                                   cap.sum())}
    for h in horizons_h:
        up = np.zeros(soc.shape[1])
        down = np.zeros(soc.shape[1])
        for i, n in enumerate(names):
            env = battery_envelope(soc[i], battery_spec(specs[n]), dt_h=h, horizons_h=(h,))
            up += env.p_up_kw[0, 0]
            down += env.p_down_kw[0, 0]
        label = horizon_label(h)
        out[f"p_up_{label}_kw"], out[f"p_down_{label}_kw"] = up, down
        out[f"e_up_{label}_kwh"], out[f"e_down_{label}_kwh"] = up * h, down * h
    return out


def series_key(measurement: str, tags: dict[str, str], fields: list[str]) -> SeriesKey:
    return SeriesKey(measurement, tuple(sorted(tags.items())), tuple(fields), tuple("float" for _ in fields))
