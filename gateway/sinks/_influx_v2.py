"""InfluxDB v2 API writer through influxdb-client's async client, sending our own line protocol.

``WriteApiAsync.write(bucket, org, record=bytes)`` posts the bytes as they are to ``/api/v2/write``
(influxdb-client-python, ``client/write_api_async.py``), so the fast encoder of
:mod:`gateway.sinks._lineprotocol` is kept and no ``Point`` objects are built (~60k lines/s here, DESIGN.md).
The same API is served by InfluxDB 2.x, 3.x, Cloud, 1.8+ (compatibility endpoints; token
``user:password``, bucket ``db/rp``) and by VictoriaMetrics, which the tests use.  An ``https://``
URL is verified against ``ssl_context`` (:func:`drivers.tls.client_context`: a CA file, a client
certificate), the system's CAs by default.
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

import aiohttp
from influxdb_client import WritePrecision
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

from gateway.errors import SinkUnavailable
from gateway.redact import redact, redact_url, split_credentials
from gateway.sinks._writer import classify_status

_PRECISION = {"ns": WritePrecision.NS, "us": WritePrecision.US, "ms": WritePrecision.MS,
              "s": WritePrecision.S}


class InfluxV2Writer:
    def __init__(self, url: str, org: str, bucket: str, token: str, *,
                 precision: Literal["ns", "us", "ms", "s"] = "ns", gzip: bool = True, timeout_s: float = 10.0,
                 name: str | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self.url = split_credentials(url)[0].rstrip("/")  # the token authenticates; aiohttp refuses both
        self.ssl_context = ssl_context
        self.org, self.bucket = org, bucket
        self.name = name or f"influxdb-v2 {redact_url(self.url)} {org}/{bucket}"
        self.precision = _PRECISION[precision]
        self.gzip = gzip
        self.timeout_s = timeout_s
        self._token = token
        self._client: InfluxDBClientAsync | None = None

    def __repr__(self) -> str:  # keeps the token out of reprs in logs and tracebacks
        return f"InfluxV2Writer({self.name!r})"

    def _write_api(self) -> Any:
        if self._client is None:
            self._client = InfluxDBClientAsync(url=self.url, token=self._token, org=self.org,
                                               timeout=int(self.timeout_s * 1000), enable_gzip=self.gzip,
                                               ssl_context=self.ssl_context)
        return self._client.write_api()

    async def write(self, body: bytes) -> None:
        try:
            await self._write_api().write(bucket=self.bucket, org=self.org, record=body,
                                          write_precision=self.precision)
        except InfluxDBError as exc:
            status = getattr(exc, "status", None)
            if status is None:
                raise SinkUnavailable(f"{self.name}: {type(exc).__name__}") from None
            headers = getattr(exc, "headers", None) or {}
            message = redact(str(getattr(exc, "message", "") or getattr(exc, "body", "") or ""), (self._token,))
            classify_status(int(status), f"{self.name}: {message[:1000]}", headers.get("Retry-After"))
        except aiohttp.ClientConnectorCertificateError as exc:
            raise SinkUnavailable(f"{self.name}: TLS certificate of {exc.host}:{exc.port} not trusted "
                                  f"({exc.certificate_error}): set tls.ca_file") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            reason = redact(str(exc), (self._token,))[:300]
            raise SinkUnavailable(f"{self.name}: {type(exc).__name__}: {reason}") from None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
