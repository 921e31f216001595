"""Devices grouped by the physical line they are on: one poller owns one line (Home Assistant's
hub-per-connection, STYLE.md), so devices behind one TCP→RTU converter or on one serial port never
talk over each other.  The gateway supervises each line's poller: :class:`PollerStats` is what
status shows of that (restarts after an unexpected error, the last one)."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.modbus import LearnedHole, ModbusDeviceSpec, SerialLink, TcpLink
from drivers.modbus import line_key as link_line_key
from gateway.config import Device, SerialConnection, Site
from gateway.journal import HoleRecord


@dataclass(slots=True)
class PollerStats:
    """One line's poller as its supervisor saw it."""

    restarts: int = 0  # after an unexpected exception (a bug): logged with its traceback
    last_error: str | None = None
    last_error_ns: int | None = None


def device_link(device: Device) -> TcpLink | SerialLink:
    conn = device.section.connection
    if isinstance(conn, SerialConnection):
        return SerialLink(conn.port, conn.baudrate, conn.parity, conn.stopbits, conn.bytesize)
    return TcpLink(conn.host, conn.port, "rtu" if conn.type == "rtu_over_tcp" else "socket")


def device_spec(device: Device, learned: tuple[LearnedHole, ...] = ()) -> ModbusDeviceSpec:
    """The driver's spec of a device, with the holes an earlier run learned."""
    s = device.section
    return ModbusDeviceSpec(
        name=s.name,
        link=device_link(device),
        unit_id=s.unit_id,
        points=device.points,
        interval_s=s.interval_s,
        timeout_s=s.timeout_s,
        retries=s.retries,
        pt_ratio=s.pt_ratio,
        ct_ratio=s.ct_ratio,
        max_registers=device.max_registers,
        max_gap=s.max_gap,
        holes=device.holes,
        frame_gap_s=s.frame_gap_ms / 1000.0,
        learned_holes=learned,
        reprobe_holes_s=s.reprobe_holes_s,
    )


def holes_from_records(records: list[HoleRecord]) -> tuple[LearnedHole, ...]:
    return tuple(LearnedHole(r.function_code, r.start, r.end, r.code, r.learned_ns) for r in records)


def holes_to_records(holes: tuple[LearnedHole, ...]) -> list[HoleRecord]:
    return [HoleRecord(h.function_code, h.start, h.end, h.code, h.learned_ns) for h in holes]


def line_key(device: Device) -> str:
    """``tcp:HOST:PORT`` or ``serial:PORT``, the same key the Modbus driver shares connections by."""
    return link_line_key(device_link(device))


def line_groups(site: Site) -> dict[str, tuple[Device, ...]]:
    groups: dict[str, list[Device]] = {}
    for d in site.devices:
        groups.setdefault(line_key(d), []).append(d)
    return {k: tuple(v) for k, v in groups.items()}
