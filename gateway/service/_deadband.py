"""Report by exception: a field is sent when it moved more than its deadband since the last value
sent, or when it has been silent for its maximum silent interval — the usual SCADA gateway rule
(IEC 60870-5-101/104 "spontaneous transmission" with a deadband, and DNP3 event deadbands), with a
heartbeat so a flat value still proves the device is alive.  Suppressed fields become NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from drivers.modbus import Point

DEFAULT_MAX_SILENT_S = 300.0


class DeadbandFilter:
    """Vectorised per-device filter; fields without a deadband always pass.

    A device without any deadband (the common case) keeps no arrays at all: at 1,000 devices the
    four per-field arrays of an idle filter would cost ~1 MB for nothing.
    """

    __slots__ = ("active", "deadband", "last_ts", "last_value", "max_silent_ns")

    def __init__(self, points: Sequence[Point]) -> None:
        self.active = any(p.deadband is not None and np.isfinite(p.deadband) for p in points)
        if not self.active:
            return
        self.deadband = np.array([np.nan if p.deadband is None else p.deadband for p in points], dtype=np.float64)
        silent = [p.max_silent_s or DEFAULT_MAX_SILENT_S for p in points]
        self.max_silent_ns = np.array([int(s * 1e9) for s in silent], dtype=np.int64)
        self.last_value = np.full(len(points), np.nan)
        self.last_ts = np.zeros(len(points), dtype=np.int64)

    def apply(self, ts_ns: int, values: np.ndarray) -> np.ndarray:
        """Return ``values`` with fields inside their deadband set to NaN (a new array when filtered)."""
        if not self.active:
            return values
        moved = np.abs(values - self.last_value) > self.deadband  # False where deadband is NaN
        due = (ts_ns - self.last_ts) >= self.max_silent_ns
        send = moved | due | np.isnan(self.deadband) | np.isnan(self.last_value)
        send &= ~np.isnan(values)
        self.last_value = np.where(send, values, self.last_value)
        self.last_ts = np.where(send, ts_ns, self.last_ts)
        return np.where(send, values, np.nan)
