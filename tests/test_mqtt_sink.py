"""MQTT publish sink against a real mosquitto: latest values per device (retained), Home Assistant
discovery, status online/offline — offline from the broker's last will when ``pedf run`` is SIGKILLed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import MqttBroker, MqttPublish
from gateway.journal import Journal
from gateway.series import Sample, SeriesKey
from gateway.sinks import MqttSink, ha_sensor
from tests.harness import GatewayProcess, wait_until
from tests.mqtt_helpers import wait_for
from tests.processes import free_port

TS = 1_700_000_000 * 10**9


class Retained:
    """Subscribes to everything and keeps the last payload per topic (retained ones arrive on subscribe)."""

    def __init__(self, port: int) -> None:
        self.topics: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{time.monotonic_ns()}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.topics[msg.topic] = msg.payload

    def get(self, topic: str) -> bytes | None:
        with self.lock:
            return self.topics.get(topic)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_ha_sensor_classes_from_unit_suffixes() -> None:
    assert ha_sensor("p_kw") == {"unit_of_measurement": "kW", "device_class": "power", "state_class": "measurement"}
    assert ha_sensor("e_import_kwh")["state_class"] == "total_increasing"
    assert ha_sensor("soc_pct") == {"unit_of_measurement": "%", "device_class": "battery", "state_class": "measurement"}
    assert ha_sensor("status") == {"state_class": "measurement"}


@pytest.mark.services
async def test_latest_values_discovery_and_graceful_offline(mosquitto, tmp_path: Path) -> None:
    watch = Retained(mosquitto.port)
    async with Journal(tmp_path / "j.db", synchronous="NORMAL") as journal:
        meter = await journal.series_id(SeriesKey("meter", (("building", "b"), ("device", "m1"), ("site", "s")),
                                                  ("p_kw", "e_import_kwh"), ("float", "float")))
        await journal.append_many([Sample(meter, TS, np.array([1.0, 10.0])),
                                   Sample(meter, TS + 10**9, np.array([2.0, np.nan]))])  # NaN: not reported
        cfg = MqttPublish(homeassistant_discovery=True, interval_s=0.05)
        sink = MqttSink(cfg, MqttBroker(host="127.0.0.1", port=mosquitto.port), "pub-test", journal, "s")
        task = asyncio.create_task(sink.run())
        state_topic = "pedf/s/b/m1/state"
        await wait_for(lambda: watch.get(state_topic) is not None and watch.get("pedf/s/gateway/status") == b"online",
                       10, "state published")
        assert json.loads(watch.get(state_topic)) == {"p_kw": 2.0, "e_import_kwh": 10.0, "ts_ns": TS + 10**9,
                                                      "ts": "2023-11-14T22:13:21+00:00"}
        await wait_for(lambda: watch.get("homeassistant/sensor/s_b_m1/e_import_kwh/config") is not None, 10, "HA")
        config = json.loads(watch.get("homeassistant/sensor/s_b_m1/p_kw/config"))
        assert config["state_topic"] == state_topic and config["unit_of_measurement"] == "kW"
        assert config["device_class"] == "power" and config["value_template"] == "{{ value_json.p_kw }}"
        assert config["availability_topic"] == "pedf/s/gateway/status" and config["device"]["model"] == "meter"
        await journal.append_many([Sample(meter, TS + 2 * 10**9, np.array([3.0, 11.0]))])
        await wait_for(lambda: json.loads(watch.get(state_topic))["p_kw"] == 3.0, 10, "new value")
        assert journal.cursor("mqtt_publish") == 3  # delivered rows are acknowledged like any sink
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await wait_for(lambda: watch.get("pedf/s/gateway/status") == b"offline", 10, "offline on stop")
    watch.close()
    assert sink.stats().discovery == 2


@pytest.mark.services
def test_last_will_says_offline_when_the_gateway_is_killed(mosquitto, tmp_path: Path) -> None:
    api_port = free_port()
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({
        "site": {"name": "w"}, "parks": [{"name": "p", "grid_region": "east_china"}],
        "buildings": [{"name": "b", "park": "p", "floor_area_m2": 10}],
        "journal": {"path": str(tmp_path / "j.db")}, "api": {"host": "127.0.0.1", "port": api_port},
        "mqtt": {"brokers": [{"host": "127.0.0.1", "port": mosquitto.port}], "client_id": "will-test",
                 "publish": {"interval_s": 0.1}}}))
    watch = Retained(mosquitto.port)
    with GatewayProcess(tmp_path, site, api_port) as gw:
        wait_until(lambda: watch.get("pedf/w/gateway/status") == b"online", 20, what="online")
        assert gw.status()["mqtt"]["mqtt_publish"]["connects"] == 1
        gw.kill()
        wait_until(lambda: watch.get("pedf/w/gateway/status") == b"offline", 20, what="the last will")
    watch.close()
