"""Plain twins of the flexibility, EV, flexible-load, baseline and M&V functions.

The first functions have the signature of the private kernel they mirror and return the same tuple
(or, like the envelope and schedule kernels, write into the same output arrays): benchmarks time them
against the kernels. The ``*_ref`` functions at the end take the arguments of the public function
they mirror and return its result fields as plain arrays: tests compare those with the public
functions, so shaping and parameter handling are covered too. All are
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


# --- twins of the public functions ------------------------------------------------------------------
# Same arguments as the public function, plain arrays out. Inputs are assumed valid (the public
# functions' validation is tested separately): a 1-D series is one row, a scalar parameter applies to
# every row. Built on the kernel twins above and on plain numpy, never on ``analytics``.

def _series(values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return arr[np.newaxis, :] if arr.ndim == 1 else arr


def _col(value, n: int, dtype=np.float64) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(np.asarray(value, dtype=dtype), (n,)))


def _battery(spec, n: int) -> tuple[np.ndarray, ...]:
    return (_col(spec.energy_kwh, n), _col(spec.p_charge_max_kw, n), _col(spec.p_discharge_max_kw, n),
            _col(spec.eta_charge, n), _col(spec.eta_discharge, n), _col(spec.soc_min_pct, n) / 100.0,
            _col(spec.soc_max_pct, n) / 100.0)


def battery_envelope_ref(soc_pct, spec, dt_h, horizons_h=(0.25, 1.0, 2.0, 4.0)):
    """(p_up_kw, p_down_kw, ramp_kw_per_step) of ``analytics.battery_envelope``."""
    soc = _series(soc_pct)
    steps = np.array([round(h / dt_h) for h in horizons_h], dtype=np.int64)
    up = np.empty((steps.size, *soc.shape))
    down = np.empty_like(up)
    envelope(soc, *_battery(spec, soc.shape[0]), dt_h, steps, up, down)
    return up, down, _col(spec.ramp_kw_per_min, soc.shape[0]) * 60.0 * dt_h


def schedule_soc_band_ref(schedule_kw, soc0_pct, spec, dt_h, soc_end_min_pct=None, soc_end_max_pct=None):
    """(soc_pct, unserved_kwh, feasible_min_pct, feasible_max_pct) of ``analytics.schedule_soc_band``."""
    plan = _series(schedule_kw)
    n, nt = plan.shape
    e, p_ch, p_dis, eta_c, eta_d, lo_b, hi_b = _battery(spec, n)
    end_min = lo_b if soc_end_min_pct is None else _col(soc_end_min_pct, n) / 100.0
    end_max = hi_b if soc_end_max_pct is None else _col(soc_end_max_pct, n) / 100.0
    soc, lo, hi = (np.empty((n, nt + 1)) for _ in range(3))
    unserved = np.empty((n, nt))
    schedule(plan, _col(soc0_pct, n) / 100.0, e, p_ch, p_dis, eta_c, eta_d, lo_b, hi_b, end_min, end_max,
             dt_h, soc, unserved, lo, hi)
    return soc * 100.0, unserved, lo * 100.0, hi * 100.0


def aggregate_envelope_ref(up_kw, down_kw, groups=None, missing="propagate"):
    """(up_kw, down_kw, reporting, group_ids) of ``analytics.aggregate_envelope``: masks per label."""
    up, down = _series(up_kw), _series(down_kw)
    labels = np.zeros(up.shape[0], dtype=np.int64) if groups is None else np.asarray(groups)
    ids = np.unique(labels)
    total = np.sum if missing == "propagate" else np.nansum
    up_sum = np.array([total(up[labels == g], axis=0) for g in ids]).reshape(ids.size, up.shape[1])
    down_sum = np.array([total(down[labels == g], axis=0) for g in ids]).reshape(ids.size, up.shape[1])
    count = np.array([(~np.isnan(up[labels == g])).sum(axis=0) for g in ids]).reshape(ids.size, up.shape[1])
    return up_sum, down_sum, count, ids


def flexibility_factor_ref(energy_kwh, penalty, high_at=None, low_at=None, split="thresholds"):
    """(ff, e_high_kwh, e_low_kwh, n_high, n_low) of ``analytics.flexibility_factor``, from masks."""
    energy = _series(energy_kwh)
    pen = np.broadcast_to(_series(penalty), energy.shape)
    ok = ~np.isnan(energy) & ~np.isnan(pen)
    if split == "thresholds":
        high = ok & ((pen > high_at) if high_at == low_at else (pen >= high_at))  # a tie counts as low
        low = ok & ~high & (pen <= low_at)
    else:
        own = _series(penalty)
        valid = ~np.isnan(own)
        mean = np.where(valid, own, 0.0).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
        mean = np.where(valid.any(axis=1), mean, np.nan)[:, np.newaxis]
        high = ok & (pen > mean)
        low = ok & (pen <= mean)
    e_hi = np.where(high, energy, 0.0).sum(axis=1)
    e_lo = np.where(low, energy, 0.0).sum(axis=1)
    total = e_lo + e_hi
    with np.errstate(invalid="ignore", divide="ignore"):
        ff = np.where(total != 0, (e_lo - e_hi) / total, np.nan)
    return ff, e_hi, e_lo, high.sum(axis=1), low.sum(axis=1)


def ev_flexibility_ref(sessions, n_intervals, dt_h, two_way=False):
    """The nine arrays of ``analytics.ev_flexibility`` (p_asap … unmet), in field order."""
    arrival = np.asarray(sessions.arrival, dtype=np.int64)
    n = arrival.size
    cols = [_col(getattr(sessions, f), n) for f in ("energy_kwh", "p_max_kw", "p_dis_max_kw", "e_dis_max_kwh")]
    return ev(arrival, np.asarray(sessions.departure, dtype=np.int64), *cols, n_intervals, dt_h, two_way)


def flexible_load_envelope_ref(p_kw, horizon_steps, dt_h, share, max_duration_steps, rebound_fraction,
                               p_rated_kw, max_shift_steps=0):
    """(p_up_kw, p_down_kw, rebound_kwh) of ``analytics.flexible_load_envelope``."""
    p = _series(p_kw)
    n = p.shape[0]
    return load_envelope(p, _col(share, n), _col(max_duration_steps, n, np.int64), _col(rebound_fraction, n),
                         _col(p_rated_kw, n), _col(max_shift_steps, n, np.int64), horizon_steps, dt_h)


def droop_response_ref(v_bus_v, p0_kw, v_ref_v, r_v_per_kw, p_min_kw=-np.inf, p_max_kw=np.inf, deadband_v=0.0):
    """(p_kw, delta_kw, kw_per_v) of ``analytics.droop_response``."""
    v = _series(v_bus_v)
    n = v.shape[0]
    r = _col(r_v_per_kw, n)
    p, delta = droop(v, _col(p0_kw, n), _col(v_ref_v, n), r, _col(p_min_kw, n), _col(p_max_kw, n),
                     _col(deadband_v, n))
    return p, delta, -1.0 / r


def high_x_of_y_ref(load_kw, day_eligible, events, intervals_per_day, x, y, first_rank=1, adjustment=None):
    """(baseline_kw, days, adjustment) of ``analytics.high_x_of_y`` (and the rules built on it)."""
    load = _series(load_kw)
    day = np.asarray(events.day, dtype=np.int64)
    eligible = np.array(day_eligible, dtype=bool)
    eligible[day] = False
    per_h = intervals_per_day / 24.0
    adj_from = round(adjustment.from_h * per_h) if adjustment else 0
    adj_to = round(adjustment.to_h * per_h) if adjustment else 0
    caps = (adjustment.cap_low, adjustment.cap_high) if adjustment else (0.8, 1.2)
    return baseline(load, intervals_per_day, eligible, day, np.asarray(events.start, dtype=np.int64), first_rank,
                    y, x, adjustment is not None, adj_from, adj_to, *caps)


def delivered_response_ref(baseline_kw, measured_kw, events, intervals_per_day, clip="net"):
    """(interval_kw, energy_kwh, avg_kw, fleet_energy_kwh, fleet_avg_kw, duration_h) of
    ``analytics.delivered_response``."""
    base = np.asarray(getattr(baseline_kw, "baseline_kw", baseline_kw), dtype=np.float64)
    start = np.asarray(events.start, dtype=np.int64)
    stop = np.asarray(events.stop, dtype=np.int64)
    dt_h = 24.0 / intervals_per_day
    interval, energy = response(base, _series(measured_kw), intervals_per_day, np.asarray(events.day, dtype=np.int64),
                                start, stop, dt_h, ("net", "per-interval", "per-building").index(clip))
    duration = (stop - start) * dt_h
    fleet = energy.sum(axis=0)
    return interval, energy, energy / duration, fleet, fleet / duration, duration
