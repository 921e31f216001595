"""MQTT ingest: subscribe, decode, append to the journal, acknowledge after the group commit.

A QoS 1 message is acknowledged to the broker (PUBACK) only when the journal future of its sample
has resolved, i.e. after the COMMIT of the group holding it (DESIGN.md, Guarantees); a message that
cannot be decoded is acknowledged after it is stored in the payload dead-letter table, so the
subscription never stalls on it.  Throughput is bounded by the in-flight window over the commit
latency: with Receive Maximum ``W`` and a group commit every ``T`` seconds, at most ``W / T`` QoS 1
messages per second (1000 / 0.02 s = 50,000/s by default; mosquitto's default window of 20 gives
~1,000/s), see docs/mqtt.md.

A message stamped with its arrival time (no timestamp in the payload) would become a second sample
if redelivered after a crash between commit and PUBACK.  Its (topic, payload) BLAKE2b digest and
first arrival time are committed with the sample (Journal.append ``arrival=``); a redelivery (DUP
flag, MQTT 5.0 §3.3.1.1) within the window reuses that time, so it overwrites the same point.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

import drivers.mqtt as dec
from drivers.mqtt import BrokerEndpoint, InboundMessage, MqttSource, SourceStats, TopicTemplate, parse_template
from gateway.config import MqttBroker, MqttSection, Site, Subscription
from gateway.errors import JournalError
from gateway.journal import Journal
from gateway.logs import warn_cleartext_passwords
from gateway.series import Sample, SeriesKey

log = logging.getLogger("pedf.mqtt")


@dataclass(frozen=True, slots=True)
class IngestStats:
    received: int
    qos0: int
    qos1: int
    samples: int
    committed: int
    acked: int
    dead_lettered: int
    ignored: int
    field_problems: int
    redelivered: int
    arrival_reused: int
    dropped_qos0: int
    commit_failures: int
    outstanding: int  # received, not yet acknowledged
    rejected_by_topic: dict[str, int]  # the 20 topics with most dead letters
    connection: SourceStats | None
_MAX_TOPICS = 100_000  # topic → route cache entries, and per-topic reject counters, before reset


@dataclass(frozen=True, slots=True)
class Route:
    index: int
    template: TopicTemplate
    decoder: dec.Decoder
    measurement: str
    fixed_tags: dict[str, str]


def endpoint(broker: MqttBroker) -> BrokerEndpoint:
    tls = broker.tls
    return BrokerEndpoint(broker.host, broker.effective_port, tls.ca_file if tls else None,
                          tls.cert_file if tls else None, tls.key_file if tls else None,
                          tls.server_hostname_check if tls else True, broker.username,
                          broker.password.get_secret_value() if broker.password else None)


def make_decoder(sub: Subscription, tz: Any) -> dec.Decoder:
    ts = dec.TimestampSpec(sub.timestamp.path, sub.timestamp.format) if sub.timestamp else None
    if sub.decoder == "json":
        mapping = [dec.FieldMapping(n, s.path, s.scale, s.offset, s.unit) for n, s in sub.field_specs().items()]
        return dec.json_decoder(mapping, ts, tz)
    if sub.decoder == "number":
        return dec.number_decoder(sub.field or "value", sub.scale)
    if sub.decoder == "tasmota":
        return dec.tasmota_decoder(tz)
    if sub.decoder == "shelly":
        return dec.shelly_decoder()
    return dec.kv_decoder(ts, tz)


def arrival_digest(topic: bytes, payload: bytes) -> bytes:
    return hashlib.blake2b(topic + b"\0" + payload, digest_size=16).digest()


class MqttIngest:
    """``await MqttIngest(section, journal, site_name, timezone).run()`` until cancelled."""

    def __init__(self, section: MqttSection, journal: Journal, site: str, timezone: str = "UTC", *,
                 name: str = "mqtt", max_outstanding: int = 100_000) -> None:
        self.section, self.journal, self.site, self.name = section, journal, site, name
        tz = zoneinfo.ZoneInfo(timezone)
        self.routes = [Route(i, parse_template(s.topic), make_decoder(s, tz), s.measurement,
                             {k: v for k, v in (("building", s.building), ("device", s.device), *s.tags.items())
                              if v is not None})
                       for i, s in enumerate(section.subscriptions)]
        self.source: MqttSource | None = None
        self.max_outstanding = max_outstanding
        self._topics: dict[bytes, tuple[Route, tuple[tuple[str, str], ...]] | None] = {}
        self._series: dict[tuple[str, tuple[tuple[str, str], ...], tuple[str, ...]], int] = {}
        self._outstanding = 0
        self.rejected_by_topic: dict[str, int] = {}
        self.counters = dict(received=0, qos0=0, qos1=0, samples=0, committed=0, acked=0, dead_lettered=0,
                             ignored=0, field_problems=0, redelivered=0, arrival_reused=0, dropped_qos0=0,
                             commit_failures=0)

    def make_source(self) -> MqttSource:
        s = self.section
        return MqttSource([endpoint(b) for b in s.brokers], s.client_id,
                          [(r.template.filter, s.subscriptions[r.index].qos) for r in self.routes],
                          mqtt5=s.protocol == "5", session_expiry_s=s.session_expiry_s,
                          receive_maximum=s.receive_maximum, keepalive_s=s.keepalive_s,
                          reconnect_min_s=s.reconnect_min_s, reconnect_max_s=s.reconnect_max_s, logger=log)

    async def run(self) -> None:
        self.journal.arrival_window_ns = int(self.section.dedup_window_s * 1e9)
        warn_cleartext_passwords(log, "MQTT ingest", self.section.brokers)
        async with self.make_source() as source:
            self.source = source
            async for batch in source:
                try:
                    await self.handle(batch, source.ack)
                except JournalError as exc:  # nothing acknowledged: reconnect so the broker redelivers
                    log.error("MQTT ingest: journal failed, reconnecting for redelivery: %s", exc)
                    source.drop(f"journal failed: {exc}")
                    await asyncio.sleep(1.0)

    # -- one batch -----------------------------------------------------------------------------
    async def handle(self, batch: list[InboundMessage], ack: Callable[[InboundMessage], bool]) -> None:
        """Decode and append every message; dead letters are stored (then acked) before returning.

        Acknowledgements hang on the last future of each run of appends made without an await in
        between: such a run joins one commit group (Journal._flush takes all that is pending), so
        that future resolving means the whole run is committed."""
        dead: list[tuple[InboundMessage, str, str]] = []
        c = self.counters
        c["received"] += len(batch)
        run: list[InboundMessage] = []
        last: asyncio.Future[int] | None = None
        for msg in batch:
            if msg.qos:
                c["qos1"] += 1
                if msg.dup:
                    c["redelivered"] += 1
            else:
                c["qos0"] += 1
                if self._outstanding + len(run) >= self.max_outstanding:
                    c["dropped_qos0"] += 1  # bounded memory: QoS 0 may be dropped, and is counted
                    continue
            try:
                found = self._decode(msg, ack)
                if found is None:
                    continue
                if isinstance(found, str):
                    dead.append((msg, msg.topic.decode("utf-8", "backslashreplace"), found))
                    continue
                route, tags, decoded = found
                key = (route.measurement, tags, decoded.fields)
                sid = self._series.get(key)
                ts = decoded.ts_ns
                if sid is None or (ts is None and msg.dup):  # an await: close the run first
                    self._hang_acks(run, last, ack)
                    run, last = [], None
                if sid is None:
                    sid = await self.journal.series_id(SeriesKey(route.measurement, tags, decoded.fields,
                                                                 ("float",) * len(decoded.fields)))
                    self._series[key] = sid
                arrival = None
                if ts is None:
                    digest = arrival_digest(msg.topic, msg.payload)
                    ts = msg.arrival_ns
                    if msg.dup:
                        first = await self.journal.first_arrival(digest)
                        if first is not None:
                            ts = first
                            c["arrival_reused"] += 1
                    arrival = (digest, ts)
                last = self.journal.append(Sample(sid, ts, np.array(decoded.values, dtype=np.float64)), arrival)
                run.append(msg)
            except JournalError:
                raise
            except Exception as exc:  # backstop: a decoder bug dead-letters the message, never stalls the rest
                dead.append((msg, msg.topic.decode("utf-8", "backslashreplace"),
                             f"internal error: {type(exc).__name__}: {exc}"[:500]))
        self._hang_acks(run, last, ack)
        if dead:
            await self._dead_letter(dead, ack)

    def _hang_acks(self, run: list[InboundMessage], last: asyncio.Future[int] | None,
                   ack: Callable[[InboundMessage], bool]) -> None:
        if last is not None and run:
            self._outstanding += len(run)
            self.counters["samples"] += len(run)
            last.add_done_callback(partial(self._committed, run, ack))

    def _decode(self, msg: InboundMessage, ack: Callable[[InboundMessage], bool]
                ) -> tuple[Route, tuple[tuple[str, str], ...], dec.Decoded] | str | None:
        """(route, tags, decoded), or why ``msg`` is rejected, or None when ignored (and acked)."""
        found = self._topics.get(msg.topic, False)
        if found is False:
            found = self._route(msg.topic)
        if found is None:
            return "topic is not UTF-8" if not _utf8(msg.topic) else "no subscription matches the topic"
        route, tags = found
        try:
            decoded = route.decoder(msg.payload)
        except dec.Ignored:
            self.counters["ignored"] += 1
            if ack(msg) and msg.qos:
                self.counters["acked"] += 1
            return None
        except dec.DecodeError as exc:
            return str(exc)[:500]
        if decoded.problems:
            self.counters["field_problems"] += len(decoded.problems)
        if decoded.device is not None and not any(k == "device" for k, _ in tags):
            tags = tuple(sorted((*tags, ("device", decoded.device))))
        if not any(k == "device" for k, _ in tags):
            return "no device name: neither the subscription, the topic nor the payload gives one"
        return route, tags, decoded

    def _route(self, topic: bytes) -> tuple[Route, tuple[tuple[str, str], ...]] | None:
        if len(self._topics) >= _MAX_TOPICS:
            self._topics.clear()
        found = None
        if _utf8(topic):
            text = topic.decode("utf-8")
            for route in self.routes:
                tags = route.template.match(text)
                if tags is not None:
                    merged = {"site": self.site, **tags, **route.fixed_tags}
                    found = (route, tuple(sorted(merged.items())))
                    break
        self._topics[topic] = found
        return found

    def _committed(self, run: list[InboundMessage], ack: Callable[[InboundMessage], bool], fut: Any) -> None:
        self._outstanding -= len(run)
        if fut.cancelled() or fut.exception() is not None:
            self.counters["commit_failures"] += len(run)
            if self.source is not None:  # not acked; a new connection makes the broker redeliver them
                self.source.drop("journal commit failed")
            return
        self.counters["committed"] += len(run)
        acked = 0
        for msg in run:
            if ack(msg) and msg.qos:
                acked += 1
        self.counters["acked"] += acked

    async def _dead_letter(self, dead: list[tuple[InboundMessage, str, str]],
                           ack: Callable[[InboundMessage], bool]) -> None:
        now = time.time_ns()
        await self.journal.dead_letter_payloads(self.name, [(now, t, m.payload[:65536], r) for m, t, r in dead])
        for msg, topic, reason in dead:
            self.counters["dead_lettered"] += 1
            if len(self.rejected_by_topic) < _MAX_TOPICS or topic in self.rejected_by_topic:
                self.rejected_by_topic[topic] = self.rejected_by_topic.get(topic, 0) + 1
            if ack(msg) and msg.qos:
                self.counters["acked"] += 1
            if self.counters["dead_lettered"] <= 10 or self.counters["dead_lettered"] % 1000 == 0:
                log.warning("MQTT payload rejected: %s", reason, extra={"fields": {"topic": topic}})

    # -- observing -----------------------------------------------------------------------------
    def stats(self) -> IngestStats:
        top = sorted(self.rejected_by_topic.items(), key=lambda kv: -kv[1])[:20]
        connection = None if self.source is None else dataclasses.replace(self.source.stats)
        return IngestStats(**self.counters, outstanding=self._outstanding, rejected_by_topic=dict(top),
                           connection=connection)


def _utf8(topic: bytes) -> bool:
    try:
        topic.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def mqtt_ingest(site: Site, journal: Journal) -> MqttIngest | None:
    """The site's MQTT ingest, if its ``mqtt:`` section subscribes to anything."""
    section = site.config.mqtt
    if section is None or not section.subscriptions:
        return None
    return MqttIngest(section, journal, site.name, site.config.site.timezone)
