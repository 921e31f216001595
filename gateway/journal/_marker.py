"""A small file beside the journal, ``<journal>.state``: the highest seq known committed, and how
often this journal had to be replaced or was found short.

Why outside the database: the failures it detects take the database with them.  A file truncated to
0 bytes opens as a new, empty database without a word; a lost or cut WAL silently takes its last
commits.  The marker says "this journal had rows up to seq N": an empty file, or a head below N at
the next open, is damage, logged at ERROR and counted instead of passing unnoticed.

Why it may lag but never lead: it is written after the commits it names (every few seconds and at
close), by a rename of a fully written temporary file.  A stale marker only misses a loss; it never
reports one that did not happen.  A missing or unreadable marker means "nothing known".
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Marker:
    head_seq: int = 0
    recoveries: int = 0  # times the journal was found damaged and replaced by a fresh one
    losses: int = 0  # opens that found committed rows (or WAL commits) missing

    def bumped(self, *, recoveries: int = 0, losses: int = 0, head_seq: int | None = None) -> Marker:
        return replace(self, recoveries=self.recoveries + recoveries, losses=self.losses + losses,
                       head_seq=self.head_seq if head_seq is None else head_seq)


def marker_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".state")


def read_marker(journal: Path) -> Marker:
    try:
        doc = json.loads(marker_path(journal).read_text(encoding="utf-8"))
        return Marker(int(doc.get("head_seq", 0)), int(doc.get("recoveries", 0)), int(doc.get("losses", 0)))
    except (OSError, ValueError, TypeError, AttributeError):
        return Marker()


def write_marker(journal: Path, marker: Marker, *, durable: bool = False) -> None:
    """Replace the marker atomically (mode 0600); ``durable`` also fsyncs it (at close)."""
    path = marker_path(journal)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        data = json.dumps(asdict(marker)).encode()
        if os.write(fd, data) != len(data):  # a full disk: keep the old marker rather than half a new one
            raise OSError(f"short write to {tmp}")
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
