"""Live analytics never stop the polling: 1,000 simulated devices polled at 1 Hz by ``pedf run`` with a
one-minute analytics interval; across three closes no poll slot is skipped (the pollers' own
overrun counters) and no poll is dropped for a journal that could not keep up."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.harness import GatewayProcess, SimulatorProcess, wait_until, write_site
from tests.processes import free_port
from tests.test_analyze import ANALYTICS, SIM_DEVICES

pytestmark = pytest.mark.services

N_DEVICES = 1000
INTERVAL_S = 60
CLOSES = 3


def kpi_rows(journal: Path) -> int:
    """energy_kpi samples the live component appended (one per building and closed interval)."""
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
            ids = [r[0] for r in db.execute("SELECT id FROM series WHERE measurement = 'energy_kpi'")]
            if not ids:
                return 0
            marks = ",".join("?" * len(ids))
            return int(db.execute(f"SELECT count(*) FROM samples WHERE series_id IN ({marks})", ids).fetchone()[0])
    except sqlite3.Error:
        return 0


def test_interval_closes_skip_no_poll_at_1000_devices(tmp_path: Path) -> None:
    building = [dict(d, port=free_port()) for d in SIM_DEVICES]
    loads = [{"name": f"load{i:04d}", "profile": "bench60_meter", "role": "ac_load", "port": free_port()}
             for i in range(N_DEVICES - len(building))]
    devices = building + loads
    api_port = free_port()
    journal = tmp_path / "journal.db"
    site = write_site(tmp_path / "site.yaml", devices, journal=journal, api_port=api_port, interval_s=1.0,
                      analytics=dict(ANALYTICS, interval_s=INTERVAL_S))
    for d in devices:
        d["timeout_s"] = 2.0
    with SimulatorProcess(tmp_path, devices, speed=1) as _sim, GatewayProcess(tmp_path, site, api_port) as gw:
        wait_until(lambda: gw.status()["devices_up"] == N_DEVICES, 60, what="every device up")
        # polls before the first close are the baseline: connecting may overrun a slot once
        time.sleep(INTERVAL_S - time.time() % INTERVAL_S + 1)
        before, closed, t0 = gw.status(), kpi_rows(journal), time.monotonic()
        wait_until(lambda: kpi_rows(journal) >= closed + CLOSES, (CLOSES + 2) * INTERVAL_S,
                   what=f"{CLOSES} more closed intervals")
        after, elapsed = gw.status(), time.monotonic() - t0
        assert gw.terminate() == 0
    skipped = {name: d["overruns"] - before["devices"][name]["overruns"] for name, d in after["devices"].items()}
    polled = sum(d["polls_ok"] for d in after["devices"].values()) - sum(
        d["polls_ok"] for d in before["devices"].values())
    assert elapsed >= (CLOSES - 1) * INTERVAL_S  # the window held the closes
    assert polled >= N_DEVICES * elapsed * 0.97  # every device once a second, within the edges of the window
    assert sum(skipped.values()) == 0, {k: v for k, v in skipped.items() if v}
    assert after["overruns"] == before["overruns"]  # no poll dropped for the journal
