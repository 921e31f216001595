"""Payload decoders: MQTT payload bytes → field names, float values and an optional timestamp.

Every decoder either returns a :class:`Decoded` or raises :class:`DecodeError` (the reason goes to
the dead-letter table) or :class:`Ignored` (a well-formed message that carries no reading, such as a
Shelly ``NotifyEvent``); nothing else escapes (tests/test_mqtt_decoders.py fuzzes them).
NaN means "not reported" (gateway/series.py), so a NaN, an infinity, a number beyond float64, a
string or an object where a number was expected makes that field missing; a message with no usable
field is rejected.

Formats and their sources:
- ``json``: a field mapping of dotted paths with array indices (``ENERGY.Power[0]``), per-field
  scale, offset and unit.
- ``number``: the whole payload is one decimal number (Home Assistant / Tasmota single-value topics).
Device formats (:mod:`drivers.mqtt._vendor_decoders`, built on the helpers here):
- ``tasmota``: ``tele/<topic>/SENSOR`` and ``…/ENERGY`` JSON, Tasmota docs "JSON Status Responses"
  and "Power Monitoring" (https://tasmota.github.io/docs/JSON-Status-Responses/): ``Time`` is local
  time without zone; ``ENERGY.Power`` W, ``Total``/``Today``/``Yesterday`` kWh, arrays per phase.
- ``shelly``: Shelly Gen2 RPC notifications ``NotifyStatus``/``NotifyFullStatus`` (Shelly API docs,
  "Notifications", https://shelly-api-docs.shelly.cloud/gen2/General/Notifications): ``params.ts``
  epoch seconds, components ``switch:N`` (``apower`` W, ``aenergy.total`` Wh), ``em:N``/``emdata:N``.
- ``kv``: a flat or nested JSON object of numbers, or ``key=value`` pairs; leaves become fields.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from drivers.errors import DecodeError

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_FIELDS = 256
_NAME_BAD = re.compile(r"[^a-z0-9_]+")
_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")
_MIN_NS, _MAX_NS = 946_684_800 * 10**9, 4_102_444_800 * 10**9  # 2000-01-01 .. 2100-01-01 UTC


class Ignored(Exception):
    """A well-formed message that carries no reading (counted, acknowledged, not stored)."""


@dataclass(slots=True)
class Decoded:
    fields: tuple[str, ...]
    values: list[float]
    ts_ns: int | None  # None: stamp with arrival time
    device: str | None = None  # a device name the payload itself gives (Shelly ``src``)
    problems: tuple[str, ...] = ()  # fields that were present but unusable


@dataclass(frozen=True, slots=True)
class FieldMapping:
    name: str
    path: str
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class TimestampSpec:
    path: str
    format: str = "auto"  # auto, iso8601, epoch_s, epoch_ms, epoch_us, epoch_ns


Decoder = Callable[[bytes], Decoded]


# -- helpers -------------------------------------------------------------------------------------
def parse_path(path: str) -> tuple[str | int, ...]:
    """``a.b[0].c`` or ``a.b.0.c`` → ("a", "b", 0, "c")."""
    out: list[str | int] = []
    pos = 0
    for m in _PATH_TOKEN.finditer(path):
        if m.start() != pos and path[pos:m.start()] != ".":
            raise ValueError(f"bad path {path!r} near position {pos}")
        key, index = m.groups()
        out.append(int(index) if index is not None else (int(key) if key.lstrip("-").isdigit() else key))
        pos = m.end()
    if not out or pos != len(path):
        raise ValueError(f"bad path {path!r}")
    return tuple(out)


def _get(doc: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        if isinstance(step, int):
            if isinstance(doc, list) and -len(doc) <= step < len(doc):
                doc = doc[step]
            elif isinstance(doc, dict) and str(step) in doc:
                doc = doc[str(step)]
            else:
                return None
        elif isinstance(doc, dict):
            doc = doc.get(step)
        else:
            return None
    return doc


def as_float(raw: Any) -> float | None:
    """A finite float from a JSON number, bool or numeric string; None when unusable."""
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    try:
        if isinstance(raw, int | float) or (isinstance(raw, str) and len(raw) <= 64):
            value = float(raw)
        else:
            return None
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def field_name(*parts: str) -> str:
    name = _NAME_BAD.sub("_", "_".join(p for p in parts if p).lower()).strip("_")
    if not name or not name[0].isalpha():
        name = "f_" + name
    return name[:64]


def load_json(payload: bytes) -> Any:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise DecodeError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        return json.loads(payload)
    except UnicodeDecodeError:
        raise DecodeError("payload is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise DecodeError("JSON nested too deeply") from None
    except ValueError as exc:  # e.g. int with too many digits
        raise DecodeError(f"not JSON: {exc}") from None


def parse_timestamp(raw: Any, fmt: str, tz: tzinfo) -> int:
    """Epoch ns from an ISO 8601 string (naive → ``tz``) or an epoch number; raises DecodeError."""
    if isinstance(raw, bool) or raw is None:
        raise DecodeError(f"timestamp missing or not a time: {str(raw)[:40]!r}")
    if isinstance(raw, str) and fmt in ("auto", "iso8601"):
        try:
            dt = datetime.fromisoformat(raw.strip()[:64])
        except ValueError:
            if fmt == "iso8601" or as_float(raw) is None:
                raise DecodeError(f"timestamp {raw[:40]!r} is not ISO 8601") from None
        else:
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=tz)
            ts = int(dt.timestamp()) * 10**9 + dt.microsecond * 1000
            return _in_range(ts, raw)
    number = as_float(raw)
    if number is None:
        raise DecodeError(f"timestamp {str(raw)[:40]!r} is not a number")
    if fmt == "auto":  # magnitude tells the unit for any date between 2000 and 2100
        fmt = ("epoch_s" if number < 1e11 else "epoch_ms" if number < 1e14
               else "epoch_us" if number < 1e17 else "epoch_ns")
    factor = {"epoch_s": 1e9, "epoch_ms": 1e6, "epoch_us": 1e3, "epoch_ns": 1.0}.get(fmt)
    if factor is None:
        raise DecodeError(f"timestamp format {fmt} cannot read a number")
    if fmt == "epoch_ns" and isinstance(raw, int):
        return _in_range(raw, raw)
    if isinstance(raw, int) or fmt == "epoch_ns":
        return _in_range(int(raw) * int(factor) if isinstance(raw, int) else round(number), raw)
    return _in_range(round(number * (factor / 1000)) * 1000, raw)  # µs: float64 keeps 15-16 digits


def _in_range(ts: int, raw: Any) -> int:
    if not _MIN_NS <= ts < _MAX_NS:
        raise DecodeError(f"timestamp {str(raw)[:40]!r} is outside 2000..2100")
    return ts


def _finish(fields: list[str], values: list[float | None], ts: int | None, problems: list[str],
            device: str | None = None) -> Decoded:
    keep_f, keep_v, seen = [], [], set()
    for f, v in zip(fields, values, strict=True):
        if f in seen:
            problems.append(f"{f}: duplicate field name")
            continue
        seen.add(f)
        keep_f.append(f)
        keep_v.append(math.nan if v is None else v)
    if not any(v == v for v in keep_v):
        why = "; ".join(problems[:5]) or "no numeric value in the payload"
        raise DecodeError(f"no usable field: {why}")
    if len(keep_f) > MAX_FIELDS:
        raise DecodeError(f"{len(keep_f)} fields exceed {MAX_FIELDS}")
    return Decoded(tuple(keep_f), keep_v, ts, device, tuple(problems))


def _flatten(doc: Any, prefix: str, out: dict[str, Any], depth: int = 0) -> None:
    if depth > 8 or len(out) > MAX_FIELDS:
        return
    if isinstance(doc, dict):
        for k, v in doc.items():
            _flatten(v, field_name(prefix, str(k)) if prefix else field_name(str(k)), out, depth + 1)
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:16]):
            _flatten(v, f"{prefix}_{i + 1}", out, depth + 1)
    elif prefix:
        out[prefix] = doc


# -- decoders ------------------------------------------------------------------------------------
def json_decoder(mapping: list[FieldMapping], timestamp: TimestampSpec | None, tz: tzinfo) -> Decoder:
    """A JSON object read through a field mapping; paths are parsed once, here."""
    plan = [(m.name, parse_path(m.path), m.scale, m.offset) for m in mapping]
    names = [m.name for m in mapping]
    ts_path = parse_path(timestamp.path) if timestamp else None
    ts_fmt = timestamp.format if timestamp else "auto"

    keys_only = [all(isinstance(step, str) for step in path) for _, path, _, _ in plan]
    fields = tuple(names)
    nan = math.nan

    def decode(payload: bytes) -> Decoded:
        doc = load_json(payload)
        if not isinstance(doc, dict | list):
            raise DecodeError(f"expected a JSON object, got {type(doc).__name__}")
        values: list[float] = []
        problems: list[str] = []
        usable = False
        for (name, path, scale, offset), plain in zip(plan, keys_only, strict=True):
            if plain:  # the common case, dict lookups only: a fast path measured in benchmarks/bench_mqtt.py
                raw = doc
                try:
                    for step in path:
                        raw = raw[step]
                except (KeyError, TypeError, IndexError):
                    raw = None
            else:
                raw = _get(doc, path)
            kind = type(raw)
            if kind is float:
                value: float | None = raw if raw - raw == 0.0 else None
            elif kind is int:
                try:
                    value = float(raw)
                except OverflowError:
                    value = None
            else:
                value = as_float(raw)
            if value is None:
                if raw is not None:
                    problems.append(f"{name}: unusable value {str(raw)[:40]!r}")
                values.append(nan)
                continue
            value = value * scale + offset
            if value - value == 0.0:
                values.append(value)
                usable = True
            else:
                values.append(nan)
        if not usable:
            why = "; ".join(problems[:5]) or "none of the mapped paths is present"
            raise DecodeError(f"no usable field: {why}")
        ts = parse_timestamp(_get(doc, ts_path), ts_fmt, tz) if ts_path is not None else None
        return Decoded(fields, values, ts, None, tuple(problems))

    return decode


def number_decoder(name: str, scale: float = 1.0, offset: float = 0.0) -> Decoder:
    def decode(payload: bytes) -> Decoded:
        if len(payload) > 64:
            raise DecodeError(f"expected a number, got {len(payload)} bytes")
        try:
            value = float(payload.strip())
        except ValueError:
            raise DecodeError(f"not a number: {payload[:40]!r}") from None
        value = value * scale + offset
        if not math.isfinite(value):
            raise DecodeError(f"not a finite number: {payload[:40]!r}")
        return Decoded((name,), [value], None)

    return decode
