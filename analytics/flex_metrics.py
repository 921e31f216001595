"""Aggregating flexibility envelopes (devices → building → fleet) and the flexibility factor.

Envelopes of independent members add up interval by interval: each member sustains its own power
over the horizon, so the sum is sustained too (flexibility dimensions of A. Ulbig, G. Andersson,
"Analyzing operational flexibility of electric power systems", Int. J. Electr. Power Energy Syst. 72
(2015) 155-164; DOMAIN.md §4). Shared limits (a common grid connection) are not modelled. The
flexibility factor is that of J. Le Dréau and P. Heiselberg (Energy 111 (2016) 991-1002); period split
conventions from DOMAIN.md §7. Arrays are (rows, intervals) float64, power in kW, energy in kWh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics._numba import as_2d, kernel, prange

__all__ = ["AggregateEnvelope", "FlexibilityFactor", "aggregate_envelope", "flexibility_factor"]


@dataclass(frozen=True)
class AggregateEnvelope:
    """Summed envelope per group (a building of devices, or a fleet of buildings).

    up_kw / down_kw: (groups, intervals) [kW]; reporting: (groups, intervals) members with data.
    """

    up_kw: np.ndarray
    down_kw: np.ndarray
    reporting: np.ndarray
    group_ids: np.ndarray
    convention: str


@kernel(parallel=True)
def _group_sum_kernel(values, order, offsets, skip_missing):
    ng = offsets.shape[0] - 1
    nt = values.shape[1]
    total = np.zeros((ng, nt))
    count = np.zeros((ng, nt), dtype=np.int64)
    for g in prange(ng):
        for j in range(offsets[g], offsets[g + 1]):
            m = order[j]
            for t in range(nt):
                v = values[m, t]
                if v == v:
                    total[g, t] += v
                    count[g, t] += 1
                elif not skip_missing:
                    total[g, t] = np.nan
    return total, count


def aggregate_envelope(
    up_kw: np.ndarray,
    down_kw: np.ndarray,
    groups: np.ndarray | None = None,
    missing: str = "propagate",
) -> AggregateEnvelope:
    """Sum member envelopes (rows) into groups: devices into a building, buildings into a fleet.

    Envelopes are additive when members are independent (module docstring); shared limits (a common
    grid connection) are not modelled.

    Parameters
    ----------
    up_kw, down_kw : ndarray [kW]
        Member envelopes, (members, intervals) or (intervals,), the same shape; NaN = missing.
    groups : ndarray, optional
        Group label per member (members,); None = one fleet.
    missing : str
        ``"propagate"`` (default): a group with a NaN member is NaN in that interval; ``"skip"``: sum
        the members present and report how many in ``reporting`` (the NaN count of ``down_kw`` is
        assumed equal to ``up_kw``'s).

    Returns
    -------
    AggregateEnvelope
        ``up_kw`` / ``down_kw`` [kW] and ``reporting`` [members] per (group, interval), groups in
        ascending label order (``group_ids``), ``convention``.

    Raises
    ------
    ValueError
        Inputs that are not 1-D or 2-D, of different shapes, or one label per member missing.

    References
    ----------
    A. Ulbig, G. Andersson, "Analyzing operational flexibility of electric power systems",
    Int. J. Electr. Power Energy Syst. 72 (2015) 155-164; DOMAIN.md §4.
    """
    if missing not in ("propagate", "skip"):
        raise ValueError("missing must be 'propagate' or 'skip'")
    up = as_2d(up_kw, "up_kw")
    down = as_2d(down_kw, "down_kw")
    if up.shape != down.shape:
        raise ValueError("up_kw and down_kw must have the same shape")
    labels = np.zeros(up.shape[0], dtype=np.int64) if groups is None else np.asarray(groups)
    if labels.shape != (up.shape[0],):
        raise ValueError(f"groups: expected one label per row ({up.shape[0]},), got shape {labels.shape}")
    ids, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable").astype(np.int64)
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(inverse, minlength=len(ids)), out=offsets[1:])
    skip = missing == "skip"
    up_sum, count = _group_sum_kernel(up, order, offsets, skip)
    down_sum, _ = _group_sum_kernel(down, order, offsets, skip)
    conv = f"sum of independent members (Ulbig & Andersson 2015); missing={missing}"
    return AggregateEnvelope(up_sum, down_sum, count, ids, conv)


@dataclass(frozen=True)
class FlexibilityFactor:
    """FF per building in [−1, 1] and the energies it came from [kWh]; NaN when E_low + E_high = 0."""

    ff: np.ndarray
    e_high_kwh: np.ndarray
    e_low_kwh: np.ndarray
    n_high: np.ndarray
    n_low: np.ndarray
    convention: str


@kernel(parallel=True)
def _ff_kernel(energy_kwh, penalty, high_at, low_at):
    nb, nt = energy_kwh.shape
    stride = 1 if penalty.shape[0] > 1 else 0
    ff = np.empty(nb)
    e_hi = np.zeros(nb)
    e_lo = np.zeros(nb)
    n_hi = np.zeros(nb, dtype=np.int64)
    n_lo = np.zeros(nb, dtype=np.int64)
    for b in prange(nb):
        r = b * stride
        for t in range(nt):
            e = energy_kwh[b, t]
            c = penalty[r, t]
            if e != e or c != c:
                continue
            if c >= high_at[r]:
                e_hi[b] += e
                n_hi[b] += 1
            elif c <= low_at[r]:
                e_lo[b] += e
                n_lo[b] += 1
        s = e_lo[b] + e_hi[b]
        ff[b] = (e_lo[b] - e_hi[b]) / s if s != 0.0 else np.nan
    return ff, e_hi, e_lo, n_hi, n_lo


def flexibility_factor(
    energy_kwh: np.ndarray,
    penalty: np.ndarray,
    high_at: float | None = None,
    low_at: float | None = None,
    split: str = "thresholds",
) -> FlexibilityFactor:
    """Flexibility factor FF = (E_low − E_high) / (E_low + E_high), in [−1, 1] for E ≥ 0.

    ``split="thresholds"`` (default, DOMAIN.md §7): high where penalty ≥ high_at, low where
    penalty ≤ low_at, intervals in between ignored (with high_at = low_at a penalty equal to it counts
    as low); ``split="mean"``: high above the mean penalty of
    the row, low at or below it. Intervals with NaN energy or penalty are left out (counted in neither
    n_high nor n_low).

    Parameters
    ----------
    energy_kwh : ndarray [kWh]
        Energy per interval, (buildings, intervals) or (intervals,); NaN = missing.
    penalty : ndarray [any unit, e.g. CNY/kWh or kgCO2/kWh]
        Penalty signal (price, CO2 intensity, …), (intervals,) or (buildings, intervals).
    high_at, low_at : float [unit of ``penalty``], optional
        Thresholds for ``split="thresholds"``, high_at ≥ low_at.
    split : str
        ``"thresholds"`` or ``"mean"``.

    Returns
    -------
    FlexibilityFactor
        ``ff`` [-] per building (NaN when E_low + E_high = 0), ``e_high_kwh`` / ``e_low_kwh`` [kWh],
        ``n_high`` / ``n_low`` [intervals], ``convention`` (split and thresholds).

    Raises
    ------
    ValueError
        Inputs that are not 1-D or 2-D, a penalty shape that does not match, missing or NaN
        thresholds, an unknown ``split``.

    References
    ----------
    J. Le Dréau, P. Heiselberg, "Energy flexibility of residential buildings using short term heat
    storage in the thermal mass", Energy 111 (2016) 991-1002; DOMAIN.md §4 and §7 "Flexibility factor".
    """
    energy = as_2d(energy_kwh, "energy_kwh")
    pen = as_2d(penalty, "penalty")
    if pen.shape[1] != energy.shape[1] or pen.shape[0] not in (1, energy.shape[0]):
        raise ValueError("penalty must be (intervals,) or (buildings, intervals) like energy_kwh")
    if split == "thresholds":
        if high_at is None or low_at is None or not high_at >= low_at:
            raise ValueError("split='thresholds' needs high_at >= low_at")
        hi = np.full(pen.shape[0], float(high_at))
        lo = np.full(pen.shape[0], float(low_at))
        if high_at == low_at:
            hi = np.nextafter(hi, np.inf)
    elif split == "mean":
        valid = ~np.isnan(pen)
        count = valid.sum(axis=1)
        lo = np.where(valid, pen, 0.0).sum(axis=1) / np.maximum(count, 1)
        lo[count == 0] = np.nan
        hi = np.nextafter(lo, np.inf)
    else:
        raise ValueError("split must be 'thresholds' or 'mean'")
    ff, e_hi, e_lo, n_hi, n_lo = _ff_kernel(energy, pen, np.ascontiguousarray(hi), np.ascontiguousarray(lo))
    conv = f"FF = (E_low - E_high)/(E_low + E_high) (Le Dréau & Heiselberg 2016); split={split}"
    if split == "thresholds":
        conv += f", high_at={float(high_at)!r}, low_at={float(low_at)!r}"
    return FlexibilityFactor(ff, e_hi, e_lo, n_hi, n_lo, conv)
