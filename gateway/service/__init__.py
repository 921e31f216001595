"""The running service: the gateway (pollers → deadband → journal → deliveries), devices grouped by
physical line, the typed status and its text, and the local HTTP API.

What other packages may use is named here; the ``_`` modules are private.
Imports: every other part of :mod:`gateway` except the CLI and the demo, and :mod:`drivers`.
"""

from __future__ import annotations

from gateway.service._deadband import DeadbandFilter
from gateway.service._gateway import Gateway, tune_gc
from gateway.service._lines import device_spec, line_groups, line_key
from gateway.service._live import LiveAnalytics, LiveAnalyticsStats
from gateway.service._status import GatewayStatus, MqttStatus, render_status

__all__ = [
    "DeadbandFilter",
    "Gateway",
    "GatewayStatus",
    "LiveAnalytics",
    "LiveAnalyticsStats",
    "MqttStatus",
    "device_spec",
    "line_groups",
    "line_key",
    "render_status",
    "tune_gc",
]
