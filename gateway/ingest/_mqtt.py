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

Bounded under hostile traffic: whoever can publish to the broker must not be able to grow the
gateway's memory or journal without limit, nor push genuine readings out of it.  A payload over
``max_payload_bytes`` is refused before decoding (the MQTT 5 connection also asks the broker for
packets no larger than that plus room for the topic); a source creates at most ``max_series`` series
(a message that would create one more is dead-lettered, series the journal already has are always
accepted); dead letters are stored truncated to ``dead_letters.keep_bytes`` within a count and byte
budget (gateway/journal/_dead_letters.py); the caches of topics and per-topic counters are capped.
Every refusal is counted in :class:`IngestStats`.
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
    oversize: int  # refused before decoding: payload over max_payload_bytes
    series_refused: int  # would have created a series beyond max_series
    truncated: int  # dead letters stored shortened to keep_bytes
    dead_letters_dropped: int  # this source's oldest dead letters dropped by its budget
    series: int  # series this source writes to
    outstanding: int  # received, not yet acknowledged
    dead_letters_kept: int  # payload dead letters in the journal (all sources)
    dead_letter_bytes: int
    dead_letters_dropped_total: int  # by budgets and by the journal's size cap (all sources)
    rejected_by_topic: dict[str, int]  # the 20 topics with most dead letters
    connection: SourceStats | None


_MAX_REJECT_TOPICS = 1000  # distinct topics counted in rejected_by_topic; the rest under OTHER_TOPICS
OTHER_TOPICS = "(other topics)"
_MAX_TOPIC_CHARS = 256  # of a topic kept in a dead letter or a counter
_MAX_TAG_CHARS = 256  # of a tag value taken from a topic level or a payload (a device name)
_MAX_KEY_CHARS = 4096  # of a new series' tags and field names together
_MAX_CACHED_TOPIC = 512  # longer topics are matched each time, not kept in the route cache


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
        self._max_topics = max(1024, 2 * section.max_series)  # route cache entries before a reset
        self.max_series, self.max_payload_bytes = section.max_series, section.max_payload_bytes
        self.dead_letter_budget = section.dead_letters
        self._series: dict[tuple[str, tuple[tuple[str, str], ...], tuple[str, ...]], int] = {}
        self._outstanding = 0
        self.rejected_by_topic: dict[str, int] = {}
        self.counters = dict(received=0, qos0=0, qos1=0, samples=0, committed=0, acked=0, dead_lettered=0,
                             ignored=0, field_problems=0, redelivered=0, arrival_reused=0, dropped_qos0=0,
                             commit_failures=0, oversize=0, series_refused=0, truncated=0, dead_letters_dropped=0)

    def make_source(self) -> MqttSource:
        s = self.section
        return MqttSource([endpoint(b) for b in s.brokers], s.client_id,
                          [(r.template.filter, s.subscriptions[r.index].qos) for r in self.routes],
                          mqtt5=s.protocol == "5", session_expiry_s=s.session_expiry_s,
                          receive_maximum=s.receive_maximum, keepalive_s=s.keepalive_s,
                          reconnect_min_s=s.reconnect_min_s, reconnect_max_s=s.reconnect_max_s,
                          max_packet_bytes=s.max_payload_bytes + 65536,  # room for a topic (≤ 65,535 bytes)
                          logger=log)

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
            if len(msg.payload) > self.max_payload_bytes:  # before decoding: never parse a huge payload
                c["oversize"] += 1
                dead.append((msg, _topic_text(msg.topic), f"payload of {len(msg.payload)} bytes exceeds "
                             f"max_payload_bytes ({self.max_payload_bytes})"))
                continue
            try:
                found = self._decode(msg, ack)
                if found is None:
                    continue
                if isinstance(found, str):
                    dead.append((msg, _topic_text(msg.topic), found))
                    continue
                route, tags, decoded = found
                key = (route.measurement, tags, decoded.fields)
                sid = self._series.get(key)
                ts = decoded.ts_ns
                if sid is None:
                    series_key = SeriesKey(route.measurement, tags, decoded.fields, ("float",) * len(decoded.fields))
                    sid = self.journal.known_series(series_key)
                    if sid is None:
                        refused = self._refuse_series(series_key)
                        if refused is not None:
                            dead.append((msg, _topic_text(msg.topic), refused))
                            continue
                        self._hang_acks(run, last, ack)  # an await: close the run first
                        run, last = [], None
                        sid = await self.journal.series_id(series_key)
                    self._series[key] = sid
                if ts is None and msg.dup:  # an await: close the run first
                    self._hang_acks(run, last, ack)
                    run, last = [], None
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
                run.append(msg._replace(payload=b""))  # held until the commit: only what the ack needs
            except JournalError:
                raise
            except Exception as exc:  # backstop: a decoder bug dead-letters the message, never stalls the rest
                dead.append((msg, _topic_text(msg.topic),
                             f"internal error: {type(exc).__name__}: {exc}"[:500]))
        self._hang_acks(run, last, ack)
        if dead:
            await self._dead_letter(dead, ack)

    def _refuse_series(self, key: SeriesKey) -> str | None:
        """Why a new series may not be created (counted), or None if it may."""
        size = sum(len(k) + len(v) for k, v in key.tags) + sum(len(f) for f in key.fields)
        if size > _MAX_KEY_CHARS:
            reason = f"series key of {size} characters (tags and field names; at most {_MAX_KEY_CHARS})"
        elif len(self._series) >= self.max_series:
            reason = f"series cap reached: this source may create {self.max_series} series (mqtt.max_series)"
        else:
            return None
        self.counters["series_refused"] += 1
        if self.counters["series_refused"] == 1:
            log.warning("MQTT source %s refuses new series: %s; such messages are dead-lettered", self.name, reason)
        return reason

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
        for k, v in tags:
            if len(v) > _MAX_TAG_CHARS:
                return f"tag {k}: a value of {len(v)} characters (at most {_MAX_TAG_CHARS})"
        if not any(k == "device" for k, _ in tags):
            return "no device name: neither the subscription, the topic nor the payload gives one"
        return route, tags, decoded

    def _route(self, topic: bytes) -> tuple[Route, tuple[tuple[str, str], ...]] | None:
        if len(self._topics) >= self._max_topics:
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
        if len(topic) <= _MAX_CACHED_TOPIC:
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
        keep = self.dead_letter_budget.keep_bytes
        self.counters["truncated"] += sum(1 for m, _, _ in dead if len(m.payload) > keep)
        self.counters["dead_letters_dropped"] += await self.journal.dead_letter_payloads(
            self.name, [(now, t, m.payload[:keep], len(m.payload), r) for m, t, r in dead],
            max_count=self.dead_letter_budget.max_count, max_bytes=self.dead_letter_budget.max_bytes)
        for msg, topic, reason in dead:
            self.counters["dead_lettered"] += 1
            if len(self.rejected_by_topic) >= _MAX_REJECT_TOPICS and topic not in self.rejected_by_topic:
                topic = OTHER_TOPICS
            self.rejected_by_topic[topic] = self.rejected_by_topic.get(topic, 0) + 1
            if ack(msg) and msg.qos:
                self.counters["acked"] += 1
            if self.counters["dead_lettered"] <= 10 or self.counters["dead_lettered"] % 1000 == 0:
                log.warning("MQTT payload rejected: %s", reason, extra={"fields": {"topic": topic}})

    # -- observing -----------------------------------------------------------------------------
    def stats(self) -> IngestStats:
        top = sorted(self.rejected_by_topic.items(), key=lambda kv: -kv[1])[:20]
        connection = None if self.source is None else dataclasses.replace(self.source.stats)
        kept, kept_bytes, dropped = self.journal.payload_dead_letter_counts()
        return IngestStats(**self.counters, series=len(self._series), outstanding=self._outstanding,
                           dead_letters_kept=kept, dead_letter_bytes=kept_bytes, dead_letters_dropped_total=dropped,
                           rejected_by_topic=dict(top), connection=connection)


def _topic_text(topic: bytes) -> str:
    text = topic.decode("utf-8", "backslashreplace")
    return text if len(text) <= _MAX_TOPIC_CHARS else text[:_MAX_TOPIC_CHARS] + "…"


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
