"""Fan-out of the platform's notifications to the browsers (Server-Sent Events, WHATWG HTML
9.2), and the one NGSI-LD subscription that feeds it (CIM 009 5.2.12).

One subscription for the whole dashboard, not one per browser: the platform notifies the
dashboard's /notify, and :class:`Hub` copies each notification to every open ``/events``
stream.  A slow browser's queue is bounded: its oldest event is dropped, never the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

log = logging.getLogger("city_platform.dashboard")

QUEUE = 256  # events a browser may fall behind by before its oldest is dropped
KEEPALIVE = 15.0  # seconds: an SSE comment keeps proxies and the browser from timing out


class Hub:
    """The browsers' event streams."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[str]] = set()
        self.published = 0

    def __len__(self) -> int:
        return len(self._queues)

    def publish(self, event: str, data: Any) -> None:
        """Send ``data`` (as JSON) to every stream as an SSE event named ``event``."""
        text = f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        self.published += 1
        for queue in self._queues:
            if queue.full():  # drop the oldest: the page is told the newest state
                queue.get_nowait()
            queue.put_nowait(text)

    async def stream(self, keepalive: float = KEEPALIVE) -> AsyncIterator[str]:
        """One browser's stream: a ``ready`` event, then what is published, until it leaves."""
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE)
        self._queues.add(queue)
        try:
            yield "retry: 2000\nevent: ready\ndata: {}\n\n"  # reconnect after 2 s (9.2.6)
            while True:
                try:
                    yield await asyncio.wait_for(queue.get(), keepalive)
                except TimeoutError:
                    yield ": keepalive\n\n"
        finally:
            self._queues.discard(queue)


def subscription(
    sub_id: str, endpoint: str, types: Sequence[str], notify_token: str
) -> dict[str, Any]:
    """Every change of an entity of ``types``, normalized (values with unitCode and
    observedAt), to ``endpoint`` with the dashboard's notify token as receiverInfo (CIM 009
    5.2.15: the platform sends the pairs as HTTP headers), as the gateway's subscription does."""
    return {
        "id": sub_id,
        "type": "Subscription",
        "description": "r197 dashboard: live values for the browsers",
        "entities": [{"type": t} for t in types],
        "notification": {
            "format": "normalized",
            "endpoint": {
                "uri": endpoint,
                "accept": "application/json",
                "receiverInfo": [{"key": "Authorization", "value": f"Bearer {notify_token}"}],
            },
        },
    }
