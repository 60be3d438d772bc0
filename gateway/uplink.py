"""The uplink: normalized readings -> durable queue -> batch upserts to the platform.

Readings are committed to the :class:`DurableQueue` in small group commits and leave it only
when the platform has answered 201/204 (or 207 for the entities it accepted).  While the
platform is unreachable the senders retry with jittered exponential back-off; nothing is
dropped.

Several batches are in flight at once, one per lane (``lanes``, default 2); a device's items
always go to the same lane (a hash of its id) and a lane sends its items in the order they
were accepted, so each device's updates reach the platform in order.  With one batch in flight
gateway and platform took turns: the platform wrote a batch while the gateway waited for its
answer, then the gateway sent the next (README, "What limits us").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from city_platform.models import UPSERT_PATH
from gateway.metrics import Metrics
from gateway.normalizer import Normalized
from gateway.queue import DurableQueue, Pending, lane_key
from gateway.tasks import Background, Parts

log = logging.getLogger(__name__)

UPSERT = UPSERT_PATH  # CIM 009 5.6.8, the platform's route (the contract's)
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
# 401/403: the platform does not take our token (RFC 6750 3.1: missing, expired or revoked, or
# without the write scope or the tenant).  Not the readings' fault: they stay queued until an
# operator fixes the token, rather than being dropped as a permanent refusal would be.
UNAUTHORIZED = frozenset({401, 403})
_JSON = {"Content-Type": "application/json"}


def platform_headers(tenant: str, token: str | None) -> dict[str, str]:
    """The headers of every request of the gateway to the platform: its tenant and its bearer
    token (RFC 6750 2.1), which the platform checks for the write scope and the tenant."""
    headers = {"NGSILD-Tenant": tenant} if tenant else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


class Uplink(Parts):
    """Async context manager; ``submit`` never blocks, ``accept`` waits for durability."""

    def __init__(
        self,
        *,
        platform_url: str,
        queue_path: str | Path,
        tenant: str = "",
        batch_entities: int = 2000,
        lanes: int = 2,
        flush_interval: float = 0.01,
        metrics: Metrics | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_backoff: float = 5.0,
        token: str | None = None,
    ) -> None:
        self.platform_url = platform_url.rstrip("/")
        self.queue_path = queue_path
        self.tenant = tenant
        self.batch_entities = batch_entities
        self.lanes = lanes
        self.flush_interval = flush_interval
        self.metrics = metrics or Metrics()
        self.max_backoff = max_backoff
        self.token = token
        self._transport = transport
        self._buffer: list[tuple[float, int, list[dict[str, Any]], int]] = []
        self._committed: asyncio.Future[None] | None = None
        self._has_buffer = asyncio.Event()
        self._has_queue = [asyncio.Event() for _ in range(lanes)]
        self._queue: DurableQueue | None = None
        self._client: httpx.AsyncClient | None = None
        self._stack = contextlib.AsyncExitStack()
        self.platform_up = False
        self.unauthorized = False  # the platform's last answer was 401/403

    async def __aenter__(self) -> Uplink:
        async with contextlib.AsyncExitStack() as stack:
            queue = self._queue = DurableQueue(self.queue_path, lanes=self.lanes)
            stack.callback(queue.close)
            if len(queue):
                log.info("uplink: %d queued items from an earlier run", len(queue))
                self._wake_senders()
            headers = platform_headers(self.tenant, self.token)
            self._client = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=self.platform_url,
                    headers=headers,
                    timeout=httpx.Timeout(10.0, connect=3.0),
                    transport=self._transport,
                )
            )
            stack.callback(self.commit)  # what was accepted in memory is on disk before we go
            tasks = await stack.enter_async_context(Background())
            tasks.start(self._flusher(), name="uplink flusher")
            for lane in range(self.lanes):
                tasks.start(self._sender(lane), name=f"uplink sender {lane}")
            self._stack = stack.pop_all()
        return self

    @property
    def platform_state(self) -> str:
        """``up``, ``unauthorized`` (401/403 to our token) or ``unreachable`` (/health)."""
        if self.platform_up:
            return "up"
        return "unauthorized" if self.unauthorized else "unreachable"

    @property
    def queued(self) -> int:
        """Items not yet confirmed by the platform (on disk and in the commit buffer)."""
        return (len(self._queue) if self._queue else 0) + len(self._buffer)

    def submit(self, item: Normalized) -> None:
        """Hand over a normalized payload; it is on disk within ``flush_interval``."""
        key = lane_key(item.device_id)
        self._buffer.append((item.observed_at, item.readings, item.entities, key))
        if not self._has_buffer.is_set():
            self._has_buffer.set()

    async def accept(self, item: Normalized) -> None:
        """Hand over and wait until it is committed to the durable queue."""
        self.submit(item)
        if self._committed is None:
            self._committed = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._committed)

    def commit(self) -> None:
        """Commit what was submitted to the durable queue now (MQTT acknowledges after it)."""
        if not self._buffer or self._queue is None:
            return
        batch, self._buffer = self._buffer, []
        lanes = self._queue.put(batch)
        self.metrics.set("r197_gateway_queued", self.queued)
        self._wake_senders(lanes)
        done, self._committed = self._committed, None
        if done is not None and not done.done():
            done.set_result(None)

    def _wake_senders(self, lanes: Iterable[int] | None = None) -> None:
        """Wake the senders of ``lanes`` (all by default) to look at the queue."""
        for lane in range(self.lanes) if lanes is None else lanes:
            self._has_queue[lane].set()

    async def _flusher(self) -> None:
        while True:
            await self._has_buffer.wait()
            await asyncio.sleep(self.flush_interval)  # group commit
            self._has_buffer.clear()
            self.commit()

    async def _sender(self, lane: int) -> None:
        backoff = 0.2
        while True:
            await self._has_queue[lane].wait()
            assert self._queue is not None
            items = self._queue.peek(self.batch_entities, lane)
            if not items:
                self._has_queue[lane].clear()
                continue
            status, detail = await self._post(items)
            if status in (201, 204, 207):
                self._confirmed(items, status, detail)
                backoff = 0.2
            elif status in UNAUTHORIZED:
                if not self.unauthorized:  # once, until the platform takes the token again
                    log.warning(
                        "uplink: platform refused our token with %s (%s); queueing",
                        status,
                        detail[:300],
                    )
                self.platform_up, self.unauthorized = False, True
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311
                backoff = min(backoff * 2, self.max_backoff)
            elif status is None or status in RETRYABLE:
                if self.platform_up:
                    log.warning("uplink: platform unavailable (%s); queueing", detail)
                self.platform_up = False
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311
                backoff = min(backoff * 2, self.max_backoff)
            else:
                # A permanent refusal of the whole batch: retrying cannot help.
                log.error("uplink: platform refused a batch with %s: %s", status, detail[:300])
                self._ack(items)
                readings = sum(p.readings for p in items)
                self.metrics.inc("r197_gateway_rejected_total", readings, reason="platform-refused")

    def _ack(self, items: list[Pending]) -> None:
        assert self._queue is not None
        serial = self._queue.serial
        self._queue.ack(items)
        if serial and not self._queue.serial:  # the other lanes may send again
            self._wake_senders()

    async def _post(self, items: list[Pending]) -> tuple[int | None, str]:
        """One batch upsert; the queued JSON arrays are spliced into one, not re-encoded."""
        assert self._client is not None
        body = b"[" + b",".join(p.docs[1:-1] for p in items if len(p.docs) > 2) + b"]"
        if body == b"[]":
            return 204, ""  # nothing to write
        try:
            answer = await self._client.post(
                UPSERT, params={"options": "update"}, content=body, headers=_JSON
            )
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        return answer.status_code, answer.text if answer.status_code >= 300 else ""

    def _confirmed(self, items: list[Pending], status: int, body: str) -> None:
        assert self._queue is not None
        if not self.platform_up:
            log.info("uplink: platform reachable at %s", self.platform_url)
        self.platform_up, self.unauthorized = True, False
        self._ack(items)
        now = time.time()
        readings = 0
        for p in items:
            readings += p.readings
            for observed in p.observed:
                self.metrics.observe_latency(max(now - observed, 0.0))
        self.metrics.inc("r197_gateway_forwarded_total", readings)
        # When the platform last confirmed a batch: a stalled uplink shows as an old time, and
        # the benchmarks end their runs at it rather than at their next poll.
        self.metrics.set("r197_gateway_last_forward_timestamp_seconds", now)
        if status == 207:
            log.warning("uplink: platform refused some entities: %s", body[:300])
            self.metrics.inc("r197_gateway_rejected_total", 1, reason="platform-partial")
        self.metrics.set("r197_gateway_queued", self.queued)

    async def drain(self, within: float = 30.0) -> bool:
        """Wait until everything accepted so far is confirmed by the platform."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not self._buffer and self._queue is not None and len(self._queue) == 0:
                return True
            await asyncio.sleep(0.02)
        return False
