"""Real processes for end-to-end tests and benchmarks: the simulator and ``pedf run``, each in its
own process (a ``tests.processes.Process``), wired by a site file written here."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.processes import Process

ROOT = Path(__file__).resolve().parent.parent
SIMULATED_FIELDS = frozenset({"name", "profile", "port", "unit_id", "host", "role", "counter_offset_kwh"})


class PythonModule(Process):
    """``python -m MODULE ARGS`` from the repository root, ready once it prints ``ready``."""

    ready_word = "ready"
    start_timeout_s = 60.0

    def __init__(self, workdir: Path, module: str, args: list[str], *, name: str = "python") -> None:
        super().__init__(workdir, name=name)
        self.module, self.args = module, list(args)

    def command(self) -> list[str]:
        return [sys.executable, "-m", self.module, *self.args]

    def cwd(self) -> Path:
        return ROOT


class SimulatorProcess(PythonModule):
    """``python -m drivers.simulator`` serving ``devices`` (dicts of SimulatedDevice fields)."""

    stop_timeout_s = 10.0

    def __init__(
        self,
        workdir: Path,
        devices: list[dict[str, Any]],
        *,
        speed: float = 1.0,
        seed: int = 1,
        poll_log: Path | None = None,
        faults: dict[str, str] | None = None,
        extra: list[str] | None = None,
    ) -> None:
        self.devices = devices
        self.spec = Path(workdir) / "devices.json"
        args = ["--devices", str(self.spec), "--speed", str(speed), "--seed", str(seed), *(extra or [])]
        if poll_log is not None:
            args += ["--poll-log", str(poll_log)]
        super().__init__(workdir, "drivers.simulator", args, name="simulator")
        served = [{k: v for k, v in d.items() if k in SIMULATED_FIELDS} for d in devices]
        self.spec.write_text(json.dumps({"devices": served, "faults": faults or {}}))
        self.poll_log = poll_log

    def answered_polls(self) -> dict[str, int]:
        """Reads the simulator answered, per device, from its poll log."""
        counts: dict[str, int] = {}
        assert self.poll_log is not None
        for line in self.poll_log.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2:
                counts[parts[1]] = counts.get(parts[1], 0) + 1
        return counts


def write_site(
    path: Path,
    devices: list[dict[str, Any]],
    *,
    sinks: list[dict[str, Any]] | None = None,
    journal: Path,
    api_port: int,
    interval_s: float = 1.0,
    max_mb: float = 1024.0,
    analytics: dict[str, Any] | None = None,
) -> Path:
    site = {
        "site": {"name": "t", "timezone": "Asia/Shanghai"},
        "parks": [{"name": "p", "grid_region": "east_china"}],
        "buildings": [{"name": "b", "park": "p", "floor_area_m2": 1000}],
        "devices": [
            {
                "name": d["name"],
                "building": "b",
                "role": d.get("role") or "sub_meter",
                "profile": d["profile"],
                "connection": {"type": "tcp", "host": "127.0.0.1", "port": d["port"]},
                "unit_id": d.get("unit_id", 1),
                "interval_s": d.get("interval_s", interval_s),
                "timeout_s": d.get("timeout_s", 0.5),
                "retries": d.get("retries", 0),
            }
            for d in devices
        ],
        "sinks": sinks or [],
        "journal": {"path": str(journal), "max_mb": max_mb},
        "api": {"host": "127.0.0.1", "port": api_port},
    }
    if analytics is not None:
        site["analytics"] = analytics
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


class GatewayProcess(Process):
    """``pedf run site.yaml`` in its own process, with its HTTP status API on a free port.

    Its JSON log (stderr) is ``<workdir>/<name>.log``; leaving the ``with`` block kills it (SIGKILL),
    ``terminate()`` is the graceful stop that returns the exit code."""

    ready_word = "ready"
    start_timeout_s = 60.0
    exit_signal = signal.SIGKILL

    def __init__(self, workdir: Path, site: Path, api_port: int, *, name: str = "gateway") -> None:
        super().__init__(workdir, name=name)
        self.site, self.api_port = site, api_port
        self.log = self.log_path

    def command(self) -> list[str]:
        pedf = Path(sys.executable).with_name("pedf")
        if not pedf.exists():
            raise RuntimeError(f"{pedf} not found: install the project into the venv (pip install -e .)")
        return [str(pedf), "--log-format", "json", "run", str(self.site)]

    def cwd(self) -> Path:
        return ROOT

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/status", timeout=5) as resp:
            return json.load(resp)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def rss_mb(self, key: str = "VmRSS") -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(key)


def wait_until(predicate, timeout: float, interval: float = 0.25, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout} s (last: {last!r})")


__all__ = ["ROOT", "GatewayProcess", "PythonModule", "SimulatorProcess", "wait_until", "write_site"]
