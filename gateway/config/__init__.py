"""The site file: its schema (pydantic models with one strict base), its resolution into devices
(profiles and templates stamped out, overrides applied) and YAML loading that keeps every node's
line, so that an error names the file, the line and the field.

What other packages may use is named here; the ``_`` modules are private.
Imports: :mod:`drivers` (profiles, points, MQTT topic templates, device roles), :mod:`gateway.errors`,
:mod:`gateway.series`, and :mod:`analytics` for factor names (loaded when an ``analytics:`` section
is checked).
"""

from __future__ import annotations

from gateway.config._analytics import AnalyticsSection, BatterySection, factor_region
from gateway.config._mqtt import MqttBroker, MqttPublish, MqttSection, Subscription
from gateway.config._schema import InfluxV1Sink, InfluxV2Sink, SerialConnection, SinkTls, TcpConnection
from gateway.config._site import Device, Site, load_site, resolve_site
from gateway.config._yaml import load_yaml

__all__ = [
    "AnalyticsSection",
    "BatterySection",
    "Device",
    "InfluxV1Sink",
    "InfluxV2Sink",
    "MqttBroker",
    "MqttPublish",
    "MqttSection",
    "SerialConnection",
    "SinkTls",
    "Site",
    "Subscription",
    "TcpConnection",
    "factor_region",
    "load_site",
    "load_yaml",
    "resolve_site",
]
