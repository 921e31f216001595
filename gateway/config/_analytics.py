"""The optional ``analytics:`` section of the site file: every choice the results depend on, explicit.

DOMAIN.md §2 says a factor set needs regime, region and data year, and that the user picks the
regime; §7 says every convention is a named parameter. So nothing here guesses: without this section
the live analytics are off and ``pedf analyze`` needs ``--regime`` and ``--year`` on its command
line. The region of each building is its ``grid_region`` (or its park's), mapped onto the region
names of the bundled factor files (:data:`FACTOR_REGION`).

Example::

    analytics:
      interval_min: 15                  # or interval_s: 10 (short intervals for tests)
      emissions:
        regime: mee_nbs_grid_average     # location-based, region from each building
        data_year: 2022
        residual: {regime: mee_nbs_excl_market_nonfossil, region: national, data_year: 2022}
        certificates_mwh: {office_a: {"2026-11": 5.0}}   # GECs retired per site-local month
      batteries:
        battery: {energy_kwh: 200, p_charge_max_kw: 50, p_discharge_max_kw: 50,
                  eta_charge: 0.95, eta_discharge: 0.95, soc_min_pct: 10, soc_max_pct: 95}
      horizons_h: [0.25, 1, 2, 4]
      p_max_kw: 500                     # plausible circuit maximum, tells a rollover from a reset
      tariff: analytics/data/tariff_tou_shanghai_example.csv   # optional; the shipped one is an EXAMPLE
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field

from gateway.config._strict import Strict
from gateway.config._types import is_regular_file
from gateway.errors import ConfigProblem

#: site-file grid regions → region names of the bundled MEE/NBS factor files (analytics/data)
FACTOR_REGION = {"east_china": "east"}
POWER_MAX = 1e7  # kW or kWh: 10 GW(h) is beyond any park
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class FactorRef(Strict):
    """Which factor of a factor set: regime, region, data year (a row of analytics/data)."""

    regime: str
    region: str
    data_year: int = Field(ge=2000, le=2100)


class EmissionsSection(Strict):
    regime: str = Field(description="location-based factor regime, e.g. mee_nbs_grid_average")
    data_year: int = Field(ge=2000, le=2100)
    residual: FactorRef = Field(description="residual factor for market-based Scope 2 (DOMAIN.md §3)")
    certificates_mwh: dict[str, dict[str, Annotated[float, Field(ge=0, le=1e9)]]] = Field(
        default_factory=dict, description="building → {YYYY-MM: GEC MWh retired for that month}")
    matching: Literal["monthly", "pooled"] = "monthly"
    factor_files: list[str] = Field(default_factory=list, description="extra factor CSVs beside the bundled ones")


class BatterySection(Strict):
    """Parameters of :class:`analytics.BatterySpec` for one battery device (same defaults)."""

    energy_kwh: float = Field(gt=0, le=POWER_MAX)
    p_charge_max_kw: float = Field(ge=0, le=POWER_MAX)
    p_discharge_max_kw: float = Field(ge=0, le=POWER_MAX)
    eta_charge: float = Field(default=1.0, gt=0, le=1)
    eta_discharge: float = Field(default=1.0, gt=0, le=1)
    soc_min_pct: float = Field(default=0.0, ge=0, le=100)
    soc_max_pct: float = Field(default=100.0, ge=0, le=100)


class AnalyticsSection(Strict):
    interval_min: float = Field(default=15.0, ge=1, le=1440)
    interval_s: float | None = Field(default=None, ge=1, le=86400, description="overrides interval_min")
    emissions: EmissionsSection
    batteries: dict[str, BatterySection] = Field(default_factory=dict)
    horizons_h: list[Annotated[float, Field(gt=0, le=168)]] = Field(
        default_factory=lambda: [0.25, 1.0, 2.0, 4.0], min_length=1, max_length=32)
    p_max_kw: float | None = Field(default=None, gt=0, le=POWER_MAX)
    tariff: str | None = None
    self_sufficiency: Literal["import", "pv_share"] = "import"

    @property
    def interval_ns(self) -> int:
        seconds = self.interval_s if self.interval_s is not None else self.interval_min * 60.0
        return round(seconds * 1e9)


def factor_region(grid_region: str) -> str:
    return FACTOR_REGION.get(grid_region, grid_region)


def check_analytics(
    section: AnalyticsSection | None, config: Any, devices: list[Any], problem: Any
) -> list[ConfigProblem]:
    """Cross-checks of the section against the rest of the site; ``problem(loc, message)`` locates one."""
    if section is None:
        return []
    from analytics.factors import grid_factor  # numba-free: the gateway process never loads a kernel

    out: list[ConfigProblem] = []
    em = section.emissions
    files = tuple(em.factor_files) or None
    if files:
        from analytics.factors import BUNDLED_FACTOR_FILES

        files = (*BUNDLED_FACTOR_FILES, *files)
        for i, f in enumerate(em.factor_files):
            if not is_regular_file(f):
                out.append(problem(("analytics", "emissions", "factor_files", i), f"no such file {f!r}"))
                return out
    parks = {p.name: p for p in config.parks}
    for b in config.buildings:
        region = factor_region(b.grid_region or (parks[b.park].grid_region if b.park in parks else "national"))
        try:
            grid_factor(em.regime, region, em.data_year, paths=files)
        except (KeyError, ValueError) as exc:
            out.append(problem(("analytics", "emissions", "regime"), f"building {b.name}: {exc}"))
    try:
        residual = grid_factor(em.residual.regime, em.residual.region, em.residual.data_year, paths=files)
        if not residual.scope2:
            out.append(problem(("analytics", "emissions", "residual"), f"{residual.label} is not a Scope 2 factor"))
    except (KeyError, ValueError) as exc:
        out.append(problem(("analytics", "emissions", "residual"), str(exc)))
    names = {b.name for b in config.buildings}
    for building, months in em.certificates_mwh.items():
        loc = ("analytics", "emissions", "certificates_mwh", building)
        if building not in names:
            out.append(problem(loc, f"unknown building {building!r} (known: {sorted(names)})"))
        for month, mwh in months.items():
            if not MONTH.match(month) or mwh < 0:
                out.append(problem(loc + (month,), "expected YYYY-MM: MWh >= 0"))
    roles = {d.name: d.section.role for d in devices}
    for name, bat in section.batteries.items():
        loc = ("analytics", "batteries", name)
        if roles.get(name) not in ("battery", "dc_bus_converter"):
            out.append(problem(loc, f"no battery or dc_bus_converter device named {name!r}"))
        if bat.soc_min_pct > bat.soc_max_pct:
            out.append(problem(loc + ("soc_min_pct",), "must not exceed soc_max_pct"))
    if any(h <= 0 for h in section.horizons_h):
        out.append(problem(("analytics", "horizons_h"), "horizons must be > 0 hours"))
    if section.tariff is not None and not is_regular_file(section.tariff):
        out.append(problem(("analytics", "tariff"), f"no such tariff file {section.tariff!r}"))
    return out
