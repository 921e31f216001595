"""RTU over TCP through a converter that answers late: no value is ever taken from another request.

The converter (``tests/rtu_converter.py``) sits in front of a real pymodbus server speaking RTU
framing; the server's first register counts the reads it has served, so every value the poller
accepts names the request it answers.  Some answers come slightly after the timeout, some much
later than the next poll (the field case: 0.7 s and 5 s with a 0.5 s timeout on a 1 s grid; here
scaled by 0.4 to keep the test short, ratios kept).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pytest
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest, ReadHoldingRegistersResponse

from drivers.modbus import ModbusDeviceSpec, ModbusPoller, Point, TcpLink
from drivers.modbus._framing import InStepRtuFramer
from tests.processes import free_port
from tests.rtu_converter import Exchange, RtuConverter
from tests.servers import ModbusTestServer

HOST = "127.0.0.1"
SCALE = 0.4
INTERVAL_S, TIMEOUT_S = 1.0 * SCALE, 0.5 * SCALE
SLIGHTLY_LATE_S, MUCH_LATER_S, LATER_S = 0.7 * SCALE, 5.0 * SCALE, 3.0 * SCALE
MARKER = 4321  # the second register: constant, checks nothing else is mixed in


def delay_of(seq: int) -> tuple[float, bool]:
    """Every 9th exchange slightly late, every 13th and 17th much later than the next poll; the
    13th lands just after a later request reached the converter (see tests/rtu_converter.py)."""
    if seq % 13 == 8:
        return MUCH_LATER_S, True
    if seq % 17 == 12:
        return LATER_S, False
    if seq % 9 == 4:
        return SLIGHTLY_LATE_S, False
    return 0.0, False


@pytest.fixture
def rtu_server(tmp_path) -> Iterator[int]:
    port = free_port()
    server = ModbusTestServer(
        tmp_path / "modbus",
        {"tcp": [HOST, port], "framer": "rtu", "devices": [{"id": 7, "registers": [0, MARKER], "counter": True}]},
    ).start()
    yield port
    server.kill()


def hr(name: str, address: int) -> Point:
    return Point(name=name, register="holding", address=address, type="uint16")


async def run_through(
    converter: RtuConverter, port: int, spec: ModbusDeviceSpec, exchanges: int
) -> tuple[ModbusPoller, list[tuple[float, np.ndarray]]]:
    """Poll ``spec`` through ``converter`` until it has carried ``exchanges`` requests (at most 40 s)."""
    polls: list[tuple[float, np.ndarray]] = []
    poller = ModbusPoller([spec], lambda _d, _ts, values, _t: polls.append((time.monotonic(), values.copy())))
    ready = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        serving = tg.create_task(converter.serve(HOST, port, ready))
        await ready.wait()
        polling = tg.create_task(poller.run())
        deadline = time.monotonic() + 40
        while len(converter.exchanges) < exchanges and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        polling.cancel()
        serving.cancel()
    return poller, polls


def assert_own_values(polls: list[tuple[float, np.ndarray]], reads: list[Exchange]) -> None:
    """Every value the poller emitted is the answer to the read it was waiting on."""
    wrong = []
    for emitted, values in polls:
        assert all(v == MARKER for v in values[1:])
        asked = [e for e in reads if e.arrived < emitted][-1]  # the read the poller was waiting on
        if int(values[0]) != asked.first_register:
            wrong.append((int(values[0]), asked.first_register))
    assert wrong == [], f"{len(wrong)} of {len(polls)} polls carried another request's value: {wrong}"
    counters = [int(v[0]) for _, v in polls]
    assert counters == sorted(set(counters))


@pytest.mark.services
@pytest.mark.parametrize("deliver", ["current", "origin"])
async def test_late_rtu_answers_through_a_converter_never_give_wrong_values(rtu_server: int, deliver) -> None:
    converter = RtuConverter((HOST, rtu_server), delay_of, deliver=deliver)
    port = free_port()
    spec = ModbusDeviceSpec(
        name="meter",
        link=TcpLink(HOST, port, framer="rtu"),
        unit_id=7,
        points=(hr("n_reads", 0), hr("marker", 1)),
        interval_s=INTERVAL_S,
        timeout_s=TIMEOUT_S,
        retries=1,
    )
    poller, polls = await run_through(converter, port, spec, 40)

    reads = [e for e in converter.exchanges if e.function_code == 3]
    late = [e for e in reads if e.delay_s in (MUCH_LATER_S, LATER_S) and e.answered is not None]
    slight = [e for e in reads if e.delay_s == SLIGHTLY_LATE_S and e.answered is not None]
    assert late and slight, "the trial must include both kinds of late answer"
    # the hazard was there: a much-later answer came while a newer request was already on its way
    assert any(any(e.arrived < x.arrived < x.answered for e in converter.exchanges) for x in late)

    assert_own_values(polls, reads)
    stats = poller.stats()["meter"]
    assert stats.timeouts >= 2 and len(polls) >= 10, (stats, len(polls))
    assert polls[-1][0] > min(x.answered for x in late)  # polling resumed after a much-later answer


@pytest.mark.services
async def test_a_unit_that_ignores_function_08_is_read_again_after_a_missed_reply(tmp_path, caplog) -> None:
    """A cheap meter stays silent to the function 08 echo: after its first missed reply it is brought
    back in step with shorter reads of the same registers, keeps being read, and late answers still
    never give a wrong value."""
    port_bus, port = free_port(), free_port()
    device = {"id": 7, "registers": [0, MARKER, MARKER, MARKER], "counter": True}
    server = ModbusTestServer(tmp_path / "modbus", {"tcp": [HOST, port_bus], "framer": "rtu", "devices": [device]})
    server.start()
    try:
        converter = RtuConverter((HOST, port_bus), delay_of, ignore=frozenset({8}))
        spec = ModbusDeviceSpec(
            name="meter",
            link=TcpLink(HOST, port, framer="rtu"),
            unit_id=7,
            points=(hr("n_reads", 0), hr("m1", 1), hr("m2", 2), hr("m3", 3)),
            interval_s=INTERVAL_S,
            timeout_s=TIMEOUT_S,
            retries=1,
        )
        with caplog.at_level("WARNING", logger="drivers.modbus"):
            _poller, polls = await run_through(converter, port, spec, 45)
    finally:
        server.kill()

    exchanges = converter.exchanges
    echoes = [e for e in exchanges if e.function_code == 8]
    reads = [e for e in exchanges if e.function_code == 3 and e.count == 4]
    short = [e for e in exchanges if e.function_code == 3 and e.count < 4]
    after = [p for p in polls if echoes and p[0] > echoes[0].arrived]
    assert len(after) >= 8, f"only {len(after)} polls after the first missed reply"
    assert len(echoes) == 1, "function 08 is tried once, then the unit is known not to answer it"
    assert short, "short reads bring the unit back in step"
    late = [e for e in reads if e.delay_s in (MUCH_LATER_S, LATER_S) and e.answered is not None]
    assert late, "the trial must include answers much later than the next poll"
    assert polls[-1][0] > min(x.answered for x in late)
    assert_own_values(polls, reads)
    warned = [r for r in caplog.records if "does not answer function 08" in r.getMessage()]
    assert len(warned) == 1 and "unit 7" in warned[0].getMessage()


def test_owed_answers_choose_the_proof_and_late_ones_bring_the_unit_back() -> None:
    """Pure framing logic: what a unit that ignores function 08 is sent while it owes answers."""
    framer, plain = InStepRtuFramer(DecodePDU(False)), FramerRTU(DecodePDU(True))
    two = ReadHoldingRegistersRequest(address=0, count=2, dev_id=7)
    one = ReadHoldingRegistersRequest(address=0, count=1, dev_id=7)
    framer.no_echo.add(7)
    framer.buildFrame(two)
    framer.settle()  # no answer: out of step, owing a 4-byte answer
    assert 7 in framer.out_of_step
    assert framer.proof_for(one, itself=True) is one  # a 2-byte answer cannot be the owed one
    assert framer.proof_for(two, itself=True).count == 1  # the read itself could: a shorter one
    framer.buildFrame(one)
    framer.settle()  # that one unanswered too: nothing left that can be told apart
    assert framer.proof_for(two, itself=True) is None and framer.proof_for(one, itself=True) is None
    late = plain.buildFrame(ReadHoldingRegistersResponse(registers=[5, 6], dev_id=7))
    assert framer.handleFrame(late, 0, 0) == (len(late), None)  # nothing in flight: dropped, accounted
    assert 7 in framer.out_of_step  # the short read's answer is still owed
    framer.handleFrame(plain.buildFrame(ReadHoldingRegistersResponse(registers=[5], dev_id=7)), 0, 0)
    assert 7 not in framer.out_of_step and not framer.owed  # it answered everything it was sent
