"""Decoders, topic templates and the ``mqtt:`` site section; fuzzing that nothing but DecodeError or
Ignored leaves a decoder, and that every message through the ingest is stored or dead-lettered."""

from __future__ import annotations

import asyncio
import json
import math
import time
import zoneinfo
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import drivers.mqtt as dec
from drivers.mqtt import InboundMessage, TopicTemplateError, parse_template
from drivers.mqtt._decoders import _MAX_NS, _MIN_NS
from gateway.config import load_site
from gateway.errors import ConfigError
from gateway.ingest import MqttIngest
from gateway.journal import Journal
from tests.mqtt_helpers import rows_by_series, section

SH = zoneinfo.ZoneInfo("Asia/Shanghai")
TS = 1_700_000_000
FM = dec.FieldMapping


# -- templates -------------------------------------------------------------------------------
def test_template_placeholders_become_tags_and_wildcards_subscribe() -> None:
    t = parse_template("pedf/{building}/{device}/telemetry")
    assert t.filter == "pedf/+/+/telemetry" and t.tag_names == ("building", "device")
    assert t.match("pedf/office_a/m1/telemetry") == {"building": "office_a", "device": "m1"}
    assert t.match("pedf/office_a/m1/status") is None and t.match("pedf/office_a/telemetry") is None
    assert t.match("pedf//m1/telemetry") is None  # an empty level is no name
    h = parse_template("site/+/{device}/#")
    assert h.filter == "site/+/+/#"
    assert h.match("site/x/d1/a/b/c") == {"device": "d1"} and h.match("site/x") is None
    assert h.match("site/x/d1") == {"device": "d1"}  # '#' also matches its parent level (MQTT 5.0 §4.7.1.2)
    assert parse_template("+/{device}").match("$SYS/broker") is None  # MQTT 5.0 §4.7.2


@pytest.mark.parametrize("bad, why", [("a/#/b", "last"), ("a/{Dev}/b", "whole level"), ("a/x{device}", "whole level"),
                                      ("a/{d}/{d}", "twice"), ("", "empty"), ("a/b+", "whole level")])
def test_bad_templates_say_why(bad: str, why: str) -> None:
    with pytest.raises(TopicTemplateError, match=why):
        parse_template(bad)


# -- json mapping and timestamps ---------------------------------------------------------------
def test_json_mapping_paths_indices_scale_offset() -> None:
    d = dec.json_decoder([FM("p_kw", "a.p", 0.001), FM("v_l2_v", "a.v[1]"), FM("last", "a.v[-1]"),
                          FM("t_c", "x.0.k", 0.1, -40.0), FM("gone", "nope.here")], None, SH)
    out = d(json.dumps({"a": {"p": 2500, "v": [230, 231, 232]}, "x": [{"k": 650}]}).encode())
    assert out.fields == ("p_kw", "v_l2_v", "last", "t_c", "gone")
    assert out.values[:4] == [2.5, 231.0, 232.0, pytest.approx(25.0)] and math.isnan(out.values[4])
    assert out.ts_ns is None and out.problems == ()


def test_json_unusable_values_become_missing_and_all_missing_is_rejected() -> None:
    d = dec.json_decoder([FM("a", "a"), FM("b", "b"), FM("c", "c"), FM("d", "d")], None, SH)
    out = d(b'{"a": NaN, "b": Infinity, "c": "12.5", "d": 1e999}')
    assert out.values[2] == 12.5 and all(math.isnan(v) for k, v in zip(out.fields, out.values, strict=True)
                                         if k != "c")
    with pytest.raises(dec.DecodeError, match="no usable field"):
        d(b'{"a": {"x": 1}, "b": [1], "c": "abc", "d": 10' + b"0" * 400 + b"}")
    with pytest.raises(dec.DecodeError, match="none of the mapped paths"):
        d(b'{"z": 1}')
    with pytest.raises(dec.DecodeError, match="JSON object"):
        d(b"42")
    with pytest.raises(dec.DecodeError, match=r"nested too deeply|not JSON"):
        d(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(dec.DecodeError, match="exceeds"):
        d(b'{"a": "' + b"x" * (dec.MAX_PAYLOAD_BYTES + 1) + b'"}')


@pytest.mark.parametrize("raw, fmt, expected_ns", [
    ("2023-11-14T22:13:20Z", "auto", TS * 10**9),
    ("2023-11-14T22:13:20.5+00:00", "iso8601", TS * 10**9 + 500_000_000),
    ("2023-11-15T06:13:20", "auto", TS * 10**9),  # naive: the site's zone, +08:00
    (TS, "auto", TS * 10**9), (TS * 1000 + 1, "auto", TS * 10**9 + 1_000_000),
    (TS * 10**6 + 1, "auto", TS * 10**9 + 1000), (TS * 10**9 + 1, "auto", TS * 10**9 + 1),
    (TS + 0.123456, "epoch_s", TS * 10**9 + 123_456_000), (str(TS), "epoch_s", TS * 10**9),
    (TS * 1000, "epoch_ms", TS * 10**9),
])
def test_timestamps(raw: object, fmt: str, expected_ns: int) -> None:
    assert dec.parse_timestamp(raw, fmt, SH) == expected_ns


@pytest.mark.parametrize("raw, fmt", [("yesterday", "auto"), (TS, "epoch_ms"), (-1, "auto"), (True, "auto"),
                                      (None, "auto"), ("2023-11-14", "epoch_s"), (float("nan"), "auto"), (10**30, "auto")])
def test_bad_timestamps_are_rejected(raw: object, fmt: str) -> None:
    with pytest.raises(dec.DecodeError):
        dec.parse_timestamp(raw, fmt, SH)


def test_number_decoder() -> None:
    d = dec.number_decoder("p_kw", scale=0.001)
    assert d(b" 1500\n").values == [1.5]
    for bad in (b"nan", b"inf", b"", b"on", b"1" * 100, b"\xff"):
        with pytest.raises(dec.DecodeError):
            d(bad)


def test_tasmota_phases_and_sensors() -> None:
    d = dec.tasmota_decoder(SH)
    out = d(json.dumps({"Time": "2023-11-15T06:13:20", "ENERGY": {"Power": [100, 200, 300], "Total": 5,
                                                                  "Voltage": [230, 231, 232]},
                        "BME280": {"Temperature": 21.5, "Humidity": 40}, "TempUnit": "C"}).encode())
    assert dict(zip(out.fields, out.values, strict=True)) == {
        "p_l1_kw": 0.1, "p_l2_kw": 0.2, "p_l3_kw": 0.3, "e_import_kwh": 5.0, "v_l1_v": 230.0, "v_l2_v": 231.0,
        "v_l3_v": 232.0, "bme280_temperature": 21.5, "bme280_humidity": 40.0}
    assert out.ts_ns == TS * 10**9
    assert d(b'{"ENERGY": {"Power": 5}}').ts_ns is None  # no Time: arrival time


def test_shelly_gen2_status_em_and_events() -> None:
    d = dec.shelly_decoder()
    out = d(json.dumps({"src": "shellypro3em-1", "method": "NotifyFullStatus", "params": {
        "ts": TS, "em:0": {"id": 0, "a_act_power": 1000, "total_act_power": 3000, "a_voltage": 230},
        "emdata:0": {"total_act": 12000, "total_act_ret": 500}, "sys": {"uptime": 5, "available_updates": {}}}}).encode())
    got = dict(zip(out.fields, out.values, strict=True))
    assert got["em0_p_l1_kw"] == 1.0 and got["em0_p_kw"] == 3.0 and got["em0_v_l1_v"] == 230.0
    assert got["emdata0_e_import_kwh"] == 12.0 and got["emdata0_e_export_kwh"] == 0.5
    assert out.device == "shellypro3em-1" and out.ts_ns == TS * 10**9
    with pytest.raises(dec.Ignored):
        d(b'{"src": "s", "method": "NotifyEvent", "params": {"events": []}}')
    assert d(b'{"id": 0, "apower": 20.0, "aenergy": {"total": 1000}}').values == [0.02, 1.0]  # status/switch:0


def test_kv_object_and_pairs() -> None:
    d = dec.kv_decoder(dec.TimestampSpec("time", "epoch_s"), SH)
    out = d(json.dumps({"time": TS, "a": {"b": 1, "c": [2, 3]}, "ok": False, "name": "pump"}).encode())
    assert dict(zip(out.fields, out.values, strict=True)) == {"a_b": 1.0, "a_c_1": 2.0, "a_c_2": 3.0, "ok": 0.0}
    assert out.ts_ns == TS * 10**9
    p = dec.kv_decoder(None, SH)(b"p_kw=1.5, q_kvar=-0.2\nPF=0.99")
    assert dict(zip(p.fields, p.values, strict=True)) == {"p_kw": 1.5, "q_kvar": -0.2, "pf": 0.99}
    with pytest.raises(dec.DecodeError, match="key=value"):
        dec.kv_decoder(None, SH)(b"hello world")


# -- fuzzing -----------------------------------------------------------------------------------
DECODERS = [dec.json_decoder([FM("a", "a"), FM("b", "b[0].c", 2.0)], dec.TimestampSpec("t"), SH),
            dec.number_decoder("x"), dec.tasmota_decoder(SH), dec.shelly_decoder(),
            dec.kv_decoder(None, SH), dec.kv_decoder(dec.TimestampSpec("t"), SH)]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.sampled_from(["a", "b", "c", "t", "Time", "ENERGY", "Power", "params", "ts", "method", "src", "switch:0",
                         "apower", "aenergy", "total"]) | st.text(max_size=8), children, max_size=5),
    max_leaves=30)


def _check(decoder: dec.Decoder, payload: bytes) -> None:
    try:
        out = decoder(payload)
    except (dec.DecodeError, dec.Ignored):
        return
    assert len(out.fields) == len(set(out.fields)) == len(out.values) > 0
    assert all(math.isnan(v) or math.isfinite(v) for v in out.values) and any(v == v for v in out.values)
    assert out.ts_ns is None or _MIN_NS <= out.ts_ns < _MAX_NS


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(payload: bytes) -> None:
    for d in DECODERS:
        _check(d, payload)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_fuzz_random_json(doc: object) -> None:
    payload = json.dumps(doc).encode()  # NaN and Infinity are written as JSON extensions, as devices do
    for d in DECODERS:
        _check(d, payload)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.binary(min_size=1, max_size=30) | st.sampled_from([b"a/d1/v", b"j/d2", b"a/\xff/v"]),
                          st.binary(max_size=50) | json_values.map(lambda v: json.dumps(v).encode())),
                min_size=1, max_size=20))
def test_fuzz_every_message_is_stored_or_dead_lettered(tmp_path: Path, messages: list[tuple[bytes, bytes]]) -> None:
    sec = section(1, [{"topic": "a/{device}/v", "decoder": "number", "field": "v", "measurement": "m", "building": "b"},
                      {"topic": "j/{device}", "decoder": "kv", "measurement": "k", "building": "b"}])
    path = tmp_path / f"fuzz-{time.monotonic_ns()}.db"

    async def run() -> tuple[dict, int, int]:
        async with Journal(path, synchronous="NORMAL", commit_interval_s=0.001) as journal:
            ingest = MqttIngest(sec, journal, "t")
            acked: list[int] = []
            batch = [InboundMessage(t, p, 1, i + 1, False, 1, time.time_ns()) for i, (t, p) in enumerate(messages)]
            await ingest.handle(batch, lambda m: acked.append(m.mid) or True)
            while ingest._outstanding:
                await asyncio.sleep(0.005)
            stored = sum(len(v) for v in (await rows_by_series(journal)).values())
            dead = len(await journal.payload_dead_letters(limit=1000))
            return ingest.counters, stored + dead + ingest.counters["ignored"], len(set(acked))

    counters, accounted, acked = asyncio.run(run())
    assert accounted == len(messages) == acked  # each decoded, dead-lettered or ignored — and acknowledged
    assert counters["dead_lettered"] + counters["committed"] + counters["ignored"] == len(messages)


# -- the site file -----------------------------------------------------------------------------
SITE = """site: {name: s}
parks: [{name: p, grid_region: east_china}]
buildings: [{name: b, park: p, floor_area_m2: 100}]
mqtt:
  brokers: [{host: 127.0.0.1, port: 1883, username: gw, password: "${MQTT_PASSWORD}"}]
  protocol: 3.1.1
  subscriptions:
    - {topic: "pedf/{building}/{device}/telemetry", decoder: json, measurement: meter,
       fields: {p_kw: {path: power, scale: 0.001}}}
"""


def test_site_file_mqtt_section(tmp_path: Path) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(SITE)
    site = load_site(f, {"MQTT_PASSWORD": "s3cret"})
    mqtt = site.config.mqtt
    assert mqtt is not None and mqtt.protocol == "3.1.1" and mqtt.session_expiry_s == 86400
    assert mqtt.brokers[0].password.get_secret_value() == "s3cret" and "s3cret" not in repr(mqtt)
    f.write_text(SITE.replace("pedf/{building}/{device}/telemetry", "pedf/{Building}/x")
                 + """    - {topic: "a/{device}", decoder: json, measurement: m, building: nowhere, qos: 2}
    - {topic: "c/{device}", decoder: number, measurement: m, building: b}
""")
    with pytest.raises(ConfigError) as err:
        load_site(f, {"MQTT_PASSWORD": "x"})
    text = str(err.value)
    assert "site.yaml:10: mqtt.subscriptions[1].qos" in text  # pydantic pass first: qos 2 is refused
    f.write_text(SITE.replace("pedf/{building}/{device}/telemetry", "pedf/{Building}/x")
                 + """    - {topic: "a/{device}", decoder: json, measurement: m, building: nowhere}
    - {topic: "c/{device}", decoder: number, measurement: m, building: b}
""")
    with pytest.raises(ConfigError) as err:
        load_site(f, {"MQTT_PASSWORD": "x"})
    text = str(err.value)
    assert "site.yaml:8: mqtt.subscriptions[0].topic: level '{Building}'" in text
    assert "site.yaml:10: mqtt.subscriptions[1].building: unknown building 'nowhere'" in text
    assert "mqtt.subscriptions[1].fields: the json decoder needs a field mapping" in text
    assert "site.yaml:11: mqtt.subscriptions[2].field: the number decoder needs the field's name" in text
