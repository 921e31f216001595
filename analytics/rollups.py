"""Roll-ups of emissions (device → building → park → region) and reduction credits.

Conventions (DOMAIN.md §7, "Roll-ups" and "Reduction credits"):

- a roll-up sums the emissions of the children, each computed with its own grid's factor (a park
  spanning two grids keeps both factors); an intensity is the level's total over the level's total
  area (or output), never the mean of the children's intensities;
- a reduction credit (碳普惠-style: baseline emissions minus reporting-period emissions) uses the same
  factor set in both periods; a project's credit is max(0, reduction); a fleet's net figure,
  negatives included, is reported separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analytics._numba import kernel
from analytics.factors import GridFactor

__all__ = ["ReductionCredits", "Rollup", "RollupLevel", "reduction_credits", "rollup"]


@dataclass(frozen=True)
class RollupLevel:
    """One level of a roll-up; arrays have one entry per node of the level."""

    name: str
    emissions_kg: np.ndarray
    area_m2: np.ndarray
    output: np.ndarray
    kg_per_m2: np.ndarray
    kg_per_output: np.ndarray


@dataclass(frozen=True)
class Rollup:
    levels: tuple[RollupLevel, ...]
    factor_sets: tuple[str, ...]
    output_unit: str
    convention: str = (
        "sum of children, each with its own grid factor; intensity = total / total area (DOMAIN.md §7)"
    )


@dataclass(frozen=True)
class ReductionCredits:
    reduction_kg: np.ndarray
    credit_kg: np.ndarray
    fleet_net_kg: float
    method: str
    factor: str
    convention: str = "same factor set in baseline and reporting; credit = max(0, reduction) (DOMAIN.md §7)"


@kernel()
def _group_sum_kernel(values, groups, out):
    for k in range(out.size):
        out[k] = 0.0
    for i in range(values.size):
        out[groups[i]] += values[i]


def _group_sum(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    out = np.empty(n_groups)
    _group_sum_kernel(np.ascontiguousarray(values, dtype=np.float64), groups, out)
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def rollup(
    device_kg: np.ndarray,
    device_factor_labels: Sequence[str],
    parents: Sequence[np.ndarray],
    *,
    level_names: Sequence[str] = ("device", "building", "park", "region"),
    building_area_m2: np.ndarray,
    building_output: np.ndarray | None = None,
    output_unit: str = "unit",
) -> Rollup:
    """Roll emissions up device → building → park → region (DOMAIN.md §7, "Roll-ups").

    Intensities at every level are the level's total over its total area (or output), never the mean
    of the children's intensities.

    Parameters
    ----------
    device_kg : ndarray [kgCO2]
        Emissions per device, each already computed with its own grid's factor.
    device_factor_labels : sequence of str
        The factor set label used for each device (recorded in the result).
    parents : sequence of ndarray [node index]
        One int array per step up: ``parents[0][i]`` is the building of device ``i``,
        ``parents[1][b]`` the park of building ``b``, ``parents[2][p]`` the region of park ``p``.
    level_names : sequence of str
        One name per level (``len(parents) + 1``).
    building_area_m2 : ndarray [m²]
        Floor area per building; summed upwards.
    building_output : ndarray [output_unit], optional
        Units of output per building (e.g. production units); summed upwards.
    output_unit : str
        Name of the output unit, recorded in the result.

    Returns
    -------
    Rollup
        One :class:`RollupLevel` per level: ``emissions_kg`` [kgCO2], ``area_m2`` [m²], ``output``,
        ``kg_per_m2`` [kgCO2/m²], ``kg_per_output`` [kgCO2/output_unit]; the factor sets used.

    References
    ----------
    DOMAIN.md §7 "Roll-ups"; GHG Protocol Scope 2 Guidance (2015), each grid's own factor.
    """
    kg = np.ascontiguousarray(device_kg, dtype=np.float64)
    if len(device_factor_labels) != kg.size:
        raise ValueError("one factor label per device is required")
    if len(level_names) != len(parents) + 1:
        raise ValueError("level_names must have one name per level (len(parents) + 1)")
    area = np.asarray(building_area_m2, dtype=np.float64)
    output = np.full(area.shape, np.nan) if building_output is None else np.asarray(building_output, float)
    # Level i has one node per entry of parents[i]; the top level's size is its largest index + 1.
    sizes = [kg.size] + [len(p) for p in parents[1:]]
    sizes.append(int(np.max(parents[-1])) + 1 if len(parents[-1]) else 0)
    levels = [RollupLevel(level_names[0], kg, np.full(kg.size, np.nan), np.full(kg.size, np.nan),
                          np.full(kg.size, np.nan), np.full(kg.size, np.nan))]
    for step, parent in enumerate(parents):
        parent = np.ascontiguousarray(parent, dtype=np.int64)
        n = sizes[step + 1]
        if parent.size != sizes[step] or (parent.size and (parent.min() < 0 or parent.max() >= n)):
            upper = level_names[step + 1]
            raise ValueError(f"parents[{step}] must map each {level_names[step]} to a {upper}")
        kg = _group_sum(kg, parent, n)
        if step == 0:
            if area.size != n or output.size != n:
                raise ValueError("building_area_m2 and building_output need one value per building")
        else:
            area, output = _group_sum(area, parent, n), _group_sum(output, parent, n)
        levels.append(
            RollupLevel(level_names[step + 1], kg, area, output, _ratio(kg, area), _ratio(kg, output))
        )
    return Rollup(tuple(levels), tuple(sorted(set(device_factor_labels))), output_unit)


def reduction_credits(
    baseline_kwh: np.ndarray,
    reporting_kwh: np.ndarray,
    factor: GridFactor,
    *,
    reporting_factor: GridFactor | None = None,
    method: str = "absolute",
    baseline_activity: np.ndarray | None = None,
    reporting_activity: np.ndarray | None = None,
) -> ReductionCredits:
    """Emission reductions against a baseline period, 碳普惠-style (DOMAIN.md §7, "Reduction credits").

    ``"absolute"``: reduction = (E_baseline − E_reporting) × factor. ``"intensity"``: the baseline
    energy per unit of activity, scaled to the reporting activity: (E_b / A_b × A_r − E_r) × factor.
    The same factor set must serve both periods (passing a different ``reporting_factor`` is an
    error); per project the credit is max(0, reduction); the fleet's net (negatives included) is
    reported separately.

    Parameters
    ----------
    baseline_kwh : ndarray [kWh]
        Energy per project in the baseline period.
    reporting_kwh : ndarray [kWh]
        Energy per project in the reporting period.
    factor : GridFactor [kgCO2/kWh]
        The factor set for both periods (a Scope 2 factor).
    reporting_factor : GridFactor [kgCO2/kWh], optional
        Must equal ``factor`` if given.
    method : str
        ``"absolute"`` (default) or ``"intensity"``.
    baseline_activity, reporting_activity : ndarray [activity unit], optional
        Activity per project in each period (``"intensity"`` only).

    Returns
    -------
    ReductionCredits
        ``reduction_kg`` and ``credit_kg`` [kgCO2] per project, ``fleet_net_kg`` [kgCO2], method and
        factor label.

    References
    ----------
    DOMAIN.md §7 "Reduction credits" (same factor set in baseline and reporting; credit = max(0, reduction)).
    """
    if reporting_factor is not None and reporting_factor != factor:
        raise ValueError(f"baseline uses {factor.label} but reporting uses {reporting_factor.label}")
    if not factor.scope2:
        raise ValueError(f"{factor.label} is not a Scope 2 factor")
    base = np.asarray(baseline_kwh, dtype=np.float64)
    rep = np.asarray(reporting_kwh, dtype=np.float64)
    if method == "absolute":
        adjusted = base
    elif method == "intensity":
        if baseline_activity is None or reporting_activity is None:
            raise ValueError("method 'intensity' needs baseline_activity and reporting_activity")
        adjusted = _ratio(base, np.asarray(baseline_activity, float)) * np.asarray(reporting_activity, float)
    else:
        raise ValueError("method must be 'absolute' or 'intensity'")
    reduction = (adjusted - rep) * factor.kg_per_kwh
    return ReductionCredits(reduction, np.maximum(reduction, 0.0), float(np.nansum(reduction)), method,
                            factor.label)
