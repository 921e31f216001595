"""The running gateway: Modbus pollers → deadband filter → journal (group commit) → sink deliveries.

Structured concurrency (STYLE.md, trio/anyio): the journal owns its writer task, and one TaskGroup
inside it holds the pollers (one per physical line group), the deliveries, the MQTT ingest, the
status API and the reload task; stopping cancels the pollers and sources first, waits for the
journal to commit what was polled, gives each sink a short final flush and closes.  SIGHUPs are
queued and the reload task takes them one at a time, so two in quick succession never race.
A reload re-reads the site file: line groups whose devices changed restart, the others keep
polling, the journal is untouched; a broken file is refused and the running configuration stays.

One device must not stop the gateway: each line's poller runs under a supervisor that catches an
unexpected exception (a bug: the poller handles every device fault itself), logs it with its
traceback, counts it (``pollers`` in status) and restarts that poller after a full-jitter backoff
(:mod:`drivers.backoff`), keeping its counters and learned holes; the other lines, the journal and
the sinks go on.  The holes a poller learns (addresses a device refuses) are stored in the journal
by one task, in order, and given back to the pollers at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from drivers.backoff import Backoff
from drivers.modbus import DeviceStats, LearnedHole, ModbusPoller
from gateway.config import Device, InfluxV1Sink, InfluxV2Sink, Site, load_site
from gateway.errors import ConfigError, JournalError
from gateway.journal import Journal
from gateway.series import Sample
from gateway.service._availability import Availability
from gateway.service._deadband import DeadbandFilter
from gateway.service._health import HealthPolicy, health_reasons
from gateway.service._lines import PollerStats, device_spec, holes_from_records, holes_to_records, line_groups
from gateway.service._live import LiveAnalytics
from gateway.service._status import GatewayStatus, MqttStatus
from gateway.sinks import Delivery, LineEncoder, make_writer

if TYPE_CHECKING:  # loaded only for a site with an mqtt: section
    from gateway.ingest import MqttIngest
    from gateway.sinks import MqttSink

log = logging.getLogger("pedf.gateway")

#: restart schedule of a line's poller after an unexpected exception (full jitter, drivers.backoff)
POLLER_RESTART_BASE_S = 1.0
POLLER_RESTART_CAP_S = 60.0


def tune_gc() -> None:
    """Move what startup built (site, plans, decoders, clients) out of the collector's sight and
    collect young objects less often: a poll makes few reference cycles, and the default threshold
    (700) ran a collection every few polls — about a third of the gateway's own CPU per poll at
    1,000 devices (benchmarks/RESULTS.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


@dataclass
class GatewayCounters:
    samples: int = 0
    overruns: int = 0  # polls dropped because the journal could not keep up
    commit_failures: int = 0
    started_ns: int = field(default_factory=time.time_ns)
    last_commit_failure_ns: int | None = None  # /health: the journal cannot commit
    journal_failures_seen: int = 0  # the journal's failed commits, MQTT ingest's included


class Gateway:
    """One site's service.  ``await Gateway(site).run(stop_event)``."""

    def __init__(
        self,
        site: Site,
        *,
        journal_path: str | Path | None = None,
        extra_sinks: list[InfluxV1Sink | InfluxV2Sink] | None = None,
        api: bool | None = None,
        max_pending: int = 50_000,
    ) -> None:
        self.site = site
        jc = site.config.journal
        self.journal = Journal(
            journal_path or jc.path,
            synchronous=jc.synchronous,
            commit_interval_s=jc.commit_interval_ms / 1000.0,
            max_bytes=int(jc.max_mb * 1024 * 1024),
            retention_s=jc.retention_h * 3600.0,
            reserve_bytes=int(jc.reserve_mb * 1024 * 1024),
        )
        self.sinks = list(site.config.sinks) + list(extra_sinks or [])
        self.api_enabled = site.config.api.enabled if api is None else api
        self.max_pending = max_pending
        self.counters = GatewayCounters()
        self.pollers: dict[str, ModbusPoller] = {}
        self.deliveries: dict[str, Delivery] = {}
        self.mqtt_ingest: MqttIngest | None = None  # when the site has an mqtt: section
        self.mqtt_publish: MqttSink | None = None
        self.live: LiveAnalytics | None = None  # when the site has an analytics: section
        self._reloads: asyncio.Queue[tuple[str | Path | None, asyncio.Future[bool] | None]] = asyncio.Queue()
        self._drained = asyncio.Event()
        self._poll_tasks: dict[str, asyncio.Task[None]] = {}
        self.poller_stats: dict[str, PollerStats] = {}
        self._holes: dict[str, tuple[LearnedHole, ...]] = {}  # learned holes by device, as last reported
        self._holes_queue: asyncio.Queue[tuple[str, tuple[LearnedHole, ...]]] = asyncio.Queue()
        self._series: dict[str, int] = {}
        self._filters: dict[str, DeadbandFilter] = {}
        self.availability = Availability()  # readings a device could not give, per point
        self._pending = 0
        self._overrun_logged = False
        self._group: asyncio.TaskGroup | None = None
        self.api_port: int | None = None
        self.ready = asyncio.Event()

    # -- polling -------------------------------------------------------------------------
    def _emit(self, device: str, ts_ns: int, values: np.ndarray, texts: tuple[str | None, ...] | None) -> None:
        if self._pending >= self.max_pending:
            self.counters.overruns += 1
            if not self._overrun_logged:
                log.warning("journal cannot keep up: dropping polls", extra={"fields": {"pending": self._pending}})
                self._overrun_logged = True
            return
        self._overrun_logged = False
        self.availability.check(device, values)
        values = self._filters[device].apply(ts_ns, values)
        try:
            future = self.journal.append(Sample(self._series[device], ts_ns, values, texts))
        except JournalError:  # the writer stopped: the journal's owner (run) fails and stops the gateway
            self.counters.commit_failures += 1
            return
        self._pending += 1
        self.counters.samples += 1
        future.add_done_callback(self._committed)

    def _committed(self, future: asyncio.Future[int]) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._drained.set()
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self.counters.commit_failures += 1
            self.counters.last_commit_failure_ns = time.time_ns()
            if self.counters.commit_failures == 1 or self.counters.commit_failures % 1000 == 0:
                log.error(
                    "journal commit failed",
                    extra={"fields": {"error": str(exc), "failures": self.counters.commit_failures}},
                )

    async def _register(self, devices: tuple[Device, ...]) -> None:
        for d in devices:
            self._series[d.name] = await self.journal.series_id(d.series_key(self.site.name))
            self._filters[d.name] = DeadbandFilter(d.points)
            self.availability.register(d.name, d.points)

    def _start_poller(self, key: str, devices: tuple[Device, ...]) -> None:
        assert self._group is not None
        poller = ModbusPoller([device_spec(d, self._holes.get(d.name, ())) for d in devices], self._emit,
                              logger=logging.getLogger("pedf.modbus"), on_holes=self._holes_changed)
        self.pollers[key] = poller
        self._poll_tasks[key] = self._group.create_task(self._supervise(key, poller), name=f"poll {key}")

    async def _supervise(self, key: str, poller: ModbusPoller) -> None:
        """Run one line's poller; after an unexpected exception log, count and restart it (backoff)."""
        stats = self.poller_stats.setdefault(key, PollerStats())
        backoff = Backoff(POLLER_RESTART_BASE_S, POLLER_RESTART_CAP_S)
        while True:
            started = time.monotonic()
            try:
                await poller.run()
                return
            # backstop: a bug in one line's poller must not stop the other lines, the journal or the sinks
            except Exception as exc:
                stats.restarts += 1
                stats.last_error, stats.last_error_ns = f"{type(exc).__name__}: {exc}", time.time_ns()
                log.error("poller of line %s failed; restarting it", key, exc_info=exc,
                          extra={"fields": {"line": key, "restarts": stats.restarts, "error": stats.last_error}})
            if time.monotonic() - started > POLLER_RESTART_CAP_S:
                backoff.reset()  # it had run well for a while: this is a new fault, not the same one again
            await backoff.sleep()

    def _holes_changed(self, device: str, holes: tuple[LearnedHole, ...]) -> None:
        """From a poller: a device's learned holes changed; the holes task stores them."""
        self._holes[device] = holes
        self._holes_queue.put_nowait((device, holes))

    async def _holes_loop(self) -> None:
        while True:
            device, holes = await self._holes_queue.get()
            try:
                await self.journal.save_holes(device, holes_to_records(holes))
            except JournalError as exc:  # the holes are relearned after a restart: worth a log line, not a stop
                log.error("cannot store learned holes", extra={"fields": {"device": device, "error": str(exc)}})
            finally:
                self._holes_queue.task_done()

    async def _flush_holes(self, timeout_s: float = 5.0) -> None:
        """At stop, once the pollers are cancelled: let the holes task store what they reported last."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._holes_queue.join()

    async def reload(self, path: str | Path | None = None) -> bool:
        """Re-read the site file; restart only line groups whose devices changed."""
        try:
            new_site = load_site(path or self.site.file)
        except ConfigError as exc:
            log.error("site file refused, keeping the running configuration", extra={"fields": {"errors": str(exc)}})
            return False
        old_groups, new_groups = line_groups(self.site), line_groups(new_site)
        await self._register(new_site.devices)
        for key in set(old_groups) | set(new_groups):
            if old_groups.get(key) == new_groups.get(key):
                continue
            task = self._poll_tasks.pop(key, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                self.pollers.pop(key, None)
            if key in new_groups:
                self._start_poller(key, new_groups[key])
            log.info("line group restarted", extra={"fields": {"line": key}})
        self.site = new_site
        log.info("site file reloaded", extra={"fields": {"devices": len(new_site.devices)}})
        return True

    def request_reload(self, path: str | Path | None = None) -> None:
        """Queue a reload (SIGHUP): the reload task runs them one at a time, in order."""
        self._reloads.put_nowait((path, None))

    async def _api_reload(self, _: object) -> dict[str, Any]:
        """``POST /reload``: a SIGHUP that answers whether the site file was taken."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._reloads.put_nowait((None, done))
        ok = await done
        return {"reloaded": ok, "devices": len(self.site.devices),
                **({} if ok else {"error": "site file refused, the running configuration stays (see the log)"})}

    async def _reload_loop(self) -> None:
        while True:
            path, done = await self._reloads.get()
            ok = await self.reload(path)
            if done is not None and not done.done():
                done.set_result(ok)

    # -- running -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, *, on_ready: Callable[[], None] | None = None) -> None:
        """Poll, journal and deliver until ``stop`` is set.  The journal owns its writer task: if the
        writer dies, the error propagates out of here (after every task has been cancelled)."""
        async with self.journal:
            await self._register(self.site.devices)
            self._holes = {d: holes_from_records(r) for d, r in (await self.journal.learned_holes()).items()}
            encoder = LineEncoder(self.journal.series)
            for sink in self.sinks:
                self.journal.register_sink(sink.name)
                self.deliveries[sink.name] = Delivery(sink.name, self.journal, make_writer(sink), encoder,
                                                      batch_lines=sink.batch_lines, max_age_s=sink.max_age_s)
            if self.site.config.mqtt is not None:  # paho and aiomqtt are loaded only for a site that uses MQTT
                from gateway.ingest import mqtt_ingest
                from gateway.sinks import mqtt_publisher

                self.mqtt_ingest = mqtt_ingest(self.site, self.journal)
                self.mqtt_publish = mqtt_publisher(self.site, self.journal)
            if self.site.config.analytics is not None:  # its kernels are loaded before the first poll
                self.live = LiveAnalytics(self.site, self.journal)
                await self.live.start()
            async with asyncio.TaskGroup() as group:
                self._group = group
                for key, devices in line_groups(self.site).items():
                    self._start_poller(key, devices)
                sink_tasks = [group.create_task(d.run(), name=f"sink {n}") for n, d in self.deliveries.items()]
                if self.mqtt_publish is not None:
                    sink_tasks.append(group.create_task(self.mqtt_publish.run(), name="sink mqtt_publish"))
                source_tasks = [group.create_task(self._reload_loop(), name="reload")]
                holes_task = group.create_task(self._holes_loop(), name="learned holes")
                if self.mqtt_ingest is not None:
                    source_tasks.append(group.create_task(self.mqtt_ingest.run(), name="mqtt ingest"))
                if self.live is not None:  # returns once stop is set, so the group can close
                    group.create_task(self.live.run(stop), name="live analytics")
                if self.api_enabled:
                    from gateway.service._api import serve_api

                    api = self.site.config.api
                    api_ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                    source_tasks.append(group.create_task(
                        serve_api(self.status, api.host, api.port, api_ready,
                                  token=api.token.get_secret_value() if api.token else None,
                                  health=self._health_policy, controls={"/reload": self._api_reload}),
                        name="api"))
                    self.api_port = await api_ready
                self.ready.set()
                if on_ready:
                    on_ready()
                await stop.wait()
                log.info("stopping: polling stops, the journal commits, sinks flush")
                for task in [*self._poll_tasks.values(), *source_tasks]:
                    task.cancel()
                await self._drain_journal()
                await self._flush_holes()
                holes_task.cancel()
                for task in sink_tasks:
                    task.cancel()
            self._group = None

    async def _drain_journal(self, timeout_s: float = 10.0) -> None:
        """Wait (on commits, not by polling) until every emitted poll is committed or failed."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._pending > 0:
                    self._drained.clear()
                    await self._drained.wait()
        except TimeoutError:
            raise JournalError(f"{self._pending} samples not committed at shutdown") from None

    # -- status --------------------------------------------------------------------------
    def _health_policy(self) -> HealthPolicy:
        h = self.site.config.api.health
        return HealthPolicy(max_unsent_age_s=h.max_unsent_age_s, commit_failure_window_s=h.commit_failure_window_s)

    def status(self) -> GatewayStatus:
        now = time.time_ns()
        journal = self.journal.stats()
        if journal.failed_commits > self.counters.journal_failures_seen:  # e.g. MQTT ingest's commits
            self.counters.journal_failures_seen = journal.failed_commits
            self.counters.last_commit_failure_ns = max(self.counters.last_commit_failure_ns or 0, now)
        devices: dict[str, DeviceStats] = {}
        for poller in self.pollers.values():
            devices.update(poller.stats())
        elapsed = max((now - self.counters.started_ns) / 1e9, 1e-9)
        status = GatewayStatus(
            site=self.site.name,
            uptime_s=round(elapsed, 3),
            devices=devices,
            devices_up=sum(1 for d in devices.values() if d.state == "up"),
            devices_degraded=sum(1 for d in devices.values() if d.state == "degraded"),
            devices_total=len(self.site.devices),
            samples=self.counters.samples,
            samples_per_s=round(self.counters.samples / elapsed, 2),
            overruns=self.counters.overruns,
            commit_failures=self.counters.commit_failures,
            journal=journal,
            sinks={name: d.stats() for name, d in self.deliveries.items()},
            mqtt=MqttStatus(ingest=None if self.mqtt_ingest is None else self.mqtt_ingest.stats(),
                            publish=None if self.mqtt_publish is None else self.mqtt_publish.stats()),
            analytics=None if self.live is None else self.live.stats(),
            pollers={k: dataclasses.replace(v) for k, v in self.poller_stats.items()},
            last_commit_failure_ns=self.counters.last_commit_failure_ns,
            not_available=self.availability.counts(),
        )
        return dataclasses.replace(status, health=health_reasons(status, now, self._health_policy()))

    def status_json(self) -> dict[str, Any]:
        return self.status().to_json()
