"""Nothing lost: QoS 1 messages through ``pedf run`` (own process) into the journal and influxd while
mosquitto is restarted (persistence on) and the gateway is SIGKILLed mid-stream.

The gateway commits in groups every 200 ms here, so at the kill it holds received, uncommitted
messages; the broker must redeliver them (the restarted gateway counts DUP messages).  The test
counts what the publisher got PUBACKs for and finds each message's sample in the journal and in
influxd (duplicates collapse on series + timestamp).  ``PEDF_MQTT_DURABILITY_N`` sets the count:
30,000 by default (``make test``, ~7 s), 100,000 in the slow run (``PEDF_MQTT_DURABILITY_N=100000``, ~20 s here).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.harness import GatewayProcess, wait_until
from tests.mqtt_helpers import Publisher
from tests.processes import free_port

pytestmark = pytest.mark.services

N = int(os.environ.get("PEDF_MQTT_DURABILITY_N", "30000"))
T0 = 1_700_000_000 * 10**9


def write_mqtt_site(path: Path, journal: Path, api_port: int, broker_port: int, influx_url: str) -> Path:
    site = {
        "site": {"name": "t", "timezone": "UTC"},
        "parks": [{"name": "p", "grid_region": "east_china"}],
        "buildings": [{"name": "b", "park": "p", "floor_area_m2": 1000}],
        "sinks": [{"type": "influxdb_v1", "url": influx_url, "database": "pedf", "batch_lines": 5000,
                   "max_age_s": 0.2}],
        "journal": {"path": str(journal), "synchronous": "FULL", "commit_interval_ms": 200},
        "api": {"host": "127.0.0.1", "port": api_port},
        "mqtt": {"brokers": [{"host": "127.0.0.1", "port": broker_port}], "client_id": "pedf-durability",
                 "receive_maximum": 1000, "reconnect_min_s": 0.1, "reconnect_max_s": 1.0,
                 "subscriptions": [{"topic": "pedf/{building}/{device}/telemetry", "decoder": "json",
                                    "measurement": "meter", "timestamp": {"path": "ts", "format": "epoch_ns"},
                                    "fields": {"p_kw": "p", "seq": "i"}}]},
    }
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


def journal_distinct(journal: Path) -> int:
    with sqlite3.connect(journal) as db:
        return db.execute("SELECT count(DISTINCT ts_ns) FROM samples").fetchone()[0]


def committed(gw: GatewayProcess) -> int:
    try:
        return gw.status()["mqtt"]["mqtt"]["committed"]
    except OSError:
        return 0


def outstanding(gw: GatewayProcess) -> int:
    try:
        return gw.status()["mqtt"]["mqtt"]["outstanding"]
    except OSError:
        return 0


def wait(gw: GatewayProcess, pub: Publisher, predicate, what: str, timeout: float = 120) -> None:
    try:
        wait_until(predicate, timeout, what=what)
    except TimeoutError as exc:
        try:
            status = gw.status().get("mqtt")
        except OSError as err:
            status = f"no status: {err}"
        raise AssertionError(f"{exc}; published {pub.sent}; gateway: {status}; "
                             f"log: {gw.log.read_text(errors='replace')[-1500:]}") from None


def test_every_message_survives_a_broker_restart_and_a_gateway_kill(tmp_path: Path, mosquitto, influxd) -> None:
    influxd.create_database("pedf")
    journal = tmp_path / "journal.db"
    api_port = free_port()
    site = write_mqtt_site(tmp_path / "site.yaml", journal, api_port, mosquitto.port, influxd.url)
    pub = Publisher(mosquitto.port, client_id="durability-publisher")
    done = threading.Event()
    errors: list[BaseException] = []

    def publish_all() -> None:
        try:
            for start in range(0, N, 500):
                pub.publish([(f"pedf/b/m{i % 10}/telemetry", json.dumps({"ts": T0 + i * 1000, "p": i * 0.5, "i": i}))
                             for i in range(start, min(N, start + 500))], timeout=10)
                time.sleep(0.02)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
        finally:
            done.set()

    with GatewayProcess(tmp_path, site, api_port) as gw:
        thread = threading.Thread(target=publish_all)
        thread.start()
        wait(gw, pub, lambda: committed(gw) >= N // 5, "a fifth committed")
        mosquitto.restart()  # SIGTERM: the broker saves sessions and queues, then starts again
        # kill while messages are received and not yet acknowledged, so the broker has some to redeliver
        wait(gw, pub, lambda: committed(gw) >= N // 2 and outstanding(gw) > 0, "half committed, more in flight")
        gw.kill()  # SIGKILL with a 200 ms group open: received, not committed, not acknowledged
        before_restart = journal_distinct(journal)
        gw.start()
        thread.join(300)
        assert done.is_set() and not errors, errors
        assert pub.sent == N  # every message has its PUBACK from the broker
        wait(gw, pub, lambda: journal_distinct(journal) >= N, "every message in the journal")
        status = gw.status()["mqtt"]["mqtt"]
        wait_until(lambda: influxd.query('SELECT count(p_kw) FROM meter', db="pedf") and
                   influxd.query('SELECT count(p_kw) FROM meter', db="pedf")[0]["count"] >= N, 120,
                   what="every message in influxd")
        gw.terminate()
    pub.close()
    assert before_restart < N
    assert status["redelivered"] > 0  # the broker redelivered what the killed gateway had not acknowledged
    assert status["dead_lettered"] == 0
    assert journal_distinct(journal) == N
    rows = influxd.query("SELECT count(p_kw), sum(seq) FROM meter", db="pedf")
    assert rows[0]["count"] == N and rows[0]["sum"] == N * (N - 1) // 2  # each message exactly once in influxd
    per_device = influxd.query("SELECT count(p_kw) FROM meter GROUP BY device", db="pedf")
    assert sorted(r["device"] for r in per_device) == [f"m{i}" for i in range(10)]
    assert all(r["count"] == N // 10 for r in per_device)
