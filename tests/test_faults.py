"""Fault injection on real processes: the database goes away, the gateway is killed, devices misbehave,
the journal fills up.  Every sample the simulator answered must arrive; nothing committed is lost."""

from __future__ import annotations

import itertools
import sqlite3
import time
from pathlib import Path

import pytest

from tests.harness import GatewayProcess, SimulatorProcess, wait_until, write_site
from tests.processes import free_port
from tests.servers import InfluxD

pytestmark = pytest.mark.services


def _counts_by_device(influxd: InfluxD) -> dict[str, int]:
    rows = influxd.query("SELECT count(x00_kw) FROM meter GROUP BY device", db="pedf")
    return {r["device"]: int(r["count"]) for r in rows}


def _times(influxd: InfluxD, device: str) -> list[int]:
    return [int(r["time"]) for r in influxd.query(f"SELECT x00_kw FROM meter WHERE device='{device}'", db="pedf")]


def test_influxd_outage_of_30_s_loses_nothing_and_replays_are_bounded(tmp_path: Path, influxd: InfluxD) -> None:
    devices = [{"name": f"d{i}", "profile": "bench60", "port": free_port()} for i in range(3)]
    influxd.create_database("pedf")
    api_port = free_port()
    batch_lines = 50
    site = write_site(
        tmp_path / "site.yaml",
        devices,
        journal=tmp_path / "journal.db",
        api_port=api_port,
        sinks=[
            {
                "type": "influxdb_v1",
                "name": "influx",
                "url": influxd.url,
                "database": "pedf",
                "max_age_s": 0.5,
                "batch_lines": batch_lines,
                "timeout_s": 2,
            }
        ],
    )
    poll_log = tmp_path / "polls.log"
    with (
        SimulatorProcess(tmp_path, devices, speed=0, poll_log=poll_log) as sim,
        GatewayProcess(tmp_path, site, api_port) as gw,
    ):
        wait_until(lambda: sum(_counts_by_device(influxd).values()) >= 15, 30, what="first samples")
        accepted_before = influxd.points_written()
        influxd.stop()
        time.sleep(30)
        backlog = gw.status()["journal"]["sinks"]["influx"]["backlog_rows"]
        assert backlog >= 60, f"the journal should hold the outage's samples, backlog {backlog}"
        influxd.start()
        sim.stop()  # no more polls answered: the poll log is now the complete list of samples
        answered = sim.answered_polls()
        wait_until(lambda: _counts_by_device(influxd) == answered, 60, what="every answered poll in influxd")
        accepted_after = influxd.points_written()
        assert gw.terminate() == 0
    total = sum(answered.values())
    assert total >= 3 * 30
    # replays are bounded: influxd accepted at most the samples plus the batches in flight at the outage
    assert accepted_before + accepted_after <= total + 2 * batch_lines
    for d in devices:
        times = _times(influxd, d["name"])
        gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(times)]
        assert max(gaps) < 1.5, f"{d['name']}: a hole of {max(gaps):.1f} s across the outage"


def test_sigkill_then_restart_loses_nothing_committed(tmp_path: Path, influxd: InfluxD) -> None:
    devices = [{"name": f"d{i}", "profile": "bench60", "port": free_port()} for i in range(2)]
    influxd.create_database("pedf")
    api_port = free_port()
    journal = tmp_path / "journal.db"
    site = write_site(
        tmp_path / "site.yaml",
        devices,
        journal=journal,
        api_port=api_port,
        interval_s=0.2,
        sinks=[{"type": "influxdb_v1", "name": "influx", "url": influxd.url, "database": "pedf", "max_age_s": 0.3}],
    )
    with SimulatorProcess(tmp_path, devices, speed=0):
        first = GatewayProcess(tmp_path, site, api_port, name="first").start()
        wait_until(lambda: sum(_counts_by_device(influxd).values()) >= 10, 30, what="first samples")
        influxd.stop()  # so that committed samples are still undelivered when the gateway dies
        time.sleep(3)
        first.kill()
        with sqlite3.connect(journal) as db:
            committed = db.execute("SELECT count(*), min(ts_ns), max(ts_ns) FROM samples").fetchone()
        assert committed[0] > 20
        influxd.start()
        with GatewayProcess(tmp_path, site, api_port, name="second") as second:
            wait_until(
                lambda: sum(_counts_by_device(influxd).values()) >= committed[0] + 4,
                60,
                what="the committed backlog delivered after the restart",
            )
            assert second.terminate() == 0
    rows = influxd.query(f"SELECT count(x00_kw) FROM meter WHERE time <= {committed[2]}", db="pedf")
    assert int(rows[0]["count"]) == committed[0]


def test_misbehaving_devices_do_not_stall_the_others_on_their_line(tmp_path: Path) -> None:
    port = free_port()
    devices = [
        {"name": "healthy", "profile": "bench60", "port": port, "unit_id": 1, "interval_s": 0.5},
        {"name": "silent", "profile": "bench60", "port": port, "unit_id": 2, "interval_s": 0.5},
        {"name": "refusing", "profile": "bench60", "port": port, "unit_id": 3, "interval_s": 0.5},
        {"name": "dropping", "profile": "bench60", "port": port, "unit_id": 4, "interval_s": 0.5},
    ]
    faults = {"silent": "timeout", "refusing": "exception2", "dropping": "drop"}
    api_port = free_port()
    site = write_site(tmp_path / "site.yaml", devices, journal=tmp_path / "journal.db", api_port=api_port)
    with SimulatorProcess(tmp_path, devices, speed=0, faults=faults), GatewayProcess(tmp_path, site, api_port) as gw:
        time.sleep(15)
        status = gw.status()
        assert gw.terminate() == 0
    dev = status["devices"]
    # 15 s at 0.5 s: about 30 slots; a shared line loses some time to the others' timeouts and reconnects
    assert dev["healthy"]["polls_ok"] >= 15, dev["healthy"]
    assert dev["healthy"]["up"]
    assert dev["silent"]["timeouts"] >= 1 and not dev["silent"]["up"]
    assert sum(dev["refusing"]["exceptions"].values()) >= 1 and "2" in {str(k) for k in dev["refusing"]["exceptions"]}
    assert dev["dropping"]["polls_ok"] == 0
    assert dev["dropping"]["reconnects"] + dev["dropping"]["timeouts"] + dev["dropping"]["malformed"] >= 1


def test_journal_cap_drops_oldest_counts_and_memory_stays_flat(tmp_path: Path) -> None:
    devices = [{"name": f"d{i}", "profile": "bench60", "port": free_port(), "interval_s": 0.05} for i in range(8)]
    api_port = free_port()
    dead_sink = {"type": "influxdb_v1", "name": "nowhere", "url": f"http://127.0.0.1:{free_port()}", "database": "pedf"}
    site = write_site(
        tmp_path / "site.yaml",
        devices,
        journal=tmp_path / "journal.db",
        api_port=api_port,
        sinks=[dead_sink],
        max_mb=0.5,
    )
    with SimulatorProcess(tmp_path, devices, speed=0), GatewayProcess(tmp_path, site, api_port) as gw:
        wait_until(lambda: gw.status()["journal"]["dropped_rows"] > 0, 60, what="the cap reached")
        rss_at_cap = gw.rss_mb()
        size_at_cap = gw.status()["journal"]["bytes"]
        time.sleep(15)
        status = gw.status()
        rss_later = gw.rss_mb()
        assert gw.terminate() == 0
    journal = status["journal"]
    assert journal["dropped_rows"] > 100
    assert journal["bytes"] <= 0.5 * 1024 * 1024 * 1.2
    assert journal["bytes"] <= size_at_cap * 1.5 + 64 * 1024
    assert rss_later - rss_at_cap < 10, f"memory grew {rss_later - rss_at_cap:.1f} MB while dropping"
    assert status["samples"] > 2000
