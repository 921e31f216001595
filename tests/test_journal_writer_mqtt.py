"""A journal writer that stops under the MQTT ingest: nothing hangs, the owner sees the error, no
message is acknowledged to the broker that is not on disk, and the broker's redelivery on the next
start completes the record."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from gateway.errors import JournalError
from gateway.ingest import MqttIngest
from gateway.journal import Journal
from gateway.series import Sample
from tests.mqtt_helpers import Publisher, running_ingest, section, wait_for
from tests.test_journal_writer import deny_page_count

pytestmark = pytest.mark.services

TS = 1_700_000_000
SUB = {"topic": "pedf/{building}/{device}/telemetry", "decoder": "json", "measurement": "meter",
       "timestamp": {"path": "ts"}, "fields": {"p_kw": {"path": "p", "unit": "kW"}}}


def message(i: int) -> tuple[str, str]:
    return "pedf/b/m/telemetry", json.dumps({"ts": TS + i, "p": float(i)})


def values_on_disk(path: Path) -> list[float]:
    with sqlite3.connect(path) as db:
        return [float(np.frombuffer(vals)[0]) for (vals,) in db.execute("SELECT vals FROM samples")]


def journal_errors(exc: BaseException) -> list[JournalError]:
    if isinstance(exc, BaseExceptionGroup):
        return [e for sub in exc.exceptions for e in journal_errors(sub)]
    return [exc] if isinstance(exc, JournalError) else []


async def test_a_stopped_writer_acknowledges_nothing_it_did_not_commit(mosquitto, tmp_path: Path) -> None:
    sec = section(mosquitto.port, [SUB], client_id="writer-stops", protocol="3.1.1")
    path = tmp_path / "j.db"
    pub = Publisher(mosquitto.port)
    journal = Journal(path, synchronous="NORMAL", commit_interval_s=0.02)
    ingest = MqttIngest(sec, journal, "t", "Asia/Shanghai")
    with pytest.raises(BaseException) as stopped:  # a JournalError, maybe inside an exception group
        async with asyncio.timeout(30):  # the failure mode being guarded against is a hang
            async with journal, asyncio.TaskGroup() as group:
                group.create_task(ingest.run())
                await wait_for(lambda: ingest.source is not None and ingest.source.stats.subscribed, 10, "subscribed")
                await asyncio.to_thread(pub.publish, [message(i) for i in range(10)])
                await wait_for(lambda: ingest.counters["acked"] >= 10, 10, "first ten acknowledged")
                await journal._run(lambda: journal._db.set_authorizer(deny_page_count))
                await asyncio.to_thread(pub.publish, [message(i) for i in range(10, 40)])
                await asyncio.sleep(25)  # the writer's failure ends the block long before
    assert journal_errors(stopped.value), f"not a journal error: {stopped.value!r}"
    acked = ingest.counters["acked"]
    committed = values_on_disk(path)
    assert 10 <= acked <= len(committed) < 40  # acknowledged ⊆ committed, and the rest was refused
    with pytest.raises(JournalError):
        journal.append(Sample(1, TS, np.array([1.0])))

    # the broker kept what was never acknowledged: the next start takes it, and nothing is missing
    async with running_ingest(sec, path) as (again, _):
        await wait_for(lambda: set(values_on_disk(path)) >= {float(i) for i in range(40)}, 20, "redelivered")
        assert again.counters["received"] >= 40 - acked
    pub.close()
