"""A polled device as the poller holds it: its spec (from the site file), its counters, and what is
built once from its points — the request plan, the decoder, the pymodbus calls with bound arguments.

Plans and decoders depend only on the points, the limits and the learned holes, so devices stamped
from one profile share one copy (:class:`_Layout`): at 1,000 devices that saves ~5 KB of index
arrays per device.  A layout with learned holes (:mod:`drivers.modbus._adaptive`) plans and decodes
only the points clear of them and scatters their values into the full row, NaN for the others.

Device state, as status shows it: ``up`` (its last poll gave values), ``degraded`` (it answers but
its last poll gave none: refused, or never polled successfully yet, or one unanswered poll short of
``down``), ``down`` (unanswered polls in a row: polled with backoff).
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from drivers.modbus._adaptive import LearnedHole, readable_points
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
    learned_holes: tuple[LearnedHole, ...] = ()  # what an earlier run learned (kept by the caller)
    reprobe_holes_s: float = 3600.0  # how long a learned hole is trusted before it is tried again


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
    state: str = "degraded"  # "up" | "degraded" | "down", see the module docstring
    learned_holes: tuple[LearnedHole, ...] = ()


@dataclass(slots=True)
class _ReadCall:
    call: Callable[[], Awaitable]  # the pymodbus read, arguments bound
    function_code: int
    address: int
    count: int
    bits: bool


class _Layout:
    """What depends only on a device's points, limits and learned holes: the request plan and the
    decoder (of the readable points; ``readable`` maps them into the full row when some are not).

    Shared by every device with the same layout (a profile stamped across many devices): the
    decoder keeps no state between polls, and at 1,000 devices one copy instead of a thousand saves
    ~5 KB of index arrays and plan tuples per device.
    """

    __slots__ = ("__weakref__", "decoder", "plan", "points", "readable", "width")

    def __init__(self, spec: ModbusDeviceSpec, learned: tuple[tuple[int, int, int], ...] = ()) -> None:
        self.points = spec.points
        self.width = len(spec.points)
        self.readable: np.ndarray | None = None
        points = spec.points
        if learned:
            keep = readable_points(spec.points, learned)
            if len(keep) < self.width:
                self.readable = np.asarray(keep, dtype=np.intp)
                points = tuple(spec.points[i] for i in keep)
        self.plan = plan_requests(
            points,
            max_registers=spec.max_registers,
            max_bits=spec.max_bits,
            max_gap=spec.max_gap,
            holes=spec.holes + tuple(h for h in learned if h[2] > h[1]),
            cuts=tuple((fc, start) for fc, start, end in learned if end == start),
        )
        self.decoder: DeviceDecoder | None = (
            DeviceDecoder(points, self.plan, pt_ratio=spec.pt_ratio, ct_ratio=spec.ct_ratio) if points else None
        )

    def decode(self, responses: list) -> tuple[np.ndarray, tuple[str | None, ...] | None]:
        """The full row (NaN for points on a learned hole) from the responses to :attr:`plan`."""
        assert self.decoder is not None
        values, texts = self.decoder.decode(responses)
        if self.readable is None:
            return values, texts
        row = np.full(self.width, np.nan)
        row[self.readable] = values
        if texts is None:
            return row, None
        full: list[str | None] = [None] * self.width
        for j, i in enumerate(self.readable.tolist()):
            full[i] = texts[j]
        return row, tuple(full)


_LAYOUTS: weakref.WeakValueDictionary[tuple, _Layout] = weakref.WeakValueDictionary()


def _layout(spec: ModbusDeviceSpec, learned: tuple[tuple[int, int, int], ...] = ()) -> _Layout:
    key = (spec.points, spec.pt_ratio, spec.ct_ratio, spec.max_registers, spec.max_bits, spec.max_gap, spec.holes,
           learned)
    layout = _LAYOUTS.get(key)
    if layout is None:
        layout = _LAYOUTS[key] = _Layout(spec, learned)
    return layout


class _Device:
    __slots__ = (
        "calls",
        "decoder",
        "interval_ns",
        "layout",
        "learned",
        "line",
        "logger",
        "plan",
        "reported",
        "reprobe_ns",
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
        self.reprobe_ns = round(spec.reprobe_holes_s * 1e9)
        self.stats = DeviceStats(interval_s=spec.interval_s)
        self.learned: dict[tuple[int, int, int], LearnedHole] = {}
        self.calls: tuple[_ReadCall, ...] | None = None
        self.set_learned(spec.learned_holes)
        self.reported = self.stats.learned_holes  # what the caller already knows

    def set_learned(self, holes: tuple[LearnedHole, ...] | list[LearnedHole]) -> None:
        """Replan around these learned holes (the calls are bound again on the next poll)."""
        self.learned = {h.key: h for h in holes}
        self.stats.learned_holes = tuple(sorted(self.learned.values(), key=lambda h: h.key))
        self.layout = _layout(self.spec, tuple(sorted(self.learned)))
        self.decoder = self.layout.decoder or _layout(self.spec).decoder
        self.plan = self.layout.plan
        self.calls = None

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
