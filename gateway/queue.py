"""A durable on-disk queue of entity updates waiting for the platform (SQLite, WAL).

A reading counts as accepted once it is committed here; it leaves only when the platform has
confirmed it (``ack``).  Re-sending after a crash is harmless: an upsert of the same
``observedAt`` value is idempotent on the entity, and history keeps what arrived.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    observed REAL NOT NULL,
    readings INTEGER NOT NULL,
    docs BLOB NOT NULL
);
"""


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
        self._count = int(self._db.execute("SELECT count(*) FROM pending").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        return self._count

    def put(self, batches: Sequence[tuple[float, int, list[dict[str, Any]]]]) -> None:
        """Append (observed time, readings, entity docs) items in one transaction."""
        if not batches:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO pending (observed, readings, docs) VALUES (?, ?, ?)",
                [(t, n, orjson.dumps(docs)) for t, n, docs in batches],
            )
        self._count += len(batches)

    def peek(self, limit: int) -> list[tuple[int, float, int, list[dict[str, Any]]]]:
        """The oldest items: (seq, observed time, readings, entity docs)."""
        rows = self._db.execute(
            "SELECT seq, observed, readings, docs FROM pending ORDER BY seq LIMIT ?", (limit,)
        )
        return [(seq, t, n, orjson.loads(docs)) for seq, t, n, docs in rows]

    def ack(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM pending WHERE seq=?", [(s,) for s in seqs])
        self._count = int(self._db.execute("SELECT count(*) FROM pending").fetchone()[0])
