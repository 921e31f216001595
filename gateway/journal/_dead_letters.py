"""Dead letters: what can never be delivered or decoded is kept with its reason, not dropped.

Two kinds: lines a sink's database rejected for good (4xx: the rest of the batch is delivered, the
cursor moves on, the line waits here for an operator), and MQTT payloads no decoder could read.
Both are counted and shown by ``pedf deadletter``; nothing is lost silently (DESIGN.md, Guarantees).
Every function here runs on the journal thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.journal._db import transaction


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    sink: str
    at_ns: int
    line: str
    reason: str


@dataclass(frozen=True, slots=True)
class PayloadDeadLetter:
    """A received message no decoder could read (MQTT ingest), kept with its reason."""

    id: int
    source: str
    at_ns: int
    topic: str
    payload: bytes
    reason: str


def store_line(db: sqlite3.Connection, sink: str, line: str, reason: str) -> None:
    with transaction(db, f"cannot store a dead letter of {sink}"):
        db.execute("INSERT INTO dead_letters (sink, at_ns, line, reason) VALUES (?,?,?,?)",
                   (sink, time.time_ns(), line, reason))


def select_lines(db: sqlite3.Connection, sink: str | None, limit: int) -> list[DeadLetter]:
    sql = "SELECT id, sink, at_ns, line, reason FROM dead_letters"
    args: tuple[Any, ...] = (limit,)
    if sink is not None:
        sql, args = sql + " WHERE sink = ?", (sink, limit)
    return [DeadLetter(*r) for r in db.execute(sql + " ORDER BY id LIMIT ?", args).fetchall()]


def store_payloads(db: sqlite3.Connection, source: str, items: Sequence[tuple[int, str, bytes, str]]) -> None:
    """(at_ns, topic, payload, reason) each, in one transaction."""
    with transaction(db, f"cannot store {len(items)} dead-lettered payloads of {source}"):
        db.executemany("INSERT INTO payload_dead_letters (source, at_ns, topic, payload, reason) VALUES (?,?,?,?,?)",
                       [(source, *item) for item in items])


def select_payloads(db: sqlite3.Connection, limit: int) -> list[PayloadDeadLetter]:
    sql = "SELECT id, source, at_ns, topic, payload, reason FROM payload_dead_letters ORDER BY id LIMIT ?"
    return [PayloadDeadLetter(*r) for r in db.execute(sql, (limit,)).fetchall()]
