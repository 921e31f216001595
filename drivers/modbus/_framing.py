"""Framers that keep a Modbus line in step with its requests, installed in place of pymodbus' own.

pymodbus 3.16 decodes in ``TransactionManager.callback_data``, called from asyncio's
``data_received``; whatever the framer raises there (``ModbusIOException`` for an unknown function
code or a byte count past the end of the frame) escapes into asyncio, which logs "Fatal error:
protocol.data_received() call failed" with a traceback, drops the connection and leaves the
request to time out.  Both framers here turn such a frame into :class:`MalformedFrame` on the
pending request, through ``on_malformed`` (the line then closes the connection; the next exchange
opens a fresh one).

RTU frames carry no transaction id, so :class:`InStepRtuFramer` matches each frame against the
request in flight — unit, function code (or its exception code), byte count or echoed fields, and
CRC — skips everything else (a late reply to an earlier request, the tail of one, noise; but a
read answer of the wrong length from a unit that owes nothing is a malformed answer) and
records which units may still owe a reply: a request that got no matching frame before the next
one is built leaves its unit *out of step*.  :class:`InStepMixin` then brings that unit back in
step before its next request: it waits until the line has been quiet for a frame time (a sender
that is still talking on a half-duplex bus must not be talked over) and sends a diagnostics
request, function 08 sub-function 00 "Return Query Data", carrying a fresh 16-bit nonce.  Only the
exact echo, or an exception answer to function 08, is accepted for it; a reply to a read can never
look like either.  Once it arrives the unit has answered everything sent to it before (a Modbus
server handles one request at a time and answers in order), so nothing it owes can still come
and be taken for the answer to the read that follows.  Why not just reopen the socket: a
transparent TCP→RTU converter hands whatever its serial port receives to the TCP connection open
at that moment, so the late reply lands on the new connection as well; reopening a serial port
does not stop the bus either.  Costs: one short exchange per out-of-step unit, inside the
request's own timeout.

Units that ignore function 08.  The protocol asks for at least exception 01, but cheap meters stay
silent, so an unanswered echo to a unit that has never answered one marks it as not answering
function 08 (counted in ``echoes_unanswered``, reported once through ``on_no_echo``).  Such a unit
is brought back in step by a request whose answer nothing the unit still owes (:attr:`owed`) can
look like: the request about to go out itself if it is such, else a *short read*, fewer of its
registers, so many that the answer's byte count differs from that of every owed one.  Only that
answer (unit, function, byte count or echoed fields, CRC) is accepted, and as after the echo the
unit has then answered or dropped everything sent before.  An exception answer to it
proves nothing (a late exception to an owed read looks the same): the exchange fails.  Late
answers are accounted too: an answer to an owed request, whenever it comes, means everything sent
to the unit before that request is done, so the unit is in step once the last one it owes comes
in (and a late echo answer clears the mark).  When no request can be told apart (a write or a
one-register read that is owed, or every shorter count owed as well) nothing is sent to the unit,
so the line stays free for what it owes, until the line has been quiet — no byte, no request to
it — for ``release_s`` (and twice the latest answer seen); then it is let back in step *unproven*
(counted in ``unproven``).  That is the one case without a proof: a reply later than that quiet
time, to the same unit, function and byte count, is taken for the next answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.diag_message import ReturnQueryDataRequest

OnMalformed = Callable[[str], None]


class MalformedFrame(ModbusException):
    """A frame from the device that cannot be decoded (unknown function code, byte count too long)."""

    def __str__(self) -> str:
        return self.string


def describe(frame: bytes, fc_at: int) -> str:
    """A short description of an undecodable frame for the log: function code, length, first bytes."""
    fc = f"function code {frame[fc_at]}" if len(frame) > fc_at else "no function code"
    head = frame[:24].hex(" ")
    return f"undecodable frame ({fc}, {len(frame)} bytes: {head}{' …' if len(frame) > 24 else ''})"


class GuardedSocketFramer(FramerSocket):
    """The MBAP framer, with undecodable frames reported instead of raised inside asyncio."""

    on_malformed: OnMalformed | None = None

    def handleFrame(self, data: bytes, exp_devid: int, exp_tid: int) -> tuple[int, ModbusPDU | None]:
        try:
            return super().handleFrame(data, exp_devid, exp_tid)
        except Exception:  # backstop: nothing may escape into asyncio's data_received (see module doc)
            if self.on_malformed is not None:
                self.on_malformed(describe(data, 7))
            return len(data), None


def _expected_answer(request: bytes) -> tuple[int, bytes]:
    """(size of the normal answer frame, the bytes it must start with) for an RTU request frame."""
    unit, fc = request[0], request[1]
    if fc in (1, 2, 3, 4):
        count = int.from_bytes(request[4:6], "big")
        head = _read_head(unit, fc, count)
        return 5 + head[2], head
    if fc in (5, 6, 8):  # the answer echoes the request
        return len(request), request[:-2]
    if fc in (15, 16):  # unit, function, address, quantity
        return 8, request[:6]
    return 0, b""


def _read_head(unit: int, fc: int, count: int) -> bytes:
    """How the normal answer to a read (FC 01-04) of ``count`` registers or bits starts."""
    return bytes((unit, fc, ((count + 7) // 8 if fc < 3 else 2 * count) & 0xFF))


def _answer_head(request: ModbusPDU) -> bytes:
    """How the normal answer to ``request`` starts, as :attr:`InStepRtuFramer.owed` keeps it."""
    head = _expected_answer(bytes((request.dev_id, request.function_code)) + request.encode() + b"\0\0")[1]
    return head[:3] if request.function_code <= 4 else head


class InStepRtuFramer(FramerRTU):
    """The RTU framer, accepting only the answer to the request in flight (see the module doc)."""

    def __init__(self, decoder: DecodePDU) -> None:
        super().__init__(decoder)
        self.on_malformed: OnMalformed | None = None
        self.out_of_step: set[int] = set()  # units that may still send a reply to an earlier request
        self.last_rx = 0.0  # time.monotonic() of the last bytes received
        self.dirty = False  # bytes skipped or a request unanswered since the line was last drained
        self.resyncs = 0
        # out-of-step unit -> (how the answer starts, when sent) for each request it may still answer
        self.owed: dict[int, list[tuple[bytes, float]]] = {}
        self.longest_late_s = 0.0  # the latest answer to an owed request seen so far
        self.no_echo: set[int] = set()  # units that do not answer function 08
        self.echoed: set[int] = set()  # units that have answered it: an unanswered echo was just lost
        self.echoes_unanswered = 0
        self.unproven = 0  # units let back in step without an answer that proves it
        self.on_no_echo: Callable[[int], None] | None = None
        self._unit = -1
        self._fc = 0
        self._size = 0
        self._head = b""
        self._answered = True
        self._sent = 0.0
        self._nonce = 0

    def buildFrame(self, message: ModbusPDU) -> bytes:
        frame = super().buildFrame(message)
        self.settle()
        self._unit, self._fc = frame[0], frame[1]
        self._size, self._head = _expected_answer(frame)
        self._answered = False
        self._sent = time.monotonic()
        return frame

    def settle(self) -> None:
        """Before a new request: if the last one got no answer, its unit is out of step."""
        if not self._answered:
            self._answered = True
            self.owe(self._unit, self._head[:3] if self._fc <= 4 else self._head, self._sent)
            if self._fc == 8:
                self.echoes_unanswered += 1
                if self._unit not in self.no_echo | self.echoed:
                    self.no_echo.add(self._unit)
                    if self.on_no_echo is not None:
                        self.on_no_echo(self._unit)

    def owe(self, unit: int, head: bytes, sent: float) -> None:
        """``unit`` may still send an answer starting with ``head`` (unit, function, byte count or echo)."""
        self.out_of_step.add(unit)
        owed = self.owed.setdefault(unit, [])
        if head:
            owed.append((head, sent))
        self.dirty = True

    def quiet_since(self, unit: int) -> float:
        """Since when neither a byte was received nor a request the unit owes an answer to was sent."""
        return max([self.last_rx] + [sent for _h, sent in self.owed.get(unit, [])])

    def in_step(self, unit: int) -> None:
        self.out_of_step.discard(unit)
        self.owed.pop(unit, None)

    def proof_for(self, request: ModbusPDU, itself: bool) -> ModbusPDU | None:
        """``request`` itself (if ``itself``), else a read of fewer of its registers: the first whose
        answer nothing the unit owes can look like."""
        owed = {head for head, _sent in self.owed.get(request.dev_id, [])}
        if itself and (head := _answer_head(request)) and head not in owed:
            return request
        if request.function_code not in (1, 2, 3, 4):
            return None
        for count in range(request.count - 1, 0, -1):
            probe = type(request)(address=request.address, count=count, dev_id=request.dev_id)
            if _answer_head(probe) not in owed:
                return probe
        return None

    def next_nonce(self) -> int:
        self._nonce = (self._nonce + 1) & 0xFFFF
        return self._nonce

    def handleFrame(self, data: bytes, exp_devid: int, exp_tid: int) -> tuple[int, ModbusPDU | None]:
        self.last_rx = time.monotonic()
        used, pdu = self._match(data, exp_devid, exp_tid)
        if self.owed:
            self._account(data[:used])
        return used, pdu

    def _account(self, data: bytes) -> None:
        """Late answers in bytes consumed (each byte is seen here once): an answer to an owed request
        means the unit has answered, or dropped, everything sent to it before that request."""
        for i in range(len(data) - 4):
            owed = self.owed.get(unit := data[i])
            for k, (head, sent) in enumerate(owed or ()):
                n = 5 + head[2] if head[1] <= 4 else 8
                frame = data[i : i + n]
                crc = int.from_bytes(frame[-2:], "big")
                if len(frame) == n and frame.startswith(head) and self.check_CRC(frame[:-2], crc):
                    self.longest_late_s = max(self.longest_late_s, self.last_rx - sent)
                    del owed[: k + 1]  # type: ignore[index]
                    if head[1] == 8:
                        self.echoed.add(unit)
                        self.no_echo.discard(unit)
                    if not owed:
                        self.in_step(unit)
                    break

    def _match(self, data: bytes, exp_devid: int, exp_tid: int) -> tuple[int, ModbusPDU | None]:
        if self._answered:  # nothing in flight: late, stray or noise
            self.dirty = True
            return len(data), None
        if not self._size:  # a function the poller does not use: pymodbus' own framing
            try:
                return super().handleFrame(data, exp_devid, exp_tid)
            except Exception:  # backstop: nothing may escape into asyncio's data_received
                self._malformed(data)
                return len(data), None
        unit, fc, size, head = self._unit, self._fc, self._size, self._head
        pending = -1  # where a frame that may still complete starts
        for i in range(len(data) - 1):
            if data[i] != unit:
                continue
            if data[i + 1] == fc | 0x80:
                n = 5
            elif data.startswith(head, i):
                n = size
            elif data[i + 1] == fc and fc <= 4 and unit not in self.out_of_step and len(data) > i + 2:
                n = 5 + data[i + 2]  # a read answer of another length: malformed if nothing is owed
            else:
                continue
            if len(data) < i + n:
                if pending < 0:
                    pending = i
                continue
            frame = data[i : i + n]
            if not self.check_CRC(frame[:-2], int.from_bytes(frame[-2:], "big")):
                continue
            self.dirty |= i > 0
            self._answered = True  # the unit answered this request, even if not usably
            if n != 5 and n != size:
                self._malformed(frame, f"{frame[2]} data bytes for a read that needs {size - 5}")
                return i + n, None
            pdu = self.decoder.decode(frame[1:-2])
            if pdu is None:
                self._malformed(frame)
                return i + n, None
            pdu.dev_id, pdu.transaction_id = unit, 0
            return i + n, pdu
        if pending >= 0:
            self.dirty |= pending > 0
            return pending, None
        keep = max(size, 5) - 1  # the tail that may be the start of the answer
        self.dirty |= len(data) > keep
        return max(0, len(data) - keep), None

    def _malformed(self, frame: bytes, why: str = "") -> None:
        self.dirty = True
        if self.on_malformed is not None:
            self.on_malformed(describe(frame, 1) + (f": {why}" if why else ""))

    async def drained(self, quiet_s: float) -> None:
        """Wait until nothing has been received for ``quiet_s``."""
        while (wait := self.last_rx + quiet_s - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        self.dirty = False


class InStepMixin:
    """``execute`` that first brings an out-of-step unit back in step (see the module doc)."""

    ctx: Any
    quiet_s: float = 0.05
    release_s: float = 5.0  # quiet line after which a unit that no request can prove is let go

    async def execute(self, no_response_expected: bool, request: ModbusPDU) -> ModbusPDU:
        framer: InStepRtuFramer = self.ctx.framer
        framer.settle()
        unit = request.dev_id
        if framer.dirty:
            await framer.drained(self.quiet_s)
        if unit in framer.out_of_step:
            if unit not in framer.no_echo:
                nonce = framer.next_nonce()
                await super().execute(False, ReturnQueryDataRequest(nonce, dev_id=unit))  # type: ignore[misc]
                framer.echoed.add(unit)
                framer.resyncs += 1
            elif (proof := framer.proof_for(request, not no_response_expected)) is not None:
                sent = time.monotonic()
                answer = await super().execute(False, proof)  # type: ignore[misc]
                if answer.isError():  # may be a late exception to an owed read: the proof may be owed
                    framer.owe(unit, _answer_head(proof), sent)
                    raise ModbusException(f"unit {unit}: exception {answer.exception_code} while out of step")
                framer.in_step(unit)
                framer.resyncs += proof is not request
                if proof is request:
                    return answer
            elif time.monotonic() - framer.quiet_since(unit) >= max(self.release_s, 2 * framer.longest_late_s):
                framer.unproven += 1
            else:  # nothing can tell its answers apart yet: keep the line free for them
                raise ModbusException(f"unit {unit} still owes answers that no shorter read can be told from")
            framer.in_step(unit)
        return await super().execute(no_response_expected, request)  # type: ignore[misc]


class InStepTcpClient(InStepMixin, AsyncModbusTcpClient):
    """RTU frames over TCP (a serial gateway), kept in step."""


class InStepSerialClient(InStepMixin, AsyncModbusSerialClient):
    """RTU frames on a serial port, kept in step."""
