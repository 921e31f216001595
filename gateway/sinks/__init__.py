"""Time-series database writers behind one small protocol, so delivery never knows which database it feeds.

A writer takes a body of pre-encoded line protocol and either returns (the database accepted all of
it), raises :class:`~gateway.errors.SinkUnavailable` (worth retrying: connection refused, timeout, 5xx,
429 — with ``retry_after_s`` set when the server sent ``Retry-After``), or raises
:class:`~gateway.errors.SinkRejected` (another 4xx: retrying the same body cannot succeed).  Secrets
(passwords, tokens) never appear in a writer's messages.

Implementations: :mod:`gateway.sinks.influx_v1` (InfluxDB 1.x ``/write``) and
:mod:`gateway.sinks.influx_v2` (InfluxDB v2 API through influxdb-client).
"""

from __future__ import annotations

import email.utils
import time
from typing import Protocol, runtime_checkable

from gateway.errors import SinkRejected, SinkUnavailable

__all__ = ["LineWriter", "SinkRejected", "SinkUnavailable", "classify_status", "parse_retry_after"]


@runtime_checkable
class LineWriter(Protocol):
    name: str

    async def write(self, body: bytes) -> None: ...

    async def close(self) -> None: ...


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def classify_status(status: int, message: str, retry_after: str | None = None) -> None:
    """Raise the error family that a non-2xx HTTP status means for a write; return on 2xx."""
    if 200 <= status < 300:
        return
    if status == 429 or status >= 500 or status == 408:
        err = SinkUnavailable(f"HTTP {status}: {message}")
        err.retry_after_s = parse_retry_after(retry_after)  # type: ignore[attr-defined]
        raise err
    raise SinkRejected(status, message)
