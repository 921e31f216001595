"""The gateway's status, typed end to end: the stats types of each part → :class:`GatewayStatus` → the
``/status`` JSON → (in ``pedf status``) :class:`GatewayStatus` again → the text an operator reads.

One document, read field by field: a missing field is an error here, not a ``?`` on screen.
"""

from __future__ import annotations

import dataclasses
import time
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

from drivers.errors import exception_name
from drivers.modbus import DeviceStats
from gateway.ingest import IngestStats
from gateway.journal import JournalStats
from gateway.redact import redact
from gateway.service._lines import PollerStats
from gateway.service._live import LiveAnalyticsStats
from gateway.sinks import DeliveryStats, PublisherStats

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MqttStatus:
    ingest: IngestStats | None = None  # "mqtt" in the JSON document
    publish: PublisherStats | None = None  # "mqtt_publish"


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    site: str
    uptime_s: float
    devices: dict[str, DeviceStats]
    devices_up: int
    devices_total: int
    samples: int
    samples_per_s: float
    overruns: int
    commit_failures: int
    journal: JournalStats
    sinks: dict[str, DeliveryStats]
    mqtt: MqttStatus = field(default_factory=MqttStatus)
    analytics: LiveAnalyticsStats | None = None
    devices_degraded: int = 0  # answering, but their last poll gave no values
    pollers: dict[str, PollerStats] = field(default_factory=dict)  # by line: restarts after an unexpected error
    last_commit_failure_ns: int | None = None  # wall clock of the last failed journal commit
    health: list[str] = field(default_factory=list)  # why /health says unhealthy; empty when healthy
    not_available: dict[str, dict[str, int]] = field(default_factory=dict)  # device → point → polls

    def to_json(self) -> dict[str, Any]:
        doc = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "mqtt"}
        mqtt: dict[str, Any] = {}
        if self.mqtt.ingest is not None:
            mqtt["mqtt"] = _plain(self.mqtt.ingest)
        if self.mqtt.publish is not None:
            mqtt["mqtt_publish"] = _plain(self.mqtt.publish)
        doc["mqtt"] = mqtt
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> GatewayStatus:
        mqtt = doc["mqtt"]
        status = _build(cls, doc, skip=("mqtt",))
        return dataclasses.replace(status, mqtt=MqttStatus(
            ingest=_build(IngestStats, mqtt["mqtt"]) if "mqtt" in mqtt else None,
            publish=_build(PublisherStats, mqtt["mqtt_publish"]) if "mqtt_publish" in mqtt else None))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _build(cls: type[T], doc: dict[str, Any], skip: tuple[str, ...] = ()) -> T:
    """A dataclass from its JSON form, by its type hints; raises ``KeyError`` for a missing field."""
    hints = typing.get_type_hints(cls)
    kwargs = {f.name: _coerce(hints[f.name], doc[f.name]) for f in dataclasses.fields(cls)  # type: ignore[arg-type]
              if f.init and f.name not in skip}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value)  # type: ignore[arg-type]
    if origin in (tuple, list) and value is not None:
        item_t = typing.get_args(hint)[0]
        return origin(_coerce(item_t, v) for v in value)
    if origin is dict:
        key_t, val_t = typing.get_args(hint)
        return {key_t(k): _coerce(val_t, v) for k, v in value.items()}
    return value


# -- the text of ``pedf status`` ------------------------------------------------------------------

def _age(ts_ns: int | None) -> str:
    if not ts_ns:
        return "-"
    seconds = max(0.0, time.time() - ts_ns / 1e9)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _device_errors(dev: DeviceStats) -> str:
    parts = [f"{n} {what}" for what, n in (("timeouts", dev.timeouts), ("malformed", dev.malformed),
                                           ("reconnects", dev.reconnects), ("overruns", dev.overruns)) if n]
    parts += [f"{n}× exception {code} {exception_name(code)}" for code, n in sorted(dev.exceptions.items())]
    if dev.learned_holes:
        parts.append("refused " + ", ".join(h.describe() for h in dev.learned_holes))
    return ", ".join(parts)


def render_status(st: GatewayStatus) -> str:
    """The operator's text; redacted as a whole, whatever a field (a sink's last error) carries."""
    return redact(_render(st))


def _render(st: GatewayStatus) -> str:
    lines = [
        f"site {st.site}: {st.devices_up}/{st.devices_total} devices up"
        + (f" ({st.devices_degraded} degraded)" if st.devices_degraded else "") + ", "
        f"{st.samples_per_s} samples/s, {st.samples} samples, {st.overruns} overruns, "
        f"up {st.uptime_s:.0f} s",
        "health: ok" if not st.health else "health: UNHEALTHY",
    ]
    lines += [f"  ! {reason}" for reason in st.health]
    for name, dev in sorted(st.devices.items()):
        state = {"up": "up  ", "degraded": "DEGR", "down": "DOWN"}.get(dev.state, dev.state)
        lines.append(f"  {state} {name:<22} ok {dev.polls_ok:<8} last ok {_age(dev.last_ok_ns)}  {_device_errors(dev)}"
                     .rstrip())
        if st.not_available.get(name):
            missing = ", ".join(f"{point} {n}" for point, n in sorted(st.not_available[name].items()))
            lines.append(f"       not available (polls): {missing}")
    for line, p in sorted(st.pollers.items()):
        if p.restarts:
            lines.append(f"  poller {line}: restarted {p.restarts}× after an error, last {_age(p.last_error_ns)} ago: "
                         f"{p.last_error}")
    j = st.journal
    free = "?" if j.free_bytes is None else f"{j.free_bytes / 1e6:.1f} MB"
    lines.append(f"journal: {j.rows} rows, {j.bytes / 1e6:.1f} MB of {j.effective_max_bytes / 1e6:.1f} MB in force, "
                 f"disk free {free}{' (UNDER THE RESERVE)' if j.low_space else ''}, dropped {j.dropped_rows}, "
                 f"retention deleted {j.retention_deleted}")
    trouble = [f"{n} {what}" for what, n in (("recovered from damage", j.recovered_from_damage),
                                             ("lost commits detected", j.lost_commits_detected),
                                             ("unreadable rows", j.unreadable_rows)) if n]
    if trouble:
        lines.append(f"  JOURNAL: {', '.join(trouble)} (see the log and docs/journal.md)")
    for name, sink in sorted(st.sinks.items()):
        backlog = j.sinks.get(name)
        lines.append(
            f"  sink {name}: backlog {backlog.backlog_rows if backlog else sink.backlog} rows, "
            f"oldest unsent {_age(backlog.oldest_unsent_ns if backlog else None)}, sent {sink.sent_lines} lines, "
            f"dead-lettered {sink.dead_lettered}, last error {sink.last_error or '-'}"
        )
    if st.mqtt.publish is not None:
        p = st.mqtt.publish
        backlog = j.sinks.get("mqtt_publish")
        lines.append(
            f"  mqtt publish: {p.published} state messages for {p.devices} devices, backlog {p.backlog} rows, "
            f"oldest unsent {_age(backlog.oldest_unsent_ns if backlog else None)}, connects {p.connects}, "
            f"last error {p.last_error or '-'}"
        )
    if st.mqtt.ingest is not None:
        m = st.mqtt.ingest
        connected = m.connection.connected if m.connection is not None else False
        lines.append(
            f"  mqtt ingest: received {m.received}, committed {m.committed}, acked {m.acked}, "
            f"dead-lettered {m.dead_lettered}, outstanding {m.outstanding}, connected {connected}"
        )
    if st.analytics is not None:
        a = st.analytics
        last = "-" if a.last_close_s is None else f"{a.last_close_s:.2f} s"
        rss = "-" if a.worker_rss_bytes is None else f"{a.worker_rss_bytes / 1e6:.0f} MB"
        lines.append(f"  live analytics: {a.intervals_done} intervals, {a.errors} errors, last close {last}, "
                     f"worker {rss}, last error {a.last_error or '-'}")
    return "\n".join(lines)
