"""The Modbus poller against real pymodbus servers running in their own processes."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import shutil
import subprocess
import time

import numpy as np
import psutil
import pytest
from pymodbus.client import AsyncModbusTcpClient

from drivers.modbus import DeviceStats, ModbusDeviceSpec, ModbusPoller, Point, SerialLink, TcpLink
from gateway.errors import WriteRefused
from tests import reference_registers as ref
from tests.processes import free_port
from tests.servers import ModbusTestServer

HOST = "127.0.0.1"


@pytest.fixture
def servers(tmp_path):
    started: list[ModbusTestServer] = []

    def start(config: dict) -> ModbusTestServer:
        server = ModbusTestServer(tmp_path / f"modbus-{len(started)}", config).start()
        started.append(server)
        return server

    yield start
    for s in started:
        s.kill()


class Recorder:
    """The poller's ``emit``: keeps every poll with the monotonic time it arrived."""

    def __init__(self) -> None:
        self.polls: dict[str, list[tuple[int, float, np.ndarray, tuple | None]]] = {}

    def __call__(self, device: str, ts_ns: int, values: np.ndarray, texts) -> None:
        self.polls.setdefault(device, []).append((ts_ns, time.monotonic(), values, texts))

    def count(self, device: str) -> int:
        return len(self.polls.get(device, ()))


async def run_until(poller: ModbusPoller, condition, timeout: float = 10.0) -> None:
    """Run the poller until ``condition()`` holds (fails the test after ``timeout``)."""
    task = asyncio.create_task(poller.run())
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def hr(name: str, address: int, type_: str = "uint16", **kw) -> Point:
    return Point(name=name, register="holding", address=address, type=type_, **kw)


# a register image built with the independent reference encoder, and the points that read it
LAYOUT = [
    (hr("p_kw", 0, "float32", scale=0.001), 1234.5, ref.encode(1234.5, "float32")),
    (hr("q_kvar", 2, "float32", word_order="little"), -17.25, ref.encode(-17.25, "float32", "little")),
    (
        hr("e_kwh", 4, "uint32", word_order="little", scale=0.01),
        98765432,
        ref.encode(98765432, "uint32", "little"),
    ),
    (hr("t_c", 6, "int16", scale=0.1, offset=-40.0), -123, ref.encode(-123, "int16")),
    (hr("f_hz", 7, "uint16", scale=0.01), 5001, ref.encode(5001, "uint16")),
    (hr("x_wh", 8, "float64", byte_order="little"), 2.5e9, ref.encode(2.5e9, "float64", "big", "little")),
    (
        hr("n_count", 12, "int64", word_order="little", byte_order="little"),
        -(2**40) - 3,
        ref.encode(-(2**40) - 3, "int64", "little", "little"),
    ),
    (hr("serial_no", 40, "string", length=4), "SN-42", ref.encode_string("SN-42", 4)),
]


def layout_image(size: int = 60) -> list[int]:
    image = [0] * size
    for p, _, words in LAYOUT:
        image[p.address : p.address + len(words)] = words
    return image


def layout_expected() -> list[float]:
    return [math.nan if p.type == "string" else raw * p.scale + p.offset for p, raw, _ in LAYOUT]


@pytest.mark.services
async def test_values_read_back_equal_server_registers(servers) -> None:
    port = free_port()
    servers({"tcp": [HOST, port], "devices": [{"id": 3, "registers": layout_image()}]})
    spec = ModbusDeviceSpec(
        name="meter",
        link=TcpLink(HOST, port),
        unit_id=3,
        points=tuple(p for p, _, _ in LAYOUT),
        interval_s=0.1,
    )
    rec = Recorder()
    poller = ModbusPoller([spec], rec)
    assert len(poller.decoder("meter").plan.requests) == 2  # 0..15 and the string at 40
    await run_until(poller, lambda: rec.count("meter") >= 3)
    for ts_ns, _, values, texts in rec.polls["meter"]:
        assert ts_ns % 100_000_000 == 0  # aligned to the 0.1 s grid
        np.testing.assert_array_equal(values, np.array(layout_expected()))
        assert texts == (None,) * 7 + ("SN-42",)
    stamps = [ts for ts, *_ in rec.polls["meter"]]
    assert all(b - a == 100_000_000 for a, b in itertools.pairwise(stamps))
    stats = poller.stats()["meter"]
    assert stats.polls_ok >= 3 and stats.timeouts == 0 and stats.up
    assert stats.last_ok_ns == stamps[-1]


@pytest.mark.services
async def test_two_unit_ids_on_one_tcp_line_are_serialised(servers) -> None:
    port = free_port()
    server = servers(
        {
            "tcp": [HOST, port],
            "devices": [
                {"id": 1, "registers": [111] * 10, "delay_s": 0.15},
                {"id": 2, "registers": [222] * 10, "delay_s": 0.15},
            ],
        }
    )
    specs = [
        ModbusDeviceSpec(
            name=f"unit{u}",
            link=TcpLink(HOST, port),
            unit_id=u,
            points=(hr("v_v", 0),),
            interval_s=0.5,
            timeout_s=1.0,
        )
        for u in (1, 2)
    ]
    rec = Recorder()
    poller = ModbusPoller(specs, rec)
    connections: list[int] = []

    def enough() -> bool:
        connections.append(
            sum(
                c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
                for c in psutil.Process(server.proc.pid).net_connections("tcp")
            )
        )
        return rec.count("unit1") >= 2 and rec.count("unit2") >= 2

    await run_until(poller, enough)
    assert max(connections) == 1  # one connection carries both unit ids
    assert {float(v[0]) for _, _, v, _ in rec.polls["unit1"]} == {111.0}
    assert {float(v[0]) for _, _, v, _ in rec.polls["unit2"]} == {222.0}
    # same slot, one after the other: the second answer comes at least one server delay later
    first = {ts: t for ts, t, _, _ in rec.polls["unit1"]}
    gaps = [abs(t - first[ts]) for ts, t, _, _ in rec.polls["unit2"] if ts in first]
    assert gaps and min(gaps) >= 0.12


@pytest.mark.services
async def test_silent_device_does_not_delay_a_healthy_line(servers) -> None:
    healthy_port, silent_port = free_port(), free_port()
    servers({"tcp": [HOST, healthy_port], "devices": [{"id": 1, "registers": list(range(20))}]})
    servers({"tcp": [HOST, silent_port], "silent": True})
    healthy = ModbusDeviceSpec(
        name="ok", link=TcpLink(HOST, healthy_port), unit_id=1, points=(hr("a_v", 5),), interval_s=0.1
    )
    silent = ModbusDeviceSpec(
        name="mute",
        link=TcpLink(HOST, silent_port),
        unit_id=1,
        points=(hr("a_v", 5),),
        interval_s=0.1,
        timeout_s=0.2,
        retries=1,
    )
    rec = Recorder()
    poller = ModbusPoller([healthy, silent], rec)
    await run_until(poller, lambda: not poller.stats()["mute"].up and rec.count("ok") >= 15)
    lateness = [t_mono - ts / 1e9 for ts, t_mono, _, _ in rec.polls["ok"]]
    # each emit comes well before one of the other line's 0.2 s timeouts could have passed
    offset = time.time() - time.monotonic()
    assert max(lat + offset for lat in lateness) < 0.15
    stats = poller.stats()
    assert stats["mute"].timeouts >= 3 and stats["mute"].polls_ok == 0 and rec.count("mute") == 0
    assert stats["mute"].interval_s > 0.1  # polled less often while down
    assert stats["mute"].reconnects >= 1  # 5 unanswered requests in a row: the line was reopened
    assert stats["ok"].timeouts == 0 and stats["ok"].up


@pytest.mark.services
async def test_exception_response_is_counted_and_polling_goes_on(servers, caplog) -> None:
    port = free_port()
    servers({"tcp": [HOST, port], "devices": [{"id": 7, "registers": [5] * 10}]})
    bad = ModbusDeviceSpec(
        name="bad", link=TcpLink(HOST, port), unit_id=7, points=(hr("a_v", 50),), interval_s=0.1
    )  # 50 is not served: code 2
    good = ModbusDeviceSpec(
        name="good", link=TcpLink(HOST, port), unit_id=7, points=(hr("a_v", 1),), interval_s=0.1
    )
    rec = Recorder()
    poller = ModbusPoller([bad, good], rec)
    with caplog.at_level(logging.DEBUG, logger="drivers.modbus"):
        await run_until(poller, lambda: poller.stats()["bad"].learned_holes and rec.count("good") >= 3)
    stats = poller.stats()["bad"]
    # alive, just refusing: its one point is a learned hole, so it is degraded and not asked again
    assert stats.polls_ok == 0 and stats.timeouts == 0 and stats.up and stats.state == "degraded"
    assert stats.exceptions == {2: 1} and [h.key for h in stats.learned_holes] == [(3, 50, 51)]
    assert rec.count("bad") == 0
    expected = "bad (unit 7): refuses FC03 50..50 (exception 2 ILLEGAL DATA ADDRESS)"
    assert any(expected in r.getMessage() for r in caplog.records)


@pytest.mark.services
async def test_server_restart_reconnects_and_resumes(servers) -> None:
    port = free_port()
    server = servers({"tcp": [HOST, port], "devices": [{"id": 1, "registers": [42] * 4}]})
    spec = ModbusDeviceSpec(
        name="m",
        link=TcpLink(HOST, port),
        unit_id=1,
        points=(hr("a_v", 0),),
        interval_s=0.1,
        timeout_s=0.3,
        retries=0,
    )
    rec = Recorder()
    poller = ModbusPoller([spec], rec)
    phase = {"n": 0}

    def script() -> bool:
        stats = poller.stats()["m"]
        if phase["n"] == 0 and rec.count("m") >= 2:
            server.kill()
            phase["n"], phase["seen"] = 1, rec.count("m")
        elif phase["n"] == 1 and stats.timeouts + stats.connect_failures >= 2:
            server.start()
            phase["n"] = 2
        return phase["n"] == 2 and rec.count("m") >= phase["seen"] + 2

    await run_until(poller, script, timeout=15)
    stats = poller.stats()["m"]
    assert stats.reconnects >= 1 and stats.up
    assert {float(v[0]) for _, _, v, _ in rec.polls["m"]} == {42.0}


@pytest.mark.services
async def test_writes_are_checked_and_land_in_the_server(servers) -> None:
    port = free_port()
    servers({"tcp": [HOST, port], "devices": [{"id": 4, "registers": [0] * 20}]})
    points = (
        hr("p_set_kw", 2, "int16", scale=0.1, writable=True, min=-50, max=50),
        hr("f_set_hz", 4, "float32", word_order="little", writable=True),
        hr("p_kw", 8, "int16"),
    )
    spec = ModbusDeviceSpec(name="bat", link=TcpLink(HOST, port), unit_id=4, points=points, interval_s=0.1)
    rec = Recorder()
    poller = ModbusPoller([spec], rec)
    with pytest.raises(WriteRefused, match=r"p_kw.*not writable"):
        await poller.write("bat", "p_kw", 1.0)
    with pytest.raises(WriteRefused, match=r"p_set_kw.*limits \[-50.0, 50.0\]"):
        await poller.write("bat", "p_set_kw", 60.0)
    await poller.write("bat", "p_set_kw", -12.3)  # FC 06, raw -123
    await poller.write("bat", "f_set_hz", 49.5)  # FC 16, two words, low word first
    probe = AsyncModbusTcpClient(HOST, port=port)
    await probe.connect()
    try:
        rr = await probe.read_holding_registers(0, count=10, device_id=4)
    finally:
        probe.close()
    assert rr.registers[2] == ref.encode(-123, "int16")[0]
    assert rr.registers[4:6] == ref.encode(49.5, "float32", "little")
    assert rr.registers[8] == 0  # the refused write did not land
    await run_until(poller, lambda: rec.count("bat") >= 1)
    np.testing.assert_allclose(rec.polls["bat"][0][2], [-12.3, 49.5, 0.0])


@pytest.mark.services
async def test_late_rtu_reply_is_not_taken_for_the_next_answer(servers) -> None:
    # RTU frames carry no transaction id: the first read is answered after 0.5 s (timeout 0.3 s).
    # The retry goes out 0.3..0.4 s after the first send without the settle time, >= 0.6 s with it.
    port = free_port()
    servers(
        {
            "tcp": [HOST, port],
            "framer": "rtu",
            "devices": [{"id": 9, "registers": [0, 7], "counter": True, "delay_first_s": 0.5}],
        }
    )
    spec = ModbusDeviceSpec(
        name="gw",
        link=TcpLink(HOST, port, framer="rtu"),
        unit_id=9,
        points=(hr("n_reads", 0), hr("b_v", 1)),
        interval_s=0.1,
        timeout_s=0.3,
        retries=1,
    )
    rec = Recorder()
    poller = ModbusPoller([spec], rec)
    await run_until(poller, lambda: rec.count("gw") >= 2)
    reads = [int(v[0]) for _, _, v, _ in rec.polls["gw"]]
    assert reads[0] >= 2  # never the late answer to read number 1
    assert reads == sorted(set(reads))
    assert poller.stats()["gw"].timeouts == 1


@pytest.mark.services
async def test_rtu_over_serial_through_a_pty_pair(servers, tmp_path) -> None:
    socat = shutil.which("socat")
    assert socat, "socat (Debian package) is needed for the serial test"
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    relay = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 5
        while not (a.exists() and b.exists()):
            assert time.monotonic() < deadline, "socat did not create the pty pair"
            await asyncio.sleep(0.02)
        servers(
            {
                "serial": str(a),
                "framer": "rtu",
                "baudrate": 19200,
                "devices": [{"id": 5, "registers": layout_image()}, {"id": 6, "registers": [66] * 4}],
            }
        )
        link = SerialLink(str(b), baudrate=19200)
        meter = ModbusDeviceSpec(
            name="rs485_meter",
            link=link,
            unit_id=5,
            points=tuple(p for p, _, _ in LAYOUT),
            interval_s=0.2,
            frame_gap_s=0.005,
        )
        other = ModbusDeviceSpec(
            name="rs485_other",
            link=link,
            unit_id=6,
            points=(hr("a_v", 3),),
            interval_s=0.2,
            frame_gap_s=0.005,
        )
        rec = Recorder()
        poller = ModbusPoller([meter, other], rec)
        await run_until(poller, lambda: rec.count("rs485_meter") >= 2 and rec.count("rs485_other") >= 2)
        for _, _, values, texts in rec.polls["rs485_meter"]:
            np.testing.assert_array_equal(values, np.array(layout_expected()))
            assert texts is not None and texts[-1] == "SN-42"
        assert {float(v[0]) for _, _, v, _ in rec.polls["rs485_other"]} == {66.0}
        assert isinstance(poller.stats()["rs485_meter"], DeviceStats)
        assert poller.stats()["rs485_meter"].timeouts == 0
    finally:
        relay.kill()
        relay.wait(5)


def test_devices_on_one_line_must_agree_on_its_settings() -> None:
    a = ModbusDeviceSpec(name="a", link=TcpLink(HOST, 1502), unit_id=1, points=(hr("a_v", 0),))
    b = ModbusDeviceSpec(name="b", link=TcpLink(HOST, 1502, framer="rtu"), unit_id=2, points=(hr("a_v", 0),))
    with pytest.raises(ValueError, match="other settings"):
        ModbusPoller([a, b], Recorder())
    with pytest.raises(ValueError, match="two devices named"):
        ModbusPoller([a, a], Recorder())


@pytest.mark.services
async def test_bits_input_registers_and_a_coil_write(servers) -> None:
    port = free_port()
    coils = [True, False, True, True, False, False, False, False, True, False]
    servers(
        {
            "tcp": [HOST, port],
            "devices": [
                {
                    "id": 2,
                    "registers": [10, 20, 30],
                    "coils": coils,
                    "discretes": [False, True, True],
                    "inputs": [0, 0, *ref.encode(-5.5, "float32")],
                },
            ],
        }
    )
    points = (
        Point(name="relay_on", register="coil", address=1, type="bool", writable=True),
        Point(name="fan_on", register="coil", address=8, type="bool"),
        Point(name="door_open", register="discrete", address=2, type="bool"),
        Point(name="t_c", register="input", address=2, type="float32"),
        hr("h_v", 1),
    )
    spec = ModbusDeviceSpec(name="io", link=TcpLink(HOST, port), unit_id=2, points=points, interval_s=0.1)
    rec = Recorder()
    poller = ModbusPoller([spec], rec)
    assert [r.function_code for r in poller.decoder("io").plan.requests] == [1, 2, 3, 4]
    await run_until(poller, lambda: rec.count("io") >= 1)
    np.testing.assert_array_equal(rec.polls["io"][0][2], [0.0, 1.0, 1.0, -5.5, 20.0])
    await poller.write("io", "relay_on", True)  # FC 05
    await run_until(poller, lambda: rec.count("io") >= 2)
    assert rec.polls["io"][-1][2][0] == 1.0


@pytest.mark.services
async def test_frame_gap_separates_frames_on_a_shared_line(servers) -> None:
    port = free_port()
    servers(
        {"tcp": [HOST, port], "devices": [{"id": 1, "registers": [1] * 4}, {"id": 2, "registers": [2] * 4}]}
    )
    specs = [
        ModbusDeviceSpec(
            name=f"u{u}",
            link=TcpLink(HOST, port),
            unit_id=u,
            points=(hr("a_v", 0),),
            interval_s=0.5,
            frame_gap_s=0.15,
        )
        for u in (1, 2)
    ]
    rec = Recorder()
    poller = ModbusPoller(specs, rec)
    await run_until(poller, lambda: rec.count("u1") >= 2 and rec.count("u2") >= 2)
    first = {ts: t for ts, t, _, _ in rec.polls["u1"]}
    gaps = [abs(t - first[ts]) for ts, t, _, _ in rec.polls["u2"] if ts in first]
    assert gaps and min(gaps) >= 0.13


@pytest.mark.services
async def test_slow_polls_skip_slots_instead_of_queueing(servers) -> None:
    port = free_port()
    servers({"tcp": [HOST, port], "devices": [{"id": 1, "registers": [3] * 4, "delay_s": 0.25}]})
    spec = ModbusDeviceSpec(
        name="slow",
        link=TcpLink(HOST, port),
        unit_id=1,
        points=(hr("a_v", 0),),
        interval_s=0.1,
        timeout_s=1.0,
    )
    rec = Recorder()
    poller = ModbusPoller([spec], rec)
    await run_until(poller, lambda: rec.count("slow") >= 4)
    stamps = [ts for ts, *_ in rec.polls["slow"]]
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(s % 100_000_000 == 0 and s >= 300_000_000 for s in steps)  # on the grid, missed slots skipped
    for ts, t_mono, _, _ in rec.polls["slow"]:
        assert t_mono - (ts / 1e9 - (time.time() - time.monotonic())) < 0.55  # never a backlog
    stats = poller.stats()["slow"]
    assert stats.overruns >= 3 and stats.timeouts == 0 and stats.up


@pytest.mark.services
async def test_wrong_register_count_is_counted_as_malformed(servers, caplog) -> None:
    port = free_port()
    servers({"tcp": [HOST, port], "short": True})
    spec = ModbusDeviceSpec(
        name="odd",
        link=TcpLink(HOST, port),
        unit_id=1,
        points=(hr("a_v", 0), hr("b_v", 3)),
        interval_s=0.1,
        retries=1,
    )
    rec = Recorder()
    poller = ModbusPoller([spec], rec)
    with caplog.at_level(logging.WARNING, logger="drivers.modbus"):
        await run_until(poller, lambda: poller.stats()["odd"].polls_failed >= 2)
    stats = poller.stats()["odd"]
    assert rec.count("odd") == 0 and stats.polls_ok == 0
    assert stats.malformed >= 4  # every attempt, retries included
    assert any("odd (unit 1, address 0): FC 3 answer with 3 values" in r.getMessage() for r in caplog.records)


async def test_a_cancellation_swallowed_inside_a_poll_still_stops_the_poller() -> None:
    """Python 3.11's wait_for (inside pymodbus) can lose a cancellation that races with completion
    (CPython gh-86296); the poll loop must still end instead of polling on forever."""
    point = Point(name="x_kw", register="holding", address=0, type="float32")
    spec = ModbusDeviceSpec(name="d", link=TcpLink("127.0.0.1", 1), unit_id=1, points=(point,), interval_s=0.01)
    polls = 0

    class SwallowingPoller(ModbusPoller):
        async def _poll(self, dev: object, slot: int) -> None:  # what the race leaves behind
            nonlocal polls
            polls += 1
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                return

    poller = SwallowingPoller([spec], lambda *a: None)
    task = asyncio.create_task(poller.run())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(task), 2)
    assert task.cancelled() and polls >= 1
