"""A damaged journal is moved aside (kept) and a fresh one started, with an ERROR saying what to do;
lost WAL commits are reported; a read error is a JournalError; ``pedf journal`` salvages what is
readable; the files are private; ``synchronous: NORMAL`` warns."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gateway.errors import JournalError
from gateway.journal import Journal
from gateway.series import Sample, SeriesKey

WIDE = SeriesKey("inverter", (("site", "s1"),), tuple(f"f{i}_kw" for i in range(60)), ("float",) * 60)
T0 = 1_700_000_000_000_000_000
PAGE = 4096


def wide(sid: int, i: int) -> Sample:
    return Sample(sid, T0 + i * 10**9, np.arange(60, dtype=np.float64) * 0.5 + i)


async def fill(path: Path, n: int, group: int = 50, start: int = 0, **kw: object) -> None:
    async with Journal(path, **kw) as j:  # type: ignore[arg-type]
        sid = await j.series_id(WIDE)
        for g in range(start, start + n, group):
            await j.append_many([wide(sid, i) for i in range(g, min(start + n, g + group))])


def truncate_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def cut_tail(path: Path) -> None:
    os.truncate(path, path.stat().st_size - 3 * PAGE)


def zero_length(path: Path) -> None:
    os.truncate(path, 0)


def garble_pages(path: Path) -> None:
    pages = path.stat().st_size // PAGE
    with path.open("r+b") as f:
        f.seek(PAGE * (pages // 2))
        f.write(np.random.default_rng(1).bytes(3 * PAGE))


def all_rows(path: Path) -> dict[int, tuple[int, int, bytes]]:
    db = sqlite3.connect(path)
    try:
        return {r[0]: r[1:] for r in db.execute("SELECT seq, series_id, ts_ns, vals FROM samples")}
    finally:
        db.close()


@pytest.mark.parametrize("damage", [truncate_half, garble_pages, cut_tail, zero_length])
async def test_a_damaged_journal_is_moved_aside_and_a_fresh_one_starts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Callable[[Path], None]) -> None:
    path = tmp_path / "j.db"
    await fill(path, 3000)
    damage(path)
    damaged = path.read_bytes()
    caplog.set_level(logging.INFO, "pedf.journal")
    async with Journal(path) as j:
        st = j.stats()
        assert st.rows == 0 and st.head_seq == 0 and st.recovered_from_damage == 1
        sid = await j.series_id(WIDE)
        assert await j.append_many([wide(sid, i) for i in range(10)]) == 10
        assert [r.seq for r in await j.read("influx", 100)] == list(range(1, 11))
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, caplog.text
    assert "is damaged" in errors[0].message and "pedf journal recover" in errors[0].message
    aside = sorted(tmp_path.glob("j.db.damaged-*"))
    assert [p.name.endswith(("-wal", "-shm")) for p in aside] == [False], aside
    assert aside[0].read_bytes() == damaged  # kept as it was: nothing deleted, nothing changed
    assert str(aside[0]) in errors[0].message
    caplog.clear()
    async with Journal(path) as j:  # the fresh journal is sound: no second recovery, the count stays
        assert j.stats().recovered_from_damage == 1 and j.stats().rows == 10
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_new_empty_file_without_history_opens_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "j.db").touch()
    async with Journal(tmp_path / "j.db") as j:
        assert j.stats().recovered_from_damage == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def crash_image(live: Path, dest: Path) -> None:
    """The journal's files as a power cut would leave them (copied while it is open)."""
    dest.parent.mkdir()
    for suffix in ("", "-wal"):
        shutil.copy(f"{live}{suffix}", f"{dest}{suffix}")


async def test_commits_a_garbled_wal_frame_drops_are_reported_and_the_wal_kept(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    live, crash = tmp_path / "live" / "j.db", tmp_path / "crash" / "j.db"
    async with Journal(live) as j:
        sid = await j.series_id(WIDE)
        for g in range(40):
            await j.append_many([wide(sid, 50 * g + i) for i in range(50)])
        crash_image(live, crash)
    wal = Path(f"{crash}-wal")
    frames = (wal.stat().st_size - 32) // (24 + PAGE)
    assert frames > 100, "the commits must still be in the WAL"
    with wal.open("r+b") as f:  # one frame in the middle: its page, not its header
        f.seek(32 + (frames // 2) * (24 + PAGE) + 24 + 100)
        f.write(b"\xde\xad\xbe\xef" * 8)
    garbled = wal.read_bytes()
    caplog.set_level(logging.INFO, "pedf.journal")
    async with Journal(crash) as j:
        st = j.stats()
        assert 0 < st.rows < 2000  # the commits before the bad frame were replayed and kept
        assert st.lost_commits_detected == 1 and st.recovered_from_damage == 0
    errors = [r.message for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "could not replay" in errors[0], caplog.text
    copies = list(crash.parent.glob("j.db-wal.unreplayed-*"))
    assert len(copies) == 1 and copies[0].read_bytes() == garbled and str(copies[0]) in errors[0]


async def test_an_incomplete_last_wal_transaction_is_a_warning_not_a_loss(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    live, torn = tmp_path / "live" / "j.db", tmp_path / "torn" / "j.db"
    async with Journal(live) as j:
        sid = await j.series_id(WIDE)
        for g in range(10):
            await j.append_many([wide(sid, 50 * g + i) for i in range(50)])
        crash_image(live, torn)
    wal = Path(f"{torn}-wal")
    with wal.open("r+b") as f:  # the last frame: a commit cut off by the crash before it returned
        f.seek(wal.stat().st_size - PAGE // 2)
        f.write(b"\0" * (PAGE // 2))
    caplog.set_level(logging.INFO, "pedf.journal")
    async with Journal(torn) as j:
        assert j.stats().rows == 450 and j.stats().lost_commits_detected == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "the last transaction in its WAL is incomplete" in caplog.text


async def test_a_journal_shorter_than_its_marker_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "j.db"
    await fill(path, 500)
    shutil.copy(path, tmp_path / "old.db")
    await fill(path, 500, start=500)
    shutil.copy(tmp_path / "old.db", path)  # the file lost its last 500 rows (a restored copy, a lost WAL)
    caplog.set_level(logging.INFO, "pedf.journal")
    async with Journal(path) as j:
        assert j.stats().rows == 500 and j.stats().lost_commits_detected == 1
    assert "ends at seq 500 but seq 1000 had been committed" in caplog.text


async def test_read_errors_in_the_delivery_path_are_journal_errors(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    await fill(path, 20_000, group=1000)
    async with Journal(path) as j:
        garble_pages(path)  # beneath the open journal, after its check at open
        with pytest.raises(JournalError, match="malformed"):
            while rows := await j.read("influx", 5000):
                await j.ack("influx", rows[-1].seq)


async def test_a_row_that_cannot_be_decoded_is_set_apart_and_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "j.db"
    await fill(path, 100)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE samples SET vals = 'not a blob' WHERE seq = 50")
    db.execute("UPDATE samples SET vals = x'0102030405' WHERE seq = 51")
    db.execute("UPDATE samples SET series_id = 99 WHERE seq = 52")
    db.close()
    async with Journal(path) as j:
        rows = await j.read("influx", 1000)
        assert [r.seq for r in rows] == [s for s in range(1, 101) if s not in (50, 51, 52)]
        assert await j.read("influx", 1000) and j.stats().unreadable_rows == 3  # counted once each
        assert [r.seq for r in await j.read("influx", 2, after_seq=49)] == [53]  # a batch of bad rows: read past
    assert "cannot be decoded" in caplog.text


def pedf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli._main", *args], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.services
@pytest.mark.parametrize("how", ["--row-by-row", "--any"])
async def test_pedf_journal_recover_salvages_the_readable_rows(tmp_path: Path, how: str) -> None:
    path = tmp_path / "j.db"
    async with Journal(path) as j:
        sid = await j.series_id(WIDE)
        for g in range(0, 3000, 100):
            await j.append_many([wide(sid, i) for i in range(g, g + 100)])
        await j.ack("influx", 1200)
    good = pedf("journal", "check", str(path))
    assert good.returncode == 0 and "3000 rows" in good.stdout, good.stdout + good.stderr
    original = all_rows(path)
    garble_pages(path)
    bad = pedf("journal", "check", str(path))
    assert bad.returncode == 1 and "damaged" in bad.stdout and "PROBLEM" in bad.stdout, bad.stdout + bad.stderr
    out = tmp_path / "recovered.db"
    # --any: the sqlite3 shell's .recover where it is installed and works, else row by row
    done = pedf("journal", "recover", str(path), "--out", str(out), *([how] if how != "--any" else []))
    assert done.returncode == 0, done.stderr
    salvaged = all_rows(out)
    assert len(salvaged) >= 2700, f"only {len(salvaged)} of 3000 rows salvaged: {done.stdout}"
    assert all(original[seq] == row for seq, row in salvaged.items())  # exactly what was stored
    async with Journal(out) as j:  # a journal of this version, its cursor kept
        assert j.stats().recovered_from_damage == 0 and j.cursor("influx") == 1200
        assert j.series(sid) == WIDE
    assert pedf("journal", "check", str(out)).returncode == 0
    assert pedf("journal", "recover", str(path), "--out", str(out)).returncode == 2  # never overwrites


async def test_journal_files_and_the_folders_it_creates_are_private(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    path = shared / "pedf" / "var" / "j.db"
    old = os.umask(0o022)
    try:
        await fill(path, 10, housekeeping_interval_s=0.01)
        async with Journal(path) as j:  # open: -wal and -shm exist
            await j.append_many([wide(1, 20)])
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
    finally:
        os.umask(old)
    assert modes == {"j.db": 0o600, "j.db-wal": 0o600, "j.db-shm": 0o600, "j.db.state": 0o600}, modes
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # an existing folder is the operator's


async def test_synchronous_normal_warns_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "pedf.journal")
    async with Journal(tmp_path / "j.db", synchronous="NORMAL"):
        pass
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "synchronous: NORMAL" in warnings[0] and "power loss" in warnings[0]
    caplog.clear()
    async with Journal(tmp_path / "j.db"):
        pass
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_pedf_status_shows_the_disk_and_a_recovery() -> None:
    from gateway.journal import JournalStats
    from gateway.service import GatewayStatus, render_status

    journal = JournalStats(rows=3, bytes=2_000_000, head_seq=3, pending=0, appended=3, committed=3, commits=1,
                           failed_commits=0, dropped_rows=0, dropped_undelivered=0, free_bytes=500_000,
                           reserve_bytes=1_000_000, effective_max_bytes=3_000_000, low_space=True,
                           retention_deleted=7, recovered_from_damage=1)
    status = GatewayStatus(site="s", uptime_s=5.0, devices={}, devices_up=0, devices_total=0, samples=0,
                           samples_per_s=0.0, overruns=0, commit_failures=0, journal=journal, sinks={})
    assert GatewayStatus.from_json(status.to_json()) == status
    text = render_status(status)
    assert "2.0 MB of 3.0 MB in force, disk free 0.5 MB (UNDER THE RESERVE)" in text
    assert "retention deleted 7" in text and "JOURNAL: 1 recovered from damage" in text


@pytest.mark.services
def test_pedf_run_on_a_damaged_journal_starts_afresh_and_says_so(tmp_path: Path) -> None:
    from tests.harness import GatewayProcess, wait_until, write_site
    from tests.processes import free_port

    journal = tmp_path / "journal.db"
    journal.write_bytes(b"garbled by a power cut " * 4096)
    api_port = free_port()
    site = write_site(tmp_path / "site.yaml", [{"name": "d0", "profile": "bench60", "port": free_port()}],
                      journal=journal, api_port=api_port)
    with GatewayProcess(tmp_path, site, api_port) as gw:  # before: a traceback at every start
        status = wait_until(lambda: gw.status()["journal"], 20, what="the status")
        assert status["recovered_from_damage"] == 1 and status["rows"] == 0
        assert gw.terminate() == 0
    log = (tmp_path / "gateway.log").read_text()
    assert "is damaged" in log and "pedf journal recover" in log and "Traceback" not in log
    assert [p.read_bytes()[:23] for p in tmp_path.glob("journal.db.damaged-*")] == [b"garbled by a power cut "]
