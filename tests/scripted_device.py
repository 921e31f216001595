"""A Modbus TCP device whose faults a test scripts while it runs: ``tests/modbus_test_server.py`` in
scripted mode, serving ``100 + address`` from holding/input registers 0.., and reading its rules
(addresses to refuse with exception 2, or one exception code for every read) from a control file
before every request.  Every read it served is in its log."""

from __future__ import annotations

import json
from pathlib import Path

from tests.processes import free_port
from tests.servers import ModbusTestServer

HOST = "127.0.0.1"


class ScriptedDevice:
    def __init__(self, workdir: Path, *, refuse: list[int] | None = None, size: int = 40) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.control, self.log = workdir / "control.json", workdir / "reads.log"
        self.set(refuse=refuse or [])
        self.port = free_port()
        self.server = ModbusTestServer(workdir / "server", {"tcp": [HOST, self.port], "scripted": {
            "registers": [100 + a for a in range(size)], "control": str(self.control), "log": str(self.log)}})

    def set(self, **rules: object) -> None:
        """New rules, e.g. ``refuse=[7]`` or ``exception=4``; ``set()`` answers everything."""
        tmp = self.control.with_suffix(".tmp")
        tmp.write_text(json.dumps(rules))
        tmp.replace(self.control)

    def reads(self) -> list[tuple[int, int, str]]:
        """(address, count, result) of every read served: result ``ok`` or ``x<code>``."""
        if not self.log.exists():
            return []
        return [(int(a), int(n), r) for _, a, n, r in (line.split() for line in self.log.read_text().splitlines())]


def scripted_site(path: Path, devices: dict[str, int], *, journal: Path, api_port: int, interval_s: float = 0.2,
                  reprobe_holes_s: float | None = None, points: int = 20) -> Path:
    """A site file polling scripted devices (name → port): ``points`` uint16 points r00.. at 0.."""
    import yaml

    site = {
        "site": {"name": "t", "timezone": "Asia/Shanghai"},
        "parks": [{"name": "p", "grid_region": "east_china"}],
        "buildings": [{"name": "b", "park": "p", "floor_area_m2": 1000}],
        "devices": [
            {"name": name, "building": "b", "role": "sub_meter", "device_class": "meter",
             "connection": {"type": "tcp", "host": HOST, "port": port}, "unit_id": 1, "interval_s": interval_s,
             "timeout_s": 0.3, "retries": 0,
             **({} if reprobe_holes_s is None else {"reprobe_holes_s": reprobe_holes_s}),
             "points": [{"name": f"r{a:02d}", "register": "holding", "address": a, "type": "uint16"}
                        for a in range(points)]}
            for name, port in devices.items()
        ],
        "journal": {"path": str(journal)},
        "api": {"host": HOST, "port": api_port},
    }
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path
