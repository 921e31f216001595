"""One analytics dialect: numpydoc Parameters / Returns / References in every exported function, units in brackets."""

from __future__ import annotations

import inspect
import re

import pytest

import analytics

FUNCTIONS = sorted(n for n in analytics.__all__ if inspect.isfunction(getattr(analytics, n)))
UNIT_SUFFIX = re.compile(r"_(kw|kwh|mwh|kg|ns|h|min|pct|v|m2)$")
HEADER = re.compile(r"^(\w+(?:, \w+)*) : (.+)$")


def sections(doc: str) -> dict[str, list[str]]:
    lines = inspect.cleandoc(doc).splitlines()
    out: dict[str, list[str]] = {}
    current = None
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and line.strip() and set(lines[i + 1].strip()) == {"-"} \
                and len(lines[i + 1].strip()) == len(line.strip()):
            current = line.strip()
            out[current] = []
        elif current is not None and not set(line.strip()) <= {"-"}:
            out[current].append(line)
    return out


def test_every_public_function_is_listed() -> None:
    assert len(FUNCTIONS) > 40 and "battery_envelope" in FUNCTIONS and "parse_local" in FUNCTIONS


@pytest.mark.parametrize("name", FUNCTIONS)
def test_numpydoc_sections_and_units(name: str) -> None:
    fn = getattr(analytics, name)
    assert fn.__doc__, f"{name} has no docstring"
    found = sections(fn.__doc__)
    assert "Returns" in found, f"{name}: no Returns section"
    assert any(line.strip() for line in found.get("References", [])), f"{name}: no References section"
    params = list(inspect.signature(fn).parameters)
    if not params:
        return
    assert "Parameters" in found, f"{name}: no Parameters section"
    documented: dict[str, str] = {}
    for line in found["Parameters"]:
        m = HEADER.match(line)
        if m:
            documented.update(dict.fromkeys(m.group(1).split(", "), m.group(2)))
    assert set(params) <= set(documented), f"{name}: undocumented {sorted(set(params) - set(documented))}"
    for param in params:
        if UNIT_SUFFIX.search(param):
            assert re.search(r"\[[^\]]+\]", documented[param]), f"{name}: {param} has no [unit]"
