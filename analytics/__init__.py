"""Analytics for PEDF buildings: pure computation on numpy arrays (numba kernels, plain twins in tests).

Energy and emissions: interval energy from counters, resampling, energy balance, time-of-use split,
emission factor sets, Scope 2, roll-ups and reduction credits. Flexibility: battery envelopes and
schedules, flexible loads and droop, EV charging, aggregation, flexibility factor, demand-response
baselines and delivered response. Site-local time: :mod:`analytics.localtime`, the one helper
module for the project.

Every public function documents its parameters with units in brackets (numpydoc ``Parameters`` /
``Returns`` / ``References``), every result records its ``convention`` as text.
"""

from analytics.balance import EnergyBalance, energy_balance
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
from analytics.ev import EvFlexibility, EvSessions, ev_flexibility
from analytics.factors import (
    FactorSeries,
    GridFactor,
    factor_series,
    grid_factor,
    load_factor_series,
    load_factors,
)
from analytics.flex_metrics import AggregateEnvelope, FlexibilityFactor, aggregate_envelope, flexibility_factor
from analytics.flexibility import BatteryEnvelope, BatterySpec, ScheduleSocBand, battery_envelope, schedule_soc_band
from analytics.flexible_loads import DroopResponse, LoadEnvelope, droop_response, flexible_load_envelope
from analytics.localtime import (
    UnknownTimeZoneError,
    local_date,
    local_datetime,
    local_day_start_ns,
    local_iso,
    local_midnight_ns,
    local_month,
    local_offsets_ns,
    offset_steps,
    parse_local,
)
from analytics.mv import DeliveredResponse, delivered_response
from analytics.resample import Resampled, resample_energy, resample_power
from analytics.rollups import ReductionCredits, Rollup, RollupLevel, reduction_credits, rollup
from analytics.tou import EXAMPLE_TARIFF_SHANGHAI, TouSplit, TouTariff, load_tariff, tou_fractions, tou_split

__all__ = [
    "EXAMPLE_CALENDAR_CN",
    "EXAMPLE_TARIFF_SHANGHAI",
    "AggregateEnvelope",
    "AvoidedEmissions",
    "Baseline",
    "BatteryEnvelope",
    "BatterySpec",
    "CfeScore",
    "CounterEnergy",
    "DayOfAdjustment",
    "DeliveredResponse",
    "DrEvents",
    "DroopResponse",
    "EnergyBalance",
    "EvFlexibility",
    "EvSessions",
    "FactorSeries",
    "FlexibilityFactor",
    "GridFactor",
    "LoadEnvelope",
    "ReductionCredits",
    "Resampled",
    "Rollup",
    "RollupLevel",
    "ScheduleSocBand",
    "Scope2",
    "TouSplit",
    "TouTariff",
    "UnknownTimeZoneError",
    "WorkdayCalendar",
    "aggregate_envelope",
    "battery_envelope",
    "beijing_high_5_of_10",
    "cfe_score",
    "counter_wrap",
    "day_eligibility",
    "delivered_response",
    "droop_response",
    "energy_balance",
    "ev_flexibility",
    "factor_series",
    "flexibility_factor",
    "flexible_load_envelope",
    "grid_factor",
    "high_x_of_y",
    "interval_energy",
    "jiangsu_last_5",
    "load_calendar",
    "load_factor_series",
    "load_factors",
    "load_tariff",
    "local_date",
    "local_datetime",
    "local_day_grid",
    "local_day_start_ns",
    "local_iso",
    "local_midnight_ns",
    "local_month",
    "local_months",
    "local_offsets_ns",
    "offset_steps",
    "parse_local",
    "reduction_credits",
    "resample_energy",
    "resample_power",
    "rollup",
    "schedule_soc_band",
    "scope2",
    "shift_avoided_emissions",
    "ten_in_ten",
    "tou_fractions",
    "tou_split",
]
