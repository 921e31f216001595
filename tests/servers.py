"""Real servers for tests: influxd 1.x, victoria-metrics and mosquitto on free loopback ports.

Each writes its own config into a temporary folder (never the system's), binds 127.0.0.1 only, and
can be stopped and restarted on the same port and data folder to inject outages.  A missing binary
is an error, not a skip (DESIGN.md, "Real services in tests").  Traps handled here are those listed
in DESIGN.md: influxd's default 0.0.0.0:8086 and 127.0.0.1:8088 binds, victoria-metrics' duplicate
samples without ``-dedup.minScrapeInterval`` and its one-month default retention, mosquitto dropping
to a user that cannot write a root-owned persistence folder.  Also the pymodbus server of the Modbus
client tests (``tests/modbus_test_server.py``).  Every one is a ``tests.processes.Process``.
"""

from __future__ import annotations

import base64
import json
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.processes import Process, find_binary, free_port


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class ServerProcess(Process):
    """A server on a free loopback port; subclasses give the command line and the readiness probe.
    stdout and stderr share ``<name>.log``."""

    name = "server"
    merge_output = True

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        raise NotImplementedError


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


class ModbusTestServer(Process):
    """``tests/modbus_test_server.py CONFIG`` (a pymodbus server in its own process, see there).

    ``kill()`` then ``start()`` again restarts it on the same port (the port is in ``config``)."""

    name = "modbus-test-server"
    ready_word = "ready"
    script = Path(__file__).with_name("modbus_test_server.py")

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        super().__init__(workdir)
        self.config = config

    def command(self) -> list[str]:
        return [sys.executable, str(self.script), json.dumps(self.config)]


__all__ = ["InfluxD", "ModbusTestServer", "Mosquitto", "ServerProcess", "VictoriaMetrics", "http_get"]
