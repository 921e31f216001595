"""The analytics worker: a process of its own that computes the live KPIs of each closed interval.

Why a process, not a thread of the gateway (measured at 1,000 devices, benchmarks/RESULTS.md):
numba and the loaded kernels add ~110 MB to a process (numba import +59 MB, the first kernels +49 MB,
measured here), which would put the gateway far over its memory budget and make an overload of the
analytics an overload of the poller; and the loaders' Python work would share the gateway's GIL with
the pollers.  In a process of its own, a close can neither stall a poll nor crash the gateway, and
the gateway's own footprint stays what it is without analytics.  The worker reads the journal
through its own read-only connection (:class:`gateway.journal.JournalReader`), so only the small
records of each close cross the pipe.

Protocol (one JSON object per line; NaN as JSON's NaN): the parent writes
``{"site": <base64 pickle of the Site>, "journal": PATH}``, the worker loads every kernel a close uses
(from numba's on-disk cache, compiling on the very first run), restores the month's certificate use,
and answers ``{"ready": true, ...}``; then for each ``{"start_ns": S, "end_ns": E}`` it answers
``{"records": [[measurement, tags, ts_ns, fields], ...], "wall_s", "cpu_s", "rss_bytes",
"peak_rss_bytes"}`` or ``{"error": "..."}``.  End of input ends the worker.

    python -m gateway.analysis._worker          (started by the gateway, never by hand)
"""

from __future__ import annotations

import base64
import json
import pickle
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any

import numpy as np

from drivers.balance import BALANCE_TERMS
from gateway.analysis._channels import DeviceReadings, building_channels
from gateway.analysis._kpis import CertificatePool, balance_fields, emission_fields, envelope_fields
from gateway.analysis._live import IntervalKpis
from gateway.config import Site
from gateway.journal import JournalReader


def memory_bytes() -> tuple[int, int]:
    """(resident, peak resident) bytes of this process, from /proc (Linux)."""
    rss = peak = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return rss, peak


def warm_up(kpis: IntervalKpis) -> None:
    """One close on made-up readings, so every kernel a close uses is loaded before the first one."""
    site, section = kpis.site, kpis.section
    step = 10**9
    ts = np.arange(0, 2 * kpis.interval_ns + step, step, dtype=np.int64)
    counter = np.linspace(0.0, 1.0, ts.size)
    building = site.config.buildings[0].name
    readings = [DeviceReadings(building, f"warm-up {t.role}", t.role, ts, {t.counter_fields[0]: counter}, {})
                for t in BALANCE_TERMS]
    ch = building_channels(readings, building, int(kpis.interval_ns), 1, kpis.interval_ns, p_max_kw=section.p_max_kw)
    balance_fields(ch, slice(0, 1), 1000.0, section.self_sufficiency)
    emission_fields(ch, slice(0, 1), kpis.factors, CertificatePool(kpis.factors, building), kpis.tz)
    if section.batteries:
        name, spec = next(iter(section.batteries.items()))
        envelope_fields({name: np.array([50.0])}, {name: spec}, section.horizons_h)


def _reply(out: IO[str], doc: dict[str, Any]) -> None:
    out.write(json.dumps(doc, default=float) + "\n")  # numpy scalars from the kernels
    out.flush()


def serve(inp: IO[bytes], out: IO[str]) -> None:
    init = json.loads(inp.readline())
    site: Site = pickle.loads(base64.b64decode(init["site"]))
    t0, c0 = time.perf_counter(), time.process_time()
    with JournalReader(init["journal"]) as reader:
        kpis = IntervalKpis(site, reader)
        warm_up(kpis)
        kpis.restore_certificate_use(time.time_ns())
        rss, peak = memory_bytes()
        _reply(out, {"ready": True, "warm_up_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                     "rss_bytes": rss, "peak_rss_bytes": peak})
        for line in inp:
            msg = json.loads(line)
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                records = kpis.compute(int(msg["start_ns"]), int(msg["end_ns"]))
            except Exception as exc:  # backstop: one interval that cannot be computed; the next one is
                _reply(out, {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
                continue
            rss, peak = memory_bytes()
            _reply(out, {"records": [[r.measurement, r.tags, r.ts_ns, r.fields] for r in records],
                         "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                         "rss_bytes": rss, "peak_rss_bytes": peak})


def main() -> int:
    serve(sys.stdin.buffer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
