"""``make demo`` and ``pedf simulate``: the simulated PEDF building (the simulator in its own process),
the gateway reading it into the local journal, MQTT sub-meters on an embedded broker, and the day's
energy balance from the journal beside the simulator's own totals.

What other packages may use is named here; the ``_`` modules are private.
Imports: :mod:`gateway.service`, :mod:`gateway.config`, :mod:`gateway.journal`, :mod:`drivers`,
:mod:`analytics` (interval energy of the counters).
"""

from __future__ import annotations

from gateway.demo._demo import run_demo
from gateway.demo._mqtt_demo import SubMeterPublisher, demo_mqtt_section, embedded_broker
from gateway.demo._simulate import simulate_site

__all__ = ["SubMeterPublisher", "demo_mqtt_section", "embedded_broker", "run_demo", "simulate_site"]
