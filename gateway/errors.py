"""The project's exceptions, in one tree so callers catch a family, never a bare ``Exception``.

    PedfError
    ├── ConfigError            a site file is wrong (file, line, field path, what was expected)
    ├── ProfileError           a device profile file cannot be used (file, point)
    ├── DeviceError            a device did not give a usable answer
    │   ├── DeviceTimeout      no answer in time (after retries)
    │   ├── DeviceRejected     a Modbus exception response (code 1-11)
    │   └── DeviceMalformed    an answer of the wrong length or shape
    ├── SunSpecError           no SunSpec marker, an unknown model, a broken model chain
    ├── WriteRefused           a setpoint outside the point's limits, or to a read-only point
    ├── MqttError
    │   ├── MqttConnectError   the broker is unreachable or refused us
    │   ├── TopicTemplateError a topic template cannot be parsed
    │   └── DecodeError        a payload gives no reading (the message is dead-lettered)
    ├── JournalError           the local journal could not commit, or its writer stopped
    ├── SinkError              a time-series database or broker did not take a batch
    │   ├── SinkUnavailable    worth retrying: connection refused, timeout, 5xx, 429 (``retry_after_s``)
    │   └── SinkRejected       4xx: the batch (or some lines of it) will never be accepted
    └── AnalysisInputError     readings for analysis cannot be loaded (missing column, query refused)

The device-side families live in :mod:`drivers.errors` (the drivers import nothing from here) and
are re-exported.  Arguments passed wrongly by code stay ``ValueError``/``TypeError``.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.errors import (
    DecodeError,
    DeviceError,
    DeviceMalformed,
    DeviceRejected,
    DeviceTimeout,
    MqttConnectError,
    MqttError,
    PedfError,
    ProfileError,
    SunSpecError,
    TopicTemplateError,
    WriteRefused,
)

__all__ = [
    "AnalysisInputError",
    "ConfigError",
    "ConfigProblem",
    "DecodeError",
    "DeviceError",
    "DeviceMalformed",
    "DeviceRejected",
    "DeviceTimeout",
    "JournalError",
    "MqttConnectError",
    "MqttError",
    "PedfError",
    "ProfileError",
    "SinkError",
    "SinkRejected",
    "SinkUnavailable",
    "SunSpecError",
    "TopicTemplateError",
    "WriteRefused",
]


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a site file."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '<top>'}: {self.message}"


class ConfigError(PedfError):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class JournalError(PedfError):
    pass


class SinkError(PedfError):
    pass


class SinkUnavailable(SinkError):
    """Worth retrying; ``retry_after_s`` is the server's ``Retry-After`` in seconds, if it sent one."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class SinkRejected(SinkError):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"HTTP {status}: {message}")


class AnalysisInputError(PedfError):
    """Readings for an analysis cannot be loaded: a missing column or file, a refused query."""
