"""SunSpec discovery over Modbus: find the ``SunS`` marker, walk the model chain, build Points.

Separate from :mod:`drivers.modbus._sunspec` (model layouts and register images) because its default
mapping is the union of the shipped SunSpec profiles' maps, and the profile loader itself builds on
the model layouts: profiles ← layouts, discovery ← both, with no cycle (SunSpec Information Model
Specification, "Device Modbus map": marker at 0, 40000 or 50000; model id, length, end model 0xFFFF).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from drivers.errors import SunSpecError
from drivers.modbus._points import Point
from drivers.modbus._profiles import sunspec_field_maps
from drivers.modbus._sunspec import DEFAULT_BASES, END_MODEL_ID, SUNS_MARKER, FieldMap, points_from_registers


async def _read(client: Any, device_id: int, address: int, count: int) -> list[int] | None:
    rr = await client.read_holding_registers(address, count=count, device_id=device_id)
    if rr.isError():
        return None
    return list(rr.registers)


async def discover_sunspec(
    client: Any,
    device_id: int,
    bases: Sequence[int] = DEFAULT_BASES,
    mapping: Iterable[FieldMap] | None = None,
) -> list[Point]:
    """Find the marker, walk the model chain over Modbus and build Points (SFs read once).

    ``client`` is a connected pymodbus async client; ``mapping`` defaults to the union of the
    ``sunspec_*`` profiles' maps.  Each model is read in requests of at most 125 registers.
    """
    if mapping is None:
        mapping = sunspec_field_maps()
    for base in bases:
        head = await _read(client, device_id, base, 2)
        if head is None or tuple(head) != SUNS_MARKER:
            continue
        regs = list(head)
        addr = base + 2
        while True:
            hdr = await _read(client, device_id, addr, 2)
            if hdr is None:  # some devices end the map right after the end model's id
                last = await _read(client, device_id, addr, 1)
                if last != [END_MODEL_ID]:
                    raise SunSpecError(f"model chain broken at {addr}")
                hdr = [END_MODEL_ID, 0]
            regs.extend(hdr)
            if hdr[0] == END_MODEL_ID:
                return points_from_registers(regs, base, mapping)
            length = hdr[1]
            pos = addr + 2
            while pos < addr + 2 + length:
                count = min(125, addr + 2 + length - pos)
                block = await _read(client, device_id, pos, count)
                if block is None:
                    raise SunSpecError(f"model {hdr[0]} at {addr}: read of {count} at {pos} refused")
                regs.extend(block)
                pos += count
            addr += 2 + length
    raise SunSpecError(f"no SunSpec marker at any of {tuple(bases)}")
