"""The journal keeps every acknowledged poll, bounds its disk use and never acknowledges a failed commit."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gateway.errors import JournalError
from gateway.journal import Journal
from gateway.series import Sample, SeriesKey

ROOT = Path(__file__).resolve().parents[1]
KEY = SeriesKey("meter", (("building", "b1"), ("site", "s1")), ("p_kw", "n_i", "on_b", "model_s"),
                ("float", "int", "bool", "str"))
WIDE = SeriesKey("inverter", (("site", "s1"),), tuple(f"f{i}_kw" for i in range(60)), ("float",) * 60)


def sample(sid: int, i: int, width: int = 4) -> Sample:
    texts = (None, None, None, f"model {i}") if width == 4 else None
    ts = 1_700_000_000_000_000_000 + i * 1_000_000_000
    return Sample(sid, ts, np.arange(width, dtype=np.float64) + i, texts)


async def test_defaults_are_full_sync_and_wal(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.db") as j:
        assert await j.pragma("synchronous") == 2  # FULL
        assert await j.pragma("journal_mode") == "wal"
    async with Journal(tmp_path / "j.db", synchronous="NORMAL") as j:
        assert await j.pragma("synchronous") == 1


async def test_round_trip_cursor_and_replay_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with Journal(path) as j:
        sid = await j.series_id(KEY)
        assert await j.series_id(KEY) == sid
        seqs = await asyncio.gather(*(j.append(sample(sid, i)) for i in range(10)))
        assert seqs == list(range(1, 11))
        j.register_sink("influx")
        rows = await j.read("influx", 4)
        assert [r.seq for r in rows] == [1, 2, 3, 4]
        assert rows[2].values.tolist() == [2.0, 3.0, 4.0, 5.0]
        assert rows[2].texts == (None, None, None, "model 2")
        await j.ack("influx", 4)
        st = j.stats()
        assert st.sinks["influx"].cursor == 4 and st.sinks["influx"].backlog_rows == 6
        assert st.sinks["influx"].oldest_unsent_ns == rows[3].ts_ns + 1_000_000_000
        await j.read("influx", 100)  # read but never acknowledged: must come again
    async with Journal(path) as j:
        assert j.series(sid) == KEY
        assert await j.series_id(KEY) == sid
        rows = await j.read("influx", 100)
        assert [r.seq for r in rows] == list(range(5, 11))  # at-least-once: unacked rows come again
        j.register_sink("late")  # a new sink gets the whole backlog
        assert [r.seq for r in await j.read("late", 100)] == list(range(1, 11))
        assert await j.append(sample(sid, 99)) == 11  # seqs continue after the reopen


async def test_group_commit_puts_a_burst_in_few_transactions(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.db", commit_interval_s=0.05) as j:
        sid = await j.series_id(WIDE)
        last = await j.append_many([sample(sid, i, 60) for i in range(2000)])
        st = j.stats()
        assert last == 2000 and st.committed == 2000
        assert st.commits <= 2


async def test_failed_commit_acknowledges_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with Journal(path) as j:
        sid = await j.series_id(KEY)
        j.register_sink("influx")
        await j.append_many([sample(sid, i) for i in range(3)])
        await j.ack("influx", 2)
        with sqlite3.connect(path) as other:  # another writer breaks the disk for us
            other.execute("CREATE TRIGGER no_disk BEFORE INSERT ON samples "
                          "BEGIN SELECT RAISE(ABORT, 'disk gone'); END")
            other.execute("CREATE TRIGGER no_cursor BEFORE UPDATE ON cursors "
                          "BEGIN SELECT RAISE(ABORT, 'no'); END")
        futs = [j.append(sample(sid, i)) for i in range(3, 8)]
        results = await asyncio.gather(*futs, return_exceptions=True)
        assert all(isinstance(r, JournalError) for r in results)
        assert "disk gone" in str(results[0])
        with pytest.raises(JournalError):
            await j.ack("influx", 3)
        assert j.cursor("influx") == 2 and j.stats().sinks["influx"].cursor == 2
        assert [r.seq for r in await j.read("influx", 100)] == [3]
        assert j.stats().failed_commits == 1 and j.stats().committed == 3
        with sqlite3.connect(path) as other:
            other.execute("DROP TRIGGER no_disk")
            other.execute("DROP TRIGGER no_cursor")
        assert await j.append(sample(sid, 9)) == 4  # the failed group used no seqs
    async with Journal(path) as j:
        assert j.cursor("influx") == 2


async def test_cap_drops_oldest_counts_and_stays_bounded(tmp_path: Path, caplog) -> None:
    path = tmp_path / "j.db"
    cap = 400_000
    caplog.set_level(logging.WARNING, logger="pedf.journal")
    async with Journal(path, max_bytes=cap, synchronous="NORMAL") as j:
        sid = await j.series_id(WIDE)
        j.register_sink("influx")
        for chunk in range(20):  # ~20 × 100 rows × 480 B ≈ 1 MB, 2.5× the cap
            await j.append_many([sample(sid, chunk * 100 + i, 60) for i in range(100)])
            if chunk == 2:
                await j.ack("influx", 150)
        st = j.stats()
        assert st.dropped_rows > 0
        assert st.rows + st.dropped_rows == 2000
        assert st.dropped_undelivered == st.dropped_rows - 150
        assert st.bytes <= cap
        rows = await j.read("influx", 10_000)
        assert rows[0].seq == st.dropped_rows + 1 and rows[-1].seq == 2000  # the oldest went first
        assert st.sinks["influx"].backlog_rows == len(rows)
    assert any("cap" in r.message and "dropped" in r.message for r in caplog.records)
    assert path.stat().st_size <= cap * 1.2


async def test_query_returns_columns_per_series(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.db") as j:
        a, b = await j.series_id(KEY), await j.series_id(WIDE)
        await j.append_many([sample(a, i) for i in range(5)] + [sample(b, i, 60) for i in range(3)])
        out = {s.series_id: s for s in await j.query(start_ns=sample(a, 1).ts_ns)}
        assert out[a].values.shape == (4, 4) and out[b].values.shape == (2, 60)
        assert out[a].ts_ns.tolist() == [sample(a, i).ts_ns for i in range(1, 5)]
        assert out[b].values[1, 59] == 59 + 2
        only = await j.query(series_ids=[b])
        assert [s.series_id for s in only] == [b]


async def test_wait_for_data_wakes_on_commit(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.db") as j:
        sid = await j.series_id(KEY)
        assert await j.wait_for_data(0, timeout=0.05) is False
        waiter = asyncio.create_task(j.wait_for_data(0, timeout=5))
        await j.append(sample(sid, 1))
        assert await waiter is True


CHILD = textwrap.dedent("""
    import asyncio, sys
    import numpy as np
    from gateway.journal._journal import Journal
    from gateway.series import Sample, SeriesKey

    async def main():
        j = Journal(sys.argv[1], commit_interval_s=0.005)
        await j.open()
        sid = await j.series_id(SeriesKey("m", (), ("v",), ("float",)))
        i = 0
        while True:
            futs = [j.append(Sample(sid, i + k, np.array([float(i + k)]))) for k in range(7)]
            for k, fut in enumerate(futs):
                print(await fut, i + k, flush=True)
            i += 7

    asyncio.run(main())
""")


@pytest.mark.services
async def test_every_acknowledged_seq_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    acked: dict[int, int] = {}
    assert child.stdout is not None
    for line in child.stdout:
        seq, i = map(int, line.split())
        acked[seq] = i
        if len(acked) >= 400:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    async with Journal(path) as j:
        j.register_sink("check")
        rows = {r.seq: r for r in await j.read("check", 100_000)}
    assert len(acked) >= 400
    for seq, i in acked.items():
        assert rows[seq].values[0] == i
