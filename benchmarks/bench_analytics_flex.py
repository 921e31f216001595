"""Benchmark of the flexibility and baseline kernels against their plain twins, in one run.

Workload (default): 1,000 buildings × 35,040 intervals (one year at 15 min), float64.
- Battery envelopes for four horizons (15 min, 1 h, 2 h, 4 h): a streaming kernel.
- Planned-schedule SoC integration (forward + backward): a sequential recurrence.
- Baselines for 30 events: 10-in-10 with day-of adjustment, and Beijing high-5-of-10.

For each: numba time (best of N, threads as given), reference time (tests/kernels/reference_flex.py;
plain-Python references are timed on a sample of buildings and scaled per element — the table says
which), the ratio to the vectorised numpy formulation where one exists and to a pure-Python loop per
element; for streaming kernels the achieved GB/s against memory bandwidth measured in the same run by
a numpy copy run in as many threads as numba uses. Also JIT cold start in a fresh interpreter (import
to first result) with the on-disk cache and with an empty cache directory, and peak memory of the
public call (fresh interpreter) relative to its input + outputs. Output: Markdown.

    .venv/bin/python -m benchmarks.bench_analytics_flex [--quick] [--threads N]   (from the repository root)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np

from analytics import baselines as bl
from analytics import flexibility as flex
from tests.kernels import reference_flex as ref

ROOT = Path(__file__).resolve().parents[1]

DT_H = 0.25
IPD = 96
STEPS = np.array([1, 4, 8, 16], dtype=np.int64)


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def make_inputs(nb: int, nt: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    soc = rng.uniform(-5.0, 105.0, (nb, nt))
    soc[rng.random((nb, nt)) < 0.01] = np.nan
    hours = (np.arange(nt) % IPD) / 4.0
    shape = 50.0 + 30.0 * np.exp(-((hours - 14.0) ** 2) / 8.0)
    load = shape * rng.uniform(0.8, 1.2, (nb, 1)) + rng.normal(0.0, 3.0, (nb, nt))
    load[rng.random((nb, nt)) < 0.001] = np.nan
    plan = rng.uniform(-60.0, 60.0, (nb, nt))
    return {"soc": soc, "load": load, "plan": plan}


def battery_arrays(nb: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    e = rng.uniform(100.0, 1000.0, nb)
    return {"energy_kwh": e, "p_ch": e / 2, "p_dis": e / 2, "eta_c": np.full(nb, 0.95),
            "eta_d": np.full(nb, 0.95), "soc_min": np.full(nb, 0.1), "soc_max": np.full(nb, 0.9)}


def events_for(nd: int, n_events: int) -> tuple[np.ndarray, bl.DrEvents]:
    eligible = (np.arange(nd) % 7) < 5
    day = np.linspace(15, nd - 1, n_events).astype(np.int64)
    return eligible, bl.DrEvents(day, np.full(n_events, 14 * 4), np.full(n_events, 18 * 4))


class CopyBandwidth:
    """Bytes/s of a numpy copy (read + write counted) split over ``threads`` threads.

    The machine is shared, so each streaming kernel is timed in alternation with this copy and both
    keep their best time: the two see the same neighbours.
    """

    def __init__(self, nbytes: int, threads: int) -> None:
        n = nbytes // 8
        self.src = np.random.default_rng(0).random(n)
        self.dst = np.zeros_like(self.src)
        bounds = np.linspace(0, n, threads + 1).astype(np.int64)
        self.slices = [slice(a, b) for a, b in itertools.pairwise(bounds)]
        self.pool = ThreadPoolExecutor(threads)

    def run(self) -> None:
        list(self.pool.map(lambda s: np.copyto(self.dst[s], self.src[s]), self.slices))

    def paired(self, fn, repeat: int) -> tuple[float, float]:
        """(best kernel seconds, best copy bytes/s) measured alternately."""
        t_fn, t_copy = [], []
        for _ in range(repeat):
            t_copy.append(best(self.run, 1))
            t_fn.append(best(fn, 1))
        return min(t_fn), 2 * self.src.nbytes / min(t_copy)


# --- pure-Python loops per element (the slowest honest formulation) -------------------------------

def envelope_pure_python(soc_row, e, p_ch, p_dis, eta_c, eta_d, lo, hi, dt_h, steps):
    out = []
    for s in soc_row:
        s = s / 100.0
        for k in steps:
            span = k * dt_h
            out.append((min(p_dis, max(0.0, (s - lo) * e * eta_d) / span),
                        min(p_ch, max(0.0, (hi - s) * e / eta_c) / span)))
    return out


def baseline_pure_python(row, ipd, eligible, event_day, event_start, first, y, x, adjust, adj_from, adj_to,
                         cap_lo, cap_hi):
    """The same rule as the kernel, on Python lists: rank days back, top-x peaks, mean, adjustment."""
    out = []
    for d0, start in zip(event_day, event_start, strict=True):
        cand = []
        rank = 0
        d = d0 - 1
        while d >= 0 and len(cand) < y:
            day = row[d * ipd:(d + 1) * ipd]
            if eligible[d] and all(v == v for v in day):
                rank += 1
                if rank >= first:
                    cand.append((max(day), -len(cand), d))
            d -= 1
        if len(cand) < y:
            out.append(None)
            continue
        days = [c[2] for c in sorted(cand, reverse=True)[:x]]
        base = [sum(row[dd * ipd + i] for dd in days) / x for i in range(ipd)]
        if adjust:
            offs = range(start - adj_from, start - adj_to)
            m = sum(row[d0 * ipd + o] for o in offs)
            b = sum(sum(row[dd * ipd + o] for dd in days) / x for o in offs)
            if m == m and b == b and b != 0:
                r = min(max(m / b, cap_lo), cap_hi)
                base = [v * r for v in base]
        out.append(base)
    return out


def schedule_numpy_across_buildings(plan, soc0, e, p_ch, p_dis, eta_c, eta_d, lo, hi, dt_h):
    """Vectorised over buildings, loop over time: the best numpy can do with a clipped recurrence
    (same outputs as the kernel, NaN handling left out)."""
    nb, nt = plan.shape
    soc = np.empty((nb, nt + 1))
    unserved = np.empty((nb, nt))
    band_lo = np.empty((nb, nt + 1))
    band_hi = np.empty((nb, nt + 1))
    soc[:, 0] = soc0
    s = soc0.copy()
    for t in range(nt):
        p = plan[:, t]
        dis = p >= 0
        pc = np.clip(p, -p_ch, p_dis)
        new = s - pc * np.where(dis, dt_h / (eta_d * e), eta_c * dt_h / e)
        new = np.minimum(np.maximum(new, np.minimum(s, lo)), np.maximum(s, hi))
        unserved[:, t] = np.abs(p) * dt_h - np.abs(new - s) * np.where(dis, e * eta_d, e / eta_c)
        s = soc[:, t + 1] = new
    a, z = lo.copy(), hi.copy()
    band_lo[:, nt], band_hi[:, nt] = a, z
    for t in range(nt - 1, -1, -1):
        pc = np.clip(plan[:, t], -p_ch, p_dis)
        d = -pc * np.where(pc >= 0, dt_h / (eta_d * e), eta_c * dt_h / e)
        a = band_lo[:, t] = np.maximum(lo, a - d)
        z = band_hi[:, t] = np.minimum(hi, z - d)
    return soc, unserved, band_lo, band_hi


# --- fresh-interpreter measurements --------------------------------------------------------------

CHILD = """
import resource, sys, time
t0 = time.perf_counter()
import numpy as np
from analytics import baselines as bl, flexibility as flex
what, nb, nt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if what == "cold-envelope":
    flex.battery_envelope(np.full((2, 8), 50.0), flex.BatterySpec(100.0, 50.0, 50.0), 0.25)
    print(time.perf_counter() - t0); raise SystemExit
if what == "cold-baseline":
    ev = bl.DrEvents(np.array([11]), np.array([56]), np.array([72]))
    bl.ten_in_ten(np.ones((2, 12 * 96)), np.ones(12, bool), ev, 96)
    print(time.perf_counter() - t0); raise SystemExit
import psutil
spec = flex.BatterySpec(500.0, 250.0, 250.0, 0.95, 0.95, 10, 90)
flex.battery_envelope(np.full((2, 8), 50.0), spec, 0.25)       # load the cached machine code first
flex.schedule_soc_band(np.zeros((2, 8)), 50.0, spec, 0.25)
ev1 = bl.DrEvents(np.array([11]), np.array([56]), np.array([72]))
bl.ten_in_ten(np.ones((2, 12 * 96)), np.ones(12, bool), ev1, 96)
rss0 = psutil.Process().memory_info().rss
x = np.random.default_rng(0).uniform(0, 100, (nb, nt))
if what == "mem-envelope":
    r = flex.battery_envelope(x, spec, 0.25)
    out = r.p_up_kw.nbytes + r.p_down_kw.nbytes
elif what == "mem-schedule":
    x -= 50.0
    r = flex.schedule_soc_band(x, 50.0, spec, 0.25)
    out = r.soc_pct.nbytes * 3 + r.unserved_kwh.nbytes
else:
    nd = nt // 96
    ev = bl.DrEvents(np.linspace(15, nd - 1, 30).astype(np.int64), np.full(30, 56), np.full(30, 72))
    r = bl.ten_in_ten(x, (np.arange(nd) % 7) < 5, ev, 96)
    out = r.baseline_kw.nbytes + r.days.nbytes + r.adjustment.nbytes
# VmHWM is this address space's peak; ru_maxrss would carry the parent's peak across fork + exec.
with open("/proc/self/status") as fh:
    peak = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
print((peak - rss0) / (x.nbytes + out))
"""


def child(what: str, nb: int, nt: int, env: dict[str, str] | None = None) -> float:
    # The project is installed (editable) in the interpreter running this: no path set-up needed.
    res = subprocess.run([sys.executable, "-c", CHILD, what, str(nb), str(nt)], capture_output=True,
                         text=True, env={**os.environ, **(env or {})}, cwd=ROOT, check=True)
    return float(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (40 buildings × 8 weeks)")
    ap.add_argument("--buildings", type=int)
    ap.add_argument("--intervals", type=int)
    ap.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS)
    ap.add_argument("--events", type=int, default=30)
    args = ap.parse_args()
    nb = args.buildings or (40 if args.quick else 1000)
    nt = args.intervals or (IPD * 56 if args.quick else 35040)
    repeat = 5 if args.quick else 3
    numba.set_num_threads(args.threads)
    data = make_inputs(nb, nt)
    bat = battery_arrays(nb)
    rows: list[list[str]] = []
    notes: list[str] = []
    copier = CopyBandwidth(data["soc"].nbytes, args.threads)
    copier.run()
    bws: list[float] = []

    # 1. envelope: streaming
    soc = data["soc"]
    outs = (np.zeros((len(STEPS), nb, nt)), np.zeros((len(STEPS), nb, nt)))
    bargs = (soc, *bat.values(), DT_H, STEPS, *outs)
    flex._envelope_kernel(*bargs)
    t_nb, bw = copier.paired(lambda: flex._envelope_kernel(*bargs), repeat + 2)
    bws.append(bw)
    spec = flex.BatterySpec(bat["energy_kwh"], bat["p_ch"], bat["p_dis"], 0.95, 0.95, 10.0, 90.0)
    t_alloc = best(lambda: flex.battery_envelope(soc, spec, DT_H), repeat)
    t_np = best(lambda: ref.envelope(*bargs), max(1, repeat - 1))
    sample = min(nt, 20000)
    b0 = [float(v[0]) for v in bat.values()]
    t_py = best(lambda: envelope_pure_python(soc[0, :sample].tolist(), *b0, DT_H, STEPS.tolist()), 1)
    t_py *= nb * nt / sample
    moved = soc.nbytes * (1 + 2 * len(STEPS))
    notes.append(f"battery envelope through the public call with fresh output arrays: {t_alloc:.3f} s "
                 f"(first touch of {2 * outs[0].nbytes / 1e9:.2f} GB of new pages included)")
    outs = bargs = ()
    rows.append(["battery envelope, 4 horizons (streaming, outputs reused)", f"{t_nb:.3g}",
                 f"{t_np:.3f} (vectorised numpy, same outputs)",
                 f"{t_np / t_nb:.1f}×", f"{t_py / t_nb:.0f}× (sampled {sample} intervals)",
                 f"{moved / t_nb / 1e9:.2f} GB/s = {moved / t_nb / bw:.2f} of copy"])

    # 2. schedule SoC band: sequential
    plan = data["plan"]
    soc0 = np.full(nb, 0.5)
    sargs = (plan, soc0, bat["energy_kwh"], bat["p_ch"], bat["p_dis"], bat["eta_c"], bat["eta_d"],
             bat["soc_min"], bat["soc_max"], bat["soc_min"], bat["soc_max"], DT_H)
    souts = (np.zeros((nb, nt + 1)), np.zeros((nb, nt)), np.zeros((nb, nt + 1)), np.zeros((nb, nt + 1)))
    flex._schedule_kernel(*sargs, *souts)
    t_nb, bw = copier.paired(lambda: flex._schedule_kernel(*sargs, *souts), repeat + 2)
    bws.append(bw)
    souts = ()
    ns = max(1, min(nb, 4))
    sub = (plan[:ns], *(a[:ns] for a in sargs[1:11]), DT_H,
           np.empty((ns, nt + 1)), np.empty((ns, nt)), np.empty((ns, nt + 1)), np.empty((ns, nt + 1)))
    t_py = best(lambda: ref.schedule(*sub), 1) * nb / ns
    vargs = (plan, soc0, bat["energy_kwh"], bat["p_ch"], bat["p_dis"], bat["eta_c"], bat["eta_d"],
             bat["soc_min"], bat["soc_max"], DT_H)
    t_vec = best(lambda: schedule_numpy_across_buildings(*vargs), 1)
    moved = plan.nbytes * 5
    rows.append(["schedule SoC band, fwd+bwd (sequential)", f"{t_nb:.3g}",
                 f"{t_py:.3f} (plain-Python reference, {ns} buildings scaled)",
                 f"{t_vec / t_nb:.1f}× (numpy across buildings, loop over time)",
                 f"{t_py / t_nb:.0f}×", f"{moved / t_nb / 1e9:.2f} GB/s = {moved / t_nb / bw:.2f} of copy"])

    # 3. baselines, 30 events
    load = data["load"]
    nd = nt // IPD
    eligible, ev = events_for(nd, args.events)
    elig = eligible.copy()
    elig[ev.day] = False
    adj = bl.DayOfAdjustment()
    for name, x, y, first, do_adj in (("10-in-10 + adjustment", 10, 10, 1, True),
                                      ("Beijing high-5-of-10", 5, 10, 2, False)):
        kargs = (load, IPD, elig, ev.day, ev.start, first, y, x, do_adj, 16, 4, adj.cap_low, adj.cap_high)
        bl._baseline_kernel(*kargs)
        t_nb, bw = copier.paired(lambda kargs=kargs: bl._baseline_kernel(*kargs), repeat + 2)
        bws.append(bw)
        nr = max(1, min(nb, 50))
        rargs = (load[:nr], *kargs[1:])
        t_ref = best(lambda rargs=rargs: ref.baseline(*rargs), 1) * nb / nr
        npy = max(1, min(nb, 3))
        rows_py = [load[i].tolist() for i in range(npy)]
        pargs = (IPD, elig.tolist(), ev.day.tolist(), ev.start.tolist(), *kargs[5:])
        t_py = best(lambda rows_py=rows_py, pargs=pargs:
                    [baseline_pure_python(r, *pargs) for r in rows_py], 1) * nb / npy
        touched = load.nbytes
        rows.append([f"baseline {name}, {len(ev.day)} events", f"{t_nb:.3g}",
                     f"{t_ref:.3f} (numpy per building×event, {nr} buildings scaled)",
                     f"{t_ref / t_nb:.0f}× (no whole-array numpy form: day choice differs per building)",
                     f"{t_py / t_nb:.0f}× (same rule on lists, {npy} buildings scaled)",
                     f"{touched / t_nb / 1e9:.2f} GB/s = {touched / t_nb / bw:.2f} of copy "
                     "(one pass over the load)"])

    with tempfile.TemporaryDirectory() as empty:
        cold = {w: (child(w, 0, 0), child(w, 0, 0, {"NUMBA_CACHE_DIR": empty}))
                for w in ("cold-envelope", "cold-baseline")}
    mem = {w: child(w, nb, nt) for w in ("mem-envelope", "mem-schedule", "mem-baseline")}

    print(f"## bench_analytics_flex — {nb} buildings × {nt} intervals, {args.threads} numba threads\n")
    print(f"numpy copy of {copier.src.nbytes / 1e6:.0f} MB in {args.threads} threads (read + write counted), "
          f"best per kernel, measured alternately with it: "
          + ", ".join(f"{b / 1e9:.1f}" for b in bws) + " GB/s\n")
    print("| kernel | numba s | reference s | vs vectorised numpy | vs pure Python/element | throughput |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print("\n| JIT cold start (fresh interpreter, import → first result) | cached s | no cache s |")
    print("|---|---|---|")
    for w, (c, u) in cold.items():
        print(f"| {w.removeprefix('cold-')} | {c:.2f} | {u:.2f} |")
    print("\n| peak memory of the public call / (input + outputs) | ratio |")
    print("|---|---|")
    for w, m in mem.items():
        print(f"| {w.removeprefix('mem-')} | {m:.2f} |")
    for n in notes:
        print(f"\n{n}")
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"numpy {np.__version__}, numba {numba.__version__}; "
          f"peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(json.dumps({"rows": rows, "cold": cold, "mem": mem, "copy_gbs": bw / 1e9}), file=sys.stderr)


if __name__ == "__main__":
    main()
