"""Learned holes: the addresses a device refuses, found by bisecting a refused read, so that one wrong
address costs its own point and not the whole poll.

Why: a coalesced request (see :mod:`drivers.modbus._plan`) that touches one address the device does
not implement is answered with exception 02 (ILLEGAL DATA ADDRESS) or 03 (ILLEGAL DATA VALUE), and
with it every good point in the same request is lost, poll after poll.  The profile may be wrong,
or the firmware older than the datasheet; the poller finds out on its own instead.

How: the points of the refused request are merged into *clusters* (overlapping points must be read
together), and the clusters are split in halves, each half read as one request, recursively down to
the halves that are refused on their own (Modbus Application Protocol V1.1b3 §7 gives no finer
answer than "refused").  A refused single cluster is a hole over its addresses; two halves that are
both answered although their union is refused leave the blame on what lies between them — the gap
they would read across becomes a hole, or, without a gap (the device limits the request's length),
a *cut* the planner never runs a request across.  One bad address among ``n`` clusters costs about
``2·log2(n)`` requests, once.  Holes are re-probed after ``reprobe_s`` (hourly by default): the hole
is dropped from the plan and, if the device refuses again, learned again — the address may have been
refused only while the device was booting.

The drivers keep holes as plain data (:class:`LearnedHole`) and hand them out through a callback;
keeping them across restarts is the caller's business (the gateway stores them in its journal).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from drivers.errors import DeviceRejected, DeviceUnreachable
from drivers.modbus._plan import PlannedPoint, _hits_hole

__all__ = ["BISECT_CODES", "LearnedHole", "locate_holes", "readable_points"]

#: exception codes that say "not this address" (ILLEGAL DATA ADDRESS, ILLEGAL DATA VALUE)
BISECT_CODES = frozenset((2, 3))

#: ``read(function_code, address, count)``: one request, raising DeviceRejected when refused
Read = Callable[[int, int, int], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class LearnedHole:
    """Addresses ``start``..``end - 1`` of ``function_code`` the device refused (``end == start``:
    a cut, no request runs across ``start``), taught by exception ``code`` at ``learned_ns``."""

    function_code: int
    start: int
    end: int
    code: int
    learned_ns: int

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.function_code, self.start, self.end)

    def describe(self) -> str:
        if self.end == self.start:
            return f"FC{self.function_code:02d} no request across {self.start}"
        return f"FC{self.function_code:02d} {self.start}..{self.end - 1}"


def readable_points(points: Sequence[PlannedPoint], holes: Sequence[tuple[int, int, int]]) -> list[int]:
    """Indices of the points that touch no hole (nor run across a cut)."""
    by_fc: dict[int, list[tuple[int, int]]] = {}
    for fc, start, end in holes:
        by_fc.setdefault(fc, []).append((start, end))
    return [i for i, p in enumerate(points) if not _hits_hole(by_fc.get(p.function_code, ()), p.address, p.end)]


def clusters(points: Sequence[PlannedPoint], function_code: int, start: int, end: int) -> list[tuple[int, int]]:
    """The address ranges of the points of one request, overlapping points merged."""
    spans = sorted((p.address, p.end) for p in points
                   if p.function_code == function_code and start <= p.address and p.end <= end)
    out: list[tuple[int, int]] = []
    for a, b in spans:
        if out and a < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


async def locate_holes(
    read: Read, function_code: int, spans: Sequence[tuple[int, int]], code: int, now_ns: int
) -> list[LearnedHole]:
    """The holes that explain why a read of all of ``spans`` was refused with ``code``.

    Raises whatever ``read`` raises other than a refusal with a :data:`BISECT_CODES` code (a timeout
    halfway through: nothing is learned from a device that stopped answering)."""
    if len(spans) == 1:
        return [LearnedHole(function_code, spans[0][0], spans[0][1], code, now_ns)]
    mid = len(spans) // 2
    left, right = spans[:mid], spans[mid:]
    holes: list[LearnedHole] = []
    refused = []
    for half in (left, right):
        half_code = await _refused(read, function_code, half[0][0], half[-1][1])
        if half_code is not None:
            refused.append(True)
            holes += await locate_holes(read, function_code, half, half_code, now_ns)
        else:
            refused.append(False)
    if not any(refused):
        # each half alone is answered: the fault is between them (a gap) or the length (a cut)
        gap_start, gap_end = left[-1][1], right[0][0]
        holes.append(LearnedHole(function_code, gap_start, max(gap_start, gap_end), code, now_ns))
    return holes


async def _refused(read: Read, function_code: int, start: int, end: int) -> int | None:
    """The exception code if the device refuses ``start``..``end - 1``, None if it answers."""
    try:
        await read(function_code, start, end - start)
    except DeviceUnreachable:
        raise
    except DeviceRejected as exc:
        if exc.exception_code not in BISECT_CODES:
            raise
        return exc.exception_code
    return None
