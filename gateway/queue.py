"""A durable on-disk queue of entity updates waiting for the platform (SQLite, WAL).

A reading counts as accepted once it is committed here; it leaves only when the platform has
confirmed it (``ack``).  Items are grouped into lanes by a hash of their device id (``lanes``,
the uplink's batches in flight): items of different lanes may be in flight at the same time,
items of one lane leave in order, so one device's updates are never reordered.  Re-sending after
a crash is harmless: an upsert of the same ``observedAt`` value is idempotent on the entity, and
history keeps what arrived.

One :meth:`put` (a group commit: every MQTT turn, or every 10 ms) writes one row per lane
holding all that lane's items, not one row per item: per-row inserts, selects and deletes were
a fifth of the gateway's time.  Rows from earlier versions hold one item each, keyed by their
device's lane key (``lanes`` 0); rows written with another lane count are sent first and one
after the other (see :attr:`DurableQueue.serial`), since their lanes split devices differently.
"""

from __future__ import annotations

import functools
import sqlite3
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gateway.checkpoint import QueueCheckpointer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    observed REAL NOT NULL,
    readings INTEGER NOT NULL,
    docs BLOB NOT NULL,
    entities INTEGER NOT NULL DEFAULT -1,
    lane INTEGER NOT NULL DEFAULT 0,
    lanes INTEGER NOT NULL DEFAULT 0,
    items INTEGER NOT NULL DEFAULT 1,
    times BLOB
);
"""
# Columns added since the first queue files, with what the older rows mean.
_ADDED = {
    "entities": "INTEGER NOT NULL DEFAULT -1",  # -1: count the documents when read
    "lane": "INTEGER NOT NULL DEFAULT 0",
    "lanes": "INTEGER NOT NULL DEFAULT 0",  # 0: one item, ``lane`` holds its device's lane key
    "items": "INTEGER NOT NULL DEFAULT 1",
    "times": "BLOB",  # each item's time, little-endian doubles; NULL: ``observed`` alone
}
Item = tuple[float, int, list[dict[str, Any]], int]  # observed time, readings, docs, lane key
_PEEK = "SELECT seq, observed, readings, entities, docs, times FROM pending"


@functools.lru_cache(maxsize=65536)
def lane_key(device_id: str) -> int:
    """A device's lane key, stable across restarts (the lane is this modulo the lane count).

    Remembered: it is asked for every reading, and a fleet is the same devices over and over."""
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
    """One queued row: the entity documents of one lane's items of one commit, as the JSON
    array to send."""

    seq: int
    observed: tuple[float, ...]  # each item's newest reading time (seconds since the epoch)
    readings: int
    entities: int  # how many documents ``docs`` holds
    docs: bytes  # a JSON array, kept serialized: it goes into the batch body as it is

    @property
    def items(self) -> int:
        return len(self.observed)

    def documents(self) -> list[dict[str, Any]]:
        loaded: list[dict[str, Any]] = orjson.loads(self.docs)
        return loaded


class DurableQueue:
    """Batches of entity documents, first in first out per lane, surviving restarts."""

    def __init__(self, path: str | Path, lanes: int = 1) -> None:
        self.path = str(path)
        self.lanes = lanes
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a crash of this process (not a power cut).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._checkpointer: QueueCheckpointer | None = None
        if self.path != ":memory:":
            self._checkpointer = QueueCheckpointer(self.path)  # off the event loop
            self._checkpointer.start(self._db)
        self._db.executescript(_SCHEMA)
        self._upgrade()
        self._count = int(
            self._db.execute("SELECT coalesce(sum(items), 0) FROM pending").fetchone()[0]
        )
        # Rows up to this seq are sent in order by lane 0 alone: some were written with
        # another lane count, and a device's items must not overtake each other.
        until, left = self._db.execute(
            "SELECT coalesce(max(seq), 0), count(*) FROM pending WHERE seq <= "
            "(SELECT coalesce(max(seq), 0) FROM pending WHERE lanes NOT IN (0, ?))",
            (lanes,),
        ).fetchone()
        self._serial_until: int = until
        self._serial_left: int = left

    def _upgrade(self) -> None:
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(pending)")}
        with self._db:
            self._db.execute("BEGIN")
            for name, kind in _ADDED.items():
                if name not in columns:
                    self._db.execute(f"ALTER TABLE pending ADD COLUMN {name} {kind}")
            if "lane" not in columns:
                # Items from before lanes go to their device's lane: in one lane for all, a
                # device whose new items fall in another lane would overtake its own backlog.
                keys = [
                    (_lane_key_of(d), s)
                    for s, d in self._db.execute("SELECT seq, docs FROM pending")
                ]
                self._db.executemany("UPDATE pending SET lane=? WHERE seq=?", keys)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self._db.close()

    def _committed(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.after_commit(self._db)

    def __len__(self) -> int:
        """Items waiting (not rows)."""
        return self._count

    @property
    def serial(self) -> bool:
        """Rows written with another lane count are still waiting: only lane 0 sends."""
        return self._serial_left > 0

    def put(self, items: Sequence[Item]) -> set[int]:
        """Append items in one transaction, one row per lane; the lanes written to."""
        if not items:
            return set()
        lanes = self.lanes
        by_lane: dict[int, list[Item]] = {}
        for item in items:
            by_lane.setdefault(item[3] % lanes, []).append(item)
        rows = []
        for lane, group in by_lane.items():
            times = [item[0] for item in group]
            docs = [doc for item in group for doc in item[2]]
            readings = sum(item[1] for item in group)
            body, packed = orjson.dumps(docs), struct.pack(f"<{len(times)}d", *times)
            rows.append((max(times), readings, body, len(docs), lane, lanes, len(times), packed))
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO pending (observed, readings, docs, entities, lane, lanes, items, "
                "times) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        self._count += len(items)
        self._committed()
        return set(by_lane)

    def peek(self, entities: int, lane: int = 0) -> list[Pending]:
        """The oldest rows of one lane, oldest first, up to ``entities`` documents (at least one
        row, however many it holds)."""
        if self._serial_left:
            if lane != 0:
                return []
            rows = self._db.execute(f"{_PEEK} WHERE seq <= ? ORDER BY seq", (self._serial_until,))
        else:
            rows = self._db.execute(
                f"{_PEEK} WHERE (lanes = ? AND lane = ?) OR (lanes = 0 AND lane % ? = ?) "
                "ORDER BY seq",
                (self.lanes, lane, self.lanes, lane),
            )
        out: list[Pending] = []
        count = 0
        for seq, t, n, e, docs, times in rows:
            e = e if e >= 0 else len(orjson.loads(docs))  # noqa: PLW2901  # an old row
            if out and count + e > entities:
                break
            observed = (t,) if times is None else struct.unpack(f"<{len(times) // 8}d", times)
            out.append(Pending(seq, observed, n, e, bytes(docs)))
            count += e
        rows.close()
        return out

    def ack(self, done: Sequence[Pending]) -> None:
        """Remove confirmed rows."""
        if not done:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM pending WHERE seq=?", [(p.seq,) for p in done])
        self._count -= sum(p.items for p in done)
        self._committed()
        if self._serial_left:
            self._serial_left -= sum(1 for p in done if p.seq <= self._serial_until)
