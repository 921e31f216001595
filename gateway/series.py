"""What a sample is once it leaves a driver: a series (measurement + tags + typed fields) and a poll.

A poll's values travel as one float64 array (NaN = not reported this time, e.g. inside a
deadband), so the journal stores a poll per row and the encoder formats it without an object per
field.  String fields, rare (a model name), travel beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from drivers.modbus import FieldKind


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """Identity of a series; its fields and their kinds are part of it (a schema change is a new series)."""

    measurement: str
    tags: tuple[tuple[str, str], ...]  # sorted by tag key
    fields: tuple[str, ...]
    kinds: tuple[FieldKind, ...]

    def __post_init__(self) -> None:
        if len(self.fields) != len(self.kinds):
            raise ValueError("every field needs a kind")
        if tuple(sorted(self.tags)) != self.tags:
            raise ValueError("tags must be sorted by key")

    def tag(self, key: str) -> str | None:
        return dict(self.tags).get(key)


@dataclass(slots=True)
class Sample:
    """One poll of one series: values[i] belongs to key.fields[i]; NaN means not reported."""

    series_id: int
    ts_ns: int
    values: np.ndarray  # float64, one per field
    texts: tuple[str | None, ...] | None = field(default=None)  # one per field when the series has str fields
