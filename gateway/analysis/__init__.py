"""TODO docstring."""

from __future__ import annotations

from gateway.analysis._batch import run_analyze
from gateway.analysis._live import LiveAnalytics

__all__ = [
    "LiveAnalytics",
    "run_analyze",
]
