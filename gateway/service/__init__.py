"""TODO docstring."""

from __future__ import annotations

from gateway.service._deadband import DeadbandFilter
from gateway.service._gateway import Gateway, line_key, make_writer, tune_gc
from gateway.service._status_view import render_status

__all__ = [
    "DeadbandFilter",
    "Gateway",
    "line_key",
    "make_writer",
    "render_status",
    "tune_gc",
]
