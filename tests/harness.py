"""Real processes for end-to-end tests and benchmarks: the simulator and ``pedf run``, each in its
own process, wired by a site file written here."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from servers import free_port as _ephemeral_port

_next_port = [10000 + (os.getpid() * 7919) % 15000]


def free_port() -> int:
    """A bindable loopback port below the ephemeral range, so that no client socket of an earlier
    run (lingering in TIME_WAIT) can hold it when a server binds it."""
    for _ in range(20000):
        port = _next_port[0]
        _next_port[0] = 10000 + (port - 10000 + 1) % 20000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return _ephemeral_port()


ROOT = Path(__file__).resolve().parent.parent
SIMULATED_FIELDS = frozenset({"name", "profile", "port", "unit_id", "host", "role", "counter_offset_kwh"})


def _wait_line(proc: subprocess.Popen, word: str, timeout: float, what: str) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stdout.fileno(), False)
    buffer = b""
    while time.monotonic() < deadline:
        chunk = proc.stdout.read()
        if chunk:
            buffer += chunk
            if word.encode() in buffer:
                return
        if proc.poll() is not None:
            raise RuntimeError(
                f"{what} exited with {proc.returncode}: {buffer.decode(errors='replace')[-2000:]}{_stderr_tail(proc)}"
            )
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not print {word!r} within {timeout} s")


def _stderr_tail(proc: subprocess.Popen) -> str:
    path = getattr(proc, "stderr_path", None)
    return f"\n{Path(path).read_text(errors='replace')[-2000:]}" if path else ""


class SimulatorProcess:
    """``python -m drivers.simulator`` serving ``devices`` (dicts of SimulatedDevice fields)."""

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
        self.workdir = workdir
        self.devices = devices
        self.spec = workdir / "devices.json"
        served = [{k: v for k, v in d.items() if k in SIMULATED_FIELDS} for d in devices]
        self.spec.write_text(json.dumps({"devices": served, "faults": faults or {}}))
        self.poll_log = poll_log
        self.args = ["--speed", str(speed), "--seed", str(seed), *(extra or [])]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> SimulatorProcess:
        cmd = [sys.executable, "-m", "drivers.simulator", "--devices", str(self.spec), *self.args]
        if self.poll_log is not None:
            cmd += ["--poll-log", str(self.poll_log)]
        log = self.workdir / "simulator.log"
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=open(log, "wb"))
        self.proc.stderr_path = log  # type: ignore[attr-defined]
        _wait_line(self.proc, "ready", 60, "the simulator")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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


class GatewayProcess:
    """``pedf run site.yaml`` in its own process, with its HTTP status API on a free port."""

    def __init__(self, workdir: Path, site: Path, api_port: int, *, name: str = "gateway") -> None:
        self.workdir, self.site, self.api_port, self.name = workdir, site, api_port, name
        self.proc: subprocess.Popen | None = None
        self.log = workdir / f"{name}.log"

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def start(self) -> GatewayProcess:
        pedf = Path(sys.executable).with_name("pedf")
        self.proc = subprocess.Popen(
            [str(pedf), "--log-format", "json", "run", str(self.site)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=open(self.log, "ab"),
        )
        self.proc.stderr_path = self.log  # type: ignore[attr-defined]
        _wait_line(self.proc, "ready", 60, f"pedf run ({self.log})")
        return self

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/status", timeout=5) as resp:
            return json.load(resp)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

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


__all__ = ["GatewayProcess", "SimulatorProcess", "free_port", "wait_until", "write_site"]
