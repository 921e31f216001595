"""Journal throughput: fields/s appended and committed, 60-field polls, group commit.

Method: ``--polls`` polls of a 60-field series are appended as fast as the caller can (the pollers'
pattern: one ``append`` per poll, futures awaited later), and the clock stops when the last future has
resolved, i.e. when everything is committed (fsync'd under FULL).  Printed per synchronous mode:
fields/s committed, polls/s, commits (transactions), mean polls per commit, bytes per poll on disk.
A second figure appends paced in 20 chunks to show group commit under a steady stream.
Run from the repository root: ``.venv/bin/python -m benchmarks.bench_journal`` (a few seconds; uses a
temp dir on the same disk as /tmp).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

from gateway.journal import Journal
from gateway.series import Sample, SeriesKey

WIDTH = 60
KEY = SeriesKey("inverter", (("device", "inv-01"), ("site", "s1")), tuple(f"f{i}_kw" for i in range(WIDTH)),
                ("float",) * WIDTH)


async def burst(path: Path, sync: str, polls: list[Sample]) -> tuple[float, Journal]:
    journal = Journal(path, synchronous=sync)  # type: ignore[arg-type]
    await journal.open()
    sid = await journal.series_id(KEY)
    for s in polls:
        s.series_id = sid
    t = time.perf_counter()
    futs = [journal.append(s) for s in polls]
    await asyncio.gather(*futs)
    elapsed = time.perf_counter() - t
    await journal.close()
    return elapsed, journal


async def paced(path: Path, polls: list[Sample], chunks: int = 20) -> tuple[float, Journal]:
    journal = Journal(path)
    await journal.open()
    sid = await journal.series_id(KEY)
    t = time.perf_counter()
    futs = []
    step = len(polls) // chunks
    for c in range(chunks):
        for s in polls[c * step:(c + 1) * step]:
            s.series_id = sid
            futs.append(journal.append(s))
        await asyncio.sleep(0.01)
    await asyncio.gather(*futs)
    elapsed = time.perf_counter() - t
    await journal.close()
    return elapsed, journal


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--polls", type=int, default=50_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    values = rng.random((args.polls, WIDTH)) * 1000
    print(f"{args.polls} polls × {WIDTH} fields, commit_interval_s 0.02")
    print(f"{'mode':<14} {'fields/s':>12} {'polls/s':>10} {'commits':>8} {'polls/commit':>13} {'B/poll':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("FULL burst", lambda p: burst(p, "FULL", polls)),
                ("NORMAL burst", lambda p: burst(p, "NORMAL", polls)),
                ("FULL paced", lambda p: paced(p, polls))]
        for i, (label, fn) in enumerate(runs):
            polls = [Sample(0, 1_700_000_000_000_000_000 + k * 10**9, values[k]) for k in range(args.polls)]
            path = Path(tmp) / f"bench{i}.db"
            elapsed, j = asyncio.run(fn(path))
            st = j.stats()
            print(f"{label:<14} {args.polls * WIDTH / elapsed:>12,.0f} {args.polls / elapsed:>10,.0f} "
                  f"{st.commits:>8} {st.committed / st.commits:>13,.0f} {st.bytes / st.rows:>7,.0f}")


if __name__ == "__main__":
    main()
