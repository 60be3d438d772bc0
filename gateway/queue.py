"""A durable on-disk queue of entity updates waiting for the platform (SQLite, WAL).

A reading counts as accepted once it is committed here; it leaves only when the platform has
confirmed it (``ack``).  Each item carries a lane key (a hash of its device id): items of
different lanes may be in flight at the same time, items of one lane leave in order, so one
device's updates are never reordered.  Re-sending after a crash is harmless: an upsert of the same
``observedAt`` value is idempotent on the entity, and history keeps what arrived.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    observed REAL NOT NULL,
    readings INTEGER NOT NULL,
    docs BLOB NOT NULL,
    entities INTEGER NOT NULL DEFAULT -1,
    lane INTEGER NOT NULL DEFAULT 0
);
"""


def lane_key(device_id: str) -> int:
    """A device's lane key, stable across restarts (the lane is this modulo the lane count)."""
    return zlib.crc32(device_id.encode())


def _lane_key_of(docs: bytes) -> int:
    """The lane key of an item queued before lanes existed: the device is the last part of its
    entity ids (``urn:ngsi-ld:<type>:<device id>``), the id the gateway's normalizer gives."""
    try:
        loaded = orjson.loads(docs)
    except orjson.JSONDecodeError:
        return 0  # sent as it is, in lane 0, and refused by the platform with a clear error
    if not isinstance(loaded, list) or not loaded or not isinstance(loaded[0], dict):
        return 0
    return lane_key(str(loaded[0].get("id", "")).rsplit(":", 1)[-1])


@dataclass(frozen=True, slots=True)
class Pending:
    """One queued item: the entity documents of one payload, as the JSON array to send."""

    seq: int
    observed: float  # the newest reading's time (seconds since the epoch)
    readings: int
    entities: int  # how many documents ``docs`` holds
    docs: bytes  # a JSON array, kept serialized: it goes into the batch body as it is

    def documents(self) -> list[dict[str, Any]]:
        loaded: list[dict[str, Any]] = orjson.loads(self.docs)
        return loaded


class DurableQueue:
    """Batches of entity documents, first in first out, surviving restarts."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a crash of this process (not a power cut).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(pending)")}
        if "entities" not in columns:  # a queue file written before the column existed
            self._db.execute("ALTER TABLE pending ADD COLUMN entities INTEGER NOT NULL DEFAULT -1")
        if "lane" not in columns:
            # Items from before lanes go to their device's lane: in one lane for all, a device
            # whose new items fall in another lane would overtake its own backlog once.
            with self._db:
                self._db.execute("BEGIN")
                self._db.execute("ALTER TABLE pending ADD COLUMN lane INTEGER NOT NULL DEFAULT 0")
                keys = [
                    (_lane_key_of(d), s)
                    for s, d in self._db.execute("SELECT seq, docs FROM pending")
                ]
                self._db.executemany("UPDATE pending SET lane=? WHERE seq=?", keys)
        self._count = int(self._db.execute("SELECT count(*) FROM pending").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        return self._count

    def put(self, batches: Sequence[tuple[float, int, list[dict[str, Any]], int]]) -> None:
        """Append (observed time, readings, entity docs, lane key) items in one transaction."""
        if not batches:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO pending (observed, readings, docs, entities, lane) "
                "VALUES (?, ?, ?, ?, ?)",
                [(t, n, orjson.dumps(docs), len(docs), key) for t, n, docs, key in batches],
            )
        self._count += len(batches)

    def peek(self, limit: int, lane: int = 0, lanes: int = 1) -> list[Pending]:
        """The oldest items of one lane (of ``lanes``), oldest first."""
        rows = self._db.execute(
            "SELECT seq, observed, readings, entities, docs FROM pending "
            "WHERE lane % ? = ? ORDER BY seq LIMIT ?",
            (lanes, lane, limit),
        )
        return [
            Pending(seq, t, n, e if e >= 0 else len(orjson.loads(docs)), bytes(docs))
            for seq, t, n, e, docs in rows
        ]

    def ack(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        with self._db:
            self._db.execute("BEGIN")
            done = self._db.executemany("DELETE FROM pending WHERE seq=?", [(s,) for s in seqs])
        self._count -= done.rowcount
