"""A polled device as the poller holds it: its spec (from the site file), its counters, and what is
built once from its points — the request plan, the decoder, the pymodbus calls with bound arguments.

Plans and decoders depend only on the points and limits, so devices stamped from one profile share
one copy (:class:`_Layout`): at 1,000 devices that saves ~5 KB of index arrays per device.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from drivers.modbus._codec import DeviceDecoder
from drivers.modbus._link import ModbusLine, SerialLink, TcpLink
from drivers.modbus._plan import plan_requests
from drivers.modbus._points import Point


@dataclass(frozen=True)
class ModbusDeviceSpec:
    name: str
    link: TcpLink | SerialLink
    unit_id: int
    points: tuple[Point, ...]
    interval_s: float = 1.0
    timeout_s: float = 1.0
    retries: int = 1
    pt_ratio: float = 1.0
    ct_ratio: float = 1.0
    max_registers: int = 125
    max_bits: int = 2000
    max_gap: int = 16
    holes: tuple[tuple[int, int, int], ...] = ()
    frame_gap_s: float = 0.0  # silence between frames on a shared line (serial / TCP→RTU gateway)


@dataclass(slots=True)  # one per device: no __dict__ at 1,000 devices
class DeviceStats:
    polls_ok: int = 0
    polls_failed: int = 0
    timeouts: int = 0
    exceptions: dict[int, int] = field(default_factory=dict)  # by Modbus exception code
    malformed: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    overruns: int = 0
    up: bool = True
    last_ok_ns: int | None = None
    interval_s: float = 1.0
    consecutive_failures: int = 0


@dataclass(slots=True)
class _ReadCall:
    call: Callable[[], Awaitable]  # the pymodbus read, arguments bound
    function_code: int
    address: int
    count: int
    bits: bool


class _Layout:
    """What depends only on a device's points and limits: the request plan and the decoder.

    Shared by every device with the same layout (a profile stamped across many devices): the
    decoder keeps no state between polls, and at 1,000 devices one copy instead of a thousand saves
    ~5 KB of index arrays and plan tuples per device.
    """

    __slots__ = ("__weakref__", "decoder", "plan", "points")

    def __init__(self, spec: ModbusDeviceSpec) -> None:
        self.points = spec.points
        self.plan = plan_requests(
            spec.points,
            max_registers=spec.max_registers,
            max_bits=spec.max_bits,
            max_gap=spec.max_gap,
            holes=spec.holes,
        )
        self.decoder = DeviceDecoder(spec.points, self.plan, pt_ratio=spec.pt_ratio, ct_ratio=spec.ct_ratio)


_LAYOUTS: weakref.WeakValueDictionary[tuple, _Layout] = weakref.WeakValueDictionary()


def _layout(spec: ModbusDeviceSpec) -> _Layout:
    key = (spec.points, spec.pt_ratio, spec.ct_ratio, spec.max_registers, spec.max_bits, spec.max_gap, spec.holes)
    layout = _LAYOUTS.get(key)
    if layout is None:
        layout = _LAYOUTS[key] = _Layout(spec)
    return layout


class _Device:
    __slots__ = (
        "calls",
        "decoder",
        "interval_ns",
        "layout",
        "line",
        "logger",
        "plan",
        "spec",
        "stats",
        "timeout_s",
        "unit",
    )

    def __init__(self, spec: ModbusDeviceSpec, line: ModbusLine, logger: logging.Logger) -> None:
        if spec.interval_s <= 0 or spec.timeout_s <= 0 or spec.retries < 0:
            raise ValueError(f"{spec.name}: interval_s and timeout_s must be > 0, retries >= 0")
        if not 0 <= spec.unit_id <= 247:
            raise ValueError(f"{spec.name}: unit_id {spec.unit_id} outside 0..247")
        self.spec, self.line, self.logger = spec, line, logger
        self.unit, self.timeout_s = spec.unit_id, spec.timeout_s
        self.interval_ns = round(spec.interval_s * 1e9)
        self.layout = _layout(spec)
        self.decoder = self.layout.decoder
        self.plan = self.layout.plan
        self.calls: tuple[_ReadCall, ...] | None = None
        self.stats = DeviceStats(interval_s=spec.interval_s)

    def point(self, name: str) -> Point | None:
        """The point called ``name`` (setpoints are rare: a scan, not a dict per device)."""
        return next((p for p in self.layout.points if p.name == name), None)

    def bind(self) -> tuple[_ReadCall, ...]:
        """The planned reads as pymodbus calls with their arguments bound (inside the event loop)."""
        if self.calls is None:
            client = self.line.client
            readers = {
                1: client.read_coils,
                2: client.read_discrete_inputs,
                3: client.read_holding_registers,
                4: client.read_input_registers,
            }
            unit = self.unit
            self.calls = tuple(
                _ReadCall(
                    functools.partial(readers[r.function_code], r.address, count=r.count, device_id=unit),
                    r.function_code,
                    r.address,
                    r.count,
                    r.function_code in (1, 2),
                )
                for r in self.plan.requests
            )
        return self.calls
