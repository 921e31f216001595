"""One device must not stop the gateway: Modbus exception codes by meaning, a device that was down
and comes back answering with an exception, a poller that fails on a bug and is restarted while the
other lines poll on, and learned holes kept in the journal across restarts."""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from drivers.modbus import ModbusDeviceSpec, ModbusPoller, Point, TcpLink
from gateway.config import load_site
from gateway.journal import JournalReader
from gateway.service import Gateway, render_status
from tests.harness import GatewayProcess, wait_until
from tests.processes import free_port
from tests.scripted_device import HOST, ScriptedDevice, scripted_site
from tests.test_modbus_client import run_until

pytestmark = pytest.mark.services


@pytest.fixture
def device(tmp_path):
    made: list[ScriptedDevice] = []

    def make(refuse: list[int] | None = None) -> ScriptedDevice:
        d = ScriptedDevice(tmp_path / f"d{len(made)}", refuse=refuse)
        d.server.start()
        made.append(d)
        return d

    yield make
    for d in made:
        d.server.kill()


def _pedf(*args: str) -> subprocess.CompletedProcess[str]:
    pedf = str(Path(sys.executable).with_name("pedf"))
    return subprocess.run([pedf, *args], capture_output=True, text=True, timeout=60)


# -- the driver: what each exception code means ---------------------------------------------------

def _spec(port: int, name: str = "m") -> ModbusDeviceSpec:
    points = tuple(Point(name=f"r{a:02d}", register="holding", address=a) for a in range(4))
    return ModbusDeviceSpec(name=name, link=TcpLink(HOST, port), unit_id=1, points=points,
                            interval_s=0.1, timeout_s=0.3, retries=0)


async def test_gateway_target_failed_to_respond_means_down_and_polled_with_backoff(device, caplog) -> None:
    dev = device()
    dev.set(exception=11)
    poller = ModbusPoller([_spec(dev.port)], lambda *a: None)
    with caplog.at_level(logging.WARNING, logger="drivers.modbus"):
        await run_until(poller, lambda: poller.stats()["m"].interval_s > 0.1)
    stats = poller.stats()["m"]
    assert not stats.up and stats.state == "down" and stats.exceptions[11] >= 3
    messages = [r.getMessage() for r in caplog.records]
    assert any("GATEWAY TARGET DEVICE FAILED TO RESPOND" in m for m in messages)
    assert any("marked down" in m for m in messages)


async def test_gateway_path_unavailable_means_down(device) -> None:
    dev = device()
    dev.set(exception=10)
    poller = ModbusPoller([_spec(dev.port)], lambda *a: None)
    await run_until(poller, lambda: not poller.stats()["m"].up)
    assert poller.stats()["m"].state == "down"


async def test_server_device_failure_means_alive_but_degraded(device, caplog) -> None:
    dev = device()
    dev.set(exception=4)
    poller = ModbusPoller([_spec(dev.port)], lambda *a: None)
    with caplog.at_level(logging.WARNING, logger="drivers.modbus"):
        await run_until(poller, lambda: poller.stats()["m"].exceptions.get(4, 0) >= 5)
    stats = poller.stats()["m"]
    assert stats.up and stats.state == "degraded" and stats.polls_ok == 0 and stats.interval_s == 0.1
    assert any("exception response code 4 (SERVER DEVICE FAILURE)" in r.getMessage() for r in caplog.records)


async def test_a_device_marked_down_that_answers_with_an_exception_keeps_its_poller(device) -> None:
    """Marked down after an outage, then answering with an exception: the poller used to compute a
    negative shift and die with ValueError (and the gateway with it)."""
    dev = device()
    rows: list = []
    poller = ModbusPoller([_spec(dev.port)], lambda *a: rows.append(a))
    phase = {"n": 0}

    def script() -> bool:
        stats = poller.stats()["m"]
        if phase["n"] == 0 and len(rows) >= 2:
            dev.server.kill()
            phase["n"] = 1
        elif phase["n"] == 1 and stats.state == "down":
            dev.set(exception=4)
            dev.server.start()
            phase["n"] = 2
        elif phase["n"] == 2 and stats.exceptions.get(4, 0) >= 2:
            dev.set()
            phase["n"], phase["rows"] = 3, len(rows)
        return phase["n"] == 3 and len(rows) >= phase["rows"] + 2

    await run_until(poller, script, timeout=30)
    stats = poller.stats()["m"]
    assert stats.up and stats.state == "up" and stats.interval_s == 0.1


# -- the gateway: a fault on one line is that line's business -------------------------------------

def test_pedf_run_keeps_running_when_a_down_device_comes_back_with_exceptions(tmp_path: Path, device) -> None:
    flaky, steady = device(), device()
    api_port = free_port()
    site = scripted_site(tmp_path / "site.yaml", {"flaky": flaky.port, "steady": steady.port},
                         journal=tmp_path / "journal.db", api_port=api_port)
    with GatewayProcess(tmp_path, site, api_port) as gw:
        wait_until(lambda: gw.status()["devices_up"] == 2, 20, what="both devices up")
        flaky.server.kill()
        wait_until(lambda: gw.status()["devices"]["flaky"]["state"] == "down", 20, what="flaky down")
        flaky.set(exception=4)  # SERVER DEVICE FAILURE: it is back, but refuses
        flaky.server.start()
        wait_until(lambda: gw.status()["devices"]["flaky"]["exceptions"].get("4", 0) >= 3, 20, what="exceptions")
        time.sleep(1.0)
        assert gw.proc is not None and gw.proc.poll() is None, gw.log_tail()
        st = gw.status()
        assert st["devices"]["flaky"]["state"] == "degraded" and st["devices"]["flaky"]["up"]
        assert st["devices_up"] == 1 and st["devices_degraded"] == 1
        text = _pedf("status", "--url", f"http://{HOST}:{api_port}").stdout
        assert "DEGR flaky" in text and "exception 4 SERVER DEVICE FAILURE" in text, text

        flaky.set(exception=11)  # a converter says the meter behind it is silent: down, not up
        wait_until(lambda: gw.status()["devices"]["flaky"]["state"] == "down", 20, what="flaky down on 0x0B")
        assert gw.status()["devices_up"] == 1
        flaky.set()
        wait_until(lambda: gw.status()["devices_up"] == 2, 60, what="flaky up again")
        steady_ok = gw.status()["devices"]["steady"]["polls_ok"]
        assert gw.terminate() == 0
    assert steady_ok >= 20


async def test_a_poller_that_raises_is_restarted_and_the_other_line_polls_on(
        tmp_path: Path, device, monkeypatch, caplog) -> None:
    import gateway.service._gateway as gateway_module

    a, b = device(), device()
    site = load_site(scripted_site(tmp_path / "site.yaml", {"a": a.port, "b": b.port}, journal=tmp_path / "j.db",
                                   api_port=free_port(), interval_s=0.1))
    monkeypatch.setattr(gateway_module, "POLLER_RESTART_BASE_S", 0.3, raising=False)
    original = ModbusPoller._current_interval_ns
    injected = {"at": None}

    def buggy(self: ModbusPoller, dev) -> int:  # a bug in the poller, once, on line a only
        if dev.spec.name == "a" and dev.stats.polls_ok == 5 and injected["at"] is None:
            injected["at"] = time.monotonic()
            raise RuntimeError("injected poller bug")
        return original(self, dev)

    monkeypatch.setattr(ModbusPoller, "_current_interval_ns", buggy)
    gateway = Gateway(site, api=False)
    stop = asyncio.Event()
    b_polls: list[tuple[float, int]] = []

    async def watch() -> None:
        await gateway.ready.wait()
        while True:
            st = gateway.status()
            b_polls.append((time.monotonic(), st.devices["b"].polls_ok))
            if st.devices["a"].polls_ok >= 12 and st.devices["b"].polls_ok >= 12:
                stop.set()
                return
            await asyncio.sleep(0.05)

    with caplog.at_level(logging.ERROR, logger="pedf.gateway"):
        async with asyncio.timeout(30), asyncio.TaskGroup() as tg:
            tg.create_task(gateway.run(stop))
            tg.create_task(watch())
    st = gateway.status()
    line_a = f"tcp:{HOST}:{a.port}"
    assert st.pollers[line_a].restarts == 1 and "RuntimeError: injected poller bug" in st.pollers[line_a].last_error
    assert st.pollers[f"tcp:{HOST}:{b.port}"].restarts == 0
    assert st.devices["a"].polls_ok >= 12  # restarted, with its counters kept
    # line b never paused: no gap of more than a few intervals around the fault
    assert injected["at"] is not None
    around = [n for t, n in b_polls if injected["at"] - 0.5 <= t <= injected["at"] + 1.0]
    assert around[-1] - around[0] >= 8, around
    assert gateway.journal.stats().committed >= 24
    failures = [r for r in caplog.records if "poller of line" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None  # logged with its traceback
    assert "restarted 1×" in render_status(st)


def test_learned_holes_survive_a_restart_and_a_readable_hole_returns(tmp_path: Path, device) -> None:
    meter = device(refuse=[7])
    api_port = free_port()
    journal = tmp_path / "journal.db"
    site = scripted_site(tmp_path / "site.yaml", {"m": meter.port}, journal=journal, api_port=api_port)
    with GatewayProcess(tmp_path, site, api_port, name="gw1") as gw:
        wait_until(lambda: gw.status()["devices"]["m"]["polls_ok"] >= 5, 20, what="polls around the hole")
        st = gw.status()["devices"]["m"]
        assert st["state"] == "up" and [(h["start"], h["end"]) for h in st["learned_holes"]] == [(7, 8)]
        text = _pedf("status", "--url", f"http://{HOST}:{api_port}").stdout
        assert "refused FC03 7..7" in text, text
        assert gw.terminate() == 0
    with JournalReader(journal) as reader:
        sid = next(iter(reader.series))
        fields = reader.series[sid].fields
        ts, cols = reader.columns(sid, fields, 0, time.time_ns())
    assert len(ts) >= 5
    for name in fields:  # every other point arrived in every poll, the refused one never
        if name == "r07":
            assert name not in cols or all(math.isnan(v) for v in cols[name])
        else:
            assert list(cols[name]) == [100.0 + int(name[1:])] * len(ts), name
    learned = _pedf("check", "--learned", str(site)).stdout
    assert "learned holes in" in learned and "FC03 7..7" in learned and "exception 2" in learned, learned

    reads_before = len(meter.reads())
    with GatewayProcess(tmp_path, site, api_port, name="gw2") as gw:
        wait_until(lambda: gw.status()["devices"]["m"]["polls_ok"] >= 5, 20, what="polls after the restart")
        st = gw.status()["devices"]["m"]
        assert st["exceptions"] == {} and [(h["start"], h["end"]) for h in st["learned_holes"]] == [(7, 8)]
        assert all(r == "ok" and not a <= 7 < a + n for a, n, r in meter.reads()[reads_before:])

        meter.set()  # the device answers address 7 now; a short re-probe period, by SIGHUP
        data = yaml.safe_load(site.read_text())
        data["devices"][0]["reprobe_holes_s"] = 1
        site.write_text(yaml.safe_dump(data, sort_keys=False))
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: gw.status()["devices"]["m"]["learned_holes"] == [], 20, what="the hole re-probed")
        assert gw.terminate() == 0
    with JournalReader(journal) as reader:
        sid = next(iter(reader.series))
        ts, cols = reader.columns(sid, ("r07",), 0, time.time_ns())
        assert reader.learned_holes() == {}
    assert 107.0 in list(cols["r07"])
    assert "learned holes in" in (out := _pedf("check", "--learned", str(site)).stdout) and ": none" in out, out
