"""Modbus register data types and their scalar encoding.

Modbus transmits 16-bit registers high byte first (Modbus Application Protocol V1.1b3, §4.2).
Values wider than one register have no standard word order: devices put the high word first
("big", e.g. Eastron SDM630, CHNT DTSU666) or last ("little"), and a few also swap the two bytes
inside every register.  A value is packed big-endian into bytes, cut into 16-bit words (high word
first), the words are reversed for ``word_order="little"``, and the bytes of each word swapped for
``byte_order="little"``.  Decoding undoes the same steps.

These scalar functions serve writes and the simulator; the poll path decodes columnar arrays
(see :mod:`drivers.modbus._codec`).
"""

from __future__ import annotations

import struct
from enum import StrEnum
from typing import Final


class DataType(StrEnum):
    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"


class RegisterType(StrEnum):
    COIL = "coil"  # FC 01 read, FC 05/15 write
    DISCRETE = "discrete"  # FC 02
    INPUT = "input"  # FC 04
    HOLDING = "holding"  # FC 03 read, FC 06/16 write


class Order(StrEnum):
    BIG = "big"
    LITTLE = "little"


#: registers per value and the big-endian struct code of each numeric type
REGISTER_COUNT: Final[dict[DataType, int]] = {
    DataType.BOOL: 1,
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT32: 2,
    DataType.FLOAT64: 4,
}
STRUCT_CODE: Final[dict[DataType, str]] = {
    DataType.BOOL: "H",
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}
FUNCTION_CODE: Final[dict[RegisterType, int]] = {
    RegisterType.COIL: 1,
    RegisterType.DISCRETE: 2,
    RegisterType.HOLDING: 3,
    RegisterType.INPUT: 4,
}
INTEGER_RANGE: Final[dict[DataType, tuple[int, int]]] = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}


def is_bit_register(register: RegisterType) -> bool:
    return register in (RegisterType.COIL, RegisterType.DISCRETE)


def _bytes_to_registers(raw: bytes, word_order: Order, byte_order: Order) -> list[int]:
    words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    if word_order is Order.LITTLE:
        words.reverse()
    if byte_order is Order.LITTLE:
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


def _registers_to_bytes(registers: list[int], word_order: Order, byte_order: Order) -> bytes:
    words = [r.to_bytes(2, "big") for r in registers]
    if byte_order is Order.LITTLE:
        words = [w[::-1] for w in words]
    if word_order is Order.LITTLE:
        words.reverse()
    return b"".join(words)


def encode_value(
    value: float | int | bool | str,
    dtype: DataType,
    word_order: Order = Order.BIG,
    byte_order: Order = Order.BIG,
    length: int | None = None,
) -> list[int]:
    """Raw value → register words as they appear on the wire (integers are not range-clamped)."""
    dtype, word_order, byte_order = DataType(dtype), Order(word_order), Order(byte_order)
    if dtype is DataType.STRING:
        if length is None:
            raise ValueError("a string needs a length in registers")
        raw = str(value).encode("utf-8")[: 2 * length].ljust(2 * length, b"\x00")
        # strings are a byte sequence: word order does not apply, byte order does
        return _bytes_to_registers(raw, Order.BIG, byte_order)
    if dtype is DataType.BOOL:
        return [1 if value else 0]
    code = STRUCT_CODE[dtype]
    packed = struct.pack(">" + code, value if code in "fd" else int(value))
    return _bytes_to_registers(packed, word_order, byte_order)


def decode_value(
    registers: list[int],
    dtype: DataType,
    word_order: Order = Order.BIG,
    byte_order: Order = Order.BIG,
) -> float | int | bool | str:
    """Register words as read → raw value (before scale and offset)."""
    dtype, word_order, byte_order = DataType(dtype), Order(word_order), Order(byte_order)
    if dtype is DataType.STRING:
        raw = _registers_to_bytes(list(registers), Order.BIG, byte_order)
        return raw.rstrip(b"\x00 ").decode("utf-8", errors="replace")
    if dtype is DataType.BOOL:
        return bool(registers[0])
    raw = _registers_to_bytes(list(registers[: REGISTER_COUNT[dtype]]), word_order, byte_order)
    return struct.unpack(">" + STRUCT_CODE[dtype], raw)[0]
