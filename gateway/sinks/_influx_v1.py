"""InfluxDB 1.x writer: ``POST /write?db=&rp=&precision=`` with a gzip body, ``GET /ping`` for health.

Why plain aiohttp and not influxdb-client: the 1.x ``/write`` endpoint (InfluxDB 1.x HTTP API
reference, https://docs.influxdata.com/influxdb/v1/tools/api/#write-http-endpoint) is one request, and
Debian's influxd 1.6 has no ``/api/v2/write`` (DESIGN.md, Known traps).  Credentials go in an HTTP
Basic ``Authorization`` header by default (``auth="basic"``), which 1.x accepts like ``u``/``p``
query parameters but which does not end up in URLs that proxies and error messages print.

Gzip level 1: a body of meter readings compresses ~4× at level 1 and ~5× at level 6, which costs
about five times the CPU (benchmarks/bench_encoder.py prints both).

A database that does not exist answers 404 ``database not found``: with ``create_database`` the
writer sends ``CREATE DATABASE`` (idempotent in InfluxQL) and writes again, as Telegraf does unless
``skip_database_creation``; without it the error says which database is missing and what to do, and
the data waits in the journal.  An ``https://`` URL is verified against ``ssl`` (see
:func:`drivers.tls.client_context`: a CA file, a client certificate), the system's CAs by default.
"""

from __future__ import annotations

import asyncio
import gzip as gzip_module
import json
import logging
import ssl
from typing import Literal

import aiohttp

from gateway.errors import SinkUnavailable
from gateway.redact import redact, redact_url, split_credentials
from gateway.sinks._writer import classify_status

_THREAD_GZIP_BYTES = 256 * 1024  # compress bigger bodies off the event loop
_NO_DATABASE = "database not found"  # influxd 1.x's 404 body on /write (and "database not found: x" on 1.8)
log = logging.getLogger("pedf.sink")


class InfluxV1Writer:
    def __init__(self, url: str, database: str, *, retention_policy: str | None = None,
                 precision: Literal["ns", "u", "ms", "s"] = "ns", username: str | None = None,
                 password: str | None = None, auth: Literal["basic", "query"] = "basic", gzip: bool = True,
                 gzip_level: int = 1, timeout_s: float = 10.0, name: str | None = None,
                 create_database: bool = False, ssl_context: ssl.SSLContext | None = None) -> None:
        url, url_user, url_password = split_credentials(url)  # aiohttp refuses them beside a header
        if username is None and url_user is not None:
            username, password = url_user, url_password
        self.url = url.rstrip("/")
        self.name = name or f"influxdb-v1 {redact_url(self.url)}/{database}"
        self.database = database
        self.create_database = create_database
        self.ssl_context = ssl_context
        self.params = {"db": database, "precision": precision}
        if retention_policy:
            self.params["rp"] = retention_policy
        self._headers: dict[str, str] = {}
        self._secrets = tuple(s for s in (password,) if s)
        if username is not None and auth == "basic":
            self._headers["Authorization"] = aiohttp.encode_basic_auth(username, password or "")
        elif username is not None:
            self.params.update(u=username, p=password or "")
        self.gzip = gzip
        self.gzip_level = gzip_level
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # keeps credentials out of reprs in logs and tracebacks
        return f"InfluxV1Writer({self.name!r})"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = None if self.ssl_context is None else aiohttp.TCPConnector(ssl=self.ssl_context)
            self._session = aiohttp.ClientSession(timeout=self.timeout, headers=self._headers, connector=connector)
        return self._session

    async def _body(self, body: bytes) -> tuple[bytes, dict[str, str]]:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if not self.gzip:
            return body, headers
        headers["Content-Encoding"] = "gzip"
        if len(body) > _THREAD_GZIP_BYTES:
            return await asyncio.to_thread(gzip_module.compress, body, self.gzip_level), headers
        return gzip_module.compress(body, self.gzip_level), headers

    async def write(self, body: bytes) -> None:
        data, headers = await self._body(body)
        status, text, retry_after = await self._post(data, headers)
        if status == 404 and _NO_DATABASE in text:
            if not self.create_database:
                raise SinkUnavailable(
                    f"{self.name}: database {self.database!r} does not exist: create it "
                    f"(CREATE DATABASE {_identifier(self.database)}) or set skip_database_creation: false "
                    "on the sink; the data waits in the journal")
            await self._create()
            status, text, retry_after = await self._post(data, headers)
        if status == 204:
            return
        classify_status(status, f"{self.name}: {redact(_influx_error(text), self._secrets)}", retry_after)

    async def _post(self, data: bytes, headers: dict[str, str]) -> tuple[int, str, str | None]:
        try:
            async with self._client().post(self.url + "/write", params=self.params, data=data,
                                           headers=headers) as resp:
                if resp.status == 204:
                    return 204, "", None
                return resp.status, await resp.text(errors="replace"), resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SinkUnavailable(f"{self.name}: {type(exc).__name__}: {redact(_safe(exc), self._secrets)}") from None

    async def _create(self) -> None:
        """``CREATE DATABASE`` (a no-op when it exists); a refusal (no admin right) says what to do."""
        params = {"q": f"CREATE DATABASE {_identifier(self.database)}"}
        params.update({k: v for k, v in self.params.items() if k in ("u", "p")})
        try:
            async with self._client().post(self.url + "/query", params=params) as resp:
                status, text = resp.status, await resp.text(errors="replace")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SinkUnavailable(f"{self.name}: {type(exc).__name__}: {redact(_safe(exc), self._secrets)}") from None
        error = _query_error(text) if status == 200 else _influx_error(text) or f"HTTP {status}"
        if error:
            raise SinkUnavailable(f"{self.name}: database {self.database!r} does not exist and creating it "
                                  f"failed ({redact(error, self._secrets)}): create it as an admin, "
                                  "or give the sink's user the right")
        log.warning("%s: database %r did not exist and was created", self.name, self.database)

    async def ping(self) -> bool:
        try:
            async with self._client().get(self.url + "/ping") as resp:
                return resp.status == 204
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _influx_error(text: str) -> str:
    try:
        return str(json.loads(text).get("error", text))[:1000]
    except (ValueError, AttributeError):
        return text[:1000]


def _query_error(text: str) -> str | None:
    """The first error of a /query answer (InfluxQL errors come with HTTP 200), None when none."""
    try:
        doc = json.loads(text)
        for result in doc.get("results", []):
            if "error" in result:
                return str(result["error"])[:300]
        return str(doc["error"])[:300] if "error" in doc else None
    except (ValueError, AttributeError, TypeError):
        return text[:300] or None


def _identifier(name: str) -> str:
    """An InfluxQL double-quoted identifier (backslash and double quote escaped)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _safe(exc: BaseException) -> str:
    """Connection errors name host and port only; never echo a URL that may carry ``p=``."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate of {exc.host}:{exc.port} not trusted ({exc.certificate_error}): set tls.ca_file"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc.os_error})"
    return str(exc).split("?", 1)[0][:300]
