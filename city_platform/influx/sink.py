"""The InfluxDB v2 writer: drains the outbox in batches, backs off while InfluxDB is away.

Ingest never waits on InfluxDB: a storage write only appends to the outbox (outbox.py); this
task sends from it on its own, through influxdb-client's synchronous write API in a worker
thread (the client's HTTP is blocking), one batch at a time.  A failure (connection refused,
timeout, HTTP 4xx/5xx) is logged once when it starts and once when InfluxDB is back, and the
next try waits 0.5 s, doubled per failure up to 30 s.  A batch InfluxDB refuses as malformed
(HTTP 400: a field of a type it holds otherwise) would block the outbox for good: its writes
are sent again one by one, and the one InfluxDB still refuses is logged and dropped, counted in
``rejected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

from city_platform.influx.outbox import Outbox

log = logging.getLogger(__name__)

BATCH = 5000  # points per write request (InfluxDB's guide suggests 5,000)
MIN_BACKOFF = 0.5
MAX_BACKOFF = 30.0


@dataclass(frozen=True, slots=True)
class InfluxConfig:
    """Where the points go (``testbed platform --influx URL --influx-org ...``)."""

    url: str
    org: str
    bucket: str
    token: str
    outbox: str  # the outbox's SQLite file (outbox.outbox_path)
    timeout_ms: int = 10_000


class InfluxSink:
    """The outbox and the task sending it to InfluxDB."""

    def __init__(self, config: InfluxConfig) -> None:
        self.config = config
        self.outbox: Outbox | None = None
        self.sent = 0
        self.rejected = 0
        self.failures = 0
        self.lost = 0
        self._add_failing = False
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: Any = None

    def add(self, lines: list[str]) -> None:
        """Queue points (called right after their storage commit).  An outbox that cannot be
        written (disk full) loses these points for InfluxDB, counted in ``lost`` and logged
        when it starts, but never fails the write: the platform has stored it."""
        if not lines or self.outbox is None:
            return
        try:
            self.outbox.add(lines)
        except sqlite3.Error as exc:
            if not self._add_failing:
                log.error(
                    "InfluxDB outbox %s cannot be written (%s): points lost", self.outbox.path, exc
                )
            self._add_failing = True
            self.lost += len(lines)
            return
        self._add_failing = False
        self._wake.set()

    def status(self) -> dict[str, object]:
        """For /health: the outbox depth and what the writer did."""
        return {
            "url": self.config.url,
            "bucket": self.config.bucket,
            "outbox": self.outbox.depth if self.outbox is not None else 0,
            "sent": self.sent,
            "rejected": self.rejected,
            "lost": self.lost,
            "failures": self.failures,
            "lastError": self.last_error,
        }

    async def start(self) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient  # noqa: PLC0415  # the optional extra

        self.outbox = Outbox(self.config.outbox)
        self._client = InfluxDBClient(
            url=self.config.url,
            token=self.config.token,
            org=self.config.org,
            timeout=self.config.timeout_ms,
            retries=False,  # our back-off retries, without holding the worker thread
        )
        if self.outbox.depth:
            log.info(
                "InfluxDB outbox %s: %d points from before", self.outbox.path, self.outbox.depth
            )
        self._task = asyncio.create_task(self._run(), name="influx-sink")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = None

    def _write(self, lines: list[str]) -> None:
        from influxdb_client.client.write_api import SYNCHRONOUS  # noqa: PLC0415
        from influxdb_client.domain.write_precision import WritePrecision  # noqa: PLC0415

        api = self._client.write_api(write_options=SYNCHRONOUS)
        api.write(
            bucket=self.config.bucket,
            org=self.config.org,
            record="\n".join(lines),
            write_precision=WritePrecision.NS,
        )

    async def _run(self) -> None:
        backoff = MIN_BACKOFF
        # After a refused batch, its writes are sent one by one up to this outbox id, so that
        # only the write holding the bad point is dropped, not its batch neighbours.
        isolate_until = 0
        while True:
            assert self.outbox is not None
            try:
                last_id, lines = self.outbox.take(1 if isolate_until else BATCH)
            except sqlite3.Error as exc:  # a broken outbox file: say so, try again later
                log.error("InfluxDB outbox %s cannot be read: %s", self.outbox.path, exc)
                await asyncio.sleep(MAX_BACKOFF)
                continue
            if last_id >= isolate_until:
                isolating, isolate_until = bool(isolate_until), 0
            else:
                isolating = True
            if not lines:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 5.0)
                continue
            try:
                await asyncio.to_thread(self._write, lines)
            except Exception as exc:  # any failure: keep the points, retry
                if _malformed(exc) and not isolating:
                    isolate_until = last_id  # again, one write at a time
                    continue
                if _malformed(exc):
                    log.error(
                        "InfluxDB refused %d points as malformed, dropped: %s", len(lines), exc
                    )
                    self.rejected += len(lines)
                    self.outbox.done(last_id)
                    continue
                if self.last_error is None:
                    log.warning(
                        "InfluxDB %s unreachable (%s); %d points kept in the outbox, retrying",
                        self.config.url,
                        _brief(exc),
                        self.outbox.depth,
                    )
                self.failures += 1
                self.last_error = _brief(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if self.last_error is not None:
                log.warning(
                    "InfluxDB %s is back; %d points waiting", self.config.url, self.outbox.depth
                )
                self.last_error = None
            backoff = MIN_BACKOFF
            try:
                self.outbox.done(last_id)
            except sqlite3.Error as exc:  # sent but kept: they go again (at least once)
                log.error(
                    "InfluxDB outbox %s: cannot forget sent points: %s", self.outbox.path, exc
                )
                await asyncio.sleep(MAX_BACKOFF)
                continue
            self.sent += len(lines)


def _malformed(exc: Exception) -> bool:
    status = getattr(exc, "status", None)
    return status == 400


def _brief(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    if status is not None:
        return f"HTTP {status}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"
