"""MQTT arrival records: the first arrival time of each message, by digest of (topic, payload).

Why: a QoS 1 message is acknowledged only after its commit, so a broker redelivers every message
whose PUBACK was lost (reconnect, restart).  A message without its own timestamp is stamped with its
arrival time; its redelivered copy must get the same stamp, or the same reading is stored twice under
two timestamps.  The record is committed in the same transaction as the sample it produced, so a
record exists exactly when its sample does.

Records older than the dedup window are deleted, at most every 10 s (not per commit): the window is
minutes, a late purge only keeps a few rows longer.
"""

from __future__ import annotations

import sqlite3
import time

_PURGE_EVERY_NS = 10 * 10**9


class ArrivalStore:
    def __init__(self, window_ns: int = 600 * 10**9) -> None:
        self.window_ns = window_ns
        self._purged_ns = 0

    def store(self, db: sqlite3.Connection, arrivals: dict[bytes, int]) -> None:
        """Inside the group's transaction: remember first arrivals, forget those past the window."""
        db.executemany("INSERT OR REPLACE INTO mqtt_arrivals VALUES (?, ?)", arrivals.items())
        now = time.time_ns()
        if now - self._purged_ns > _PURGE_EVERY_NS:
            db.execute("DELETE FROM mqtt_arrivals WHERE at_ns < ?", (now - self.window_ns,))
            self._purged_ns = now

    def lookup(self, db: sqlite3.Connection, digest: bytes) -> int | None:
        """The committed first arrival of ``digest`` within the window; runs on the journal thread."""
        oldest = time.time_ns() - self.window_ns
        row = db.execute("SELECT at_ns FROM mqtt_arrivals WHERE digest = ? AND at_ns >= ?", (digest, oldest)).fetchone()
        return None if row is None else int(row[0])
