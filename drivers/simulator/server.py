"""Serve simulated PEDF devices as Modbus TCP servers (pymodbus 3.16 ``SimDevice``), one process.

Each port gets one ``ModbusTcpServer`` holding one ``SimDevice`` per unit id.  A device's registers
are laid out from its profile: holding and input registers as separate blocks (SimDevice 4-tuple
form), registers between points readable (0) except the profile's holes, and only writable points
writable.  The per-request ``action`` hook refreshes the requested registers from the building model
and applies setpoint writes, clamped first to the point's min/max and then to the model's limits
(the clamped value is what lands in the register).  Time runs ``speed`` times faster than the wall
clock in fixed physics steps, so a seed and a start time fix every value at every simulated instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Final

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.balance import BALANCE_TERMS
from drivers.modbus import (
    INTEGER_RANGE,
    FieldMap,
    Point,
    Profile,
    RegisterType,
    build_image,
    decode_value,
    encode_value,
    load_profile,
    make_point,
    model_layout,
)
from drivers.modbus import DataType as RegType
from drivers.simulator import roles
from drivers.simulator.physics import BuildingModel, SiteParams

FAULTS: Final = ("timeout", "exception2", "drop")
#: profiles served as a fixed image (point k holds the value k): benchmarks measure the server, not physics
STATIC_PROFILES: Final = frozenset({"bench60", "bench60u16", "bench60_meter"})
READ_CODES: Final = (3, 4)


@dataclass
class SimulatedDevice:
    name: str
    profile: str
    port: int
    unit_id: int = 1
    host: str = "127.0.0.1"
    role: str | None = None  # a meter's position: grid_meter (default), ac_load, sub_meter, pv, dc_load
    #: added to every energy counter of the device: a meter that was not new when installed, or one
    #: a few kWh below its rollover (2^bits × scale) to exercise a reader's rollover handling
    counter_offset_kwh: float = 0.0


def _encode(point: Point, value: float) -> list[int]:
    """Engineering value → register words (counters floor so they never step back)."""
    raw = (value - point.offset) / point.scale
    t = point.type
    if t in (RegType.FLOAT32, RegType.FLOAT64):
        return encode_value(raw, t, point.word_order, point.byte_order)
    if t is RegType.BOOL:
        return encode_value(bool(raw), t)
    if not math.isfinite(raw):
        raw = 0.0
    lo, hi = INTEGER_RANGE[t]
    if point.counter:
        n = math.floor(raw + 1e-9) % (hi + 1) if lo == 0 else math.floor(raw + 1e-9)
    else:
        n = min(hi, max(lo, round(raw)))
    return encode_value(n, t, point.word_order, point.byte_order)


class _Building:
    """The shared model, advanced in fixed steps to the simulated time the wall clock implies."""

    def __init__(
        self, model: BuildingModel, speed: float, step_s: float, hold_s: float, duration_s: float | None
    ) -> None:
        self.model, self.speed, self.step_s = model, speed, step_s
        self.hold_s, self.duration_s = hold_s, duration_s
        self.t0 = time.monotonic()
        self.controls = roles.StorageControls()

    def advance(self) -> None:
        wall = time.monotonic() - self.t0 - self.hold_s
        target = max(0.0, wall) * self.speed
        if self.duration_s is not None:
            target = min(target, self.duration_s)
        m = self.model
        while m.elapsed_s + self.step_s <= target + 1e-9:
            m.step(self.step_s)


class _DeviceImage:
    """One device's registers and the action hook that keeps them in step with the model."""

    def __init__(
        self, dev: SimulatedDevice, profile: Profile, building: _Building, poll_log: IO[str] | None
    ) -> None:
        self.dev, self.profile, self.building, self.log = dev, profile, building, poll_log
        self.static_image = profile.name in STATIC_PROFILES
        self.cls = profile.device_class
        try:
            self.report = None if self.static_image else roles.fields_for(self.cls, dev.role)
        except ValueError as exc:
            raise ValueError(f"device {dev.name}: {exc}") from exc
        self.by_type: dict[RegisterType, list[tuple[Point, str]]] = {
            RegisterType.HOLDING: [],
            RegisterType.INPUT: [],
        }
        for p in profile.points:
            if p.register_type in self.by_type:
                self.by_type[p.register_type].append((p, p.name))
        self.counters = {p.name for p in profile.points if p.counter}
        self.static: dict[int, int] = {}
        if profile.sunspec is not None:
            self._sunspec_layout(profile)

    def _sunspec_layout(self, profile: Profile) -> None:
        s = profile.sunspec
        assert s is not None
        image = build_image(s.models, s.scale_factors, s.static, s.base)
        self.static = {image.base + i: w for i, w in enumerate(image.registers)}
        for model, pname, src in s.mirrors:
            layout = model_layout(model)
            sf_name = layout.points[pname].sf
            sf = image.scale_factors.get((model, sf_name)) if sf_name else None
            fm = FieldMap(model=model, point=pname, name=f"mirror_{model}_{pname.lower()}")
            point = make_point(fm, image.address_of(model, pname), sf)
            self.by_type[RegisterType.HOLDING].append((point, src))

    # ---------------------------------------------------------------- register layout
    def _block(self, rtype: RegisterType) -> list[SimData]:
        entries = self.by_type[rtype]
        if not entries and not (rtype is RegisterType.HOLDING and self.static):
            return [SimData(0, count=1, datatype=DataType.INVALID)]
        words: dict[int, int] = dict(self.static) if rtype is RegisterType.HOLDING else {}
        writable: set[int] = set()
        values = {} if self.static_image else self.fields()
        for k, (p, src) in enumerate(entries):
            v = float(k) if self.static_image else values[src]
            for k, w in enumerate(_encode(p, v)):
                words[p.address + k] = w
            if p.writable:
                writable.update(range(p.address, p.end))
        lo, hi = min(words), max(words)
        holes = {
            a
            for h in self.profile.holes
            if h.register is rtype
            for a in range(h.address, h.address + h.count)
        }
        out: list[SimData] = []
        run: list[int] = []
        run_start, run_ro = lo, True
        for a in range(lo, hi + 2):
            key = None if a > hi or a in holes else (a not in writable)
            if run and (key is None or key != run_ro):
                out.append(
                    SimData(run_start, count=1, values=run, datatype=DataType.REGISTERS, readonly=run_ro)
                )
                run = []
            if key is None:
                continue
            if not run:
                run_start, run_ro = a, key
            run.append(words.get(a, 0))
        return out

    def sim_device(self) -> SimDevice:
        bits = [SimData(0, count=1, values=[False] * 16, datatype=DataType.BITS)]
        blocks = (bits, list(bits), self._block(RegisterType.HOLDING), self._block(RegisterType.INPUT))
        cheap = self.static_image and self.log is None
        return SimDevice(self.dev.unit_id, simdata=blocks, action=None if cheap else self.action)

    # ---------------------------------------------------------------- per request
    def fields(self) -> dict[str, float]:
        m = self.building.model
        assert self.report is not None
        values = self.report(m, self.building.controls) if self.cls == "battery" else self.report(m)
        if self.dev.counter_offset_kwh:
            for name in self.counters:
                values[name] += self.dev.counter_offset_kwh
        return values

    async def action(
        self,
        fc: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        rtype = RegisterType.INPUT if fc == 4 else RegisterType.HOLDING
        end = address + count
        if set_values is None:
            if not self.static_image:
                self.building.advance()
                values = self.fields()
                for p, src in self.by_type[rtype]:
                    if p.address < end and p.end > address:
                        registers[p.address - start : p.end - start] = _encode(p, values[src])
            if self.log is not None and fc in READ_CODES:
                self.log.write(f"{time.time_ns()} {self.dev.name} {fc} {address} {count}\n")
            return None
        return self._write(start, address, registers, set_values)

    def _write(self, start: int, address: int, registers: list[int], set_values: list) -> ExcCodes | None:
        new = list(registers)
        new[address - start : address - start + len(set_values)] = [int(v) for v in set_values]
        end = address + len(set_values)
        for p, _src in self.by_type[RegisterType.HOLDING]:
            if not p.writable or p.address >= end or p.end <= address:
                continue
            value = decode_value(new[p.address - start : p.end - start], p.type, p.word_order, p.byte_order)
            eng = float(value) * p.scale + p.offset
            if p.min is not None:
                eng = max(p.min, eng)
            if p.max is not None:
                eng = min(p.max, eng)
            try:
                eng = roles.apply_setpoint(self.building.model, self.cls, p.name, eng, self.building.controls)
            except KeyError:
                return ExcCodes.ILLEGAL_ADDRESS
            new[p.address - start : p.end - start] = _encode(p, eng)
        set_values[:] = new[address - start : end - start]
        return None


class _FaultyHandler(ServerRequestHandler):
    """Request handler that can stay silent, refuse, or hang up, per unit id (fault injection)."""

    async def handle_request(self) -> None:
        pdu = self.last_pdu
        if pdu is not None:
            fault = self.server.fault_of(pdu.dev_id)
            if fault == "timeout":
                return
            if fault == "drop":
                self.close()
                return
            if fault == "exception2":
                resp = ExceptionResponse(pdu.function_code, ExcCodes.ILLEGAL_ADDRESS)
                resp.transaction_id, resp.dev_id = pdu.transaction_id, pdu.dev_id
                self.server_send(resp, self.last_addr)
                return
        await super().handle_request()


class _PortServer(ModbusTcpServer):
    def __init__(
        self,
        devices: list[SimDevice],
        names: dict[int, str],
        faults: dict[str, str],
        address: tuple[str, int],
    ) -> None:
        super().__init__(devices, address=address)
        self.names, self.faults = names, faults

    def fault_of(self, unit_id: int) -> str | None:
        return self.faults.get(self.names.get(unit_id, "")) if self.faults else None

    def callback_new_connection(self) -> ServerRequestHandler:
        return _FaultyHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


async def _flush_loop(log: IO[str]) -> None:
    while True:
        await asyncio.sleep(0.05)
        log.flush()


async def serve(
    devices: list[SimulatedDevice],
    *,
    speed: float = 1.0,
    seed: int = 0,
    start_time: datetime | None = None,
    poll_log: Path | None = None,
    faults: dict[str, str] | None = None,
    params: SiteParams | None = None,
    step_s: float = 10.0,
    hold_s: float = 0.0,
    duration_s: float | None = None,
    ready: asyncio.Event | None = None,
    totals_path: Path | None = None,
) -> None:
    """Serve every device until cancelled.

    ``faults`` maps a device name to "timeout" | "exception2" | "drop" and is read on every request,
    so a caller may change it while serving.  ``hold_s`` keeps simulated time at the start for that
    many wall seconds; ``duration_s`` stops simulated time after that many simulated seconds (the
    registers then stay at the final state).  ``ready`` is set once every port listens.
    ``totals_path``: a JSON file rewritten every half second and at the end with the model's
    totals (see :func:`write_totals`).
    """
    faults = faults if faults is not None else {}
    for name, kind in faults.items():
        if kind not in FAULTS:
            raise ValueError(f"fault {kind!r} of {name} is not one of {FAULTS}")
    building = _Building(
        BuildingModel(params, seed=seed, start=start_time), speed, step_s, hold_s, duration_s
    )
    log = poll_log.open("a", encoding="utf-8", buffering=1 << 16) if poll_log else None
    by_port: dict[tuple[str, int], list[tuple[SimulatedDevice, SimDevice]]] = {}
    for dev in devices:
        image = _DeviceImage(dev, load_profile(dev.profile), building, log)
        by_port.setdefault((dev.host, dev.port), []).append((dev, image.sim_device()))
    servers: list[_PortServer] = []
    try:
        for addr, entries in by_port.items():
            ids = [d.unit_id for d, _ in entries]
            if len(set(ids)) != len(ids):
                raise ValueError(f"port {addr[1]}: unit ids {ids} repeat")
            names = {d.unit_id: d.name for d, _ in entries}
            server = _PortServer([s for _, s in entries], names, faults, addr)
            try:
                await server.serve_forever(background=True)
            except RuntimeError as exc:
                raise OSError(f"cannot listen on {addr[0]}:{addr[1]} ({', '.join(names.values())})") from exc
            servers.append(server)
        async with asyncio.TaskGroup() as tg:
            building.t0 = time.monotonic()
            if log is not None:
                tg.create_task(_flush_loop(log))
            if ready is not None:
                ready.set()
            tg.create_task(_tick(building, totals_path))
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                await server.shutdown()
        if log is not None:
            log.close()
        if totals_path is not None:
            write_totals(building.model, totals_path)


async def _tick(building: _Building, totals_path: Path | None) -> None:
    """Advance the model even when nobody polls, so counters integrate the whole simulated time."""
    last_write = 0.0
    while True:
        building.advance()
        if totals_path is not None and time.monotonic() - last_write >= 0.5:
            write_totals(building.model, totals_path)
            last_write = time.monotonic()
        await asyncio.sleep(0.05)


def write_totals(model: BuildingModel, path: Path) -> None:
    """Model totals (kWh per channel since start, ``BuildingModel.totals``), the balance terms by
    name, and the simulated time, written atomically (temp file + rename)."""
    totals: dict[str, object] = dict(model.totals())
    totals |= {term.label: totals[term.simulator_total] for term in BALANCE_TERMS}
    totals["losses"] = totals["e_losses_kwh"]
    totals |= {"simulated_s": model.elapsed_s, "simulated_until": model.t.isoformat()}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(totals, indent=1), encoding="utf-8")
    tmp.replace(path)
