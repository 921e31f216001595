"""A validated site: the site file with templates and profiles expanded into concrete devices.

``load_site(path)`` is the one entry point: it raises :class:`ConfigError` listing every problem
with file, line and field path, or returns a :class:`Site` whose devices are ready to poll, with
the warnings (``Site.warnings``) that do not stop it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from drivers.modbus import INTEGER_RANGE, Point, ProfileError, available_profiles, load_profile
from gateway.config._analytics import check_analytics
from gateway.config._checks import (
    endpoint_problems,
    journal_path_problem,
    layout_problems,
    plan_problems,
    ratio_warnings,
)
from gateway.config._mqtt import check_mqtt
from gateway.config._schema import (
    Building,
    DeviceSection,
    Park,
    PointOverride,
    SiteFile,
    _problems_from,
)
from gateway.config._types import is_regular_file
from gateway.config._yaml import YamlDocument, load_yaml
from gateway.errors import ConfigError, ConfigProblem
from gateway.redact import remember_secrets_of
from gateway.series import SeriesKey


@dataclass(frozen=True)
class Device:
    """One device as the gateway polls it."""

    section: DeviceSection
    park: str
    grid_region: str
    device_class: str
    points: tuple[Point, ...]
    max_registers: int
    holes: tuple[tuple[int, int, int], ...]

    @property
    def name(self) -> str:
        return self.section.name

    @property
    def building(self) -> str:
        return self.section.building

    def series_key(self, site: str) -> SeriesKey:
        tags = {"site": site, "building": self.building, "device": self.name, "role": self.section.role}
        tags = tuple(sorted(tags.items()))
        return SeriesKey(
            measurement=self.device_class,
            tags=tags,
            fields=tuple(p.name for p in self.points),
            kinds=tuple(p.field_kind for p in self.points),
        )


@dataclass(frozen=True)
class Site:
    file: str
    config: SiteFile
    devices: tuple[Device, ...]
    warnings: tuple[ConfigProblem, ...] = field(default=(), compare=False)

    @property
    def name(self) -> str:
        return self.config.site.name

    def building(self, name: str) -> Building:
        return next(b for b in self.config.buildings if b.name == name)

    def park(self, name: str) -> Park:
        return next(p for p in self.config.parks if p.name == name)

    def device(self, name: str) -> Device:
        return next(d for d in self.devices if d.name == name)


def load_site(path: str | Path, environ: Mapping[str, str] | None = None) -> Site:
    doc = load_yaml(path, environ)
    return resolve_site(doc)


def resolve_site(doc: YamlDocument) -> Site:
    if not isinstance(doc.data, dict):
        raise ConfigError([doc.problem((), "the site file must be a mapping (site:, parks:, buildings:, ...)")])
    try:
        config = SiteFile.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(_problems_from(exc, doc)) from None
    problems: list[ConfigProblem] = []
    _unique(doc, problems, "parks", [p.name for p in config.parks])
    _unique(doc, problems, "buildings", [b.name for b in config.buildings])
    _unique(doc, problems, "sinks", [s.name for s in config.sinks])
    parks = {p.name: p for p in config.parks}
    buildings = {b.name: b for b in config.buildings}
    for i, b in enumerate(config.buildings):
        if b.park not in parks:
            problems.append(doc.problem(("buildings", i, "park"), f"unknown park {b.park!r} (known: {sorted(parks)})"))
    devices: list[Device] = []
    indices: list[int] = []
    names: dict[str, int] = {}
    warnings: list[ConfigProblem] = []
    for i, raw in enumerate(config.devices):
        device = _resolve_device(doc, config, i, raw, buildings, parks, problems, warnings)
        if device is None:
            continue
        if device.name in names:
            problems.append(doc.problem(("devices", i, "name"), f"device name {device.name!r} is used twice"))
        names[device.name] = i
        devices.append(device)
        indices.append(i)
    problems.extend(endpoint_problems(devices, indices, doc.problem))
    why = journal_path_problem(config.journal.path)
    if why is not None:
        problems.append(doc.problem(("journal", "path"), why))
    problems.extend(check_mqtt(config.mqtt, set(buildings), doc.problem))
    problems.extend(check_analytics(config.analytics, config, devices, doc.problem))
    if problems:
        raise ConfigError(problems)
    remember_secrets_of(config)  # masked wherever they would be printed from now on
    return Site(doc.file, config, tuple(devices), tuple(warnings))


def _unique(doc: YamlDocument, problems: list[ConfigProblem], section: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            problems.append(doc.problem((section, i, "name"), f"name {name!r} is used twice"))
        seen.add(name)


def _resolve_device(
    doc: YamlDocument,
    config: SiteFile,
    index: int,
    raw: dict[str, Any],
    buildings: dict[str, Building],
    parks: dict[str, Park],
    problems: list[ConfigProblem],
    warnings: list[ConfigProblem],
) -> Device | None:
    loc = ("devices", index)
    if not isinstance(raw, dict):
        problems.append(doc.problem(loc, "a device must be a mapping"))
        return None
    merged = dict(raw)
    template_name = raw.get("template")
    if template_name is not None and not isinstance(template_name, str):
        problems.append(doc.problem(loc + ("template",), "a template is named by text"))
        return None
    if template_name is not None:
        template = config.templates.get(template_name)
        if template is None:
            problems.append(
                doc.problem(
                    loc + ("template",), f"unknown template {template_name!r} (known: {sorted(config.templates)})"
                )
            )
            return None
        merged = _merge(template, raw)
    try:
        section = DeviceSection.model_validate(merged)
    except ValidationError as exc:
        problems.extend(_problems_from(exc, doc, loc))
        return None
    building = buildings.get(section.building)
    if building is None:
        problems.append(
            doc.problem(loc + ("building",), f"unknown building {section.building!r} (known: {sorted(buildings)})")
        )
        return None
    park = parks.get(building.park)
    region = building.grid_region or (park.grid_region if park else "national")
    points: list[Point] = []
    device_class = section.device_class
    max_registers = section.max_registers
    holes: tuple[tuple[int, int, int], ...] = ()
    if section.profile is not None:
        profile_ref = section.profile
        if profile_ref.endswith((".yaml", ".yml")) and not Path(profile_ref).is_absolute():
            profile_ref = str(Path(doc.file).parent / profile_ref)  # relative to the site file
        profile = _load_profile(doc, loc + ("profile",), profile_ref, problems)
        if profile is None:
            return None
        points.extend(profile.points)
        device_class = device_class or profile.device_class
        limit = profile.max_registers
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 125):
            problems.append(doc.problem(loc + ("profile",), f"profile {profile_ref!r}: max_registers must be 1..125"))
            return None
        max_registers = min(max_registers, limit or 125)
        holes = tuple(tuple(h) for h in (profile.holes or ()))  # type: ignore[misc]
    elif not section.points:
        problems.append(doc.problem(loc, "a device needs either profile: or points:"))
        return None
    points.extend(section.points)
    if device_class is None:
        problems.append(doc.problem(loc, "a device with inline points needs device_class (the measurement name)"))
        return None
    points = _apply_overrides(doc, loc, points, section.overrides, problems)
    seen: set[str] = set()
    for p in points:
        if p.name in seen:
            problems.append(doc.problem(loc + ("points",), f"field {p.name!r} is defined twice"))
        seen.add(p.name)
        _check_limits(doc, loc, p, problems)
    origin = {p.name: loc + ("profile",) for p in points}
    origin.update({p.name: loc + ("points", j) for j, p in enumerate(section.points)})
    layout = layout_problems(points, origin, holes, doc.problem, loc)
    device = Device(section, building.park, region, device_class, tuple(points), max_registers, holes)
    problems.extend(layout or plan_problems(points, origin, device, holes, doc.problem, loc))
    warnings.extend(ratio_warnings(section, points, doc.problem, loc))
    return device


def _merge(template: dict[str, Any], device: dict[str, Any]) -> dict[str, Any]:
    """Device keys win; nested mappings (connection, overrides) merge key by key."""
    out = dict(template)
    for key, value in device.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _load_profile(doc: YamlDocument, loc: tuple, name: str, problems: list[ConfigProblem]) -> Any:
    """A bundled profile by name, or a profile file (read through the located loader first, so a
    broken file is reported like a broken site file)."""
    is_path = name.endswith((".yaml", ".yml"))
    if not (is_regular_file(name) if is_path else name in available_profiles()):
        known = ", ".join(available_profiles())
        problems.append(doc.problem(loc, f"unknown profile {name[:80]!r} (known: {known})"))
        return None
    try:
        if is_path:
            load_yaml(name, substitute=False)
        return load_profile(name)
    except ConfigError as exc:
        problems.extend(exc.problems)
    except (ProfileError, ValueError, TypeError, AttributeError, KeyError) as exc:  # a profile's shape
        problems.append(doc.problem(loc, f"profile {name[:80]!r} is invalid: {exc}"))
    return None


def _apply_overrides(
    doc: YamlDocument,
    loc: tuple,
    points: list[Point],
    overrides: dict[str, PointOverride],
    problems: list[ConfigProblem],
) -> list[Point]:
    by_name = {p.name: p for p in points}
    for name in overrides:
        if name not in by_name:
            problems.append(
                doc.problem(loc + ("overrides", name), f"no point named {name!r} (known: {sorted(by_name)})")
            )
    out = []
    for p in points:
        ov = overrides.get(p.name)
        if ov is None:
            out.append(p)
            continue
        if not ov.enabled:
            continue
        changes = ov.model_dump(exclude_none=True, exclude={"enabled"})
        try:
            out.append(Point.model_validate({**p.model_dump(by_alias=True), **changes}))
        except ValidationError as exc:
            problems.extend(_problems_from(exc, doc, loc + ("overrides", p.name)))
    return out


def _check_limits(doc: YamlDocument, loc: tuple, p: Point, problems: list[ConfigProblem]) -> None:
    rng = INTEGER_RANGE.get(p.type)
    if rng is None or not p.writable:
        return
    lo = rng[0] * p.scale + p.offset
    hi = rng[1] * p.scale + p.offset
    lo, hi = min(lo, hi), max(lo, hi)
    for bound_name, bound in (("min", p.min), ("max", p.max)):
        if bound is not None and not lo <= bound <= hi:
            problems.append(
                doc.problem(
                    loc + ("points",), f"{p.name}: {bound_name} {bound} does not fit {p.type.value} (range {lo}..{hi})"
                )
            )
