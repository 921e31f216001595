"""Delivery: journal rows after a sink's cursor → a writer (the database, the broker) → cursor moves.

One loop for every sink: InfluxDB v1/v2 through :class:`LineProtocolRows` (rows → line protocol →
a :class:`~gateway.sinks._writer.LineWriter`), and the MQTT publisher, which takes the rows
themselves.  Batching, retries, dead letters, the final flush and the statistics are the same.

At-least-once (DESIGN.md, Guarantees): the cursor moves only after the database accepted every line
of a batch (or a line was dead-lettered), so a crash replays at most the batch in flight; InfluxDB
writes of the same series and timestamp overwrite, so a replay is harmless.

- Batching: a batch goes out when it holds ``batch_lines`` rows or its first row has waited
  ``max_age_s``; a backlog goes out in full batches at once.
- Outages (:class:`SinkUnavailable`): retried with capped exponential backoff and full jitter,
  ``sleep = uniform(0, min(cap, base·2^attempt))`` ("Exponential Backoff And Jitter", AWS
  Architecture Blog, 2015), or as long as the server's ``Retry-After`` asks.
- Rejections (:class:`SinkRejected`, a 4xx): the batch is bisected until the rows the server refuses
  are isolated (one row is one line of line protocol); only those are dead-lettered with the
  server's reason and their encoded line, the rest are written.  A rejected batch is never retried
  as it is.
- Cancellation: one last flush of what is pending, bounded by ``final_flush_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from drivers.backoff import Backoff
from gateway.errors import JournalError, SinkRejected, SinkUnavailable
from gateway.journal import Journal, JournalRow
from gateway.sinks._lineprotocol import LineEncoder
from gateway.sinks._writer import LineWriter

_MAX_RETRY_AFTER_S = 600.0  # a server asking for longer is still asked again after ten minutes


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    sent_lines: int  # lines for a database, messages for the MQTT publisher
    batches: int
    retries: int
    dead_lettered: int
    last_error: str | None
    backlog: int
    cursor: int


class RowWriter(Protocol):
    """What the delivery loop feeds: journal rows in, ``SinkUnavailable``/``SinkRejected`` out."""

    name: str

    async def write_rows(self, rows: Sequence[JournalRow]) -> int:
        """Deliver ``rows``; returns how many lines (or messages) went out."""
        ...

    def dead_letter_text(self, row: JournalRow) -> str:
        """What is kept of a refused row in the dead-letter table."""
        ...

    async def close(self) -> None: ...


class LineProtocolRows:
    """Rows → line protocol → a database writer (InfluxDB v1 ``/write``, the v2 API)."""

    def __init__(self, writer: LineWriter, encoder: LineEncoder) -> None:
        self.writer, self.encoder = writer, encoder
        self.name = writer.name

    async def write_rows(self, rows: Sequence[JournalRow]) -> int:
        body = self.encoder.encode_lines_bytes(rows)
        if not body:
            return 0
        await self.writer.write(body)
        return body.count(b"\n") + 1

    def dead_letter_text(self, row: JournalRow) -> str:
        return self.encoder.encode_lines_bytes([row]).decode(errors="replace")

    async def close(self) -> None:
        await self.writer.close()


class Delivery:
    """Feeds one sink from the journal until cancelled."""

    def __init__(self, name: str, journal: Journal, writer: RowWriter | LineWriter,
                 encoder: LineEncoder | None = None, *,
                 batch_lines: int = 5000, max_age_s: float = 1.0, backoff_initial_s: float = 0.5,
                 backoff_max_s: float = 30.0, final_flush_s: float = 5.0,
                 logger: logging.Logger | None = None) -> None:
        """``writer`` takes rows; a database writer (bytes of line protocol) comes with its ``encoder``."""
        self.name = name
        self.journal = journal
        if encoder is not None:
            writer = LineProtocolRows(writer, encoder)  # type: ignore[arg-type]
        elif not hasattr(writer, "write_rows"):
            raise TypeError(f"{name}: a line-protocol writer needs an encoder")
        self.writer: RowWriter = writer  # type: ignore[assignment]
        self.batch_lines = batch_lines
        self.max_age_s = max_age_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.final_flush_s = final_flush_s
        self.log = logger or logging.getLogger(f"pedf.sink.{name}")
        self._sent_lines = self._batches = self._retries = self._dead = 0
        self._last_error: str | None = None
        journal.register_sink(name)

    def stats(self) -> DeliveryStats:
        backlog = self.journal.stats().sinks.get(self.name)
        return DeliveryStats(self._sent_lines, self._batches, self._retries, self._dead, self._last_error,
                             backlog.backlog_rows if backlog else 0, self.journal.cursor(self.name))

    async def run(self) -> None:
        """Deliver until cancelled; on cancellation try once more to flush, within ``final_flush_s``."""
        try:
            while True:
                try:
                    rows = await self._next_batch()
                    await self._deliver_rows(rows)
                except JournalError as exc:  # the disk, not the sink: keep the task, try again later
                    self._last_error = str(exc)
                    self.log.error("%s: journal error, retrying in %.1f s: %s", self.name, self.backoff_max_s,
                                   exc)
                    await asyncio.sleep(self.backoff_max_s)
        except asyncio.CancelledError:
            # the last flush is best effort: what it cannot deliver stays in the journal for next time
            with contextlib.suppress(TimeoutError, JournalError):
                async with asyncio.timeout(self.final_flush_s):
                    while rows := await self.journal.read(self.name, self.batch_lines):
                        await self._deliver_rows(rows)
            raise
        finally:
            await self.writer.close()

    async def _next_batch(self) -> list[JournalRow]:
        """Rows after the cursor: a full batch, or whatever is there once the first row is max_age_s old."""
        rows = await self.journal.read(self.name, self.batch_lines)
        while not rows:
            await self.journal.wait_for_data(self.journal.stats().head_seq)
            rows = await self.journal.read(self.name, self.batch_lines)
        deadline = time.monotonic() + self.max_age_s
        while len(rows) < self.batch_lines:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # seqs are contiguous after the cursor: wait (on commits, no disk read) until the rest of a
            # full batch is committed or the deadline passes, then read once — not once per group commit
            need = self.batch_lines - len(rows)
            await self.journal.wait_for_data(rows[-1].seq + need - 1, remaining)
            more = await self.journal.read(self.name, need, after_seq=rows[-1].seq)
            if not more:
                break
            rows += more
        return rows

    async def _deliver_rows(self, rows: list[JournalRow]) -> None:
        await self._deliver(rows)
        self._batches += 1
        await self.journal.ack(self.name, rows[-1].seq)

    async def _deliver(self, rows: Sequence[JournalRow]) -> None:
        """Write ``rows``; on a rejection halve them until each refused row is dead-lettered alone."""
        try:
            self._sent_lines += await self._write_until_accepted(rows)
        except SinkRejected as exc:
            if len(rows) == 1:
                await self._dead_letter(rows[0], exc)
                return
            mid = len(rows) // 2
            await self._deliver(rows[:mid])
            await self._deliver(rows[mid:])

    async def _dead_letter(self, row: JournalRow, exc: SinkRejected) -> None:
        line = self.writer.dead_letter_text(row)
        reason = str(exc)
        try:
            await self.journal.dead_letter(self.name, line, reason)
        except JournalError:
            self.log.error("dead letter of %s not stored: %s: %s", self.name, reason, line[:200])
            raise
        self._dead += 1
        self._last_error = reason
        self.log.error("line rejected by %s and dead-lettered: %s", self.name, reason)

    async def _write_until_accepted(self, rows: Sequence[JournalRow]) -> int:
        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s)
        while True:
            try:
                sent = await self.writer.write_rows(rows)
            except SinkUnavailable as exc:
                self._retries += 1
                self._last_error = str(exc)
                attempt = backoff.attempt
                delay = backoff.next_delay() if exc.retry_after_s is None else exc.retry_after_s
                if attempt == 0 or attempt % 10 == 0:
                    self.log.warning("%s unavailable (attempt %d), retrying in %.2f s: %s", self.name,
                                     attempt + 1, delay, exc)
                await asyncio.sleep(min(delay, _MAX_RETRY_AFTER_S))
                continue
            if backoff.attempt:
                self.log.info("%s accepted a batch after %d retries", self.name, backoff.attempt)
            return sent
