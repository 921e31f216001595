"""Plain twins of the flexibility, EV, flexible-load, baseline and M&V kernels.

Each function has the signature of the private kernel it mirrors and returns the same tuple (or, like
the envelope and schedule kernels, writes into the same output arrays). They are
written from the formulas (vectorised numpy where one exists, plain Python loops where the recurrence
is sequential) and share no code with ``analytics``; tests compare the two, benchmarks time them.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def envelope(soc_pct, energy_kwh, p_ch, p_dis, eta_c, eta_d, soc_min, soc_max, dt_h, steps, up, down):
    """Vectorised: P_up = min(P_dis, (SoC−SoC_min)·E·η_d/(kΔt)),
    P_down = min(P_ch, (SoC_max−SoC)·E/(η_c·kΔt)), both ≥ 0."""
    soc = soc_pct / 100.0
    col = (slice(None), np.newaxis)
    e_up = np.clip(soc - soc_min[col], 0.0, None) * (energy_kwh * eta_d)[col]
    e_dn = np.clip(soc_max[col] - soc, 0.0, None) * (energy_kwh / eta_c)[col]
    spans = (np.asarray(steps, dtype=np.float64) * dt_h)[:, np.newaxis, np.newaxis]
    np.minimum(p_dis[np.newaxis, :, np.newaxis], e_up[np.newaxis] / spans, out=up)
    np.minimum(p_ch[np.newaxis, :, np.newaxis], e_dn[np.newaxis] / spans, out=down)


def schedule(schedule_kw, soc0, energy_kwh, p_ch, p_dis, eta_c, eta_d, soc_min, soc_max, end_min, end_max,
             dt_h, soc, unserved, lo, hi):
    """Plain loops in stored energy [kWh]: take from / put into the battery what the power limits and
    the bounds allow."""
    nb, nt = schedule_kw.shape
    for arr in (soc, unserved, lo, hi):
        arr.fill(np.nan)
    for b in range(nb):
        cap = energy_kwh[b]
        stored = soc0[b] * cap
        soc[b, 0] = soc0[b]
        for t in range(nt):
            p = schedule_kw[b, t]
            if math.isnan(p) or math.isnan(stored):
                break
            if p >= 0:
                wanted = min(p, p_dis[b]) * dt_h / eta_d[b]
                taken = min(wanted, max(0.0, stored - soc_min[b] * cap))
                stored -= taken
                unserved[b, t] = p * dt_h - taken * eta_d[b]
            else:
                wanted = min(-p, p_ch[b]) * dt_h * eta_c[b]
                put = min(wanted, max(0.0, soc_max[b] * cap - stored))
                stored += put
                unserved[b, t] = -p * dt_h - put / eta_c[b]
            soc[b, t + 1] = stored / cap
        need_lo, need_hi = end_min[b], end_max[b]
        lo[b, nt], hi[b, nt] = need_lo, need_hi
        for t in reversed(range(nt)):
            p = schedule_kw[b, t]
            if math.isnan(p) or math.isnan(need_lo):
                break
            change = (-min(p, p_dis[b]) * dt_h / (eta_d[b] * cap) if p >= 0
                      else min(-p, p_ch[b]) * dt_h * eta_c[b] / cap)
            need_lo = max(soc_min[b], need_lo - change)
            need_hi = min(soc_max[b], need_hi - change)
            lo[b, t], hi[b, t] = need_lo, need_hi


def group_sum(values, order, offsets, skip_missing):
    """Vectorised per group: np.sum (NaN propagates) or np.nansum, and the count of present members."""
    ng = len(offsets) - 1
    total = np.zeros((ng, values.shape[1]))
    count = np.zeros((ng, values.shape[1]), dtype=np.int64)
    for g in range(ng):
        rows = values[order[offsets[g]:offsets[g + 1]]]
        total[g] = np.nansum(rows, axis=0) if skip_missing else rows.sum(axis=0)
        count[g] = (~np.isnan(rows)).sum(axis=0)
    return total, count


def flexibility_factor(energy_kwh, penalty, high_at, low_at):
    """Vectorised masks: high where penalty ≥ high_at, low where ≤ low_at (high wins), NaN left out."""
    pen = np.broadcast_to(penalty, energy_kwh.shape)
    hi_at = np.broadcast_to(high_at[:, np.newaxis], pen.shape) if len(high_at) > 1 else high_at[0]
    lo_at = np.broadcast_to(low_at[:, np.newaxis], pen.shape) if len(low_at) > 1 else low_at[0]
    ok = ~np.isnan(energy_kwh) & ~np.isnan(pen)
    high = ok & (pen >= hi_at)
    low = ok & ~high & (pen <= lo_at)
    e_hi = np.where(high, energy_kwh, 0.0).sum(axis=1)
    e_lo = np.where(low, energy_kwh, 0.0).sum(axis=1)
    total = e_lo + e_hi
    with np.errstate(invalid="ignore", divide="ignore"):
        ff = np.where(total != 0, (e_lo - e_hi) / total, np.nan)
    return ff, e_hi, e_lo, high.sum(axis=1), low.sum(axis=1)


def baseline(load, ipd, eligible, event_day, event_start, first_rank, y, x, adjust, adj_from, adj_to,
             cap_lo, cap_hi):
    """Per building and event with numpy: rank complete eligible days back, keep the top-x peaks."""
    nb, nt = load.shape
    ne = len(event_day)
    days_mat = load.reshape(nb, nt // ipd, ipd)
    out = np.full((nb, ne, ipd), np.nan)
    days_out = np.full((nb, ne, x), -1, dtype=np.int64)
    factor = np.full((nb, ne), np.nan)
    for b in range(nb):
        complete = ~np.isnan(days_mat[b]).any(axis=1)
        for e, d0 in enumerate(event_day):
            before = np.flatnonzero(eligible[:d0] & complete[:d0])[::-1]
            cand = before[first_rank - 1:first_rank - 1 + y]
            if len(cand) < y:
                continue
            peaks = days_mat[b, cand].max(axis=1)
            chosen = np.sort(np.argsort(-peaks, kind="stable")[:x])
            sel = cand[chosen]
            days_out[b, e] = sel
            out[b, e] = days_mat[b, sel].mean(axis=0)
            if not adjust:
                factor[b, e] = 1.0
                continue
            offs = np.arange(event_start[e] - adj_from, event_start[e] - adj_to)
            idx_m = d0 * ipd + offs
            idx_b = sel[:, np.newaxis] * ipd + offs[np.newaxis, :]
            if idx_m.min() < 0 or idx_b.min() < 0:
                continue
            measured = load[b, idx_m].sum()
            base = load[b, idx_b].mean(axis=0).sum()
            if np.isnan(measured) or np.isnan(base) or base == 0:
                continue
            factor[b, e] = np.clip(measured / base, cap_lo, cap_hi)
            out[b, e] *= factor[b, e]
    return out, days_out, factor


def response(baseline_kw, measured, ipd, event_day, event_start, event_stop, dt_h, clip):
    """Vectorised: reshape measured to days, mask the event window, sum (baseline − measured)·Δt."""
    nb = measured.shape[0]
    by_day = measured.reshape(nb, measured.shape[1] // ipd, ipd)[:, event_day, :]
    delta = baseline_kw - by_day
    if clip == 1:
        delta = np.where(delta < 0, 0.0, delta)
    i = np.arange(ipd)
    window = (i >= event_start[:, np.newaxis]) & (i < event_stop[:, np.newaxis])
    interval = np.where(window[np.newaxis], delta, np.nan)
    energy = np.where(window[np.newaxis], delta, 0.0).sum(axis=2) * dt_h
    if clip == 2:
        energy = np.where(energy < 0, 0.0, energy)
    return interval, energy


def ev(arrival, departure, need, p_max, p_dis, e_dis, n_intervals, dt_h, two_way):
    """Broadcast sessions × boundaries: the ASAP/ALAP energy trajectories, clipped to the dwell."""
    t = np.arange(n_intervals + 1)[np.newaxis, :]
    a, d = arrival[:, np.newaxis], departure[:, np.newaxis]
    pm = p_max[:, np.newaxis]
    reach = p_max * (departure - arrival) * dt_h
    en = np.minimum(need, reach)[:, np.newaxis]
    since = np.clip(t - a, 0, None) * dt_h
    until = np.clip(d - t, 0, None) * dt_h
    hi = np.minimum(en, pm * since)
    floor = np.maximum(-e_dis[:, np.newaxis], -p_dis[:, np.newaxis] * since) if two_way else 0.0
    lo = np.where(t <= a, 0.0, np.maximum(en - pm * until, floor))
    lo = np.where(t >= d, en, lo)
    connected = (np.arange(n_intervals)[np.newaxis, :] >= a) & (np.arange(n_intervals)[np.newaxis, :] < d)
    e_max, e_min = hi.sum(axis=0), lo.sum(axis=0)
    p_hi = (connected * pm).sum(axis=0).astype(np.float64)
    p_lo = -(connected * p_dis[:, np.newaxis]).sum(axis=0) if two_way else np.zeros(n_intervals)
    enf = en[:, 0]
    return (np.diff(e_max) / dt_h, np.diff(e_min) / dt_h, p_hi, p_lo, e_max, e_min,
            np.minimum(enf, reach - enf), np.maximum(0.0, -lo.min(axis=1)), need - enf)


def load_envelope(p, share, max_dur, rebound, p_rated, max_shift, k, dt_h):
    """Sliding windows of k intervals; the shift source is the next S intervals after each window."""
    nb, nt = p.shape
    up = np.full((nb, nt), np.nan)
    down = np.full((nb, nt), np.nan)
    reb = np.full((nb, nt), np.nan)
    if nt < k:
        return up, down, reb
    win = sliding_window_view(p, k, axis=1)
    n = win.shape[1]
    ok = k <= max_dur
    lowest = win.min(axis=2)
    total = win.sum(axis=2)
    up[:, :n] = np.where(ok[:, np.newaxis], share[:, np.newaxis] * lowest, 0.0)
    reb[:, :n] = np.where(ok[:, np.newaxis], (rebound * share)[:, np.newaxis] * total * dt_h, 0.0)
    missing = np.isnan(total)
    up[:, :n][missing] = np.nan
    reb[:, :n][missing] = np.nan
    head = (p_rated[:, np.newaxis, np.newaxis] - win).min(axis=2)
    for b in range(nb):
        s = int(max_shift[b])
        for t in range(n):
            if t + k + s > nt or missing[b, t]:
                continue
            later = p[b, t + k:t + k + s].sum()
            if not np.isnan(later):
                down[b, t] = max(0.0, min(head[b, t], share[b] * later / k))
    return up, down, reb


def droop(v, p0, v_ref, r, p_min, p_max, deadband):
    """Vectorised: deviation beyond the deadband, P = P0 − dv/R, clipped."""
    col = (slice(None), np.newaxis)
    dv = v - v_ref[col]
    beyond = np.sign(dv) * np.clip(np.abs(dv) - deadband[col], 0.0, None)
    p = np.clip(p0[col] - beyond / r[col], p_min[col], p_max[col])
    p = np.where(np.isnan(v), np.nan, p)
    return p, p - p0[col]
