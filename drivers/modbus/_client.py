"""Polls Modbus devices on a wall-clock grid and hands each poll over as one float64 array.

Each device has its own task; devices on the same physical line share one
:class:`~drivers.modbus._link.ModbusLine` (one pymodbus client, one lock), devices on different
lines run in parallel.  Everything that does not change between polls — the request plan, the
decoder's index arrays (both shared by all devices with the same points and limits), the pymodbus
calls with their arguments bound (when ``run`` starts: pymodbus clients need a running event loop) —
is built once, so a poll is: wait for the slot, one locked exchange per planned request, one
columnar decode, one ``emit``.

Schedule: poll slots are multiples of the device's interval since the epoch
(``next = ceil(now / interval) × interval``) so all devices sample together and timestamps are
regular.  A poll that outlasts its interval skips the missed slots (counted as an overrun, logged
once per burst) rather than queueing them.  After ``DOWN_AFTER`` consecutive unanswered polls
(timeouts, malformed answers, no connection) a device is *down*: it is polled at a doubling
interval up to ``DOWN_INTERVAL_MAX_S`` with no retries, so on a shared line a dead unit costs one
timeout (two on RTU, see :mod:`drivers.modbus._link`) per slow poll and no more.

Exception responses (counted by code, logged by name) mean different things (Modbus Application
Protocol V1.1b3 §7): 0x0A GATEWAY PATH UNAVAILABLE and 0x0B GATEWAY TARGET DEVICE FAILED TO
RESPOND come from a gateway in front of a device that did not answer, so they count as unanswered
polls (retried, then down); 0x02 ILLEGAL DATA ADDRESS and 0x03 ILLEGAL DATA VALUE for a coalesced
request make the poller bisect it and learn the refused addresses as holes, re-planning around
them and re-probing them after ``reprobe_holes_s`` (:mod:`drivers.modbus._adaptive`); the others
(0x01 ILLEGAL FUNCTION, 0x04 SERVER DEVICE FAILURE, ...) prove the device alive but refusing:
the poll fails, the device stays (or comes back) up, shown as degraded.
Retries back off exponentially with full jitter ("Exponential Backoff And Jitter", AWS
Architecture Blog, 2015), capped at ``RETRY_CAP_S``.  An exception raised by ``emit`` is a bug
upstream and ends ``run`` (through its TaskGroup) rather than being swallowed; whoever runs the
poller restarts it (the gateway does, with backoff, keeping its counters and learned holes).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import numpy as np
from pymodbus.exceptions import ConnectionException, ModbusException

from drivers.backoff import full_jitter
from drivers.errors import (
    DeviceError,
    DeviceMalformed,
    DeviceRejected,
    DeviceTimeout,
    DeviceUnreachable,
    WriteRefused,
    exception_name,
)
from drivers.modbus._adaptive import BISECT_CODES, LearnedHole, clusters, locate_holes
from drivers.modbus._codec import DeviceDecoder, encode_write
from drivers.modbus._device import DeviceStats, ModbusDeviceSpec, _Device, _ReadCall
from drivers.modbus._link import MalformedFrame, ModbusLine, SerialLink, TcpLink, line_key

__all__ = ["DeviceStats", "HolesChanged", "LearnedHole", "ModbusDeviceSpec", "ModbusPoller", "SerialLink", "TcpLink"]

DOWN_AFTER = 3  # consecutive unanswered polls before a device is marked down
DOWN_INTERVAL_MAX_S = 30.0
RETRY_BASE_S = 0.05
RETRY_CAP_S = 1.0
#: exception codes of a gateway whose target did not answer (GATEWAY PATH UNAVAILABLE, ... FAILED TO RESPOND)
UNREACHABLE_CODES = frozenset((10, 11))

Emit = Callable[[str, int, np.ndarray, tuple[str | None, ...] | None], None]
#: called with a device's name and all its learned holes each time they change (after a poll)
HolesChanged = Callable[[str, tuple[LearnedHole, ...]], None]
#: unanswered in the sense of DOWN_AFTER: no answer, a garbled one, or a gateway saying the device is silent
_UNANSWERED = (DeviceTimeout, DeviceMalformed, DeviceUnreachable)


class ModbusPoller:
    """Polls every device until cancelled; see the module docstring for the schedule."""

    __slots__ = ("_devices", "_emit", "_lines", "_log", "_on_holes")

    def __init__(
        self,
        devices: Sequence[ModbusDeviceSpec],
        emit: Emit,
        *,
        logger: logging.Logger | None = None,
        on_holes: HolesChanged | None = None,
    ) -> None:
        self._emit = emit
        self._on_holes = on_holes
        self._log = logger or logging.getLogger("drivers.modbus")
        self._lines: dict[tuple[str, ...], ModbusLine] = {}
        self._devices: dict[str, _Device] = {}
        for spec in devices:
            if spec.name in self._devices:
                raise ValueError(f"two devices named {spec.name!r}")
            key = line_key(spec.link)
            line = self._lines.get(key)
            if line is None:
                gap = max(s.frame_gap_s for s in devices if line_key(s.link) == key)
                timeout = max(s.timeout_s for s in devices if line_key(s.link) == key)
                line = self._lines[key] = ModbusLine(
                    spec.link, frame_gap_s=gap, timeout_s=timeout, logger=self._log
                )
            elif line.link != spec.link:
                raise ValueError(
                    f"{spec.name}: {spec.link} is on line {line.name} with other settings ({line.link})"
                )
            self._devices[spec.name] = _Device(spec, line, self._log)

    def stats(self) -> dict[str, DeviceStats]:
        return {n: replace(d.stats, exceptions=dict(d.stats.exceptions)) for n, d in self._devices.items()}

    def decoder(self, device: str) -> DeviceDecoder:
        """The decoder of the device's current plan (of its readable points)."""
        decoder = self._devices[device].decoder
        assert decoder is not None
        return decoder

    def learned_holes(self) -> dict[str, tuple[LearnedHole, ...]]:
        return {n: d.stats.learned_holes for n, d in self._devices.items() if d.stats.learned_holes}

    async def run(self) -> None:
        try:
            devices = list(self._devices.values())
            for dev in devices:
                dev.bind()
            if len(devices) == 1:  # one device per line (the usual TCP case): no task group, no extra task
                await self._poll_forever(devices[0])
                return
            async with asyncio.TaskGroup() as tg:
                for dev in devices:
                    tg.create_task(self._poll_forever(dev), name=f"modbus poll {dev.spec.name}")
        finally:
            for line in self._lines.values():
                line.close()

    async def write(self, device: str, point: str, value: float | bool) -> None:
        """Encode and write one setpoint (FC 05, 06 or 16) through the device's line."""
        dev = self._devices[device]
        p = dev.point(point)
        if p is None:
            raise WriteRefused(f"write of {value!r} to {device}.{point} refused: no such point")
        payload = encode_write(p, value, pt_ratio=dev.spec.pt_ratio, ct_ratio=dev.spec.ct_ratio)
        client = dev.line.client
        if isinstance(payload, bool):
            call = functools.partial(client.write_coil, p.address, payload, device_id=dev.unit)
        elif len(payload) == 1:
            call = functools.partial(client.write_register, p.address, payload[0], device_id=dev.unit)
        else:
            call = functools.partial(client.write_registers, p.address, payload, device_id=dev.unit)
        await self._with_retries(dev, call, p.address, dev.spec.retries)
        self._log.info("wrote %r to %s.%s (unit %d, address %d)", value, device, point, dev.unit, p.address)

    # -- polling ---------------------------------------------------------------------------------

    async def _poll_forever(self, dev: _Device) -> None:
        interval_ns = dev.interval_ns
        slot = -(-time.time_ns() // interval_ns) * interval_ns
        overrunning = False
        task = asyncio.current_task()
        while True:
            # Python 3.11's asyncio.wait_for (inside pymodbus' connect and request) can swallow a
            # cancellation when the awaited call completes at the same moment (CPython gh-86296):
            # a stop request must not be lost, or the task polls on and the shutdown never ends
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            delay = slot - time.time_ns()
            if delay > 0:
                await asyncio.sleep(delay / 1e9)
            await self._poll(dev, slot)
            interval_ns = self._current_interval_ns(dev)
            following = (slot // interval_ns + 1) * interval_ns
            now = time.time_ns()
            if now > following:
                missed = (now - following) // interval_ns + 1
                dev.stats.overruns += 1
                if not overrunning:
                    self._log.warning(
                        "%s: poll took %.3f s, longer than its %.3f s interval; skipping %d slot(s)",
                        dev.spec.name,
                        (now - slot) / 1e9,
                        interval_ns / 1e9,
                        missed,
                    )
                overrunning = True
                following += missed * interval_ns
            else:
                overrunning = False
            slot = following

    def _current_interval_ns(self, dev: _Device) -> int:
        stats = dev.stats
        if stats.up:
            return dev.interval_ns
        # at least one doubling whatever the counters say: a device marked down that then answered
        # with an exception once left consecutive_failures at 0, and a negative shift killed the poller
        doublings = max(1, min(stats.consecutive_failures - DOWN_AFTER + 1, 16))
        cap = max(round(DOWN_INTERVAL_MAX_S * 1e9), dev.interval_ns)
        interval = min(dev.interval_ns << doublings, cap)
        stats.interval_s = interval / 1e9
        return interval

    async def _poll(self, dev: _Device, slot_ns: int) -> None:
        stats = dev.stats
        retries = dev.spec.retries if stats.up else 0
        if dev.learned:
            self._reprobe_due(dev)
        try:
            for _ in range(len(dev.plan.requests) + 2):  # each round learns at least one hole
                refused = await self._read_plan(dev, retries)
                if not isinstance(refused, tuple):
                    responses = refused
                    break
                await self._learn(dev, *refused, retries)
            else:
                raise refused[1]
        except DeviceError as exc:
            self._poll_failed(dev, exc)
            return
        if dev.layout.decoder is None:  # every point is on a learned hole: alive, but nothing to read
            self._answered(dev)
            stats.state = "degraded"
            self._report_holes(dev)
            return
        values, texts = dev.layout.decode(responses)
        self._answered(dev)
        stats.polls_ok += 1
        stats.state = "up"
        stats.last_ok_ns = slot_ns
        self._report_holes(dev)
        self._emit(dev.spec.name, slot_ns, values, texts)

    async def _read_plan(self, dev: _Device, retries: int) -> list | tuple[_ReadCall, DeviceRejected]:
        """The responses to every planned read, or the read refused with 02/03 and its refusal."""
        responses = []
        for c in dev.bind():
            try:  # the common case without the retry loop's extra coroutine
                responses.append(await self._exchange(dev, c.call, c.address, c))
            except _UNANSWERED:
                if not retries:
                    raise
                await self._backoff(0)
                responses.append(await self._with_retries(dev, c.call, c.address, retries, c, attempt=1))
            except DeviceRejected as exc:
                if exc.exception_code not in BISECT_CODES:
                    raise
                return c, exc
        return responses

    async def _learn(self, dev: _Device, c: _ReadCall, exc: DeviceRejected, retries: int) -> None:
        """Bisect the refused read ``c`` into learned holes and replan around them."""
        count(dev.stats, exc.exception_code)
        client = dev.line.client
        readers = {1: client.read_coils, 2: client.read_discrete_inputs,
                   3: client.read_holding_registers, 4: client.read_input_registers}

        async def read(fc: int, address: int, n: int) -> object:
            call = functools.partial(readers[fc], address, count=n, device_id=dev.unit)
            return await self._with_retries(dev, call, address, retries, _ReadCall(call, fc, address, n, fc in (1, 2)))

        layout = dev.layout
        points = layout.points if layout.readable is None else [layout.points[i] for i in layout.readable.tolist()]
        spans = clusters(points, c.function_code, c.address, c.address + c.count)
        if not spans:
            raise exc
        found = await locate_holes(read, c.function_code, spans, exc.exception_code, time.time_ns())
        known = {h.key for h in dev.stats.learned_holes} | {h.key for h in dev.reported}
        self._log.log(  # one line per refused read, however many holes it held
            logging.DEBUG if all(h.key in known for h in found) else logging.WARNING,
            "%s (unit %d): refuses %s; polling the other points around it",
            dev.spec.name, dev.unit,
            ", ".join(f"{h.describe()} (exception {h.code} {exception_name(h.code)})" for h in found),
        )
        dev.set_learned([*dev.learned.values(), *found])

    def _reprobe_due(self, dev: _Device) -> None:
        """Drop the holes learned longer than ``reprobe_holes_s`` ago: the next read tries them again."""
        now = time.time_ns()
        due = [h for h in dev.learned.values() if now - h.learned_ns >= dev.reprobe_ns]
        if due:
            self._log.info("%s (unit %d): re-probing %s", dev.spec.name, dev.unit,
                           ", ".join(h.describe() for h in due))
            dev.set_learned([h for h in dev.learned.values() if h not in due])

    def _report_holes(self, dev: _Device) -> None:
        """After a poll the device answered: tell the owner if its holes changed."""
        holes = dev.stats.learned_holes
        if holes == dev.reported:
            return
        was = {h.key for h in dev.reported}
        now = {h.key for h in holes}
        for key in sorted(was - now):
            self._log.info("%s (unit %d): FC%02d %d..%d answers again", dev.spec.name, dev.unit,
                           key[0], key[1], key[2] - 1)
        dev.reported = holes
        if self._on_holes is not None:
            self._on_holes(dev.spec.name, holes)

    def _answered(self, dev: _Device) -> None:
        """The device answered something: it is alive, whatever its state was."""
        stats = dev.stats
        if not stats.up:
            stats.up, stats.interval_s = True, dev.spec.interval_s
            self._log.info("%s (unit %d) answers again", dev.spec.name, dev.unit)
        stats.consecutive_failures = 0

    def _poll_failed(self, dev: _Device, exc: DeviceError) -> None:
        stats = dev.stats
        stats.polls_failed += 1
        first = stats.consecutive_failures == 0
        if isinstance(exc, DeviceRejected):
            n = count(stats, exc.exception_code)
            if not isinstance(exc, DeviceUnreachable):
                # it answered: alive, but the request needs fixing (a down device is up again)
                self._answered(dev)
                stats.state = "degraded"
                self._log.log(logging.WARNING if n == 1 else logging.DEBUG, "%s", exc)
                return
        stats.consecutive_failures += 1
        self._log.log(logging.WARNING if first else logging.DEBUG, "%s", exc)
        if stats.up and stats.consecutive_failures >= DOWN_AFTER:
            stats.up = False
            self._log.warning(
                "%s (unit %d) marked down after %d failed polls; polling it less often",
                dev.spec.name,
                dev.unit,
                stats.consecutive_failures,
            )
        stats.state = "degraded" if stats.up else "down"

    async def _with_retries(
        self,
        dev: _Device,
        call: Callable[[], Awaitable],
        address: int,
        retries: int,
        read: _ReadCall | None = None,
        attempt: int = 0,
    ):
        """Attempt number ``attempt`` and the ones left up to ``retries``, backing off in between."""
        while True:
            try:
                return await self._exchange(dev, call, address, read)
            except _UNANSWERED:
                if attempt >= retries:
                    raise
            await self._backoff(attempt)
            attempt += 1

    @staticmethod
    async def _backoff(attempt: int) -> None:
        """Full-jitter exponential backoff after failed attempt number ``attempt``, capped."""
        await asyncio.sleep(full_jitter(attempt + 1, RETRY_BASE_S, RETRY_CAP_S))

    async def _exchange(
        self, dev: _Device, call: Callable[[], Awaitable], address: int, read: _ReadCall | None
    ):
        """One request/response under the line lock; returns the registers or bits (or the PDU)."""
        line = dev.line
        name, unit = dev.spec.name, dev.unit
        async with line.lock:
            if line.quiet_until:
                await line.wait_quiet()
            if not line.connected:
                await self._connect(dev)
            try:
                async with asyncio.timeout(dev.timeout_s):
                    rr = await call()
            except TimeoutError:
                dev.stats.timeouts += 1
                line.frame_lost(dev.timeout_s)
                raise DeviceTimeout(name, unit, address, f"no answer within {dev.timeout_s} s") from None
            except MalformedFrame as exc:  # undecodable: the line has closed the connection
                dev.stats.malformed += 1
                raise DeviceMalformed(name, unit, address, str(exc)) from None
            except ConnectionException as exc:
                dev.stats.timeouts += 1
                raise DeviceTimeout(name, unit, address, f"connection lost: {exc}") from None
            except ModbusException as exc:
                dev.stats.timeouts += 1
                line.frame_lost(dev.timeout_s)
                raise DeviceTimeout(name, unit, address, str(exc)) from None
            line.frame_done()
        if rr.isError():
            count_n = None if read is None else read.count
            if rr.exception_code in UNREACHABLE_CODES:
                raise DeviceUnreachable(name, unit, address, rr.exception_code, count_n)
            raise DeviceRejected(name, unit, address, rr.exception_code, count_n)
        if read is None:
            return rr
        data = rr.bits if read.bits else rr.registers
        if rr.function_code != read.function_code or (
            len(data) < read.count if read.bits else len(data) != read.count
        ):
            line.frame_lost(dev.timeout_s)
            dev.stats.malformed += 1
            raise DeviceMalformed(
                name,
                unit,
                address,
                f"FC {rr.function_code} answer with {len(data)} "
                f"values to FC {read.function_code} for {read.count}",
            )
        return data

    async def _connect(self, dev: _Device) -> None:
        line = dev.line
        was_connected = line.ever_connected
        if await line.connect(dev.timeout_s):
            if was_connected:
                dev.stats.reconnects += 1
            return
        dev.stats.connect_failures += 1
        line.close()
        raise DeviceTimeout(dev.spec.name, dev.unit, 0, f"cannot connect to {line.name}")


def count(stats: DeviceStats, code: int) -> int:
    """Count one exception response by code; returns how many of that code so far."""
    n = stats.exceptions[code] = stats.exceptions.get(code, 0) + 1
    return n
