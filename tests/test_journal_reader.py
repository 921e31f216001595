"""The journal's read-only view for analysis: the rows of one period through the time index, only the fields asked for, beside a writer that keeps committing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from gateway.errors import JournalError
from gateway.journal import Journal, JournalReader
from gateway.series import Sample, SeriesKey

T0 = 1_700_000_000 * 10**9
METER = SeriesKey("meter", (("device", "m"), ("site", "s")), ("p_kw", "e_import_kwh", "v_v"), ("float",) * 3)
OTHER = SeriesKey("meter", (("device", "n"), ("site", "s")), ("p_kw",), ("float",))


async def test_columns_of_one_period_and_only_the_fields_asked(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with Journal(path, synchronous="NORMAL") as j:
        m, o = await j.series_id(METER), await j.series_id(OTHER)
        # out of order in the table: a late reading committed after later ones
        rows = [Sample(m, T0 + i * 10**9, np.array([float(i), 100.0 + i, np.nan if i == 3 else 230.0]))
                for i in (0, 1, 2, 4, 5, 3, 6)]
        await j.append_many(rows + [Sample(o, T0 + i * 10**9, np.array([-1.0])) for i in range(7)])
        with JournalReader(path) as r:
            ts, cols = r.columns(m, ("e_import_kwh", "v_v", "missing_kw"), T0 + 2 * 10**9, T0 + 6 * 10**9)
    assert ts.tolist() == [T0 + i * 10**9 for i in (2, 3, 4, 5)]
    assert sorted(cols) == ["e_import_kwh", "v_v"]  # a field the series lacks is left out
    assert cols["e_import_kwh"].tolist() == [102.0, 103.0, 104.0, 105.0]
    assert np.isnan(cols["v_v"][1]) and cols["v_v"][0] == 230.0


def test_a_period_is_a_range_scan_of_the_index(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def make() -> None:
        async with Journal(path) as j:
            await j.series_id(METER)

    asyncio.run(make())
    with JournalReader(path) as r:
        plan = " ".join(str(row[-1]) for row in r._conn().execute(
            "EXPLAIN QUERY PLAN SELECT s.series_id, s.ts_ns, substr(s.vals, w.off, 8) FROM samples AS s "
            "CROSS JOIN temp.wanted AS w ON w.sid = s.series_id WHERE s.ts_ns >= ? AND s.ts_ns < ?", (0, 1)))
    # the period's rows through the time index, each wanted series found by its key: no scan of either
    assert "USING INDEX samples_ts" in plan and "PRIMARY KEY" in plan and "SCAN" not in plan, plan


async def test_reading_beside_a_writer_that_keeps_committing(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with Journal(path, synchronous="NORMAL", commit_interval_s=0.005) as j:
        m = await j.series_id(METER)
        await j.append_many([Sample(m, T0 + i, np.array([1.0, float(i), 2.0])) for i in range(1000)])
        reader = JournalReader(path).open()
        try:
            writing = asyncio.gather(*[j.append(Sample(m, T0 + 1000 + i, np.array([1.0, 0.0, 2.0])))
                                       for i in range(1000)])
            _, cols = await asyncio.to_thread(reader.columns, m, ("e_import_kwh",), T0, T0 + 1000)
            assert len(await writing) == 1000  # the writer was never blocked by the reader
        finally:
            reader.close()
    assert cols["e_import_kwh"].tolist() == [float(i) for i in range(1000)]


def test_no_journal_is_a_journal_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal"):
        JournalReader(tmp_path / "none.db").open()
