"""The gateway's own pipeline, stage by stage: fields/s through journal and delivery into influxd,
the encoder alone, and where the CPU of one Modbus poll goes.

1. Pipeline: Samples of 60 float fields (float32 register values widened to double, as a meter's
   points decode) are appended straight into a Journal (synchronous=FULL, group commit) while a
   Delivery with the real InfluxV1Writer (gzip) feeds a real influxd; fields/s from the first
   append until the sink's cursor reaches the journal's head; influxd's count is checked against
   what was sent.  Once with each line encoder (``python``, the default, and ``compiled``).
2. Encoder alone: 6-field lines/s of each encoder against influxdb-client's ``Point``, in the same
   run (``benchmarks.bench_encoder.run``).
3. Per-stage CPU of bench_modbus.py's workload (N simulated bench60 devices, 60 holding registers
   = 30 float32 fields, polled once a second, its own process): the poller with pymodbus polling
   for real (decode included, then subtracted), a bare pymodbus client on the same devices
   (``benchmarks.bare_pymodbus``), and each later stage timed on that workload's rows in this
   process with ``time.process_time`` (journal thread included); then the whole Gateway in this
   process (API off) for the total, with the garbage collector's share of it timed through
   ``gc.callbacks``; the remainder is event-loop scheduling, timers and bookkeeping.  The stages
   are timed at different moments of a shared machine, so the remainder also carries their noise.

    python -m benchmarks.bench_pipeline            # 1,000 devices, 20 s windows, 60,000 samples
    python -m benchmarks.bench_pipeline --quick    # 200 devices, 8 s windows, 20,000 samples

(from the repository root, with the venv's python).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_encoder import run as encoder_run
from benchmarks.bench_encoder import value_sets
from drivers.modbus import (
    ModbusDeviceSpec,
    ModbusPoller,
    TcpLink,
    load_profile,
)
from gateway.journal import Journal
from gateway.series import Sample, SeriesKey
from gateway.service import DeadbandFilter
from gateway.sinks import (
    Delivery,
    InfluxV1Writer,
    LineEncoder,
)
from tests.harness import ROOT, SimulatorProcess, write_site
from tests.processes import free_port
from tests.servers import InfluxD

T0 = 1_700_000_000_000_000_000
WIDTH = 60


def _series(i: int, fields: tuple[str, ...]) -> SeriesKey:
    return SeriesKey("meter", (("building", "b"), ("device", f"d{i:04d}"), ("site", "s")), fields,
                     ("float",) * len(fields))


# -- 1. pipeline --------------------------------------------------------------------------------
async def pipeline(influxd: InfluxD, work: Path, samples: int, n_series: int, compiled: bool) -> dict:
    db = "pipe_compiled" if compiled else "pipe_python"
    influxd.query(f'DROP DATABASE "{db}"')
    influxd.create_database(db)
    journal = Journal(work / f"{db}.db")
    await journal.open()
    fields = tuple(f"f{i:02d}_kw" for i in range(WIDTH))
    sids = [await journal.series_id(_series(i, fields)) for i in range(n_series)]
    rng = np.random.default_rng(1)
    pool = list((rng.random((997, WIDTH)) * 1000).astype(np.float32).astype(np.float64))
    delivery = Delivery("influx", journal, InfluxV1Writer(influxd.url, db),
                        LineEncoder(journal.series, compiled=compiled), batch_lines=5000, max_age_s=0.2)
    t0, cpu0 = time.perf_counter(), time.process_time()
    task = asyncio.create_task(delivery.run())
    pending: list[asyncio.Future[int]] = []
    for k in range(samples // n_series):
        ts = T0 + k * 1_000_000_000
        for j, sid in enumerate(sids):
            pending.append(journal.append(Sample(sid, ts, pool[(k * n_series + j) % len(pool)])))
        if len(pending) >= 10_000:  # back-pressure: wait for the commit, as the gateway's max_pending does
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    head = journal.stats().head_seq
    while journal.cursor("influx") < head:
        await asyncio.sleep(0.002)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await journal.close()
    sent = (samples // n_series) * n_series
    counts = influxd.query("SELECT count(*) FROM meter", db=db)
    stored = sorted({v for k, v in counts[0].items() if k.startswith("count_")}) if counts else []
    return {"encoder": "compiled" if compiled else "python", "fields": sent * WIDTH, "wall_s": wall,
            "fields_per_s": sent * WIDTH / wall, "cpu_us_per_kfield": 1e6 * cpu / (sent * WIDTH / 1000),
            "verified": stored == [sent], "stored": stored}


# -- 3. stages of one poll ----------------------------------------------------------------------
def bench60_specs(devices: list[dict]) -> list[ModbusDeviceSpec]:
    points = tuple(load_profile("bench60").points)
    return [ModbusDeviceSpec(d["name"], TcpLink("127.0.0.1", d["port"]), 1, points, timeout_s=2.0, retries=0,
                             max_registers=60) for d in devices]


async def poller_cpu(specs: list[ModbusDeviceSpec], seconds: float) -> tuple[float, int, list]:
    """CPU µs per poll of the real poller (pymodbus, our scheduling, decode), emit counting only."""
    kept: list = []
    polls = [0]

    def emit(device: str, ts_ns: int, values: np.ndarray, texts: object) -> None:
        polls[0] += 1
        if len(kept) < len(specs):
            kept.append((device, ts_ns, values))

    pollers = [ModbusPoller([s], emit, logger=logging.getLogger("bench")) for s in specs]
    tasks = [asyncio.create_task(p.run()) for p in pollers]
    await asyncio.sleep(3)  # connected, first polls done
    p0, cpu0 = polls[0], time.process_time()
    await asyncio.sleep(seconds)
    us = 1e6 * (time.process_time() - cpu0) / max(polls[0] - p0, 1)
    n = polls[0] - p0
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return us, n, kept


def bare_cpu(work: Path, ports: list[int], seconds: float) -> float:
    path = work / "bare-ports.json"
    path.write_text(json.dumps(ports))
    out = subprocess.run([sys.executable, "-m", "benchmarks.bare_pymodbus", "--ports-file", str(path),
                          "--seconds", str(seconds), "--warmup", "3"], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    r = json.loads(out.stdout)
    return 1e6 * r["cpu_s"] / r["polls"]


def cpu_us(fn, count: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        c = time.process_time()
        fn()
        best = min(best, time.process_time() - c)
    return 1e6 * best / count


async def stage_costs(work: Path, influxd: InfluxD, specs: list[ModbusDeviceSpec], kept: list) -> dict:
    n = len(specs)
    poller = ModbusPoller(specs[:1], lambda *a: None)
    decoder = poller.decoder(specs[0].name)
    regs = [list(np.arange(30, dtype=">f4").view(">u2").tolist())]
    decode = cpu_us(lambda: [decoder.decode(regs) for _ in range(20_000)], 20_000)
    filt = DeadbandFilter(specs[0].points)
    influxd.create_database("stages")
    journal = Journal(work / "stages.db")
    await journal.open()
    fields = tuple(p.name for p in specs[0].points)
    sids = [await journal.series_id(_series(i, fields)) for i in range(n)]
    rounds = max(20_000 // n, 5)
    done, target, all_done = [0], [0], asyncio.Event()

    def committed(_: asyncio.Future) -> None:  # what the gateway's _emit hangs on each append
        done[0] += 1
        if done[0] == target[0]:
            all_done.set()

    c = time.process_time()
    for k in range(rounds):  # one poll slot: every device's sample, as the gateway's _emit hands it over
        ts = T0 + k * 10**9
        target[0] += n
        all_done.clear()
        for i, sid in enumerate(sids):
            values = filt.apply(ts, kept[i % len(kept)][2])
            journal.append(Sample(sid, ts, values)).add_done_callback(committed)
        await all_done.wait()
    journal_us = 1e6 * (time.process_time() - c) / (rounds * n)
    journal.register_sink("s")
    c = time.process_time()
    batches = []
    while rows := await journal.read("s", n):
        batches.append(rows)
        await journal.ack("s", rows[-1].seq)
    read_us = 1e6 * (time.process_time() - c) / (rounds * n)
    await journal.close()
    rows = batches[0]
    out = {"decode": decode, "journal_append_commit": journal_us,
           "journal_read_ack": read_us}
    writer = InfluxV1Writer(influxd.url, "stages")
    for compiled in (False, True):
        enc = LineEncoder(journal.series, compiled=compiled)
        enc.encode_lines_bytes(rows)
        out["encode_compiled" if compiled else "encode"] = cpu_us(lambda e=enc: e.encode_lines_bytes(rows), len(rows))
    body = LineEncoder(journal.series).encode_lines_bytes(rows)
    out["gzip"] = cpu_us(lambda: gzip.compress(body, 1), len(rows))
    c = time.process_time()
    for _ in range(10):
        await writer.write(body)
    out["http"] = 1e6 * (time.process_time() - c) / (10 * len(rows)) - out["gzip"]
    await writer.close()
    return out


async def gateway_cpu(work: Path, influxd: InfluxD, devices: list[dict], seconds: float) -> tuple[float, float]:
    """(CPU µs per poll of the whole Gateway in this process, of which the garbage collector's)."""
    from gateway.config import load_site
    from gateway.service import Gateway

    influxd.create_database("pedf")
    site = load_site(write_site(work / "site.yaml", devices, journal=work / "gw.db", api_port=free_port(),
                                sinks=[{"type": "influxdb_v1", "name": "influx", "url": influxd.url,
                                        "database": "pedf"}]))
    gw = Gateway(site, api=False)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    in_gc, started = [0.0], [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.process_time()
        else:
            in_gc[0] += time.process_time() - started[0]

    def polls() -> int:
        return sum(st.polls_ok for p in gw.pollers.values() for st in p.stats().values())

    await asyncio.sleep(4)
    gc.callbacks.append(on_gc)
    p0, c0 = polls(), time.process_time()
    await asyncio.sleep(seconds)
    n = max(polls() - p0, 1)
    us = 1e6 * (time.process_time() - c0) / n
    gc.callbacks.remove(on_gc)
    stop.set()
    try:
        await asyncio.wait_for(task, 60)
    except TimeoutError:
        print("(the in-process gateway did not stop within 60 s)")
    return us, 1e6 * in_gc[0] / n


def stage_table(n: int, poll_us: float, bare_us: float, s: dict, total_us: float, gc_us: float) -> str:
    poll_only = poll_us - s["decode"]
    stages = [
        ("poll: pymodbus request/response (bare client, floor)", bare_us),
        ("poll: our poller above bare pymodbus (schedule, lock, checks)", poll_only - bare_us),
        ("decode (30 float32, columnar)", s["decode"]),
        ("emit: deadband, Sample, journal append + group commit (FULL), commit callback",
         s["journal_append_commit"]),
        ("journal: read + cursor ack (delivery)", s["journal_read_ack"]),
        ("encode (python, default)", s["encode"]),
        ("gzip level 1", s["gzip"]),
        ("send: HTTP POST to influxd (aiohttp)", s["http"]),
    ]
    summed = sum(v for _, v in stages)
    lines = [f"\nPer-stage CPU of one poll, {n} bench60 devices at 1 Hz (µs per poll; CPU-s per 1,000 polls "
             "= µs / 1,000):\n", "| stage | µs / poll | share |", "|---|---|---|"]
    lines += [f"| {name} | {v:.1f} | {100 * v / total_us:.0f}% |" for name, v in stages]
    lines.append(f"| event loop, timers, bookkeeping, GC of the bigger heap, noise (total − stages) | "
                 f"{total_us - summed:.1f} | "
                 f"{100 * (total_us - summed) / total_us:.0f}% |")
    lines.append(f"| **whole gateway in-process (API off)** | **{total_us:.1f}** | 100% |")
    lines.append(f"| of the whole gateway: garbage collector (gen 0–2), spread over the stages above | "
                 f"{gc_us:.1f} | {100 * gc_us / total_us:.0f}% |")
    lines.append(f"| (encode with compiled=True instead) | {s['encode_compiled']:.1f} | |")
    lines.append(f"\nours above bare pymodbus: {total_us - bare_us:.1f} µs per poll; "
                 f"gateway / bare = {total_us / bare_us:.2f}")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    n_dev = 200 if args.quick else 1000
    seconds = 8.0 if args.quick else 20.0
    samples = 20_000 if args.quick else 60_000
    with tempfile.TemporaryDirectory(prefix="pedf-pipe-") as tmp:
        work = Path(tmp)
        with InfluxD(work / "influxd") as influxd:
            # the poll stages first: measured after the bulk sections, the poller pays for their heap
            devices = [{"name": f"d{i:04d}", "profile": "bench60", "port": free_port()} for i in range(n_dev)]
            with SimulatorProcess(work, devices, speed=0):
                specs = bench60_specs(devices)
                poll_us, _, kept = await poller_cpu(specs, seconds)
                bare_us = bare_cpu(work, [d["port"] for d in devices], seconds)
                total_us, gc_us = await gateway_cpu(work, influxd, devices, seconds)
                stages = await stage_costs(work, influxd, specs, kept)
            table = stage_table(n_dev, poll_us, bare_us, stages, total_us, gc_us)

            print("| encoder | fields | seconds | fields/s | CPU µs / 1,000 fields | every field in influxd |")
            print("|---|---|---|---|---|---|")
            for compiled in (False, True):
                r = await pipeline(influxd, work, samples, 100, compiled)
                print(f"| {r['encoder']} | {r['fields']:,} | {r['wall_s']:.2f} | {r['fields_per_s']:,.0f} | "
                      f"{r['cpu_us_per_kfield']:.0f} | {r['verified']} ({r['stored']}) |", flush=True)

            print("\n| encoder | 6-field lines/s (meter 2dp) | float32 | Point lines/s | ratio to Point (2dp) |")
            print("|---|---|---|---|---|")
            rng = np.random.default_rng(1)
            sets = dict(value_sets(100_000, 6, rng))
            for compiled in (False, True):
                ours, _, theirs, _ = encoder_run(6, sets["meter 2dp"], 5000, 3, compiled)
                f32, _, _, _ = encoder_run(6, sets["float32"], 5000, 3, compiled)
                print(f"| {'compiled' if compiled else 'python'} | {ours:,.0f} | {f32:,.0f} | {theirs:,.0f} | "
                      f"{ours / theirs:.1f}x |", flush=True)
            print(table)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
