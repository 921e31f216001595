"""``pedf simulate``: serve a site's Modbus TCP devices from the PEDF building simulator, so the
gateway (or any third-party client) can be pointed at the same site file."""

from __future__ import annotations

from pathlib import Path

from gateway.config import Site, TcpConnection
from gateway.errors import ConfigError, ConfigProblem


def simulated_devices(site: Site) -> list:  # list[drivers.simulator.SimulatedDevice]
    from drivers.simulator import SimulatedDevice

    devices = []
    problems = []
    for d in site.devices:
        conn = d.section.connection
        if not isinstance(conn, TcpConnection) or d.section.profile is None:
            problems.append(
                ConfigProblem(
                    site.file, None, f"devices.{d.name}", "the simulator serves Modbus TCP devices with a profile"
                )
            )
            continue
        devices.append(
            SimulatedDevice(
                name=d.name,
                profile=d.section.profile,
                port=conn.port,
                unit_id=d.section.unit_id,
                host=conn.host,
                role=d.section.role,
            )
        )
    if problems:
        raise ConfigError(problems)
    return devices


async def simulate_site(site: Site, *, speed: float = 1.0, seed: int = 0, poll_log: str | Path | None = None) -> None:
    from drivers.simulator import serve

    await serve(simulated_devices(site), speed=speed, seed=seed, poll_log=Path(poll_log) if poll_log else None)
