"""Coalesce a device's points into as few Modbus read requests as the protocol allows.

Limits come from the Modbus Application Protocol V1.1b3: a read of holding or input registers
(FC 03/04) returns at most 125 registers (§6.3, §6.4) and a read of coils or discrete inputs
(FC 01/02) at most 2000 bits (§6.1, §6.2).  Devices often answer a read that spans an address
they do not implement with exception code 2 (illegal data address); such addresses are declared
as *holes* and a request never spans one.  ``max_gap`` bounds how many unused registers a request
may read between two points, trading a few wasted bytes against one more round trip.  *Cuts*
are addresses a request may end at or start from but never run across: what the poller learns
when a device refuses a read whose two halves it answers (see :mod:`drivers.modbus._adaptive`).

Algorithm: per function code, points sorted by (address, end) are cut into runs greedily — a
run is extended while its range stays within the length limit, skips no more than ``max_gap``
unread addresses and touches no hole.  A point that starts before the current run's end but
ends inside it is swallowed at no cost.  Optimality against an exhaustive search over all
partitions is checked in ``tests/test_request_plan.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

MAX_READ_REGISTERS = 125  # Modbus Application Protocol V1.1b3 §6.3
MAX_READ_BITS = 2000  # ibid. §6.1
BIT_FUNCTION_CODES = frozenset((1, 2))


class PlannedPoint(Protocol):
    """What the planner needs of a point (:class:`drivers.modbus._points.Point` satisfies it)."""

    @property
    def function_code(self) -> int: ...
    @property
    def address(self) -> int: ...
    @property
    def end(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ReadRequest:
    function_code: int
    address: int
    count: int

    @property
    def end(self) -> int:
        return self.address + self.count


@dataclass(frozen=True, slots=True)
class RequestPlan:
    requests: tuple[ReadRequest, ...]
    #: for each input point, in input order: (index into ``requests``, offset within that request)
    point_slots: tuple[tuple[int, int], ...]


def _hits_hole(holes: Sequence[tuple[int, int]], start: int, end: int) -> bool:
    return any(h_start < end and start < h_end for h_start, h_end in holes)


def plan_requests(
    points: Sequence[PlannedPoint],
    *,
    max_registers: int = MAX_READ_REGISTERS,
    max_bits: int = MAX_READ_BITS,
    max_gap: int = 16,
    holes: Sequence[tuple[int, int, int]] = (),
    cuts: Sequence[tuple[int, int]] = (),
) -> RequestPlan:
    """Plan the reads that cover every point; deterministic for a given input.

    ``holes`` are ``(function_code, start, end_exclusive)`` address ranges the device refuses;
    ``cuts`` are ``(function_code, address)``: no request contains both ``address - 1`` and ``address``.
    Raises ``ValueError`` for limits outside the protocol's or a point that cannot be read in
    one request (too long, or on a hole).
    """
    if not 1 <= max_registers <= MAX_READ_REGISTERS:
        raise ValueError(f"max_registers must be 1..{MAX_READ_REGISTERS}, not {max_registers}")
    if not 1 <= max_bits <= MAX_READ_BITS:
        raise ValueError(f"max_bits must be 1..{MAX_READ_BITS}, not {max_bits}")
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, not {max_gap}")
    holes_by_fc: dict[int, list[tuple[int, int]]] = {}
    for fc, h_start, h_end in holes:
        if h_end <= h_start:
            raise ValueError(f"hole ({fc}, {h_start}, {h_end}) is empty")
        holes_by_fc.setdefault(fc, []).append((h_start, h_end))
    for fc, at in cuts:  # an empty hole (at, at) hits exactly the ranges strictly containing ``at``
        holes_by_fc.setdefault(fc, []).append((at, at))

    by_fc: dict[int, list[int]] = {}
    for i, p in enumerate(points):
        by_fc.setdefault(p.function_code, []).append(i)

    requests: list[ReadRequest] = []
    slots: list[tuple[int, int]] = [(0, 0)] * len(points)
    for fc in sorted(by_fc):
        limit = max_bits if fc in BIT_FUNCTION_CODES else max_registers
        fc_holes = holes_by_fc.get(fc, [])
        order = sorted(by_fc[fc], key=lambda i: (points[i].address, points[i].end, i))
        for i in order:
            p = points[i]
            if p.end - p.address > limit:
                raise ValueError(
                    f"point at {p.address} (FC {fc}) spans {p.end - p.address} addresses, above {limit}"
                )
            if _hits_hole(fc_holes, p.address, p.end):
                raise ValueError(f"point at {p.address}..{p.end - 1} (FC {fc}) lies on a declared hole or cut")
        run: list[int] = []
        start = end = 0
        for i in order:
            p = points[i]
            if run:
                new_end = max(end, p.end)
                if (
                    new_end - start <= limit
                    and p.address - end <= max_gap
                    # from ``end - 1``: a cut at ``end`` lies between the run and this point
                    and not _hits_hole(fc_holes, end - 1, new_end)
                ):
                    run.append(i)
                    end = new_end
                    continue
                _close_run(requests, slots, points, run, fc, start, end)
            run, start, end = [i], p.address, p.end
        if run:
            _close_run(requests, slots, points, run, fc, start, end)
    return RequestPlan(tuple(requests), tuple(slots))


def _close_run(
    requests: list[ReadRequest],
    slots: list[tuple[int, int]],
    points: Sequence[PlannedPoint],
    run: list[int],
    fc: int,
    start: int,
    end: int,
) -> None:
    index = len(requests)
    requests.append(ReadRequest(fc, start, end - start))
    for i in run:
        slots[i] = (index, points[i].address - start)
