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

from gateway.config import MqttSection
from gateway.ingest import MqttIngest
from gateway.journal import Journal


class Publisher:
    """Publishes and counts what the broker acknowledged (QoS 1: PUBACK received)."""

    def __init__(self, port: int, client_id: str = "test-publisher", **tls: Any) -> None:
        self.port, self.client_id, self.tls = port, client_id, tls
        self.sent = 0
        self.reconnects = 0
        self.client = self._connect()

    def _connect(self) -> paho.Client:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv311)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(0.1, 0.5)  # loop_stop() waits for the network thread's reconnect sleep
        if self.tls:
            client.tls_set(**self.tls)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.connect("127.0.0.1", self.port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        client.loop_start()
        return client

    def publish(self, items: Iterable[tuple[str, bytes | str]], qos: int = 1, timeout: float = 60) -> int:
        """Publish and wait for every PUBACK; a message whose PUBACK does not come within ``timeout``
        (its connection dropped while the broker restarted) is published again, up to 3 times."""
        pending = list(items)
        count = len(pending)
        for _ in range(3):
            infos = [(item, self.client.publish(item[0], item[1], qos=qos)) for item in pending]
            deadline = time.monotonic() + timeout
            for _item, info in infos:
                try:
                    info.wait_for_publish(max(0.1, deadline - time.monotonic()))
                except RuntimeError:  # "message publish failed" while disconnected
                    pass
            pending = [item for item, info in infos if not _acknowledged(info)]
            if not pending:
                self.sent += count
                return count
            self.close()  # a connection that lived through a broker restart: start afresh
            self.client = self._connect()
            self.reconnects += 1
        raise AssertionError(f"the broker did not acknowledge {len(pending)} publishes")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _acknowledged(info: paho.MQTTMessageInfo) -> bool:
    try:
        return info.is_published()
    except (RuntimeError, ValueError):  # published while disconnected: paho gave up on it
        return False


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
