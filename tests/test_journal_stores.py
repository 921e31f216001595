"""The journal's shared pieces: the one transaction helper, and durable directory entries."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from gateway.errors import JournalError
from gateway.journal import _db
from gateway.journal._db import connect, transaction


def table(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    return db


def test_transaction_commits_or_rolls_back_and_names_the_failure(tmp_path: Path) -> None:
    db = table(tmp_path / "t.db")
    with transaction(db, "first"):
        db.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(JournalError, match=r"^second: UNIQUE constraint failed") as failed, \
            transaction(db, "second"):
        db.execute("INSERT INTO t VALUES (2)")
        db.execute("INSERT INTO t VALUES (1)")
    assert isinstance(failed.value.__cause__, sqlite3.IntegrityError)
    # not SQLite's error: rolled back and passed on unchanged
    with pytest.raises(ZeroDivisionError), transaction(db, "third"):
        db.execute("INSERT INTO t VALUES (3)")
        _ = 1 / 0
    assert not db.in_transaction  # a forgotten ROLLBACK would make every later BEGIN fail
    assert [x for (x,) in db.execute("SELECT x FROM t")] == [1]


def test_a_failed_commit_statement_is_rolled_back(tmp_path: Path) -> None:
    db = table(tmp_path / "t.db")
    db.execute("CREATE TABLE child (x INTEGER REFERENCES t (x) DEFERRABLE INITIALLY DEFERRED)")
    db.execute("PRAGMA foreign_keys=ON")
    # the check is deferred: COMMIT itself fails
    with pytest.raises(JournalError, match="FOREIGN KEY"), transaction(db, "orphan"):
        db.execute("INSERT INTO child VALUES (7)")
    assert not db.in_transaction and db.execute("SELECT count(*) FROM child").fetchone()[0] == 0


def test_opening_makes_the_new_directory_entries_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[tuple[int, int]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            synced.append((st.st_dev, st.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(_db.os, "fsync", fsync)
    path = tmp_path / "new" / "deeper" / "j.db"
    db = connect(path, "FULL", 1 << 20)
    try:
        assert Path(f"{path}-wal").exists()  # created by the schema, named in the directory synced after
    finally:
        db.close()

    def ino(p: Path) -> tuple[int, int]:
        return os.stat(p).st_dev, os.stat(p).st_ino

    assert ino(path.parent) in synced  # the database's and its WAL's names
    assert ino(path.parent.parent) in synced and ino(tmp_path) in synced  # the folders it created


def test_a_journal_that_cannot_be_opened_says_where(tmp_path: Path) -> None:
    (tmp_path / "j.db").write_bytes(b"not a database" * 100)
    with pytest.raises(JournalError, match=r"j\.db"):
        connect(tmp_path / "j.db", "FULL", 1 << 20)
