"""The adaptive planner: a device that refuses some addresses of a coalesced block (exception 02/03)
costs those points only — the poller bisects the refused read, learns the holes, polls everything
else, takes learned holes back from its owner, and re-probes them in case the device was booting."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import pytest

from drivers.errors import DeviceRejected
from drivers.modbus import LearnedHole, ModbusDeviceSpec, ModbusPoller, Point, TcpLink, plan_requests
from drivers.modbus._adaptive import clusters, locate_holes, readable_points
from tests.scripted_device import HOST, ScriptedDevice
from tests.test_modbus_client import run_until


def hr(name: str, address: int, type_: str = "uint16") -> Point:
    return Point(name=name, register="holding", address=address, type=type_)


# -- the bisection as pure logic (a device stand-in that refuses by rule) -------------------------

def refusing(rule, log: list | None = None):
    async def read(fc: int, address: int, count: int) -> list[int]:
        if log is not None:
            log.append((address, count))
        code = rule(address, count)
        if code:
            raise DeviceRejected("d", 1, address, code)
        return [0] * count

    return read


async def test_one_refused_address_among_thirty_is_found_in_a_few_reads() -> None:
    reads: list = []
    spans = [(a, a + 1) for a in range(30)]
    holes = await locate_holes(refusing(lambda a, n: 2 if a <= 13 < a + n else 0, reads), 3, spans, 2, 5)
    assert holes == [LearnedHole(3, 13, 14, 2, 5)]
    assert len(reads) <= 2 * math.ceil(math.log2(30))


async def test_a_refused_gap_between_points_becomes_the_hole() -> None:
    spans = clusters([hr("a", 0, "uint32"), hr("b", 10, "uint32")], 3, 0, 12)
    assert spans == [(0, 2), (10, 12)]
    holes = await locate_holes(refusing(lambda a, n: 2 if a <= 5 < a + n else 0), 3, spans, 2, 0)
    assert [h.key for h in holes] == [(3, 2, 10)]


async def test_a_length_the_device_refuses_becomes_a_cut_the_planner_respects() -> None:
    points = [hr(f"p{i}", i) for i in range(8)]
    spans = clusters(points, 3, 0, 8)
    holes = await locate_holes(refusing(lambda a, n: 3 if n > 4 else 0), 3, spans, 3, 0)
    assert [h.key for h in holes] == [(3, 4, 4)]  # empty: a cut at 4, no request across it
    plan = plan_requests(points, cuts=[(3, 4)])
    assert [(r.address, r.count) for r in plan.requests] == [(0, 4), (4, 4)]
    assert readable_points(points, [(3, 4, 4)]) == list(range(8))  # no point runs across the cut
    assert readable_points([hr("w", 3, "uint32")], [(3, 4, 4)]) == []


# -- against a real Modbus TCP server that refuses addresses -------------------------------------

@pytest.fixture
def device(tmp_path):
    made: list[ScriptedDevice] = []

    def make(refuse: list[int], size: int = 40) -> ScriptedDevice:
        d = ScriptedDevice(tmp_path / f"d{len(made)}", refuse=refuse, size=size)
        d.server.start()
        made.append(d)
        return d

    yield make
    for d in made:
        d.server.kill()


class Recorder:
    def __init__(self) -> None:
        self.rows: list = []
        self.holes: list[tuple[str, tuple[LearnedHole, ...]]] = []

    def __call__(self, device, ts_ns, values, texts) -> None:
        self.rows.append(values.copy())

    def on_holes(self, device, holes) -> None:
        self.holes.append((device, holes))


async def run_for(poller: ModbusPoller, seconds: float) -> None:
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(poller.run())
        await asyncio.sleep(seconds)
        task.cancel()


def spec(port: int, points, **kw) -> ModbusDeviceSpec:
    return ModbusDeviceSpec(name="m", link=TcpLink(HOST, port), unit_id=1, points=tuple(points),
                            interval_s=0.1, timeout_s=0.5, retries=0, **kw)


@pytest.mark.services
async def test_a_refused_register_in_a_block_costs_only_its_point(device, caplog) -> None:
    dev = device(refuse=[7])
    points = [hr(f"r{a:02d}", a) for a in range(20)]
    rec = Recorder()
    poller = ModbusPoller([spec(dev.port, points)], rec, on_holes=rec.on_holes)
    with caplog.at_level(logging.INFO, logger="drivers.modbus"):
        await run_until(poller, lambda: len(rec.rows) >= 5)
    for row in rec.rows:  # from the very first poll: every other point, with its value
        assert math.isnan(row[7])
        assert [row[a] for a in range(20) if a != 7] == [100.0 + a for a in range(20) if a != 7]
    stats = poller.stats()["m"]
    assert [h.key for h in stats.learned_holes] == [(3, 7, 8)] and stats.learned_holes[0].code == 2
    assert stats.state == "up" and stats.exceptions == {2: 1} and stats.polls_failed == 0
    assert [(d, [h.key for h in hs]) for d, hs in rec.holes] == [("m", [(3, 7, 8)])]
    assert any("refuses FC03 7..7" in r.getMessage() and "ILLEGAL DATA ADDRESS" in r.getMessage()
               for r in caplog.records)
    # once learned, the plan goes around it: 0..6 and 8..19, never 7 again
    reads = dev.reads()
    first_poll = next(i for i, r in enumerate(reads) if r == (0, 7, "ok"))
    assert all(not a <= 7 < a + n for a, n, _ in reads[first_poll:])
    assert {(a, n) for a, n, _ in reads[first_poll:]} == {(0, 7), (8, 12)}


@pytest.mark.services
async def test_a_refused_gap_register_keeps_both_neighbours(device) -> None:
    dev = device(refuse=[7])
    points = [hr("a", 0, "uint32"), hr("b", 2, "uint32"), hr("c", 10, "uint32"), hr("d", 12, "uint32")]
    rec = Recorder()
    poller = ModbusPoller([spec(dev.port, points)], rec)
    await run_until(poller, lambda: len(rec.rows) >= 3)
    assert all(not math.isnan(v) for row in rec.rows for v in row)
    assert [h.key for h in poller.stats()["m"].learned_holes] == [(3, 4, 10)]


@pytest.mark.services
async def test_holes_given_back_at_start_are_never_read(device) -> None:
    dev = device(refuse=[7])
    points = [hr(f"r{a:02d}", a) for a in range(20)]
    rec = Recorder()
    known = (LearnedHole(3, 7, 8, 2, time.time_ns()),)
    poller = ModbusPoller([spec(dev.port, points, learned_holes=known)], rec, on_holes=rec.on_holes)
    await run_until(poller, lambda: len(rec.rows) >= 3)
    assert all(r == "ok" and not a <= 7 < a + n for a, n, r in dev.reads())
    stats = poller.stats()["m"]
    assert stats.exceptions == {} and stats.learned_holes == known and rec.holes == []
    assert all(row[8] == 108.0 and math.isnan(row[7]) for row in rec.rows)


@pytest.mark.services
async def test_a_hole_that_becomes_readable_is_reprobed_and_its_point_returns(device, caplog) -> None:
    dev = device(refuse=[7])
    points = [hr(f"r{a:02d}", a) for a in range(20)]
    rec = Recorder()
    poller = ModbusPoller([spec(dev.port, points, reprobe_holes_s=1.0)], rec, on_holes=rec.on_holes)
    phase = {"fixed_at": 0}

    def script() -> bool:
        if not phase["fixed_at"] and poller.stats()["m"].learned_holes:
            dev.set(refuse=[])  # the device finished booting
            phase["fixed_at"] = len(rec.rows)
        return bool(phase["fixed_at"]) and len(rec.rows) > phase["fixed_at"] and rec.rows[-1][7] == 107.0

    with caplog.at_level(logging.INFO, logger="drivers.modbus"):
        await run_until(poller, script, timeout=15)
    stats = poller.stats()["m"]
    assert stats.learned_holes == () and stats.state == "up"
    assert [len(hs) for _, hs in rec.holes] == [1, 0]  # learned, then forgotten: the owner hears both
    assert any("re-probing FC03 7..7" in r.getMessage() for r in caplog.records)
    assert any("FC03 7..7 answers again" in r.getMessage() for r in caplog.records)
    # it was trusted for about reprobe_holes_s: ten polls a second, not one bisection per poll
    assert stats.exceptions == {2: 1}


@pytest.mark.services
async def test_every_point_refused_leaves_the_device_degraded_not_polled_to_death(device) -> None:
    dev = device(refuse=list(range(40)))
    rec = Recorder()
    poller = ModbusPoller([spec(dev.port, [hr("a", 3), hr("b", 9)])], rec)
    await run_until(poller, lambda: len(poller.stats()["m"].learned_holes) == 2)
    before = len(dev.reads())
    await run_for(poller, 0.5)  # five more slots: nothing left to ask until the holes are re-probed
    stats = poller.stats()["m"]
    assert stats.up and stats.state == "degraded" and rec.rows == []
    assert len(dev.reads()) == before


async def test_learned_holes_round_trip_through_the_journal(tmp_path) -> None:
    from gateway.journal import HoleRecord, Journal, JournalReader

    path = tmp_path / "journal.db"
    kept = [HoleRecord(3, 7, 8, 2, 5), HoleRecord(3, 20, 20, 3, 6)]
    async with Journal(path) as journal:
        assert await journal.learned_holes() == {}  # a journal that never stored any
        await journal.save_holes("m", kept)
        await journal.save_holes("n", [HoleRecord(4, 1, 2, 2, 7)])
        await journal.save_holes("n", [])  # forgotten: answered again
    async with Journal(path) as journal:
        assert await journal.learned_holes() == {"m": kept}
    with JournalReader(path) as reader:
        assert reader.learned_holes() == {"m": kept}
