"""An InfluxDB 1.x database that does not exist, against real influxd: created when the sink says so,
else a 404 that names the database and what to do while the data waits in the journal; and
``pedf demo --influx-url`` that delivered nothing exits non-zero and says why."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import InfluxV1Sink
from gateway.errors import SinkUnavailable
from gateway.journal import Journal
from gateway.sinks import Delivery, InfluxV1Writer, LineEncoder, make_writer
from tests.processes import free_port
from tests.servers import InfluxD
from tests.test_sinks import METER, delivering, eventually, polls

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parent.parent


def _databases(server: InfluxD) -> set[str]:
    server.query('CREATE DATABASE "_probe"')  # SHOW DATABASES of a server without any has no values
    return {row["name"] for row in server.query("SHOW DATABASES")} - {"_probe"}


async def test_missing_database_is_named_and_the_data_waits(tmp_path: Path, influxd: InfluxD,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    writer = make_writer(InfluxV1Sink(type="influxdb_v1", url=influxd.url, database="nodb"))  # the default: skip
    with pytest.raises(SinkUnavailable, match=r"database 'nodb' does not exist: create it \(CREATE DATABASE "
                                              r"\"nodb\"\) or set skip_database_creation: false"):
        await writer.write(b"m v=1 1")
    async with Journal(tmp_path / "j.db") as journal:
        sid = await journal.series_id(METER)
        for s in polls(sid, 5):
            await journal.append(s)
        delivery = Delivery("influx", journal, writer, LineEncoder(journal.series), max_age_s=0.05,
                            backoff_initial_s=0.05, backoff_max_s=0.1)
        with caplog.at_level(logging.WARNING, logger="pedf.sink.influx"):
            async with delivering(delivery):
                await eventually(lambda: delivery.stats().retries >= 2)
        assert journal.cursor("influx") == 0 and delivery.stats().backlog == 5  # nothing lost, nothing moved on
        assert "database 'nodb' does not exist" in caplog.text
    assert "nodb" not in _databases(influxd)


async def test_database_created_when_the_sink_says_so(tmp_path: Path, influxd: InfluxD,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    sink = InfluxV1Sink(type="influxdb_v1", url=influxd.url, database='new "db"', skip_database_creation=False)
    async with Journal(tmp_path / "j.db") as journal:
        sid = await journal.series_id(METER)
        for s in polls(sid, 20):
            await journal.append(s)
        delivery = Delivery("influx", journal, make_writer(sink), LineEncoder(journal.series), max_age_s=0.05)
        with caplog.at_level(logging.WARNING, logger="pedf.sink"):
            async with delivering(delivery):
                await eventually(lambda: delivery.stats().backlog == 0)
    assert 'new "db"' in _databases(influxd)
    assert len(influxd.query("SELECT * FROM meter", db='new "db"')) == 20
    assert "did not exist and was created" in caplog.text


async def test_creation_refused_says_what_to_do(tmp_path: Path) -> None:
    with InfluxD(tmp_path / "influxd", auth_enabled=True) as server:
        server.query("CREATE USER admin WITH PASSWORD 'adm1n' WITH ALL PRIVILEGES")
        server.credentials = ("admin", "adm1n")
        server.query("CREATE USER writer WITH PASSWORD 'wr1ter'")
        writer = InfluxV1Writer(server.url, "pedf", username="writer", password="wr1ter", create_database=True)
        with pytest.raises(SinkUnavailable, match="does not exist and creating it failed") as info:
            await writer.write(b"m v=1 1")
        await writer.close()
        assert "create it as an admin" in str(info.value) and "wr1ter" not in str(info.value)


def _demo(tmp_path: Path, influx_url: str) -> subprocess.CompletedProcess[str]:
    pedf = str(Path(sys.executable).with_name("pedf"))
    return subprocess.run([pedf, "demo", str(ROOT / "examples" / "demo-site.yaml"), "--hours", "1",
                           "--influx-url", influx_url], cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_demo_creates_its_database(tmp_path: Path, influxd: InfluxD) -> None:
    out = _demo(tmp_path, influxd.url)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "pedf" in _databases(influxd)
    assert influxd.points_written() > 0
    assert "lines delivered" in out.stdout and "— OK" in out.stdout


def test_demo_that_delivered_nothing_fails_and_says_why(tmp_path: Path) -> None:
    out = _demo(tmp_path, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert out.returncode == 1, out.stdout[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    assert "FAILED: sink influxdb delivered nothing" in last and "cannot connect to 127.0.0.1" in last, last
