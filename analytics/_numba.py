"""One place for the numba compilation options every analytics kernel uses.

All kernels are ``numba.njit(cache=True)`` (DESIGN.md, "Analytics conventions"): compiled once and
kept on disk so a fresh process reaches its first result quickly. Fast-math's ``nnan``/``ninf``
stay off because NaN means "missing" and those flags let the compiler assume NaN never occurs.
``nogil`` lets a caller run kernels from worker threads; ``parallel`` is used where a 2-D input has
one row per building.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

__all__ = ["NS_PER_HOUR", "as_rows", "kernel", "prange"]

NS_PER_HOUR = 3_600_000_000_000
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

    A 1-D input becomes one row without copying when it is already contiguous float64.
    """
    arr = np.ascontiguousarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr, was_1d = arr.reshape(1, -1), True
    elif arr.ndim == 2:
        was_1d = False
    else:
        raise ValueError(f"{name}: expected a 1-D or 2-D array, got {arr.ndim}-D")
    if n is not None and arr.shape[1] != n:
        raise ValueError(f"{name}: expected {n} values per row, got {arr.shape[1]}")
    return arr, was_1d
