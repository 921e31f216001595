"""Delivery: journal rows after a sink's cursor → line protocol → the database → cursor moves.

At-least-once (DESIGN.md, Guarantees): the cursor moves only after the database accepted every line
of a batch (or a line was dead-lettered), so a crash replays at most the batch in flight; InfluxDB
writes of the same series and timestamp overwrite, so a replay is harmless.

- Batching: a batch goes out when it holds ``batch_lines`` rows or its first row has waited
  ``max_age_s``; a backlog goes out in full batches at once.
- Outages (:class:`SinkUnavailable`): retried with capped exponential backoff and full jitter,
  ``sleep = uniform(0, min(cap, base·2^attempt))`` ("Exponential Backoff And Jitter", AWS
  Architecture Blog, 2015), or as long as the server's ``Retry-After`` asks.
- Rejections (:class:`SinkRejected`, a 4xx): the batch is bisected until the lines the server refuses
  are isolated; only those are dead-lettered with the server's reason, the rest are written.  A
  rejected batch is never retried as it is.
- Cancellation: one last flush of what is pending, bounded by ``final_flush_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

from gateway.errors import JournalError, SinkRejected, SinkUnavailable
from gateway.journal import Journal, JournalRow
from gateway.sinks._lineprotocol import LineEncoder
from gateway.sinks._writer import LineWriter

_MAX_RETRY_AFTER_S = 600.0  # a server asking for longer is still asked again after ten minutes


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    sent_lines: int
    batches: int
    retries: int
    dead_lettered: int
    last_error: str | None
    backlog: int
    cursor: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Delivery:
    """Feeds one sink from the journal until cancelled."""

    def __init__(self, name: str, journal: Journal, writer: LineWriter, encoder: LineEncoder, *,
                 batch_lines: int = 5000, max_age_s: float = 1.0, backoff_initial_s: float = 0.5,
                 backoff_max_s: float = 30.0, final_flush_s: float = 5.0,
                 logger: logging.Logger | None = None) -> None:
        self.name = name
        self.journal = journal
        self.writer = writer
        self.encoder = encoder
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
            with contextlib.suppress(Exception):
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
        body = self.encoder.encode_lines_bytes(rows)
        if body:
            await self._deliver(body)
            self._batches += 1
        await self.journal.ack(self.name, rows[-1].seq)

    async def _deliver(self, body: bytes) -> None:
        """Write ``body``; on a rejection halve it until each refused line is dead-lettered alone."""
        try:
            await self._write_until_accepted(body)
        except SinkRejected as exc:
            lines = body.split(b"\n")
            if len(lines) == 1:
                await self._dead_letter(body, exc)
                return
            mid = len(lines) // 2
            await self._deliver(b"\n".join(lines[:mid]))
            await self._deliver(b"\n".join(lines[mid:]))
            return
        self._sent_lines += body.count(b"\n") + 1

    async def _dead_letter(self, raw: bytes, exc: SinkRejected) -> None:
        line = raw.decode(errors="replace")
        reason = str(exc)
        try:
            await self.journal.dead_letter(self.name, line, reason)
        except JournalError:
            self.log.error("dead letter of %s not stored: %s: %s", self.name, reason, line[:200])
            raise
        self._dead += 1
        self._last_error = reason
        self.log.error("line rejected by %s and dead-lettered: %s", self.name, reason)

    async def _write_until_accepted(self, body: bytes) -> None:
        attempt = 0
        while True:
            try:
                await self.writer.write(body)
            except SinkUnavailable as exc:
                self._retries += 1
                self._last_error = str(exc)
                delay = exc.retry_after_s
                if delay is None:
                    ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** min(attempt, 32))
                    delay = random.uniform(0, ceiling)
                if attempt == 0 or attempt % 10 == 0:
                    self.log.warning("%s unavailable (attempt %d), retrying in %.2f s: %s", self.name,
                                     attempt + 1, delay, exc)
                attempt += 1
                await asyncio.sleep(min(delay, _MAX_RETRY_AFTER_S))
                continue
            if attempt:
                self.log.info("%s accepted a batch after %d retries", self.name, attempt)
            return
