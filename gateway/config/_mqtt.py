"""The ``mqtt:`` section of the site file: brokers, session, subscriptions with decoders, and the
``publish:`` sink (latest values, status with last will, Home Assistant discovery).

Shapes are checked by pydantic; :func:`check_mqtt` does the checks that span the file (a building
named by a subscription exists, templates parse, a decoder has the mapping it needs) and reports
``file:line: field.path: message`` like the rest of the site file (gateway/config/_schema.py).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from drivers.mqtt import MAX_PAYLOAD_BYTES, TopicTemplateError, parse_path, parse_template
from gateway.config._strict import Strict
from gateway.config._types import ExistingFile, Host, tls_problem
from gateway.errors import ConfigProblem

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
FIELD = r"^[a-z][a-z0-9_]*$"
SCALE_MAX = 1e9  # as for Modbus points (gateway/config/_schema.py)
OFFSET_MAX = 1e12


class MqttTls(Strict):
    ca_file: ExistingFile
    cert_file: ExistingFile | None = None  # client certificate (mutual TLS)
    key_file: ExistingFile | None = None
    server_hostname_check: bool = True


class MqttBroker(Strict):
    host: Host
    port: int | None = Field(default=None, ge=1, le=65535)  # 1883, or 8883 with tls
    tls: MqttTls | None = None
    username: str | None = None
    password: SecretStr | None = None

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)

    @property
    def label(self) -> str:
        return f"{self.host}:{self.effective_port}"


class FieldSpec(Strict):
    path: str
    scale: float = Field(default=1.0, ge=-SCALE_MAX, le=SCALE_MAX)
    offset: float = Field(default=0.0, ge=-OFFSET_MAX, le=OFFSET_MAX)
    unit: str | None = None


class TimestampSection(Strict):
    path: str
    format: Literal["auto", "iso8601", "epoch_s", "epoch_ms", "epoch_us", "epoch_ns"] = "auto"


class Subscription(Strict):
    topic: str  # template: {name} levels become tags, + and # allowed
    qos: Literal[0, 1] = 1  # not 2: paho sends PUBREC on receipt, before our commit (docs/mqtt.md)
    decoder: Literal["json", "number", "tasmota", "shelly", "kv"]
    fields: dict[str, FieldSpec | str] = Field(default_factory=dict)  # json: field → path or spec
    field: str | None = Field(default=None, pattern=FIELD)  # number: the field's name
    scale: float = Field(default=1.0, ge=-SCALE_MAX, le=SCALE_MAX)  # number
    unit: str | None = None  # number
    timestamp: TimestampSection | None = None  # absent: arrival time
    measurement: str = Field(pattern=r"^[a-z][a-z0-9_]*$")  # the device class
    building: str | None = None  # or a {building} placeholder
    device: str | None = None  # or a {device} placeholder (or the Shelly src)
    tags: dict[str, str] = Field(default_factory=dict)

    def field_specs(self) -> dict[str, FieldSpec]:
        return {k: FieldSpec(path=v) if isinstance(v, str) else v for k, v in self.fields.items()}


class MqttPublish(Strict):
    """Re-publish the latest values per device (retained) and the gateway's status with a last will."""

    enabled: bool = True
    broker: MqttBroker | None = None  # default: the first ingest broker
    client_id: str | None = None  # default: <client_id>-pub
    topic_prefix: str = "pedf"
    qos: Literal[0, 1] = 1
    interval_s: float = Field(default=1.0, ge=0.01, le=3600)
    homeassistant_discovery: bool = False
    discovery_prefix: str = "homeassistant"


class MqttDeadLetters(Strict):
    """The budget of rejected payloads this source keeps in the journal (oldest dropped, counted)."""

    max_count: int = Field(default=10_000, ge=1, le=10_000_000)
    max_mb: float = Field(default=16.0, gt=0, le=100_000)
    keep_bytes: int = Field(default=4096, ge=0, le=MAX_PAYLOAD_BYTES)  # of each payload; its length is kept

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1024 * 1024)


class MqttSection(Strict):
    brokers: list[MqttBroker] = Field(default_factory=list)  # tried in order on reconnect
    client_id: str = Field(default="pedf-gateway", min_length=1, max_length=64)
    protocol: Literal["5", "3.1.1"] = "5"
    session_expiry_s: int = Field(default=86400, gt=0, le=0xFFFFFFFF)  # MQTT 5; 3.1.1: clean session off
    receive_maximum: int = Field(default=1000, ge=1, le=65535)
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    max_series: int = Field(default=2000, ge=1, le=1_000_000)  # new series beyond it are dead-lettered
    max_payload_bytes: int = Field(default=65536, ge=64, le=MAX_PAYLOAD_BYTES)  # refused before decoding
    dead_letters: MqttDeadLetters = Field(default_factory=MqttDeadLetters)
    reconnect_min_s: float = Field(default=0.5, ge=0.01, le=3600)
    reconnect_max_s: float = Field(default=30.0, ge=0.01, le=3600)
    dedup_window_s: float = Field(default=600.0, ge=1, le=7 * 86400)
    subscriptions: list[Subscription] = Field(default_factory=list)
    publish: MqttPublish | None = None

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_text(cls, value: Any) -> Any:
        if isinstance(value, int | float | str):
            return {5: "5", 4: "3.1.1", "v5": "5", "311": "3.1.1"}.get(value, value)
        return value


def check_mqtt(section: MqttSection | None, buildings: set[str], problem: Any) -> list[ConfigProblem]:
    """Cross-checks; ``problem(loc, message)`` makes a located ConfigProblem (YamlDocument.problem)."""
    if section is None:
        return []
    out: list[ConfigProblem] = []
    if not section.brokers:
        out.append(problem(("mqtt", "brokers"), "at least one broker is needed ({host: ..., port: ...})"))
    if section.reconnect_max_s < section.reconnect_min_s:
        out.append(problem(("mqtt", "reconnect_max_s"), "must be at least reconnect_min_s"))
    brokers = [(("mqtt", "brokers", i), b) for i, b in enumerate(section.brokers)]
    if section.publish is not None and section.publish.broker is not None:
        brokers.append((("mqtt", "publish", "broker"), section.publish.broker))
    for loc, broker in brokers:
        if broker.tls is not None:
            why = tls_problem(broker.tls.ca_file, broker.tls.cert_file, broker.tls.key_file)
            if why is not None:
                out.append(problem(loc + ("tls",), why))
    for i, sub in enumerate(section.subscriptions):
        loc = ("mqtt", "subscriptions", i)
        try:
            tmpl = parse_template(sub.topic)
        except TopicTemplateError as exc:
            out.append(problem(loc + ("topic",), str(exc)))
            continue
        if sub.building is None and "building" not in tmpl.tag_names:
            out.append(problem(loc, "give building: or a {building} placeholder in the topic"))
        elif sub.building is not None and sub.building not in buildings:
            out.append(problem(loc + ("building",), f"unknown building {sub.building!r} (known: {sorted(buildings)})"))
        if sub.device is None and "device" not in tmpl.tag_names and sub.decoder != "shelly":
            out.append(problem(loc, "give device: or a {device} placeholder in the topic"))
        clash = set(sub.tags) & set(tmpl.tag_names) | set(sub.tags) & {"site", "building", "device"}
        if clash:
            out.append(problem(loc + ("tags",), f"tags {sorted(clash)} are already set by the topic or the site"))
        if sub.decoder == "json" and not sub.fields:
            out.append(problem(loc + ("fields",), "the json decoder needs a field mapping (name: path)"))
        if sub.decoder == "number" and sub.field is None:
            out.append(problem(loc + ("field",), "the number decoder needs the field's name"))
        for name, spec in sub.field_specs().items():
            if not name[:1].isalpha() or not name.replace("_", "").isalnum() or name.lower() != name:
                out.append(problem(loc + ("fields", name), "a field name is lowercase letters, digits and _"))
            try:
                parse_path(spec.path)
            except ValueError as exc:
                out.append(problem(loc + ("fields", name, "path"), str(exc)))
        if sub.timestamp is not None:
            try:
                parse_path(sub.timestamp.path)
            except ValueError as exc:
                out.append(problem(loc + ("timestamp", "path"), str(exc)))
    return out
