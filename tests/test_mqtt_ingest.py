"""MQTT ingest against a real mosquitto: templates → tags, every decoder, dead letters, persistent
sessions (MQTT 5 and 3.1.1), arrival-time dedup of redeliveries, TLS with client certificates and
refused credentials."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest

from drivers.mqtt import BrokerEndpoint, InboundMessage, MqttConnectError, MqttSource
from gateway.cli import _main as cli
from gateway.ingest import MqttIngest
from gateway.journal import Journal
from tests.mqtt_helpers import Publisher, rows_by_series, running_ingest, section, wait_for
from tests.processes import free_port
from tests.servers import Mosquitto

TS = 1_700_000_000  # 2023-11-14T22:13:20Z

SUBS = [
    {"topic": "pedf/{building}/{device}/telemetry", "decoder": "json", "measurement": "meter",
     "timestamp": {"path": "ts"},
     "fields": {"p_kw": {"path": "data.power_w", "scale": 0.001, "unit": "kW"}, "v_l1_v": "data.v[0]",
                "e_import_kwh": "energy.total"}},
    {"topic": "sensors/{device}/temp_c", "decoder": "number", "field": "temp_c", "measurement": "room",
     "building": "b1"},
    {"topic": "tele/{device}/SENSOR", "decoder": "tasmota", "measurement": "plug", "building": "b1"},
    {"topic": "shellies/+/events/rpc", "decoder": "shelly", "measurement": "shelly", "building": "b1"},
    {"topic": "kv/{building}/{device}/#", "decoder": "kv", "measurement": "misc", "qos": 0,
     "timestamp": {"path": "t", "format": "epoch_ms"}},
]

TASMOTA = {"Time": "2023-11-15T06:13:20", "ENERGY": {"TotalStartTime": "2023-01-01T00:00:00", "Total": 12.5,
           "Today": 1.25, "Power": 230, "Voltage": 231, "Current": 1.1, "Factor": 0.91},
           "DS18B20": {"Id": "0316", "Temperature": 21.5}, "TempUnit": "C"}
SHELLY = {"src": "shellyplus1pm-a8032ab1", "dst": "x/events", "method": "NotifyStatus",
          "params": {"ts": TS + 0.25, "switch:0": {"id": 0, "apower": 1500.0, "voltage": 230.1,
                     "aenergy": {"total": 2500.0, "by_minute": [1, 2, 3], "minute_ts": TS},
                     "temperature": {"tC": 40.0, "tF": 104.0}}}}


def tags(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"site": "t", **kw}.items()))


@pytest.mark.services
async def test_templates_and_every_decoder_through_the_broker(mosquitto, tmp_path: Path) -> None:
    pub = Publisher(mosquitto.port)
    async with running_ingest(section(mosquitto.port, SUBS), tmp_path / "j.db") as (ingest, journal):
        items = [
            ("pedf/office_a/m1/telemetry", json.dumps({"ts": f"{TS}000", "data": {"power_w": 1500, "v": [230.5, 1]},
                                                        "energy": {"total": 42}})),
            ("sensors/lab/temp_c", b" 21.25\n"),
            ("tele/plug1/SENSOR", json.dumps(TASMOTA)),
            ("shellies/dev/events/rpc", json.dumps(SHELLY)),
            ("shellies/dev/events/rpc", json.dumps({"src": "s", "method": "NotifyEvent", "params": {"ts": TS}})),
            ("kv/b2/pump/status", json.dumps({"t": TS * 1000 + 5, "flow": {"m3h": 2.5}, "on": True, "mode": "x"})),
        ]
        await asyncio.to_thread(pub.publish, items)
        await wait_for(lambda: ingest.counters["committed"] + ingest.counters["ignored"] >= 5, 10, "committed")
        rows = await rows_by_series(journal)
        stats = ingest.stats()
    pub.close()
    assert rows[("meter", tags(building="office_a", device="m1"))] == [
        (TS * 10**9, {"p_kw": 1.5, "v_l1_v": 230.5, "e_import_kwh": 42.0})]
    (ts, vals), = rows[("room", tags(building="b1", device="lab"))]
    assert vals == {"temp_c": 21.25} and abs(ts / 1e9 - time.time()) < 30  # arrival time
    (ts, vals), = rows[("plug", tags(building="b1", device="plug1"))]
    assert ts == TS * 10**9  # Tasmota local time, read in the site's zone (Asia/Shanghai, +08:00)
    assert vals == {"e_import_kwh": 12.5, "e_today_kwh": 1.25, "p_kw": 0.23, "v_v": 231.0, "i_a": 1.1,
                    "pf": 0.91, "ds18b20_temperature": 21.5}
    (ts, vals), = rows[("shelly", tags(building="b1", device="shellyplus1pm-a8032ab1"))]
    assert ts == TS * 10**9 + 250_000_000
    assert vals == {"switch0_p_kw": 1.5, "switch0_v_v": 230.1, "switch0_e_import_kwh": 2.5, "switch0_temp_c": 40.0}
    assert rows[("misc", tags(building="b2", device="pump"))] == [(TS * 10**9 + 5_000_000,
                                                                   {"flow_m3h": 2.5, "on": 1.0})]
    assert stats.ignored == 1 and stats.qos0 == 1 and stats.qos1 == 5 and stats.dead_lettered == 0
    assert stats.acked == 5  # QoS 1 messages acknowledged, the QoS 0 one counted apart


@pytest.mark.services
async def test_bad_payloads_are_dead_lettered_and_the_subscription_continues(mosquitto, tmp_path: Path,
                                                                             capsys) -> None:
    pub = Publisher(mosquitto.port)
    good = json.dumps({"ts": TS, "data": {"power_w": 1000}})
    async with running_ingest(section(mosquitto.port, SUBS), tmp_path / "j.db") as (ingest, journal):
        await asyncio.to_thread(pub.publish, [
            ("pedf/b/m1/telemetry", b"\xff\xfe not json"),
            ("pedf/b/m1/telemetry", json.dumps({"ts": TS, "data": {"power_w": "high"}})),
            ("pedf/b/m1/telemetry", json.dumps({"ts": "yesterday", "data": {"power_w": 1}})),
            ("sensors/x/temp_c", b"NaN"),
            ("pedf/b/m1/telemetry", good),
        ])
        await wait_for(lambda: ingest.counters["committed"] >= 1 and ingest.counters["dead_lettered"] >= 4, 10,
                       "dead letters")
        rows = await rows_by_series(journal)
        dead = await journal.payload_dead_letters()
        stats = ingest.stats()
    pub.close()
    assert rows[("meter", tags(building="b", device="m1"))] == [(TS * 10**9, {"p_kw": 1.0})]
    assert [d.topic for d in dead] == ["pedf/b/m1/telemetry"] * 3 + ["sensors/x/temp_c"]
    assert "UTF-8" in dead[0].reason and "p_kw: unusable value 'high'" in dead[1].reason
    assert "ISO 8601" in dead[2].reason and "finite" in dead[3].reason
    assert dead[0].payload == b"\xff\xfe not json"
    assert stats.rejected_by_topic == {"pedf/b/m1/telemetry": 3, "sensors/x/temp_c": 1}
    assert stats.acked == 5  # rejected messages are acknowledged too: nothing stalls
    assert await asyncio.to_thread(cli.main, ["deadletter", "list", "--journal", str(tmp_path / "j.db")]) == 0
    out = capsys.readouterr().out
    assert "4 dead-lettered payload(s)" in out and "sensors/x/temp_c" in out and "0 dead-lettered line(s)" in out


@pytest.mark.services
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_persistent_session_keeps_messages_sent_while_away(mosquitto, tmp_path: Path, protocol: str) -> None:
    sec = section(mosquitto.port, SUBS[:1], protocol=protocol, client_id=f"persist-{protocol}")
    pub = Publisher(mosquitto.port)
    msg = lambda i: ("pedf/b/m/telemetry", json.dumps({"ts": TS + i, "data": {"power_w": i}}))  # noqa: E731
    async with running_ingest(sec, tmp_path / "j.db") as (ingest, _):
        await asyncio.to_thread(pub.publish, [msg(i) for i in range(10)])
        await wait_for(lambda: ingest.counters["acked"] >= 10, 10, "first ten")
        assert ingest.source.stats.session_present is False
    await asyncio.to_thread(pub.publish, [msg(i) for i in range(10, 30)])  # the gateway is away
    async with running_ingest(sec, tmp_path / "j.db") as (ingest, journal):
        await wait_for(lambda: ingest.counters["acked"] >= 20, 10, "queued twenty")
        assert ingest.source.stats.session_present is True
        await asyncio.sleep(0.3)
        rows = await rows_by_series(journal)
        redelivered = ingest.counters["redelivered"]
    pub.close()
    assert [ts for ts, _ in rows[("meter", tags(building="b", device="m"))]] == [(TS + i) * 10**9 for i in range(30)]
    assert redelivered == 0  # everything of the first run was acknowledged after its commit


async def test_redelivered_arrival_time_message_reuses_its_first_arrival(tmp_path: Path) -> None:
    """Crash after the commit, before the PUBACK: the broker redelivers with DUP set, and the sample keeps
    its first arrival time (committed with it), across a journal reopen."""
    sec = section(1, SUBS[1:2])
    acked: list[int] = []
    first = InboundMessage(b"sensors/a/temp_c", b"20.5", 1, 7, False, 1, time.time_ns() - 120 * 10**9)
    redelivery = first._replace(mid=1, dup=True, generation=2, arrival_ns=first.arrival_ns + 5 * 10**9)
    same_value_later = first._replace(mid=2, arrival_ns=first.arrival_ns + 60 * 10**9)
    for msg in (first, redelivery, same_value_later):
        async with Journal(tmp_path / "j.db", synchronous="NORMAL") as journal:
            ingest = MqttIngest(sec, journal, "t")
            await ingest.handle([msg], lambda m: acked.append(m.mid) or True)
            while ingest._outstanding:
                await asyncio.sleep(0.01)
            rows = await rows_by_series(journal)
    assert acked == [7, 1, 2]
    # the journal keeps the redelivered row; it carries the first one's time, so the database overwrites it
    assert [ts for ts, _ in rows[("room", tags(building="b1", device="a"))]] == [
        first.arrival_ns, first.arrival_ns, same_value_later.arrival_ns]
    assert ingest.counters["arrival_reused"] == 0  # the last ingest saw only the non-DUP message


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, with the openssl CLI."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=pedf test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", "san.ext", cwd=d)


@pytest.mark.services
async def test_tls_with_client_certificate(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki)
    tls_port = free_port()
    extra = (f"listener {tls_port} 127.0.0.1\ncafile {pki}/ca.crt\ncertfile {pki}/server.crt\n"
             f"keyfile {pki}/server.key\nrequire_certificate true\n")
    with Mosquitto(tmp_path / "mosq", extra_config=extra) as broker:
        sec = section(tls_port, SUBS[:1])
        sec.brokers[0] = sec.brokers[0].model_validate(
            {"host": "127.0.0.1", "port": tls_port,
             "tls": {"ca_file": str(pki / "ca.crt"), "cert_file": str(pki / "client.crt"),
                     "key_file": str(pki / "client.key")}})
        pub = Publisher(broker.port)
        async with running_ingest(sec, tmp_path / "j.db") as (ingest, _):
            await asyncio.to_thread(pub.publish, [("pedf/b/m/telemetry", json.dumps({"ts": TS, "data": {"power_w": 5}}))])
            await wait_for(lambda: ingest.counters["acked"] >= 1, 10, "message over TLS")
            assert ingest.source.stats.broker == f"mqtts://127.0.0.1:{tls_port}"
        pub.close()
        no_cert = MqttSource([BrokerEndpoint("127.0.0.1", tls_port, ca_file=str(pki / "ca.crt"))], "x", [])
        async with no_cert:
            with pytest.raises(MqttConnectError, match=f"127.0.0.1:{tls_port}"):
                await no_cert.connect(no_cert.brokers[0])


@pytest.mark.services
async def test_refused_credentials_name_the_broker_and_the_reason(tmp_path: Path) -> None:
    d = tmp_path / "mosq"
    d.mkdir()
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(d / "passwd"), "pedf", "right"], check=True)
    with Mosquitto(d, extra_config=f"allow_anonymous false\npassword_file {d}/passwd\n") as broker:
        for protocol, expected in (("5", "Bad user name or password"), ("3.1.1", "Not authorized")):
            src = MqttSource([BrokerEndpoint("127.0.0.1", broker.port, username="pedf", password="wrong")], "c", [],
                             mqtt5=protocol == "5")
            async with src:
                with pytest.raises(MqttConnectError) as err:
                    await src.connect(src.brokers[0])
            assert f"mqtt://127.0.0.1:{broker.port}" in str(err.value) and "refused" in str(err.value)
            assert expected in str(err.value) or "authori" in str(err.value).lower()
            assert err.value.refused
        ok = MqttSource([BrokerEndpoint("127.0.0.1", broker.port, username="pedf", password="right")], "c", [])
        async with ok:
            assert await ok.connect(ok.brokers[0]) is False


@pytest.mark.services
async def test_reconnects_with_backoff_and_resubscribes_after_a_broker_restart(mosquitto, tmp_path: Path) -> None:
    sec = section(mosquitto.port, SUBS[:1], reconnect_min_s=0.1, reconnect_max_s=0.5)
    async with running_ingest(sec, tmp_path / "j.db") as (ingest, _):
        await asyncio.to_thread(mosquitto.restart)
        await wait_for(lambda: ingest.source.stats.connects >= 2, 15, "reconnected")
        pub = Publisher(mosquitto.port)
        await asyncio.to_thread(pub.publish, [("pedf/b/m/telemetry", json.dumps({"ts": TS, "data": {"power_w": 1}}))])
        await wait_for(lambda: ingest.counters["acked"] >= 1, 10, "message after reconnect")
        pub.close()
        assert ingest.source.stats.disconnects >= 1


@pytest.mark.services
async def test_demo_embedded_broker_and_submeters_reach_the_journal(tmp_path: Path) -> None:
    """``make demo`` without a broker: amqtt (MQTT 3.1.1) in process, Tasmota and Shelly sub-meters."""
    from gateway.config import MqttSection
    from gateway.demo import SubMeterPublisher, demo_mqtt_section, embedded_broker

    port = free_port()
    async with embedded_broker(port):
        sec = MqttSection.model_validate(demo_mqtt_section(port, building="b"))
        publisher = SubMeterPublisher(port, speed=3600.0, period_s=0.05, start_hour=12.0)  # an hour per second
        stop = asyncio.Event()
        async with running_ingest(sec, tmp_path / "j.db") as (ingest, journal):
            task = asyncio.create_task(publisher.run(stop))
            await wait_for(lambda: ingest.counters["committed"] >= 20, 20, "sub-meter samples")
            stop.set()
            await task
            await wait_for(lambda: ingest.counters["committed"] == publisher.published, 10, "all committed")
            rows = await rows_by_series(journal)
            assert ingest.counters["acked"] == publisher.published  # QoS 1 acks after commit, through amqtt
    lighting = rows[("sub_meter", tags(building="b", device="lighting_meter"))]
    rack = rows[("sub_meter", tags(building="b", device="it_rack"))]
    assert lighting[-1][1]["p_kw"] == pytest.approx(6.0) and lighting[-1][1]["e_import_kwh"] > 0
    assert rack[-1][1]["switch0_e_import_kwh"] == pytest.approx(publisher.totals()["it_rack"], abs=1e-3)


@pytest.mark.services
async def test_a_failed_commit_is_not_acknowledged_and_is_redelivered(mosquitto, tmp_path: Path) -> None:
    sec = section(mosquitto.port, SUBS[:1], reconnect_min_s=0.1)
    pub = Publisher(mosquitto.port)
    async with running_ingest(sec, tmp_path / "j.db") as (ingest, journal):
        await asyncio.to_thread(pub.publish, [("pedf/b/m/telemetry", json.dumps({"ts": TS, "data": {"power_w": 0}}))])
        await wait_for(lambda: ingest.counters["acked"] >= 1, 10, "series known")
        await journal._run(lambda: journal._db.execute("PRAGMA query_only=1"))  # SQLite now refuses writes
        await asyncio.to_thread(pub.publish, [("pedf/b/m/telemetry", json.dumps({"ts": TS + i, "data": {"power_w": i}}))
                                              for i in range(1, 6)])
        await wait_for(lambda: ingest.counters["commit_failures"] >= 1, 10, "a failed commit")
        assert ingest.counters["acked"] == 1
        await journal._run(lambda: journal._db.execute("PRAGMA query_only=0"))
        await wait_for(lambda: ingest.counters["acked"] >= 6, 15, "redelivered and committed")
        rows = await rows_by_series(journal)
        assert ingest.source.stats.connects >= 2 and ingest.counters["redelivered"] >= 5
    pub.close()
    assert sorted({ts for ts, _ in rows[("meter", tags(building="b", device="m"))]}) == [
        (TS + i) * 10**9 for i in range(6)]
