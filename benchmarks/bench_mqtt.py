"""MQTT ingest: decode rate, end-to-end throughput and CPU per message, publish → queryable latency.

Method (one run, same machine):
1. decode only: ``json_decoder`` over a 10-field JSON payload with a timestamp, one core, msgs/s.
2. end to end: a real mosquitto (persistence on, ``max_inflight_messages 1000``) and influxd; the
   gateway's persistent session is created first, then ``--messages`` QoS 1 messages are published
   while it is away, so the broker's queue is full when ``pedf run`` starts.  Measured: msg/s from
   "ready" to the last commit in the journal and to the last point in influxd; CPU-µs per message of
   the gateway process (utime + stime from /proc/<pid>/stat, between "ready" and the last commit).
3. latency: with the gateway running, ``--rate`` msg/s for ``--seconds``; influxd is polled every
   20 ms for the count of points; message i is queryable when the count exceeds i.  p50/p99 of
   (queryable − published).
Run from the repository root: ``.venv/bin/python -m benchmarks.bench_mqtt`` (about a minute); ``--quick`` for
small sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import zoneinfo
from pathlib import Path

import numpy as np
import yaml

import drivers.mqtt as dec
from tests.harness import GatewayProcess, wait_until
from tests.mqtt_helpers import Publisher
from tests.processes import free_port
from tests.servers import InfluxD, Mosquitto

FIELDS = ["p_kw", "q_kvar", "s_kva", "v_l1_v", "v_l2_v", "v_l3_v", "i_l1_a", "i_l2_a", "i_l3_a", "f_hz"]
T0 = 1_700_000_000 * 10**9


def payload(i: int, ts_ns: int | None = None) -> str:
    values = {f: round(100 + i * 0.001 + k, 3) for k, f in enumerate(FIELDS)}
    return json.dumps({"ts": ts_ns if ts_ns is not None else T0 + i * 1000, "seq": i, "m": values})


def bench_decode(n: int) -> float:
    decode = dec.json_decoder([dec.FieldMapping(f, f"m.{f}") for f in FIELDS] + [dec.FieldMapping("seq", "seq")],
                              dec.TimestampSpec("ts", "epoch_ns"), zoneinfo.ZoneInfo("UTC"))
    payloads = [payload(i).encode() for i in range(1000)]
    start = time.perf_counter()
    for i in range(n):
        decode(payloads[i % 1000])
    return n / (time.perf_counter() - start)


def write_site(path: Path, journal: Path, api_port: int, broker: int, influx: str, protocol: str = "5") -> Path:
    fields = {f: f"m.{f}" for f in FIELDS} | {"seq": "seq"}
    path.write_text(yaml.safe_dump({
        "site": {"name": "bench", "timezone": "UTC"}, "parks": [{"name": "p", "grid_region": "east_china"}],
        "buildings": [{"name": "b", "park": "p", "floor_area_m2": 1000}],
        "sinks": [{"type": "influxdb_v1", "url": influx, "database": "pedf", "batch_lines": 10000, "max_age_s": 0.05}],
        "journal": {"path": str(journal), "synchronous": "FULL", "commit_interval_ms": 20},
        "api": {"host": "127.0.0.1", "port": api_port},
        "mqtt": {"brokers": [{"host": "127.0.0.1", "port": broker}], "client_id": "bench-gw", "receive_maximum": 1000,
                 "protocol": protocol,
                 "subscriptions": [{"topic": "bench/{building}/{device}/data", "decoder": "json", "measurement": "meter",
                                    "timestamp": {"path": "ts", "format": "epoch_ns"}, "fields": fields}]},
    }))
    return path


def influx_count(influxd: InfluxD, since_ns: int = 0) -> int:
    rows = influxd.query(f"SELECT count(seq) FROM meter WHERE time >= {since_ns}", db="pedf")
    return int(rows[0]["count"]) if rows else 0


def committed(gw: GatewayProcess) -> int:
    return int(gw.status()["mqtt"]["mqtt"]["committed"])


def subscribed(gw: GatewayProcess) -> bool:
    return bool(gw.status()["mqtt"]["mqtt"]["connection"]["subscribed"])


def bench_end_to_end(work: Path, n: int, rate: float, seconds: float, protocol: str) -> dict[str, float]:
    out: dict[str, float] = {}
    with Mosquitto(work / "mosq", extra_config=f"max_queued_messages {n + 10000}\n") as mq, \
            InfluxD(work / "influxd") as influxd:
        influxd.create_database("pedf")
        first = free_port()
        site = write_site(work / "session.yaml", work / "journal.db", first, mq.port, influxd.url, protocol)
        with GatewayProcess(work, site, first, name="session") as gw:  # creates the persistent session
            # "ready" comes before the subscription: stopping at once could leave a session without it
            wait_until(lambda: subscribed(gw), 30, interval=0.05, what="the gateway's subscription")
            gw.terminate()
        api = free_port()
        site = write_site(work / "site.yaml", work / "journal.db", api, mq.port, influxd.url, protocol)
        pub = Publisher(mq.port, client_id="bench-pub")
        for start in range(0, n, 5000):
            pub.publish([(f"bench/b/d{i % 20}/data", payload(i)) for i in range(start, min(n, start + 5000))])
        with GatewayProcess(work, site, api) as gw:
            t0, cpu0 = time.monotonic(), gw.cpu_seconds()
            while committed(gw) < n:
                time.sleep(0.1)  # /status costs the gateway CPU: poll gently
            t1, cpu1 = time.monotonic(), gw.cpu_seconds()
            while influx_count(influxd) < n:
                time.sleep(0.05)
            t2 = time.monotonic()
            out["e2e_journal_msgs_per_s"] = n / (t1 - t0)
            out["e2e_influx_msgs_per_s"] = n / (t2 - t0)
            out["cpu_us_per_msg"] = (cpu1 - cpu0) / n * 1e6
            out["rss_mb"] = gw.rss_mb()
            out.update(latency(pub, influxd, rate, seconds))
            gw.terminate()
        pub.close()
    return out


def latency(pub: Publisher, influxd: InfluxD, rate: float, seconds: float) -> dict[str, float]:
    total = int(rate * seconds)
    base = time.time_ns()
    sent = np.zeros(total)
    seen = np.full(total, np.nan)
    stop = threading.Event()

    def poll() -> None:
        done = 0
        while not stop.is_set() and done < total:
            count = influx_count(influxd, base)
            now = time.monotonic()
            if count > done:
                seen[done:count] = now
                done = count
            time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    start = time.monotonic()
    for i in range(total):
        target = start + i / rate
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent[i] = time.monotonic()
        pub.client.publish(f"bench/b/d{i % 20}/data", payload(i, base + i * 1000), qos=1)
    deadline = time.monotonic() + 30
    while np.isnan(seen).any() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    poller.join()
    lat = (seen - sent) * 1000
    return {"latency_p50_ms": float(np.nanpercentile(lat, 50)), "latency_p99_ms": float(np.nanpercentile(lat, 99)),
            "latency_missing": float(np.isnan(lat).sum())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--decode", type=int, default=300_000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.messages, args.decode, args.seconds = 10_000, 50_000, 3.0
    print(f"decode only, 10-field JSON: {bench_decode(args.decode):,.0f} msgs/s (target >= 50,000)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        r = bench_end_to_end(Path(tmp), args.messages, args.rate, args.seconds, args.protocol)
    print(f"end to end, MQTT {args.protocol}, {args.messages:,} QoS 1 messages queued before start:")
    print(f"  into the journal: {r['e2e_journal_msgs_per_s']:,.0f} msg/s (target >= 10,000); "
          f"into influxd: {r['e2e_influx_msgs_per_s']:,.0f} msg/s")
    print(f"  gateway CPU: {r['cpu_us_per_msg']:.1f} µs per message (target <= 50); RSS {r['rss_mb']:.0f} MB")
    print(f"publish → queryable in influxd at {args.rate:,.0f} msg/s: p50 {r['latency_p50_ms']:.0f} ms, "
          f"p99 {r['latency_p99_ms']:.0f} ms (target p99 < 500 ms); not seen: {r['latency_missing']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
