"""Physics of a simulated PEDF building: PV, battery, DC bus with droop, flexible loads, grid meter.

Topology: grid ─ meter ─ AC bus (AC loads, PV inverter) ─ grid converter ─ DC bus (375 V) ─
battery DC/DC converter, flexible DC loads.  Every power is constant over a step, so each energy
counter is the exact integral of its power and the building balance

    PV_ac + import + discharge = load_ac + load_dc + export + charge + losses

holds at every step (DOMAIN.md §7), with losses = grid-converter loss + battery-converter loss,
each from its efficiency model.  PV is counted at the inverter's AC terminals (what its SunSpec WH
counter reports); the inverter's own loss is reported separately.  Charge/discharge are counted at
the battery terminals; the battery's internal (coulombic) loss shows only in its SoC.

Sources of the formulas:
- Solar declination δ = 23.45°·sin(360°·(284 + n)/365) (Cooper 1969); equation of time
  EoT = 9.87·sin 2B − 7.53·cos B − 1.5·sin B minutes, B = 360°(n − 81)/365; hour angle 15°/h from
  solar noon; sin α = sin φ sin δ + cos φ cos δ cos ω (PVEducation, "Solar time", "Elevation angle").
- Air mass AM = 1/(sin α + 0.50572·(α + 6.07995°)^−1.6364) (Kasten & Young 1989); clear-sky direct
  normal irradiance DNI = 1.353·0.7^(AM^0.678) kW/m² and global ≈ 1.1·DNI·sin α (Meinel & Meinel
  1976, as given by PVEducation, "Air mass").
- Converter loss P_loss = P_r·(p_self + v_loss·x + r_loss·x²), x = |P|/P_r, zero when the converter
  carries no power (Schmidt & Sauer 1996, "Wechselrichter-Wirkungsgrade", Sonnenenergie 4/1996).
- DC bus droop with power offset: P_i = P_set,i + (V_ref,i − V)/r_i (DOMAIN.md §1, "bus voltage as the
  signal"); the bus voltage solves Σ P_i = P_load_dc.
- Battery SoC limits per step: P_dis ≤ (SoC − SoC_min)·E·η_d/Δt, P_ch ≤ (SoC_max − SoC)·E/(η_c·Δt)
  (DOMAIN.md §4).
Defaults (sizes, efficiencies, load shapes) are illustrative site parameters, not published figures.
Converter ratings enter only the loss models: the default grid converter (150 kW) carries the
largest DC load plus full battery charging, so no curtailment logic is needed at these sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo

import numpy as np

SHANGHAI = timezone(timedelta(hours=8))


@dataclass(frozen=True, slots=True)
class LossModel:
    """Schmidt–Sauer converter loss; argument is the power at the port named by the caller."""

    p_rated_kw: float
    p_self: float = 0.003
    v_loss: float = 0.008
    r_loss: float = 0.015

    def loss(self, p_kw: float) -> float:
        x = abs(p_kw)
        if x == 0.0:
            return 0.0
        r = self.p_rated_kw
        return r * self.p_self + self.v_loss * x + self.r_loss * x * x / r

    def _abc(self) -> tuple[float, float, float]:
        return self.p_rated_kw * self.p_self, self.v_loss, self.r_loss / self.p_rated_kw

    def max_out_for_in(self, p_in_kw: float) -> float:
        """Largest x ≥ 0 with x + loss(x) ≤ p_in (input port must also cover the loss)."""
        a, b, c = self._abc()
        if p_in_kw <= a:
            return 0.0
        return (-(1 + b) + math.sqrt((1 + b) ** 2 + 4 * c * (p_in_kw - a))) / (2 * c)

    def max_in_for_out(self, p_out_kw: float) -> float:
        """Largest y ≥ 0 with y − loss(y) ≤ p_out (what reaches the far port is bounded)."""
        a, b, c = self._abc()
        disc = (1 - b) ** 2 - 4 * c * (a + p_out_kw)
        if disc < 0:
            return math.inf
        return ((1 - b) - math.sqrt(disc)) / (2 * c)


@dataclass(frozen=True, slots=True)
class SiteParams:
    latitude_deg: float = 31.23  # Shanghai
    tz: tzinfo = SHANGHAI  # the load shapes follow local clock time
    longitude_deg: float = 121.47
    pv_kwp: float = 120.0
    pv_derate: float = 0.85
    pv_inverter: LossModel = LossModel(100.0, 0.002, 0.01, 0.02)
    battery_kwh: float = 200.0
    p_charge_max_kw: float = 50.0  # at the battery terminals
    p_discharge_max_kw: float = 50.0
    eta_charge: float = 0.95
    eta_discharge: float = 0.95
    soc_min: float = 0.10
    soc_max: float = 0.95
    soc_initial: float = 0.50
    battery_converter: LossModel = LossModel(60.0)
    grid_converter: LossModel = LossModel(150.0)
    v_dc_nominal_v: float = 375.0
    v_dc_band: float = 0.05  # reference setpoints stay within nominal ± band (DOMAIN.md §1: unverified)
    r_grid_v_per_kw: float = 0.1  # stiff: 10 kW per volt of deviation
    r_battery_v_per_kw: float = 0.4
    ac_base_kw: float = 25.0
    ac_office_kw: float = 45.0
    dc_base_kw: float = 8.0
    dc_flex_kw: float = 30.0
    dc_limit_max_kw: float = 100.0
    cloudiness: float = 0.3  # 0 = clear sky every day, 1 = heavy, fast-changing cloud
    v_ac_v: float = 230.0
    f_hz: float = 50.0
    pf: float = 0.98


def solar_elevation_deg(t: datetime, lat_deg: float, lon_deg: float) -> float:
    """Solar elevation angle (Cooper declination, PVEducation solar time); t is aware."""
    utc = t.astimezone(UTC)
    n = utc.timetuple().tm_yday
    decl = math.radians(23.45) * math.sin(math.radians(360.0 * (284 + n) / 365.0))
    b = math.radians(360.0 * (n - 81) / 365.0)
    eot_min = 9.87 * math.sin(2 * b) - 7.53 * math.cos(b) - 1.5 * math.sin(b)
    hours = utc.hour + utc.minute / 60 + (utc.second + utc.microsecond / 1e6) / 3600
    solar_time = hours + lon_deg / 15.0 + eot_min / 60.0
    omega = math.radians(15.0 * (solar_time - 12.0))
    lat = math.radians(lat_deg)
    s = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(omega)
    return math.degrees(math.asin(max(-1.0, min(1.0, s))))


def clear_sky_ghi_kw_m2(elevation_deg: float) -> float:
    """Global horizontal irradiance under clear sky (Meinel air-mass model, Kasten–Young AM)."""
    if elevation_deg <= 0.0:
        return 0.0
    sin_a = math.sin(math.radians(elevation_deg))
    am = 1.0 / (sin_a + 0.50572 * (elevation_deg + 6.07995) ** -1.6364)
    return 1.1 * 1.353 * 0.7 ** (am**0.678) * sin_a


def _smooth_window(h: float, start: float, end: float, ramp: float = 1.0) -> float:
    """0 outside [start, end], 1 inside, raised-cosine ramps of ``ramp`` hours at both ends."""
    if h <= start - ramp or h >= end + ramp:
        return 0.0
    if start <= h <= end:
        return 1.0
    d = (start - h) if h < start else (h - end)
    return 0.5 * (1 + math.cos(math.pi * d / ramp))


@dataclass(slots=True)
class _Noise:
    """Seeded per-day noise on a 10-minute grid, linearly interpolated: same seed, same day."""

    seed: int
    cloudiness: float
    cache: dict[int, np.ndarray] = field(default_factory=dict)

    def day(self, day: int) -> np.ndarray:
        if day not in self.cache:
            rng = np.random.default_rng([self.seed, day + 10_000])
            n = 145
            clear = np.empty(n)
            x = 1.0
            shocks = rng.normal(0.0, 1.0, n)
            for i in range(n):  # AR(1) clearness index, mean-reverting to 1 − cloudiness/2
                x = 0.8 * x + 0.2 * (1 - self.cloudiness / 2) + 0.25 * self.cloudiness * shocks[i]
                clear[i] = min(1.0, max(0.15, x))
            loads = 1.0 + 0.08 * rng.normal(0.0, 1.0, (2, n))
            self.cache[day] = np.vstack([clear, loads])
            if len(self.cache) > 8:
                self.cache.pop(min(self.cache))
        return self.cache[day]

    def at(self, epoch_s: float) -> tuple[float, float, float]:
        day, rem = divmod(epoch_s, 86400.0)
        arr = self.day(int(day))
        pos = rem / 600.0
        i = int(pos)
        w = pos - i
        v = arr[:, i] * (1 - w) + arr[:, i + 1] * w
        return float(v[0]), float(v[1]), float(v[2])


_CHANNELS = (
    "pv_ac",
    "pv_dc",
    "pv_inverter_loss",
    "import",
    "export",
    "charge",
    "discharge",
    "load_ac",
    "load_dc",
    "dc_curtailed",
    "losses",
    "grid_converter_loss",
    "battery_converter_loss",
    "battery_internal_loss",
    "gc_ac_in",
    "gc_ac_out",
    "gc_dc_in",
    "gc_dc_out",
    "bat_bus_in",
    "bat_bus_out",
)


class BuildingModel:
    """A PEDF building stepped in time; setpoints arrive from the Modbus side, clamped to limits."""

    def __init__(self, params: SiteParams | None = None, *, seed: int = 0, start: datetime | None = None):
        self.p = params or SiteParams()
        if start is None:
            start = datetime.now(self.p.tz).replace(hour=0, minute=0, second=0, microsecond=0)
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.start = start
        self.elapsed_s = 0.0
        self._noise = _Noise(seed, self.p.cloudiness)
        self.soc = self.p.soc_initial
        self.battery_p_set_kw = 0.0
        self.battery_v_ref_v = self.p.v_dc_nominal_v
        self.grid_v_ref_v = self.p.v_dc_nominal_v
        self.dc_limit_kw = self.p.dc_limit_max_kw
        self.energy_kwh = dict.fromkeys(_CHANNELS, 0.0)
        self.now: dict[str, float] = {}
        self._solve(0.0)

    @property
    def t(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed_s)

    # ------------------------------------------------------------------ setpoints (clamped)
    def set_battery_power(self, p_kw: float) -> float:
        self.battery_p_set_kw = min(self.p.p_discharge_max_kw, max(-self.p.p_charge_max_kw, float(p_kw)))
        return self.battery_p_set_kw

    def set_dc_limit(self, p_kw: float) -> float:
        self.dc_limit_kw = min(self.p.dc_limit_max_kw, max(0.0, float(p_kw)))
        return self.dc_limit_kw

    def _clamp_v(self, v: float) -> float:
        nominal, band = self.p.v_dc_nominal_v, self.p.v_dc_band
        return min(nominal * (1 + band), max(nominal * (1 - band), float(v)))

    def set_grid_v_ref(self, v: float) -> float:
        self.grid_v_ref_v = self._clamp_v(v)
        return self.grid_v_ref_v

    def set_battery_v_ref(self, v: float) -> float:
        self.battery_v_ref_v = self._clamp_v(v)
        return self.battery_v_ref_v

    # ------------------------------------------------------------------ physics
    def _battery_bus_limits(self, dt_h: float) -> tuple[float, float]:
        """Bus-port power range of the battery converter from power and SoC limits."""
        p = self.p
        up_t = p.p_discharge_max_kw
        room_t = p.p_charge_max_kw
        if dt_h > 0:
            up_t = min(up_t, max(0.0, (self.soc - p.soc_min) * p.battery_kwh * p.eta_discharge / dt_h))
            room_t = min(room_t, max(0.0, (p.soc_max - self.soc) * p.battery_kwh / (p.eta_charge * dt_h)))
        conv = p.battery_converter
        return -min(conv.max_in_for_out(room_t), conv.p_rated_kw), min(
            conv.max_out_for_in(up_t), conv.p_rated_kw
        )

    def _solve(self, dt_h: float) -> None:
        p = self.p
        t = self.t
        clear, n_ac, n_dc = self._noise.at(t.timestamp())
        local = t.astimezone(p.tz)
        local_h = local.hour + local.minute / 60 + local.second / 3600
        # PV: array DC power, inverter loss on the DC input, clipped at the inverter rating
        elev = solar_elevation_deg(t, p.latitude_deg, p.longitude_deg)
        pv_dc = p.pv_kwp * p.pv_derate * clear_sky_ghi_kw_m2(elev) * clear
        inv = p.pv_inverter
        pv_ac = pv_dc - inv.loss(pv_dc) if pv_dc > 0 else 0.0
        if pv_ac <= 0.0:  # below the inverter's own consumption: it stays off
            pv_ac, pv_dc = 0.0, 0.0
        elif pv_ac > inv.p_rated_kw:  # clipping: the tracker leaves the MPP until AC = rating
            pv_ac, pv_dc = inv.p_rated_kw, inv.max_in_for_out(inv.p_rated_kw)
        # loads
        load_ac = max(0.0, (p.ac_base_kw + p.ac_office_kw * _smooth_window(local_h, 8.0, 18.0)) * n_ac)
        demand_dc = max(0.0, (p.dc_base_kw + p.dc_flex_kw * _smooth_window(local_h, 9.0, 17.0)) * n_dc)
        load_dc = min(demand_dc, self.dc_limit_kw)
        # DC bus: droop of grid converter and battery, battery clamped to its limits
        g_g, g_b = 1.0 / p.r_grid_v_per_kw, 1.0 / p.r_battery_v_per_kw
        v_free = (self.battery_p_set_kw + self.battery_v_ref_v * g_b + self.grid_v_ref_v * g_g - load_dc) / (
            g_b + g_g
        )
        lo, hi = self._battery_bus_limits(dt_h)
        p_bat = min(hi, max(lo, self.battery_p_set_kw + (self.battery_v_ref_v - v_free) * g_b))
        loss_bat = p.battery_converter.loss(p_bat)
        p_bat_t = p_bat + loss_bat  # terminal power, + = discharge
        if p_bat < 0 and p_bat_t > 0:  # too little to cover the converter's own loss: idle
            p_bat, loss_bat, p_bat_t = 0.0, 0.0, 0.0
        p_gc_dc = load_dc - p_bat
        v_dc = self.grid_v_ref_v - p_gc_dc * p.r_grid_v_per_kw
        loss_gc = p.grid_converter.loss(p_gc_dc)
        p_gc_ac = p_gc_dc + loss_gc
        p_grid = load_ac + p_gc_ac - pv_ac
        self.now = {
            "pv_dc_kw": pv_dc,
            "pv_ac_kw": pv_ac,
            "pv_inverter_loss_kw": pv_dc - pv_ac,
            "elevation_deg": elev,
            "clear_index": clear,
            "load_ac_kw": load_ac,
            "demand_dc_kw": demand_dc,
            "load_dc_kw": load_dc,
            "battery_bus_kw": p_bat,
            "battery_terminal_kw": p_bat_t,
            "battery_converter_loss_kw": loss_bat,
            "grid_converter_dc_kw": p_gc_dc,
            "grid_converter_ac_kw": p_gc_ac,
            "grid_converter_loss_kw": loss_gc,
            "grid_kw": p_grid,
            "v_dc_v": v_dc,
            "soc": self.soc,
            "battery_p_min_kw": lo,
            "battery_p_max_kw": hi,
        }

    def step(self, dt_s: float) -> None:
        """Advance by dt_s seconds: powers from the state at the step's start, held over the step."""
        if dt_s < 0:
            raise ValueError("dt_s must be ≥ 0")
        dt_h = dt_s / 3600.0
        self._solve(dt_h)
        n, p = self.now, self.p
        pt = n["battery_terminal_kw"]
        internal = pt / p.eta_discharge if pt > 0 else pt * p.eta_charge
        soc_new = self.soc - internal * dt_h / p.battery_kwh
        self.soc = min(p.soc_max, max(p.soc_min, soc_new)) if dt_h > 0 else self.soc
        gc, pb = n["grid_converter_dc_kw"], n["battery_bus_kw"]
        flows = {
            "pv_ac": n["pv_ac_kw"],
            "pv_dc": n["pv_dc_kw"],
            "pv_inverter_loss": n["pv_inverter_loss_kw"],
            "import": max(n["grid_kw"], 0.0),
            "export": max(-n["grid_kw"], 0.0),
            "charge": max(-pt, 0.0),
            "discharge": max(pt, 0.0),
            "load_ac": n["load_ac_kw"],
            "load_dc": n["load_dc_kw"],
            "dc_curtailed": n["demand_dc_kw"] - n["load_dc_kw"],
            "grid_converter_loss": n["grid_converter_loss_kw"],
            "battery_converter_loss": n["battery_converter_loss_kw"],
            "losses": n["grid_converter_loss_kw"] + n["battery_converter_loss_kw"],
            "battery_internal_loss": abs(pt) - abs(internal) if pt < 0 else internal - pt,
            "gc_ac_in": max(n["grid_converter_ac_kw"], 0.0),
            "gc_ac_out": max(-n["grid_converter_ac_kw"], 0.0),
            "gc_dc_in": max(-gc, 0.0),
            "gc_dc_out": max(gc, 0.0),
            "bat_bus_in": max(-pb, 0.0),
            "bat_bus_out": max(pb, 0.0),
        }
        for k, v in flows.items():
            self.energy_kwh[k] += v * dt_h
        self.elapsed_s += dt_s
        self.now["soc"] = self.soc

    def totals(self) -> dict[str, float]:
        """Energy per channel since start, kWh (``e_<channel>_kwh``), plus the balance residual."""
        e = self.energy_kwh
        out = {f"e_{k}_kwh": v for k, v in e.items()}
        out["balance_residual_kwh"] = (e["pv_ac"] + e["import"] + e["discharge"]) - (
            e["load_ac"] + e["load_dc"] + e["export"] + e["charge"] + e["losses"]
        )
        out["soc_pct"] = 100.0 * self.soc
        return out
