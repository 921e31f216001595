"""The PEDF building simulator: physics (:mod:`.physics`) served as Modbus TCP devices (:mod:`.server`).

``serve(devices, speed=…, seed=…)`` runs in any asyncio program; ``python -m drivers.simulator``
is the same as a command (see README.md in this folder).
"""

from drivers.simulator.physics import BuildingModel, SiteParams
from drivers.simulator.server import SimulatedDevice, serve

__all__ = ["BuildingModel", "SimulatedDevice", "SiteParams", "serve"]
