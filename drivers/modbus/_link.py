"""One owner per physical Modbus line: a pymodbus client, a lock and the line's timing rules.

A serial port, or one TCP host:port (a Modbus TCP server with several unit ids behind it, or a
TCP→RTU gateway in front of an RS-485 line), carries one transaction at a time; every device on it
goes through the same :class:`ModbusLine`, which keeps ``frame_gap_s`` of silence between frames
(Modbus over Serial Line V1.02 §2.5.1.1 asks for at least 3.5 character times between RTU frames;
slow gateways need more).

Late replies and bad frames (:mod:`drivers.modbus._framing`).  With the MBAP (socket) framer
pymodbus skips frames whose transaction id differs from the request's, so a reply arriving after
its request timed out is dropped.  RTU frames have no transaction id: on an RTU line (serial, or
RTU over TCP through a converter) every frame is matched against the request in flight and a unit
that missed a reply is brought back in step (a function 08 echo with a nonce) before its next
request, so a reply however late is never taken for the answer to a later request (a unit that
ignores function 08 is brought back in step with a shorter read of the same registers instead,
see the framing module for the one case where it cannot be).  Reopening the
socket is not enough: a transparent converter hands a late reply to whichever connection is open.
After a timeout the line also stays quiet for one more timeout (at least ``RTU_SETTLE_S``), so a
reply that is only slightly late lands in that silence and costs no resync; a dead unit on a
shared RTU line therefore costs two timeouts of line time per attempt (retries are 0 while down).
A frame pymodbus cannot decode fails the request as :class:`MalformedFrame` and closes the
connection; the next exchange opens a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.framer import FramerType

from drivers.modbus._framing import (
    GuardedSocketFramer,
    InStepRtuFramer,
    InStepSerialClient,
    InStepTcpClient,
    MalformedFrame,
)

__all__ = ["MalformedFrame", "ModbusLine", "SerialLink", "TcpLink", "line_key"]

#: least silence on an RTU line after a timeout, and the quiet time (no byte received) a line
#: must show before a frame goes out after a lost or garbled exchange
RTU_SETTLE_S = 0.05
#: least quiet line before a unit that owes answers no request can be told from is let back in step
#: unproven (at least 10 timeouts, see :mod:`drivers.modbus._framing`)
RTU_RELEASE_S = 10.0
#: consecutive unanswered requests (any unit on the line) before the connection is reopened
SILENT_BEFORE_RECONNECT = 5


@dataclass(frozen=True)
class TcpLink:
    host: str
    port: int
    framer: Literal["socket", "rtu"] = "socket"  # "rtu": RTU frames over TCP (serial gateway)


@dataclass(frozen=True)
class SerialLink:
    port: str
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = 1
    bytesize: int = 8


def line_key(link: TcpLink | SerialLink) -> str:
    """The physical line a link is on, ``tcp:HOST:PORT`` or ``serial:PORT``: devices with the same key
    share one connection (and the gateway one poller)."""
    if isinstance(link, TcpLink):
        return f"tcp:{link.host}:{link.port}"
    return f"serial:{link.port}"


class ModbusLine:
    """The single owner of one connection; callers hold :attr:`lock` around each exchange."""

    __slots__ = (  # one per TCP device in the usual layout: no __dict__ each
        "_backstop_s",
        "_client",
        "_release_s",
        "ever_connected",
        "frame_gap_s",
        "link",
        "lock",
        "logger",
        "name",
        "quiet_until",
        "rtu",
        "silent_timeouts",
    )

    def __init__(
        self, link: TcpLink | SerialLink, *, frame_gap_s: float, timeout_s: float, logger: logging.Logger
    ) -> None:
        self.link = link
        self.name = line_key(link).partition(":")[2]
        self.frame_gap_s = frame_gap_s
        self.lock = asyncio.Lock()
        self.logger = logger
        self.rtu = link.framer == "rtu" if isinstance(link, TcpLink) else True
        # pymodbus' own timeout is only a backstop: asyncio.timeout() around each call fires first,
        # and pymodbus never retries nor drops the connection on its own (retries=0, no auto-reconnect)
        self._backstop_s = 2 * timeout_s + 1.0
        self._release_s = max(RTU_RELEASE_S, 10 * timeout_s)
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self.ever_connected = False
        self.silent_timeouts = 0  # consecutive unanswered requests, whatever the unit
        self.quiet_until = 0.0  # loop time before which no frame may start

    @property
    def client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        """The pymodbus client, made on first use (pymodbus needs a running event loop for it)."""
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        link, backstop = self.link, self._backstop_s
        client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if isinstance(link, TcpLink):
            client = (InStepTcpClient if self.rtu else AsyncModbusTcpClient)(
                link.host,
                port=link.port,
                framer=FramerType.RTU if self.rtu else FramerType.SOCKET,
                timeout=backstop,
                retries=0,
                reconnect_delay=0,
                name=self.name,
            )
        else:
            client = InStepSerialClient(
                link.port,
                framer=FramerType.RTU,
                baudrate=link.baudrate,
                parity=link.parity,
                stopbits=link.stopbits,
                bytesize=link.bytesize,
                timeout=backstop,
                retries=0,
                reconnect_delay=0,
                name=self.name,
            )
        client.set_max_no_responses(1 << 30)
        decoder = client.ctx.framer.decoder
        framer = InStepRtuFramer(decoder) if self.rtu else GuardedSocketFramer(decoder)
        framer.on_malformed = self._malformed
        if isinstance(framer, InStepRtuFramer):
            framer.on_no_echo = self._no_echo
        client.ctx.framer = framer
        if isinstance(client, InStepTcpClient | InStepSerialClient):
            client.quiet_s = max(self.frame_gap_s, RTU_SETTLE_S)
            client.release_s = self._release_s
        return client

    def _malformed(self, what: str) -> None:
        """Called from inside ``data_received``: fail the pending request, drop the connection."""
        client = self._client
        if client is None:
            return
        future = client.ctx.response_future
        if not future.done():
            future.set_exception(MalformedFrame(what))
        client.close()  # the next exchange reconnects

    def _no_echo(self, unit: int) -> None:
        self.logger.warning(
            "modbus line %s: unit %d does not answer function 08 (diagnostics echo); "
            "it is brought back in step with short reads instead",
            self.name,
            unit,
        )

    @property
    def connected(self) -> bool:
        return self.client.connected

    async def wait_quiet(self) -> None:
        """Sleep until the line may carry the next frame (call with the lock held)."""
        if self.quiet_until:
            delay = self.quiet_until - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)

    def frame_done(self) -> None:
        self.silent_timeouts = 0
        if self.frame_gap_s:
            self.quiet_until = asyncio.get_running_loop().time() + self.frame_gap_s

    def frame_lost(self, timeout_s: float) -> None:
        """After a timeout or an unusable answer: on RTU, let any late reply arrive and be dropped."""
        self.silent_timeouts += 1
        if self.silent_timeouts >= SILENT_BEFORE_RECONNECT:
            # nobody on this line answers any more: the connection itself may be dead (half-open
            # TCP after a NAT or gateway restart); open a fresh one for the next request
            self.logger.warning(
                "modbus line %s: %d requests unanswered, reopening it", self.name, self.silent_timeouts
            )
            self.silent_timeouts = 0
            self.close()
        if self.rtu:
            settle = max(self.frame_gap_s, RTU_SETTLE_S, timeout_s)
            self.quiet_until = asyncio.get_running_loop().time() + settle

    async def connect(self, timeout_s: float) -> bool:
        """(Re)open the connection; True when it is open."""
        try:
            async with asyncio.timeout(timeout_s):
                ok = await self.client.connect()
        except TimeoutError:
            ok = False
        if ok and self.ever_connected:
            self.logger.info("modbus line %s reconnected", self.name)
        self.ever_connected |= ok
        return ok

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
