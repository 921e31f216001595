"""A table of broken site files, each with the message the site engineer must see (file, line, field)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.config import load_site
from gateway.errors import ConfigError

HEAD = """\
site:
  name: s1
parks:
  - name: p1
    grid_region: east_china
buildings:
  - name: b1
    park: p1
    floor_area_m2: 1000
"""

DEVICE = """\
devices:
  - name: m1
    building: b1
    role: grid_meter
    device_class: meter
    connection: {type: tcp, host: 127.0.0.1, port: 1502}
    points:
      - {name: p_kw, register: holding, address: 0, type: float32}
"""

CASES = [
    # (id, file text, expected line, expected field path, expected words in the message)
    ("yaml-syntax", HEAD + "devices: [\n  {name: x\n", 12, "", "YAML syntax"),
    ("missing-site-name", HEAD.replace("  name: s1\n", "  timezone: Asia/Shanghai\n"), 1, "site.name", "required"),
    ("bad-timezone", HEAD.replace("  name: s1\n", "  name: s1\n  timezone: Mars/Olympus\n"), 3, "site.timezone", "unknown IANA time zone"),
    ("unknown-park", HEAD.replace("park: p1", "park: p9"), 8, "buildings[0].park", "unknown park 'p9'"),
    ("bad-area", HEAD.replace("floor_area_m2: 1000", "floor_area_m2: -5"), 9, "buildings[0].floor_area_m2", "greater than 0"),
    ("point-typo", HEAD + DEVICE.replace("address: 0", "adress: 0"), 17, "devices[0].points[0].adress", "unknown field"),
    ("interval-not-number", HEAD + DEVICE + "    interval_s: fast\n", 18, "devices[0].interval_s", "valid number"),
    ("coil-float", HEAD + DEVICE.replace("register: holding", "register: coil"), 17, "devices[0].points[0]", "holds one bit"),
    ("unknown-building", HEAD + DEVICE.replace("building: b1", "building: b2"), 12, "devices[0].building", "unknown building 'b2'"),
    ("unknown-template", HEAD + DEVICE.replace("role: grid_meter", "role: grid_meter\n    template: nope"), 14, "devices[0].template", "unknown template 'nope'"),
    ("bad-role", HEAD + DEVICE.replace("role: grid_meter", "role: toaster"), 13, "devices[0].role", "grid_meter"),
    ("bad-port", HEAD + DEVICE.replace("port: 1502", "port: 70000"), 15, "devices[0].connection.port", "less than or equal to 65535"),
    ("duplicate-device", HEAD + DEVICE + DEVICE.replace("devices:\n", ""), 18, "devices[1].name", "used twice"),
    ("duplicate-key", HEAD + DEVICE + "    unit_id: 2\n    unit_id: 3\n", 19, "devices[0].unit_id", "duplicate key"),
    (
        "writable-out-of-type",
        HEAD + DEVICE.replace("type: float32}", "type: float32}\n      - {name: sp_kw, register: holding, address: 4, type: int16, writable: true, max: 40000}"),
        16,
        "devices[0].points",
        "does not fit int16",
    ),
    ("no-points", HEAD + DEVICE.split("    points:")[0], 11, "devices[0]", "profile: or points:"),
    ("missing-env", HEAD + "sinks:\n  - {type: influxdb_v2, url: 'http://x', org: o, bucket: b, token: '${PEDF_TEST_UNSET_TOKEN}'}\n", 11, "sinks[0].token", "PEDF_TEST_UNSET_TOKEN is not set"),
    ("sink-bad-url", HEAD + "sinks:\n  - {type: influxdb_v1, url: 'ftp://x', database: d}\n", 11, "sinks[0].url", "http:// or https://"),
    ("sink-unknown-type", HEAD + "sinks:\n  - {type: graphite, url: 'http://x'}\n", 11, "sinks[0]", "does not match any of the expected tags"),
]


@pytest.mark.parametrize(("case", "text", "line", "path", "words"), CASES, ids=[c[0] for c in CASES])
def test_broken_site_files_name_file_line_and_field(tmp_path: Path, case: str, text: str, line: int, path: str, words: str) -> None:
    site = tmp_path / f"{case}.yaml"
    site.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_site(site, environ={})
    rendered = [str(p) for p in info.value.problems]
    match = [p for p in info.value.problems if p.path == path and words in p.message]
    assert match, f"expected {path!r} with {words!r}, got {rendered}"
    assert match[0].file == str(site)
    assert match[0].line == line, rendered


def test_secret_never_appears_in_errors(tmp_path: Path) -> None:
    site = tmp_path / "s.yaml"
    site.write_text(HEAD + "sinks:\n  - {type: influxdb_v2, url: 'bad', org: o, bucket: b, token: '${TOKEN}'}\n")
    with pytest.raises(ConfigError) as info:
        load_site(site, environ={"TOKEN": "hunter2-very-secret"})
    assert "sinks[0].url" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_env_substitution_and_secret_masking(tmp_path: Path) -> None:
    site = tmp_path / "s.yaml"
    site.write_text(HEAD + "sinks:\n  - {type: influxdb_v2, url: '${URL:-http://127.0.0.1:8428}', org: o, bucket: b, token: '${TOKEN}'}\n")
    loaded = load_site(site, environ={"TOKEN": "hunter2"})
    sink = loaded.config.sinks[0]
    assert sink.url == "http://127.0.0.1:8428"
    assert sink.token.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(loaded.config)


def test_templates_and_overrides_stamp_devices(tmp_path: Path) -> None:
    text = HEAD + textwrap.dedent("""\
        templates:
          meter:
            role: sub_meter
            building: b1
            device_class: meter
            connection: {type: tcp, host: 10.0.0.2, port: 502}
            interval_s: 5
            points:
              - {name: p_kw, register: input, address: 12, type: float32, scale: 0.001}
              - {name: e_import_kwh, register: input, address: 72, type: uint32, scale: 0.01, counter: true}
        devices:
          - {name: m1, template: meter, unit_id: 1}
          - name: m2
            template: meter
            unit_id: 2
            interval_s: 1
            connection: {port: 503}
            overrides:
              p_kw: {deadband: 0.5, max_silent_s: 60}
        """)
    site = tmp_path / "s.yaml"
    site.write_text(text)
    loaded = load_site(site, environ={})
    m1, m2 = loaded.devices
    assert (m1.section.unit_id, m1.section.interval_s, m1.section.connection.port) == (1, 5, 502)
    assert (m2.section.unit_id, m2.section.interval_s, m2.section.connection.port) == (2, 1, 503)
    assert m2.section.connection.host == "10.0.0.2"
    assert m2.points[0].deadband == 0.5 and m1.points[0].deadband is None
    key = m2.series_key("s1")
    assert key.measurement == "meter" and dict(key.tags) == {"site": "s1", "building": "b1", "device": "m2", "role": "sub_meter"}
    assert key.kinds == ("float", "float")
    assert m2.points[1].counter_wrap() == pytest.approx(2**32 * 0.01)
