"""The writer for a configured sink: one place that turns a site file's ``sinks:`` entry into a writer.

The writer modules are imported on first use: influxdb-client alone adds ~14 MB to the process, and a
site with only InfluxDB 1.x sinks should not carry it.
"""

from __future__ import annotations

import ssl

from drivers.tls import client_context
from gateway.config import InfluxV1Sink, InfluxV2Sink
from gateway.sinks._writer import LineWriter


def _ssl(sink: InfluxV1Sink | InfluxV2Sink) -> ssl.SSLContext | None:
    """The TLS context of an ``https://`` sink with a ``tls:`` section; None: the library's default,
    which verifies against the system's CAs as well."""
    if sink.tls is None:
        return None
    t = sink.tls
    return client_context(t.ca_file, t.cert_file, t.key_file, check_hostname=t.server_hostname_check)


def make_writer(sink: InfluxV1Sink | InfluxV2Sink) -> LineWriter:
    if isinstance(sink, InfluxV1Sink):
        from gateway.sinks._influx_v1 import InfluxV1Writer

        return InfluxV1Writer(
            url=sink.url,
            database=sink.database,
            retention_policy=sink.retention_policy,
            username=sink.username,
            password=sink.password.get_secret_value() if sink.password else None,
            timeout_s=sink.timeout_s,
            gzip=sink.gzip,
            create_database=not sink.skip_database_creation,
            ssl_context=_ssl(sink),
        )
    from gateway.sinks._influx_v2 import InfluxV2Writer

    return InfluxV2Writer(
        url=sink.url,
        org=sink.org,
        bucket=sink.bucket,
        token=sink.token.get_secret_value(),
        timeout_s=sink.timeout_s,
        gzip=sink.gzip,
        ssl_context=_ssl(sink),
    )
