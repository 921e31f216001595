"""``make demo``: the simulated PEDF building read by the gateway for one simulated day.

The simulator runs as its own process (the devices' side of the protocol), the gateway polls it
into the local journal (the embedded default, no server needed), a live line shows progress, and
the end compares the day's energy balance computed from the journal's counter samples with the
simulator's own totals.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from drivers.balance import BALANCE_TERMS
from gateway.config import InfluxV1Sink, Site, load_yaml, resolve_site
from gateway.demo._mqtt_demo import SubMeterPublisher, demo_mqtt_section, embedded_broker, mqtt_summary
from gateway.service import Gateway, GatewayStatus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_site(path: str | Path, journal: Path, mqtt_port: int | None = None) -> Site:
    """The demo site with every device moved to a free loopback port and a fresh journal; with no
    ``mqtt:`` section, MQTT sub-meters on the embedded broker at ``mqtt_port``."""
    doc = load_yaml(path)
    for device in doc.data.get("devices", []):
        device.setdefault("connection", {})["port"] = free_port()
    doc.data.setdefault("journal", {})["path"] = str(journal)
    if mqtt_port is not None and "mqtt" not in doc.data:
        doc.data["mqtt"] = demo_mqtt_section(mqtt_port, building=doc.data["buildings"][0]["name"])
    return resolve_site(doc)


async def start_simulator(
    site: Site, speed: float, seed: int, totals_path: Path, *, hold_s: float, simulated_s: float
) -> asyncio.subprocess.Process:
    """Simulated time holds at midnight for ``hold_s`` (the gateway connects meanwhile, so its first
    sample is the day's start) and stops after ``simulated_s`` (its last samples are the day's end)."""
    from gateway.demo._simulate import simulated_devices

    devices = [dataclasses.asdict(d) for d in simulated_devices(site)]
    spec = Path(tempfile.mkdtemp(prefix="pedf-demo-")) / "devices.json"
    spec.write_text(json.dumps(devices, default=str))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "drivers.simulator",
        "--devices",
        str(spec),
        "--speed",
        str(speed),
        "--seed",
        str(seed),
        "--totals",
        str(totals_path),
        "--hold",
        str(hold_s),
        "--duration",
        str(simulated_s),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
    if b"ready" not in line:
        proc.kill()
        raise RuntimeError(f"the simulator did not start: {line!r}")
    return proc


def _live_line(st: GatewayStatus) -> str:
    backlog = sum(s.backlog_rows for s in st.journal.sinks.values())
    return (
        f"devices {st.devices_up}/{st.devices_total} up | {st.samples_per_s:8.1f} samples/s | "
        f"{st.samples:7d} samples | journal {st.journal.rows} rows | sink backlog {backlog}"
    )


async def run_demo(
    path: str,
    *,
    simulated_s: float = 86400.0,
    speed: float = 1440.0,
    influx_url: str | None = None,
    seed: int = 1,
    hold_s: float = 2.0,
) -> int:
    var = Path("var")
    var.mkdir(exist_ok=True)
    journal_path = var / "demo-journal.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{journal_path}{suffix}").unlink(missing_ok=True)
    mqtt_port = free_port()
    site = demo_site(path, journal_path, mqtt_port)
    embedded = site.config.mqtt is not None and site.config.mqtt.brokers[0].port == mqtt_port
    totals_path = var / "demo-simulator-totals.json"
    totals_path.unlink(missing_ok=True)
    # the demo creates its database, as Telegraf does by default: nobody has prepared the server for it
    sinks = [InfluxV1Sink(type="influxdb_v1", url=influx_url, database="pedf", skip_database_creation=False)
             ] if influx_url else []
    duration_s = hold_s + simulated_s / speed + 2.0
    print(
        f"demo: {len(site.devices)} simulated devices of building {site.devices[0].building}, "
        f"{simulated_s / 3600:g} simulated hours at {speed:g}x in {duration_s:.0f} s, journal {journal_path}"
    )
    broker = contextlib.AsyncExitStack()
    if embedded:
        await broker.enter_async_context(embedded_broker(mqtt_port))
        print(f"demo: no MQTT broker configured: amqtt (MQTT 3.1.1) on 127.0.0.1:{mqtt_port}, 2 MQTT sub-meters")
    sim = await start_simulator(site, speed, seed, totals_path, hold_s=hold_s, simulated_s=simulated_s)
    gateway = Gateway(site, extra_sinks=sinks, api=False)
    stop = asyncio.Event()
    publisher_stop = asyncio.Event()
    publisher = SubMeterPublisher(mqtt_port, speed) if embedded else None
    tty = sys.stdout.isatty()
    try:
        async with asyncio.TaskGroup() as group:
            running = group.create_task(gateway.run(stop), name="gateway")
            await gateway.ready.wait()
            publishing = None
            if publisher is not None:
                await _mqtt_subscribed(gateway)  # the sub-meters' first message must find the subscription
                publishing = group.create_task(publisher.run(publisher_stop), name="mqtt sub-meters")
            start = time.monotonic()
            last_print = 0.0
            while (elapsed := time.monotonic() - start) < duration_s and not running.done():
                await asyncio.sleep(0.5)
                if tty or elapsed - last_print >= 10:
                    line = _live_line(gateway.status())
                    print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
                    last_print = elapsed
            if tty:
                print()
            publisher_stop.set()
            if publishing is not None and publisher is not None:
                await publishing
                await _mqtt_settled(gateway, publisher.published)
            stop.set()
    finally:
        publisher_stop.set()
        stop.set()
        if sim.returncode is None:
            sim.terminate()
            await sim.wait()
        await broker.aclose()
    if publisher is not None:
        print("\n" + "\n".join(await mqtt_summary(journal_path, publisher)))
    return await summarize(site, journal_path, totals_path, gateway, speed)


def _counter_increase(ts_ns: np.ndarray, counter_kwh: np.ndarray, wrap_kwh: float, speed: float) -> float:
    """A counter's increase over the run by analytics' interval energy (rollovers, resets, gaps).

    Timestamps are wall-clock while the building runs ``speed`` times faster, so the plausible
    power bound for telling a rollover from a reset is scaled by ``speed``."""
    from analytics import interval_energy

    result = interval_energy(
        ts_ns, counter_kwh, 1_000_000_000, wrap_kwh=wrap_kwh, p_max_kw=10_000.0 * speed if wrap_kwh else None
    )
    return float(np.nansum(result.energy_kwh) + np.nansum(result.gap_energy_kwh))


async def _mqtt_subscribed(gateway: Gateway, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            ingest = gateway.status().mqtt.ingest
            if ingest is not None and ingest.connection is not None and ingest.connection.subscribed:
                return
            await asyncio.sleep(0.02)


async def _mqtt_settled(gateway: Gateway, published: int, timeout_s: float = 5.0) -> None:
    """Wait until every message the sub-meters published is committed (or dead-lettered)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while True:
                ingest = gateway.status().mqtt.ingest
                if ingest is None or ingest.committed + ingest.dead_lettered >= published:
                    return
                await asyncio.sleep(0.05)


async def summarize(site: Site, journal_path: Path, totals_path: Path, gateway: Gateway, speed: float) -> int:
    from gateway.journal import Journal

    async with Journal(journal_path) as journal:
        print("\nstored samples per device:")
        counter_energy: dict[tuple[str, str], float] = {}  # (device, field) → increase [kWh]
        stored = 0
        for device in site.devices:
            sid = await journal.series_id(device.series_key(site.name))
            key = journal.series(sid)
            ts, values = await journal.series_values(sid)
            stored += len(ts)
            print(f"  {device.name:<20} {device.device_class:<20} {len(ts):6d} samples, {len(key.fields)} fields")
            for point in device.points:
                if point.counter and point.name in key.fields and len(ts) >= 2:
                    column = np.ascontiguousarray(values[:, key.fields.index(point.name)])
                    counter_energy[(device.name, point.name)] = _counter_increase(
                        ts, column, point.counter_wrap(device.section.pt_ratio, device.section.ct_ratio) or 0.0, speed
                    )
    totals = json.loads(totals_path.read_text()) if totals_path.exists() else {}
    print("\nenergy balance of the simulated period (kWh): journal counters via analytics | simulator's own totals")
    measured: dict[str, float] = {}
    for term in BALANCE_TERMS:
        value = 0.0
        for device in site.devices:
            if device.section.role == term.role:
                field = next((f for f in term.counter_fields if (device.name, f) in counter_energy), None)
                value += counter_energy[(device.name, field)] if field else 0.0
        measured[term.label] = value
        print(f"  {term.label:<18} {value:12.3f} | {totals.get(term.label, float('nan')):12.3f}")
    supply = measured["pv"] + measured["grid import"] + measured["battery discharge"]
    demand = measured["ac load"] + measured["dc load"] + measured["grid export"] + measured["battery charge"]
    print(
        f"  {'losses':<18} {supply - demand:12.3f} | {totals.get('losses', float('nan')):12.3f}"
        "   (losses = PV + import + discharge − load − export − charge)"
    )
    st = gateway.status()
    problems = [] if stored > 0 else ["no sample stored"]
    if st.commit_failures:
        problems.append(f"{st.commit_failures} commit failures")
    for name, sink in sorted(st.sinks.items()):
        if sink.sent_lines == 0:  # a sink the run delivered nothing to is a failed run, with its reason
            problems.append(f"sink {name} delivered nothing ({sink.last_error or 'no line was accepted'})")
        elif sink.backlog:
            print(f"sink {name}: {sink.sent_lines} lines delivered, {sink.backlog} rows left in the journal "
                  f"({sink.last_error or 'the final flush ran out of time'})")
        else:
            print(f"sink {name}: {sink.sent_lines} lines delivered")
    print(
        f"\n{stored} samples stored, {st.overruns} overruns, {st.commit_failures} commit failures — "
        f"{'OK' if not problems else 'FAILED: ' + '; '.join(problems)}"
    )
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(run_demo(os.environ.get("PEDF_DEMO_SITE", "examples/demo-site.yaml"))))
