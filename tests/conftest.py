"""Server fixtures: a fresh real server per test, in the test's temporary folder, stopped afterwards.

Function scope because tests stop and restart them to inject outages; each starts in well under a
second.  A missing binary fails the test with the package to install (tests/processes.py).  Every
test that uses one of them is marked ``services`` (``pytest -m "not services"`` leaves them out).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.redact import forget_secrets
from tests.servers import InfluxD, Mosquitto, VictoriaMetrics


@pytest.fixture(autouse=True)
def _forget_remembered_secrets() -> Iterator[None]:
    """Every site file loaded in-process remembers its secrets for redaction: keep tests apart."""
    yield
    forget_secrets()

SERVER_FIXTURES = frozenset({"influxd", "victoria_metrics", "mosquitto"})


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``services`` every test that uses a server fixture, whether or not its module says so."""
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


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
