"""The building's energy balance: which device role and which counter field measure each term.

One table for everyone who needs it: the gateway's analysis (channels per building), the demo (the
day's balance from the journal beside the simulator's totals), the simulator (the same terms by
name in its totals file) and the site configuration (the device roles a site file may name).

    PV + grid import + battery discharge = AC load + DC load + grid export + battery charge + losses

(DOMAIN.md §2 "PEDF building balance"; the field names are those of the shipped profiles,
``drivers/modbus/profiles/README.md``, "The building balance").  A PV term may come from an
inverter (``e_gen_kwh``) or from a PV meter (what it exports into the building, ``e_export_kwh``):
the first field a device has is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["BALANCE_TERMS", "DEVICE_ROLES", "SOC_FIELD", "BalanceTerm", "DeviceRole", "balance_term"]

DeviceRole = Literal["grid_meter", "pv", "battery", "dc_bus_converter", "grid_converter", "ac_load", "dc_load",
                     "sub_meter"]
DEVICE_ROLES: Final[tuple[str, ...]] = DeviceRole.__args__  # type: ignore[attr-defined]

SOC_FIELD: Final = "soc_pct"  # the battery's state of charge, read at interval boundaries


@dataclass(frozen=True, slots=True)
class BalanceTerm:
    channel: str  # the channel name in analytics (analytics.balance.CHANNELS)
    label: str  # how reports name it
    role: str  # the device role that measures it
    counter_fields: tuple[str, ...]  # counter fields [kWh], the first one a device has is used
    simulator_total: str  # the model total the simulator writes for it [kWh]


BALANCE_TERMS: Final[tuple[BalanceTerm, ...]] = (
    BalanceTerm("grid_import", "grid import", "grid_meter", ("e_import_kwh",), "e_import_kwh"),
    BalanceTerm("grid_export", "grid export", "grid_meter", ("e_export_kwh",), "e_export_kwh"),
    BalanceTerm("pv", "pv", "pv", ("e_gen_kwh", "e_export_kwh"), "e_pv_ac_kwh"),
    BalanceTerm("charge", "battery charge", "dc_bus_converter", ("e_charge_kwh",), "e_charge_kwh"),
    BalanceTerm("discharge", "battery discharge", "dc_bus_converter", ("e_discharge_kwh",), "e_discharge_kwh"),
    BalanceTerm("load_ac", "ac load", "ac_load", ("e_import_kwh",), "e_load_ac_kwh"),
    BalanceTerm("load_dc", "dc load", "dc_load", ("e_import_kwh",), "e_load_dc_kwh"),
)


def balance_term(channel: str) -> BalanceTerm:
    for term in BALANCE_TERMS:
        if term.channel == channel:
            return term
    raise KeyError(f"no balance term {channel!r}")
