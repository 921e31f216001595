"""Modbus: the request planner, the columnar codec, one owner per physical line, the poller, SunSpec,
and device profiles as data (``profiles/*.yaml``).

What other packages may use is named here; the ``_`` modules behind it are private.
Imports: the standard library, pymodbus, pysunspec2, numpy and :mod:`drivers.errors` only.
"""

from __future__ import annotations

from drivers.errors import ProfileError, SunSpecError
from drivers.modbus._adaptive import LearnedHole
from drivers.modbus._client import ModbusPoller
from drivers.modbus._codec import DeviceDecoder, encode_write
from drivers.modbus._device import DeviceStats, ModbusDeviceSpec
from drivers.modbus._link import SerialLink, TcpLink, line_key
from drivers.modbus._plan import ReadRequest, RequestPlan, plan_requests
from drivers.modbus._points import FieldKind, Point
from drivers.modbus._profiles import Hole, Profile, available_profiles, load_profile, sunspec_field_maps
from drivers.modbus._registers import INTEGER_RANGE, DataType, Order, RegisterType, decode_value, encode_value
from drivers.modbus._sunspec import FieldMap, build_image, make_point, model_layout
from drivers.modbus._sunspec_scan import discover_sunspec

__all__ = [
    "INTEGER_RANGE",
    "DataType",
    "DeviceDecoder",
    "DeviceStats",
    "FieldKind",
    "FieldMap",
    "Hole",
    "LearnedHole",
    "ModbusDeviceSpec",
    "ModbusPoller",
    "Order",
    "Point",
    "Profile",
    "ProfileError",
    "ReadRequest",
    "RegisterType",
    "RequestPlan",
    "SerialLink",
    "SunSpecError",
    "TcpLink",
    "available_profiles",
    "build_image",
    "decode_value",
    "discover_sunspec",
    "encode_value",
    "encode_write",
    "line_key",
    "load_profile",
    "make_point",
    "model_layout",
    "plan_requests",
    "sunspec_field_maps",
]
