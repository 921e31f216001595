"""Secrets stay secret: a password in a sink URL, a password field, a token — none of them appears in
``pedf check``, the log (in-process and the real ``pedf run`` stderr), ``/status`` or ``pedf status``,
while the messages still say what went wrong.  And a password sent to an MQTT broker without TLS is
warned about, once."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from gateway.config import MqttBroker, MqttPublish, load_site
from gateway.errors import ConfigError
from gateway.journal import Journal
from gateway.logs import JsonFormatter, TextFormatter
from gateway.redact import RedactFilter, forget_secrets, redact, remember_secret, split_credentials
from gateway.series import Sample, SeriesKey
from gateway.sinks import Delivery, InfluxV1Writer, InfluxV2Writer, LineEncoder, MqttSink
from tests.harness import GatewayProcess, SimulatorProcess, wait_until, write_site
from tests.mqtt_helpers import section
from tests.processes import free_port

URL_PW = "Url-Pa55word-7731"
FIELD_PW = "Field-Pa55word-9917"
TOKEN = "Token-Value-4471abcd"
SECRETS = (URL_PW, FIELD_PW, TOKEN)
METER = SeriesKey("meter", (("device", "m1"), ("site", "s1")), ("p_kw",), ("float",))


def _pedf() -> str:
    return str(Path(sys.executable).with_name("pedf"))


def _assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked in {where}"


@pytest.fixture(autouse=True)
def _fresh_secrets():
    forget_secrets()
    yield
    forget_secrets()


# -- the redactor itself --------------------------------------------------------------------------

def test_url_userinfo_query_and_headers_are_masked() -> None:
    assert redact("POST http://admin:s3cret@db:8086/write failed") == "POST http://admin:***@db:8086/write failed"
    assert redact("mqtt://user:pw%40x@broker:1883") == "mqtt://user:***@broker:1883"
    assert redact("https://TOKENVALUE@host/api") == "https://***@host/api"
    assert redact("connect 'http://a:b@h:1' then 'http://c:d@h:2'") == "connect 'http://a:***@h:1' then 'http://c:***@h:2'"
    assert redact("/write?db=x&u=admin&p=hunter2&precision=ns") == "/write?db=x&u=admin&p=***&precision=ns"
    assert redact("?token=abc&x=1") == "?token=***&x=1"
    assert redact("login password=hunter2 refused") == "login password=*** refused"
    assert redact("p=3.5 kW") == "p=3.5 kW"
    assert redact("{'Authorization': 'Token abcdefgh12345'}") == "{'Authorization': 'Token ***'}"
    assert redact("Authorization: Basic YWRtaW46c2VjcmV0") == "Authorization: Basic ***"
    # nothing to mask: left exactly as it was
    for plain in ("user@example.com wrote", "http://127.0.0.1:8086/write?db=pedf&precision=ns", "p_kw=3.5",
                  "cannot connect to 127.0.0.1:9 (Connect call failed)", ""):
        assert redact(plain) == plain


def test_remembered_secrets_are_masked_verbatim_and_url_encoded() -> None:
    remember_secret("p@ss word/1")
    remember_secret("ab")  # too short to mask by value: ordinary words would go
    assert redact("echo p@ss word/1 and p%40ss%20word%2F1 and p%40ss+word%2F1") == "echo *** and *** and ***"
    assert redact("tab") == "tab"
    assert redact("token is zz-secret-zz", ["zz-secret-zz"]) == "token is ***"


def test_split_credentials_keeps_the_url_and_decodes_the_userinfo() -> None:
    assert split_credentials("http://ad%3Amin:p%40ss@h:8086/x?y=1") == ("http://h:8086/x?y=1", "ad:min", "p@ss")
    assert split_credentials("https://tok@h") == ("https://h", "tok", None)
    assert split_credentials("http://h:8086") == ("http://h:8086", None, None)


def test_the_log_filter_masks_message_arguments_fields_and_tracebacks() -> None:
    remember_secret(FIELD_PW)
    for formatter in (JsonFormatter(), TextFormatter()):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handler.addFilter(RedactFilter())
        logger = logging.getLogger(f"test.redact.{type(formatter).__name__}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)  # whatever level an earlier in-process `pedf` left on the root
        logger.addHandler(handler)
        try:
            logger.warning("writing to %s", f"http://admin:{URL_PW}@db/write",
                           extra={"fields": {"error": f"bad password {FIELD_PW}", "n": 3,
                                             "exc": ValueError(f"token={TOKEN}")}})
            try:
                raise RuntimeError(f"cannot open http://u:{URL_PW}@host")
            except RuntimeError:
                logger.exception("library said")
        finally:
            logger.removeHandler(handler)
        out = stream.getvalue()
        _assert_clean(out, type(formatter).__name__)
        assert "http://admin:***@db/write" in out and "RuntimeError" in out and "token=***" in out


# -- config: the credentials once, and where they may be --------------------------------------------

def _site_doc(sinks: list[dict]) -> dict:
    return {"site": {"name": "t"}, "parks": [{"name": "p", "grid_region": "east_china"}],
            "buildings": [{"name": "b", "park": "p", "floor_area_m2": 100}], "sinks": sinks}


def test_credentials_given_twice_or_in_a_v2_url_are_refused_with_the_line(tmp_path: Path) -> None:
    twice = {"type": "influxdb_v1", "url": f"http://a:{URL_PW}@h:8086", "database": "d", "username": "a"}
    v2 = {"type": "influxdb_v2", "url": f"http://a:{URL_PW}@h:8086", "org": "o", "bucket": "b", "token": TOKEN}
    for sink, words in ((twice, "credentials once"), (v2, "authenticates with token")):
        path = tmp_path / "site.yaml"
        path.write_text(yaml.safe_dump(_site_doc([sink]), sort_keys=False))
        with pytest.raises(ConfigError) as info:
            load_site(path)
        text = str(info.value)
        assert words in text and "site.yaml:" in text and "sinks[0]" in text
        _assert_clean(text, "the config error")


# -- in process: a writer's errors and the delivery log ---------------------------------------------

async def test_sink_errors_and_delivery_logs_hold_no_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dead = f"127.0.0.1:{free_port()}"
    writers = [InfluxV1Writer(f"http://admin:{URL_PW}@{dead}", "db"),
               InfluxV1Writer(f"http://{dead}", "db", username="bob", password=FIELD_PW, auth="query"),
               InfluxV1Writer(f"http://admin:{URL_PW}@127.0.0.1:99999", "db"),  # an invalid port: aiohttp echoes the URL
               InfluxV2Writer(f"http://{dead}", "o", "b", TOKEN)]
    caplog.set_level(logging.INFO)
    async with Journal(tmp_path / "j.db") as journal:
        sid = await journal.series_id(METER)
        await journal.append_many([Sample(sid, 1_700_000_000 * 10**9 + i, np.array([float(i)])) for i in range(3)])
        deliveries = [Delivery(f"s{i}", journal, w, LineEncoder(journal.series), max_age_s=0.01,
                               backoff_initial_s=0.05, backoff_max_s=0.1) for i, w in enumerate(writers)]
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(d.run()) for d in deliveries]
            deadline = asyncio.get_running_loop().time() + 10
            while any(d.stats().retries < 2 for d in deliveries):
                assert asyncio.get_running_loop().time() < deadline, [d.stats() for d in deliveries]
                await asyncio.sleep(0.05)
            for task in tasks:
                task.cancel()
        errors = [d.stats().last_error or "" for d in deliveries]
    for text in (*errors, caplog.text, *(repr(w) for w in writers)):
        _assert_clean(text, "a sink error or the log")
    assert all("connect" in e.lower() or "invalid" in e.lower() for e in errors), errors
    assert "http://127.0.0.1:99999" in errors[2]  # the URL is still named, without its password


# -- the real service -------------------------------------------------------------------------------

@pytest.mark.services
def test_no_secret_in_check_run_log_status_or_pedf_status(tmp_path: Path, influxd_auth,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEDF_TEST_FIELD_PW", FIELD_PW)
    dead = f"127.0.0.1:{free_port()}"
    sinks = [
        {"type": "influxdb_v1", "name": "authed", "url": f"http://admin:{URL_PW}@127.0.0.1:{influxd_auth.port}",
         "database": "pedf"},
        {"type": "influxdb_v1", "name": "down", "url": f"http://admin:{URL_PW}@{dead}", "database": "pedf"},
        {"type": "influxdb_v1", "name": "down_field", "url": f"http://{dead}", "database": "pedf",
         "username": "bob", "password": "${PEDF_TEST_FIELD_PW}"},
        {"type": "influxdb_v2", "name": "down_v2", "url": f"http://{dead}", "org": "o", "bucket": "b", "token": TOKEN},
    ]
    devices = [{"name": "m1", "profile": "dtsu666", "port": free_port(), "role": "grid_meter"}]
    api_port = free_port()
    site = write_site(tmp_path / "site.yaml", devices, journal=tmp_path / "journal.db", api_port=api_port,
                      sinks=sinks, interval_s=0.5)
    check = subprocess.run([_pedf(), "check", str(site)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    _assert_clean(check.stdout + check.stderr, "pedf check")
    assert f"http://admin:***@{dead}" in check.stdout

    with SimulatorProcess(tmp_path, devices, speed=0), GatewayProcess(tmp_path, site, api_port) as gw:
        def delivered_and_failing() -> bool:
            st = gw.status()["sinks"]
            return st["authed"]["sent_lines"] > 0 and all(st[n]["retries"] >= 2 for n in ("down", "down_field", "down_v2"))
        wait_until(delivered_and_failing, 30, what="one sink delivering, three failing")
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/status", timeout=5) as resp:
            raw_status = resp.read().decode()
        text = subprocess.run([_pedf(), "status", "--url", f"http://127.0.0.1:{api_port}"], capture_output=True,
                              text=True, timeout=30)
        as_json = subprocess.run([_pedf(), "status", "--json", "--url", f"http://127.0.0.1:{api_port}"],
                                 capture_output=True, text=True, timeout=30)
        assert gw.terminate() == 0
    log = (tmp_path / "gateway.log").read_text()
    for out, where in ((raw_status, "/status"), (text.stdout + text.stderr, "pedf status"),
                       (as_json.stdout + as_json.stderr, "pedf status --json"), (log, "pedf run's log")):
        _assert_clean(out, where)
    assert text.returncode == 0 and "sink down: " in text.stdout
    last_error = json.loads(raw_status)["sinks"]["down"]["last_error"]
    assert f"influxdb-v1 http://{dead}/pedf" in last_error and "cannot connect" in last_error
    assert "unavailable" in log and "down" in log  # the outage is logged, only the password is not
    assert influxd_auth.query("SELECT count(*) FROM meter", db="pedf")  # credentials from the URL still work


@pytest.fixture
def influxd_auth(tmp_path: Path):
    from tests.servers import InfluxD

    with InfluxD(tmp_path / "influxd", auth_enabled=True) as server:
        server.query(f"CREATE USER admin WITH PASSWORD '{URL_PW}' WITH ALL PRIVILEGES")
        server.credentials = ("admin", URL_PW)
        server.create_database("pedf")
        yield server


# -- MQTT without TLS ----------------------------------------------------------------------------------

async def test_a_cleartext_mqtt_password_is_warned_about_once_per_client(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    from gateway.ingest import MqttIngest

    port = free_port()  # nothing listens: both clients retry, the warning stays single
    sec = section(port, [{"topic": "t/{device}", "decoder": "number", "measurement": "m", "building": "b"}],
                  reconnect_min_s=0.05, reconnect_max_s=0.1)
    sec = sec.model_copy(update={"brokers": [MqttBroker(host="127.0.0.1", port=port, username="u",
                                                        password=FIELD_PW)]})
    caplog.set_level(logging.INFO)
    async with Journal(tmp_path / "j.db", synchronous="NORMAL") as journal:
        ingest = MqttIngest(sec, journal, "t", "Asia/Shanghai")
        sink = MqttSink(MqttPublish(interval_s=0.05), sec.brokers[0], "pub", journal, "t", reconnect_max_s=0.1)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(ingest.run()), group.create_task(sink.run())]
            await asyncio.sleep(2.0)
            for task in tasks:
                task.cancel()
    warnings = [r.getMessage() for r in caplog.records if "clear text" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert any(w.startswith("MQTT ingest") for w in warnings) and any(w.startswith("MQTT publish") for w in warnings)
    assert all(f"127.0.0.1:{port}" in w for w in warnings)
    assert sink.publisher.failures >= 3  # it did reconnect, and did not warn again
    _assert_clean(caplog.text, "the MQTT log")


def test_no_cleartext_warning_with_tls_or_without_a_password(caplog: pytest.LogCaptureFixture) -> None:
    from gateway.logs import warn_cleartext_passwords

    brokers = [MqttBroker.model_validate({"host": "h", "username": "u", "password": FIELD_PW,
                                          "tls": {"ca_file": "/etc/ssl/certs/ca-certificates.crt"}}),
               MqttBroker(host="h", username="u")]
    warn_cleartext_passwords(logging.getLogger("test.mqtt"), "MQTT ingest", brokers)
    assert not [r for r in caplog.records if "clear text" in r.getMessage()]
