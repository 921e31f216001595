"""The Modbus workload of DESIGN.md "The bar to beat", end to end, every process real.

N simulated devices (its own process, bench60: 60 holding registers each, one port per device) are
polled once a second by a separate ``pedf run`` with the default configuration (journal
synchronous=FULL with group commit, gzip, an influxd sink); every sample is verified in influxd
afterwards.  The gateway's CPU time comes from /proc/<pid>/stat (utime + stime), its peak RSS from
VmHWM.  A bare pymodbus client polls the same simulator in the same run for the ratio.  A last run
at a faster interval finds the most device-polls/s one core sustains.

    python -m benchmarks.bench_modbus                 # 100 and 1,000 devices, 30 s windows
    python -m benchmarks.bench_modbus --quick         # 50 and 200 devices, 10 s windows

(from the repository root, with the venv's python).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.harness import ROOT, GatewayProcess, SimulatorProcess, wait_until, write_site
from tests.processes import free_port
from tests.servers import InfluxD


def _polls(status: dict) -> int:
    return sum(d["polls_ok"] for d in status["devices"].values())


def _influx_count(influxd: InfluxD) -> int:
    rows = influxd.query("SELECT count(x00_kw) FROM meter", db="pedf")
    return int(rows[0]["count"]) if rows else 0


def measure_gateway(work: Path, influxd: InfluxD, n: int, seconds: float, interval: float,
                    profile: str = "bench60") -> dict:
    influxd.query('DROP DATABASE "pedf"')
    influxd.create_database("pedf")
    devices = [{"name": f"d{i:04d}", "profile": profile, "port": free_port()} for i in range(n)]
    api_port = free_port()
    site = write_site(
        work / f"site-{n}.yaml",
        devices,
        journal=work / f"journal-{n}-{interval}.db",
        api_port=api_port,
        interval_s=interval,
        sinks=[{"type": "influxdb_v1", "name": "influx", "url": influxd.url, "database": "pedf"}],
    )
    for d in devices:
        d["timeout_s"] = 2.0
    with SimulatorProcess(work, devices, speed=0) as sim, GatewayProcess(work, site, api_port) as gw:
        time.sleep(5)  # connections made, first batches sent
        st0, cpu0, t0 = gw.status(), gw.cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        st1, cpu1, t1 = gw.status(), gw.cpu_seconds(), time.monotonic()
        sim.stop()
        # every sample the gateway committed must be in influxd
        wait_until(lambda: gw.status()["journal"]["sinks"]["influx"]["backlog_rows"] == 0, 120, what="backlog sent")
        committed = gw.status()["journal"]["committed"]
        peak_rss = gw.rss_mb("VmHWM")
        stopped = gw.terminate(90) == 0
    in_influx = _influx_count(influxd)
    polls = _polls(st1) - _polls(st0)
    cpu = cpu1 - cpu0
    return {
        "devices": n,
        "interval_s": interval,
        "polls": polls,
        "polls_per_s": polls / (t1 - t0),
        "cpu_s": cpu,
        "cpu_s_per_1000_polls": 1000 * cpu / polls,
        "core_pct": 100 * cpu / (t1 - t0),
        "peak_rss_mb": peak_rss,
        "overruns": st1["overruns"] - st0["overruns"],
        "skipped_slots": sum(d["overruns"] for d in st1["devices"].values())
        - sum(d["overruns"] for d in st0["devices"].values()),
        "committed": committed,
        "in_influxd": in_influx,
        "verified": in_influx == committed,
        "clean_stop": stopped,
        "ports": [d["port"] for d in devices],
    }


def measure_bare(work: Path, n: int, seconds: float) -> dict:
    devices = [{"name": f"d{i:04d}", "profile": "bench60", "port": free_port()} for i in range(n)]
    ports = work / f"ports-{n}.json"
    ports.write_text(json.dumps([d["port"] for d in devices]))
    with SimulatorProcess(work, devices, speed=0):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.bare_pymodbus",
                "--ports-file",
                str(ports),
                "--seconds",
                str(seconds),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
    r = json.loads(out.stdout)
    r["cpu_s_per_1000_polls"] = 1000 * r["cpu_s"] / r["polls"]
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--profile", action="append", choices=["bench60", "bench60u16"],
                    help="bench60: 30 float32 fields (default); bench60u16: the same 60 registers as 60 uint16 fields")
    ap.add_argument("--sizes", type=int, nargs="+")
    args = ap.parse_args()
    profiles = args.profile or ["bench60"]
    sizes = args.sizes or ([50, 200] if args.quick else [100, 1000])
    seconds = args.seconds or (10.0 if args.quick else 30.0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pedf-bench-") as tmp:
        work = Path(tmp)
        with InfluxD(work / "influxd") as influxd:
            for n in sizes:
                b = measure_bare(work, n, seconds)
                for profile in profiles:
                    g = measure_gateway(work, influxd, n, seconds, 1.0, profile)
                    g["profile"] = profile
                    rows.append((g, b))
                    print(
                        f"{n} devices, {profile}: gateway {g['cpu_s_per_1000_polls']:.3f} CPU-s/1000 polls, "
                        f"bare pymodbus {b['cpu_s_per_1000_polls']:.3f}",
                        flush=True,
                    )
            sats = []
            for profile in profiles:
                sat = measure_gateway(work, influxd, sizes[-1], seconds, 0.2, profile)
                sat["profile"] = profile
                sats.append(sat)
    print(
        "\n| devices | profile | interval | polls/s | gateway CPU-s / 1,000 polls | % of a core | peak RSS MB | bare pymodbus "
        "CPU-s / 1,000 polls | ratio | every sample in influxd | clean stop |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for g, b in rows:
        print(
            f"| {g['devices']} | {g['profile']} | {g['interval_s']:g} s | {g['polls_per_s']:.0f} | "
            f"{g['cpu_s_per_1000_polls']:.3f} | "
            f"{g['core_pct']:.1f} | {g['peak_rss_mb']:.0f} | {b['cpu_s_per_1000_polls']:.3f} | "
            f"{g['cpu_s_per_1000_polls'] / b['cpu_s_per_1000_polls']:.2f} | {g['verified']} ({g['in_influxd']}) | "
            f"{g['clean_stop']} |"
        )
    for sat in sats:
        print(
            f"| {sat['devices']} | {sat['profile']} | {sat['interval_s']:g} s | {sat['polls_per_s']:.0f} | "
            f"{sat['cpu_s_per_1000_polls']:.3f} | {sat['core_pct']:.1f} | {sat['peak_rss_mb']:.0f} | - | - | "
            f"{sat['verified']} ({sat['in_influxd']}) | {sat['clean_stop']} |"
        )
    for sat in sats:
        print(
            f"\n{sat['profile']}: max device-polls/s on one core (1 / CPU-s per poll of the fastest run): "
            f"{1000 / sat['cpu_s_per_1000_polls']:.0f}; polls/s reached at {sat['interval_s']:g} s: "
            f"{sat['polls_per_s']:.0f} of {sat['devices'] / sat['interval_s']:.0f}; skipped slots: "
            f"{sat['skipped_slots']}; dropped for the journal: {sat['overruns']}"
        )


if __name__ == "__main__":
    main()
