"""Group commit: appends queue up, one transaction per ``commit_interval_s``, futures resolve after COMMIT.

Why group commit: ``synchronous=FULL`` costs ~1k commits/s here (DESIGN.md, Known traps); paid once
per group, every append made within the interval shares one fsync, and an MQTT acknowledgement waits
for its group's commit, never for its own.

The contract of a future returned by :meth:`GroupCommitWriter.append`: its seq once the row's
transaction has committed, else an exception — never a seq for a row that is not on disk, never left
pending.  Three outcomes of a group:

- committed: every future gets its seq, even if the bookkeeping after the COMMIT (measuring the
  file, refreshing sinks' oldest timestamps, the size cap) then fails;
- the transaction failed and was rolled back (a ``JournalError`` from the commit: disk full, database
  locked or read-only): the group's futures get that error and the writer goes on — the sources send
  again, and the next group may well commit;
- anything else (the bookkeeping after a COMMIT failing, an error the commit does not expect, such as
  a sample whose values are not numbers): the writer *stops*.  Every future not yet resolved gets a
  ``JournalError("journal writer stopped: …")`` wrapping the cause, every later append raises it at
  once, and :meth:`GroupCommitWriter.run` raises it to its parent.

Why stop rather than restart the loop: a journal whose state after a commit is unknown can
acknowledge nothing safely; restarting the loop in place would run on with counters, head and cap
state that no longer match the disk.  The process supervisor (systemd ``Restart=``) restarts the
whole service and SQLite recovers the committed transactions from the WAL — the path the power-cut
and ``kill -9`` tests already prove.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.errors import JournalError
from gateway.series import Sample

# The group's first seq, and the bookkeeping error that followed its COMMIT (None if all went well).
CommitGroup = Callable[[list[Sample], dict[bytes, int]], Awaitable[tuple[int, BaseException | None]]]


class GroupCommitWriter:
    def __init__(self, commit: CommitGroup, interval_s: float, log: logging.Logger) -> None:
        self._commit = commit
        self.interval_s = interval_s
        self.log = log
        self.pending: list[tuple[Sample, asyncio.Future[int]]] = []
        # MQTT redelivery dedup: (topic, payload) digest → first arrival ns, committed with the samples
        self.pending_arrivals: dict[bytes, int] = {}
        self.appended = 0
        self.failed_commits = 0
        self.failure: JournalError | None = None  # why the writer stopped
        self._in_flight: list[tuple[Sample, asyncio.Future[int]]] = []
        self._accepting = False
        self._closing = False
        self._wake = asyncio.Event()
        self._committed = asyncio.Event()

    def start(self) -> None:
        """Accept appends (before :meth:`run` is scheduled, so none is refused in between)."""
        self.failure = None
        self._accepting, self._closing = True, False
        self._wake, self._committed = asyncio.Event(), asyncio.Event()  # of this event loop

    def stop(self) -> None:
        """Refuse new appends; :meth:`run` commits what is pending, then returns."""
        self._accepting, self._closing = False, True
        self._wake.set()

    def append(self, sample: Sample, arrival: tuple[bytes, int] | None) -> asyncio.Future[int]:
        if not self._accepting:
            if self.failure is not None:
                raise JournalError(str(self.failure)) from self.failure.__cause__
            raise JournalError("journal is not open")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pending.append((sample, fut))
        if arrival is not None:
            self.pending_arrivals[arrival[0]] = arrival[1]
        self.appended += 1
        self._wake.set()
        return fut

    async def wait_committed(self) -> None:
        """Until the next group commits."""
        await self._committed.wait()

    async def run(self) -> None:
        """The commit loop, until :meth:`stop` and nothing pending; raises why it stopped otherwise."""
        try:
            while not self._closing or self.pending:
                await self._wake.wait()
                if not self._closing:
                    await asyncio.sleep(self.interval_s)
                self._wake.clear()
                await self._flush()
        except Exception as exc:  # backstop: whatever ends the loop stops the writer loudly, futures failed
            raise self._halt(JournalError(f"journal writer stopped: {exc}"), exc) from exc
        except BaseException as exc:  # cancelled mid-commit: the thread may yet commit, but unconfirmed
            self._halt(JournalError(f"journal writer stopped: {type(exc).__name__} before a commit was confirmed"),
                       exc)
            raise

    async def _flush(self) -> None:
        group = self._in_flight = self.pending
        self.pending = []
        arrivals, self.pending_arrivals = self.pending_arrivals, {}
        if not group:
            return
        try:
            first, trouble = await self._commit([s for s, _ in group], arrivals)
        except JournalError as exc:  # rolled back: nothing of this group is on disk; the next may commit
            self._in_flight = []
            self.failed_commits += 1
            self.log.error("journal commit failed, %d polls not acknowledged: %s", len(group), exc)
            for _, fut in group:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self._in_flight = []
        for i, (_, fut) in enumerate(group):
            if not fut.done():
                fut.set_result(first + i)
        self._committed.set()
        self._committed = asyncio.Event()
        if trouble is not None:
            raise trouble

    def _halt(self, error: JournalError, cause: BaseException) -> JournalError:
        """Stop for good: refuse appends and fail every future not resolved, with ``error``."""
        error.__cause__ = cause
        self.failure = error
        self._accepting = False
        unresolved = self._in_flight + self.pending
        self._in_flight, self.pending, self.pending_arrivals = [], [], {}
        for _, fut in unresolved:
            if not fut.done():
                fut.set_exception(error)
        if isinstance(cause, Exception):
            self.log.critical("%s; %d polls not acknowledged", error, len(unresolved))
        return error
