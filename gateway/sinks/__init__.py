"""Sinks: the delivery loop that feeds each sink from the journal, the writers behind one small protocol
(InfluxDB 1.x ``/write``, the InfluxDB v2 API, MQTT re-publish), the line-protocol encoder (with its
compiled twin) and the factory that turns a site file's ``sinks:`` entry into a writer.

A writer takes a body of pre-encoded line protocol and either returns (the database accepted all of
it), raises :class:`~gateway.errors.SinkUnavailable` (worth retrying) or
:class:`~gateway.errors.SinkRejected` (a 4xx: retrying the same body cannot succeed); see
:mod:`gateway.sinks._writer`.

What other packages may use is named here; the ``_`` modules are private.  Writers that pull in a
heavy library (aiohttp, influxdb-client, aiomqtt, numba) load on first use.
Imports: :mod:`gateway.config`, :mod:`gateway.journal`, :mod:`gateway.series`, :mod:`gateway.errors`,
:mod:`drivers` (backoff, TLS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.lazy import lazy_attributes
from gateway.sinks._delivery import Delivery, DeliveryStats, LineProtocolRows, RowWriter
from gateway.sinks._factory import make_writer
from gateway.sinks._lineprotocol import LineEncoder, escape_key, escape_measurement, escape_string_field
from gateway.sinks._writer import LineWriter, classify_status, parse_retry_after

if TYPE_CHECKING:
    from gateway.sinks._influx_v1 import InfluxV1Writer
    from gateway.sinks._influx_v2 import InfluxV2Writer
    from gateway.sinks._lp_kernels import CompiledTables, format_float
    from gateway.sinks._mqtt_publish import MqttPublisher, MqttSink, PublisherStats, ha_sensor, mqtt_publisher

_LAZY = {
    "InfluxV1Writer": "gateway.sinks._influx_v1",
    "InfluxV2Writer": "gateway.sinks._influx_v2",
    "CompiledTables": "gateway.sinks._lp_kernels",
    "format_float": "gateway.sinks._lp_kernels",
    "MqttPublisher": "gateway.sinks._mqtt_publish",
    "MqttSink": "gateway.sinks._mqtt_publish",
    "PublisherStats": "gateway.sinks._mqtt_publish",
    "ha_sensor": "gateway.sinks._mqtt_publish",
    "mqtt_publisher": "gateway.sinks._mqtt_publish",
}

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "CompiledTables",
    "Delivery",
    "DeliveryStats",
    "InfluxV1Writer",
    "InfluxV2Writer",
    "LineEncoder",
    "LineProtocolRows",
    "LineWriter",
    "MqttPublisher",
    "MqttSink",
    "PublisherStats",
    "RowWriter",
    "classify_status",
    "escape_key",
    "escape_measurement",
    "escape_string_field",
    "format_float",
    "ha_sensor",
    "make_writer",
    "mqtt_publisher",
    "parse_retry_after",
]
