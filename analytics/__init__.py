"""Analytics for PEDF buildings: pure computation on numpy arrays (numba kernels, plain twins in tests).

Energy and emissions: interval energy from counters, resampling, energy balance, time-of-use split,
emission factor sets, Scope 2, roll-ups and reduction credits. Flexibility: battery envelopes and
schedules, flexible loads and droop, EV charging, aggregation, flexibility factor, demand-response
baselines and delivered response. Site-local time: :mod:`analytics.localtime`, the one helper
module for the project.

Every public function documents its parameters with units in brackets (numpydoc ``Parameters`` /
``Returns`` / ``References``), every result records its ``convention`` as text.

The names below load their module on first use (PEP 562): ``import analytics`` and the numba-free
modules (:mod:`analytics.factors`, :mod:`analytics.localtime`) do not load numba, so a process that
only checks a factor or a time zone (the gateway's site-file check) stays ~110 MB lighter than one
that runs a kernel.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from analytics.factors import FactorSeries, GridFactor, factor_series, grid_factor, load_factor_series, load_factors
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

_MODULE_OF = {
    "EnergyBalance": "analytics.balance",
    "energy_balance": "analytics.balance",
    "Baseline": "analytics.baselines",
    "DayOfAdjustment": "analytics.baselines",
    "DrEvents": "analytics.baselines",
    "beijing_high_5_of_10": "analytics.baselines",
    "high_x_of_y": "analytics.baselines",
    "jiangsu_last_5": "analytics.baselines",
    "ten_in_ten": "analytics.baselines",
    "EXAMPLE_CALENDAR_CN": "analytics.calendar",
    "WorkdayCalendar": "analytics.calendar",
    "day_eligibility": "analytics.calendar",
    "load_calendar": "analytics.calendar",
    "local_day_grid": "analytics.calendar",
    "CounterEnergy": "analytics.counters",
    "counter_wrap": "analytics.counters",
    "interval_energy": "analytics.counters",
    "AvoidedEmissions": "analytics.emissions",
    "CfeScore": "analytics.emissions",
    "Scope2": "analytics.emissions",
    "cfe_score": "analytics.emissions",
    "local_months": "analytics.emissions",
    "scope2": "analytics.emissions",
    "shift_avoided_emissions": "analytics.emissions",
    "EvFlexibility": "analytics.ev",
    "EvSessions": "analytics.ev",
    "ev_flexibility": "analytics.ev",
    "FactorSeries": "analytics.factors",
    "GridFactor": "analytics.factors",
    "factor_series": "analytics.factors",
    "grid_factor": "analytics.factors",
    "load_factor_series": "analytics.factors",
    "load_factors": "analytics.factors",
    "AggregateEnvelope": "analytics.flex_metrics",
    "FlexibilityFactor": "analytics.flex_metrics",
    "aggregate_envelope": "analytics.flex_metrics",
    "flexibility_factor": "analytics.flex_metrics",
    "BatteryEnvelope": "analytics.flexibility",
    "BatterySpec": "analytics.flexibility",
    "ScheduleSocBand": "analytics.flexibility",
    "battery_envelope": "analytics.flexibility",
    "schedule_soc_band": "analytics.flexibility",
    "DroopResponse": "analytics.flexible_loads",
    "LoadEnvelope": "analytics.flexible_loads",
    "droop_response": "analytics.flexible_loads",
    "flexible_load_envelope": "analytics.flexible_loads",
    "UnknownTimeZoneError": "analytics.localtime",
    "local_date": "analytics.localtime",
    "local_datetime": "analytics.localtime",
    "local_day_start_ns": "analytics.localtime",
    "local_iso": "analytics.localtime",
    "local_midnight_ns": "analytics.localtime",
    "local_month": "analytics.localtime",
    "local_offsets_ns": "analytics.localtime",
    "offset_steps": "analytics.localtime",
    "parse_local": "analytics.localtime",
    "DeliveredResponse": "analytics.mv",
    "delivered_response": "analytics.mv",
    "Resampled": "analytics.resample",
    "resample_energy": "analytics.resample",
    "resample_power": "analytics.resample",
    "ReductionCredits": "analytics.rollups",
    "Rollup": "analytics.rollups",
    "RollupLevel": "analytics.rollups",
    "reduction_credits": "analytics.rollups",
    "rollup": "analytics.rollups",
    "EXAMPLE_TARIFF_SHANGHAI": "analytics.tou",
    "TouSplit": "analytics.tou",
    "TouTariff": "analytics.tou",
    "load_tariff": "analytics.tou",
    "tou_fractions": "analytics.tou",
    "tou_split": "analytics.tou",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


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
