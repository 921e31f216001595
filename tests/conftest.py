"""Server fixtures: a fresh real server per test, in the test's temporary folder, stopped afterwards.

Function scope because tests stop and restart them to inject outages; each starts in well under a
second.  A missing binary fails the test with the package to install (tests/servers.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import InfluxD, Mosquitto, VictoriaMetrics


@pytest.fixture
def influxd(tmp_path: Path) -> Iterator[InfluxD]:
    with InfluxD(tmp_path / "influxd") as server:
        yield server


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    with VictoriaMetrics(tmp_path / "victoria-metrics") as server:
        yield server


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "mosquitto") as server:
        yield server
