"""Columnar decoding of a device's poll and encoding of setpoints.

Every poll of a device returns the same layout, so everything that depends on the layout is
computed once: the responses are packed into one big-endian byte buffer (Modbus sends the high
byte of a register first, Modbus Application Protocol V1.1b3 §4.2) and, per numpy dtype, a
precomputed ``(points, bytes)`` index array gathers each point's bytes already put back into
big-endian order — word order and byte order (see :mod:`drivers.modbus._registers`) are folded into that
index.  A decode is then a fixed handful of numpy operations whatever the number of points:
one gather + view + scatter per dtype present, one multiply, one add.

Engineering value = raw × scale × ratio + offset (:meth:`drivers.modbus._points.Point.multiplier`).
Booleans (coils, discrete inputs, a register read as bool) are 0.0 / 1.0, unscaled.  Strings are
NaN in the value array and decoded into a separate tuple (the one per-point Python step).
The offset is added only to points that have one, so a raw ``-0.0`` stays ``-0.0``.

Values that are not values: a raw value equal to a point's sentinel (:attr:`Point.sentinels`, by
default the data type's "not available" value) decodes to NaN, which the gateway counts per point
as *not available*, with NaN and ±inf from float registers.  Integers beyond 2^53 (64-bit points
read unscaled) do not fit a float64 exactly: their exact decimal text travels in the texts tuple
beside the value, so the line protocol writes ``18014398509481985i``, not the nearest double; a
uint64 above the int64 range (which line protocol's ``i`` cannot carry) is not available.  Both
checks cost one vectorised comparison per poll, and only for devices whose points need them.
"""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import Sequence
from itertools import chain

import numpy as np

from drivers.errors import WriteRefused
from drivers.modbus._plan import RequestPlan
from drivers.modbus._points import FieldKind, Point
from drivers.modbus._registers import INTEGER_RANGE, DataType, Order, RegisterType, encode_value

#: numpy big-endian dtype of each numeric type read from registers
NUMPY_DTYPE: dict[DataType, str] = {
    DataType.INT16: ">i2",
    DataType.UINT16: ">u2",
    DataType.INT32: ">i4",
    DataType.UINT32: ">u4",
    DataType.INT64: ">i8",
    DataType.UINT64: ">u8",
    DataType.FLOAT32: ">f4",
    DataType.FLOAT64: ">f8",
}
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT64_MAX = float(np.finfo(np.float64).max)


def value_byte_index(register_offset: int, registers: int, word_order: Order, byte_order: Order) -> list[int]:
    """Buffer byte positions of a value's bytes in big-endian order (inverse of registers.encode_value)."""
    out = []
    for k in range(2 * registers):
        word, within = divmod(k, 2)
        src_word = registers - 1 - word if word_order is Order.LITTLE else word
        src_byte = 1 - within if byte_order is Order.LITTLE else within
        out.append(2 * (register_offset + src_word) + src_byte)
    return out


EXACT_LIMIT = 2**53  # integers up to this magnitude are exact in a float64
INT64_MAX = 2**63 - 1


class _Group:
    """Points decoded the same way: positions in the output and their byte (or bit) index, and which
    of them to check for a sentinel (``na_at`` within the group, ``na_raw``) or for exactness."""

    __slots__ = ("checks", "dtype", "exact_at", "index", "is_bool", "na_at", "na_raw", "na_wide", "positions")

    def __init__(self, dtype: str, positions: list[int], index: list[list[int]], is_bool: bool,
                 na: list[tuple[int, int | float]] | None = None, exact: list[int] | None = None) -> None:
        self.dtype = dtype
        self.positions = np.asarray(positions, dtype=np.intp)
        self.index = np.asarray(index, dtype=np.intp)
        self.is_bool = is_bool
        na = na or []
        self.na_at = np.asarray([at for at, _ in na], dtype=np.intp)
        # compared as the decoded float64 (native, fast) unless 64 bits wide, where a float64 would
        # round 2^64 - 2 onto the 2^64 - 1 sentinel: those compare as the raw integers
        self.na_wide = np.dtype(dtype).itemsize == 8 and np.dtype(dtype).kind in "iu"
        self.na_raw = np.asarray([v for _, v in na], dtype=np.dtype(dtype).newbyteorder("=") if self.na_wide
                                 else np.float64)
        if self.na_at.tolist() == list(range(len(positions))):  # one sentinel per point: no gather
            self.na_at = slice(None)
        self.exact_at = np.asarray(exact or [], dtype=np.intp)
        self.checks = bool(self.na_raw.size or self.exact_at.size)


class DeviceDecoder:
    """Decodes the responses to one :class:`RequestPlan` into one float64 value per point."""

    def __init__(
        self, points: Sequence[Point], plan: RequestPlan, *, pt_ratio: float = 1.0, ct_ratio: float = 1.0
    ) -> None:
        if len(plan.point_slots) != len(points):
            raise ValueError("the plan was made for another list of points")
        self.points = tuple(points)
        self.plan = plan
        self.fields: tuple[str, ...] = tuple(p.name for p in points)
        self.kinds: tuple[FieldKind, ...] = tuple(p.field_kind for p in points)
        n = len(points)

        # where each request's data starts in the concatenated register buffer / bit array
        self._register_requests: list[int] = []
        self._bit_requests: list[tuple[int, int]] = []
        base: dict[int, int] = {}
        registers = bits = 0
        for ri, req in enumerate(plan.requests):
            if req.function_code in (1, 2):
                base[ri] = bits
                self._bit_requests.append((ri, req.count))
                bits += req.count
            else:
                base[ri] = registers
                self._register_requests.append(ri)
                registers += req.count
        self.register_count = registers
        self._pack = struct.Struct(f">{registers}H")

        template = np.zeros(n)
        multiplier = np.ones(n)
        offset_pos: list[int] = []
        offset_val: list[float] = []
        by_dtype: dict[tuple[str, bool], tuple[list[int], list[list[int]]]] = {}
        checks: dict[tuple[str, bool], tuple[list[tuple[int, int | float]], list[int]]] = {}
        bit_pos: list[int] = []
        bit_idx: list[int] = []
        strings: list[tuple[int, np.ndarray]] = []
        may_overflow = False  # can raw × multiplier + offset leave the float64 range?
        for i, (p, (ri, off)) in enumerate(zip(points, plan.point_slots, strict=True)):
            if p.function_code != plan.requests[ri].function_code:
                raise ValueError(f"{p.name}: planned into a request of another function code")
            start = base[ri] + off
            if p.is_bits:
                bit_pos.append(i)
                bit_idx.append(start)
                continue
            if p.type is DataType.STRING:
                template[i] = math.nan
                idx = value_byte_index(start, p.register_count, Order.BIG, p.byte_order)
                strings.append((i, np.asarray(idx, dtype=np.intp)))
                continue
            if p.type is DataType.BOOL:
                key = (">u2", True)
            else:
                key = (NUMPY_DTYPE[p.type], False)
                mul = multiplier[i] = p.multiplier(pt_ratio, ct_ratio)
                if not abs(_largest_raw(p.type) * mul) + abs(p.offset) <= FLOAT64_MAX:
                    may_overflow = True
                if p.offset != 0.0:
                    offset_pos.append(i)
                    offset_val.append(p.offset)
            positions, index = by_dtype.setdefault(key, ([], []))
            na, exact = checks.setdefault(key, ([], []))
            if not p.is_bits and p.type is not DataType.BOOL:
                na.extend((len(positions), v) for v in p.sentinels)
                if p.type in (DataType.INT64, DataType.UINT64) and p.field_kind == "int":
                    exact.append(len(positions))
            positions.append(i)
            index.append(value_byte_index(start, p.register_count, p.word_order, p.byte_order))

        self._template = template
        self._multiplier = multiplier
        self._scaled = bool((multiplier != 1.0).any())
        # overflowing to ±inf is the right answer there; numpy's warning about it is noise
        self._may_overflow = may_overflow
        self._offset_pos = np.asarray(offset_pos, dtype=np.intp)
        self._offset_val = np.asarray(offset_val, dtype=np.float64)
        self._groups = tuple(_Group(dt, pos, idx, is_bool, *checks[(dt, is_bool)])
                             for (dt, is_bool), (pos, idx) in by_dtype.items())
        # the common meter layout, one numeric type for every point in order: no scatter needed
        only = self._groups[0] if len(self._groups) == 1 else None
        self._single = (
            only
            if only is not None and not only.is_bool and only.positions.tolist() == list(range(n))
            else None
        )
        # ...and when its values also fill the buffer in order, big-endian words and bytes (bench60,
        # most float32 meters): no gather either, the packed registers are the values
        self._in_order = self._single is not None and (
            self._single.index.ravel().tolist() == list(range(2 * registers))
        )
        self._bit_pos = np.asarray(bit_pos, dtype=np.intp)
        self._bit_idx = np.asarray(bit_idx, dtype=np.intp)
        self._strings = tuple(strings)
        self._texts_template: list[str | None] = [None] * n

    def register_buffer(self, responses: Sequence[Sequence[int] | Sequence[bool]]) -> np.ndarray:
        """All register responses as one uint8 array, high byte of each register first."""
        rr = self._register_requests
        words = responses[rr[0]] if len(rr) == 1 else list(chain.from_iterable(responses[ri] for ri in rr))
        return np.frombuffer(self._pack.pack(*words), dtype=np.uint8)

    def _scale(self, out: np.ndarray) -> None:
        """In place: raw × multiplier, + offset where a point has one."""
        if self._scaled or self._offset_pos.size:
            with np.errstate(over="ignore") if self._may_overflow else contextlib.nullcontext():
                if self._scaled:
                    out *= self._multiplier
                if self._offset_pos.size:
                    out[self._offset_pos] += self._offset_val

    def decode(
        self, responses: Sequence[Sequence[int] | Sequence[bool]]
    ) -> tuple[np.ndarray, tuple[str | None, ...] | None]:
        """``responses[i]`` answers ``plan.requests[i]``; returns (values, texts or None)."""
        if self._single is not None:
            g = self._single
            buf = self.register_buffer(responses)
            raw = np.frombuffer(buf, dtype=g.dtype) if self._in_order else buf[g.index].view(g.dtype)[:, 0]
            out = raw.astype(np.float64)
            exact = self._check(g, raw, out, None, out) if g.checks else None
            self._scale(out)
            return out, None if exact is None else tuple(exact)
        out = self._template.copy()
        exact = None
        if self._register_requests:
            buf = self.register_buffer(responses)
            for g in self._groups:
                raw = buf[g.index].view(g.dtype)[:, 0]
                out[g.positions] = raw != 0 if g.is_bool else raw
                if g.checks:
                    exact = self._check(g, raw, out, exact, None)
        if self._bit_requests:
            if len(self._bit_requests) == 1:
                ri, count = self._bit_requests[0]
                bits = responses[ri][:count]
            else:
                bits = list(chain.from_iterable(responses[ri][:count] for ri, count in self._bit_requests))
            out[self._bit_pos] = np.asarray(bits, dtype=bool)[self._bit_idx]
        self._scale(out)
        if not self._strings:
            return out, None if exact is None else tuple(exact)
        texts = exact or self._texts_template.copy()
        for i, idx in self._strings:
            texts[i] = buf[idx].tobytes().rstrip(b"\x00 ").decode("utf-8", errors="replace")
        return out, tuple(texts)

    def _check(self, g: _Group, raw: np.ndarray, out: np.ndarray, texts: list[str | None] | None,
               decoded: np.ndarray | None) -> list[str | None] | None:
        """Sentinels → NaN in ``out``; 64-bit integers beyond 2^53 → their exact text in ``texts``.
        ``decoded`` is ``out`` when it holds the group's values in order (one type), else None."""
        if g.na_raw.size:
            seen = raw if g.na_wide else decoded if decoded is not None else out[g.positions]
            hit = seen[g.na_at] == g.na_raw
            if hit.any():
                out[g.positions[g.na_at][hit]] = math.nan
        if g.exact_at.size:
            wide = raw[g.exact_at]
            big = wide > EXACT_LIMIT
            if wide.dtype.kind == "i":
                big |= wide < -EXACT_LIMIT
            if big.any():
                for j in np.flatnonzero(big).tolist():
                    pos = int(g.positions[g.exact_at[j]])
                    value = int(wide[j])
                    if math.isnan(out[pos]):
                        continue  # a sentinel: not available
                    if value > INT64_MAX:  # line protocol's integers are int64
                        out[pos] = math.nan
                        continue
                    texts = texts or self._texts_template.copy()
                    texts[pos] = str(value)
        return texts


def _largest_raw(dtype: DataType) -> float:
    if dtype in INTEGER_RANGE:
        return float(max(-INTEGER_RANGE[dtype][0], INTEGER_RANGE[dtype][1]))
    return FLOAT32_MAX if dtype is DataType.FLOAT32 else FLOAT64_MAX


def _refuse(point: Point, value: object, why: str) -> WriteRefused:
    return WriteRefused(f"write of {value!r} to {point.name} refused: {why}")


def encode_write(
    point: Point, value: float | bool, *, pt_ratio: float = 1.0, ct_ratio: float = 1.0
) -> list[int] | bool:
    """Engineering value → what goes on the wire: a bool for a coil, else register words.

    Inverts ``raw × multiplier + offset``, rounds to the nearest integer for integer types and
    checks the point's ``min``/``max`` (engineering units) and the data type's range.
    """
    if not point.writable:
        raise _refuse(point, value, "the point is not writable")
    if point.type is DataType.STRING:
        raise _refuse(point, value, "string points take no setpoints")
    if point.type is DataType.BOOL:
        if not isinstance(value, bool | int | np.bool_) or value not in (0, 1):
            raise _refuse(point, value, "a bool point takes True/False (or 0/1)")
        if point.register_type is RegisterType.COIL:
            return bool(value)
        return [1 if value else 0]
    if isinstance(value, bool):
        raise _refuse(point, value, f"{point.type.value} point takes a number, not a bool")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _refuse(point, value, "not a number") from None
    if not math.isfinite(number):
        raise _refuse(point, value, "not a finite number")
    lo = -math.inf if point.min is None else point.min
    hi = math.inf if point.max is None else point.max
    if not lo <= number <= hi:
        raise _refuse(point, value, f"outside the point's limits [{point.min}, {point.max}]")
    multiplier = point.multiplier(pt_ratio, ct_ratio)
    if multiplier == 0 or not math.isfinite(multiplier):
        raise _refuse(point, value, f"multiplier {multiplier} cannot be inverted")
    raw = (number - point.offset) / multiplier
    if point.type in INTEGER_RANGE:
        type_lo, type_hi = INTEGER_RANGE[point.type]
        if not math.isfinite(raw) or not type_lo <= round(raw) <= type_hi:
            raise _refuse(
                point, value, f"raw {raw:g} outside {point.type.value} range [{type_lo}, {type_hi}]"
            )
        return encode_value(round(raw), point.type, point.word_order, point.byte_order)
    if point.type is DataType.FLOAT32 and not abs(raw) <= FLOAT32_MAX:
        raise _refuse(point, value, f"raw {raw:g} outside float32 range")
    return encode_value(raw, point.type, point.word_order, point.byte_order)
