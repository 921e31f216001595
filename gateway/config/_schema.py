"""The site file: one YAML document describing a site, its parks, buildings, devices and sinks.

Validation happens in two passes, both reporting ``file:line: field.path: what was expected``:
pydantic checks the shape of every value, then :func:`resolve_site` checks what spans entries
(a building's park exists, a device's profile exists, names are unique, a point's limits fit its
type) and expands templates and profiles into the final list of devices.
"""

from __future__ import annotations

import urllib.parse
import zoneinfo
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from drivers.balance import DeviceRole
from drivers.modbus import Point
from gateway.config._analytics import AnalyticsSection
from gateway.config._mqtt import MqttSection
from gateway.config._strict import Strict
from gateway.config._types import Host, HttpUrl
from gateway.config._yaml import Loc, YamlDocument
from gateway.errors import ConfigProblem

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
GridRegion = Literal["north", "northeast", "east_china", "central", "northwest", "south", "southwest", "national"]
SECRET_FIELDS = frozenset({"password", "token"})
SCALE_MAX = 1e9  # |scale| of a register, a ratio or a payload number
OFFSET_MAX = 1e12
VALUE_MAX = 1e15  # engineering values: limits, deadbands
SILENT_MAX_S = 7 * 86400


class SiteSection(Strict):
    name: str = Field(pattern=NAME)
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            if len(value) > _longest_zone_name():  # the OS would say "File name too long"
                raise ValueError(value)
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown IANA time zone {value[:40]!r} (e.g. Asia/Shanghai)") from None
        return value


@cache
def _longest_zone_name() -> int:
    return max((len(z) for z in zoneinfo.available_timezones()), default=64)


class Park(Strict):
    name: str = Field(pattern=NAME)
    grid_region: GridRegion


class Building(Strict):
    name: str = Field(pattern=NAME)
    park: str
    floor_area_m2: float = Field(gt=0, le=1e7)
    grid_region: GridRegion | None = None
    output_unit: str | None = None  # e.g. "employee", "bed", "student" — intensity per unit of output
    output_quantity: float | None = Field(default=None, gt=0, le=1e9)


class TcpConnection(Strict):
    type: Literal["tcp", "rtu_over_tcp"] = "tcp"
    host: Host
    port: int = Field(default=502, ge=1, le=65535)


class SerialConnection(Strict):
    type: Literal["serial"]
    port: str = Field(min_length=1, max_length=4096)
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


Connection = Annotated[TcpConnection | SerialConnection, Field(discriminator="type")]


class PointOverride(Strict):
    """Per-point changes on top of a profile (anything but the register location)."""

    scale: float | None = Field(default=None, ge=-SCALE_MAX, le=SCALE_MAX)
    offset: float | None = Field(default=None, ge=-OFFSET_MAX, le=OFFSET_MAX)
    unit: str | None = None
    writable: bool | None = None
    min: float | None = Field(default=None, ge=-VALUE_MAX, le=VALUE_MAX)
    max: float | None = Field(default=None, ge=-VALUE_MAX, le=VALUE_MAX)
    deadband: float | None = Field(default=None, ge=0, le=VALUE_MAX)
    max_silent_s: float | None = Field(default=None, gt=0, le=SILENT_MAX_S)
    word_order: Literal["big", "little"] | None = None
    byte_order: Literal["big", "little"] | None = None
    not_available: tuple[int | float, ...] | None = None  # raw sentinels; [] switches the type's default off
    enabled: bool = True


class DeviceSection(Strict):
    name: str = Field(pattern=NAME)
    building: str
    role: DeviceRole
    template: str | None = None
    protocol: Literal["modbus"] = "modbus"
    connection: Connection
    unit_id: int = Field(default=1, ge=0, le=247)
    interval_s: float = Field(default=1.0, ge=0.01, le=86400)
    timeout_s: float = Field(default=1.0, ge=0.01, le=60)
    retries: int = Field(default=1, ge=0, le=10)
    pt_ratio: float = Field(default=1.0, ge=0.001, le=1e6)
    ct_ratio: float = Field(default=1.0, ge=0.001, le=1e6)
    max_registers: int = Field(default=125, ge=1, le=125)
    max_gap: int = Field(default=16, ge=0, le=124)
    frame_gap_ms: float = Field(default=0.0, ge=0, le=1000)
    # how long a learned hole (an address the device refused) is trusted before it is tried again
    reprobe_holes_s: float = Field(default=3600.0, ge=1, le=7 * 86400)
    profile: str | None = None
    device_class: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    points: list[Point] = Field(default_factory=list)
    overrides: dict[str, PointOverride] = Field(default_factory=dict)


class SinkTls(Strict):
    """TLS of an ``https://`` sink; the server's certificate is always verified."""

    ca_file: str | None = None  # PEM bundle the server's certificate must chain to; the system's CAs when unset
    cert_file: str | None = None  # client certificate (mutual TLS)
    key_file: str | None = None  # its private key, when not in cert_file
    server_hostname_check: bool = True

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _pair(self) -> SinkTls:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file (the client certificate)")
        return self


def _tls_needs_https(url: str, tls: SinkTls | None) -> None:
    if tls is not None and not url.startswith("https://"):
        raise ValueError("tls applies to an https:// url")


class _InfluxSink(Strict):
    """What both InfluxDB sinks take: batching, timeouts, gzip and TLS."""

    name: str = Field(default="influxdb", pattern=NAME)
    url: HttpUrl
    batch_lines: int = Field(default=5000, ge=1, le=100_000)
    max_age_s: float = Field(default=1.0, ge=0.01, le=3600)
    timeout_s: float = Field(default=10.0, ge=0.1, le=600)
    gzip: bool = True
    tls: SinkTls | None = None

    @model_validator(mode="after")
    def _tls(self) -> _InfluxSink:
        _tls_needs_https(self.url, self.tls)
        return self


class InfluxV1Sink(_InfluxSink):
    type: Literal["influxdb_v1"]
    database: str = Field(min_length=1)
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    skip_database_creation: bool = True  # false: a missing database is created (needs an admin user)

    @model_validator(mode="after")
    def _credentials_once(self) -> InfluxV1Sink:
        if _has_userinfo(self.url) and self.username is not None:
            raise ValueError("url carries user:password@ and username is set too: give the credentials once "
                             "(preferably username/password with password: ${ENV})")
        return self


class InfluxV2Sink(_InfluxSink):
    type: Literal["influxdb_v2"]
    org: str = Field(min_length=1)
    bucket: str = Field(min_length=1)
    token: SecretStr

    @model_validator(mode="after")
    def _token_only(self) -> InfluxV2Sink:
        if _has_userinfo(self.url):
            raise ValueError("an influxdb_v2 sink authenticates with token:, not with user:password@ in its url")
        return self


def _has_userinfo(url: str) -> bool:
    return "@" in urllib.parse.urlsplit(url).netloc


Sink = Annotated[InfluxV1Sink | InfluxV2Sink, Field(discriminator="type")]


class JournalSection(Strict):
    path: str = Field(default="var/journal.db", min_length=1, max_length=4096)
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    commit_interval_ms: float = Field(default=20.0, ge=0.1, le=1000)
    max_mb: float = Field(default=1024.0, ge=0.25, le=1024 * 1024, description="cap of the journal, MiB")
    retention_h: float = Field(default=48.0, gt=0, le=10 * 366 * 24)  # delivered rows older than this are deleted
    reserve_mb: float = Field(default=32.0, ge=0, le=1 << 20)  # disk space kept free beside the journal


class HealthSection(Strict):
    """When ``/health`` turns unhealthy (503), beyond "no device is up" and "low disk space"."""

    max_unsent_age_s: float = Field(default=300.0, gt=0, le=30 * 86400)  # a sink's oldest unsent sample
    commit_failure_window_s: float = Field(default=60.0, ge=1, le=86400)  # a failed commit counts this long


class ApiSection(Strict):
    host: Host = "127.0.0.1"
    port: int = Field(default=8780, ge=0, le=65535)
    enabled: bool = True
    # bearer token: /status, /metrics and every endpoint that changes state require it; /health stays open
    token: SecretStr | None = None
    health: HealthSection = Field(default_factory=HealthSection)

    @field_validator("token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("an API token needs at least 16 characters (e.g. `openssl rand -hex 16`)")
        if value is not None and any(c.isspace() for c in value.get_secret_value()):
            raise ValueError("an API token cannot contain spaces or line breaks")
        return value


class SiteFile(Strict):
    site: SiteSection
    parks: list[Park] = Field(min_length=1)
    buildings: list[Building] = Field(min_length=1)
    templates: dict[str, dict[str, Any]] = Field(default_factory=dict)
    devices: list[dict[str, Any]] = Field(default_factory=list)  # validated after templates are applied
    sinks: list[Sink] = Field(default_factory=list)
    journal: JournalSection = Field(default_factory=JournalSection)
    api: ApiSection = Field(default_factory=ApiSection)
    mqtt: MqttSection | None = None
    analytics: AnalyticsSection | None = None


def _problems_from(exc: ValidationError, doc: YamlDocument, base: Loc = ()) -> list[ConfigProblem]:
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        loc: Loc = base + tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field (check the spelling)"
        elif err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        problems.append(doc.problem(loc, message))
    return problems


_UNION_TAGS = frozenset({"tcp", "rtu_over_tcp", "serial", "influxdb_v1", "influxdb_v2"})
