"""Helpers for MQTT tests: a blocking publisher (paho, its own network thread) and an ingest runner."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.journal import Journal
from gateway.mqtt_config import MqttSection
from gateway.mqtt_ingest import MqttIngest


class Publisher:
    """Publishes and counts what the broker acknowledged (QoS 1: PUBACK received)."""

    def __init__(self, port: int, client_id: str = "test-publisher", **tls: Any) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        if tls:
            self.client.tls_set(**tls)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.sent = 0

    def publish(self, items: Iterable[tuple[str, bytes | str]], qos: int = 1, timeout: float = 60) -> int:
        infos = [self.client.publish(t, p, qos=qos) for t, p in items]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "the broker did not acknowledge a publish"
        self.sent += len(infos)
        return len(infos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def section(port: int, subscriptions: list[dict[str, Any]], **extra: Any) -> MqttSection:
    return MqttSection.model_validate({"brokers": [{"host": "127.0.0.1", "port": port}],
                                       "client_id": extra.pop("client_id", "pedf-test"),
                                       "subscriptions": subscriptions, **extra})


@contextlib.asynccontextmanager
async def running_ingest(sec: MqttSection, journal_path: Path, *, commit_interval_s: float = 0.02
                         ) -> AsyncIterator[tuple[MqttIngest, Journal]]:
    journal = Journal(journal_path, synchronous="NORMAL", commit_interval_s=commit_interval_s)
    await journal.open()
    ingest = MqttIngest(sec, journal, "t", "Asia/Shanghai")
    task = asyncio.create_task(ingest.run())
    try:
        await wait_for(lambda: ingest.source is not None and ingest.source.stats.connected, 10, "connected")
        yield ingest, journal
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await journal.close()


async def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)


async def rows_by_series(journal: Journal) -> dict[tuple, list[tuple[int, dict[str, float]]]]:
    """{(measurement, tags): [(ts_ns, {field: value})]} of everything committed."""
    out: dict[tuple, list] = {}
    for arrays in await journal.query():
        key = journal.series(arrays.series_id)
        for ts, vals in zip(arrays.ts_ns.tolist(), arrays.values.tolist(), strict=True):
            out.setdefault((key.measurement, key.tags), []).append(
                (ts, {f: v for f, v in zip(key.fields, vals, strict=True) if v == v}))
    return out
