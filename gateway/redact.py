"""One place that takes secrets out of text before anyone can read it: log lines, ``/status``,
``pedf status``, ``pedf check``, error messages of writers and of the libraries under them.

Three kinds of secret are found:

- the user-info of a URL (``http://user:pw@host``, ``mqtt://user:pw@host``): the user stays, the
  password becomes ``***`` (a user-info without ``:`` is a token and goes entirely);
- query parameters and headers that carry credentials (``p=``, ``password=``, ``token=``,
  ``Authorization: Basic …``, ``Token …``, ``Bearer …``);
- every secret value the site file holds (``password:``, ``token:`` fields and URL passwords),
  remembered when the file is loaded (:func:`remember_secret`), wherever it shows up verbatim or
  URL-encoded — an InfluxDB v2 error that echoes its token, a library message with a password.

Redacting is cheap on text that holds nothing to redact (a few substring tests), so it can stand
in front of every log line (:class:`RedactFilter`) and every ``/status`` document.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

MASK = "***"
_MIN_SECRET_LEN = 4  # shorter values would mask ordinary words; URL and header patterns still apply

_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/?#'\"<>\[\]]*)@")
_QUERY_SECRET = re.compile(  # short names only as query parameters, long ones anywhere
    r"(?P<key>(?:[?&;](?:p|pw|pwd|pass|auth)|\b(?:passwd|password|token|access_token|api_key|apikey|secret))=)"
    r"(?P<value>[^&;#\s'\"]*)", re.IGNORECASE)
_AUTH_HEADER = re.compile(
    r"(?P<key>\b(?:authorization|proxy-authorization)['\"]?\s*[:=]\s*['\"]?(?:(?:basic|bearer|token|digest)\s+)?)"
    r"(?P<value>[^\s'\",}]+)", re.IGNORECASE)
_BARE_SCHEME = re.compile(r"\b(?P<scheme>Basic|Bearer|Token)\s+(?P<value>[A-Za-z0-9+/=._~\-]{8,})")

_secrets: set[str] = set()


def remember_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears from now on (a password or token from the site file)."""
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    _secrets.add(value)
    for encoded in (urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)):
        if encoded != value:
            _secrets.add(encoded)


def remember_url(url: str | None) -> None:
    """Remember the password (or token) a URL carries in its user-info."""
    if not url:
        return
    match = _URL_USERINFO.search(url)
    if match is None:
        return
    userinfo = match.group("userinfo")
    secret = userinfo.split(":", 1)[1] if ":" in userinfo else userinfo
    remember_secret(secret)
    remember_secret(urllib.parse.unquote(secret))


def remember_secrets_of(model: Any) -> None:
    """Every secret of a validated site file: ``SecretStr`` fields and the passwords of URLs."""
    from pydantic import BaseModel, SecretStr

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            remember_secret(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)
        elif isinstance(value, str) and "@" in value and "://" in value:
            remember_url(value)

    walk(model)


def forget_secrets() -> None:
    """Forget the remembered values (tests)."""
    _secrets.clear()


def _mask_userinfo(match: re.Match[str]) -> str:
    userinfo = match.group("userinfo")
    user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
    return f"{match.group('scheme')}{user}:{MASK}@" if user else f"{match.group('scheme')}{MASK}@"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every credential masked; ``secrets`` are extra values to mask."""
    if not text:
        return text
    extra = [s for s in secrets if s and len(s) >= _MIN_SECRET_LEN]
    for secret in (*extra, *sorted(_secrets, key=len, reverse=True)):
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text and "@" in text:
        text = _URL_USERINFO.sub(_mask_userinfo, text)
    if "=" in text:
        text = _QUERY_SECRET.sub(lambda m: m.group("key") + MASK, text)
    lowered = text.lower()
    if "authorization" in lowered:
        text = _AUTH_HEADER.sub(lambda m: m.group("key") + MASK, text)
    if "basic " in lowered or "bearer " in lowered or "token " in lowered:
        text = _BARE_SCHEME.sub(lambda m: f"{m.group('scheme')} {MASK}", text)
    return text


def redact_url(url: str) -> str:
    """A URL fit to print: its password (and credential query parameters) masked."""
    return redact(url)


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``http://user:pw@host/x`` → (``http://host/x``, user, pw), percent-decoded; a URL without
    user-info comes back as it is with ``None, None``.  Writers send the credentials in a header of
    their own, so the URL they keep and print carries none."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    clean = urllib.parse.urlunsplit(parts._replace(netloc=hostport))
    return clean, urllib.parse.unquote(user), urllib.parse.unquote(password) if colon else None


def redact_tree(value: Any) -> Any:
    """A JSON-like document (dicts, lists, strings) with every string redacted; other values as they are."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_tree(v) for v in value]
    return value


def _field(value: Any) -> Any:
    """A log field redacted; an object that a formatter would print with ``str`` is printed here."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict | list | tuple):
        return redact_tree(value)
    return redact(value if isinstance(value, str) else str(value))


class RedactFilter(logging.Filter):
    """The backstop on the log handler: whatever a record carries — message, arguments, ``fields``,
    a traceback — leaves the process redacted, whoever logged it (the gateway or a library)."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken format string: keep the raw text, redacted
            message = f"{record.msg} {record.args}"
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = {k: _field(v) for k, v in fields.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


__all__ = [
    "MASK",
    "RedactFilter",
    "forget_secrets",
    "redact",
    "redact_tree",
    "redact_url",
    "remember_secret",
    "remember_secrets_of",
    "remember_url",
    "split_credentials",
]
