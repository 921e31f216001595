"""Readings a device could not give: counted per point, logged once per point, shown in the status.

The Modbus decoder turns a point's sentinel (0xFFFF, 0x8000, … or the point's own) into NaN, and a
float register can send NaN or ±inf itself; the line protocol cannot carry either, so without this
count such a reading would vanish between the journal and the database with no word.  A poll's
value array holds NaN only there (and in string fields, which travel as text), so one
``isfinite`` per poll finds them, before the deadband filter adds NaNs of its own.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from drivers.modbus import Point

log = logging.getLogger("pedf.values")


@dataclass(slots=True)
class _Points:
    names: tuple[str, ...]
    reasons: tuple[str, ...]
    texts: np.ndarray | None  # positions of string fields (NaN by design), None when there are none
    counts: np.ndarray  # int64, polls with the point not available
    logged: np.ndarray  # bool, the point's first miss has been logged


def reason(point: Point) -> str:
    """What the device sends when ``point`` has no value, for the log line."""
    if point.type.value.startswith("float"):
        declared = f", or {', '.join(repr(v) for v in point.sentinels)}" if point.sentinels else ""
        return f"NaN or ±inf{declared}"
    bits = 16 * point.register_count
    raw = ", ".join(f"0x{int(v) % 2**bits:0{bits // 4}X}" for v in point.sentinels) or "none declared"
    wide = " or a value above the int64 range" if point.type.value == "uint64" and point.field_kind == "int" else ""
    return f"sentinel {raw}{wide}"


class Availability:
    """Per device: how many polls had each point not available."""

    __slots__ = ("_devices", "_missing")

    def __init__(self) -> None:
        self._devices: dict[str, _Points] = {}
        self._missing: set[str] = set()  # devices with a miss: /status of 1,000 devices reads only these

    def register(self, device: str, points: tuple[Point, ...]) -> None:
        old = self._devices.get(device)
        names = tuple(p.name for p in points)
        if old is not None and old.names == names:
            return  # a reload with the same points keeps its counts
        self._missing.discard(device)
        texts = [i for i, p in enumerate(points) if p.field_kind == "str"]
        self._devices[device] = _Points(
            names, tuple(reason(p) for p in points), np.asarray(texts, dtype=np.intp) if texts else None,
            np.zeros(len(points), dtype=np.int64), np.zeros(len(points), dtype=bool))

    def check(self, device: str, values: np.ndarray) -> None:
        # the usual poll, every value finite: one dot product (a NaN or ±inf makes it non-finite,
        # squares cannot cancel) is about three times cheaper than isfinite + any
        if math.isfinite(values @ values):
            return
        missing = ~np.isfinite(values)
        entry = self._devices[device]
        if entry.texts is not None:
            missing[entry.texts] = False
        if not missing.any():
            return
        entry.counts += missing
        first = missing & ~entry.logged
        if first.any():
            entry.logged |= first
            self._missing.add(device)
            for i in np.flatnonzero(first).tolist():
                log.warning("%s.%s: not available (the device sent %s); left out of the sinks, counted per "
                            "point in pedf status", device, entry.names[i], entry.reasons[i],
                            extra={"fields": {"device": device, "point": entry.names[i]}})

    def counts(self) -> dict[str, dict[str, int]]:
        """Devices with a point that was not available at least once → point → polls."""
        out: dict[str, dict[str, int]] = {}
        for device in sorted(self._missing):
            entry = self._devices[device]
            out[device] = {entry.names[i]: int(entry.counts[i]) for i in np.flatnonzero(entry.counts).tolist()}
        return out
