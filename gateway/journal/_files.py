"""The journal's files on disk: the database and its companions, their modes, their size, the free
space beside them, and moving damaged ones aside.

Why 0700/0600: the journal holds every reading of a building (and, in dead letters, whatever a
client sent); nobody but the service's user needs to read it.  Only directories the gateway creates
get 0700: an existing directory (``/var/lib/pedf`` made by the package, a shared data folder) is the
operator's, and its mode is left alone.  SQLite gives the ``-wal`` and ``-shm`` files the mode of the
database file, so creating the database 0600 covers all three.

Why damaged files are moved, never deleted: they may hold readings no sink has delivered yet, and
``pedf journal recover`` can salvage them.  The ``-wal``/``-shm`` keep their suffixes beside the new
name so that SQLite (and ``recover``) still reads the WAL with its database.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

COMPANIONS = ("-wal", "-shm")


def companion(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def files_of(path: Path) -> list[Path]:
    """The database and those of its companions that exist."""
    return [p for p in (path, *(companion(path, s) for s in COMPANIONS)) if p.exists()]


def on_disk_bytes(path: Path) -> int:
    """Bytes the database, its WAL and its shared-memory file take (0 for those missing)."""
    total = 0
    for p in (path, *(companion(path, s) for s in COMPANIONS)):
        try:
            total += p.stat().st_size
        except FileNotFoundError:
            pass
    return total


def free_bytes(directory: Path) -> int | None:
    """Bytes an unprivileged writer may still use on ``directory``'s file system (None if unknown)."""
    while not directory.exists() and directory != directory.parent:  # not created yet: its file system
        directory = directory.parent
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return int(st.f_bavail * st.f_frsize)


def make_dirs(directory: Path) -> list[Path]:
    """Create ``directory`` and missing parents with mode 0700; returns the parents whose entries
    changed (to fsync).  Existing directories keep their mode."""
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)
    return [d.parent for d in missing]


def create_private(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists; True if it was created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def move_aside(path: Path, what: str) -> list[Path]:
    """Rename the database and its companions to ``<name>.<what>-<UTC time>[-wal|-shm]``; returns the
    new paths (the database's first).  Nothing is deleted."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = path.with_name(f"{path.name}.{what}-{stamp}")
    n = 1
    while any(companion(base, s).exists() for s in ("", *COMPANIONS)):
        n += 1
        base = path.with_name(f"{path.name}.{what}-{stamp}.{n}")
    moved = []
    for suffix in ("", *COMPANIONS):
        src = companion(path, suffix)
        if src.exists():
            dst = companion(base, suffix)
            src.rename(dst)
            moved.append(dst)
    return moved
