"""MQTT: topic templates, payload decoders (JSON with a mapping, plain numbers, Tasmota, Shelly Gen2,
key/value) and the paho-based source that acknowledges a message only when told to.

What other packages may use is named here; the ``_`` modules behind it are private.  The source
(and with it paho) is loaded on first use, so a site without MQTT never imports paho.
Imports: the standard library, paho-mqtt and :mod:`drivers.errors` only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.errors import DecodeError, MqttConnectError, MqttError, TopicTemplateError
from drivers.lazy import lazy_attributes
from drivers.mqtt._decoders import (
    MAX_PAYLOAD_BYTES,
    Decoded,
    Decoder,
    FieldMapping,
    Ignored,
    TimestampSpec,
    json_decoder,
    number_decoder,
    parse_path,
    parse_timestamp,
)
from drivers.mqtt._topics import TopicTemplate, parse_template
from drivers.mqtt._vendor_decoders import kv_decoder, shelly_decoder, tasmota_decoder

if TYPE_CHECKING:
    from drivers.mqtt._source import BrokerEndpoint, InboundMessage, MqttSource, SourceStats

_LAZY = {name: "drivers.mqtt._source" for name in ("BrokerEndpoint", "InboundMessage", "MqttSource", "SourceStats")}

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "MAX_PAYLOAD_BYTES",
    "BrokerEndpoint",
    "DecodeError",
    "Decoded",
    "Decoder",
    "FieldMapping",
    "Ignored",
    "InboundMessage",
    "MqttConnectError",
    "MqttError",
    "MqttSource",
    "SourceStats",
    "TimestampSpec",
    "TopicTemplate",
    "TopicTemplateError",
    "json_decoder",
    "kv_decoder",
    "number_decoder",
    "parse_path",
    "parse_template",
    "parse_timestamp",
    "shelly_decoder",
    "tasmota_decoder",
]
