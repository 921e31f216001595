"""A TCP→RTU converter for the tests: RTU frames from TCP clients go onto a "serial bus" — one TCP
connection to a real pymodbus server speaking RTU framing — one request at a time, and each answer
comes back after a delay chosen per request, as behind a slow serial line.

The bus is strictly sequential (a request waits until the one before it has been answered), as a
real RS-485 line is.  ``deliver="current"`` hands every answer to the TCP connection open at that
moment (a transparent converter: a reply that comes after the gateway reopened its socket lands on
the new connection; one that comes while no connection is open waits for the next, as in a
converter that buffers serial data); ``deliver="origin"`` only to the connection the request came
on, and drops it if that one is closed.  ``ignore`` lists function codes the unit does not answer
at all (as cheap meters do with function 08): such requests are recorded and never reach the bus.

A delay can be *aligned*: after it the answer waits for the next request to arrive and follows it
by ``ALIGN_S``, the worst moment for a master without transaction ids (the late answer lands while
a later request is waiting for its own).

Every request is recorded with the monotonic time it arrived and, for register reads, the first
register of its answer, so a test can trace each value the gateway accepted to its request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

REQUEST_SIZE = 8  # FC 01-06 and FC 08 sub-function 00 with two data bytes: what the poller sends
ALIGN_S = 0.005
ALIGN_WAIT_MAX_S = 3.0


@dataclass
class Exchange:
    seq: int
    function_code: int
    arrived: float  # time.monotonic() when the request reached the converter
    delay_s: float
    aligned: bool = False
    count: int = 0  # the request's quantity (or sub-function for FC 08)
    first_register: int | None = None  # FC 03/04 answers
    answered: float | None = None  # when the answer was handed to a TCP connection


class RtuConverter:
    """Serves on ``port`` (after :meth:`serve`); ``delay_of(seq)`` gives each request's extra delay
    and whether it is aligned."""

    def __init__(
        self,
        bus: tuple[str, int],
        delay_of: Callable[[int], tuple[float, bool]],
        *,
        deliver: Literal["current", "origin"] = "current",
        ignore: frozenset[int] = frozenset(),
    ) -> None:
        self.bus, self.delay_of, self.deliver, self.ignore = bus, delay_of, deliver, ignore
        self.exchanges: list[Exchange] = []
        self.connections = 0
        self._queue: asyncio.Queue[tuple[bytes, asyncio.StreamWriter, float]] = asyncio.Queue()
        self._current: asyncio.StreamWriter | None = None
        self._arrival = asyncio.Event()
        self._held: list[tuple[Exchange, bytes]] = []  # answers that came while no connection was open

    async def serve(self, host: str, port: int, ready: asyncio.Event) -> None:
        """Run until cancelled: the listening socket and the bus worker."""
        reader, writer = await asyncio.open_connection(*self.bus)
        server = await asyncio.start_server(self._client, host, port)
        ready.set()
        try:
            async with server, asyncio.TaskGroup() as tg:
                tg.create_task(self._bus_worker(reader, writer))
                await server.serve_forever()
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._current = writer
        for ex, answer in self._held:
            writer.write(answer)
            ex.answered = time.monotonic()
        self._held.clear()
        try:
            while True:
                frame = await reader.readexactly(REQUEST_SIZE)
                self._queue.put_nowait((frame, writer, time.monotonic()))
                self._arrival.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _bus_worker(self, bus_reader: asyncio.StreamReader, bus_writer: asyncio.StreamWriter) -> None:
        while True:
            frame, origin, arrived = await self._queue.get()
            ex = Exchange(len(self.exchanges), frame[1], arrived, *self.delay_of(len(self.exchanges)))
            ex.count = int.from_bytes(frame[4:6], "big")
            self.exchanges.append(ex)
            if frame[1] in self.ignore:
                continue
            bus_writer.write(frame)
            answer = await _read_answer(bus_reader)
            if answer[1] in (3, 4):
                ex.first_register = int.from_bytes(answer[3:5], "big")
            if ex.delay_s:
                await asyncio.sleep(ex.delay_s)  # the bus is busy until the late answer is through
            if ex.aligned:
                self._arrival.clear()
                try:
                    await asyncio.wait_for(self._arrival.wait(), ALIGN_WAIT_MAX_S)
                except TimeoutError:
                    pass
                await asyncio.sleep(ALIGN_S)
            target = self._current if self.deliver == "current" else origin
            if target is not None and not target.is_closing():
                target.write(answer)
                ex.answered = time.monotonic()
            elif self.deliver == "current":
                self._held.append((ex, answer))


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    """One RTU answer frame from the bus: exception, read (byte count), or an 8-byte echo."""
    head = await reader.readexactly(3)
    if head[1] & 0x80:
        rest = 2
    elif head[1] in (1, 2, 3, 4):
        rest = head[2] + 2
    else:
        rest = 5
    return head + await reader.readexactly(rest)
