"""MQTT ingest under hostile traffic, against a real mosquitto with the real MqttIngest and Journal:
junk floods never push genuine readings out of a small journal, dead letters stay within their
budget, invented device names stop at the series cap, oversize payloads are refused before decoding,
and the source stops reading while its consumer is behind."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from drivers.mqtt import MqttSource
from gateway.config import MqttSection
from gateway.ingest import MqttIngest
from gateway.journal import Journal
from tests.mqtt_helpers import Publisher, rows_by_series, section, wait_for

TS = 1_700_000_000
METER = {"topic": "pedf/{building}/{device}/telemetry", "decoder": "json", "measurement": "meter",
         "timestamp": {"path": "ts"}, "fields": {"p_kw": "p"}}
ROOM = {"topic": "sensors/{device}/temp_c", "decoder": "number", "field": "temp_c", "measurement": "room",
        "building": "b1"}


async def _run_ingest(sec: MqttSection, journal: Journal, publish: Any, done: Any, timeout: float = 60) -> MqttIngest:
    """Run an ingest on ``journal`` while ``publish()`` runs in a thread, until ``done(ingest)``."""
    ingest = MqttIngest(sec, journal, "t")
    async with asyncio.TaskGroup() as group:
        task = group.create_task(ingest.run())
        await wait_for(lambda: ingest.source is not None and ingest.source.stats.subscribed, 10, "subscribed")
        await asyncio.to_thread(publish)
        await wait_for(lambda: done(ingest), timeout, "all messages handled")
        task.cancel()
    return ingest


def _genuine(i: int) -> tuple[str, str]:
    return f"pedf/b/m{i % 4}/telemetry", json.dumps({"ts": TS + i, "p": i})


@pytest.mark.services
@pytest.mark.parametrize("budget", [None, {"max_count": 200, "max_mb": 0.5, "keep_bytes": 1024}],
                         ids=["default-budget", "small-budget"])
async def test_junk_flood_never_pushes_genuine_readings_out_of_a_small_journal(mosquitto, tmp_path: Path,
                                                                               budget: dict | None) -> None:
    """1,000 junk payloads of 60 KB interleaved with 1,000 readings, journal capped at 2 MB: every
    reading is kept, the dead letters are truncated (their length kept), bounded, and drops counted."""
    n, junk = 1000, b"\x00junk" * 12_000  # 60,000 bytes, not JSON
    sec = section(mosquitto.port, [METER], **({"dead_letters": budget} if budget else {}))
    pub = Publisher(mosquitto.port)
    items = [item for i in range(n) for item in (_genuine(i), (f"pedf/b/m{i % 4}/telemetry", junk))]

    def publish() -> None:
        for start in range(0, len(items), 200):
            pub.publish(items[start:start + 200])

    async with Journal(tmp_path / "j.db", synchronous="NORMAL", max_bytes=2 << 20) as journal:
        ingest = await _run_ingest(sec, journal, publish,
                                   lambda g: g.counters["committed"] + g.counters["dead_lettered"] >= 2 * n)
        rows = await rows_by_series(journal)
        dead = await journal.payload_dead_letters(limit=100_000)
        stats, jstats = ingest.stats(), journal.stats()
    pub.close()
    readings = sorted(ts for key, series in rows.items() for ts, _ in series)
    assert readings == [(TS + i) * 10**9 for i in range(n)]  # every genuine reading kept
    assert jstats.dropped_rows == 0
    keep = (budget or {}).get("keep_bytes", 4096)
    assert dead and all(len(d.payload) == keep and d.payload_bytes == len(junk) for d in dead)
    assert stats.truncated == n and stats.dead_lettered == n
    assert stats.dead_letters_kept == len(dead) and stats.dead_letters_dropped_total == n - len(dead) > 0
    assert stats.dead_letter_bytes <= 2.5 * 2**20  # the cap, give or take what came after the last commit
    if budget:  # the budget binds: at most 200 kept, the oldest dropped by it
        assert len(dead) <= 200 and stats.dead_letter_bytes <= 0.5 * 2**20
        assert stats.dead_letters_dropped >= n - 200
    else:  # 1,000 × 4 KiB would pass the 2 MB cap: the cap deletes dead letters, never readings
        assert stats.dead_letters_dropped == 0 and len(dead) < n
    assert dead[-1].topic == "pedf/b/m3/telemetry"  # the newest are the ones kept


@pytest.mark.services
async def test_invented_device_names_stop_at_the_series_cap(mosquitto, tmp_path: Path) -> None:
    """2,100 invented device names with the default cap of 2,000 series: 2,000 series, the rest
    dead-lettered and counted; genuine devices created first keep arriving after the cap is reached."""
    sec = section(mosquitto.port, [ROOM])  # the default max_series
    pub = Publisher(mosquitto.port)
    known = [(f"sensors/room{i}/temp_c", b"20.5") for i in range(5)]
    invented = [(f"sensors/x{i:05d}/temp_c", b"1") for i in range(2100)]

    def publish() -> None:
        pub.publish(known)
        for start in range(0, len(invented), 500):
            pub.publish(invented[start:start + 500])
        pub.publish([(f"sensors/room{i}/temp_c", b"21.5") for i in range(5)])

    async with Journal(tmp_path / "j.db", synchronous="NORMAL") as journal:
        ingest = await _run_ingest(sec, journal, publish,
                                   lambda g: g.counters["committed"] + g.counters["dead_lettered"] >= 2110)
        rows = await rows_by_series(journal)
        dead = await journal.payload_dead_letters(limit=1000)
        stats = ingest.stats()
    pub.close()
    assert len(rows) == 2000 and stats.series == 2000 == sec.max_series
    assert stats.series_refused == 105 and stats.dead_lettered == 105 and stats.committed == 2005
    assert all("series cap reached" in d.reason for d in dead)
    for i in range(5):
        assert [v["temp_c"] for _, v in rows[("room", tuple(sorted(
            {"site": "t", "building": "b1", "device": f"room{i}"}.items())))]] == [20.5, 21.5]


@pytest.mark.services
async def test_a_small_series_cap_and_series_the_journal_already_has(mosquitto, tmp_path: Path) -> None:
    """``max_series`` per source; a series the journal already has is accepted at the cap; a device
    name of 300 characters is refused before it can become a series."""
    pub = Publisher(mosquitto.port)
    first = [(f"sensors/d{i}/temp_c", b"1") for i in range(3)]
    async with Journal(tmp_path / "j.db", synchronous="NORMAL") as journal:
        await _run_ingest(section(mosquitto.port, [ROOM], client_id="a"), journal, lambda: pub.publish(first),
                          lambda g: g.counters["committed"] >= 3)
        sec = section(mosquitto.port, [ROOM], client_id="b", max_series=2)
        later = [(f"sensors/d{i}/temp_c", b"2") for i in range(3)] + [("sensors/new/temp_c", b"3"),
                                                                      (f"sensors/{'x' * 300}/temp_c", b"4")]
        ingest = await _run_ingest(sec, journal, lambda: pub.publish(later),
                                   lambda g: g.counters["committed"] + g.counters["dead_lettered"] >= 5)
        dead = await journal.payload_dead_letters()
    pub.close()
    assert ingest.counters["committed"] == 3 and ingest.counters["series_refused"] == 1
    assert "series cap reached" in dead[0].reason and dead[0].topic == "sensors/new/temp_c"
    assert dead[1].reason == "tag device: a value of 300 characters (at most 256)"
    assert dead[1].topic.endswith("…") and len(dead[1].topic) == 257


@pytest.mark.services
async def test_oversize_payloads_are_refused_before_decoding(mosquitto, tmp_path: Path) -> None:
    """A valid reading larger than ``max_payload_bytes`` is refused, counted and dead-lettered
    truncated; one larger than the MQTT 5 Maximum Packet Size is not even sent by the broker."""
    sec = section(mosquitto.port, [METER], max_payload_bytes=1000)
    big = json.dumps({"ts": TS, "p": 1, "pad": "x" * 1500})  # decodes fine: refused for its size only
    huge = json.dumps({"ts": TS, "p": 2, "pad": "x" * 200_000})  # over 1000 + 65,536: the broker drops it
    pub = Publisher(mosquitto.port)

    def publish() -> None:
        pub.publish([("pedf/b/m/telemetry", big), ("pedf/b/m/telemetry", huge), _genuine(3)])

    async with Journal(tmp_path / "j.db", synchronous="NORMAL") as journal:
        ingest = await _run_ingest(sec, journal, publish, lambda g: g.counters["committed"] >= 1)
        await asyncio.sleep(0.3)
        rows = await rows_by_series(journal)
        dead = await journal.payload_dead_letters()
    pub.close()
    assert ingest.source.max_packet_bytes == 1000 + 65536
    assert [ts for series in rows.values() for ts, _ in series] == [(TS + 3) * 10**9]
    assert ingest.counters["oversize"] == 1 and ingest.counters["received"] == 2  # the huge one never came
    (d,) = dead
    assert "exceeds max_payload_bytes (1000)" in d.reason and d.payload_bytes == len(big)
    assert (mosquitto.workdir / "mosquitto.log").read_text().count("too large") >= 1


@pytest.mark.services
async def test_the_source_stops_reading_while_its_consumer_is_behind(mosquitto) -> None:
    """QoS 0 messages of 60 KB and a slow consumer: no batch grows past the buffer limit (plus one
    message), and nothing is lost by pausing."""
    src = MqttSource([mosquitto_endpoint(mosquitto)], "slow", [("flood/#", 0)], max_buffered_bytes=256 * 1024)
    pub = Publisher(mosquitto.port)
    batches: list[int] = []
    taken = 0
    async with src:
        await src.connect(src.brokers[0])
        await asyncio.to_thread(pub.publish, [(f"flood/{i}", b"x" * 60_000) for i in range(100)], 0)
        deadline = time.monotonic() + 20
        async for batch in src:
            batches.append(sum(len(m.payload) for m in batch))
            taken += len(batch)
            if taken >= 100 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)  # a slow consumer
    pub.close()
    assert taken == 100
    assert max(batches) <= 256 * 1024 + 60_000 + 64 and len(batches) >= 15


def mosquitto_endpoint(mosquitto: Any) -> Any:
    from drivers.mqtt import BrokerEndpoint

    return BrokerEndpoint("127.0.0.1", mosquitto.port)


def test_limits_in_the_site_file(tmp_path: Path) -> None:
    """The limits are read from ``mqtt:``; nonsense values are refused with file, line and field."""
    from gateway.config import load_site
    from gateway.errors import ConfigError
    from tests.test_mqtt_decoders import SITE

    f = tmp_path / "site.yaml"
    limits = "  max_series: 50\n  max_payload_bytes: 4096\n  dead_letters: {max_count: 10, max_mb: 1, keep_bytes: 0}\n"
    f.write_text(SITE.replace("  protocol: 3.1.1\n", "  protocol: 3.1.1\n" + limits))
    mqtt = load_site(f, {"MQTT_PASSWORD": "x"}).config.mqtt
    assert mqtt is not None and (mqtt.max_series, mqtt.max_payload_bytes) == (50, 4096)
    assert (mqtt.dead_letters.max_count, mqtt.dead_letters.max_bytes, mqtt.dead_letters.keep_bytes) == (10, 2**20, 0)
    bad = "  max_series: 0\n  max_payload_bytes: 1e9\n  dead_letters: {max_mb: .inf, keep_bytes: -1}\n"
    f.write_text(SITE.replace("  protocol: 3.1.1\n", "  protocol: 3.1.1\n" + bad))
    with pytest.raises(ConfigError) as err:
        load_site(f, {"MQTT_PASSWORD": "x"})
    text = str(err.value)
    for line, field in ((7, "max_series"), (8, "max_payload_bytes"), (9, "dead_letters.max_mb"),
                        (9, "dead_letters.keep_bytes")):
        assert f"site.yaml:{line}: mqtt.{field}" in text
