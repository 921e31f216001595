"""The protocol every database writer follows, and what an HTTP status means for a write.

A writer takes a body of pre-encoded line protocol and either returns (the database accepted all of
it), raises :class:`~gateway.errors.SinkUnavailable` (worth retrying: connection refused, timeout, 5xx,
429 — with ``retry_after_s`` set when the server sent ``Retry-After``), or raises
:class:`~gateway.errors.SinkRejected` (another 4xx: retrying the same body cannot succeed).  Secrets
(passwords, tokens) never appear in a writer's messages.

401, 403 and 404 are counted as *unavailable*, not rejected: they say the credentials, database or
bucket are wrong, not that a line is, and would otherwise dead-letter every line of every batch
while an operator fixes the site file.  Data waits in the journal (bounded by its cap) instead.
"""

from __future__ import annotations

import email.utils
import time
from typing import Protocol, runtime_checkable

from gateway.errors import SinkRejected, SinkUnavailable


@runtime_checkable
class LineWriter(Protocol):
    name: str

    async def write(self, body: bytes) -> None: ...

    async def close(self) -> None: ...


_RETRYABLE = frozenset({401, 403, 404, 408, 429})


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
    if status in _RETRYABLE or status >= 500:
        raise SinkUnavailable(f"HTTP {status}: {message}", retry_after_s=parse_retry_after(retry_after))
    raise SinkRejected(status, message)
