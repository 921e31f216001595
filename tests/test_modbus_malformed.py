"""Frames pymodbus cannot decode: counted as malformed, one WARNING per device, no traceback, the
connection reopened, and polling back to normal once the device behaves again.

The device is a raw asyncio Modbus TCP server (MBAP framing by hand) on loopback that answers
every read, while hostile, alternately with an unknown function code and with a byte count longer
than the frame — both make pymodbus raise inside ``data_received``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

import pytest

from drivers.modbus import ModbusDeviceSpec, ModbusPoller, Point, TcpLink
from tests.processes import free_port

HOST = "127.0.0.1"


class HostileServer:
    """Answers FC 03 reads of unit U with [reads served, 1000 + U] — or, while ``hostile``, with frames
    that cannot be decoded."""

    def __init__(self) -> None:
        self.hostile = True
        self.connections = 0
        self.reads = 0
        self.bad_sent = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readexactly(7)
                body = await reader.readexactly(int.from_bytes(head[4:6], "big") - 1)
                unit, count = head[6], int.from_bytes(body[3:5], "big")
                self.reads += 1
                if self.hostile:
                    self.bad_sent += 1
                    # unknown function code 0x42, or FC 03 saying 16 bytes follow when 2 do
                    pdu = b"\x42\x02\x00\x01" if self.bad_sent % 2 else b"\x03\x10\x00\x01"
                else:
                    values = [self.reads, 1000 + unit][:count]
                    pdu = bytes([3, 2 * len(values)]) + b"".join(v.to_bytes(2, "big") for v in values)
                writer.write(head[:4] + (len(pdu) + 1).to_bytes(2, "big") + bytes([unit]) + pdu)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def spec(name: str, port: int, unit: int) -> ModbusDeviceSpec:
    points = (
        Point(name="n_reads", register="holding", address=0, type="uint16"),
        Point(name="ident", register="holding", address=1, type="uint16"),
    )
    return ModbusDeviceSpec(
        name=name, link=TcpLink(HOST, port), unit_id=unit, points=points, interval_s=0.1, timeout_s=0.5, retries=1
    )


async def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@pytest.mark.services
async def test_undecodable_frames_are_malformed_logged_once_and_the_line_recovers(caplog) -> None:
    port, hostile = free_port(), HostileServer()
    polls: dict[str, list[list[float]]] = {"a": [], "b": []}
    poller = ModbusPoller(
        [spec("a", port, 1), spec("b", port, 2)],
        lambda device, _ts, values, _t: polls[device].append(values.tolist()),
    )
    server = await asyncio.start_server(hostile.handle, HOST, port)
    caplog.set_level(logging.DEBUG, logger="asyncio")
    caplog.set_level(logging.WARNING, logger="drivers.modbus")
    async with server, asyncio.TaskGroup() as tg:
        polling = tg.create_task(poller.run())
        await wait_for(lambda: all(s.malformed >= 6 for s in poller.stats().values()), 15)
        bad_polls = {n: s.polls_failed for n, s in poller.stats().items()}
        hostile.hostile = False
        await wait_for(lambda: all(len(p) >= 3 for p in polls.values()), 15)
        polling.cancel()

    stats = poller.stats()
    for name, unit in (("a", 1), ("b", 2)):
        s = stats[name]
        assert s.malformed >= 6 and s.timeouts == 0, s  # classified, never waited out as a timeout
        assert bad_polls[name] >= 3 and s.polls_ok >= 3
        assert all(v[1] == 1000 + unit for v in polls[name])  # recovered with the right device's values
        own = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name == "drivers.modbus"]
        own = [m for m in own if m.startswith(f"{name} (unit {unit}")]
        malformed = [m for m in own if m.startswith(f"{name} (unit {unit}, address 0): undecodable frame (function code")]
        assert len(malformed) == 1, own  # once per device, not once per frame
        assert set(own) - set(malformed) <= {f"{name} (unit {unit}) marked down after 3 failed polls; polling it less often"}
    assert sum(s.reconnects for s in stats.values()) >= 6 and hostile.connections >= 7  # reopened each time
    assert not [r for r in caplog.records if r.name == "asyncio" or r.exc_info], caplog.text
    assert "Traceback" not in caplog.text


def _crc(frame: bytes) -> bytes:
    crc = 0xFFFF
    for byte in frame:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


@pytest.mark.services
async def test_rtu_answer_of_the_wrong_length_is_malformed_not_a_timeout() -> None:
    """On an RTU line the framer matches answers to the request; one with a register missing (a
    correct CRC) from a unit that owes nothing is a malformed answer, as on Modbus TCP."""

    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readexactly(8)
                if request[1] == 8:  # diagnostics echo
                    writer.write(request)
                    continue
                count = int.from_bytes(request[4:6], "big") - 1
                answer = bytes([request[0], 3, 2 * count]) + b"\x00\x07" * count
                writer.write(answer + _crc(answer))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    port = free_port()
    server = await asyncio.start_server(short, HOST, port)
    device = replace(spec("odd", port, 3), link=TcpLink(HOST, port, framer="rtu"))
    poller = ModbusPoller([device], lambda *_: None)
    async with server, asyncio.TaskGroup() as tg:
        polling = tg.create_task(poller.run())
        await wait_for(lambda: poller.stats()["odd"].polls_failed >= 2, 10)
        polling.cancel()
    stats = poller.stats()["odd"]
    assert stats.malformed >= 4 and stats.timeouts == 0 and stats.polls_ok == 0, stats
