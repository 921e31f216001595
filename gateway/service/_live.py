"""Live analytics from the gateway's side: the schedule of interval closes, the analytics worker
process that computes them (:mod:`gateway.analysis._worker`), and the journal appends of what it
returns.  Nothing here imports the analytics: numba lives in the worker only.

At each interval end (aligned to the wall clock in UTC) plus a short delay for the readings that
close it to be committed, the worker gets the interval; its records come back as samples appended
to the journal, so every sink delivers them like readings (at-least-once, replay-safe).  A worker
that dies or hangs is counted, killed and started again at the next close; the pollers never wait
for it.  The worker is started, and its kernels loaded, before the first poll.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import pickle
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.config import Site
from gateway.errors import JournalError, PedfError
from gateway.journal import Journal
from gateway.series import Sample, SeriesKey

log = logging.getLogger("pedf.analytics")

#: a first run compiles every kernel (later runs load them from numba's cache in about a second)
READY_TIMEOUT_S = 300.0


class WorkerFailed(PedfError):
    """The analytics worker exited, hung or answered with something else than a result."""


@dataclass(frozen=True, slots=True)
class LiveAnalyticsStats:
    intervals_done: int
    errors: int
    worker_starts: int
    last_close_s: float | None  # wall time of the last close in the worker
    last_close_cpu_s: float | None
    worker_rss_bytes: int | None
    worker_peak_rss_bytes: int | None
    last_error: str


class LiveAnalytics:
    """``await live.start()`` before polling, then ``await live.run(stop)`` beside the pollers."""

    def __init__(self, site: Site, journal: Journal, *, delay_s: float | None = None) -> None:
        section = site.config.analytics
        if section is None:
            raise ValueError("live analytics need an analytics: section in the site file")
        self.site, self.journal = site, journal
        self.interval_ns = section.interval_ns
        longest_poll = max((d.section.interval_s for d in site.devices), default=1.0)
        # the readings that close an interval arrive within one poll, then wait for the group commit
        self.delay_ns = int((delay_s if delay_s is not None else 2 * longest_poll + 1.0) * 1e9)
        # a close that takes longer than an interval is stuck: the next one would queue behind it
        self.close_timeout_s = max(30.0, self.interval_ns / 1e9)
        self._proc: asyncio.subprocess.Process | None = None
        self._sids: dict[SeriesKey, int] = {}
        self.intervals_done = self.errors = self.worker_starts = 0
        self.last: dict[str, Any] = {}
        self.last_error = ""

    def stats(self) -> LiveAnalyticsStats:
        last = self.last
        return LiveAnalyticsStats(self.intervals_done, self.errors, self.worker_starts, last.get("wall_s"),
                                  last.get("cpu_s"), last.get("rss_bytes"), last.get("peak_rss_bytes"),
                                  self.last_error)

    # -- the worker ----------------------------------------------------------------------------
    async def start(self) -> bool:
        """Start the worker and wait until its kernels are loaded; False (logged) if it cannot."""
        try:
            await self._start_worker()
        except WorkerFailed as exc:
            self._failed(f"analytics worker did not start: {exc}")
            return False
        return True

    async def _start_worker(self) -> None:
        await self.close()
        self.worker_starts += 1
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.analysis._worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 26)
        site = base64.b64encode(pickle.dumps(self.site)).decode()
        ready = await self._ask({"site": site, "journal": str(self.journal.path)}, READY_TIMEOUT_S)
        if not ready.get("ready"):
            raise WorkerFailed(f"unexpected answer {str(ready)[:200]}")
        self.last = ready
        log.info("analytics worker ready", extra={"fields": {
            "pid": self._proc.pid, "warm_up_s": round(ready["warm_up_s"], 3), "rss_mb": ready["rss_bytes"] >> 20}})

    async def _ask(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None or proc.returncode is not None:
            raise WorkerFailed("the worker is not running")
        try:
            proc.stdin.write((json.dumps(message) + "\n").encode())
            async with asyncio.timeout(timeout_s):
                await proc.stdin.drain()
                line = await proc.stdout.readline()
        except TimeoutError:
            raise WorkerFailed(f"no answer within {timeout_s:.0f} s") from None
        except (ConnectionError, ValueError) as exc:  # a pipe closed by a dead worker, a line over the limit
            raise WorkerFailed(f"{type(exc).__name__}: {exc}") from None
        if not line:
            raise WorkerFailed(f"the worker exited ({await proc.wait()})")
        try:
            return json.loads(line)
        except ValueError:
            raise WorkerFailed(f"not a JSON answer: {line[:200]!r}") from None

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # end of input ends the worker
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

    def _failed(self, message: str) -> None:
        self.errors += 1
        self.last_error = message
        log.error(message)

    # -- the schedule --------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Close each interval once it has ended, until ``stop`` is set; the worker is closed after."""
        try:
            next_end = (time.time_ns() // self.interval_ns + 1) * self.interval_ns
            while not stop.is_set():
                wait_s = (next_end + self.delay_ns - time.time_ns()) / 1e9
                if wait_s > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait_s):
                            await stop.wait()
                    if stop.is_set():
                        return
                await self.close_interval(next_end - self.interval_ns, next_end)
                # after a long pause (suspend, overload) continue with the latest closed interval
                latest = (time.time_ns() - self.delay_ns) // self.interval_ns * self.interval_ns
                next_end = max(next_end + self.interval_ns, latest)
        finally:
            await self.close()

    async def close_interval(self, start_ns: int, end_ns: int) -> int:
        """Have the worker compute [start_ns, end_ns) and append its records; returns how many."""
        try:
            if self._proc is None or self._proc.returncode is not None:
                await self._start_worker()
            answer = await self._ask({"start_ns": start_ns, "end_ns": end_ns}, self.close_timeout_s)
        except WorkerFailed as exc:
            self._failed(f"live analytics of the interval at {start_ns} failed: {exc}")
            await self.close()  # a worker that hung or broke is replaced at the next close
            return 0
        if "error" in answer:
            self._failed(f"live analytics of the interval at {start_ns} failed: {answer['error']}")
            log.debug("analytics worker traceback", extra={"fields": {"traceback": answer.get("traceback", "")}})
            return 0
        self.last = answer
        try:
            await asyncio.gather(*[await self._append(measurement, tags, int(ts_ns), fields)
                                   for measurement, tags, ts_ns, fields in answer["records"]])
        except JournalError as exc:
            self._failed(f"live analytics of the interval at {start_ns} not stored: {exc}")
            return 0
        self.intervals_done += 1
        log.debug("interval KPIs appended", extra={"fields": {
            "start_ns": start_ns, "records": len(answer["records"]), "wall_s": round(answer["wall_s"], 3)}})
        return len(answer["records"])

    async def _append(self, measurement: str, tags: dict[str, str], ts_ns: int,
                      fields: dict[str, float]) -> asyncio.Future[int]:
        names = sorted(fields)
        key = SeriesKey(measurement, tuple(sorted(tags.items())), tuple(names), tuple("float" for _ in names))
        sid = self._sids.get(key)
        if sid is None:
            sid = self._sids[key] = await self.journal.series_id(key)
        values = np.array([fields[f] for f in names], dtype=np.float64)  # NaN crosses the pipe as NaN
        return self.journal.append(Sample(sid, ts_ns, values))
