"""Device profiles: register maps as YAML data files in this folder, loaded and validated here.

A profile names the device class (the InfluxDB measurement), the documents its map comes from,
where those documents disagree, and its points, each a :class:`drivers.modbus._points.Point`.  SunSpec
profiles list models, served scale factors and a map of SunSpec points to our fields; their points
are laid out with pysunspec2's model definitions (:mod:`drivers.modbus._sunspec`).  Field names and the sign
convention are described in README.md next to the data files.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import ValidationError

from drivers.errors import ProfileError
from drivers.modbus import _sunspec as sunspec
from drivers.modbus._points import Point
from drivers.modbus._registers import FUNCTION_CODE, RegisterType

PROFILE_DIR: Final = Path(__file__).parent / "profiles"
DeviceClass = Literal[
    "meter", "pv_inverter", "battery", "grid_converter", "dc_converter", "dc_load_controller"
]
DEVICE_CLASSES: Final = frozenset(DeviceClass.__args__)  # type: ignore[attr-defined]
_KEYS: Final = {
    "name",
    "description",
    "device_class",
    "sources",
    "notes",
    "max_registers",
    "holes",
    "points",
    "sunspec",
}


@dataclass(frozen=True, slots=True)
class Hole:
    """Registers inside a profile's span that the device refuses (exception 2)."""

    register: RegisterType
    address: int
    count: int = 1

    @property
    def function_code(self) -> int:
        return FUNCTION_CODE[self.register]

    def __iter__(self) -> Iterator[int]:
        """(function code, first address, end address exclusive): the request planner's form."""
        return iter((self.function_code, self.address, self.address + self.count))


@dataclass(frozen=True, slots=True)
class SunSpecServe:
    """What the simulator serves for a SunSpec profile (see drivers.modbus._sunspec.build_image)."""

    base: int
    models: tuple[int, ...]
    scale_factors: dict[str, int]
    static: dict[tuple[int, str], Any]
    field_maps: tuple[Any, ...]  # drivers.modbus._sunspec.FieldMap
    mirrors: tuple[tuple[int, str, str], ...]  # (model, point, source field): served, not polled


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    description: str
    device_class: str
    sources: tuple[str, ...]
    notes: str
    points: tuple[Point, ...]
    max_registers: int | None = None
    holes: tuple[Hole, ...] = ()
    sunspec: SunSpecServe | None = field(default=None, compare=False)

    def point(self, name: str) -> Point:
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(f"profile {self.name} has no point {name!r}")


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _sunspec_section(path: Path, raw: dict[str, Any]) -> tuple[SunSpecServe, list[Point]]:
    try:
        models = tuple(int(m) for m in raw["models"])
        sfs = {str(k): int(v) for k, v in (raw.get("scale_factors") or {}).items()}
        static: dict[tuple[int, str], Any] = {(1, k): v for k, v in (raw.get("common") or {}).items()}
        for entry in raw.get("static") or ():
            static[(int(entry["model"]), str(entry["point"]))] = entry["value"]
        maps = tuple(sunspec.FieldMap(**m) for m in raw.get("map") or ())
        mirrors = tuple((int(m["model"]), str(m["point"]), str(m["from"])) for m in raw.get("mirror") or ())
        base = int(raw.get("base", 40000))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileError(path, f"bad sunspec section: {exc}") from exc
    for fm in maps:
        if fm.model not in models:
            raise ProfileError(path, f"model {fm.model} is mapped but not served", fm.name)
        try:
            layout = sunspec.model_layout(fm.model)
        except sunspec.SunSpecError as exc:
            raise ProfileError(path, str(exc), fm.name) from exc
        if fm.point not in layout.points:
            raise ProfileError(path, f"model {fm.model} has no point {fm.point}", fm.name)
    try:
        image = sunspec.build_image(models, sfs, static, base)
        points = sunspec.image_points(image, maps)
    except (sunspec.SunSpecError, KeyError, ValidationError, ValueError) as exc:
        raise ProfileError(path, f"sunspec image: {exc}") from exc
    return SunSpecServe(base, models, sfs, static, maps, mirrors), points


def _load(path: Path) -> Profile:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ProfileError(path, f"cannot read: {exc}") from exc
    if not isinstance(raw, dict):
        raise ProfileError(path, "not a mapping")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ProfileError(path, f"unknown keys {sorted(unknown)}")
    for key in ("name", "description", "device_class", "sources"):
        if key not in raw:
            raise ProfileError(path, f"missing {key!r}")
    if raw["device_class"] not in DEVICE_CLASSES:
        raise ProfileError(
            path, f"device_class {raw['device_class']!r} is not one of {sorted(DEVICE_CLASSES)}"
        )
    points: list[Point] = []
    for i, p in enumerate(raw.get("points") or ()):
        label = p.get("name") if isinstance(p, dict) else None
        try:
            points.append(Point.model_validate(p))
        except ValidationError as exc:
            msg = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ProfileError(path, msg, label or f"#{i}") from exc
    serve = None
    if raw.get("sunspec") is not None:
        serve, more = _sunspec_section(path, raw["sunspec"])
        points.extend(more)
    if not points:
        raise ProfileError(path, "no points")
    seen: set[str] = set()
    for p in points:
        if p.name in seen:
            raise ProfileError(path, "duplicate point name", p.name)
        seen.add(p.name)
    try:
        holes = tuple(
            Hole(RegisterType(h["register"]), int(h["address"]), int(h.get("count", 1)))
            for h in raw.get("holes") or ()
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileError(path, f"bad holes entry: {exc}") from exc
    _check_overlaps(path, points, holes)
    return Profile(
        name=str(raw["name"]),
        description=str(raw["description"]),
        device_class=str(raw["device_class"]),
        sources=tuple(str(s) for s in raw["sources"]),
        notes=str(raw.get("notes") or ""),
        points=tuple(points),
        max_registers=raw.get("max_registers"),
        holes=holes,
        sunspec=serve,
    )


def _check_overlaps(path: Path, points: list[Point], holes: tuple[Hole, ...]) -> None:
    """Two points sharing a register of the same type is a map error (home-assistant's rule)."""
    owner: dict[tuple[RegisterType, int], str] = {}
    for p in points:
        for a in range(p.address, p.end):
            key = (p.register_type, a)
            if key in owner:
                raise ProfileError(
                    path, f"overlaps point {owner[key]!r} at {p.register_type.value} {a}", p.name
                )
            owner[key] = p.name
    for h in holes:
        for a in range(h.address, h.address + h.count):
            if (h.register, a) in owner:
                raise ProfileError(
                    path, f"hole at {h.register.value} {a} lies inside a point", owner[(h.register, a)]
                )


@cache
def _load_cached(path: Path) -> Profile:
    return _load(path)


def load_profile(name: str) -> Profile:
    """A profile by name (a file in this folder) or by path to a YAML file."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = PROFILE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ProfileError(path, f"no such profile; available: {', '.join(available_profiles())}")
    return _load_cached(path.resolve())


def sunspec_field_maps() -> list[Any]:
    """The union of the SunSpec profiles' maps: the default mapping for SunSpec discovery."""
    out: dict[tuple[int, str], Any] = {}
    for name in available_profiles():
        serve = load_profile(name).sunspec
        if serve is not None:
            for fm in serve.field_maps:
                out.setdefault((fm.model, fm.point), fm)
    return list(out.values())
