"""Cross-checks of a resolved site that no single field can make: two devices on one address, a
journal path that cannot be a database file, and a device's register map (overlapping points,
holes beyond the address space, ratios no point uses).

Errors stop ``pedf check`` and ``pedf run``; warnings are printed by ``pedf check`` and logged at
start, since the site still runs as written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from drivers.modbus import Point, plan_requests
from gateway.config._yaml import Loc
from gateway.errors import ConfigProblem

Problem = Callable[[Loc, str], ConfigProblem]
ADDRESS_SPACE = 65536  # registers (or bits) per register type: addresses 0..65535


def journal_path_problem(path: str) -> str | None:
    """Why ``path`` cannot hold the journal (a directory, a device, under a file), or None."""
    try:
        p = Path(path)
        if p.exists() or p.is_symlink():
            return None if p.is_file() else "exists and is not a regular file (a directory or a device?)"
        for parent in p.parents:
            if parent.exists():
                return None if parent.is_dir() else f"the journal's folder {str(parent)[:80]!r} is not a directory"
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path; OSError: name too long
        return f"the journal path cannot be used: {exc}"
    return None


def endpoint_problems(devices: Sequence[Any], indices: Sequence[int], problem: Problem) -> list[ConfigProblem]:
    """Two devices polled at the same host:port (or serial port) and unit: one of them is a mistake."""
    out: list[ConfigProblem] = []
    first: dict[tuple[Any, ...], str] = {}
    for index, device in zip(indices, devices, strict=True):
        s = device.section
        conn = s.connection
        where = f"{conn.port}" if conn.type == "serial" else f"{conn.host}:{conn.port}"
        key = (conn.port, s.unit_id) if conn.type == "serial" else (conn.host.lower(), conn.port, s.unit_id)
        if key in first:
            out.append(problem(("devices", index, "unit_id"),
                               f"{first[key]!r} is already polled at {where} unit {s.unit_id}"))
        else:
            first[key] = s.name
    return out


def layout_problems(
    points: Sequence[Point], origin: dict[str, Loc], holes: Sequence[tuple[int, int, int]], problem: Problem, loc: Loc
) -> list[ConfigProblem]:
    """Errors: two points sharing a register of one type, a hole outside 0..65535 (the points check
    their own end: "point runs past register 65535")."""
    out: list[ConfigProblem] = []
    reach: tuple[str, int, str] = ("", 0, "")  # register type, furthest end so far, its point
    for kind, address, end, name in sorted((p.register_type.value, p.address, p.end, p.name) for p in points):
        if kind == reach[0] and address < reach[1]:
            out.append(problem(origin.get(name, loc), f"{name} overlaps {reach[2]} at {kind} {address}"))
        if kind != reach[0] or end > reach[1]:
            reach = (kind, end, name)
    for fc, start, end in holes:
        if not 0 <= start < end <= ADDRESS_SPACE:
            out.append(problem(loc + ("profile",), f"hole FC{fc:02d}@{start}..{end} lies outside 0..65535"))
    return out


def plan_problems(
    points: Sequence[Point], origin: dict[str, Loc], device: Any, holes: Sequence[tuple[int, int, int]],
    problem: Problem, loc: Loc,
) -> list[ConfigProblem]:
    """Errors: a point that no single read can cover (longer than max_registers, on a hole)."""
    out: list[ConfigProblem] = []
    for p in points:
        if not p.is_bits and p.register_count > device.max_registers:
            limit = device.max_registers
            why = f"{p.name} spans {p.register_count} registers, more than one read takes (max_registers {limit})"
            out.append(problem(origin.get(p.name, loc), why))
        elif any(fc == p.function_code and start < p.end and p.address < end for fc, start, end in holes):
            out.append(problem(origin.get(p.name, loc), f"{p.name} lies on a hole of the profile"))
    if not out:
        try:
            plan_requests(points, max_registers=device.max_registers, max_gap=device.section.max_gap, holes=holes)
        except ValueError as exc:
            out.append(problem(loc, f"the points cannot be polled: {exc}"))
    return out


def ratio_warnings(section: Any, points: Sequence[Point], problem: Problem, loc: Loc) -> list[ConfigProblem]:
    """A PT or CT ratio that no point scales with: the ratio is ignored, likely not what was meant."""
    out: list[ConfigProblem] = []
    used = {p.ratio for p in points}
    for name, ratios in (("ct_ratio", {"ct", "pt*ct"}), ("pt_ratio", {"pt", "pt*ct"})):
        value = getattr(section, name)
        if value != 1.0 and not used & ratios:
            out.append(problem(loc + (name,), f"{name} {value:g} is set but no point scales with it "
                                              f"(ratio: {' or '.join(sorted(ratios))}); it has no effect"))
    return out
