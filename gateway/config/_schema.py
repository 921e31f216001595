"""The site file: one YAML document describing a site, its parks, buildings, devices and sinks.

Validation happens in two passes, both reporting ``file:line: field.path: what was expected``:
pydantic checks the shape of every value, then :func:`resolve_site` checks what spans entries
(a building's park exists, a device's profile exists, names are unique, a point's limits fit its
type) and expands templates and profiles into the final list of devices.
"""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator

from drivers.balance import DeviceRole
from drivers.modbus import Point
from gateway.config._analytics import AnalyticsSection
from gateway.config._mqtt import MqttSection
from gateway.config._strict import Strict
from gateway.config._yaml import Loc, YamlDocument
from gateway.errors import ConfigProblem

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
GridRegion = Literal["north", "northeast", "east_china", "central", "northwest", "south", "southwest", "national"]
SECRET_FIELDS = frozenset({"password", "token"})


class SiteSection(Strict):
    name: str = Field(pattern=NAME)
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Asia/Shanghai)") from None
        return value


class Park(Strict):
    name: str = Field(pattern=NAME)
    grid_region: GridRegion


class Building(Strict):
    name: str = Field(pattern=NAME)
    park: str
    floor_area_m2: float = Field(gt=0)
    grid_region: GridRegion | None = None
    output_unit: str | None = None  # e.g. "employee", "bed", "student" — intensity per unit of output
    output_quantity: float | None = Field(default=None, gt=0)


class TcpConnection(Strict):
    type: Literal["tcp", "rtu_over_tcp"] = "tcp"
    host: str
    port: int = Field(default=502, ge=1, le=65535)


class SerialConnection(Strict):
    type: Literal["serial"]
    port: str
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


Connection = Annotated[TcpConnection | SerialConnection, Field(discriminator="type")]


class PointOverride(Strict):
    """Per-point changes on top of a profile (anything but the register location)."""

    scale: float | None = None
    offset: float | None = None
    unit: str | None = None
    writable: bool | None = None
    min: float | None = None
    max: float | None = None
    deadband: float | None = Field(default=None, ge=0)
    max_silent_s: float | None = Field(default=None, gt=0)
    word_order: Literal["big", "little"] | None = None
    byte_order: Literal["big", "little"] | None = None
    enabled: bool = True


class DeviceSection(Strict):
    name: str = Field(pattern=NAME)
    building: str
    role: DeviceRole
    template: str | None = None
    protocol: Literal["modbus"] = "modbus"
    connection: Connection
    unit_id: int = Field(default=1, ge=0, le=247)
    interval_s: float = Field(default=1.0, gt=0, le=86400)
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    retries: int = Field(default=1, ge=0, le=10)
    pt_ratio: float = Field(default=1.0, gt=0)
    ct_ratio: float = Field(default=1.0, gt=0)
    max_registers: int = Field(default=125, ge=1, le=125)
    max_gap: int = Field(default=16, ge=0, le=124)
    frame_gap_ms: float = Field(default=0.0, ge=0, le=1000)
    profile: str | None = None
    device_class: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    points: list[Point] = Field(default_factory=list)
    overrides: dict[str, PointOverride] = Field(default_factory=dict)


class InfluxV1Sink(Strict):
    type: Literal["influxdb_v1"]
    name: str = Field(default="influxdb", pattern=NAME)
    url: str = Field(pattern=r"^https?://")
    database: str
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    batch_lines: int = Field(default=5000, ge=1, le=100_000)
    max_age_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    gzip: bool = True


class InfluxV2Sink(Strict):
    type: Literal["influxdb_v2"]
    name: str = Field(default="influxdb", pattern=NAME)
    url: str = Field(pattern=r"^https?://")
    org: str
    bucket: str
    token: SecretStr
    batch_lines: int = Field(default=5000, ge=1, le=100_000)
    max_age_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    gzip: bool = True


Sink = Annotated[InfluxV1Sink | InfluxV2Sink, Field(discriminator="type")]


class JournalSection(Strict):
    path: str = "var/journal.db"
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    commit_interval_ms: float = Field(default=20.0, gt=0, le=1000)
    max_mb: float = Field(default=1024.0, gt=0)
    retention_h: float = Field(default=48.0, gt=0, le=24 * 3660)  # delivered rows older than this are deleted
    reserve_mb: float = Field(default=32.0, ge=0, le=1 << 20)  # disk space kept free beside the journal


class ApiSection(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8780, ge=0, le=65535)
    enabled: bool = True


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
        problems.append(doc.problem(loc, message))
    return problems


_UNION_TAGS = frozenset({"tcp", "rtu_over_tcp", "serial", "influxdb_v1", "influxdb_v2"})
