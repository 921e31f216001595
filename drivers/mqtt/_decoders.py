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
from datetime import UTC, datetime, tzinfo
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


#: Tasmota ENERGY keys → (field, factor to the field's unit)
_TASMOTA_ENERGY = {
    "Power": ("p_kw", 1e-3), "ApparentPower": ("s_kva", 1e-3), "ReactivePower": ("q_kvar", 1e-3),
    "Voltage": ("v_v", 1.0), "Current": ("i_a", 1.0), "Factor": ("pf", 1.0), "Frequency": ("f_hz", 1.0),
    "Total": ("e_import_kwh", 1.0), "Today": ("e_today_kwh", 1.0), "Yesterday": ("e_yesterday_kwh", 1.0),
    "ExportActive": ("e_export_kwh", 1.0),
}


_TASMOTA_TEXT = {"Id", "TotalStartTime", "TempUnit", "PressureUnit", "SpeedUnit"}


def _with_phase(name: str, phase: int) -> str:
    base, _, unit = name.rpartition("_")
    return f"{base}_l{phase}_{unit}" if base else f"{name}_l{phase}"


def tasmota_decoder(tz: tzinfo) -> Decoder:
    def decode(payload: bytes) -> Decoded:
        doc = load_json(payload)
        if not isinstance(doc, dict):
            raise DecodeError(f"expected a Tasmota JSON object, got {type(doc).__name__}")
        fields: list[str] = []
        values: list[float | None] = []
        problems: list[str] = []
        for sensor, body in doc.items():
            if sensor == "Time" or not isinstance(body, dict):
                continue
            for key, raw in body.items():
                if key in _TASMOTA_TEXT:
                    continue
                if sensor == "ENERGY" and key in _TASMOTA_ENERGY:
                    name, factor = _TASMOTA_ENERGY[key]
                else:
                    name, factor = field_name(str(sensor), str(key)), 1.0
                items = list(enumerate(raw[:16], 1)) if isinstance(raw, list) else [(0, raw)]
                for phase, item in items:
                    if isinstance(item, str) and as_float(item) is None:
                        continue  # TotalStartTime, TempUnit, Id: text, not readings
                    value = as_float(item)
                    if value is None:
                        problems.append(f"{sensor}.{key}: unusable value {str(item)[:40]!r}")
                    fields.append(_with_phase(name, phase) if phase else name)
                    values.append(None if value is None else value * factor)
        ts = parse_timestamp(doc["Time"], "auto", tz) if "Time" in doc else None
        return _finish(fields, values, ts, problems)

    return decode


#: Shelly Gen2 component keys → (field, factor); energies are Wh, powers W
_SHELLY = {
    "apower": ("p_kw", 1e-3), "voltage": ("v_v", 1.0), "current": ("i_a", 1.0), "freq": ("f_hz", 1.0),
    "pf": ("pf", 1.0), "aenergy.total": ("e_import_kwh", 1e-3), "ret_aenergy.total": ("e_export_kwh", 1e-3),
    "temperature.tC": ("temp_c", 1.0), "total_act_power": ("p_kw", 1e-3), "total_aprt_power": ("s_kva", 1e-3),
    "total_current": ("i_a", 1.0), "total_act": ("e_import_kwh", 1e-3), "total_act_ret": ("e_export_kwh", 1e-3),
    "a_act_power": ("p_l1_kw", 1e-3), "b_act_power": ("p_l2_kw", 1e-3), "c_act_power": ("p_l3_kw", 1e-3),
    "a_voltage": ("v_l1_v", 1.0), "b_voltage": ("v_l2_v", 1.0), "c_voltage": ("v_l3_v", 1.0),
    "a_current": ("i_l1_a", 1.0), "b_current": ("i_l2_a", 1.0), "c_current": ("i_l3_a", 1.0),
    "a_total_act_energy": ("e_import_l1_kwh", 1e-3), "b_total_act_energy": ("e_import_l2_kwh", 1e-3),
    "c_total_act_energy": ("e_import_l3_kwh", 1e-3),
}
_SHELLY_SKIP = {"id", "minute_ts", "by_minute", "temperature.tF", "source", "output", "errors", "flags"}


def shelly_decoder() -> Decoder:
    def decode(payload: bytes) -> Decoded:
        doc = load_json(payload)
        if not isinstance(doc, dict):
            raise DecodeError(f"expected a Shelly notification object, got {type(doc).__name__}")
        method = doc.get("method")
        if method is not None and method not in ("NotifyStatus", "NotifyFullStatus"):
            raise Ignored(f"Shelly {str(method)[:40]} carries no reading")
        # a notification holds components; a ``<prefix>/status/<component>`` message is one component
        params = doc.get("params") if method is not None else {"": doc}
        if not isinstance(params, dict):
            raise DecodeError("Shelly notification without params")
        ts = parse_timestamp(params["ts"], "epoch_s", UTC) if "ts" in params else None
        src = doc.get("src")
        fields: list[str] = []
        values: list[float | None] = []
        problems: list[str] = []
        for component, body in params.items():
            if not isinstance(body, dict):
                continue
            prefix = field_name(str(component).replace(":", "")) if component else ""
            leaves: dict[str, Any] = {}
            for key, raw in body.items():
                if isinstance(raw, dict):
                    for sub, leaf in raw.items():
                        leaves[f"{key}.{sub}"] = leaf
                else:
                    leaves[str(key)] = raw
            for key, raw in leaves.items():
                if key in _SHELLY_SKIP or key.split(".")[-1] in _SHELLY_SKIP or isinstance(raw, list | dict | str):
                    continue
                name, factor = _SHELLY.get(key, (field_name(key.replace(".", "_")), 1.0))
                value = as_float(raw)
                if value is None and raw is not None:
                    problems.append(f"{component}.{key}: unusable value {str(raw)[:40]!r}")
                fields.append(f"{prefix}_{name}" if prefix else name)
                values.append(None if value is None else value * factor)
        device = str(src)[:64] if isinstance(src, str) and src else None
        return _finish(fields, values, ts, problems, device)

    return decode


def kv_decoder(timestamp: TimestampSpec | None, tz: tzinfo) -> Decoder:
    """A JSON object whose numeric leaves are fields, or ``key=value`` pairs (comma/space/newline)."""
    ts_path = parse_path(timestamp.path) if timestamp else None
    ts_key = field_name(*(str(p) for p in ts_path)) if ts_path else None

    def decode(payload: bytes) -> Decoded:
        text = payload.lstrip()[:1]
        if text in (b"{", b"["):
            doc = load_json(payload)
        else:
            if len(payload) > MAX_PAYLOAD_BYTES:
                raise DecodeError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
            try:
                pairs = re.split(r"[,\s;]+", payload.decode("utf-8").strip())
            except UnicodeDecodeError:
                raise DecodeError("payload is not UTF-8 text") from None
            doc = {}
            for pair in pairs:
                key, sep, value = pair.partition("=")
                if not sep or not key:
                    raise DecodeError(f"not a key=value pair: {pair[:40]!r}")
                doc[key] = value
        if not isinstance(doc, dict):
            raise DecodeError(f"expected a key/value object, got {type(doc).__name__}")
        flat: dict[str, Any] = {}
        _flatten(doc, "", flat)
        ts = None
        if ts_path is not None:
            ts = parse_timestamp(_get(doc, ts_path), timestamp.format if timestamp else "auto", tz)
        fields: list[str] = []
        values: list[float | None] = []
        problems: list[str] = []
        for key, raw in flat.items():
            if key == ts_key:
                continue
            value = as_float(raw)
            if value is None:
                if not isinstance(raw, str) or raw[:1].isdigit():
                    problems.append(f"{key}: unusable value {str(raw)[:40]!r}")
                continue
            fields.append(key)
            values.append(value)
        return _finish(fields, values, ts, problems)

    return decode
