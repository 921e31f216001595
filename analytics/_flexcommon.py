"""Input shaping shared by the flexibility, EV, baseline and M&V wrappers (not by their kernels)."""

from __future__ import annotations

import numpy as np


def as_2d(values: np.ndarray, name: str) -> np.ndarray:
    """A (rows, intervals) C-contiguous float64 view or copy; a 1-D input becomes one row."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def per_row(value: float | np.ndarray, n: int, name: str) -> np.ndarray:
    """A scalar or (n,) parameter as a contiguous (n,) float64 array; NaN is rejected."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} must not contain NaN")
    return np.ascontiguousarray(arr)
