"""TODO docstring."""

from __future__ import annotations

from gateway.config._analytics import AnalyticsSection, BatterySection, factor_region
from gateway.config._mqtt import MqttBroker, MqttPublish, MqttSection, Subscription
from gateway.config._schema import InfluxV1Sink, InfluxV2Sink, SerialConnection, TcpConnection
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
    "Site",
    "Subscription",
    "TcpConnection",
    "factor_region",
    "load_site",
    "load_yaml",
    "resolve_site",
]
