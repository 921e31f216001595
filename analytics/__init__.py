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
from analytics.baselines import (
    Baseline,
    DayOfAdjustment,
    DrEvents,
    beijing_high_5_of_10,
    high_x_of_y,
    jiangsu_last_5,
    ten_in_ten,
)
from analytics.calendar import EXAMPLE_CALENDAR_CN, WorkdayCalendar, day_eligibility, load_calendar, local_day_grid
from analytics.ev import EvFlexibility, EvSessions, ev_flexibility
from analytics.flex_metrics import AggregateEnvelope, FlexibilityFactor, aggregate_envelope, flexibility_factor
from analytics.flexibility import BatteryEnvelope, BatterySpec, ScheduleSocBand, battery_envelope, schedule_soc_band
from analytics.flexible_loads import DroopResponse, LoadEnvelope, droop_response, flexible_load_envelope
from analytics.mv import DeliveredResponse, delivered_response

__all__ += [
    "EXAMPLE_CALENDAR_CN",
    "AggregateEnvelope",
    "Baseline",
    "BatteryEnvelope",
    "BatterySpec",
    "DayOfAdjustment",
    "DeliveredResponse",
    "DrEvents",
    "DroopResponse",
    "EvFlexibility",
    "EvSessions",
    "FlexibilityFactor",
    "LoadEnvelope",
    "ScheduleSocBand",
    "WorkdayCalendar",
    "aggregate_envelope",
    "battery_envelope",
    "beijing_high_5_of_10",
    "day_eligibility",
    "delivered_response",
    "droop_response",
    "ev_flexibility",
    "flexibility_factor",
    "flexible_load_envelope",
    "high_x_of_y",
    "jiangsu_last_5",
    "load_calendar",
    "local_day_grid",
    "schedule_soc_band",
    "ten_in_ten",
]
