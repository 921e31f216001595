"""From device readings to the energy channels of each building, on one interval grid.

Which device and field feed which term of the balance is :data:`drivers.balance.BALANCE_TERMS`
(the devices' roles and the profiles' field names, drivers/modbus/profiles/README.md):

==============  =====================  ==========================================
channel         role                   counter field (first one present)
==============  =====================  ==========================================
grid_import     grid_meter             e_import_kwh
grid_export     grid_meter             e_export_kwh
pv              pv                     e_gen_kwh (inverter), e_export_kwh (PV meter)
charge          dc_bus_converter       e_charge_kwh
discharge       dc_bus_converter       e_discharge_kwh
load_ac         ac_load                e_import_kwh
load_dc         dc_load                e_import_kwh
==============  =====================  ==========================================

Counter readings become interval energy with :func:`analytics.interval_energy` (DOMAIN.md §7
"Cumulative counters": rollover vs reset, gaps NaN, clock jitter snapped or apportioned), the wrap
from the point (``Point.counter_wrap``: 2^bits × scale × ratio). Several devices on one channel are
summed (NaN if any is missing); a building with no device on a channel has 0 there (no PV means no
PV energy), except grid import and export, which are unknown (NaN) without a grid meter. State of
charge (``soc_pct``) is read at grid points: the last reading at or before the point, snapped like
counters (10 % of the interval), and no older than one interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from analytics import interval_energy
from analytics.balance import CHANNELS
from drivers.balance import BALANCE_TERMS, SOC_FIELD

CHANNEL_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {t.channel: (t.role, t.counter_fields) for t in BALANCE_TERMS}
#: every field a loader needs to fetch
NEEDED_FIELDS = tuple(sorted({f for _, fs in CHANNEL_SOURCES.values() for f in fs} | {SOC_FIELD}))
SNAP_TOLERANCE = 0.1  # DOMAIN.md §7 "Clock jitter" default


@dataclass
class DeviceReadings:
    """Readings of one device: a shared time axis [ns, UTC] and one float array per field (NaN = none)."""

    building: str
    device: str
    role: str
    ts_ns: np.ndarray
    fields: dict[str, np.ndarray]
    wraps_kwh: dict[str, float] = field(default_factory=dict)  # counter field → wrap [kWh]; absent = none


@dataclass(frozen=True)
class BuildingChannels:
    """Interval energy [kWh] per channel, (n,) each, for intervals ``start_ns + k × interval_ns``."""

    building: str
    start_ns: int
    interval_ns: int
    energy_kwh: dict[str, np.ndarray]
    devices: dict[str, tuple[str, ...]]  # channel → devices feeding it
    n_rollovers: int
    n_resets: int
    gap_energy_kwh: float

    @property
    def n(self) -> int:
        return next(iter(self.energy_kwh.values())).size

    @property
    def ts_ns(self) -> np.ndarray:
        return self.start_ns + np.arange(self.n, dtype=np.int64) * self.interval_ns

    @property
    def load_kwh(self) -> np.ndarray:
        return self.energy_kwh["load_ac"] + self.energy_kwh["load_dc"]


def merge_readings(readings: Iterable[DeviceReadings]) -> list[DeviceReadings]:
    """Join pieces of the same device (several series or chunks) into one time-sorted record."""
    by_device: dict[tuple[str, str], list[DeviceReadings]] = {}
    for r in readings:
        by_device.setdefault((r.building, r.device), []).append(r)
    out = []
    for parts in by_device.values():
        if len(parts) == 1:
            r = parts[0]
        else:
            names = sorted({f for p in parts for f in p.fields})
            ts = np.concatenate([p.ts_ns for p in parts])
            cols = {f: np.concatenate([p.fields.get(f, np.full(p.ts_ns.size, np.nan)) for p in parts])
                    for f in names}
            wraps = {k: v for p in parts for k, v in p.wraps_kwh.items()}
            r = DeviceReadings(parts[0].building, parts[0].device, parts[0].role, ts, cols, wraps)
        order = np.argsort(r.ts_ns, kind="stable")
        out.append(DeviceReadings(r.building, r.device, r.role, np.ascontiguousarray(r.ts_ns[order]),
                                  {f: np.ascontiguousarray(v[order], dtype=np.float64) for f, v in r.fields.items()},
                                  r.wraps_kwh))
    return out


def building_channels(
    readings: Iterable[DeviceReadings],
    building: str,
    start_ns: int,
    n_intervals: int,
    interval_ns: int,
    *,
    p_max_kw: float | None = None,
) -> BuildingChannels:
    """Interval energy of every channel of ``building`` (table in the module docstring).

    ``p_max_kw`` is the plausible maximum power of a metered circuit: a wrapped decrease above
    ``p_max_kw × Δt`` is a reset, not a rollover; ``None`` accepts every decrease that fits the wrap.
    """
    mine = [r for r in readings if r.building == building]
    # without a grid meter the building's import is unknown, not zero
    unknown = () if any(r.role == "grid_meter" for r in mine) else ("grid_import", "grid_export")
    energy = {c: np.full(n_intervals, np.nan if c in unknown else 0.0) for c in CHANNELS}
    devices: dict[str, list[str]] = {c: [] for c in CHANNELS}
    rollovers = resets = 0
    gap = 0.0
    for r in mine:
        for channel, (role, candidates) in CHANNEL_SOURCES.items():
            if r.role != role:
                continue
            name = next((f for f in candidates if f in r.fields), None)
            if name is None:
                continue
            wrap = r.wraps_kwh.get(name, 0.0)
            result = interval_energy(
                r.ts_ns, r.fields[name], interval_ns, wrap_kwh=wrap,
                p_max_kw=(math.inf if p_max_kw is None else p_max_kw) if wrap > 0 else None,
                start_ns=start_ns, n_intervals=n_intervals, snap_tolerance=SNAP_TOLERANCE,
            )
            energy[channel] = energy[channel] + result.energy_kwh
            devices[channel].append(r.device)
            rollovers += result.n_rollovers
            resets += result.n_resets
            gap += float(np.sum(result.gap_energy_kwh))
    return BuildingChannels(building, int(start_ns), int(interval_ns), energy,
                            {c: tuple(d) for c, d in devices.items()}, rollovers, resets, gap)


def soc_at(ts_ns: np.ndarray, soc_pct: np.ndarray, points_ns: np.ndarray, interval_ns: int) -> np.ndarray:
    """SoC [%] at each grid point: the last reading at or before it (a reading up to 10 % of an
    interval late is snapped back onto it), no older than one interval; NaN otherwise."""
    ok = ~np.isnan(soc_pct)
    ts, soc = ts_ns[ok], soc_pct[ok]
    points = np.asarray(points_ns, dtype=np.int64)
    if ts.size == 0:
        return np.full(points.size, np.nan)
    tol = int(SNAP_TOLERANCE * interval_ns)
    idx = np.searchsorted(ts, points + tol, side="right") - 1
    found = idx >= 0
    safe = np.maximum(idx, 0)
    fresh = found & (ts[safe] >= points - interval_ns)
    return np.where(fresh, soc[safe], np.nan)


def battery_soc(readings: Iterable[DeviceReadings], device: str, points_ns: np.ndarray,
                interval_ns: int) -> np.ndarray:
    """SoC [%] of battery ``device`` at grid points (see :func:`soc_at`); NaN when it has no readings."""
    for r in readings:
        if r.device == device and SOC_FIELD in r.fields:
            return soc_at(r.ts_ns, r.fields[SOC_FIELD], points_ns, interval_ns)
    return np.full(np.asarray(points_ns).size, np.nan)
