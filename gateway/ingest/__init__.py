"""TODO docstring."""

from __future__ import annotations

from gateway.ingest._mqtt import MqttIngest, start_mqtt

__all__ = [
    "MqttIngest",
    "start_mqtt",
]
