"""Plain twins of the energy and emissions kernels: slow, obviously correct, sharing no code with them.

Each function takes the arguments of the public function it mirrors and returns plain arrays.
Sequential recurrences (counters) are plain Python loops; the rest is vectorised numpy. Tests compare
kernels against these on random inputs; benchmarks time them.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from zoneinfo import ZoneInfo

import numpy as np

NS_H = 3_600_000_000_000


def _grid(t: int, interval: int) -> int:
    return (t + interval // 2) // interval * interval


def _rows(values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return arr.reshape(1, -1) if arr.ndim == 1 else arr


def interval_energy_ref(ts_ns, counter_kwh, interval_ns, *, wrap_kwh=0.0, p_max_kw=math.inf, start_ns=None,
                        n_intervals=None, snap_tolerance=0.1, max_span=1.5):
    """Counter readings → (energy_kwh, flags, gap_energy_kwh), each (n_series, n_intervals). Python loops."""
    interval = int(interval_ns)
    times = [int(t) for t in ts_ns]
    rows = _rows(counter_kwh).tolist()
    order = sorted(range(len(times)), key=lambda i: times[i])
    if start_ns is None:
        start_ns = _grid(times[order[0]], interval) if times else 0
    if n_intervals is None:
        end = _grid(times[order[-1]], interval) if times else start_ns
        n_intervals = max(0, (end - start_ns) // interval)
    tol, longest = int(snap_tolerance * interval), int(max_span * interval)
    out_e, out_f, out_g = [], [], []
    for row in rows:
        last_value: dict[int, float] = {}
        for i in order:
            if not math.isnan(row[i]):
                last_value[times[i]] = row[i]
        readings: list[tuple[int, float]] = []
        for t, v in last_value.items():
            g = start_ns + (t - start_ns + interval // 2) // interval * interval
            if abs(t - g) <= tol:
                t = g
            if readings and t <= readings[-1][0]:
                continue
            readings.append((t, v))
        energy = [0.0] * n_intervals
        covered = [0] * n_intervals
        in_gap = [False] * n_intervals
        flags = [0] * n_intervals
        gaps = [0.0] * n_intervals
        for (t0, v0), (t1, v1) in itertools.pairwise(readings):
            span = t1 - t0
            delta, flag = v1 - v0, 0
            if delta < 0:
                wrapped = delta + wrap_kwh
                if wrap_kwh > 0 and 0 <= wrapped <= p_max_kw * (span / NS_H):
                    delta, flag = wrapped, 1
                else:
                    delta, flag = v1, 2
            gap = span > longest
            if gap:
                flag |= 8
            elif span != interval or (t0 - start_ns) % interval:
                flag |= 4
            first, last = (t0 - start_ns) // interval, (t1 - start_ns - 1) // interval
            if gap and max(first, 0) <= min(last, n_intervals - 1):
                gaps[max(first, 0)] = delta
                flags[max(first, 0)] |= 16
            for k in range(max(first, 0), min(last, n_intervals - 1) + 1):
                lo = start_ns + k * interval
                overlap = min(t1, lo + interval) - max(t0, lo)
                covered[k] += overlap
                flags[k] |= flag
                if gap:
                    in_gap[k] = True
                else:
                    energy[k] += delta * (overlap / span)
        out_e.append([e if c == interval and not g else math.nan
                      for e, c, g in zip(energy, covered, in_gap, strict=True)])
        out_f.append(flags)
        out_g.append(gaps)
    shape = (len(rows), n_intervals)
    return (np.array(out_e, dtype=np.float64).reshape(shape), np.array(out_f, dtype=np.uint8).reshape(shape),
            np.array(out_g, dtype=np.float64).reshape(shape))


def interval_energy_numpy_ongrid(ts_ns, counter_kwh, interval_ns, *, wrap_kwh=0.0, p_max_kw=math.inf):
    """The vectorised numpy formulation (``np.diff`` + ``np.where`` + forward-filled last valid index).

    Valid only for readings exactly on a sorted, complete grid (one timestamp per interval, NaN for a
    missing reading): jitter apportioning has no vectorised form. Returns (energy, flags, gap).
    """
    v = _rows(counter_kwh)
    m, n = v.shape
    dt_h = int(interval_ns) / NS_H
    cols = np.arange(n)
    last_valid = np.maximum.accumulate(np.where(np.isnan(v), -1, cols), axis=1)
    prev_idx = np.concatenate([np.full((m, 1), -1), last_valid[:, :-1]], axis=1)
    has_prev = (~np.isnan(v)) & (prev_idx >= 0)
    prev_val = np.take_along_axis(v, np.maximum(prev_idx, 0), axis=1)
    steps = cols - prev_idx
    d = v - prev_val
    wrapped = d + wrap_kwh
    rollover = (d < 0) & (wrap_kwh > 0) & (wrapped >= 0) & (wrapped <= p_max_kw * steps * dt_h)
    reset = (d < 0) & ~rollover
    delta = np.where(rollover, wrapped, np.where(reset, v, d))
    ok = has_prev & (steps == 1)
    energy = np.where(ok, delta, np.nan)[:, 1:]
    flag_end = (rollover * 1 + reset * 2).astype(np.uint8) * has_prev
    flags = np.where(ok, flag_end, 0)[:, 1:].astype(np.uint8)
    gap_end = has_prev & (steps > 1)
    gap = np.zeros((m, n))
    rows_g, cols_g = np.nonzero(gap_end)
    starts_g = prev_idx[rows_g, cols_g]
    gap[rows_g, starts_g] = delta[rows_g, cols_g]
    flags[rows_g, starts_g] |= 16
    for bit, selected in ((8, slice(None)), (1, rollover[rows_g, cols_g]), (2, reset[rows_g, cols_g])):
        marks = np.zeros((m, n), dtype=np.int32)
        marks[rows_g[selected], starts_g[selected]] += 1
        marks[rows_g[selected], cols_g[selected]] -= 1
        flags |= (np.cumsum(marks, axis=1)[:, :-1] > 0).astype(np.uint8) * np.uint8(bit)
    return energy, flags, gap[:, :-1]


def _resample_ref(ts_ns, values, src_interval_ns, interval_ns, start_ns, n_intervals, min_coverage, kind):
    v = _rows(values)
    a = np.asarray(ts_ns, dtype=np.int64)[:, None]
    b = a + src_interval_ns
    lo = start_ns + np.arange(n_intervals, dtype=np.int64)[None, :] * interval_ns
    overlap = np.clip(np.minimum(b, lo + interval_ns) - np.maximum(a, lo), 0, None).astype(np.float64)
    present = ~np.isnan(v)
    weight = overlap / NS_H if kind == "power" else overlap / src_interval_ns
    energy = np.where(present, v, 0.0) @ weight
    covered = present.astype(np.float64) @ overlap
    coverage = covered / interval_ns
    energy = np.where(covered > 0, energy, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        filled = np.where(coverage >= min_coverage, energy / coverage, np.nan)
    return energy, coverage, filled


def resample_energy_ref(ts_ns, energy_kwh, src_interval_ns, interval_ns, *, start_ns, n_intervals,
                        min_coverage=0.8):
    """Overlap-matrix formulation: (energy_kwh, coverage, filled_kwh), each (n_series, n_intervals)."""
    return _resample_ref(ts_ns, energy_kwh, src_interval_ns, interval_ns, start_ns, n_intervals,
                         min_coverage, "energy")


def resample_power_ref(ts_ns, power_kw, src_interval_ns, interval_ns, *, start_ns, n_intervals,
                       min_coverage=0.8):
    return _resample_ref(ts_ns, power_kw, src_interval_ns, interval_ns, start_ns, n_intervals,
                         min_coverage, "power")


def energy_balance_ref(pv, charge, discharge, grid_import, grid_export, load_dc, load_ac, interval_ns):
    """Masked vectorised sums: dict of per-building totals, peaks [kW] and complete-interval counts."""
    ch = [_rows(x) for x in (pv, charge, discharge, grid_import, grid_export)]
    load = _rows(load_dc) + _rows(load_ac)
    complete = ~np.isnan(load)
    for x in ch:
        complete &= ~np.isnan(x)
    sums = [np.where(complete, x, 0.0).sum(axis=1) for x in (*ch, load)]
    dt_h = interval_ns / NS_H
    any_ok = complete.any(axis=1)
    def peak(x):
        return np.where(any_ok, np.where(complete, x, -np.inf).max(axis=1, initial=-np.inf), np.nan) / dt_h

    peak_imp, peak_load = peak(ch[3]), peak(load)
    names = ("pv", "charge", "discharge", "grid_import", "grid_export", "load")
    out = dict(zip(names, sums, strict=True))
    out.update(peak_import_kw=peak_imp, peak_load_kw=peak_load, n_complete=complete.sum(axis=1))
    return out


def _period_at(tariff, local: dt.datetime) -> int:
    return int(tariff.period_of_minute[local.month - 1, local.hour * 60 + local.minute])


def tou_fractions_ref(ts_ns, interval_ns, tariff, *, tz="Asia/Shanghai", split="pro_rata"):
    """Walk each interval minute by minute in local time (zoneinfo): (n, n_periods) shares."""
    zone = ZoneInfo(tz)
    frac = np.zeros((len(ts_ns), len(tariff.periods)))
    step = 60_000_000_000
    for j, t in enumerate(int(x) for x in ts_ns):
        end = t + int(interval_ns)
        pos = t
        while pos < end:
            local = dt.datetime.fromtimestamp(pos // 1_000_000_000, zone)
            local = local.replace(microsecond=(pos % 1_000_000_000) // 1000)
            if split == "start":
                frac[j, _period_at(tariff, local)] = 1.0
                break
            nxt = min(end, (pos // step + 1) * step)
            frac[j, _period_at(tariff, local)] += (nxt - pos) / interval_ns
            pos = nxt
    return frac


def tou_split_ref(ts_ns, energy_kwh, interval_ns, tariff, *, tz="Asia/Shanghai", split="pro_rata"):
    frac = tou_fractions_ref(ts_ns, interval_ns, tariff, tz=tz, split=split)
    e = _rows(energy_kwh)
    return np.nan_to_num(e) @ frac, np.isnan(e).sum(axis=1)


def local_month_index_ref(ts_ns, tz):
    zone = ZoneInfo(tz)
    keys = [(d.year, d.month) for d in (dt.datetime.fromtimestamp(int(t) // 10**9, zone) for t in ts_ns)]
    first = min(keys)
    return np.array([(y - first[0]) * 12 + mo - first[1] for y, mo in keys], dtype=np.int64)


def _factor_values(factor, ts_ns):
    if hasattr(factor, "kg_per_kwh") and np.ndim(factor.kg_per_kwh) == 0:
        return np.full(len(ts_ns), factor.kg_per_kwh)
    out = np.full(len(ts_ns), np.nan)
    starts = list(factor.ts_ns)
    for i, t in enumerate(int(x) for x in ts_ns):
        for k, s0 in enumerate(starts):
            if s0 <= t < s0 + factor.interval_ns:
                out[i] = factor.kg_per_kwh[k]
    return out


def scope2_ref(ts_ns, grid_import_kwh, *, location_factor, residual_factor, tz="Asia/Shanghai",
               gec_mwh=None, ppa_kwh=None, pv_self_consumed_kwh=None, pv_certificates_sold_kwh=None,
               matching="monthly"):
    """Vectorised: (location_kg, market_kg, monthly_import_kwh) per building."""
    imp = _rows(grid_import_kwh)
    f = _factor_values(location_factor, ts_ns)
    location = np.nansum(imp * f, axis=1)
    idx = local_month_index_ref(ts_ns, tz) if len(ts_ns) else np.zeros(0, dtype=np.int64)
    n_months = int(idx.max()) + 1 if idx.size else 0
    monthly = np.zeros((imp.shape[0], n_months))
    for k in range(n_months):
        monthly[:, k] = np.nansum(imp[:, idx == k], axis=1)

    def per_month(x):
        return np.zeros_like(monthly) if x is None else np.broadcast_to(np.asarray(x, float), monthly.shape)

    inst = per_month(gec_mwh) * 1000.0 + per_month(ppa_kwh)
    if matching == "monthly":
        residual = np.clip(monthly - inst, 0, None).sum(axis=1)
    else:
        residual = np.clip(monthly.sum(axis=1) - inst.sum(axis=1), 0, None)
    sold = np.minimum(per_month(pv_certificates_sold_kwh), per_month(pv_self_consumed_kwh)).sum(axis=1)
    return location, (residual + sold) * residual_factor.kg_per_kwh, monthly


def cfe_ref(ts_ns, consumption_kwh, supply_kwh, *, tz="Asia/Shanghai"):
    """Per local hour via datetime keys: (score, matched, consumption, hours excluded) per series."""
    zone = ZoneInfo(tz)
    hours = [dt.datetime.fromtimestamp(int(t) // 10**9, zone).replace(minute=0, second=0) for t in ts_ns]
    out = []
    for c_row, s_row in zip(_rows(consumption_kwh), _rows(supply_kwh), strict=True):
        c_h: dict = {}
        s_h: dict = {}
        bad = set()
        for h, c, s in zip(hours, c_row, s_row, strict=True):
            if math.isnan(c) or math.isnan(s):
                bad.add(h)
            c_h[h] = c_h.get(h, 0.0) + c
            s_h[h] = s_h.get(h, 0.0) + s
        matched = sum(min(c_h[h], s_h[h]) for h in c_h if h not in bad)
        total = sum(c_h[h] for h in c_h if h not in bad)
        out.append((matched / total if total > 0 else math.nan, matched, total, len(bad)))
    return [np.array(x) for x in zip(*out, strict=True)]


def rollup_ref(device_kg, parents):
    """Group sums with ``np.bincount``: list of emissions per level, device level first."""
    levels = [np.asarray(device_kg, dtype=np.float64)]
    sizes = [len(p) for p in parents[1:]] + [int(max(parents[-1], default=-1)) + 1]
    for parent, size in zip(parents, sizes, strict=True):
        levels.append(np.bincount(parent, weights=levels[-1], minlength=size))
    return levels


def local_offsets_ref(ts_ns, tz):
    """UTC offset [ns] of ``tz`` at each instant, one ``datetime.utcoffset`` call per instant."""
    zone = ZoneInfo(tz)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return np.array([(epoch + dt.timedelta(microseconds=int(t) // 1000)).astimezone(zone).utcoffset()
                     // dt.timedelta(microseconds=1) * 1000 for t in ts_ns], dtype=np.int64)


def local_wall_ref(ts_ns, tz):
    """(ISO text with offset, 'YYYY-MM', start of the local day [ns UTC]) of one instant, by datetime."""
    zone = ZoneInfo(tz)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    local = (epoch + dt.timedelta(microseconds=int(ts_ns) // 1000)).astimezone(zone)
    # Walk back minute by minute to the first instant whose local date is still this one.
    day, start = local.date(), int(ts_ns) // 60_000_000_000 * 60_000_000_000
    while (epoch + dt.timedelta(microseconds=(start - 60_000_000_000) // 1000)).astimezone(zone).date() == day:
        start -= 60_000_000_000
    return local.isoformat(), f"{local.year:04d}-{local.month:02d}", start
