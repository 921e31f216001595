"""Line protocol: the spec's escaping table, typed fields, a parse round trip, and influxd reading it back.

Every behaviour is checked on both encoders (the default pure-Python one and ``compiled=True``)
against the same field-by-field reference, :meth:`LineEncoder.encode_row`, and against influxd.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.journal import JournalRow
from gateway.series import SeriesKey
from gateway.sinks import LineEncoder, escape_key, escape_measurement, escape_string_field, format_float

# Examples from the InfluxDB line protocol reference, "Special characters".
ESCAPES = [
    (escape_measurement, "my measurement", r"my\ measurement"),
    (escape_measurement, "a,b", r"a\,b"),
    (escape_measurement, "a=b", "a=b"),  # equals needs no escape in a measurement
    (escape_key, "tag key", r"tag\ key"),
    (escape_key, "a,b=c", r"a\,b\=c"),
    (escape_key, "line\nbreak", r"line\ break"),  # newline cannot be written: becomes a space
    (escape_key, "C:\\path", "C:/path"),  # backslash cannot be escaped in a name
    (escape_string_field, 'say "hi"', r"say \"hi\""),
    (escape_string_field, "back\\slash", r"back\\slash"),
    (escape_string_field, "a, b=c", "a, b=c"),  # nothing else is escaped inside quotes
]


@pytest.mark.parametrize(("fn", "raw", "escaped"), ESCAPES)
def test_escaping_table(fn, raw: str, escaped: str) -> None:
    assert fn(raw) == escaped


KEY = SeriesKey("meter", (("building", ""), ("site", "s 1")), ("p_kw", "n_i", "on_b", "model_s"),
                ("float", "int", "bool", "str"))


ENCODERS = [pytest.param(False, id="python"), pytest.param(True, id="compiled")]


def row(key_id: int, values: list[float], texts=None, ts: int = 1_700_000_000_123_456_789) -> JournalRow:
    return JournalRow(1, key_id, ts, np.array(values, dtype=np.float64), texts)


@pytest.mark.parametrize("compiled", ENCODERS)
def test_field_kinds_gaps_and_precision(compiled: bool) -> None:
    enc = LineEncoder(lambda _: KEY, compiled=compiled)
    lines = enc.encode_rows([
        row(1, [1.5, 42.0, 1.0, math.nan], (None, None, None, 'x "y"')),
        row(1, [math.nan, -7.0, 0.0, math.nan], (None, None, None, None)),
        row(1, [math.nan, math.nan, math.nan, math.nan], (None, None, None, None)),  # nothing left
        row(1, [math.inf, math.nan, math.nan, math.nan], None),  # inf is not writable
        row(1, [1e300, 1e19, math.nan, math.nan], None),  # 1e19 does not fit an int64 field
    ])
    assert lines == [
        r'meter,site=s\ 1 p_kw=1.5,n_i=42i,on_b=true,model_s="x \"y\"" 1700000000123456789',
        r"meter,site=s\ 1 n_i=-7i,on_b=false 1700000000123456789",
        r"meter,site=s\ 1 p_kw=1e+300 1700000000123456789",
    ]
    assert LineEncoder(lambda _: KEY, "ms", compiled=compiled).encode_rows(
        [row(1, [2.0] * 3 + [math.nan])])[0].endswith(" 1700000000123")
    assert LineEncoder(lambda _: KEY, "s", compiled=compiled).encode_lines_bytes(
        [row(1, [2.0] * 3 + [math.nan])] * 2).split(b"\n")[1].endswith(b" 1700000000")


@pytest.mark.parametrize("compiled", ENCODERS)
def test_fast_path_matches_general_path(compiled: bool) -> None:
    key = SeriesKey("m", (), ("a", "b_i"), ("float", "int"))
    enc = LineEncoder(lambda _: key, compiled=compiled)
    assert enc.encode_rows([row(1, [0.1 + 0.2, 3.0]), row(1, [math.nan, 3.0])]) == [
        f"m a={0.1 + 0.2!r},b_i=3i 1700000000123456789", "m b_i=3i 1700000000123456789"]


def test_python_encoder_keeps_percent_signs_and_caches_gap_patterns() -> None:
    key = SeriesKey("m%s", (("t%d", "100%"),), ("a%r", "b", "c_b"), ("float", "float", "bool"))
    enc = LineEncoder(lambda _: key, compiled=False)
    rows = [row(1, [1.5, math.nan, 1.0], ts=1), row(1, [math.nan, 2.0, 0.0], ts=2),
            row(1, [2.5, math.nan, math.inf], ts=3), row(1, [math.nan] * 3, ts=4)]
    assert enc.encode_rows(rows) == ["m%s,t%d=100% a%r=1.5,c_b=true 1", "m%s,t%d=100% b=2.0,c_b=false 2",
                                     "m%s,t%d=100% a%r=2.5 3"]
    assert enc.encode_rows(rows) == [enc.encode_row(r) for r in rows[:3]]  # formats from the cache


@pytest.mark.services
def test_default_encoder_does_not_load_numba() -> None:
    code = ("import sys; from gateway.sinks._lineprotocol import LineEncoder; import gateway.service._gateway; "
            "e = LineEncoder(lambda _: None); print(e.compiled, 'numba' in sys.modules, "
            "'influxdb_client' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "PEDF_LP_ENCODER"}
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False", "False"]
    env["PEDF_LP_ENCODER"] = "compiled"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "True", "False"]


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, str], int]:
    """An independent reader of one line: unescapes per the reference, strings stay quoted-decoded."""
    i, n = 0, len(line)

    def name(stops: str) -> str:
        nonlocal i
        out = []
        while i < n and line[i] not in stops:
            if line[i] == "\\" and i + 1 < n and line[i + 1] in ", =":
                i += 1
            out.append(line[i])
            i += 1
        return "".join(out)

    measurement = name(", ")
    tags: dict[str, str] = {}
    while line[i] == ",":
        i += 1
        k = name("=")
        i += 1
        tags[k] = name(", ")
    i += 1
    fields: dict[str, str] = {}
    while True:
        k = name("=")
        i += 1
        if line[i] == '"':
            i += 1
            out = []
            while line[i] != '"':
                if line[i] == "\\" and line[i + 1] in '"\\':
                    i += 1
                out.append(line[i])
                i += 1
            i += 1
            fields[k] = '"' + "".join(out)
        else:
            start = i
            while line[i] not in ", ":
                i += 1
            fields[k] = line[start:i]
        if line[i] == " ":
            break
        i += 1
    return measurement, tags, fields, int(line[i + 1:])


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
plain = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)


def fixed(s: str) -> str:
    return s.replace("\n", " ").replace("\r", " ").replace("\\", "/")


@pytest.mark.parametrize("compiled", ENCODERS)
@settings(max_examples=300, deadline=None)
@given(measurement=names, tags=st.dictionaries(names, names, max_size=3),
       fvals=st.lists(st.floats(allow_infinity=False), min_size=1, max_size=4),
       ival=st.integers(-(2**53), 2**53), bval=st.booleans(), text=plain,
       ts=st.integers(0, 2**62))
def test_round_trip_through_an_independent_parser(compiled, measurement, tags, fvals, ival, bval, text,
                                                   ts) -> None:
    fields = (*(f"f{i}" for i in range(len(fvals))), "n i", "b=", "s,")
    kinds = ("float",) * len(fvals) + ("int", "bool", "str")
    key = SeriesKey(measurement, tuple(sorted(tags.items())), fields, kinds)
    values = [*fvals, float(ival), float(bval), math.nan]
    texts = (None,) * (len(fvals) + 2) + (text,)
    (line,) = LineEncoder(lambda _: key, compiled=compiled).encode_rows([row(1, values, texts, ts)])
    m, t, f, got_ts = parse_line(line)
    assert m == fixed(measurement) and got_ts == ts
    assert t == {fixed(k): fixed(v) for k, v in tags.items()}
    expected = {f"f{i}": v for i, v in enumerate(fvals) if not math.isnan(v)}
    assert {k: float(v) for k, v in f.items() if k.startswith("f")} == expected
    assert f["n i"] == f"{ival}i" and f["b="] == ("true" if bval else "false") and f["s,"] == '"' + text


@pytest.mark.parametrize("v", [1.5, 42.0, 0.1 + 0.2, 1e300, 1e-7, 5e-324, 1e16, 1e15, 123456.789, 0.0001,
                               1e-5, -2.5, 2.2250738585072014e-308, 1.7976931348623157e308, 0.0, -1e-300])
def test_compiled_float_format_matches_repr(v: float) -> None:
    assert format_float(v) == repr(v)


@settings(max_examples=2000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_compiled_float_format_reads_back_exactly(v: float) -> None:
    s = format_float(v)
    mantissa = s.split("e")[0].lstrip("-").replace(".", "").strip("0")
    assert float(s) == v and len(mantissa) <= 17  # Grisu2: exact, shortest in ~99.9% of cases


def fields_of(line: str) -> tuple[str, dict[str, float | str], str]:
    head, body, ts = line.rsplit(" ", 2)
    out: dict[str, float | str] = {}
    for part in body.split(","):
        k, v = part.split("=")
        out[k] = v if v[-1] in "ie" or v[0] in "tf" else float(v)
    return head, out, ts


kind_lists = st.lists(st.sampled_from(["float", "int", "bool"]), min_size=1, max_size=8)


@pytest.mark.parametrize("compiled", ENCODERS)
@settings(max_examples=300, deadline=None)
@given(kinds=kind_lists, data=st.data())
def test_batch_matches_the_reference(compiled, kinds, data) -> None:
    key = SeriesKey("m", (("site", "s 1"),), tuple(f"f{i}" for i in range(len(kinds))), tuple(kinds))
    enc = LineEncoder(lambda _: key, compiled=compiled)
    value = {"float": st.floats(), "int": st.integers(-(2**62), 2**62).map(float) | st.just(math.nan)
             | st.just(1e19), "bool": st.sampled_from([0.0, 1.0, math.nan])}
    rows = [row(1, [data.draw(value[k]) for k in kinds], ts=data.draw(st.integers(-(2**62), 2**62)))
            for _ in range(data.draw(st.integers(1, 5)))]
    expected = [line for line in map(enc.encode_row, rows) if line is not None]
    got = enc.encode_rows(rows)
    if compiled:  # Grisu2 digits may be longer than repr's: compare the values they read back as
        assert [fields_of(x) for x in got] == [fields_of(x) for x in expected]
    else:
        assert got == expected
    assert enc.encode_lines_bytes(rows) == "\n".join(got).encode()
    as_read = [r._replace(values=np.frombuffer(r.values.tobytes())) for r in rows]  # as Journal.read gives them
    assert enc.encode_rows(as_read) == got


@pytest.mark.parametrize("compiled", ENCODERS)
def test_mixed_batch_keeps_row_order(compiled: bool) -> None:
    plain_key = SeriesKey("inv", (("site", "s1"),), ("p_kw",), ("float",))
    keys = {1: KEY, 2: plain_key}
    enc = LineEncoder(keys.__getitem__, compiled=compiled)
    rows = [row(2, [1.0], ts=1), row(1, [2.0, 3.0, 1.0, math.nan], (None, None, None, "a"), ts=2),
            row(2, [math.nan], ts=3), row(2, [4.0], ts=4), row(1, [math.nan] * 4, (None,) * 4, ts=5),
            row(2, [5.0], ts=6)]
    assert enc.encode_rows(rows) == [
        "inv,site=s1 p_kw=1.0 1", r'meter,site=s\ 1 p_kw=2.0,n_i=3i,on_b=true,model_s="a" 2',
        "inv,site=s1 p_kw=4.0 4", "inv,site=s1 p_kw=5.0 6"]
    assert enc.encode_lines_bytes(rows) == "\n".join(enc.encode_rows(rows)).encode()


@pytest.mark.services
@pytest.mark.parametrize("compiled", ENCODERS)
def test_influxd_accepts_and_returns_every_kind(influxd, compiled: bool) -> None:
    influxd.create_database("lp")
    weird = SeriesKey("my meas,ure", (("bui lding", "b=1,x"), ("site", "s1")),
                      ("p kw", "n,i", "on=b", "model"), ("float", "int", "bool", "str"))
    plain_key = SeriesKey("inv", (("site", "s1"),), ("p_kw", "q_kvar"), ("float", "float"))
    typed = SeriesKey("pcs", (("site", "s 1"),), ("mode i", "on,b"), ("int", "bool"))
    keys = {1: weird, 2: plain_key, 3: typed}
    rows = [row(1, [0.1 + 0.2, -42.0, 1.0, math.nan], (None, None, None, 'ACME "X" \\ v2'), ts=10**18),
            row(1, [math.nan, 7.0, 0.0, math.nan], (None, None, None, "line1\nline2"), ts=10**18 + 1),
            row(2, [1e-7, 123456.789], ts=10**18), row(2, [math.nan, 5e300], ts=10**18 + 5),
            row(3, [-3.0, 1.0], ts=10**18), row(3, [2**53, 0.0], ts=10**18 + 1)]
    body = LineEncoder(keys.__getitem__, compiled=compiled).encode_lines_bytes(rows)
    req = urllib.request.Request(f"{influxd.url}/write?db=lp", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204
    got = influxd.query('SELECT * FROM "my meas,ure"', db="lp")
    assert [(r["time"], r["p kw"], r["n,i"], r["on=b"], r["model"], r["bui lding"]) for r in got] == [
        (10**18, 0.1 + 0.2, -42, True, 'ACME "X" \\ v2', "b=1,x"),
        (10**18 + 1, None, 7, False, "line1\nline2", "b=1,x")]
    got = influxd.query("SELECT p_kw, q_kvar FROM inv", db="lp")
    assert [(r["time"], r["p_kw"], r["q_kvar"]) for r in got] == [(10**18, 1e-7, 123456.789),
                                                                  (10**18 + 5, None, 5e300)]
    got = influxd.query("SELECT * FROM pcs", db="lp")
    assert [(r["time"], r["mode i"], r["on,b"], r["site"]) for r in got] == [
        (10**18, -3, True, "s 1"), (10**18 + 1, 2**53, False, "s 1")]
    types = influxd.query('SHOW FIELD KEYS FROM "my meas,ure"', db="lp")
    assert {r["fieldKey"]: r["fieldType"] for r in types} == {
        "p kw": "float", "n,i": "integer", "on=b": "boolean", "model": "string"}
