"""The one TLS client context of the project (MQTT ingest through paho, MQTT publish through aiomqtt).

A context built here verifies the server's certificate against ``ca_file`` (or the system's store),
checks its host name unless told not to (a broker reached by IP with a certificate for its name),
and presents a client certificate when one is given (mutual TLS).  Python's
``ssl.create_default_context`` sets TLS 1.2 as the minimum and secure ciphers (Python docs, "ssl —
Security considerations").
"""

from __future__ import annotations

import ssl

__all__ = ["client_context"]


def client_context(ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None,
                   *, check_hostname: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx
