"""WAL checkpoints of the durable queue on a thread of their own.

SQLite's automatic checkpoint runs inside the COMMIT that takes the write-ahead log past 1,000
pages, and with ``synchronous=NORMAL`` it fsyncs the file there.  The gateway commits the queue
at every MQTT turn, so under load its event loop stopped for the disk every fraction of a second
while readings and platform answers waited (with 1,000 devices: 37,500 readings/s with those
checkpoints, 40,500 with none).  The queue's connection therefore sets
``wal_autocheckpoint=0`` and this thread runs PASSIVE checkpoints, which never block the writer
(https://www.sqlite.org/c3ref/wal_checkpoint_v2.html).  Durability is unchanged: a commit is in
the log before it returns, as before.

The log starts over at the first write after a checkpoint got to its end, but only if that write
began its transaction once the checkpoint was done.  When commits come faster than a pass takes
(its fsync: a slow disk, or commits every 2 ms), each pass ends with newer frames already behind
it and the log never starts over, however often the thread runs: measured here, 2,900 frames for
300 commits with passes every 10 ms, against 12 with commits 30 ms apart.  So once a pass leaves
a log of more than ``RESTART_AT`` frames, the thread runs one RESTART checkpoint: it waits for
the writer's transaction to end, copies what the pass before left (little), and makes the next
write start the log over; the writer waits for it at most that long, once per ``RESTART_AT``
frames of log.  Should even that never get its chance, the queue runs one PASSIVE checkpoint
itself after a commit once the log is past ``LONG_LOG`` frames (:attr:`behind`).
(The platform has a checkpointer of its own, city_platform/storage/checkpointer.py: DESIGN 2
keeps the packages apart, and its writes are large batches with other needs.)
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

INTERVAL = 0.2  # seconds between checkpoints
LONG_LOG = 16_384  # frames (64 MB of 4 KiB pages): past it the writer checkpoints
RESTART_AT = 2_000  # frames (8 MB) left after a complete pass: then the thread restarts the log
RESTART_WAIT_MS = 200  # how long a RESTART checkpoint waits for the writer before giving up
JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024  # bytes the log file is cut back to after it starts over


class QueueCheckpointer:
    """Checkpoints the WAL of the SQLite file at ``path`` every ``interval`` seconds."""

    def __init__(self, path: str, interval: float | None = None) -> None:
        self.path = path
        self.interval = INTERVAL if interval is None else interval
        self.behind = False  # set by this thread, acted on (and cleared) by the writer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, writer: sqlite3.Connection) -> None:
        """Take over from the writing connection's automatic checkpoint."""
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        self._thread = threading.Thread(target=self._run, name="queue checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def after_commit(self, writer: sqlite3.Connection) -> None:
        if self.behind:
            self.behind = False
            writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _run(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
        failing = False
        try:
            while not self._stop.wait(self.interval):
                try:
                    _, frames, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.behind = frames > LONG_LOG and done < frames
                    if frames > RESTART_AT:
                        # Busy (the writer kept its transaction): tried again next pass.
                        db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                    failing = False
                except sqlite3.Error as exc:  # a full disk: the log grows, commits go on
                    if not failing:
                        log.warning("queue WAL checkpoint failed: %s", exc)
                    failing = True
        finally:
            db.close()
