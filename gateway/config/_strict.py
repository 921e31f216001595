"""The base of every site-file section: unknown keys are errors (a typo must not be ignored), and a
field may be given by its alias (``from`` for ``from_``); no float may be NaN or infinite (``.nan``,
``.inf`` are YAML floats, and no interval, size or ratio means anything with them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)
