"""Learned holes: the register ranges a device refused (exception 02/03), kept across restarts so that
a restarted gateway does not pay the bisection again, nor lose the good points meanwhile.

Why in the journal: it is the gateway's one durable file, and a hole is a fact about the device the
readings came from.  The table is created by this store on first write (``CREATE TABLE IF NOT
EXISTS``, so an older journal gains it without a migration), and a journal without it reads as "nothing
learned".  The rows are plain numbers; the Modbus driver's type for them is built by the service.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.journal._db import transaction

TABLE = """CREATE TABLE IF NOT EXISTS learned_holes (device TEXT NOT NULL, function_code INTEGER NOT NULL,
    start INTEGER NOT NULL, end INTEGER NOT NULL, code INTEGER NOT NULL, learned_ns INTEGER NOT NULL,
    PRIMARY KEY (device, function_code, start, end)) WITHOUT ROWID"""


@dataclass(frozen=True, slots=True)
class HoleRecord:
    """Addresses ``start``..``end - 1`` of ``function_code`` refused with exception ``code``
    (``end == start``: no request may run across ``start``), learned at ``learned_ns``."""

    function_code: int
    start: int
    end: int
    code: int
    learned_ns: int


def select(db: sqlite3.Connection) -> dict[str, list[HoleRecord]]:
    """Every device's learned holes (none for a journal that never stored any)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'learned_holes'").fetchone() is None:
        return {}
    out: dict[str, list[HoleRecord]] = {}
    for device, *fields in db.execute("SELECT device, function_code, start, end, code, learned_ns "
                                      "FROM learned_holes ORDER BY device, function_code, start, end"):
        out.setdefault(device, []).append(HoleRecord(*fields))
    return out


def replace(db: sqlite3.Connection, device: str, holes: Sequence[HoleRecord]) -> None:
    """Make ``holes`` the device's learned holes (an empty list forgets them all)."""
    with transaction(db, f"cannot store the learned holes of {device}"):
        db.execute(TABLE)
        db.execute("DELETE FROM learned_holes WHERE device = ?", (device,))
        db.executemany("INSERT INTO learned_holes VALUES (?, ?, ?, ?, ?, ?)",
                       [(device, h.function_code, h.start, h.end, h.code, h.learned_ns) for h in holes])
