"""An independent reference encoder for Modbus register values, written with integer arithmetic.

It shares no code with :mod:`drivers.modbus._registers` (which packs with ``struct`` and slices bytes):
a value becomes one unsigned integer of 16·n bits (two's complement for signed types, the IEEE 754
bit pattern for floats via numpy's ``view``), words are cut from it with shifts and masks, high
word first; ``word_order="little"`` reverses the words and ``byte_order="little"`` swaps the two
bytes of every word (the conventions of Modbus Application Protocol V1.1b3 §4.2 for one register
and of common meters such as Eastron SDM630 for the word order of wider values).
"""

from __future__ import annotations

import numpy as np

WORDS = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "int64": 4,
    "uint64": 4,
    "float32": 2,
    "float64": 4,
    "bool": 1,
}


def _swap_bytes(word: int) -> int:
    return ((word & 0xFF) << 8) | (word >> 8)


def bit_pattern(value: float | int, dtype: str) -> int:
    """The value's bits as one non-negative integer of 16 × WORDS[dtype] bits."""
    bits = 16 * WORDS[dtype]
    if dtype == "float32":
        return int(np.array([value], dtype=np.float32).view(np.uint32)[0])
    if dtype == "float64":
        return int(np.array([value], dtype=np.float64).view(np.uint64)[0])
    if dtype == "bool":
        return 1 if value else 0
    number = int(value)
    if dtype.startswith("int"):
        if not -(1 << (bits - 1)) <= number < (1 << (bits - 1)):
            raise OverflowError(f"{number} does not fit {dtype}")
        return number % (1 << bits)
    if not 0 <= number < (1 << bits):
        raise OverflowError(f"{number} does not fit {dtype}")
    return number


def words_from_pattern(pattern: int, n: int, word_order: str, byte_order: str) -> list[int]:
    words = [(pattern >> (16 * (n - 1 - i))) & 0xFFFF for i in range(n)]
    if word_order == "little":
        words = words[::-1]
    if byte_order == "little":
        words = [_swap_bytes(w) for w in words]
    return words


def encode(
    value: float | int | bool, dtype: str, word_order: str = "big", byte_order: str = "big"
) -> list[int]:
    """Raw (unscaled) value → register words as a device would send them."""
    n = WORDS[dtype]
    return words_from_pattern(bit_pattern(value, dtype), n, word_order, byte_order)


def encode_string(text: str, length: int, byte_order: str = "big") -> list[int]:
    """UTF-8 text, NUL-padded to ``length`` registers; two characters per register, first one high."""
    data = text.encode("utf-8")[: 2 * length]
    data = data + bytes(2 * length - len(data))
    words = [(data[2 * i] << 8) | data[2 * i + 1] for i in range(length)]
    return [_swap_bytes(w) for w in words] if byte_order == "little" else words


def decode(words: list[int], dtype: str, word_order: str = "big", byte_order: str = "big") -> float | int:
    """Register words → raw value, the inverse of :func:`encode`."""
    n = WORDS[dtype]
    ws = list(words[:n])
    if byte_order == "little":
        ws = [_swap_bytes(w) for w in ws]
    if word_order == "little":
        ws = ws[::-1]
    pattern = 0
    for w in ws:
        pattern = (pattern << 16) | w
    if dtype == "float32":
        return float(np.array([pattern], dtype=np.uint32).view(np.float32)[0])
    if dtype == "float64":
        return float(np.array([pattern], dtype=np.uint64).view(np.float64)[0])
    if dtype == "bool":
        return bool(pattern)
    bits = 16 * n
    if dtype.startswith("int") and pattern >= 1 << (bits - 1):
        return pattern - (1 << bits)
    return pattern
