"""Grid electricity CO2 emission factors, kept as data, chosen explicitly, recorded in every result.

Bundled factor sets (``analytics/data/factors_*.csv``, columns ``regime, region, data_year, unit,
value, source``; figures from DOMAIN.md §2):

- ``mee_nbs_grid_average``: MEE/NBS 电力二氧化碳排放因子, location-based average, national and the
  seven regional grids for data years 2021–2023, Shanghai provincial 2021–2022 (*unverified*);
- ``mee_nbs_excl_market_nonfossil``: national, excluding market-traded non-fossil electricity — the
  closest Chinese residual-mix factor for market-based Scope 2 (DOMAIN.md §3);
- ``mee_nbs_fossil_only``: national, fossil generation only;
- ``mee_carbon_market``: 0.5703 tCO2/MWh, MEE's 2022 national grid factor for carbon-market
  enterprise reporting 2023–2025;
- ``shanghai_local``: 沪环气〔2022〕34号, 4.2 tCO2/10^4 kWh = 0.42 kgCO2/kWh;
- ``footprint_lifecycle*``: 2023 carbon-footprint factors (lifecycle) — refused for Scope 2.

There is no default region or year: a caller names regime, region and data year (practice lags
factors two years, e.g. a 2023 inventory with 2021 factors — DOMAIN.md §2 — which is the caller's
choice, not ours). User-supplied hourly average or marginal series (e.g. WattTime MOER,
Electricity Maps) enter through :func:`factor_series` or :func:`load_factor_series`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from analytics._units import NS_PER_HOUR

__all__ = [
    "BUNDLED_FACTOR_FILES",
    "FactorSeries",
    "GridFactor",
    "factor_series",
    "grid_factor",
    "load_factor_series",
    "load_factors",
]

DATA_DIR = Path(__file__).parent / "data"
BUNDLED_FACTOR_FILES = tuple(sorted(DATA_DIR.glob("factors_*.csv")))
_UNIT_TO_KG_PER_KWH = {
    "kgCO2/kWh": 1.0,
    "kgCO2e/kWh": 1.0,
    "tCO2/MWh": 1.0,
    "tCO2e/MWh": 1.0,
    "gCO2/kWh": 1e-3,
    "gCO2e/kWh": 1e-3,
    "tCO2/10^4kWh": 0.1,
}
_NOT_SCOPE2_PREFIX = "footprint_"
SERIES_KINDS = ("average", "marginal")


@dataclass(frozen=True)
class GridFactor:
    """One published factor: ``kg_per_kwh`` is ``value`` converted from ``unit``."""

    regime: str
    region: str
    data_year: int
    unit: str
    value: float
    source: str

    @property
    def kg_per_kwh(self) -> float:
        return self.value * _UNIT_TO_KG_PER_KWH[self.unit]

    @property
    def scope2(self) -> bool:
        return not self.regime.startswith(_NOT_SCOPE2_PREFIX)

    @property
    def unverified(self) -> bool:
        return "unverified" in self.source

    @property
    def label(self) -> str:
        return f"{self.regime}/{self.region}/{self.data_year}"


@dataclass(frozen=True)
class FactorSeries:
    """A user-supplied factor series: ``kg_per_kwh[i]`` holds over ``[ts_ns[i], ts_ns[i] + interval_ns)``."""

    name: str
    kind: str
    ts_ns: np.ndarray
    kg_per_kwh: np.ndarray
    interval_ns: int
    source: str

    @property
    def label(self) -> str:
        return f"series:{self.kind}:{self.name}"

    def at(self, ts_ns: np.ndarray) -> np.ndarray:
        """Factor [kg/kWh] in force at each time in ``ts_ns``; NaN where the series has no value."""
        ts = np.asarray(ts_ns, dtype=np.int64)
        if self.ts_ns.size == 0:
            return np.full(ts.shape, np.nan)
        idx = np.searchsorted(self.ts_ns, ts, side="right") - 1
        ok = (idx >= 0) & (ts < self.ts_ns[np.maximum(idx, 0)] + self.interval_ns)
        return np.where(ok, self.kg_per_kwh[np.maximum(idx, 0)], np.nan)


def _read(path: Path) -> list[GridFactor]:
    out = []
    with path.open(encoding="utf-8", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            unit = row["unit"].strip()
            if unit not in _UNIT_TO_KG_PER_KWH:
                raise ValueError(f"{path}:{line}: unknown unit {unit!r}")
            value = float(row["value"])
            if not value >= 0:
                raise ValueError(f"{path}:{line}: factor must be >= 0")
            out.append(GridFactor(row["regime"].strip(), row["region"].strip(), int(row["data_year"]),
                                  unit, value, row["source"].strip()))
    return out


@cache
def _load(paths: tuple[Path, ...]) -> tuple[GridFactor, ...]:
    factors = [f for p in paths for f in _read(p)]
    seen: set[tuple[str, str, int]] = set()
    for f in factors:
        key = (f.regime, f.region, f.data_year)
        if key in seen:
            raise ValueError(f"duplicate factor {f.label}")
        seen.add(key)
    return tuple(factors)


def load_factors(paths: tuple[str | Path, ...] | None = None) -> tuple[GridFactor, ...]:
    """All factors in ``paths`` (default: the bundled files); duplicates of a key are an error.

    Parameters
    ----------
    paths : tuple of str or Path, optional
        Factor CSV files (``regime, region, data_year, unit, value, source``); default
        ``BUNDLED_FACTOR_FILES``.

    Returns
    -------
    tuple of GridFactor
        Every factor, ``kg_per_kwh`` [kgCO2/kWh] converted from its unit.

    References
    ----------
    MEE/NBS 电力二氧化碳排放因子; 沪环气〔2022〕34号; DOMAIN.md §2 (figures and sources per row).
    """
    return _load(tuple(Path(p) for p in (paths or BUNDLED_FACTOR_FILES)))


def grid_factor(
    regime: str, region: str, data_year: int, *, paths: tuple[str | Path, ...] | None = None
) -> GridFactor:
    """The factor for ``regime``/``region``/``data_year``; all three must be named (no default region).

    Parameters
    ----------
    regime : str
        Factor set, e.g. ``"mee_nbs_grid_average"``.
    region : str
        Grid or province, e.g. ``"east"``, ``"national"``.
    data_year : int [year]
        Data year of the factor (practice lags two years, DOMAIN.md §2: the caller's choice).
    paths : tuple of str or Path, optional
        Factor files; default: the bundled ones.

    Returns
    -------
    GridFactor
        The factor, ``kg_per_kwh`` [kgCO2/kWh], with its source.

    Raises
    ------
    KeyError
        The combination does not exist; the message lists what is available.

    References
    ----------
    MEE/NBS 电力二氧化碳排放因子 (2021-2023 data years); DOMAIN.md §2.
    """
    factors = load_factors(paths)
    for f in factors:
        if (f.regime, f.region, f.data_year) == (regime, region, int(data_year)):
            return f
    available = sorted({f.label for f in factors if f.regime == regime})
    available = available or sorted({f.regime for f in factors})
    raise KeyError(f"no factor {regime}/{region}/{data_year}; available: {', '.join(available)}")


def load_factor_series(path: str | Path, *, name: str, kind: str, source: str) -> FactorSeries:
    """Read an hourly factor series from CSV.

    Columns ``ts_utc`` (ISO 8601, hour start) and ``kg_per_kwh``; ``#`` lines are comments; an empty
    value is missing (NaN).

    Parameters
    ----------
    path : str or Path
        The CSV file; ``kg_per_kwh`` in [kgCO2/kWh].
    name : str
        Name of the series, recorded in results.
    kind : str
        ``"average"`` or ``"marginal"``.
    source : str
        Where the series comes from; recorded in every result.

    Returns
    -------
    FactorSeries
        See :func:`factor_series`.

    References
    ----------
    DOMAIN.md §3 "Marginal vs average" (WattTime MOER, Electricity Maps); ISO 8601 timestamps.
    """
    path = Path(path)
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if not ln.lstrip().startswith("#")]
    ts, values = [], []
    for row in csv.DictReader(lines):
        stamp = np.datetime64(row["ts_utc"].strip().removesuffix("Z").split("+")[0], "ns")
        ts.append(stamp.astype(np.int64))
        values.append(float(row["kg_per_kwh"]) if row["kg_per_kwh"].strip() else np.nan)
    return factor_series(np.array(ts, dtype=np.int64), np.array(values), name=name, kind=kind, source=source)


def factor_series(
    ts_ns: np.ndarray,
    kg_per_kwh: np.ndarray,
    *,
    name: str,
    kind: str,
    source: str,
    interval_ns: int = NS_PER_HOUR,
) -> FactorSeries:
    """Wrap a user-supplied factor series (hourly by default) as a factor set.

    Parameters
    ----------
    ts_ns : ndarray [ns since epoch, UTC]
        Start of each value's interval, strictly increasing.
    kg_per_kwh : ndarray [kgCO2/kWh]
        Factor per interval; NaN = missing.
    name : str
        Name of the series, recorded in results.
    kind : str
        ``"average"`` (consumption-based mix intensity, e.g. Electricity Maps) or ``"marginal"``
        (marginal operating emission rate, e.g. WattTime MOER).
    source : str
        Where the series comes from; recorded in every result.
    interval_ns : int [ns]
        Length of each value's interval (default 1 h).

    Returns
    -------
    FactorSeries
        The series; ``at(ts_ns)`` gives the factor [kgCO2/kWh] in force at each time.

    References
    ----------
    DOMAIN.md §3 "Marginal vs average".
    """
    if kind not in SERIES_KINDS:
        raise ValueError(f"kind must be one of {SERIES_KINDS}")
    ts = np.ascontiguousarray(ts_ns, dtype=np.int64)
    values = np.ascontiguousarray(kg_per_kwh, dtype=np.float64)
    if ts.ndim != 1 or ts.shape != values.shape:
        raise ValueError("ts_ns and kg_per_kwh must be 1-D of equal length")
    if ts.size > 1 and not bool(np.all(np.diff(ts) >= interval_ns)):
        raise ValueError("ts_ns must be increasing and spaced at least interval_ns apart")
    if bool(np.any(values < 0)):
        raise ValueError("factors must be >= 0")
    return FactorSeries(name, kind, ts, values, int(interval_ns), source)
