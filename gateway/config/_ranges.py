"""The range of every numeric field of the site file, read from the pydantic models, so that the
table in docs/configuration.md is the models' own word (a test compares the two).

``python -m gateway.config._ranges`` prints the table; ``--write docs/configuration.md`` replaces
it between the ``<!-- ranges -->`` markers.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo

BEGIN, END = "<!-- ranges -->", "<!-- /ranges -->"


@dataclass(frozen=True)
class NumericField:
    path: str
    kind: str  # "int" or "float"
    low: str | None  # "≥ 0", "> 0"
    high: str | None
    default: str


def _roots() -> list[tuple[str, type[BaseModel]]]:
    from gateway.config._schema import DeviceSection, SiteFile

    return [("", SiteFile), ("devices[]", DeviceSection)]


def numeric_fields() -> list[NumericField]:
    seen: set[tuple[str, type]] = set()
    out: list[NumericField] = []
    for prefix, model in _roots():
        out.extend(_walk(prefix, model, seen))
    return out


def _walk(prefix: str, model: type[BaseModel], seen: set[tuple[str, type]]) -> Iterator[NumericField]:
    if (prefix, model) in seen:
        return
    seen.add((prefix, model))
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        yield from _field(path, info.annotation, list(info.metadata), info, seen)


def _field(path: str, tp: Any, metadata: list[Any], info: FieldInfo | None,
           seen: set[tuple[str, type]]) -> Iterator[NumericField]:
    origin = get_origin(tp)
    if origin is Annotated:
        inner, *extra = get_args(tp)
        more = [m for e in extra for m in (e.metadata if isinstance(e, FieldInfo) else [e])]
        yield from _field(path, inner, metadata + more, info, seen)
    elif origin in (Union, types.UnionType):
        for arg in get_args(tp):
            if arg is not type(None):
                yield from _field(path, arg, metadata, info, seen)
    elif origin is list:
        yield from _field(path + "[]", get_args(tp)[0], [], None, seen)
    elif origin is dict:
        yield from _field(path + ".*", get_args(tp)[1], [], None, seen)
    elif origin is Literal:
        return
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        yield from _walk(path, tp, seen)
    elif tp in (int, float):
        low = high = None
        for m in metadata:
            if isinstance(m, at.Ge):
                low = f"≥ {_num(m.ge)}"
            elif isinstance(m, at.Gt):
                low = f"> {_num(m.gt)}"
            elif isinstance(m, at.Le):
                high = f"≤ {_num(m.le)}"
            elif isinstance(m, at.Lt):
                high = f"< {_num(m.lt)}"
        default = "" if info is None or info.is_required() or info.default_factory else _show(info.default)
        yield NumericField(path, tp.__name__, low, high, default)


def _show(value: Any) -> str:
    return "" if value is None else _num(value) if isinstance(value, int | float) else str(value)


def _num(value: float) -> str:
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e6):
        return str(int(value))
    mantissa, _, exponent = f"{value:g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def render() -> str:
    rows = ["| field | type | range | default |", "|---|---|---|---|"]
    for f in numeric_fields():
        row = f"| `{f.path}` | {f.kind} | {f.low or '?'} and {f.high or '?'} | {f.default} |"
        if row not in rows:  # the two sink types share their numeric fields
            rows.append(row)
    return "\n".join(rows)


def replace_table(text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{render()}\n{END}{tail}"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        doc = Path(sys.argv[2])
        doc.write_text(replace_table(doc.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(render())
