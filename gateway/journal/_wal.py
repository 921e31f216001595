"""Reading a ``-wal`` file the way SQLite's recovery does, to see what it did *not* replay.

Why: at open SQLite replays the WAL's frames up to the last commit frame whose checksum chain is
intact and silently ignores the rest; one garbled frame in the middle therefore drops every later
commit without a word (SQLite file format, "The Write-Ahead Log", https://sqlite.org/fileformat2.html
§4).  Frames of the current WAL generation carry the header's two salts; a commit frame carrying
those salts *after* the last valid commit was written and acknowledged, and is lost.  Frames of an
older generation (after a checkpoint the WAL is rewritten from its start with new salts) do not count.

Pure Python on purpose (no write, no SQLite connection): it runs before the journal is opened and
in ``pedf journal check``.  A WAL is small after a clean run (SQLite deletes it on close) and a few
MB after a crash; checksumming reads it once, ~0.1 s per MB here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

_MAGIC = (0x377F0682, 0x377F0683)
_HEADER = 32
_FRAME_HEADER = 24
_MASK = 0xFFFFFFFF
SCAN_LIMIT_BYTES = 64 << 20  # larger WALs (a reader held checkpoints back for long) are not checksummed


@dataclass(frozen=True, slots=True)
class WalScan:
    size: int  # bytes of the -wal file (0: none)
    header_valid: bool
    frames: int  # whole frames in the file
    valid_frames: int  # frames SQLite replays (up to and including the last valid commit frame)
    commits_replayed: int
    commits_lost: int  # commit frames of this WAL generation beyond what is replayed
    scanned: bool = True  # False when the file was too large to checksum

    @property
    def lost(self) -> bool:
        """Commits after a bad frame: more than one means acknowledged commits were dropped.  One is
        the WAL's last transaction, which may be a commit cut off before it returned (never
        acknowledged) as well as a damaged one: :attr:`torn_tail`."""
        return self.commits_lost > 1

    @property
    def torn_tail(self) -> bool:
        return self.commits_lost == 1


def _checksum(data: bytes, big_endian: bool, s1: int, s2: int) -> tuple[int, int]:
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    it = iter(words)
    for a in it:
        s1 = (s1 + a + s2) & _MASK
        s2 = (s2 + next(it) + s1) & _MASK
    return s1, s2


def scan_wal(db_path: Path) -> WalScan:
    """What SQLite would replay from ``db_path``'s WAL, and how many commits it would leave behind."""
    wal = db_path.with_name(db_path.name + "-wal")
    try:
        size = wal.stat().st_size
    except FileNotFoundError:
        return WalScan(0, False, 0, 0, 0, 0)
    if size < _HEADER:
        return WalScan(size, False, 0, 0, 0, 0)
    with wal.open("rb") as f:
        header = f.read(_HEADER)
        magic, _version, page_size, _ckpt, salt1, salt2, c1, c2 = struct.unpack(">8I", header)
        frame_size = _FRAME_HEADER + page_size if page_size else 0
        big = bool(magic & 1)
        header_valid = (magic in _MAGIC and page_size >= 512 and page_size & (page_size - 1) == 0
                        and _checksum(header[:24], big, 0, 0) == (c1, c2))
        if not header_valid:
            return _scan_without_header(f, size)
        frames = (size - _HEADER) // frame_size
        if size > SCAN_LIMIT_BYTES:
            return WalScan(size, True, frames, 0, 0, 0, scanned=False)
        s1, s2 = c1, c2
        chain_ok, valid, replayed, lost = True, 0, 0, 0
        for i in range(frames):
            frame = f.read(frame_size)
            _page, commit_size, fs1, fs2, fc1, fc2 = struct.unpack(">6I", frame[:_FRAME_HEADER])
            ours = (fs1, fs2) == (salt1, salt2)
            if chain_ok and ours:
                s1, s2 = _checksum(frame[:8], big, s1, s2)
                s1, s2 = _checksum(frame[_FRAME_HEADER:], big, s1, s2)
                chain_ok = (s1, s2) == (fc1, fc2)
            else:
                chain_ok = False
            if chain_ok and commit_size:
                valid, replayed = i + 1, replayed + 1
            elif not chain_ok and ours and commit_size:
                lost += 1
    return WalScan(size, True, frames, valid, replayed, lost)


def _scan_without_header(f: object, size: int) -> WalScan:
    """A garbled header makes SQLite ignore the whole WAL: count the commit frames it held, taking the
    page size from the common sizes and the salts from the first frame."""
    for page_size in (4096, 8192, 16384, 32768, 65536, 1024, 2048, 512):
        frame_size = _FRAME_HEADER + page_size
        frames = (size - _HEADER) // frame_size
        if frames == 0:
            continue
        f.seek(_HEADER)  # type: ignore[attr-defined]
        headers = []
        for _ in range(frames):
            frame = f.read(frame_size)  # type: ignore[attr-defined]
            headers.append(struct.unpack(">6I", frame[:_FRAME_HEADER]))
        salts = headers[0][2:4]
        if all(h[2:4] == salts for h in headers[:2]) and (size - _HEADER) % frame_size == 0:
            lost = sum(1 for h in headers if h[2:4] == salts and h[1])
            return WalScan(size, False, frames, 0, 0, lost)
    return WalScan(size, False, 0, 0, 0, 0)
