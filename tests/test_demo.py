"""`make demo` is the README's first promise: the simulator and the gateway on the shipped demo site,
ending by itself with the energy balance from the journal beside the simulator's own totals."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_ends_by_itself_and_the_balance_matches_the_simulator(tmp_path: Path) -> None:
    pedf = str(Path(sys.executable).with_name("pedf"))
    out = subprocess.run([pedf, "demo", str(ROOT / "examples" / "demo-site.yaml"), "--hours", "3", "--speed", "1440"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "devices 7/7 up" in text
    per_device = re.findall(r"^  (\w+)\s+\w+\s+(\d+) samples", text, flags=re.M)
    assert len(per_device) == 7 and all(int(n) > 20 for _, n in per_device)
    terms = dict(re.findall(r"^  ([a-z ]+?)\s+(-?[\d.]+) \|", text, flags=re.M))
    totals = dict(re.findall(r"^  ([a-z ]+?)\s+-?[\d.]+ \|\s+(-?[\d.]+)", text, flags=re.M))
    assert float(terms["grid import"]) > 10
    for term in ("grid import", "ac load", "dc load", "battery discharge", "losses"):
        assert abs(float(terms[term]) - float(totals[term])) <= 0.02 + 1e-3 * abs(float(totals[term])), term
    assert (tmp_path / "var" / "demo-journal.db").exists()
    # both protocols: MQTT sub-meters on the embedded broker, their counters as published
    mqtt = re.findall(r"^  (\w+)\s+(\d+) samples\s+([\d.]+) \|\s+([\d.]+)$", text, flags=re.M)
    assert len(mqtt) == 2, text[-2000:]
    for _name, samples, journal_kwh, published_kwh in mqtt:
        assert int(samples) > 5 and float(journal_kwh) > 0
        assert abs(float(journal_kwh) - float(published_kwh)) < 1e-3
