"""Readings that arrive by themselves: MQTT ingest (subscribe, decode, journal, acknowledge after commit).

What other packages may use is named here; the ``_`` modules are private.
Imports: :mod:`drivers.mqtt`, :mod:`gateway.config`, :mod:`gateway.journal`, :mod:`gateway.series`.
"""

from __future__ import annotations

from gateway.ingest._mqtt import IngestStats, MqttIngest, arrival_digest, mqtt_ingest

__all__ = ["IngestStats", "MqttIngest", "arrival_digest", "mqtt_ingest"]
