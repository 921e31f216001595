"""``pedf scan``: find a SunSpec device's model chain over Modbus TCP and print a profile for it.

The scan finds the ``SunS`` marker (at 40000, 50000 or 0), walks the model chain, lays the points
out with pysunspec2's model definitions and reads the scale factors once
(:func:`drivers.modbus._sunspec.discover_sunspec`); the printed YAML is a profile a site file can name by
path (``profile: profiles/inverter-roof.yaml``) — the scale factors are baked in, so a device whose
factors change needs a new scan.
"""

from __future__ import annotations

import logging
from typing import Any

import yaml
from pymodbus.client import AsyncModbusTcpClient

from drivers.modbus import discover_sunspec


async def scan_sunspec(host: str, port: int, unit_id: int, *, device_class: str, timeout_s: float = 3.0) -> str:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    client = AsyncModbusTcpClient(host, port=port, timeout=timeout_s, retries=0)
    if not await client.connect():
        raise ConnectionError(f"cannot connect to {host}:{port}")
    try:
        points = await discover_sunspec(client, unit_id)
    finally:
        client.close()
    profile: dict[str, Any] = {
        "name": f"sunspec-{host}-{port}-{unit_id}",
        "description": f"SunSpec device scanned at {host}:{port} unit {unit_id}",
        "device_class": device_class,
        "sources": ["pedf scan: SunSpec model chain read from the device, pysunspec2 model definitions"],
        "notes": "Scale factors were read once during the scan and are baked into scale.",
        "points": [p.model_dump(by_alias=True, exclude_defaults=True, mode="json") for p in points],
    }
    return yaml.safe_dump(profile, sort_keys=False, allow_unicode=True)
