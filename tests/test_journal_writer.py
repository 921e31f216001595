"""A journal writer that cannot go on stops loudly: its owner sees the error, nothing is left hanging,
and no poll is acknowledged that is not on disk."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from gateway.errors import JournalError
from gateway.journal import Journal
from gateway.series import Sample, SeriesKey

KEY = SeriesKey("meter", (("site", "s1"),), ("p_kw", "q_kvar"), ("float", "float"))


def sample(sid: int, i: int) -> Sample:
    return Sample(sid, 1_700_000_000_000_000_000 + i * 1_000_000_000, np.array([float(i), -float(i)]))


def deny_page_count(action: int, arg1: str | None, *_: object) -> int:
    """SQLite authorizer: every statement works except ``PRAGMA page_count``, which the journal reads
    only after a COMMIT (to measure its size) — a failure in the bookkeeping after the commit."""
    return sqlite3.SQLITE_DENY if action == sqlite3.SQLITE_PRAGMA and arg1 == "page_count" else sqlite3.SQLITE_OK


def rows_on_disk(path: Path) -> dict[int, float]:
    with sqlite3.connect(path) as db:
        return {seq: float(np.frombuffer(vals)[0]) for seq, vals in db.execute("SELECT seq, vals FROM samples")}


def assert_acknowledged_means_committed(path: Path, futs: dict[int, asyncio.Future[int]]) -> int:
    """Every resolved future names a row on disk holding its sample; every failed one a JournalError
    and a sample that is not on disk.  Returns how many were acknowledged."""
    on_disk = rows_on_disk(path)
    stored = set(on_disk.values())
    acked = 0
    for i, fut in futs.items():
        assert fut.done()
        if fut.exception() is None:
            assert on_disk[fut.result()] == float(i)
            acked += 1
        else:
            assert isinstance(fut.exception(), JournalError)
            assert float(i) not in stored
    return acked


async def test_failure_after_commit_stops_the_writer_and_reaches_the_block(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    futs: dict[int, asyncio.Future[int]] = {}
    refused: list[JournalError] = []
    async with asyncio.timeout(10):  # today's failure mode is a hang: make it a failure
        with pytest.raises(JournalError, match="journal writer stopped") as stopped:
            async with Journal(path, commit_interval_s=0.01) as j:
                sid = await j.series_id(KEY)
                j.register_sink("influx")
                assert await j.append(sample(sid, 0)) == 1
                await j._run(lambda: j._db.set_authorizer(deny_page_count))
                busy = asyncio.get_running_loop().run_in_executor(j._pool, time.sleep, 0.3)
                futs.update((i, j.append(sample(sid, i))) for i in range(1, 4))
                await asyncio.sleep(0.1)  # their group waits for the journal thread: the next queues behind
                futs.update((i, j.append(sample(sid, i))) for i in range(4, 7))
                try:
                    await busy
                    await asyncio.sleep(30)  # the writer's failure cancels the block
                except asyncio.CancelledError:
                    with pytest.raises(JournalError, match="journal writer stopped") as late:
                        j.append(sample(sid, 99))
                    refused.append(late.value)
                    raise
    assert refused, "the block was not cancelled when its writer stopped"
    assert "not authorized" in str(stopped.value) and isinstance(stopped.value.__cause__, sqlite3.Error)
    assert [futs[i].result() for i in (1, 2, 3)] == [2, 3, 4]  # committed before the failure: acknowledged
    assert all("journal writer stopped" in str(futs[i].exception()) for i in (4, 5, 6))  # queued behind it
    assert assert_acknowledged_means_committed(path, futs) == 3
    with pytest.raises(JournalError, match="journal writer stopped"):
        j.append(sample(sid, 100))
    assert max(rows_on_disk(path)) == 4
    async with Journal(path) as again:  # a restart recovers from the WAL and carries on
        assert await again.append(sample(sid, 7)) == 5


async def test_close_reraises_the_writer_failure(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = Journal(path, commit_interval_s=0.005)
    async with asyncio.timeout(10):
        await j.open()
        sid = await j.series_id(KEY)
        await j._run(lambda: j._db.set_authorizer(deny_page_count))
        fut = j.append(sample(sid, 1))
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:  # open() made this task the writer's parent: its failure cancels us
            pass
        assert fut.result() == 1
        with pytest.raises(JournalError, match="journal writer stopped"):
            j.append(sample(sid, 2))
        with pytest.raises(JournalError, match="journal writer stopped"):
            await j.close()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    await j.close()  # closing again has nothing left to report


async def test_an_error_the_writer_does_not_expect_acknowledges_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    futs: dict[int, asyncio.Future[int]] = {}
    async with asyncio.timeout(10):
        with pytest.raises(JournalError, match="journal writer stopped"):
            async with Journal(path, commit_interval_s=0.01) as j:
                sid = await j.series_id(KEY)
                futs[0] = j.append(sample(sid, 0))
                await futs[0]
                futs.update((i, j.append(sample(sid, i))) for i in range(1, 4))
                futs[4] = j.append(Sample(sid, 0, np.array(["not", "numbers"])))  # a caller's bug
                await asyncio.sleep(30)
    assert futs[0].result() == 1
    assert all(isinstance(futs[i].exception(), JournalError) for i in range(1, 5))
    assert assert_acknowledged_means_committed(path, futs) == 1
    assert set(rows_on_disk(path)) == {1}


async def test_a_failed_transaction_is_not_a_stopped_writer(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with asyncio.timeout(10), Journal(path, commit_interval_s=0.005) as j:
        sid = await j.series_id(KEY)
        await j._run(lambda: j._db.execute("PRAGMA query_only=1"))  # SQLite refuses writes
        with pytest.raises(JournalError) as failed:
            await j.append(sample(sid, 1))
        assert "journal writer stopped" not in str(failed.value)
        await j._run(lambda: j._db.execute("PRAGMA query_only=0"))
        assert await j.append(sample(sid, 2)) == 1
        assert j.stats().failed_commits == 1
