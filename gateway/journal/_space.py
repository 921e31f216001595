"""The size cap against the disk: the cap in force is never more than the file system can hold
while a reserve stays free.

Why: a cap set above the free space lets the journal fill the disk, and on a full disk every commit
fails (readings lost with a healthy sink) and no cursor can be saved (delivery stalls).  So the cap in
force is ``min(max_bytes, journal files + free space - reserve)``, re-computed after every commit (a
``statvfs`` is microseconds) — other programs fill disks too.  Rows beyond it are dropped oldest
first, delivered ones before any undelivered, and counted.  The reserve is what a cursor update, the
deletions that make room and SQLite's checkpoints need; when free space falls under it, ``low_space``
is raised (``/health`` reports it) and the cap shrinks to what is in the files, so the journal reuses
its own free pages instead of asking the disk for more.

Refusing to start: when the journal files plus the free space do not even hold the reserve and a
minimal journal, no commit could be trusted; the gateway stops with a clear error instead of
acknowledging readings it cannot keep.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from gateway.errors import JournalError
from gateway.journal._files import free_bytes, on_disk_bytes

MIN_CAP_BYTES = 256 * 1024  # below this a journal holds a few seconds of a site: refuse instead
_LOG_EVERY_S = 60.0


def _mb(n: int) -> str:
    return f"{n / 1048576:.1f} MB"


class SpaceGuard:
    def __init__(self, path: Path, max_bytes: int, reserve_bytes: int, log: logging.Logger) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.reserve_bytes = reserve_bytes
        self.log = log
        self.free: int | None = None
        self.effective = max_bytes
        self.low_space = False
        self._logged_effective = max_bytes
        self._logged_at = 0.0

    def check_at_start(self) -> None:
        """Before opening: refuse when even the reserve does not fit; warn when the cap is lowered."""
        free = free_bytes(self.path.parent)
        if free is not None and on_disk_bytes(self.path) + free < self.reserve_bytes + MIN_CAP_BYTES:
            raise JournalError(
                f"not enough disk space for the journal {self.path}: {_mb(free)} free on its file system, "
                f"{_mb(on_disk_bytes(self.path))} in its files, but the reserve (journal.reserve_mb) alone is "
                f"{_mb(self.reserve_bytes)} and a journal needs {_mb(MIN_CAP_BYTES)} more; free some space, "
                "move journal.path to a larger file system, or lower journal.reserve_mb")
        self.update()

    def update(self) -> int:
        """Re-compute the cap in force; returns it.  Logs when it was lowered (at most once a minute
        unless it fell by more than a tenth) and when free space falls under or returns above the reserve."""
        free = self.free = free_bytes(self.path.parent)
        if free is None:
            self.effective, self.low_space = self.max_bytes, False
            return self.effective
        room = on_disk_bytes(self.path) + free - self.reserve_bytes
        self.effective = max(MIN_CAP_BYTES, min(self.max_bytes, room))
        low = free < self.reserve_bytes
        if low != self.low_space:
            self.low_space = low
            if low:
                self.log.error("journal disk almost full: %s free at %s, under the reserve of %s; the journal "
                               "now only reuses its own free pages (the cap in force is %s)",
                               _mb(free), self.path.parent, _mb(self.reserve_bytes), _mb(self.effective))
            else:
                self.log.warning("journal disk: %s free again at %s, above the reserve", _mb(free), self.path.parent)
        self._log_lowered()
        return self.effective

    def _log_lowered(self) -> None:
        now = time.monotonic()
        if self.effective >= self.max_bytes:
            self._logged_effective = self.max_bytes
            return
        fell = self.effective < 0.9 * self._logged_effective
        if fell or (self.effective != self._logged_effective and now - self._logged_at > _LOG_EVERY_S):
            self.log.warning("journal cap lowered from %s (journal.max_mb) to %s: the file system of %s has %s "
                             "free and %s stay reserved for cursor updates and deletions",
                             _mb(self.max_bytes), _mb(self.effective), self.path.parent, _mb(self.free or 0),
                             _mb(self.reserve_bytes))
            self._logged_effective, self._logged_at = self.effective, now
