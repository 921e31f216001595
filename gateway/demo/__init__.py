"""TODO docstring."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gateway.demo._demo import run_demo
from gateway.demo._simulate import simulate_site

if TYPE_CHECKING:
    from gateway.demo._mqtt_demo import SubMeterPublisher, demo_mqtt_section, embedded_broker

# loaded on first use: these pull in heavy libraries a site may not need
_LAZY = {
    "SubMeterPublisher": "gateway.demo._mqtt_demo",
    "demo_mqtt_section": "gateway.demo._mqtt_demo",
    "embedded_broker": "gateway.demo._mqtt_demo",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

__all__ = [
    "SubMeterPublisher",
    "demo_mqtt_section",
    "embedded_broker",
    "run_demo",
    "simulate_site",
]
