"""The MQTT half of ``make demo``: an in-process broker and simulated MQTT sub-meters.

With no broker configured the demo runs amqtt (MQTT 3.1.1 only, DESIGN.md Known traps) on a
loopback port, two sub-meters of the demo building publish to it in the formats most found on
site — a Tasmota plug (``tele/<device>/SENSOR``, ENERGY in W and kWh) and a Shelly Gen2 switch
(``NotifyStatus`` on ``shellies/<device>/events/rpc``, W and Wh) — and the gateway subscribes to
both through the ``mqtt:`` section :func:`demo_mqtt_section` returns, next to its Modbus devices.

Loads follow simulated time (``speed`` simulated seconds per real second, day starting at the
site's midnight): lighting follows office hours, the IT rack is a flat base load with a small
ripple.  Energy counters integrate the power, so the journal's counter increase over the run can
be checked against :meth:`SubMeterPublisher.totals`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np


@contextlib.asynccontextmanager
async def embedded_broker(port: int, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """amqtt on ``host:port`` for the lifetime of the block; yields ``mqtt://host:port``."""
    from amqtt.broker import Broker

    broker = Broker({"listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
                     "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}})
    await broker.start()
    try:
        yield f"mqtt://{host}:{port}"
    finally:
        await broker.shutdown()


def demo_mqtt_section(port: int, building: str = "office_a") -> dict[str, Any]:
    """The ``mqtt:`` section the demo site gets when it names no broker (plain data, as in YAML)."""
    return {
        "brokers": [{"host": "127.0.0.1", "port": port}],
        "client_id": "pedf-demo",
        "protocol": "3.1.1",
        "reconnect_min_s": 0.2,
        "reconnect_max_s": 2.0,
        "subscriptions": [
            {"topic": "tele/{device}/SENSOR", "decoder": "tasmota", "measurement": "sub_meter", "building": building},
            {"topic": "shellies/{device}/events/rpc", "decoder": "shelly", "measurement": "sub_meter",
             "building": building},
        ],
    }


def lighting_kw(hour: float) -> float:
    """Office lighting: 6 kW from 08:00 to 19:00 with 30-minute ramps, 0.4 kW otherwise."""
    up = min(max((hour - 7.5) / 0.5, 0.0), 1.0)
    down = min(max((19.5 - hour) / 0.5, 0.0), 1.0)
    return 0.4 + 5.6 * min(up, down)


def it_rack_kw(hour: float) -> float:
    """IT rack: 3.2 kW base with a ±0.3 kW daily ripple (cooling follows the outside temperature)."""
    return 3.2 + 0.3 * math.sin(2 * math.pi * (hour - 9.0) / 24.0)


class SubMeterPublisher:
    """Publishes the two sub-meters every ``period_s`` real seconds; ``await run(stop)``."""

    def __init__(self, port: int, speed: float, *, period_s: float = 0.2, start_hour: float = 0.0) -> None:
        self.port, self.speed, self.period_s, self.start_hour = port, speed, period_s, start_hour
        self.energy_kwh = {"lighting": 0.0, "it_rack": 0.0}
        self.published = 0

    def totals(self) -> dict[str, float]:
        return dict(self.energy_kwh)

    async def run(self, stop: asyncio.Event) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier="demo-submeters",
                                  protocol=aiomqtt.ProtocolVersion.V311) as client:
            start = last = time.monotonic()
            while not stop.is_set():
                now = time.monotonic()
                hour = (self.start_hour + (now - start) * self.speed / 3600.0) % 24.0
                dt_h = (now - last) * self.speed / 3600.0
                last = now
                lighting, rack = lighting_kw(hour), it_rack_kw(hour)
                self.energy_kwh["lighting"] += lighting * dt_h
                self.energy_kwh["it_rack"] += rack * dt_h
                await client.publish("tele/lighting_meter/SENSOR", json.dumps(self.tasmota(lighting)), qos=1)
                await client.publish("shellies/it_rack/events/rpc", json.dumps(self.shelly(rack)), qos=1)
                self.published += 2
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.period_s):
                        await stop.wait()

    def tasmota(self, p_kw: float) -> dict[str, Any]:
        # no "Time": stamped on arrival, like the Modbus polls of the demo (wall clock)
        return {"ENERGY": {"TotalStartTime": datetime.now().strftime("%Y-%m-%dT%H:%M:%S"),
                           "Total": round(self.energy_kwh["lighting"], 5), "Power": round(p_kw * 1000.0, 1),
                           "Voltage": 230, "Current": round(p_kw * 1000.0 / 230.0, 3), "Factor": 0.98}}

    def shelly(self, p_kw: float) -> dict[str, Any]:
        return {"src": "shellypro1pm-itrack", "dst": "shellies/it_rack/events", "method": "NotifyStatus",
                "params": {"ts": round(time.time(), 3),
                           "switch:0": {"id": 0, "apower": round(p_kw * 1000.0, 1), "voltage": 229.5,
                                        "aenergy": {"total": round(self.energy_kwh["it_rack"] * 1000.0, 3)}}}}


async def mqtt_summary(journal_path: str | Path, publisher: SubMeterPublisher) -> list[str]:
    """Lines for the demo's end: MQTT samples per sub-meter and the energy counter's increase in the
    journal beside what the publisher integrated."""
    from gateway.journal import Journal

    expected = {"lighting_meter": ("e_import_kwh", publisher.totals()["lighting"]),
                "it_rack": ("switch0_e_import_kwh", publisher.totals()["it_rack"])}
    lines = ["MQTT sub-meters (samples, kWh from the journal's counter | published):"]
    async with Journal(journal_path) as journal:
        for arrays in await journal.query():
            key = journal.series(arrays.series_id)
            device = key.tag("device") or "?"
            if key.measurement != "sub_meter" or device not in expected:
                continue
            field, published = expected[device]
            column = arrays.values[:, key.fields.index(field)] if field in key.fields else arrays.values[:, :0]
            seen = column[~np.isnan(column)] if column.size else column
            increase = float(seen[-1] - seen[0]) if seen.size >= 2 else float("nan")
            lines.append(f"  {device:<20} {len(arrays.ts_ns):6d} samples {increase:12.3f} | {published:12.3f}")
    return lines
