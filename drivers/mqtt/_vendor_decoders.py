"""Decoders for device formats: Tasmota, Shelly Gen2 and key/value payloads (sources in
:mod:`drivers.mqtt._decoders`, whose helpers and contract they share: a :class:`Decoded`, or
``DecodeError``/``Ignored``, nothing else)."""

from __future__ import annotations

import re
from datetime import UTC, tzinfo
from typing import Any

from drivers.errors import DecodeError
from drivers.mqtt._decoders import (
    MAX_PAYLOAD_BYTES,
    Decoded,
    Decoder,
    Ignored,
    TimestampSpec,
    _finish,
    _flatten,
    _get,
    as_float,
    field_name,
    load_json,
    parse_path,
    parse_timestamp,
)

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
