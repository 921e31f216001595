"""SunSpec register images (server side) and model discovery (client side).

A SunSpec device holds the marker "SunS" (0x5375 0x6E53) at base 40000, 50000 or 0, then a chain
of model blocks, each starting with its id and its length in registers (not counting those two),
ended by id 0xFFFF (SunSpec Information Model Reference; DOMAIN.md §6).  Offsets, types and scale
factor names come from pysunspec2's own model definitions (``sunspec2.device.get_model_def``), so
nothing here restates a model by hand.

Scale factors: a value's engineering reading is raw × 10^SF.  Discovery reads the SF registers once
and bakes them into ``Point.scale``; SFs are assumed static (SunSpec allows them to change only with
the device's configuration), so a caller re-runs discovery on every (re)connect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from sunspec2 import device as ss_device
from sunspec2 import mdef as ss_mdef

from drivers.errors import SunSpecError
from drivers.modbus._points import Point
from drivers.modbus._registers import DataType, encode_value

SUNS_MARKER: Final = (0x5375, 0x6E53)
END_MODEL_ID: Final = 0xFFFF
DEFAULT_BASES: Final = (40000, 50000, 0)

#: SunSpec point type → (our data type, "not implemented" raw value); SunSpec Information Model
#: Reference, "Unimplemented values" (the same table as sunspec2.mb.SUNS_UNIMPL_*).
_TYPES: Final[dict[str, tuple[DataType, int]]] = {
    "int16": (DataType.INT16, -0x8000),
    "uint16": (DataType.UINT16, 0xFFFF),
    "count": (DataType.UINT16, 0xFFFF),
    "acc16": (DataType.UINT16, 0),
    "enum16": (DataType.UINT16, 0xFFFF),
    "bitfield16": (DataType.UINT16, 0xFFFF),
    "sunssf": (DataType.INT16, -0x8000),
    "int32": (DataType.INT32, -0x80000000),
    "uint32": (DataType.UINT32, 0xFFFFFFFF),
    "acc32": (DataType.UINT32, 0),
    "enum32": (DataType.UINT32, 0xFFFFFFFF),
    "bitfield32": (DataType.UINT32, 0xFFFFFFFF),
    "float32": (DataType.FLOAT32, 0x7FC00000),
    "int64": (DataType.INT64, -(2**63)),
    "uint64": (DataType.UINT64, 2**64 - 1),
    "acc64": (DataType.UINT64, 0),
}


@dataclass(frozen=True, slots=True)
class ModelPoint:
    name: str
    offset: int  # registers from the model's first register (its id)
    type: str  # SunSpec type name
    size: int
    sf: str | None


@dataclass(frozen=True, slots=True)
class ModelLayout:
    model_id: int
    length: int  # the L register: registers after id and L
    points: Mapping[str, ModelPoint]


@cache
def model_layout(model_id: int) -> ModelLayout:
    """Top-level points of a model from pysunspec2's definition (repeating groups are not served)."""
    try:
        mdef = ss_device.get_model_def(model_id)
    except ss_mdef.ModelDefinitionError as exc:
        raise SunSpecError(f"no SunSpec model definition for model {model_id}: {exc}") from exc
    group = mdef["group"]
    points: dict[str, ModelPoint] = {}
    offset = 0
    for p in group["points"]:
        points[p["name"]] = ModelPoint(p["name"], offset, p["type"], int(p["size"]), p.get("sf"))
        offset += int(p["size"])
    return ModelLayout(model_id, offset - 2, points)


@dataclass(frozen=True, slots=True)
class FieldMap:
    """A SunSpec point mapped to one of our fields (engineering value × factor)."""

    model: int
    point: str
    name: str
    factor: float = 1.0
    unit: str | None = None
    counter: bool = False
    writable: bool = False
    min: float | None = None
    max: float | None = None


def _data_type(mp: ModelPoint) -> DataType:
    if mp.type == "string":
        return DataType.STRING
    if mp.type not in _TYPES:
        raise SunSpecError(f"unsupported SunSpec type {mp.type} of point {mp.name}")
    return _TYPES[mp.type][0]


def make_point(fm: FieldMap, address: int, sf: int | None) -> Point:
    """The Point for a mapped SunSpec point at an absolute address with a known scale factor."""
    mp = model_layout(fm.model).points[fm.point]
    scale = fm.factor * (10.0**sf if sf is not None else 1.0)
    return Point(
        name=fm.name,
        register="holding",
        address=address,
        type=_data_type(mp),
        length=mp.size if mp.type == "string" else None,
        scale=scale,
        unit=fm.unit,
        counter=fm.counter,
        writable=fm.writable,
        min=fm.min,
        max=fm.max,
    )


# ---------------------------------------------------------------- server side: the register image


@dataclass(frozen=True, slots=True)
class SunSpecImage:
    """A device's SunSpec registers from ``base``: marker, models, end model."""

    base: int
    registers: tuple[int, ...]
    model_starts: Mapping[int, int]  # model id → absolute address of its id register
    scale_factors: Mapping[tuple[int, str], int]  # (model id, SF point name) → SF served

    def address_of(self, model: int, point: str) -> int:
        return self.model_starts[model] + model_layout(model).points[point].offset


def build_image(
    models: Sequence[int],
    scale_factors: Mapping[str, int],
    static: Mapping[tuple[int, str], Any] | None = None,
    base: int = 40000,
) -> SunSpecImage:
    """Marker, each model's id/length, SF registers and static values; the rest "not implemented".

    ``scale_factors`` maps an SF point name to its value (the same name may appear in several
    models, e.g. W_SF in 103 and 802, and then serves the same value); ``static`` maps
    (model id, point name) to an engineering value (or a string) written once.
    """
    regs: list[int] = list(SUNS_MARKER)
    starts: dict[int, int] = {}
    sfs: dict[tuple[int, str], int] = {}
    for model_id in models:
        layout = model_layout(model_id)
        start = len(regs)
        starts[model_id] = base + start
        block = [0] * (layout.length + 2)
        for mp in layout.points.values():
            if mp.type in ("string", "pad", "ipaddr", "ipv6addr", "eui48"):
                continue
            dtype, unimpl = _TYPES.get(mp.type, (DataType.UINT16, 0))
            raw: int = unimpl
            if mp.type == "sunssf" and mp.name in scale_factors:
                raw = int(scale_factors[mp.name])
                sfs[(model_id, mp.name)] = raw
            if dtype is DataType.FLOAT32:
                block[mp.offset : mp.offset + 2] = [0x7FC0, 0]
            else:
                block[mp.offset : mp.offset + mp.size] = encode_value(raw, dtype)
        block[0], block[1] = model_id, layout.length
        regs.extend(block)
        for (mid, pname), value in (static or {}).items():
            if mid != model_id:
                continue
            mp = layout.points[pname]
            if mp.type == "string":
                words = encode_value(str(value), DataType.STRING, length=mp.size)
            else:
                sf = scale_factors.get(mp.sf, 0) if mp.sf else 0
                words = encode_value(round(float(value) / 10.0**sf), _data_type(mp))
            regs[start + mp.offset : start + mp.offset + mp.size] = words
    regs.extend([END_MODEL_ID, 0])
    return SunSpecImage(base, tuple(regs), starts, sfs)


def image_points(image: SunSpecImage, mapping: Iterable[FieldMap]) -> list[Point]:
    """Points of the mapped fields at their addresses in a served image, with the served SFs."""
    out = []
    for fm in mapping:
        mp = model_layout(fm.model).points[fm.point]
        sf = image.scale_factors.get((fm.model, mp.sf)) if mp.sf else None
        out.append(make_point(fm, image.address_of(fm.model, fm.point), sf))
    return out


# ---------------------------------------------------------------- client side: discovery


def _int16(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


def points_from_registers(registers: Sequence[int], base: int, mapping: Iterable[FieldMap]) -> list[Point]:
    """Walk the model chain of a register image (``registers[i]`` is address ``base + i``).

    Models without a pysunspec2 definition are stepped over by their length; a mapped point whose
    scale factor reads "not implemented" (0x8000) is left out.
    """
    if tuple(registers[:2]) != SUNS_MARKER:
        raise SunSpecError(f"no SunSpec marker at {base}")
    wanted: dict[int, list[FieldMap]] = {}
    for fm in mapping:
        wanted.setdefault(fm.model, []).append(fm)
    out: list[Point] = []
    i = 2
    while True:
        if i + 1 >= len(registers):
            raise SunSpecError(f"model chain runs past the image at {base + i}")
        model_id, length = registers[i], registers[i + 1]
        if model_id == END_MODEL_ID:
            return out
        if i + 2 + length > len(registers):
            raise SunSpecError(f"model {model_id} at {base + i} runs past the image")
        for fm in wanted.get(model_id, ()):
            layout = model_layout(model_id)
            mp = layout.points.get(fm.point)
            if mp is None or mp.offset + mp.size > length + 2:
                continue
            sf: int | None = None
            if mp.sf:
                if mp.sf not in layout.points:
                    continue  # SF held in another model: not used by the models we map
                sf = _int16(registers[i + layout.points[mp.sf].offset])
                if sf == -0x8000:
                    continue
            out.append(make_point(fm, base + i + mp.offset, sf))
        i += 2 + length
