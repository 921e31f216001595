"""Structured logging: one JSON object per line (machine-readable, journald/Loki friendly) or a
compact human format; extra fields passed with ``logger.info(msg, extra={"fields": {...}})``.

Every record passes :class:`gateway.redact.RedactFilter` on its way out, so a password in a URL, a
header or a library's message never reaches the log (the sources redact too; this is the backstop).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

from gateway.redact import RedactFilter


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info or record.exc_text:
            out["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        base = f"{stamp} {record.levelname[0]} {record.name}: {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            base += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info or record.exc_text:
            base += "\n" + (record.exc_text or self.formatException(record.exc_info))
        return base


def setup_logging(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("asyncio", "aiohttp.access", "amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pymodbus logs every failed request itself; the gateway counts and logs them with device context
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def warn_cleartext_passwords(logger: logging.Logger, component: str, brokers: Iterable[Any]) -> None:
    """Warn that a password goes to an MQTT broker without TLS, where anyone on the path reads it
    (CONNECT carries it in clear, MQTT 5.0 §3.1.3.6).  Called once when a client starts, not per
    reconnect, so the log says it once."""
    for broker in brokers:
        if getattr(broker, "password", None) is None or getattr(broker, "tls", None) is not None:
            continue
        logger.warning("%s: the password for MQTT broker %s is sent in clear text (no tls: section); "
                       "use TLS (port 8883) on any network you do not control", component, broker.label,
                       extra={"fields": {"broker": broker.label}})
