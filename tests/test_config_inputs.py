"""Hostile site files and nonsense values: each is a ConfigError naming file, line and field, never
a traceback, a hang or a runaway allocation."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.config import load_site, load_yaml
from gateway.errors import ConfigError

from .test_config import DEVICE, HEAD

ROOT = Path(__file__).resolve().parent.parent
PEDF = Path(sys.executable).with_name("pedf")

BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8)
)

FILES = [
    # (id, bytes, expected line, words)
    ("latin-1", HEAD.encode() + b"# caf\xe9 au lait\n", 10, "not UTF-8"),
    ("utf-16", "site: {name: x}\n".encode("utf-16"), 1, "UTF-16"),
    ("nul", HEAD.encode() + b"x: a\x00b\n", 10, "U+0000"),
    ("bell", HEAD.encode() + b"x: \x07\n", 10, "U+0007"),
    ("escaped-nul", (HEAD + 'devices: "a\\0b"\n').encode(), 10, "control characters"),
    ("custom-tag", (HEAD + "devices: !custom 3\n").encode(), 10, "unsupported tag !custom"),
    ("python-tag", (HEAD + "devices: !!python/object:os.system x\n").encode(), 10, "unsupported tag"),
    ("timestamp-tag", (HEAD + "devices: !!timestamp foo\n").encode(), 10, "not a valid timestamp"),
    ("int-tag", (HEAD + "devices: !!int abc\n").encode(), 10, "not a valid int"),
    ("bool-tag", (HEAD + "devices: !!bool maybe\n").encode(), 10, "not a valid bool"),
    ("huge-int", (HEAD + "devices: 1" + "0" * 5000 + "\n").encode(), 10, "not a valid int"),
    ("binary-tag", (HEAD + "devices: !!binary zz\n").encode(), 10, "unsupported tag"),
    ("set-tag", (HEAD + "devices: !!set {a, b}\n").encode(), 10, "unsupported tag"),
    ("list-key", (HEAD + "? [a, b]\n: 1\n").encode(), 10, "a key must be plain text"),
    ("map-key", (HEAD + "{a: 1}: 2\n").encode(), 10, "a key must be plain text"),
    ("deep-lists", (HEAD + "devices: " + "[" * 5000 + "]" * 5000 + "\n").encode(), 10, "nest"),  # libyaml: "maximum nesting depth"
    ("deep-maps", (HEAD + "devices: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n").encode(), 10, "nested deeper"),
    ("recursive-alias", (HEAD + "devices: &a [*a]\n").encode(), 10, "contains it"),
    ("recursive-merge", (HEAD + "templates: &a {<<: *a}\n").encode(), 10, "contains it"),
    ("undefined-alias", (HEAD + "devices: *nope\n").encode(), 10, "undefined alias"),
    ("two-documents", (HEAD + "---\nsite: {}\n").encode(), 10, "single document"),
]


@pytest.mark.parametrize(("case", "data", "line", "words"), FILES, ids=[c[0] for c in FILES])
def test_hostile_files_are_located_config_errors(tmp_path: Path, case: str, data: bytes, line: int, words: str) -> None:
    site = tmp_path / f"{case}.yaml"
    site.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        load_site(site, environ={})
    rendered = [str(p) for p in info.value.problems]
    match = [p for p in info.value.problems if words in p.message]
    assert match, rendered
    assert match[0].file == str(site) and match[0].line == line, rendered


def test_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    """9 levels of 9 aliases: 387 million values if expanded (today: minutes and gigabytes)."""
    site = tmp_path / "lol.yaml"
    site.write_text(BILLION_LAUGHS)
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_yaml(site)
    assert time.monotonic() - started < 5
    (problem,) = info.value.problems
    assert "aliases expand the file beyond" in problem.message and problem.line is not None


def test_too_large_a_file_is_refused(tmp_path: Path) -> None:
    site = tmp_path / "big.yaml"
    site.write_bytes(HEAD.encode() + b"#" * (5 * 1024 * 1024) + b"\n")
    with pytest.raises(ConfigError, match="larger than 4 MiB"):
        load_yaml(site)


def test_aliases_and_merge_keys_within_the_budget_work(tmp_path: Path) -> None:
    site = tmp_path / "merge.yaml"
    site.write_text(HEAD + DEVICE.replace("    connection: {type: tcp, host: 127.0.0.1, port: 1502}\n", "    <<: *conn\n")
                    .replace("devices:\n", "x-conn: &conn {connection: {type: tcp, host: 127.0.0.1, port: 1502}, unit_id: 7}\ndevices:\n")
                    .replace("device_class: meter\n", "device_class: meter\n    unit_id: 3\n"))
    with pytest.raises(ConfigError) as info:  # x-conn is not a site-file field: the merge itself worked
        load_site(site, environ={})
    assert [p.path for p in info.value.problems] == ["x-conn"]
    doc = load_yaml(site)
    device = doc.data["devices"][0]
    assert device["connection"] == {"type": "tcp", "host": "127.0.0.1", "port": 1502}
    assert device["unit_id"] == 3  # the key given beside the merge wins
    assert doc.line_of(("devices", 0, "connection", "port")) == 10


def test_a_hostile_profile_file_is_a_located_error(tmp_path: Path) -> None:
    profile = tmp_path / "meter.yaml"
    profile.write_bytes(b"name: m\ndescription: d\ndevice_class: meter\nsources: [x]\npoints: !custom 1\n")
    site = tmp_path / "s.yaml"
    site.write_text(HEAD + DEVICE.split("    points:")[0].replace("device_class: meter", f"profile: {profile}"))
    with pytest.raises(ConfigError) as info:
        load_site(site, environ={})
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.path) == (str(profile), 5, "points")


NONSENSE = [
    # (id, text, expected field path, words)
    ("interval-tiny", HEAD + DEVICE + "    interval_s: 1e-10\n", "devices[0].interval_s", "greater than or equal to 0.01"),
    ("timeout-denormal", HEAD + DEVICE + "    timeout_s: 1e-320\n", "devices[0].timeout_s", "greater than or equal to 0.01"),
    ("timeout-nan", HEAD + DEVICE + "    timeout_s: .nan\n", "devices[0].timeout_s", "finite number"),
    ("ct-ratio-inf", HEAD + DEVICE + "    ct_ratio: .inf\n", "devices[0].ct_ratio", "finite number"),
    ("pt-ratio-nan", HEAD + DEVICE + "    pt_ratio: .nan\n", "devices[0].pt_ratio", "finite number"),
    ("point-scale-nan", HEAD + DEVICE.replace("type: float32}", "type: float32, scale: .nan}"), "devices[0].points[0].scale", "finite number"),
    ("point-offset-inf", HEAD + DEVICE.replace("type: float32}", "type: float32, offset: -.inf}"), "devices[0].points[0].offset", "finite number"),
    ("point-scale-huge", HEAD + DEVICE.replace("type: float32}", "type: float32, scale: 1e300}"), "devices[0].points[0].scale", "less than or equal to"),
    ("override-scale-nan", HEAD + DEVICE + "    overrides: {p_kw: {scale: .nan}}\n", "devices[0].overrides.p_kw.scale", "finite number"),
    ("max-mb-inf", HEAD + "journal: {max_mb: .inf}\n", "journal.max_mb", "finite number"),
    ("max-mb-tiny", HEAD + "journal: {max_mb: 1e-9}\n", "journal.max_mb", "greater than or equal to 0.25"),
    ("commit-interval-tiny", HEAD + "journal: {commit_interval_ms: 1e-300}\n", "journal.commit_interval_ms", "greater than or equal to 0.1"),
    ("journal-is-a-directory", HEAD + "journal: {path: JOURNAL_DIR}\n", "journal.path", "not a regular file"),
    ("journal-is-a-device", HEAD + "journal: {path: /dev/null}\n", "journal.path", "not a regular file"),
    ("journal-under-a-file", HEAD + "journal: {path: A_FILE/journal.db}\n", "journal.path", "is not a directory"),
    ("empty-host", HEAD + DEVICE.replace("host: 127.0.0.1", "host: ''"), "devices[0].connection.host", "at least 1 character"),
    ("host-with-space", HEAD + DEVICE.replace("host: 127.0.0.1", "host: 'a b'"), "devices[0].connection.host", "pattern"),
    ("empty-url", HEAD + "sinks:\n  - {type: influxdb_v1, url: '', database: d}\n", "sinks[0].url", "http:// or https://"),
    ("url-without-host", HEAD + "sinks:\n  - {type: influxdb_v1, url: 'http://', database: d}\n", "sinks[0].url", "no host"),
    ("url-bad-port", HEAD + "sinks:\n  - {type: influxdb_v1, url: 'http://h:99999', database: d}\n", "sinks[0].url", "not a valid URL"),
    ("sink-timeout-nan", HEAD + "sinks:\n  - {type: influxdb_v1, url: 'http://h', database: d, timeout_s: .nan}\n", "sinks[0].timeout_s", "finite number"),
    ("empty-broker-host", HEAD + "mqtt: {brokers: [{host: ''}]}\n", "mqtt.brokers[0].host", "at least 1 character"),
    ("missing-ca-file", HEAD + "mqtt: {brokers: [{host: h, tls: {ca_file: /nonexistent/ca.pem}}]}\n", "mqtt.brokers[0].tls.ca_file", "no such file"),
    ("ca-file-not-pem", HEAD + "mqtt: {brokers: [{host: h, tls: {ca_file: A_FILE}}]}\n", "mqtt.brokers[0].tls", "cannot be used"),
    ("subscription-scale-nan", HEAD + "mqtt: {brokers: [{host: h}], subscriptions: [{topic: 'a/{device}', decoder: number, field: p_kw, measurement: meter, building: b1, scale: .nan}]}\n", "mqtt.subscriptions[0].scale", "finite number"),
    ("timezone-too-long", HEAD.replace("  name: s1\n", "  name: s1\n  timezone: " + "A" * 300 + "\n"), "site.timezone", "unknown IANA time zone"),
    ("same-host-port-unit", HEAD + DEVICE + DEVICE.replace("devices:\n", "").replace("name: m1", "name: m2"), "devices[1].unit_id", "'m1' is already polled at 127.0.0.1:1502 unit 1"),
    ("battery-inf", HEAD + "analytics: {emissions: {regime: r, data_year: 2022, residual: {regime: r, region: x, data_year: 2022}}, batteries: {b: {energy_kwh: .inf, p_charge_max_kw: 1, p_discharge_max_kw: 1}}}\n", "analytics.batteries.b.energy_kwh", "finite number"),
]


@pytest.mark.parametrize(("case", "text", "path", "words"), NONSENSE, ids=[c[0] for c in NONSENSE])
def test_nonsense_values_are_refused_with_line_and_field(tmp_path: Path, case: str, text: str, path: str, words: str) -> None:
    (tmp_path / "journal_dir").mkdir()
    (tmp_path / "a_file").write_text("not a certificate\n")
    text = text.replace("JOURNAL_DIR", str(tmp_path / "journal_dir")).replace("A_FILE", str(tmp_path / "a_file"))
    site = tmp_path / f"{case}.yaml"
    site.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_site(site, environ={})
    rendered = [str(p) for p in info.value.problems]
    match = [p for p in info.value.problems if p.path == path and words in p.message]
    assert match, f"expected {path!r} with {words!r}, got {rendered}"
    assert match[0].file == str(site) and match[0].line is not None, rendered


def test_a_url_error_never_repeats_the_url(tmp_path: Path) -> None:
    site = tmp_path / "s.yaml"
    site.write_text(HEAD + "sinks:\n  - {type: influxdb_v1, url: 'http://user:hunter2@h:99999', database: d}\n")
    with pytest.raises(ConfigError) as info:
        load_site(site, environ={})
    assert "sinks[0].url" in str(info.value) and "hunter2" not in str(info.value)


@pytest.mark.services
def test_pedf_run_with_a_missing_ca_file_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    site = tmp_path / "s.yaml"
    site.write_text(HEAD + DEVICE + f"journal: {{path: {tmp_path / 'j.db'}}}\napi: {{port: 0}}\n"
                    "mqtt: {brokers: [{host: 127.0.0.1, port: 1, tls: {ca_file: /nonexistent/ca.pem}}],"
                    " publish: {enabled: true}}\n")
    proc = subprocess.run([str(PEDF), "run", str(site)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "mqtt.brokers[0].tls.ca_file: no such file" in proc.stderr


@pytest.mark.parametrize("case", ["deep-lists", "recursive-alias", "list-key", "two-documents", "custom-tag"])
def test_the_pure_python_parser_gives_the_same_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """PyYAML without libyaml: the same composer runs on the pure-Python parser."""
    import gateway.config._compose as compose

    _, data, line, words = next(c for c in FILES if c[0] == case)
    site = tmp_path / "s.yaml"
    site.write_bytes(data)
    monkeypatch.setattr(compose, "_PARSER", compose._PyParser)
    with pytest.raises(ConfigError) as info:
        load_site(site, environ={})
    assert [(p.line, words in p.message) for p in info.value.problems][:1] == [(line, True)]
