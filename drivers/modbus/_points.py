"""A device point: where a value sits in a device's registers and how it becomes a field.

Engineering value = raw × scale × ratio + offset, where ratio is the device's PT ratio, CT ratio,
their product, or 1, as the point says (metering practice for CT/PT-connected meters, e.g. Acrel
DDSY1352: "values scale with PT/CT ratios", see DOMAIN.md §6).  Field names carry their unit as a
suffix (``p_kw``, ``e_import_kwh``).

"Not available": a device that has no value for a register answers with a sentinel, by data type the
SunSpec "unimplemented" values (SunSpec Information Model Reference, "Unimplemented values"):
int16 0x8000, uint16 0xFFFF, int32 0x80000000, uint32 0xFFFFFFFF, int64 0x8000000000000000, uint64
0xFFFFFFFFFFFFFFFF; float registers send NaN (or ±inf).  A point may declare its own raw values
(``not_available: [0x7FFF]``, the register's bit pattern or its signed value) or none
(``not_available: []``).  Counters get no default: an accumulator passes through its all-ones value
on the way to its rollover, and SunSpec's "not accumulated" is 0, which a new meter reads too.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.modbus._registers import INTEGER_RANGE, REGISTER_COUNT, DataType, Order, RegisterType, is_bit_register

FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
Ratio = Literal["none", "pt", "ct", "pt*ct"]
FieldKind = Literal["float", "int", "bool", "str"]

#: the data type's "not available" raw value, as the decoded (signed or unsigned) integer
DEFAULT_NOT_AVAILABLE: dict[DataType, int] = {
    DataType.INT16: -(2**15),
    DataType.UINT16: 2**16 - 1,
    DataType.INT32: -(2**31),
    DataType.UINT32: 2**32 - 1,
    DataType.INT64: -(2**63),
    DataType.UINT64: 2**64 - 1,
}


class Point(BaseModel):
    """One readable (and maybe writable) value of a device."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    name: str = Field(pattern=FIELD_NAME.pattern, description="field name with unit suffix, e.g. p_kw")
    register_type: RegisterType = Field(alias="register")
    address: int = Field(ge=0, le=65535)
    type: DataType = DataType.UINT16
    length: int | None = Field(default=None, ge=1, le=123, description="registers of a string")
    word_order: Order = Order.BIG
    byte_order: Order = Order.BIG
    scale: float = Field(default=1.0, ge=-1e9, le=1e9)
    offset: float = Field(default=0.0, ge=-1e12, le=1e12)
    ratio: Ratio = "none"
    unit: str | None = None
    writable: bool = False
    min: float | None = Field(default=None, ge=-1e15, le=1e15)
    max: float | None = Field(default=None, ge=-1e15, le=1e15)
    deadband: float | None = Field(default=None, ge=0, le=1e15)
    max_silent_s: float | None = Field(default=None, gt=0, le=7 * 86400)
    counter: bool = False
    not_available: tuple[int | float, ...] | None = Field(
        default=None, description="raw values meaning 'no value' (default: the data type's sentinel)")

    @model_validator(mode="after")
    def _consistent(self) -> Point:
        bits = is_bit_register(self.register_type)
        if bits and self.type is not DataType.BOOL:
            raise ValueError(f"a {self.register_type.value} holds one bit: type must be bool, not {self.type.value}")
        if self.type is DataType.STRING and self.length is None:
            raise ValueError("a string point needs length (registers)")
        if self.type is not DataType.STRING and self.length is not None:
            raise ValueError("length applies to string points only")
        if self.writable and self.register_type not in (RegisterType.HOLDING, RegisterType.COIL):
            raise ValueError("only holding registers and coils can be written")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if self.counter and self.type in (DataType.BOOL, DataType.STRING):
            raise ValueError("a counter must be numeric")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.address + self.register_count - 1 > 65535:
            raise ValueError("point runs past register 65535")
        if self.not_available:
            self._check_not_available(self.not_available)
        return self

    def _check_not_available(self, values: tuple[int | float, ...]) -> None:
        if self.type in (DataType.BOOL, DataType.STRING):
            raise ValueError(f"not_available applies to numeric points, not {self.type.value}")
        if self.type in INTEGER_RANGE:
            bits = 16 * REGISTER_COUNT[self.type]
            for v in values:
                if not float(v).is_integer() or not -(2 ** (bits - 1)) <= v < 2**bits:
                    raise ValueError(f"not_available value {v!r} is not a raw {self.type.value}")

    @property
    def sentinels(self) -> tuple[int | float, ...]:
        """Raw values that mean "not available", as the decoder sees them (signed types signed)."""
        if self.not_available is None:
            default = None if self.counter else DEFAULT_NOT_AVAILABLE.get(self.type)
            return () if default is None else (default,)
        if self.type not in INTEGER_RANGE:
            return tuple(float(v) for v in self.not_available)
        lo, hi = INTEGER_RANGE[self.type]
        span = hi - lo + 1  # a bit pattern above a signed type's range, or a negative unsigned value
        return tuple(int(v) - span if v > hi else int(v) + span if v < lo else int(v)
                     for v in self.not_available)

    @property
    def register_count(self) -> int:
        if self.type is DataType.STRING:
            assert self.length is not None
            return self.length
        return REGISTER_COUNT[self.type]

    @property
    def function_code(self) -> int:
        from drivers.modbus._registers import FUNCTION_CODE

        return FUNCTION_CODE[self.register_type]

    @property
    def end(self) -> int:
        """One past the last register (or bit) address the point occupies."""
        return self.address + self.register_count

    @property
    def is_bits(self) -> bool:
        return is_bit_register(self.register_type)

    def multiplier(self, pt_ratio: float = 1.0, ct_ratio: float = 1.0) -> float:
        ratio = {"none": 1.0, "pt": pt_ratio, "ct": ct_ratio, "pt*ct": pt_ratio * ct_ratio}[self.ratio]
        return self.scale * ratio

    @property
    def field_kind(self) -> FieldKind:
        """The fixed type of the stored field: a scaled or offset register is always a float."""
        if self.type is DataType.BOOL:
            return "bool"
        if self.type is DataType.STRING:
            return "str"
        if self.type in (DataType.FLOAT32, DataType.FLOAT64):
            return "float"
        if self.scale != 1.0 or self.offset != 0.0 or self.ratio != "none":
            return "float"
        return "int"

    def counter_wrap(self, pt_ratio: float = 1.0, ct_ratio: float = 1.0) -> float | None:
        """The rollover of a counter in the field's unit: 2^bits × scale × ratio (DOMAIN.md §7)."""
        if not self.counter or self.type in (DataType.FLOAT32, DataType.FLOAT64):
            return None
        return float(2 ** (16 * self.register_count)) * abs(self.multiplier(pt_ratio, ct_ratio))
