"""Live analytics at 1,000 devices polled at 1 Hz: what an interval close costs, and that it never
costs a poll.

One building of seven PEDF devices (grid meter, PV inverter, battery, converters, DC loads) and
993 SDM630 AC-load meters, all served by the simulator in its own process and polled once a second
by ``pedf run`` (its own process).  With ``analytics: {interval_min: 15}`` (the default) the run
covers at least two closes; the same site with analytics off runs before it for the ratio.  Figures:

- per close, from the analytics worker: wall time and CPU time of the close, its RSS after the close;
- the gateway process: polls skipped (the pollers' overrun counters), polls dropped for the journal,
  CPU per 1,000 polls, steady RSS (VmRSS at the end) and peak RSS (VmHWM);
- the analytics worker: steady and peak RSS (from the gateway's status).

    python -m benchmarks.bench_live_analytics                  # 15-minute interval, 2 closes (~35 min)
    python -m benchmarks.bench_live_analytics --interval-s 60  # the same at a 1-minute interval

(from the repository root, with the venv's python).  Closes sit on the wall clock, so the run waits
for the next interval boundary before it starts counting.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.harness import GatewayProcess, SimulatorProcess, wait_until, write_site
from tests.processes import free_port
from tests.test_analyze import ANALYTICS, SIM_DEVICES


def _polls(st: dict[str, Any]) -> int:
    return sum(d["polls_ok"] for d in st["devices"].values())


def _overruns(st: dict[str, Any]) -> int:
    return sum(d["overruns"] for d in st["devices"].values())


def _rows(journal: Path) -> int:
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT max(seq) FROM samples").fetchone()[0] or 0)


def run(work: Path, n: int, interval_s: float | None, closes: int, seconds_off: float) -> dict[str, Any]:
    building = [dict(d, port=free_port()) for d in SIM_DEVICES]
    loads = [{"name": f"load{i:04d}", "profile": "bench60_meter", "role": "ac_load", "port": free_port()}
             for i in range(n - len(building))]
    devices = building + loads
    api_port = free_port()
    tag = "on" if interval_s else "off"
    journal = work / f"journal-{tag}.db"
    analytics = dict(ANALYTICS, interval_s=interval_s) if interval_s else None
    site = write_site(work / f"site-{tag}.yaml", devices, journal=journal, api_port=api_port, interval_s=1.0,
                      analytics=analytics)
    for d in devices:
        d["timeout_s"] = 2.0
    out: dict[str, Any] = {"analytics": tag, "devices": n, "interval_s": interval_s, "closes": []}
    with SimulatorProcess(work, devices, speed=1), GatewayProcess(work, site, api_port) as gw:
        wait_until(lambda: gw.status()["devices_up"] == n, 120, what="every device up")
        out["start_rss_mb"] = gw.rss_mb()
        if interval_s:
            time.sleep(interval_s - time.time() % interval_s + 0.5)  # start counting at a boundary
        st0, cpu0, t0 = gw.status(), gw.cpu_seconds(), time.monotonic()
        if interval_s:
            done = st0["analytics"]["intervals_done"]
            for k in range(1, closes + 1):
                # /status of 1,000 devices costs the gateway ~32 ms: ask every 5 s, not 4 times a second
                wait_until(lambda k=k: gw.status()["analytics"]["intervals_done"] >= done + k, interval_s + 120,
                           interval=5.0, what=f"close {k}")
                a = gw.status()["analytics"]
                out["closes"].append({"wall_s": a["last_close_s"], "cpu_s": a["last_close_cpu_s"],
                                      "worker_rss_mb": a["worker_rss_bytes"] / 2**20,
                                      "worker_peak_rss_mb": a["worker_peak_rss_bytes"] / 2**20,
                                      "gateway_rss_mb": gw.rss_mb(), "rows_in_journal": _rows(journal)})
        else:
            time.sleep(seconds_off)
        st1, cpu1, t1 = gw.status(), gw.cpu_seconds(), time.monotonic()
        out["steady_rss_mb"] = gw.rss_mb()
        out["peak_rss_mb"] = gw.rss_mb("VmHWM")
        out["errors"] = st1["analytics"]["errors"] if interval_s else 0
        assert gw.terminate(90) == 0
    polls = _polls(st1) - _polls(st0)
    out.update(seconds=t1 - t0, polls=polls, polls_per_s=polls / (t1 - t0),
               cpu_s_per_1000_polls=1000 * (cpu1 - cpu0) / max(polls, 1),
               skipped_slots=_overruns(st1) - _overruns(st0), dropped_for_journal=st1["overruns"] - st0["overruns"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--interval-s", type=float, default=900.0)
    ap.add_argument("--closes", type=int, default=2)
    ap.add_argument("--seconds-off", type=float, default=300.0, help="0: no run with analytics off")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pedf-bench-live-") as tmp:
        # analytics off first: it fills the wait for the interval boundary the "on" run starts at
        off = run(Path(tmp), args.devices, None, 0, args.seconds_off) if args.seconds_off else None
        print(json.dumps(off, indent=1), flush=True)
        on = run(Path(tmp), args.devices, args.interval_s, args.closes, args.seconds_off)
        print(json.dumps(on, indent=1), flush=True)
    print(f"\n{args.devices} devices @1 Hz, interval {args.interval_s:g} s, {len(on['closes'])} closes")
    for i, c in enumerate(on["closes"], 1):
        print(f"  close {i}: {c['wall_s']:.2f} s wall, {c['cpu_s']:.2f} s CPU in the worker; worker RSS "
              f"{c['worker_rss_mb']:.0f} MB (peak {c['worker_peak_rss_mb']:.0f} MB); gateway RSS "
              f"{c['gateway_rss_mb']:.0f} MB; {c['rows_in_journal']} rows in the journal")
    print(f"  skipped poll slots: {on['skipped_slots']} with analytics; polls dropped for the journal: "
          f"{on['dropped_for_journal']}; gateway CPU per 1,000 polls {on['cpu_s_per_1000_polls']:.3f}; "
          f"gateway RSS steady / peak {on['steady_rss_mb']:.0f} / {on['peak_rss_mb']:.0f} MB")
    if off is None:
        return
    print(f"  skipped poll slots: {on['skipped_slots']} with analytics, {off['skipped_slots']} without; "
          f"polls dropped for the journal: {on['dropped_for_journal']} / {off['dropped_for_journal']}")
    print(f"  gateway CPU per 1,000 polls: {on['cpu_s_per_1000_polls']:.3f} on, {off['cpu_s_per_1000_polls']:.3f} off "
          f"(ratio {on['cpu_s_per_1000_polls'] / off['cpu_s_per_1000_polls']:.2f})")
    print(f"  gateway RSS steady / peak: {on['steady_rss_mb']:.0f} / {on['peak_rss_mb']:.0f} MB on, "
          f"{off['steady_rss_mb']:.0f} / {off['peak_rss_mb']:.0f} MB off")


if __name__ == "__main__":
    main()
