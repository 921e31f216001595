"""MQTT re-publish sink: the latest normalized values per device (retained), the gateway's status
with a last will, and optional Home Assistant MQTT discovery for every point.

It is fed by the same delivery loop as the databases (:mod:`gateway.sinks._delivery`: its own
cursor, batching, retries with backoff, final flush), so Modbus and MQTT readings are published
alike and a broker outage only delays the latest values.  A batch folds its rows into the latest
value per device and publishes each changed device once; a connection that fails raises
``SinkUnavailable`` and is opened again on the next attempt.  ``{prefix}/{site}/{building}/{device}/state``
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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

import aiomqtt

from drivers.backoff import Backoff
from drivers.tls import client_context
from gateway.config import MqttBroker, MqttPublish, Site
from gateway.errors import SinkUnavailable
from gateway.journal import Journal, JournalRow
from gateway.logs import warn_cleartext_passwords
from gateway.sinks._delivery import Delivery

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


@dataclass(frozen=True, slots=True)
class PublisherStats:
    """What the MQTT publisher published, and where its delivery stands."""

    published: int  # state messages
    discovery: int  # Home Assistant discovery configs
    connects: int
    failures: int  # connections lost or refused
    devices: int  # devices with a retained state
    last_error: str
    batches: int
    retries: int
    backlog: int
    cursor: int


class MqttPublisher:
    """The rows → retained state messages writer that the delivery loop feeds."""

    def __init__(self, publish: MqttPublish, broker: MqttBroker, client_id: str, site: str, *,
                 name: str = "mqtt_publish", mqtt5: bool = True) -> None:
        self.cfg, self.broker, self.client_id, self.site = publish, broker, client_id, site
        self.name, self.mqtt5 = name, mqtt5
        self.status_topic = f"{publish.topic_prefix}/{site}/gateway/status"
        self._latest: dict[tuple[str, str], dict[str, float | int | str]] = {}  # (building, device) → fields + ts
        self._discovered: set[tuple[str, str, str]] = set()
        self._models: dict[tuple[str, str], str] = {}  # (building, device) → measurement, the HA "model"
        self._series: dict[int, tuple[tuple[str, str], str, tuple[str, ...]]] = {}
        self._series_of: Journal | None = None
        self._client: aiomqtt.Client | None = None
        self._connection: contextlib.AsyncExitStack | None = None
        self._connecting = asyncio.Lock()
        self.published = self.discovery = self.connects = self.failures = 0
        self.last_error = ""

    def bind(self, journal: Journal) -> None:
        """The journal whose series keys name the rows' devices."""
        self._series_of = journal

    @property
    def devices(self) -> int:
        """Devices with a retained state."""
        return len(self._latest)

    def state_topic(self, building: str, device: str) -> str:
        return f"{self.cfg.topic_prefix}/{self.site}/{building}/{device}/state"

    def _make_client(self) -> aiomqtt.Client:
        b = self.broker
        tls = None
        if b.tls is not None:
            tls = client_context(b.tls.ca_file, b.tls.cert_file, b.tls.key_file,
                                 check_hostname=b.tls.server_hostname_check)
        return aiomqtt.Client(
            b.host, b.effective_port, identifier=self.client_id, username=b.username,
            password=b.password.get_secret_value() if b.password else None, tls_context=tls,
            protocol=aiomqtt.ProtocolVersion.V5 if self.mqtt5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(self.status_topic, "offline", qos=1, retain=True))

    async def connected(self) -> aiomqtt.Client:
        async with self._connecting:  # the presence task and a batch may both find no connection
            if self._client is not None:
                return self._client
            return await self._connect()

    async def _connect(self) -> aiomqtt.Client:
        stack = contextlib.AsyncExitStack()
        try:
            client = await stack.enter_async_context(self._make_client())
            await client.publish(self.status_topic, "online", qos=1, retain=True)
        except aiomqtt.MqttError as exc:
            await self._lost(stack, exc)
        self.connects += 1
        self._discovered.clear()  # the broker may have lost retained configs
        self._client, self._connection = client, stack
        return client

    async def _lost(self, stack: contextlib.AsyncExitStack | None, exc: aiomqtt.MqttError) -> NoReturn:
        self._client, self._connection = None, None
        if stack is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await stack.aclose()
        self.failures += 1
        self.last_error = f"MQTT broker {self.broker.label}: {exc}"
        raise SinkUnavailable(self.last_error) from None

    async def write_rows(self, rows: Sequence[JournalRow]) -> int:
        client = await self.connected()
        changed = self._fold(rows)
        sent = 0
        try:
            for building, device in changed:
                if self.cfg.homeassistant_discovery:
                    await self._discover(client, building, device)
                await client.publish(self.state_topic(building, device), json.dumps(self._latest[(building, device)]),
                                     qos=self.cfg.qos, retain=True)
                self.published += 1
                sent += 1
        except aiomqtt.MqttError as exc:
            await self._lost(self._connection, exc)
        return sent

    def dead_letter_text(self, row: JournalRow) -> str:  # a broker refuses no row: never called
        return f"series {row.series_id} at {row.ts_ns}"

    async def close(self) -> None:
        """Say ``offline`` (retained) and disconnect; the last will covers a gateway that dies instead."""
        client, stack = self._client, self._connection
        self._client = self._connection = None
        if client is None or stack is None:
            return
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(2):
                await client.publish(self.status_topic, "offline", qos=1, retain=True)
        with contextlib.suppress(aiomqtt.MqttError):
            await stack.aclose()

    def _key(self, series_id: int) -> tuple[tuple[str, str], str, tuple[str, ...]]:
        cached = self._series.get(series_id)
        if cached is None:
            assert self._series_of is not None, "bind() the journal first"
            key = self._series_of.series(series_id)
            tags = dict(key.tags)
            target = (tags.get("building", "-"), tags.get("device", key.measurement))
            cached = self._series[series_id] = (target, key.measurement, key.fields)
        return cached

    def _fold(self, rows: Sequence[JournalRow]) -> list[tuple[str, str]]:
        changed: dict[tuple[str, str], None] = {}
        for row in rows:
            target, measurement, fields = self._key(row.series_id)
            state = self._latest.setdefault(target, {})
            for field, value in zip(fields, row.values.tolist(), strict=True):
                if not math.isnan(value):
                    state[field] = value
            if row.texts:
                for field, text, value in zip(fields, row.texts, row.values.tolist(), strict=True):
                    if text is not None:
                        state[field] = _exact_or_text(text, value)
            if row.ts_ns >= int(state.get("ts_ns", 0)):
                state["ts_ns"] = row.ts_ns
                state["ts"] = datetime.fromtimestamp(row.ts_ns / 1e9, UTC).isoformat()
            self._models.setdefault(target, measurement)
            changed[target] = None
        return list(changed)

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
            self.discovery += 1


class MqttSink:
    """The MQTT publisher on the delivery loop: ``await MqttSink(...).run()`` until cancelled."""

    def __init__(self, publish: MqttPublish, broker: MqttBroker, client_id: str, journal: Journal, site: str,
                 *, name: str = "mqtt_publish", mqtt5: bool = True, reconnect_max_s: float = 30.0) -> None:
        self.name = name
        self.publisher = MqttPublisher(publish, broker, client_id, site, name=name, mqtt5=mqtt5)
        self.publisher.bind(journal)
        # one publish per device per interval at most: a batch waits interval_s for more rows
        self.delivery = Delivery(name, journal, self.publisher, batch_lines=20_000, max_age_s=publish.interval_s,
                                 backoff_initial_s=0.5, backoff_max_s=max(0.5, reconnect_max_s))

    async def run(self) -> None:
        warn_cleartext_passwords(log, "MQTT publish", [self.publisher.broker])
        async with asyncio.TaskGroup() as group:
            group.create_task(self._stay_connected(), name=f"{self.name} presence")
            group.create_task(self.delivery.run(), name=f"{self.name} delivery")

    async def _stay_connected(self) -> None:
        """Be connected (and so ``online``) even while no rows arrive; a lost connection found by a
        publish is opened again here within a second, or with backoff while the broker is away."""
        backoff = Backoff(0.5, self.delivery.backoff_max_s)
        while True:
            try:
                await self.publisher.connected()
            except SinkUnavailable as exc:
                delay = backoff.next_delay()
                log.warning("MQTT publish: %s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            await asyncio.sleep(1.0)

    def stats(self) -> PublisherStats:
        p, d = self.publisher, self.delivery.stats()
        return PublisherStats(p.published, p.discovery, p.connects, p.failures, p.devices, p.last_error,
                              d.batches, d.retries, d.backlog, d.cursor)


def mqtt_publisher(site: Site, journal: Journal) -> MqttSink | None:
    """The site's MQTT re-publish sink, if its ``mqtt:`` section enables one."""
    section = site.config.mqtt
    pub = None if section is None else section.publish
    if section is None or pub is None or not pub.enabled or not (pub.broker or section.brokers):
        return None
    return MqttSink(pub, pub.broker or section.brokers[0], pub.client_id or f"{section.client_id}-pub", journal,
                    site.name, mqtt5=section.protocol == "5", reconnect_max_s=section.reconnect_max_s)


def _exact_or_text(text: str, value: float) -> int | str:
    """A 64-bit integer beyond 2^53 travels as its exact decimal beside a finite float64 (see
    ``drivers/modbus/_codec.py``): publish it as a JSON number, not a string; a string field stays one."""
    if not math.isnan(value) and text.lstrip("-").isdigit():
        return int(text)
    return text
