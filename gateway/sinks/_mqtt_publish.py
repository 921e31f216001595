"""MQTT re-publish sink: the latest normalized values per device (retained), the gateway's status
with a last will, and optional Home Assistant MQTT discovery for every point.

It reads the journal like any sink (its own cursor), so Modbus and MQTT readings are published alike
and a broker outage only delays the latest values.  ``{prefix}/{site}/{building}/{device}/state``
carries one JSON object with every field's latest value and ``ts`` (ISO 8601 UTC);
``{prefix}/{site}/gateway/status`` is ``online``, and the broker publishes the retained last will
``offline`` when the gateway dies (MQTT 5.0 §3.1.2.5, Will Flag).  Discovery configs follow Home
Assistant's scheme ``<discovery_prefix>/sensor/<node_id>/<object_id>/config``
(https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery); device and state classes from
https://developers.home-assistant.io/docs/core/entity/sensor/.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
from datetime import UTC, datetime
from typing import Any

import aiomqtt

from gateway.config import MqttBroker, MqttPublish
from gateway.journal import Journal

log = logging.getLogger("pedf.mqtt.publish")

#: field-name unit suffix → (unit, HA device_class, HA state_class)
UNITS: dict[str, tuple[str | None, str | None, str]] = {
    "kw": ("kW", "power", "measurement"), "kwh": ("kWh", "energy", "total_increasing"),
    "kva": ("kVA", "apparent_power", "measurement"), "kvar": ("kvar", "reactive_power", "measurement"),
    "v": ("V", "voltage", "measurement"), "a": ("A", "current", "measurement"),
    "hz": ("Hz", "frequency", "measurement"), "c": ("°C", "temperature", "measurement"),
    "pct": ("%", None, "measurement"), "pf": (None, "power_factor", "measurement"),
}


def ha_sensor(field: str) -> dict[str, str]:
    """unit_of_measurement / device_class / state_class from the unit carried by the field's name."""
    suffix = field.rsplit("_", 1)[-1]
    unit, device_class, state_class = UNITS.get(suffix, (None, None, "measurement"))
    if field.startswith("soc") and suffix == "pct":
        device_class = "battery"
    out = {"state_class": state_class}
    if unit:
        out["unit_of_measurement"] = unit
    if device_class:
        out["device_class"] = device_class
    return out


class MqttSink:
    def __init__(self, publish: MqttPublish, broker: MqttBroker, client_id: str, journal: Journal, site: str,
                 *, name: str = "mqtt_publish", mqtt5: bool = True, reconnect_max_s: float = 30.0) -> None:
        self.cfg, self.broker, self.client_id, self.journal, self.site = publish, broker, client_id, journal, site
        self.name, self.mqtt5, self.reconnect_max_s = name, mqtt5, reconnect_max_s
        self.status_topic = f"{publish.topic_prefix}/{site}/gateway/status"
        self._latest: dict[tuple[str, str], dict[str, Any]] = {}  # (building, device) → fields + ts
        self._discovered: set[tuple[str, str, str]] = set()
        self._models: dict[tuple[str, str], str] = {}  # (building, device) → measurement, the HA "model"
        self.counters = dict(published=0, discovery=0, rows=0, connects=0, failures=0)
        self.last_error = ""

    def state_topic(self, building: str, device: str) -> str:
        return f"{self.cfg.topic_prefix}/{self.site}/{building}/{device}/state"

    def _client(self) -> aiomqtt.Client:
        b = self.broker
        tls = None
        if b.tls is not None:
            tls = aiomqtt.TLSParameters(ca_certs=b.tls.ca_file, certfile=b.tls.cert_file, keyfile=b.tls.key_file,
                                        cert_reqs=ssl.CERT_REQUIRED)
        return aiomqtt.Client(
            b.host, b.effective_port, identifier=self.client_id, username=b.username,
            password=b.password.get_secret_value() if b.password else None, tls_params=tls,
            protocol=aiomqtt.ProtocolVersion.V5 if self.mqtt5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(self.status_topic, "offline", qos=1, retain=True))

    async def run(self) -> None:
        self.journal.register_sink(self.name)
        backoff = 0.5
        while True:
            try:
                async with self._client() as client:
                    self.counters["connects"] += 1
                    backoff = 0.5
                    await client.publish(self.status_topic, "online", qos=1, retain=True)
                    self._discovered.clear()  # the broker may have lost retained configs
                    try:
                        await self._publish_loop(client)
                    finally:
                        with contextlib.suppress(aiomqtt.MqttError, asyncio.CancelledError):
                            async with asyncio.timeout(2):
                                await asyncio.shield(client.publish(self.status_topic, "offline", qos=1,
                                                                    retain=True))
            except aiomqtt.MqttError as exc:
                self.counters["failures"] += 1
                self.last_error = f"MQTT broker {self.broker.label}: {exc}"
                log.error("MQTT publish sink: %s; retrying in %.1f s", self.last_error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.reconnect_max_s)

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        while True:
            await self.journal.wait_for_data(self.journal.cursor(self.name), timeout=self.cfg.interval_s)
            rows = await self.journal.read(self.name, limit=20_000)
            if not rows:
                continue
            changed = self._fold(rows)
            for building, device in changed:
                if self.cfg.homeassistant_discovery:
                    await self._discover(client, building, device)
                await client.publish(self.state_topic(building, device), json.dumps(self._latest[(building, device)]),
                                     qos=self.cfg.qos, retain=True)
                self.counters["published"] += 1
            await self.journal.ack(self.name, rows[-1].seq)
            self.counters["rows"] += len(rows)
            await asyncio.sleep(self.cfg.interval_s)

    def _fold(self, rows: list[Any]) -> set[tuple[str, str]]:
        changed: set[tuple[str, str]] = set()
        for row in rows:
            key = self.journal.series(row.series_id)
            tags = dict(key.tags)
            target = (tags.get("building", "-"), tags.get("device", key.measurement))
            state = self._latest.setdefault(target, {})
            for field, value in zip(key.fields, row.values.tolist(), strict=True):
                if not math.isnan(value):
                    state[field] = value
            if row.texts:
                for field, text in zip(key.fields, row.texts, strict=True):
                    if text is not None:
                        state[field] = text
            if row.ts_ns >= state.get("ts_ns", 0):
                state["ts_ns"] = row.ts_ns
                state["ts"] = datetime.fromtimestamp(row.ts_ns / 1e9, UTC).isoformat()
            self._models.setdefault(target, key.measurement)
            changed.add(target)
        return changed

    async def _discover(self, client: aiomqtt.Client, building: str, device: str) -> None:
        state = self._latest[(building, device)]
        node = f"{self.site}_{building}_{device}".replace("/", "_")
        for field in state:
            if field in ("ts", "ts_ns") or (building, device, field) in self._discovered:
                continue
            config = {"name": field, "unique_id": f"{node}_{field}", "object_id": f"{node}_{field}",
                      "state_topic": self.state_topic(building, device),
                      "value_template": f"{{{{ value_json.{field} }}}}",
                      "availability_topic": self.status_topic, "payload_available": "online",
                      "payload_not_available": "offline",
                      "device": {"identifiers": [node], "name": f"{building} {device}", "manufacturer": "pedf-gateway",
                                 "model": self._models.get((building, device), "")},
                      **ha_sensor(field)}
            await client.publish(f"{self.cfg.discovery_prefix}/sensor/{node}/{field}/config", json.dumps(config),
                                 qos=1, retain=True)
            self._discovered.add((building, device, field))
            self.counters["discovery"] += 1

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "last_error": self.last_error, "devices": len(self._latest)}
