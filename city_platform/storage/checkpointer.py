"""WAL checkpoints on a thread of their own, so that commits never wait for the disk.

SQLite's automatic checkpoint runs inside the COMMIT that takes the write-ahead log past 1,000
pages, and with ``synchronous=NORMAL`` that checkpoint fsyncs the database file: the event loop
stalled on the disk.  With 1,000 devices each batch upsert dirties about one history-index page
per reading, and two thirds of the commit time was those checkpoints (measured with
``synchronous=OFF`` as the comparison).  The writing connection therefore sets
``wal_autocheckpoint=0`` and this thread runs PASSIVE checkpoints, which never block writers or
readers (https://www.sqlite.org/c3ref/wal_checkpoint_v2.html).  Durability is unchanged: a
commit is in the log before it returns, as before.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the log file is cut back to after a reset
RESTART_FRAMES = 8192  # a log this long (32 MB of 4 KiB pages) is started over ...
CAUGHT_UP_FRAMES = 256  # ... once the checkpoint is this close to its end
INTERVAL = 0.25  # seconds between checkpoints


class WalCheckpointer:
    """Checkpoints the WAL of ``path`` every ``interval`` seconds until stopped."""

    def __init__(self, path: str, interval: float | None = None) -> None:
        self.path = path
        self.interval = INTERVAL if interval is None else interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def prepare(db: sqlite3.Connection) -> None:
        """Turn off the automatic checkpoint on the writing connection."""
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sqlite checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    @staticmethod
    def _checkpoint(db: sqlite3.Connection) -> None:
        _, frames, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        for _ in range(3):  # what was appended meanwhile, while that is still much
            if frames - done < CAUGHT_UP_FRAMES:
                break
            _, frames, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames >= RESTART_FRAMES and (
            frames - done < CAUGHT_UP_FRAMES or frames > 4 * RESTART_FRAMES
        ):
            # Under steady writes the log never drains by itself: a writer starts it over
            # only after a checkpoint of all of it.  RESTART copies the few frames left
            # (writers wait that long) and lets the next writer start the log over.
            db.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()

    def _run(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA busy_timeout=5000")  # RESTART waits for the writer's transaction
        failing = False
        try:
            while not self._stop.wait(self.interval):
                try:
                    self._checkpoint(db)
                    failing = False
                except sqlite3.Error as exc:  # a full disk: the log grows, commits go on
                    if not failing:
                        log.warning("WAL checkpoint of %s failed: %s", self.path, exc)
                    failing = True
        finally:
            db.close()
