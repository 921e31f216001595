"""The series catalogue: each series key (measurement, tags, field names and kinds) stored once and
referred to by a small integer id in every row, so a row carries only numbers.

The whole catalogue is held in memory (a site has hundreds of series, not millions): the encoder and
the readers look keys up per row and must not touch the disk to do it.
"""

from __future__ import annotations

import json
import sqlite3

from gateway.journal._db import transaction
from gateway.series import SeriesKey


class SeriesCatalog:
    def __init__(self) -> None:
        self.keys: dict[int, SeriesKey] = {}
        self.ids: dict[SeriesKey, int] = {}

    def load(self, db: sqlite3.Connection) -> None:
        """Read the stored catalogue; runs on the journal thread."""
        for sid, meas, tags, fields, kinds in db.execute("SELECT * FROM series"):
            key = SeriesKey(meas, tuple(tuple(t) for t in json.loads(tags)), tuple(json.loads(fields)),
                            tuple(json.loads(kinds)))
            self.keys[sid], self.ids[key] = key, sid

    def insert(self, db: sqlite3.Connection, key: SeriesKey) -> int:
        """Store ``key`` if new and return its id; runs on the journal thread."""
        cols = (key.measurement, json.dumps(key.tags), json.dumps(key.fields), json.dumps(key.kinds))
        with transaction(db, f"cannot store series {key.measurement}"):
            db.execute("INSERT OR IGNORE INTO series (measurement, tags, fields, kinds) VALUES (?,?,?,?)", cols)
            row = db.execute("SELECT id FROM series WHERE measurement=? AND tags=? AND fields=? AND kinds=?",
                             cols).fetchone()
        return int(row[0])

    def remember(self, sid: int, key: SeriesKey) -> None:
        """Called on the event loop once :meth:`insert` returned: readers see only stored keys."""
        self.keys[sid], self.ids[key] = key, sid
