"""TODO docstring."""

from __future__ import annotations

from gateway.journal._journal import Journal, JournalRow

__all__ = [
    "Journal",
    "JournalRow",
]
