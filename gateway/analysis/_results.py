"""What a batch analysis produces: result rows as time-series points and the whole period's tables.

Shared by the computation (:mod:`gateway.analysis._batch`) and the report
(:mod:`gateway.analysis._report`), which must not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gateway.analysis._channels import BuildingChannels
from gateway.analysis._kpis import FactorSet


@dataclass(frozen=True)
class Record:
    """One result row as a time-series point: measurement, tags, time [ns], float fields."""

    measurement: str
    tags: dict[str, str]
    ts_ns: int
    fields: dict[str, float]


@dataclass
class Analysis:
    site: str
    tz: str
    start_ns: int
    end_ns: int
    interval_ns: int
    factors: FactorSet
    channels: dict[str, BuildingChannels]
    daily: list[dict] = field(default_factory=list)  # one row per building and local day
    monthly_emissions: list[dict] = field(default_factory=list)
    flexibility: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # building → fields at grid points
    flex_points_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    horizons_h: list[float] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def output_paths(out: Path) -> dict[str, Path]:
    return {"daily": out / "energy_balance_daily.csv", "monthly": out / "emissions_monthly.csv",
            "flex": out / "flexibility_envelope.csv", "flex_summary": out / "flexibility_summary.csv"}
