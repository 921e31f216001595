"""Value types shared by the site-file sections: a host, an http(s) URL, a file that must exist.

Each refuses nonsense where pydantic sees it, so the error names the field and line; none echoes
the value (a URL may carry a password).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

#: a hostname (253 characters at most, RFC 1035) or an IP address, without spaces or slashes
Host = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[^\s/\\@]+$")]


def _http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port  # ValueError for a port that is not 0..65535
    except ValueError:
        raise ValueError("not a valid URL (expected http(s)://host[:port][/path])") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("the URL must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("the URL has no host (expected http(s)://host[:port][/path])")
    if port == 0:
        raise ValueError("the URL's port must be 1..65535")
    if any(c.isspace() for c in value):
        raise ValueError("the URL contains white space")
    return value


HttpUrl = Annotated[str, Field(max_length=2048), AfterValidator(_http_url)]


def is_regular_file(path: str | Path) -> bool:
    """``Path.is_file`` that answers False for any path the OS refuses (too long, a NUL, ...)."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def _existing_file(value: str) -> str:
    if not is_regular_file(value):
        raise ValueError("no such file (a path relative to the working directory, or an absolute one)")
    return value


#: a file read at start (a CA, a certificate, a key): missing is a configuration error, not a crash
ExistingFile = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_existing_file)]


def tls_problem(ca_file: str | None, cert_file: str | None, key_file: str | None) -> str | None:
    """Why these files make no TLS client context (not PEM, key does not match), or None."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
        if cert_file:
            ctx.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError, ValueError) as exc:
        return f"the TLS files cannot be used: {exc}"
    return None

