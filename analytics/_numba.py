"""One place for the numba compilation options every analytics kernel uses.

All kernels are ``numba.njit(cache=True)`` (DESIGN.md, "Analytics conventions"): compiled once and
kept on disk so a fresh process reaches its first result quickly. Fast-math's ``nnan``/``ninf``
stay off because NaN means "missing" and those flags let the compiler assume NaN never occurs.
``nogil`` lets a caller run kernels from worker threads; ``parallel`` is used where a 2-D input has
one row per building.

The array-shaping helpers below are the one place every public wrapper turns its inputs into the
contiguous float64 rows the kernels take (``as_rows``/``as_2d``), scalar-or-per-row parameters into
(rows,) arrays (``per_row``) and index lists into int64 (``as_index``); a bad input raises
``ValueError`` naming the argument.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from analytics._units import NS_PER_HOUR

__all__ = ["NS_PER_HOUR", "as_2d", "as_index", "as_rows", "kernel", "per_row", "prange"]

prange = numba.prange


def kernel(*, parallel: bool = False, reassociate: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """Decorator: ``numba.njit`` with the project's fixed options (cache on, no NaN assumptions).

    ``reassociate`` lets LLVM reorder additions (fast-math ``reassoc``/``contract`` only, never
    ``nnan``) so reductions vectorise; sums then differ from a sequential sum by rounding only.
    """
    fastmath: bool | set[str] = {"reassoc", "contract"} if reassociate else False
    return numba.njit(cache=True, nogil=True, parallel=parallel, fastmath=fastmath, error_model="numpy")


def as_rows(values: Any, name: str, n: int | None = None) -> tuple[np.ndarray, bool]:
    """Return ``values`` as a C-contiguous float64 2-D array (rows = series) and whether it was 1-D.

    A 1-D input becomes one row without copying when it is already contiguous float64. Anything
    that is not 1-D or 2-D numbers, or whose rows do not hold ``n`` values, raises ``ValueError``
    naming ``name``.
    """
    arr = _floats(values, name)
    if arr.ndim == 1:
        arr, was_1d = arr.reshape(1, -1), True
    elif arr.ndim == 2:
        was_1d = False
    else:
        raise ValueError(f"{name}: expected a 1-D or 2-D array, got shape {arr.shape}")
    if n is not None and arr.shape[1] != n:
        raise ValueError(f"{name}: expected {n} values per row, got {arr.shape[1]}")
    return np.ascontiguousarray(arr), was_1d


def as_2d(values: Any, name: str, n: int | None = None) -> np.ndarray:
    """``values`` as a (rows, intervals) C-contiguous float64 array; a 1-D input becomes one row."""
    return as_rows(values, name, n)[0]


def per_row(value: Any, n: int, name: str, *, integer: bool = False) -> np.ndarray:
    """A scalar or one value per row as a contiguous (n,) array; NaN is refused.

    ``integer=True`` returns int64 and refuses values that are not whole numbers (including ±inf).
    """
    arr = _floats(value, name)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected a scalar or one value per row ({n},), got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name}: NaN is not allowed")
    if integer:
        if not np.all(np.isfinite(arr) & (arr == np.floor(arr))):
            raise ValueError(f"{name}: expected whole numbers")
        return np.ascontiguousarray(arr, dtype=np.int64)
    return np.ascontiguousarray(arr)


def as_index(values: Any, name: str) -> np.ndarray:
    """A 1-D array of whole numbers (interval or day indices) as contiguous int64; NaN is refused."""
    arr = _floats(values, name)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    return per_row(arr, arr.size, name, integer=True)


def _floats(values: Any, name: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected numbers, got {type(values).__name__}") from exc
