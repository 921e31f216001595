"""MQTT ingest under hostile traffic: the gateway's memory before and after 20,000 hostile messages.

Method (one run): a real mosquitto and ``pedf run`` on a site with three subscriptions (JSON meter,
kv, number) and default limits (``max_series`` 2,000, ``max_payload_bytes`` 64 KiB, dead letters
16 MB / 10,000 rows, 4 KiB kept of each).  The gateway is warmed with a few messages of every kind
(so first-use allocations are not counted), left idle for 3 s, and its RSS read from /proc (the
idle figure).  Then ``--messages`` QoS 1 messages are published, five kinds in turn: readings for
invented device names (a new series each), undecodable junk of 60 KB, valid readings of 70 KB
(over ``max_payload_bytes``), kv payloads with invented field names (a new series each), and
readings under topics of 2 KB with invented names.  Once the gateway has handled every one
(committed or dead-lettered, from /status), RSS is read again after 3 s; VmHWM is the peak.
Target: RSS after ≤ idle + 20 MB.

Run from the repository root: ``python -m benchmarks.bench_mqtt_hostile [--messages N] [--protocol 3.1.1]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from tests.harness import GatewayProcess, wait_until
from tests.mqtt_helpers import Publisher
from tests.processes import free_port
from tests.servers import Mosquitto

TS = 1_700_000_000
JUNK = b"\x00junk" * 12_000  # 60,000 bytes, not JSON
KINDS = ("invented device", "junk 60 KB", "oversize 70 KB", "invented fields", "long topic")


def write_site(path: Path, journal: Path, api_port: int, broker: int, protocol: str) -> Path:
    path.write_text(yaml.safe_dump({
        "site": {"name": "hostile", "timezone": "UTC"}, "parks": [{"name": "p", "grid_region": "east_china"}],
        "buildings": [{"name": "b", "park": "p", "floor_area_m2": 1000}],
        "journal": {"path": str(journal), "synchronous": "FULL", "commit_interval_ms": 20},
        "api": {"host": "127.0.0.1", "port": api_port},
        "mqtt": {"brokers": [{"host": "127.0.0.1", "port": broker}], "client_id": "hostile-gw", "protocol": protocol,
                 "subscriptions": [
                     {"topic": "meter/{building}/{device}/data", "decoder": "json", "measurement": "meter",
                      "timestamp": {"path": "ts"}, "fields": {"p_kw": "p", "e_kwh": "e"}},
                     {"topic": "kv/{building}/{device}/#", "decoder": "kv", "measurement": "misc",
                      "timestamp": {"path": "t"}},
                     {"topic": "long/{device}/temp_c", "decoder": "number", "field": "temp_c",
                      "measurement": "room", "building": "b"}]},
    }))
    return path


def hostile(i: int, tag: str) -> tuple[str, bytes | str]:
    """Message ``i`` of the flood: the five kinds in turn."""
    kind = i % 5
    if kind == 0:
        return f"meter/b/{tag}{i}/data", json.dumps({"ts": TS + i, "p": 1.5, "e": i})
    if kind == 1:
        return f"meter/b/m{i % 7}/data", JUNK
    if kind == 2:
        return f"meter/b/m{i % 7}/data", json.dumps({"ts": TS + i, "p": 2, "pad": "x" * 70_000})
    if kind == 3:
        return f"kv/b/d{i % 7}/state", json.dumps({"t": TS + i, f"{tag}_field_{i}": 1.0})
    return f"long/{tag}{i}{'x' * 2000}/temp_c", b"21.5"


def handled(gw: GatewayProcess) -> int:
    m = gw.status()["mqtt"]["mqtt"]
    return int(m["committed"]) + int(m["dead_lettered"]) + int(m["ignored"])


def run(work: Path, n: int, protocol: str) -> dict[str, Any]:
    with Mosquitto(work / "mosq", extra_config=f"max_queued_messages {n + 10000}\n") as mq:
        api = free_port()
        site = write_site(work / "site.yaml", work / "journal.db", api, mq.port, protocol)
        pub = Publisher(mq.port, client_id="hostile-pub")
        with GatewayProcess(work, site, api) as gw:
            wait_until(lambda: gw.status()["mqtt"]["mqtt"]["connection"]["subscribed"], 30, interval=0.1,
                       what="the gateway's subscription")
            warm = [hostile(i, "warm") for i in range(50)]
            pub.publish(warm)
            wait_until(lambda: handled(gw) >= len(warm), 60, what="warm-up handled")
            time.sleep(3)
            idle = gw.rss_mb()
            t0 = time.monotonic()
            for start in range(0, n, 500):
                pub.publish([hostile(i, "inv") for i in range(start, min(n, start + 500))])
            wait_until(lambda: handled(gw) >= len(warm) + n, 300, interval=0.5, what="flood handled")
            elapsed = time.monotonic() - t0
            time.sleep(3)
            after, peak = gw.rss_mb(), gw.rss_mb("VmHWM")
            st = gw.status()
            gw.terminate()
        pub.close()
    m, j = st["mqtt"]["mqtt"], st["journal"]
    return {"idle_mb": idle, "after_mb": after, "peak_mb": peak, "elapsed_s": elapsed, "received": m["received"],
            "series": m["series"], "series_refused": m["series_refused"], "oversize": m["oversize"],
            "dead_lettered": m["dead_lettered"], "committed": m["committed"], "dead_letters_kept": m["dead_letters_kept"],
            "dead_letter_mb": m["dead_letter_bytes"] / 2**20, "dead_letters_dropped": m["dead_letters_dropped_total"],
            "journal_mb": j["bytes"] / 2**20, "journal_file_mb": (work / "journal.db").stat().st_size / 2**20}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        r = run(Path(tmp), args.messages, args.protocol)
    print(f"{args.messages:,} hostile QoS 1 messages ({', '.join(KINDS)} in turn), MQTT {args.protocol}, "
          f"handled in {r['elapsed_s']:.1f} s")
    print(f"  gateway RSS: idle {r['idle_mb']:.1f} MB, after {r['after_mb']:.1f} MB "
          f"(+{r['after_mb'] - r['idle_mb']:.1f} MB, target <= +20), peak {r['peak_mb']:.1f} MB "
          f"(+{r['peak_mb'] - r['idle_mb']:.1f} MB)")
    print(f"  received {r['received']:,}, committed {r['committed']:,}, dead-lettered {r['dead_lettered']:,} "
          f"(oversize {r['oversize']:,}, series refused {r['series_refused']:,}); series {r['series']:,}")
    print(f"  dead letters kept {r['dead_letters_kept']:,} ({r['dead_letter_mb']:.1f} MB), dropped "
          f"{r['dead_letters_dropped']:,}; journal {r['journal_mb']:.1f} MB in use, file {r['journal_file_mb']:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
