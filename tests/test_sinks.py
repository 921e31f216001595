"""Sinks and delivery against real influxd and victoria-metrics: arrival, rejections, outages, retries."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from gateway.errors import SinkRejected, SinkUnavailable
from gateway.journal import Journal
from gateway.series import Sample, SeriesKey
from gateway.sinks import Delivery, InfluxV1Writer, InfluxV2Writer, LineEncoder

T0 = 1_700_000_000_000_000_000
METER = SeriesKey("meter", (("device", "m1"), ("site", "s1")), ("p_kw", "e_kwh", "n_i"),
                  ("float", "float", "int"))


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


def polls(sid: int, n: int, start: int = 0) -> list[Sample]:
    return [Sample(sid, T0 + (start + i) * 1_000_000_000, np.array([i * 0.5, 100.0 + i, float(i)]))
            for i in range(n)]


@contextlib.asynccontextmanager
async def delivering(delivery: Delivery):
    task = asyncio.create_task(delivery.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.services
async def test_v1_rows_arrive_in_influxd(tmp_path: Path, influxd) -> None:
    influxd.create_database("pedf")
    async with Journal(tmp_path / "j.db") as journal:
        sid = await journal.series_id(METER)
        writer = InfluxV1Writer(influxd.url, "pedf", username="admin", password="s3cret-pw")
        assert await writer.ping()
        delivery = Delivery("influx", journal, writer, LineEncoder(journal.series), batch_lines=300,
                            max_age_s=0.05)
        async with delivering(delivery):
            head = await journal.append_many(polls(sid, 1000))
            await eventually(lambda: journal.cursor("influx") == head)
        rows = influxd.query("SELECT p_kw, e_kwh, n_i FROM meter ORDER BY time", db="pedf")
        assert len(rows) == 1000
        assert rows[7] == {"time": T0 + 7 * 10**9, "p_kw": 3.5, "e_kwh": 107.0, "n_i": 7,
                           "_measurement": "meter"}
        st = delivery.stats()
        assert st.sent_lines == 1000 and st.batches >= 4 and st.dead_lettered == 0 and st.backlog == 0
        assert influxd.points_written() == 1000


@pytest.mark.services
async def test_v2_path_lands_in_victoria_metrics(tmp_path: Path, victoria_metrics) -> None:
    async with Journal(tmp_path / "j.db") as journal:
        sid = await journal.series_id(METER)
        writer = InfluxV2Writer(victoria_metrics.url, org="o", bucket="b", token="tok-secret")
        delivery = Delivery("vm", journal, writer, LineEncoder(journal.series), batch_lines=100,
                            max_age_s=0.05)
        async with delivering(delivery):
            head = await journal.append_many(polls(sid, 250))
            await eventually(lambda: journal.cursor("vm") == head)
        assert delivery.stats().sent_lines == 250

    def exported() -> list[dict]:
        return victoria_metrics.export('{__name__="meter_e_kwh"}')

    await eventually(lambda: sum(len(s["values"]) for s in exported()) == 250)
    (series,) = exported()
    assert series["metric"] == {"__name__": "meter_e_kwh", "device": "m1", "site": "s1"}
    assert series["timestamps"][:3] == [T0 // 10**6 + i * 1000 for i in range(3)]  # milliseconds
    assert series["values"][:3] == [100.0, 101.0, 102.0]


@pytest.mark.services
async def test_one_bad_line_is_dead_lettered_and_the_rest_written(tmp_path: Path, influxd) -> None:
    influxd.create_database("pedf")
    conflicting = SeriesKey("meter", (("device", "m9"), ("site", "s1")), ("p_kw",), ("int",))
    writer = InfluxV1Writer(influxd.url, "pedf")
    await writer.write(b"meter,device=m0,site=s1 p_kw=1.5 1")  # p_kw is now a float field
    with pytest.raises(SinkRejected) as info:
        await writer.write(b"meter,device=m0,site=s1 p_kw=2i 2")
    assert info.value.status == 400 and "conflict" in str(info.value)
    async with Journal(tmp_path / "j.db") as journal:
        good, bad = await journal.series_id(METER), await journal.series_id(conflicting)
        samples = polls(good, 60)
        samples.insert(37, Sample(bad, T0, np.array([5.0])))
        delivery = Delivery("influx", journal, writer, LineEncoder(journal.series), batch_lines=1000,
                            max_age_s=0.05)
        async with delivering(delivery):
            head = await journal.append_many(samples)
            await eventually(lambda: journal.cursor("influx") == head)
        letters = await journal.dead_letters("influx")
    assert [d.line for d in letters] == [f"meter,device=m9,site=s1 p_kw=5i {T0}"]
    assert "field type conflict" in letters[0].reason
    st = delivery.stats()
    assert st.dead_lettered == 1 and st.sent_lines == 60 and "conflict" in (st.last_error or "")
    assert len(influxd.query("SELECT e_kwh FROM meter WHERE device = 'm1'", db="pedf")) == 60


@pytest.mark.services
async def test_outage_is_bridged_and_cursor_waits_for_acceptance(tmp_path: Path, influxd) -> None:
    influxd.create_database("pedf")
    async with Journal(tmp_path / "j.db") as journal:
        sid = await journal.series_id(METER)
        delivery = Delivery("influx", journal, InfluxV1Writer(influxd.url, "pedf", timeout_s=2),
                            LineEncoder(journal.series), batch_lines=200, max_age_s=0.02,
                            backoff_initial_s=0.05, backoff_max_s=0.2)
        async with delivering(delivery):
            first = await journal.append_many(polls(sid, 100))
            await eventually(lambda: journal.cursor("influx") == first)
            influxd.stop()
            head = await journal.append_many(polls(sid, 500, start=100))
            await eventually(lambda: delivery.stats().retries >= 3)
            assert journal.cursor("influx") == first  # nothing acknowledged while the database is down
            assert delivery.stats().backlog == 500 and "connect" in (delivery.stats().last_error or "")
            influxd.start()
            await eventually(lambda: journal.cursor("influx") == head, timeout=20)
        assert len(influxd.query("SELECT p_kw FROM meter", db="pedf")) == 600


@pytest.mark.services
async def test_cancel_flushes_what_is_pending(tmp_path: Path, influxd) -> None:
    influxd.create_database("pedf")
    async with Journal(tmp_path / "j.db") as journal:
        sid = await journal.series_id(METER)
        delivery = Delivery("influx", journal, InfluxV1Writer(influxd.url, "pedf"),
                            LineEncoder(journal.series), batch_lines=10_000, max_age_s=60)
        async with delivering(delivery):
            head = await journal.append_many(polls(sid, 40))
            await asyncio.sleep(0.2)
            assert journal.cursor("influx") == 0  # still batching: 60 s age, 10k lines
        assert journal.cursor("influx") == head
    assert len(influxd.query("SELECT p_kw FROM meter", db="pedf")) == 40


async def test_secrets_stay_out_of_errors(tmp_path: Path) -> None:
    port = 9  # discard port on loopback: nothing listens, the connection is refused
    v1 = InfluxV1Writer(f"http://127.0.0.1:{port}", "db", username="u", password="hunter2-pw", auth="query")
    v2 = InfluxV2Writer(f"http://127.0.0.1:{port}", org="o", bucket="b", token="tok-hunter2")
    for writer, secret in ((v1, "hunter2-pw"), (v2, "tok-hunter2")):
        with pytest.raises(SinkUnavailable) as info:
            await writer.write(b"m v=1 1")
        assert secret not in str(info.value) and secret not in repr(writer)
        await writer.close()


class StatusServer:
    """Answers /write with a scripted status sequence: only for codes a real server cannot be made to send."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = script
        self.bodies: list[bytes] = []
        self.times: list[float] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        self.times.append(time.monotonic())
        if b"bad" in body:  # any body holding the bad line is refused, as InfluxDB does per point
            return web.json_response({"error": "unable to parse 'bad': missing fields"}, status=400)
        status, headers = self.script.pop(0) if self.script else (204, {})
        return web.Response(status=status, headers=headers)


@pytest.fixture
async def status_server():
    servers = []

    async def start(script: list[tuple[int, dict[str, str]]]) -> tuple[StatusServer, str]:
        handler = StatusServer(script)
        app = web.Application()
        app.router.add_post("/write", handler.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        servers.append(runner)
        port = runner.addresses[0][1]
        return handler, f"http://127.0.0.1:{port}"

    yield start
    for runner in servers:
        await runner.cleanup()


async def journal_dead_letters(path: Path) -> list:
    async with Journal(path) as journal:
        return await journal.dead_letters()


class RawRows:
    """An encoder stand-in that passes pre-made lines through, to inject a line no encoder would write."""

    def __init__(self, lines: dict[int, str]) -> None:
        self.lines = lines

    def encode_lines_bytes(self, rows) -> bytes:
        return "\n".join(self.lines[r.seq] for r in rows if r.seq in self.lines).encode()


@pytest.mark.services
async def test_5xx_and_429_are_retried_honouring_retry_after(tmp_path: Path, status_server) -> None:
    server, url = await status_server([(503, {}), (401, {}), (429, {"Retry-After": "1"})])
    async with Journal(tmp_path / "j.db") as journal:
        sid = await journal.series_id(METER)
        delivery = Delivery("s", journal, InfluxV1Writer(url, "db", gzip=False), LineEncoder(journal.series),
                            batch_lines=100, max_age_s=0.01, backoff_initial_s=0.01, backoff_max_s=0.05)
        async with delivering(delivery):
            head = await journal.append_many(polls(sid, 10))
            await eventually(lambda: journal.cursor("s") == head)
        assert delivery.stats().retries == 3 and delivery.stats().sent_lines == 10
    assert len(server.bodies) == 4 and len(set(server.bodies)) == 1
    assert server.times[3] - server.times[2] >= 0.95  # Retry-After: 1
    assert server.times[2] - server.times[0] < 0.5  # the 5xx backoff stayed under its 0.05 s cap
    assert await journal_dead_letters(tmp_path / "j.db") == []  # a 401 is a wrong password, not a bad line


@pytest.mark.services
async def test_4xx_is_bisected_never_retried_forever(tmp_path: Path, status_server) -> None:
    server, url = await status_server([])
    async with Journal(tmp_path / "j.db") as journal:
        sid = await journal.series_id(METER)
        samples = polls(sid, 64)
        lines = {i + 1: f"m v={i} {i}" for i in range(64)}
        lines[20] = "bad"
        delivery = Delivery("s", journal, InfluxV1Writer(url, "db", gzip=False), RawRows(lines),  # type: ignore[arg-type]
                            batch_lines=64, max_age_s=0.01)
        async with delivering(delivery):
            head = await journal.append_many(samples)
            await eventually(lambda: journal.cursor("s") == head)
        letters = await journal.dead_letters()
    assert [(d.sink, d.line) for d in letters] == [("s", "bad")] and "missing fields" in letters[0].reason
    assert len(server.bodies) <= 2 * 7 + 1  # log2(64) levels of bisection, two halves each
    written = {line for body in server.bodies if b"bad" not in body for line in body.decode().split("\n")}
    assert written == {v for k, v in lines.items() if k != 20}
    assert delivery.stats().retries == 0


@pytest.mark.services
def test_mosquitto_fixture_keeps_queued_messages_across_restart(mosquitto) -> None:
    """The broker fixture others build on: persistence in its temp dir survives a SIGTERM restart."""
    import paho.mqtt.client as mqtt

    received: list[bytes] = []

    def client(cid: str, clean: bool) -> mqtt.Client:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=clean)
        c.on_message = lambda _c, _u, msg: received.append(msg.payload)
        c.connect(mosquitto.host, mosquitto.port)
        c.loop_start()
        return c

    sub = client("sub", clean=False)
    sub.subscribe("site/t", qos=1)
    time.sleep(0.2)
    sub.disconnect()
    sub.loop_stop()
    pub = client("pub", clean=True)
    pub.publish("site/t", b"kept", qos=1).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()
    mosquitto.restart()
    assert (Path(mosquitto.workdir) / "mosquitto.db").exists()
    sub = client("sub", clean=False)
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    sub.disconnect()
    sub.loop_stop()
    assert received == [b"kept"]


@pytest.mark.services
async def test_v1_basic_auth_against_influxd_with_auth(tmp_path: Path) -> None:
    from tests.servers import InfluxD

    with InfluxD(tmp_path / "influxd", auth_enabled=True) as server:
        server.query("CREATE USER admin WITH PASSWORD 'right-pw' WITH ALL PRIVILEGES")
        server.credentials = ("admin", "right-pw")
        server.create_database("pedf")
        wrong = InfluxV1Writer(server.url, "pedf", username="admin", password="wrong-pw")
        with pytest.raises(SinkUnavailable) as info:  # 401: held back in the journal, not dead-lettered
            await wrong.write(b"m v=1 1")
        assert "401" in str(info.value) and "wrong-pw" not in str(info.value)
        await wrong.close()
        for auth in ("basic", "query"):
            right = InfluxV1Writer(server.url, "pedf", username="admin", password="right-pw", auth=auth)
            await right.write(f"m,auth={auth} v=2 2".encode())
            await right.close()
        rows = server.query("SELECT v, auth FROM m", db="pedf")
        assert sorted(r["auth"] for r in rows) == ["basic", "query"]
