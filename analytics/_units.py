"""Unit constants shared by the kernels and the numba-free modules (factor tables, local time)."""

NS_PER_HOUR = 3_600_000_000_000
