"""The gateway's exceptions, in one tree so callers catch a family, never a bare ``Exception``.

    PedfError
    ├── ConfigError            a site file is wrong (file, line, field path, what was expected)
    ├── DeviceError            a device did not give a usable answer
    │   ├── DeviceTimeout      no answer in time (after retries)
    │   ├── DeviceRejected     a Modbus exception response (code 1-11)
    │   └── DeviceMalformed    an answer of the wrong length or shape
    ├── WriteRefused           a setpoint outside the point's limits, or to a read-only point
    ├── JournalError           the local journal could not commit
    └── SinkError              a time-series database did not take a batch
        ├── SinkUnavailable    worth retrying: connection refused, timeout, 5xx, 429
        └── SinkRejected       4xx: the batch (or some lines of it) will never be accepted
"""

from __future__ import annotations

from dataclasses import dataclass


class PedfError(Exception):
    """Base of every error the gateway raises on purpose."""


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


class DeviceError(PedfError):
    def __init__(self, device: str, unit: int, address: int, message: str) -> None:
        self.device, self.unit, self.address = device, unit, address
        super().__init__(f"{device} (unit {unit}, address {address}): {message}")


class DeviceTimeout(DeviceError):
    pass


class DeviceRejected(DeviceError):
    def __init__(self, device: str, unit: int, address: int, exception_code: int) -> None:
        self.exception_code = exception_code
        super().__init__(device, unit, address, f"exception response code {exception_code}")


class DeviceMalformed(DeviceError):
    pass


class WriteRefused(PedfError):
    pass


class JournalError(PedfError):
    pass


class SinkError(PedfError):
    pass


class SinkUnavailable(SinkError):
    pass


class SinkRejected(SinkError):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"HTTP {status}: {message}")
