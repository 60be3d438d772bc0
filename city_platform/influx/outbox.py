"""The durable outbox: line-protocol points waiting for InfluxDB, in a SQLite file of their own.

Backend-neutral: it sits above :class:`~city_platform.storage.base.Storage` (any backend) and is
written right after the storage commit, on the event loop, one short transaction per write
(WAL, synchronous=NORMAL: it survives a crash of the platform process).  A point leaves the
outbox only after InfluxDB acknowledged the batch holding it (HTTP 204), so an outage loses
nothing; a crash between the acknowledgement and the delete sends that batch again (at least
once: InfluxDB keeps one point per series and timestamp, so a repeat overwrites itself).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

# One row per storage write: its points joined by newlines, and how many there are.  A row per
# point cost the batch upsert a fifth of its throughput in SQLite inserts; a row per write is
# one insert per batch.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS outbox "
    "(id INTEGER PRIMARY KEY, points INTEGER NOT NULL, lines TEXT NOT NULL)"
)


def outbox_path(db: str, data_dir: Path) -> str:
    """Where the outbox of platform database ``db`` lives: beside a SQLite file, in memory
    beside ``:memory:`` (not durable: a test's platform), else (a database URL) in
    ``data_dir``."""
    if db == ":memory:":
        return ":memory:"
    if "://" in db:
        return str(data_dir / "influx-outbox.db")
    return db + ".influx-outbox"


class Outbox:
    """Points by arrival order; :meth:`take` the oldest, :meth:`done` once they are sent."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(_SCHEMA)
        (self._depth,) = self._db.execute("SELECT coalesce(sum(points), 0) FROM outbox").fetchone()

    @property
    def depth(self) -> int:
        """Points waiting (kept in step with the table, no count(*) per /health)."""
        return int(self._depth)

    def add(self, lines: list[str]) -> None:
        if not lines:
            return
        self._db.execute(  # one statement: its own transaction, committed when it returns
            "INSERT INTO outbox (points, lines) VALUES (?, ?)", (len(lines), "\n".join(lines))
        )
        self._depth += len(lines)

    def take(self, limit: int) -> tuple[int, list[str]]:
        """The oldest points, about ``limit`` of them (whole writes; at least one write), and
        the id to pass to :meth:`done` (0 when there are none)."""
        last = 0
        out: list[str] = []
        for row_id, text in self._db.execute("SELECT id, lines FROM outbox ORDER BY id"):
            if out and len(out) >= limit:
                break
            out += text.split("\n")
            last = row_id
        return last, out

    def done(self, last_id: int) -> None:
        """Forget every point up to ``last_id`` (they were acknowledged)."""
        (gone,) = self._db.execute(
            "SELECT coalesce(sum(points), 0) FROM outbox WHERE id <= ?", (last_id,)
        ).fetchone()
        self._db.execute("DELETE FROM outbox WHERE id <= ?", (last_id,))
        self._depth -= int(gone)

    def close(self) -> None:
        self._db.close()
