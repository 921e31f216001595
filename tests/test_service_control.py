"""The running service: SIGHUP reload (changed devices restart, others keep polling, a broken file is
refused), ``pedf status``, graceful SIGTERM, structured logs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.harness import GatewayProcess, SimulatorProcess, wait_until, write_site
from tests.processes import free_port


def _pedf() -> str:
    return str(Path(sys.executable).with_name("pedf"))


@pytest.mark.services
def test_sighup_reload_restarts_only_changed_devices_and_refuses_a_broken_file(tmp_path: Path) -> None:
    devices = [
        {"name": "steady", "profile": "bench60", "port": free_port(), "interval_s": 0.2},
        {"name": "changed", "profile": "bench60", "port": free_port(), "interval_s": 1.0},
    ]
    api_port = free_port()
    site = write_site(tmp_path / "site.yaml", devices, journal=tmp_path / "journal.db", api_port=api_port)
    original = site.read_text()
    with SimulatorProcess(tmp_path, devices, speed=0), GatewayProcess(tmp_path, site, api_port) as gw:
        wait_until(lambda: gw.status()["devices"]["changed"]["polls_ok"] >= 2, 20, what="first polls")
        before = gw.status()["devices"]
        data = yaml.safe_load(original)
        data["devices"][1]["interval_s"] = 0.1
        site.write_text(yaml.safe_dump(data, sort_keys=False))
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: gw.status()["devices"]["changed"]["interval_s"] == 0.1, 10, what="the new interval")
        after_reload = gw.status()["devices"]
        # the unchanged device kept its poller: its counter continued instead of starting again at 0
        assert after_reload["steady"]["polls_ok"] >= before["steady"]["polls_ok"]
        # the changed one restarted: a fresh counter, now polled ten times a second
        assert after_reload["changed"]["polls_ok"] < before["changed"]["polls_ok"] + 5
        time.sleep(2)
        fast = gw.status()["devices"]["changed"]["polls_ok"] - after_reload["changed"]["polls_ok"]
        assert fast >= 12, f"{fast} polls in 2 s at 0.1 s"

        site.write_text(original.replace("interval_s: 0.2", "interval_s: soon"))
        gw.proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        still = gw.status()["devices"]
        assert still["changed"]["interval_s"] == 0.1, "a broken file must leave the running configuration alone"
        assert still["steady"]["polls_ok"] > after_reload["steady"]["polls_ok"]
        samples_before_stop = gw.status()["samples"]
        assert gw.terminate() == 0
    log = (tmp_path / "gateway.log").read_text()
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    refused = [r for r in records if "refused" in r["msg"]]
    assert refused and "interval_s" in refused[0]["errors"] and "site.yaml" in refused[0]["errors"]
    assert any(r["msg"].startswith("stopping") for r in records)
    assert samples_before_stop > 20


@pytest.mark.services
def test_pedf_status_shows_devices_backlog_and_oldest_unsent_age(tmp_path: Path) -> None:
    devices = [{"name": "m1", "profile": "dtsu666", "port": free_port(), "role": "grid_meter"},
               {"name": "gone", "profile": "bench60", "port": free_port()}]
    api_port = free_port()
    dead_sink = {"type": "influxdb_v1", "name": "influx", "url": f"http://127.0.0.1:{free_port()}", "database": "x"}
    site = write_site(tmp_path / "site.yaml", devices, journal=tmp_path / "journal.db", api_port=api_port,
                      sinks=[dead_sink], interval_s=0.5)
    with SimulatorProcess(tmp_path, devices[:1], speed=0), GatewayProcess(tmp_path, site, api_port):
        wait_until(lambda: _status_json(api_port)["journal"]["sinks"]["influx"]["backlog_rows"] >= 4, 20, what="backlog")
        time.sleep(3)
        text = subprocess.run([_pedf(), "status", "--url", f"http://127.0.0.1:{api_port}"], capture_output=True,
                              text=True, timeout=30)
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "1/2 devices up" in out
    assert "up   m1" in out and "DOWN gone" in out
    sink_line = next(line for line in out.splitlines() if "sink influx" in line)
    assert "backlog" in sink_line and "oldest unsent" in sink_line and "oldest unsent -" not in sink_line


def _status_json(port: int) -> dict:
    out = subprocess.run([_pedf(), "status", "--json", "--url", f"http://127.0.0.1:{port}"], capture_output=True,
                         text=True, timeout=30, check=True)
    return json.loads(out.stdout)


@pytest.mark.services
def test_status_without_a_gateway_says_so(tmp_path: Path) -> None:
    out = subprocess.run([_pedf(), "status", "--url", f"http://127.0.0.1:{free_port()}"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1
    assert "no gateway answers" in out.stderr


def _zeros(cls, **given):
    """A stats dataclass with ``given`` fields and every other numeric field 0."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    fill = {f.name: 0 for f in dataclasses.fields(cls) if f.name not in given and hints[f.name] in (int, float)}
    return cls(**fill, **given)


def test_status_text_shows_mqtt_ingest() -> None:
    from drivers.mqtt import SourceStats
    from gateway.ingest import IngestStats
    from gateway.journal import JournalStats
    from gateway.service import GatewayStatus, MqttStatus, render_status

    ingest = _zeros(IngestStats, received=7, committed=6, acked=6, dead_lettered=1, outstanding=0,
                    rejected_by_topic={}, connection=SourceStats(connected=True))
    status = GatewayStatus(site="s", uptime_s=5.0, devices={}, devices_up=0, devices_total=0, samples=0,
                           samples_per_s=0.0, overruns=0, commit_failures=0,
                           journal=_zeros(JournalStats, rows=3, bytes=1000, sinks={}), sinks={},
                           mqtt=MqttStatus(ingest=ingest))
    assert GatewayStatus.from_json(status.to_json()) == status  # the JSON round trip loses nothing
    line = render_status(status).splitlines()[-1]
    assert line == ("  mqtt ingest: received 7, committed 6, acked 6, dead-lettered 1, outstanding 0, "
                    "connected True")
