"""Analytics for PEDF buildings: pure computation on numpy arrays (numba kernels, plain twins in tests).

Energy and emissions: interval energy from counters, resampling, energy balance, time-of-use split,
emission factor sets, Scope 2, roll-ups and reduction credits.
"""

from analytics.balance import EnergyBalance, energy_balance
from analytics.counters import CounterEnergy, counter_wrap, interval_energy
from analytics.emissions import (
    AvoidedEmissions,
    CfeScore,
    Scope2,
    cfe_score,
    local_months,
    scope2,
    shift_avoided_emissions,
)
from analytics.factors import (
    FactorSeries,
    GridFactor,
    factor_series,
    grid_factor,
    load_factor_series,
    load_factors,
)
from analytics.resample import Resampled, resample_energy, resample_power
from analytics.rollups import ReductionCredits, Rollup, RollupLevel, reduction_credits, rollup
from analytics.tou import EXAMPLE_TARIFF_SHANGHAI, TouSplit, TouTariff, load_tariff, tou_fractions, tou_split

__all__ = [
    "EXAMPLE_TARIFF_SHANGHAI",
    "AvoidedEmissions",
    "CfeScore",
    "CounterEnergy",
    "EnergyBalance",
    "FactorSeries",
    "GridFactor",
    "ReductionCredits",
    "Resampled",
    "Rollup",
    "RollupLevel",
    "Scope2",
    "TouSplit",
    "TouTariff",
    "cfe_score",
    "counter_wrap",
    "energy_balance",
    "factor_series",
    "grid_factor",
    "interval_energy",
    "load_factor_series",
    "load_factors",
    "load_tariff",
    "local_months",
    "reduction_credits",
    "resample_energy",
    "resample_power",
    "rollup",
    "scope2",
    "shift_avoided_emissions",
    "tou_fractions",
    "tou_split",
]

# Flexibility and baselines
