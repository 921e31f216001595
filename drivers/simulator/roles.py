"""What each simulated device reports: the building model's state as one device's fields.

A device's class (its profile's device_class) says what it is; for a meter, the site file's role
says where it sits (grid connection, AC loads, PV output, DC loads; physics.py topology).  Fields are
the profile's point names with engineering values in the points' units.  Sign
convention (drivers/modbus/profiles/README.md): p_kw is + for import at meters, consumption at loads,
discharge at the battery, generation at PV, AC→DC at the grid converter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from drivers.simulator.physics import BuildingModel

Fields = dict[str, float]


def _three_phase(p_kw: float, v: float, pf: float, split: tuple[float, float, float]) -> Fields:
    """Balanced-ish three-phase readings of a total power (phase shares ``split``)."""
    out: Fields = {"v_l1_v": v, "v_l2_v": v * 1.002, "v_l3_v": v * 0.998, "pf": pf}
    out["v_l12_v"] = out["v_l23_v"] = out["v_l31_v"] = v * 3**0.5
    for k, share in enumerate(split, start=1):
        p = p_kw * share
        out[f"p_l{k}_kw"] = p
        out[f"i_l{k}_a"] = abs(p) * 1000.0 / (v * pf)
    out["p_kw"] = p_kw
    return out


def grid_meter(m: BuildingModel) -> Fields:
    f = _three_phase(m.now["grid_kw"], m.p.v_ac_v, m.p.pf, (0.34, 0.33, 0.33))
    f |= {"f_hz": m.p.f_hz, "e_import_kwh": m.energy_kwh["import"], "e_export_kwh": m.energy_kwh["export"]}
    return f


def ac_load_meter(m: BuildingModel) -> Fields:
    f = _three_phase(m.now["load_ac_kw"], m.p.v_ac_v, m.p.pf, (0.35, 0.33, 0.32))
    f |= {"f_hz": m.p.f_hz, "e_import_kwh": m.energy_kwh["load_ac"], "e_export_kwh": 0.0}
    return f


def pv_inverter(m: BuildingModel) -> Fields:
    p_ac, p_dc = m.now["pv_ac_kw"], m.now["pv_dc_kw"]
    v = m.p.v_ac_v
    v_dc = 620.0 if p_dc > 0 else 0.0
    return {
        "p_kw": p_ac,
        "i_a": p_ac * 1000.0 / v,  # SunSpec 103 A: sum of the three phase currents
        "v_l1_v": v,
        "v_l2_v": v,
        "v_l3_v": v,
        "f_hz": m.p.f_hz,
        "e_gen_kwh": m.energy_kwh["pv_ac"],
        "p_dc_kw": p_dc,
        "v_dc_v": v_dc,
        "t_cab_c": 30.0 + 10.0 * p_ac / m.p.pv_inverter.p_rated_kw,
        "state": 4.0 if p_ac > 0 else 2.0,  # SunSpec 103 St: 4 = MPPT, 2 = SLEEPING
    }


def _v_battery(m: BuildingModel) -> float:
    return 300.0 + 50.0 * m.soc  # linear open-circuit voltage of a 96-cell LFP string (illustrative)


def _cha_state(m: BuildingModel) -> float:
    """SunSpec 124/802 ChaSt: 2 EMPTY, 3 DISCHARGING, 4 CHARGING, 5 FULL, 6 HOLDING."""
    pt = m.now["battery_terminal_kw"]
    if pt > 0:
        return 3.0
    if pt < 0:
        return 4.0
    if m.soc <= m.p.soc_min + 1e-9:
        return 2.0
    if m.soc >= m.p.soc_max - 1e-9:
        return 5.0
    return 6.0


class StorageControls:
    """SunSpec model 124 control state of the battery; maps onto the battery power setpoint."""

    def __init__(self) -> None:
        self.stor_ctl_mod = 0.0
        self.in_w_rte_pct = 0.0
        self.out_w_rte_pct = 0.0

    def apply(self, m: BuildingModel) -> None:
        """bit 1 (discharge) → +OutWRte % of WChaMax; bit 0 (charge) → −InWRte %; both add."""
        mod = int(self.stor_ctl_mod)
        w_max = m.p.p_charge_max_kw
        p = 0.0
        if mod & 2:
            p += self.out_w_rte_pct / 100.0 * w_max
        if mod & 1:
            p -= self.in_w_rte_pct / 100.0 * w_max
        m.set_battery_power(p)


def battery(m: BuildingModel, controls: StorageControls | None = None) -> Fields:
    v = _v_battery(m)
    pt = m.now["battery_terminal_kw"]
    c = controls or StorageControls()
    return {
        "p_kw": pt,
        "i_dc_a": pt * 1000.0 / v,
        "v_dc_v": v,
        "soc_pct": 100.0 * m.soc,
        "cha_state": _cha_state(m),
        "e_rated_kwh": m.p.battery_kwh,
        "e_avail_kwh": max(0.0, (m.soc - m.p.soc_min) * m.p.battery_kwh),
        "p_charge_max_kw": m.p.p_charge_max_kw,
        "soc_min_pct": 100.0 * m.p.soc_min,
        "stor_ctl_mod": c.stor_ctl_mod,
        "in_w_rte_pct": c.in_w_rte_pct,
        "out_w_rte_pct": c.out_w_rte_pct,
    }


def battery_converter(m: BuildingModel) -> Fields:
    n, e = m.now, m.energy_kwh
    return {
        "p_kw": n["battery_bus_kw"],
        "p_bat_kw": n["battery_terminal_kw"],
        "v_dc_v": n["v_dc_v"],
        "i_dc_a": n["battery_bus_kw"] * 1000.0 / n["v_dc_v"],
        "v_bat_v": _v_battery(m),
        "soc_pct": 100.0 * m.soc,
        "e_charge_kwh": e["charge"],
        "e_discharge_kwh": e["discharge"],
        "e_bus_in_kwh": e["bat_bus_in"],
        "e_bus_out_kwh": e["bat_bus_out"],
        "p_set_kw": m.battery_p_set_kw,
        "v_dc_ref_v": m.battery_v_ref_v,
    }


def grid_converter(m: BuildingModel) -> Fields:
    n, e = m.now, m.energy_kwh
    return {
        "p_kw": n["grid_converter_ac_kw"],
        "p_dc_kw": n["grid_converter_dc_kw"],
        "v_dc_v": n["v_dc_v"],
        "i_dc_a": n["grid_converter_dc_kw"] * 1000.0 / n["v_dc_v"],
        "v_ac_v": m.p.v_ac_v,
        "f_hz": m.p.f_hz,
        "state": 1.0,
        "e_ac_in_kwh": e["gc_ac_in"],
        "e_ac_out_kwh": e["gc_ac_out"],
        "e_dc_in_kwh": e["gc_dc_in"],
        "e_dc_out_kwh": e["gc_dc_out"],
        "v_dc_ref_v": m.grid_v_ref_v,
    }


def dc_loads(m: BuildingModel) -> Fields:
    n, e = m.now, m.energy_kwh
    return {
        "p_kw": n["load_dc_kw"],
        "p_demand_kw": n["demand_dc_kw"],
        "v_dc_v": n["v_dc_v"],
        "i_dc_a": n["load_dc_kw"] * 1000.0 / n["v_dc_v"],
        "e_import_kwh": e["load_dc"],
        "e_curtailed_kwh": e["dc_curtailed"],
        "p_limit_kw": m.dc_limit_kw,
    }


def pv_meter(m: BuildingModel) -> Fields:
    """A meter on the PV inverter's AC output: generation flows out of the building side (export)."""
    f = _three_phase(-m.now["pv_ac_kw"], m.p.v_ac_v, m.p.pf, (1 / 3, 1 / 3, 1 / 3))
    f |= {"f_hz": m.p.f_hz, "e_import_kwh": 0.0, "e_export_kwh": m.energy_kwh["pv_ac"]}
    return f


def dc_load_meter(m: BuildingModel) -> Fields:
    f = _three_phase(m.now["load_dc_kw"], m.now["v_dc_v"], 1.0, (1.0, 0.0, 0.0))
    f |= {"f_hz": 0.0, "e_import_kwh": m.energy_kwh["load_dc"], "e_export_kwh": 0.0}
    return f


#: a meter's position in the building, by the site file's role names (drivers/balance.py DeviceRole)
METER_ROLES: Final[dict[str, Callable[[BuildingModel], Fields]]] = {
    "grid_meter": grid_meter,
    "ac_load": ac_load_meter,
    "sub_meter": ac_load_meter,
    "pv": pv_meter,
    "dc_load": dc_load_meter,
}
#: every other device class reports one thing whatever its role is called
CLASS_FIELDS: Final[dict[str, Callable[..., Fields]]] = {
    "pv_inverter": pv_inverter,
    "battery": battery,
    "dc_converter": battery_converter,
    "grid_converter": grid_converter,
    "dc_load_controller": dc_loads,
}


def fields_for(device_class: str, role: str | None) -> Callable[..., Fields]:
    """What a device reports: by its class, and for a meter by its role (default grid_meter)."""
    if device_class == "meter":
        if (role or "grid_meter") not in METER_ROLES:
            raise ValueError(f"a meter's role must be one of {sorted(METER_ROLES)}, not {role!r}")
        return METER_ROLES[role or "grid_meter"]
    return CLASS_FIELDS[device_class]


def apply_setpoint(
    m: BuildingModel, device_class: str, name: str, value: float, controls: StorageControls | None = None
) -> float:
    """Apply a written setpoint to the model; returns the value actually in force (clamped)."""
    if name == "p_set_kw":
        return m.set_battery_power(value)
    if name == "p_limit_kw":
        return m.set_dc_limit(value)
    if name == "v_dc_ref_v":
        return m.set_grid_v_ref(value) if device_class == "grid_converter" else m.set_battery_v_ref(value)
    if name in ("stor_ctl_mod", "in_w_rte_pct", "out_w_rte_pct") and controls is not None:
        setattr(controls, name, float(value))
        controls.apply(m)
        return float(value)
    raise KeyError(f"a {device_class} has no setpoint {name}")
