"""Line protocol encoding speed: gateway.sinks._lineprotocol.LineEncoder against influxdb-client's Point.

Method: the same rows (one series, float fields, nanosecond timestamps, values backed by a bytes blob
as ``Journal.read`` returns them) are encoded by each in one run, best of ``--repeat`` runs each;
lines/s of ``encode_lines_bytes`` (a write body, what delivery sends), of ``encode_rows`` (a list of
str) and of ``Point`` are printed with the ratio body/Point, for both encoders (``python``, the
gateway's default, and ``compiled``, numba), for 6- and 60-field lines, for three kinds of values:
full-precision random doubles (17 significant digits, the worst case of ``repr``), float32 register
values widened to double (what a meter's float32 points decode to) and meter-like values (two
decimals, e.g. 230.45).  Then gzip of the 6-field body at levels 1 and 6
(the InfluxDB v1 sink's ``gzip_level``).
Run from the repository root: ``.venv/bin/python -m benchmarks.bench_encoder``.
"""

from __future__ import annotations

import argparse
import gzip
import time

import numpy as np
from influxdb_client import Point, WritePrecision

from gateway.journal import JournalRow
from gateway.series import SeriesKey
from gateway.sinks import LineEncoder

T0 = 1_700_000_000_000_000_000


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def run(width: int, values: np.ndarray, point_rows: int, repeat: int,
        compiled: bool = False) -> tuple[float, float, float, bytes]:
    """(body lines/s, str lines/s, Point lines/s, the body) for ``values`` (rows × width)."""
    key = SeriesKey("inverter", (("building", "b1"), ("device", "inv-01"), ("site", "s1")),
                    tuple(f"p{i}_kw" for i in range(width)), ("float",) * width)
    rows = [JournalRow(i, 1, T0 + i * 10**9, np.frombuffer(values[i].tobytes()), None)
            for i in range(len(values))]
    enc = LineEncoder(lambda _: key, compiled=compiled)
    enc.encode_rows(rows[:1])  # compile (or load the cached kernel) outside the timing
    body = len(rows) / best(lambda: enc.encode_lines_bytes(rows), repeat)
    as_str = len(rows) / best(lambda: enc.encode_rows(rows), repeat)
    sub = rows[:point_rows]

    def with_points() -> list[str]:
        out = []
        for r in sub:
            p = Point(key.measurement)
            for k, v in key.tags:
                p.tag(k, v)
            for f, v in zip(key.fields, r.values.tolist(), strict=True):
                p.field(f, v)
            out.append(p.time(r.ts_ns, WritePrecision.NS).to_line_protocol())
        return out

    theirs = len(sub) / best(with_points, repeat)
    a, b = with_points()[0].split(" "), enc.encode_rows(sub[:1])[0].split(" ")
    fields_a = {k: float(v) for k, v in (f.split("=") for f in a[1].split(","))}
    fields_b = {k: float(v) for k, v in (f.split("=") for f in b[1].split(","))}
    assert (a[0], fields_a, a[2]) == (b[0], fields_b, b[2]), "both encoders must write the same values"
    return body, as_str, theirs, enc.encode_lines_bytes(rows)


def value_sets(n: int, width: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    return [("random 17d", rng.random((n, width)) * 1000),
            ("float32", (rng.random((n, width)) * 1000).astype(np.float32).astype(np.float64)),
            ("meter 2dp", np.round(rng.random((n, width)) * 1000, 2))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="20,000 rows")
    args = ap.parse_args()
    rows = 20_000 if args.quick else args.rows
    rng = np.random.default_rng(1)
    print(f"{'encoder':<9} {'fields':>6} {'values':<11} {'body lines/s':>13} {'str lines/s':>12} "
          f"{'Point lines/s':>14} {'body/Point':>10}")
    body6 = b""
    for width in (6, 60):
        n = rows if width == 6 else rows // 10
        for label, vals in value_sets(n, width, rng):
            for compiled in (False, True):
                ours, as_str, theirs, body = run(width, vals, max(n // 20, 500), args.repeat, compiled)
                print(f"{'compiled' if compiled else 'python':<9} {width:>6} {label:<11} {ours:>13,.0f} "
                      f"{as_str:>12,.0f} {theirs:>14,.0f} {ours / theirs:>9.1f}x", flush=True)
                if width == 6 and label.startswith("meter"):
                    body6 = body
    for level in (1, 6):
        seconds = best(lambda lv=level: gzip.compress(body6, lv), args.repeat)
        ratio = len(body6) / len(gzip.compress(body6, level))
        print(f"gzip level {level}: {len(body6) / seconds / 1e6:6.1f} MB/s, compression {ratio:4.1f}x")


if __name__ == "__main__":
    main()
