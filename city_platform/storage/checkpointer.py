"""WAL checkpoints on a thread of their own, so that commits never wait for the disk.

SQLite's automatic checkpoint runs inside the COMMIT that takes the write-ahead log past 1,000
pages, and with ``synchronous=NORMAL`` that checkpoint fsyncs the database file: the event loop
stalled on the disk.  With 1,000 devices each batch upsert dirties about one history-index page
per reading, and two thirds of the commit time was those checkpoints (measured with
``synchronous=OFF`` as the comparison).  The writing connection therefore sets
``wal_autocheckpoint=0`` and this thread runs PASSIVE checkpoints, which never block writers or
readers (https://www.sqlite.org/c3ref/wal_checkpoint_v2.html).  Durability is unchanged: a
commit is in the log before it returns, as before.

A writer starts the log over only if its transaction begins after a checkpoint of all of it.
This thread repeats its PASSIVE pass until one gets to the end; with a gap between commits the
writer then starts over by itself.  Only when writes leave no gap (a saturated platform) does
the log grow long, and then this thread asks the writer to run one PASSIVE checkpoint itself
right after its next commit (:meth:`after_commit`): a few frames are left, and the writer's next
transaction starts the log over.  That is the only fsync left on the writer's thread, and it is
kept rare because an fsync there can wait behind other files' data on ext4 (stalls of 0.7 s
showed in latency runs while the writer did it for every 32 MB of log).  The pages each PASSIVE
pass copies are flushed right after it by this thread, so the disk never gets hundreds of
megabytes to flush at once.  (Tried first: a RESTART checkpoint from this thread; it blocks
writers while it waits and syncs, and stalls of 0.7-2.3 s showed.)
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

log = logging.getLogger(__name__)

JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the log file is cut back to after a reset
RESTART_FRAMES = 8192  # a log this long (32 MB of 4 KiB pages) is started over ...
CAUGHT_UP_FRAMES = 256  # ... once the checkpoint is this close to its end
INTERVAL = 0.25  # seconds between checkpoints
RUNAWAY_FRAMES = 64 * RESTART_FRAMES  # 2 GB: the writer checkpoints even if it takes a while


class WalCheckpointer:
    """Checkpoints the WAL of ``path`` every ``interval`` seconds until stopped."""

    def __init__(self, path: str, interval: float | None = None) -> None:
        self.path = path
        self.interval = INTERVAL if interval is None else interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._copied = (0, 0)  # (log frames, frames copied) at the last flush
        self.reset_due = False  # set by this thread, acted on by the writer

    def after_commit(self, db: sqlite3.Connection) -> None:
        """Called by the writer after a commit: checkpoints the rest of the log when asked."""
        if self.reset_due:
            self.reset_due = False
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def start(self, writer: sqlite3.Connection) -> None:
        """Take over from the writing connection's automatic checkpoint."""
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        self._thread = threading.Thread(target=self._run, name="sqlite checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        near = False  # a pass got within CAUGHT_UP_FRAMES of the end
        for _ in range(5):  # what was appended meanwhile, until a pass gets to the end
            _, frames, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if done == frames:
                break  # complete (and synced): the writer's next transaction starts over
            near = near or frames - done < CAUGHT_UP_FRAMES
        if done and (frames, done) != self._copied:
            self._copied = (frames, done)
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)  # what PASSIVE copied, flushed while writers go on
            finally:
                os.close(fd)
        # A long log means the writer did not start over after our complete passes: it writes
        # without a gap, so it has to take the last step itself.
        if frames >= RESTART_FRAMES and (done == frames or near or frames > RUNAWAY_FRAMES):
            if frames > RUNAWAY_FRAMES:
                log.warning("WAL of %s at %d frames: the writer checkpoints it", self.path, frames)
            self.reset_due = True

    def _run(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None)
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
