"""Retention keeps the journal small; the cap in force fits the disk with a reserve kept free; on a
full small file system commits and cursor updates go on, and what the cap dropped is counted.

The small file system is a real 8 MB tmpfs (``mount -t tmpfs``: the tests need root or
CAP_SYS_ADMIN, as the service's own test machines have)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from gateway.errors import JournalError
from gateway.journal import Journal
from gateway.series import Sample, SeriesKey
from tests.harness import GatewayProcess, SimulatorProcess, wait_until, write_site
from tests.processes import free_port
from tests.servers import InfluxD

WIDE = SeriesKey("inverter", (("site", "s1"),), tuple(f"f{i}_kw" for i in range(60)), ("float",) * 60)
MB = 1 << 20


def wide(sid: int, ts_ns: int, i: int) -> Sample:
    return Sample(sid, ts_ns, np.arange(60, dtype=np.float64) + i)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A fresh 8 MB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, f"these tests mount an 8 MB tmpfs and need root: {done.stderr}"
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill_up(directory: Path, leave_bytes: int) -> Path:
    """A file that takes the file system's free space but ``leave_bytes``."""
    st = os.statvfs(directory)
    filler = directory / "filler"
    with filler.open("ab") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave_bytes))
    return filler


async def test_delivered_rows_past_the_retention_are_deleted_in_batches(tmp_path: Path) -> None:
    now = time.time_ns()
    old, recent = now - 3 * 3600 * 10**9, now - 60 * 10**9
    async with Journal(tmp_path / "j.db", retention_s=3600, housekeeping_interval_s=0.05) as j:
        sid = await j.series_id(WIDE)
        j.register_sink("influx")
        j.register_sink("mqtt_publish")
        await j.append_many([wide(sid, old + i, i) for i in range(6000)])  # three batches of old rows
        await j.append_many([wide(sid, recent + i, i) for i in range(100)])
        await j.ack("influx", 6100)
        await j.ack("mqtt_publish", 5000)  # delivered upto 5000: rows 5001-6000 are old but still owed
        await asyncio.sleep(0.5)
        st = j.stats()
        assert st.retention_deleted == 5000 and st.rows == 1100
        assert st.sinks["mqtt_publish"].backlog_rows == 1100 and st.sinks["influx"].backlog_rows == 0
        assert [r.seq for r in await j.read("mqtt_publish", 2)] == [5001, 5002]
        await j.ack("mqtt_publish", 6100)
        await asyncio.sleep(0.3)
        assert j.stats().rows == 100 and j.stats().retention_deleted == 6000
        assert j.stats().sinks["mqtt_publish"].oldest_unsent_ns is None
    async with Journal(tmp_path / "j.db", retention_s=1e-3, housekeeping_interval_s=0.05) as j:
        await asyncio.sleep(0.3)
        assert j.stats().rows == 0 and j.stats().head_seq == 6100
        assert await j.append_many([wide(sid, now, 0)]) == 6101  # a seq is never reused
    async with Journal(tmp_path / "j.db") as j:
        assert j.stats().head_seq == 6101 and j.stats().lost_commits_detected == 0


async def test_the_cap_counts_the_wal_dead_letters_and_arrival_records(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.db") as j:
        sid = await j.series_id(WIDE)
        await j.append_many([wide(sid, i, i) for i in range(2000)])
        wal = Path(f"{tmp_path / 'j.db'}-wal").stat().st_size
        assert wal > 100_000 and j.stats().bytes >= wal + 2000 * 480
        before = j.stats().bytes
        await j.dead_letter_payloads("mqtt", [(i, "t", os.urandom(10_000), 10_000, "junk") for i in range(100)])
        await asyncio.gather(*(j.append(wide(sid, 10**6 + i, i), (os.urandom(32), i)) for i in range(1000)))
        assert j.stats().bytes >= before + 100 * 10_000 + 1000 * (480 + 32)  # counted once the next commit measures


async def test_refuses_to_start_when_even_the_reserve_does_not_fit(small_fs: Path) -> None:
    fill_up(small_fs, 1 * MB)
    with pytest.raises(JournalError, match=r"not enough disk space.*journal\.reserve_mb"):
        async with Journal(small_fs / "j.db", reserve_bytes=2 * MB):
            pass


async def test_on_a_small_disk_the_cap_is_lowered_and_the_reserve_keeps_cursors_moving(
        small_fs: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "pedf.journal")
    path = small_fs / "j.db"
    async with Journal(path, max_bytes=64 * MB, reserve_bytes=1 * MB, housekeeping_interval_s=0.2) as j:
        st = j.stats()
        assert st.effective_max_bytes < 8 * MB and st.reserve_bytes == MB and st.free_bytes is not None
        assert "journal cap lowered from 64.0 MB" in caplog.text
        sid = await j.series_id(WIDE)
        j.register_sink("influx")
        i = 0
        while j.stats().dropped_rows == 0:  # no sink: fill to the cap
            await j.append_many([wide(sid, time.time_ns() + n, n) for n in range(i, i + 500)])
            i += 500
            assert i < 100_000
        # someone else fills the disk to under the reserve: the journal keeps committing in its own pages
        with contextlib.suppress(OSError):
            fill_up(small_fs, 256 * 1024)
        await asyncio.sleep(0.5)  # seen without a commit, by the journal's housekeeping
        assert j.stats().low_space
        for _ in range(20):
            await j.append_many([wide(sid, time.time_ns() + n, n) for n in range(i, i + 500)])
            i += 500
        st = j.stats()
        assert st.low_space and st.failed_commits == 0 and st.committed == i
        assert st.dropped_undelivered == st.dropped_rows > 0
        await j.ack("influx", st.head_seq - 10)  # a cursor update on a full disk succeeds
        assert j.cursor("influx") == st.head_seq - 10
    assert "under the reserve" in caplog.text


def _journal_keys(site: Path, **keys: object) -> None:
    doc = yaml.safe_load(site.read_text())
    doc["journal"].update(keys)
    site.write_text(yaml.safe_dump(doc, sort_keys=False))


def _influx_count(influxd: InfluxD) -> int:
    return sum(int(r["count"]) for r in influxd.query("SELECT count(x00_kw) FROM meter GROUP BY device", db="pedf"))


@pytest.mark.services
def test_a_journal_on_an_8_mb_tmpfs_loses_nothing_once_the_sink_is_back(
        tmp_path: Path, small_fs: Path, influxd: InfluxD) -> None:
    devices = [{"name": f"d{i}", "profile": "bench60", "port": free_port(), "interval_s": 0.05} for i in range(6)]
    influxd.create_database("pedf")
    influxd.stop()  # the sink is down from the start
    api_port = free_port()
    sink = {"type": "influxdb_v1", "name": "influx", "url": influxd.url, "database": "pedf", "max_age_s": 0.5,
            "batch_lines": 500, "timeout_s": 2}
    site = write_site(tmp_path / "site.yaml", devices, journal=small_fs / "journal.db", api_port=api_port,
                      sinks=[sink], max_mb=64)  # a cap far above the 8 MB the disk has
    _journal_keys(site, reserve_mb=1, retention_h=0.002)  # delivered rows go after 7 s
    fill_up(small_fs, 3 * MB)  # other files take 5 MB of it
    poll_log = tmp_path / "polls.log"
    with (SimulatorProcess(tmp_path, devices, speed=0, poll_log=poll_log) as sim,
          GatewayProcess(tmp_path, site, api_port) as gw):
        wait_until(lambda: gw.status()["journal"]["dropped_rows"] > 0, 90, what="the cap in force reached")
        at_cap = gw.status()
        influxd.start()
        wait_until(lambda: gw.status()["journal"]["sinks"]["influx"]["backlog_rows"] < 200, 60,
                   what="the backlog delivered")
        time.sleep(8)  # retention deletes what was delivered
        sim.stop()
        answered = sum(sim.answered_polls().values())
        wait_until(lambda: gw.status()["journal"]["sinks"]["influx"]["backlog_rows"] == 0, 30,
                   what="everything delivered")
        end = gw.status()
        assert gw.terminate() == 0
    journal = end["journal"]
    assert at_cap["journal"]["effective_max_bytes"] < 3 * MB
    assert end["commit_failures"] == 0 and journal["failed_commits"] == 0 and end["overruns"] == 0
    assert journal["committed"] == answered
    # at the cap with the sink down every drop was undelivered; once it was back, delivered rows went first
    assert 0 < at_cap["journal"]["dropped_undelivered"] <= journal["dropped_undelivered"] <= journal["dropped_rows"]
    assert journal["retention_deleted"] > 0 and journal["rows"] < at_cap["journal"]["rows"]
    # every reading the cap did not drop reached the database once the sink was back (and a batch read
    # before the drop, still in the delivery's hands, may have arrived too: the batch being retried and
    # the one read after it, so at most two batches beyond what the cap kept)
    kept, arrived = answered - journal["dropped_undelivered"], _influx_count(influxd)
    print(f"tmpfs trial: {answered} polls committed, cap in force {at_cap['journal']['effective_max_bytes']} bytes, "
          f"{journal['dropped_undelivered']} dropped undelivered at the cap, {arrived} in influxd, "
          f"{journal['retention_deleted']} deleted by retention, {journal['rows']} rows left")
    assert kept <= arrived <= kept + 2 * sink["batch_lines"]


@pytest.mark.services
def test_pedf_run_refuses_to_start_when_the_disk_cannot_hold_the_reserve(tmp_path: Path, small_fs: Path) -> None:
    site = write_site(tmp_path / "site.yaml", [{"name": "d0", "profile": "bench60", "port": free_port()}],
                      journal=small_fs / "journal.db", api_port=free_port())
    _journal_keys(site, reserve_mb=4)
    fill_up(small_fs, 2 * MB)
    pedf = Path(sys.executable).with_name("pedf")
    done = subprocess.run([str(pedf), "run", str(site)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2, done.stderr
    assert "not enough disk space for the journal" in done.stderr and "journal.reserve_mb" in done.stderr
