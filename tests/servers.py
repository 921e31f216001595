"""Real servers for tests: influxd 1.x, victoria-metrics and mosquitto on free loopback ports.

Each writes its own config into a temporary folder (never the system's), binds 127.0.0.1 only, and
can be stopped and restarted on the same port and data folder to inject outages.  A missing binary
is an error, not a skip (DESIGN.md, "Real services in tests").  Traps handled here are those listed
in DESIGN.md: influxd's default 0.0.0.0:8086 and 127.0.0.1:8088 binds, victoria-metrics' duplicate
samples without ``-dedup.minScrapeInterval`` and its one-month default retention, mosquitto dropping
to a user that cannot write a root-owned persistence folder.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binary(name: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}")
                                       if os.access(p, os.X_OK)), None)
    if path is None:
        raise RuntimeError(f"{name} not found on PATH: install the Debian package (see DESIGN.md, "
                           f"'Real services in tests'); tests that need it cannot run without it")
    return path


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class ServerProcess:
    """A child process with a readiness probe; subclasses give the command line and the probe."""

    name = "server"
    start_timeout_s = 20.0

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> ServerProcess:
        cmd = self.command()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if self.ready():
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.name} not ready in {self.start_timeout_s} s: {self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "<no log>"

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class InfluxD(ServerProcess):
    """InfluxDB 1.x (Debian's 1.6): HTTP API plus InfluxQL helpers for assertions."""

    name = "influxd"

    def __init__(self, workdir: Path, *, auth_enabled: bool = False) -> None:
        super().__init__(workdir)
        self.rpc_port = free_port()
        self.credentials: tuple[str, str] | None = None  # (user, password) for query() once auth is on
        self.config_path = self.workdir / "influxdb.conf"
        d = self.workdir
        self.config_path.write_text(f"""
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{d / 'meta'}"
[data]
  dir = "{d / 'data'}"
  wal-dir = "{d / 'wal'}"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  auth-enabled = {str(auth_enabled).lower()}
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
[logging]
  level = "warn"
""")

    def command(self) -> list[str]:
        return [find_binary("influxd"), "run", "-config", str(self.config_path)]

    def ready(self) -> bool:
        return http_get(self.url + "/ping", timeout=1)[0] == 204

    def query(self, influxql: str, db: str | None = None) -> list[dict[str, Any]]:
        """Rows of every series of the first result, each a dict of column → value (+ tags), epoch ns."""
        params = {"q": influxql, "epoch": "ns"}
        if db:
            params["db"] = db
        req = urllib.request.Request(self.url + "/query", data=urllib.parse.urlencode(params).encode())
        if self.credentials:
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            result = json.load(resp)["results"][0]
        if "error" in result:
            raise RuntimeError(result["error"])
        rows = []
        for series in result.get("series", []):
            for values in series["values"]:
                row = dict(zip(series["columns"], values, strict=True))
                row.update(series.get("tags") or {})
                row["_measurement"] = series.get("name")
                rows.append(row)
        return rows

    def create_database(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"')

    def debug_vars(self) -> dict[str, Any]:
        status, body = http_get(self.url + "/debug/vars")
        assert status == 200, status
        return json.loads(body)

    def points_written(self) -> int:
        """Points the HTTP service accepted since start (``httpd`` counters in /debug/vars)."""
        stats = self.debug_vars()
        return sum(v.get("values", {}).get("pointsWrittenOK", 0) for k, v in stats.items()
                   if k.startswith("httpd"))


class VictoriaMetrics(ServerProcess):
    """victoria-metrics single node: the InfluxDB v2 write API target of the influxdb-client path."""

    name = "victoria-metrics"

    def command(self) -> list[str]:
        return [find_binary("victoria-metrics"), f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.workdir / 'data'}", "-dedup.minScrapeInterval=1ms",
                "-retentionPeriod=100y", "-loggerLevel=WARN"]

    def ready(self) -> bool:
        return http_get(self.url + "/health", timeout=1)[0] == 200

    def export(self, match: str) -> list[dict[str, Any]]:
        """Series matching ``match`` from /api/v1/export (JSON lines: metric, values, timestamps in ms)."""
        http_get(self.url + "/internal/force_flush")
        query = urllib.parse.urlencode({"match[]": match})
        status, body = http_get(f"{self.url}/api/v1/export?{query}")
        assert status == 200, body
        return [json.loads(line) for line in body.splitlines() if line.strip()]


class Mosquitto(ServerProcess):
    """mosquitto 2.x with persistence; ``restart`` is SIGTERM (which saves the queue) then start.

    ``max_inflight_messages`` is raised from 20 and ``max_queued_messages`` from 1000 (DESIGN.md,
    Known traps: acknowledgements that wait for a group commit would otherwise cap throughput, and a
    slow subscriber would lose messages); ``extra_config`` appends lines for a test's own needs.
    """

    name = "mosquitto"

    def __init__(self, workdir: Path, extra_config: str = "") -> None:
        super().__init__(workdir)
        self.config_path = self.workdir / "mosquitto.conf"
        self.config_path.write_text(f"""
listener {self.port} 127.0.0.1
allow_anonymous true
user root
persistence true
persistence_location {self.workdir}/
log_dest file {self.workdir}/mosquitto.log
max_queued_messages 100000
max_inflight_messages 1000
{extra_config}
""")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def command(self) -> list[str]:
        return [find_binary("mosquitto"), "-c", str(self.config_path)]

    def ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True
