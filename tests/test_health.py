"""``/health`` speaks for the whole gateway: the journal that cannot commit, the disk under its reserve,
a sink that holds samples back too long, no device up — each a reason, and 503.  The rules are a pure
function of the status (unit tests); the service answers from it (a sink outage against a real
influxd, a full journal in SQLite's own words)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from drivers.modbus import DeviceStats
from gateway.config import load_site
from gateway.journal import JournalStats
from gateway.service import Gateway, GatewayStatus, MqttStatus
from gateway.service._api import build_app
from gateway.service._health import START_GRACE_S, HealthPolicy, health_reasons
from gateway.sinks import DeliveryStats, PublisherStats
from tests.harness import GatewayProcess, SimulatorProcess, wait_until, write_site
from tests.processes import free_port
from tests.servers import InfluxD

NOW = 1_800_000_000 * 10**9
S = 10**9


def _backlog(oldest_ns: int | None, rows: int = 10):
    from gateway.journal import SinkBacklog

    return SinkBacklog(cursor=0, backlog_rows=rows, oldest_unsent_ns=oldest_ns)


def _delivery(last_error: str | None = None) -> DeliveryStats:
    return DeliveryStats(sent_lines=0, batches=0, retries=0, dead_lettered=0, last_error=last_error, backlog=0,
                         cursor=0)


def _status(**changes) -> GatewayStatus:
    journal = JournalStats(rows=0, bytes=0, head_seq=0, pending=0, appended=0, committed=0, commits=0,
                           failed_commits=0, dropped_rows=0, dropped_undelivered=0,
                           sinks={"influx": _backlog(NOW - 10 * S)})
    base = GatewayStatus(site="s", uptime_s=100.0, devices={}, devices_up=2, devices_total=2, samples=0,
                         samples_per_s=0.0, overruns=0, commit_failures=0, journal=journal,
                         sinks={"influx": _delivery()})
    return dataclasses.replace(base, **changes)


def _journal(**changes) -> JournalStats:
    return dataclasses.replace(_status().journal, **changes)


def test_a_working_gateway_has_no_reason() -> None:
    assert health_reasons(_status(), NOW) == []
    assert health_reasons(_status(devices_up=0, devices_total=0), NOW) == []  # an MQTT-only site


def test_a_recent_commit_failure_is_a_reason_an_old_one_is_not() -> None:
    policy = HealthPolicy(commit_failure_window_s=60)
    recent = health_reasons(_status(commit_failures=7, last_commit_failure_ns=NOW - 5 * S), NOW, policy)
    assert len(recent) == 1 and recent[0].startswith("journal: a commit failed 5 s ago (7 failed")
    assert health_reasons(_status(commit_failures=7, last_commit_failure_ns=NOW - 61 * S), NOW, policy) == []


def test_free_space_under_the_reserve_is_a_reason() -> None:
    reasons = health_reasons(_status(journal=_journal(low_space=True, free_bytes=3_500_000)), NOW)
    assert reasons == ["journal: free disk space is under the reserve (3.5 MB free)"]
    assert health_reasons(_status(journal=_journal(low_space=True)), NOW) == [
        "journal: free disk space is under the reserve"]
    assert health_reasons(_status(journal=_journal(low_space=False, free_bytes=1000)), NOW) == []


def test_a_sink_whose_oldest_unsent_sample_is_too_old_is_named() -> None:
    policy = HealthPolicy(max_unsent_age_s=300)
    old = _journal(sinks={"influx": _backlog(NOW - 301 * S, rows=1234), "gone": _backlog(NOW - 9999 * S)})
    reasons = health_reasons(_status(journal=old, sinks={"influx": _delivery("HTTP 503: busy")}), NOW, policy)
    # "gone" has a cursor in the journal but is no longer configured: it is nobody's sink
    assert reasons == ["sink influx: oldest unsent sample is 301 s old (limit 300 s), 1234 rows waiting; "
                       "last error: HTTP 503: busy"]
    for oldest in (NOW - 299 * S, None, NOW + 60 * S):  # young, nothing waiting, a device clock ahead
        fine = _journal(sinks={"influx": _backlog(oldest)})
        assert health_reasons(_status(journal=fine), NOW, policy) == []


def test_the_mqtt_publisher_counts_as_a_sink() -> None:
    publish = PublisherStats(published=0, discovery=0, connects=0, failures=3, devices=0,
                             last_error="MQTT broker h:1883: refused", batches=0, retries=0, backlog=5, cursor=0)
    journal = _journal(sinks={"influx": _backlog(NOW), "mqtt_publish": _backlog(NOW - 400 * S)})
    reasons = health_reasons(_status(journal=journal, mqtt=MqttStatus(publish=publish)), NOW)
    assert len(reasons) == 1 and reasons[0].startswith("sink mqtt_publish: oldest unsent sample is 400 s old")
    assert "refused" in reasons[0]


def test_no_device_up_is_a_reason_and_reasons_add_up() -> None:
    st = _status(devices_up=0, devices_total=3, journal=_journal(low_space=True), commit_failures=1,
                 last_commit_failure_ns=NOW)
    reasons = health_reasons(st, NOW)
    assert reasons[-1] == "devices: none of 3 is up" and len(reasons) == 3


def test_a_gateway_that_has_just_started_is_not_down_before_its_first_poll() -> None:
    fresh = {"m1": DeviceStats(), "m2": DeviceStats()}  # degraded, never polled yet
    starting = _status(devices_up=0, uptime_s=2.0, devices=fresh)
    assert health_reasons(starting, NOW) == []
    assert health_reasons(dataclasses.replace(starting, uptime_s=START_GRACE_S + 1), NOW) == [
        "devices: none of 2 is up"]
    failed = {"m1": DeviceStats(polls_failed=1), "m2": DeviceStats()}
    assert health_reasons(dataclasses.replace(starting, devices=failed), NOW) == ["devices: none of 2 is up"]


async def test_the_endpoint_answers_503_with_the_reasons() -> None:
    statuses = iter([_status(), _status(devices_up=0)])
    app = build_app(lambda: next(statuses))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/health"
            async with http.get(url) as resp:
                assert resp.status == 200 and (await resp.json())["reasons"] == []
            async with http.get(url) as resp:
                body = await resp.json()
                assert resp.status == 503 and body["healthy"] is False
                assert body["reasons"] == ["devices: none of 2 is up"]
    finally:
        await runner.cleanup()


# -- the service ----------------------------------------------------------------------------------

def _health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _with_health(site: Path, **health: float) -> None:
    data = yaml.safe_load(site.read_text())
    data["api"]["health"] = health
    site.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.services
def test_health_turns_503_naming_the_sink_during_an_influxd_outage_and_recovers(tmp_path: Path,
                                                                                influxd: InfluxD) -> None:
    influxd.create_database("pedf")
    devices = [{"name": "m1", "profile": "dtsu666", "port": free_port(), "role": "grid_meter"}]
    api_port = free_port()
    sink = {"type": "influxdb_v1", "name": "influx", "url": influxd.url, "database": "pedf", "max_age_s": 0.2}
    site = write_site(tmp_path / "site.yaml", devices, journal=tmp_path / "journal.db", api_port=api_port,
                      sinks=[sink], interval_s=0.5)
    _with_health(site, max_unsent_age_s=3)
    with SimulatorProcess(tmp_path, devices, speed=0), GatewayProcess(tmp_path, site, api_port) as gw:
        wait_until(lambda: _health(api_port)[0] == 200 and gw.status()["sinks"]["influx"]["sent_lines"] > 0, 20,
                   what="healthy and delivering")
        influxd.stop()
        _, body = wait_until(lambda: (r := _health(api_port))[0] == 503 and r, 20, what="503 during the outage")
        assert [r for r in body["reasons"] if r.startswith("sink influx: oldest unsent sample is")], body
        assert "cannot connect" in body["reasons"][0]
        assert any(r.startswith("sink influx") for r in gw.status()["health"])  # /status says it too
        shown = subprocess.run([str(Path(sys.executable).with_name("pedf")), "status", "--url",
                                f"http://127.0.0.1:{api_port}"], capture_output=True, text=True, timeout=30)
        assert "health: UNHEALTHY" in shown.stdout and "  ! sink influx: oldest unsent sample" in shown.stdout
        influxd.start()
        wait_until(lambda: _health(api_port)[0] == 200, 45, what="healthy again once influxd is back")
        assert gw.status()["journal"]["sinks"]["influx"]["backlog_rows"] < 20


@pytest.mark.services
async def test_health_turns_503_while_the_journal_cannot_commit(tmp_path: Path) -> None:
    """A journal that is full (SQLite's max_page_count: SQLITE_FULL, as on a full disk) fails every
    commit: /health says so at once, and again healthy a window after commits succeed."""
    devices = [{"name": "m1", "profile": "dtsu666", "port": free_port(), "role": "grid_meter"}]
    site_file = write_site(tmp_path / "site.yaml", devices, journal=tmp_path / "journal.db", api_port=0,
                           interval_s=0.2)
    _with_health(site_file, commit_failure_window_s=2)
    gateway = Gateway(load_site(site_file))
    stop = asyncio.Event()

    async def health() -> tuple[int, list[str]]:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{gateway.api_port}/health") as r:
            return r.status, (await r.json())["reasons"]

    async def until(predicate, timeout: float, what: str):
        deadline = asyncio.get_running_loop().time() + timeout
        while not (result := await predicate()):
            assert asyncio.get_running_loop().time() < deadline, what
            await asyncio.sleep(0.1)
        return result

    def cap_pages(extra: int | None) -> None:
        """On the journal's thread, its own connection: at most ``extra`` pages more (None: no cap)."""
        db = gateway.journal._conn()
        limit = 1 << 30 if extra is None else db.execute("PRAGMA page_count").fetchone()[0] + extra
        db.execute(f"PRAGMA max_page_count = {limit}")

    with SimulatorProcess(tmp_path, devices, speed=0):
        async with asyncio.TaskGroup() as group:
            group.create_task(gateway.run(stop))
            await gateway.ready.wait()
            await until(lambda: _async(gateway.counters.samples > 3), 20, "first samples")
            assert (await health())[0] == 200
            await gateway.journal._run(cap_pages, 0)  # no page more: the next inserts fail, SQLITE_FULL
            _, reasons = await until(lambda: _first_503(health), 10, "503 while commits fail")
            assert any(r.startswith("journal: a commit failed") for r in reasons), reasons
            assert gateway.counters.commit_failures > 0
            await gateway.journal._run(cap_pages, None)  # room again
            await until(lambda: _healthy(health), 10, "healthy once commits succeed for a window")
            stop.set()


async def _async(value: bool) -> bool:
    return value


async def _first_503(health) -> tuple[int, list[str]] | None:
    code, reasons = await health()
    return (code, reasons) if code == 503 else None


async def _healthy(health) -> bool:
    with contextlib.suppress(aiohttp.ClientError):
        return (await health())[0] == 200
    return False
