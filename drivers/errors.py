"""Errors of the device side: the root of the project's exception tree and the families the drivers raise.

The whole tree is drawn in :mod:`gateway.errors`, which re-exports these; the drivers define them
here because they import nothing from ``gateway`` (data flows one way, DESIGN.md "Layout").
Arguments that code passes wrongly (a negative interval, a point past register 65535) stay
``ValueError``/``TypeError``, Python's own convention for a programming error; inside pydantic
validators they become :class:`gateway.errors.ConfigError` problems with file, line and field.
"""

from __future__ import annotations

from pathlib import Path


class PedfError(Exception):
    """Base of every error the project raises on purpose."""


class DeviceError(PedfError):
    """A device did not give a usable answer."""

    def __init__(self, device: str, unit: int, address: int, message: str) -> None:
        self.device, self.unit, self.address = device, unit, address
        super().__init__(f"{device} (unit {unit}, address {address}): {message}")


class DeviceTimeout(DeviceError):
    """No answer in time (after retries)."""


#: Modbus Application Protocol V1.1b3 §7: the exception codes by name, as logs and status show them
MODBUS_EXCEPTION_NAMES: dict[int, str] = {
    1: "ILLEGAL FUNCTION",
    2: "ILLEGAL DATA ADDRESS",
    3: "ILLEGAL DATA VALUE",
    4: "SERVER DEVICE FAILURE",
    5: "ACKNOWLEDGE",
    6: "SERVER DEVICE BUSY",
    8: "MEMORY PARITY ERROR",
    10: "GATEWAY PATH UNAVAILABLE",
    11: "GATEWAY TARGET DEVICE FAILED TO RESPOND",
}


def exception_name(code: int) -> str:
    return MODBUS_EXCEPTION_NAMES.get(code, "UNKNOWN EXCEPTION")


class DeviceRejected(DeviceError):
    """A Modbus exception response (codes 1-11, Modbus Application Protocol V1.1b3 §7)."""

    def __init__(self, device: str, unit: int, address: int, exception_code: int, count: int | None = None) -> None:
        self.exception_code, self.count = exception_code, count
        where = "" if count is None else f", {count} value(s)"
        super().__init__(device, unit, address,
                         f"exception response code {exception_code} ({exception_name(exception_code)}){where}")


class DeviceUnreachable(DeviceRejected):
    """Exception 0x0A or 0x0B from a gateway in front of the device: the device itself did not
    answer, so it counts as unanswered (down, polled with backoff), not as alive."""


class DeviceMalformed(DeviceError):
    """An answer of the wrong length or shape."""


class WriteRefused(PedfError):
    """A setpoint outside the point's limits, or to a point that is not writable."""


class ProfileError(PedfError):
    """A device profile that cannot be used; the message names the file and, if any, the point."""

    def __init__(self, path: Path | str, message: str, point: str | None = None) -> None:
        where = f"{path}" + (f", point {point!r}" if point else "")
        super().__init__(f"{where}: {message}")
        self.path, self.point = path, point


class SunSpecError(PedfError):
    """No SunSpec marker, an unknown model, or a broken model chain."""


class MqttError(PedfError):
    """Base of the MQTT side's errors."""


class MqttConnectError(MqttError):
    """The broker could not be reached or refused us; the message names the broker and the reason."""

    def __init__(self, broker: str, reason: str, *, refused: bool = False) -> None:
        self.broker, self.reason, self.refused = broker, reason, refused
        super().__init__(f"MQTT broker {broker}: {reason}")


class TopicTemplateError(MqttError):
    """A topic template that cannot be parsed; the message says what is wrong."""


class DecodeError(MqttError):
    """The payload cannot give a reading; the message is dead-lettered with this reason."""
