"""The live one-line summary of ``testbed up``: a steady rate and devices heard from recently."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx

WINDOW = 10.0  # seconds of forwarded-counter samples the rate is taken over


@dataclass
class SlidingRate:
    """Events per second over the last ``window`` seconds of (time, counter) samples.

    The rate between two one-second polls jumps with every uplink batch (0, 200, 0, ...); over a
    ten-second window it reads steadily. A counter that goes backwards (the gateway restarted and
    counts from zero again) continues from where the old one stopped.
    """

    window: float = WINDOW
    samples: deque[tuple[float, float]] = field(default_factory=deque)
    _offset: float = field(default=0.0, init=False)  # counted by earlier gateway processes
    _last: float = field(default=0.0, init=False)

    def add(self, count: float, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        if count < self._last:
            self._offset += self._last
        self._last = count
        self.samples.append((now, self._offset + count))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()
        return self.rate

    @property
    def rate(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, c0), (t1, c1) = self.samples[0], self.samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


def recent_window(intervals: list[float]) -> float:
    """How recent a reading must be for its device to count as online: three of the slowest
    device's intervals, at least ten seconds."""
    return max(10.0, 3 * max(intervals, default=0.0))


@dataclass
class Summary:
    """Builds the summary line from the gateway's /health and the platform's entity count."""

    gateway_health: str
    platform_url: str
    devices: int
    recent: float
    rate: SlidingRate = field(default_factory=SlidingRate)
    platform_headers: dict[str, str] = field(default_factory=dict)  # the secure city's token
    # gateway-2 .. /health (testbed up --gateways N): their counts are added to gateway 1's;
    # "online" counts each device once, whichever gateways heard it (their recentIds: a shared
    # subscription spreads each device's readings over all of them).
    more_gateways: tuple[str, ...] = ()

    async def line(self, client: httpx.AsyncClient, restarts: str = "") -> str:
        health: dict[str, Any] = {}
        entities = "?"
        try:
            params = {"recent": f"{self.recent:g}", **({"ids": "1"} if self.more_gateways else {})}
            answer = await client.get(self.gateway_health, params=params)
            health = answer.json()
            for url in self.more_gateways:
                health = _added(health, await self._health_of(client, url))
            self.rate.add(float(health.get("forwarded", 0)))
        except (httpx.HTTPError, ValueError):
            health = {}
            restarts = ", ".join(x for x in ("gateway down", restarts) if x)
        try:
            r = await client.get(
                f"{self.platform_url}/ngsi-ld/v1/entities",
                params={"type": "Device", "count": "true", "limit": "0"},
                headers=self.platform_headers,
            )
            if r.status_code in (401, 403):  # RFC 6750 3: the token was refused (key rotated?)
                entities = f"? (token refused: {r.status_code})"
            else:  # each device has its Device entity and one entity of its domain
                entities = str(2 * int(r.headers.get("NGSILD-Results-Count", "0")))
        except (httpx.HTTPError, ValueError):
            entities = "? (platform down)"
        online = health.get("devicesRecent", "?")
        text = (
            f"devices online {online}/{self.devices} | readings/s {self.rate.rate:6.1f} | "
            f"entities {entities} | rejected {float(health.get('rejected', 0)):.0f} | "
            f"queued {health.get('queued', '?')} | platform {health.get('platform', '?')}"
        )
        return f"{text} | {restarts}" if restarts else text

    async def _health_of(self, client: httpx.AsyncClient, url: str) -> dict[str, Any]:
        try:
            found: dict[str, Any] = (
                await client.get(url, params={"recent": f"{self.recent:g}", "ids": "1"})
            ).json()
        except (httpx.HTTPError, ValueError):
            return {}  # one of several down: the supervisor's restart note says so
        return found


def _added(total: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    out = dict(total)
    for key in ("forwarded", "rejected", "queued"):
        if isinstance(out.get(key), int | float) and isinstance(more.get(key), int | float):
            out[key] = out[key] + more[key]
    if isinstance(out.get("recentIds"), list) and isinstance(more.get("recentIds"), list):
        out["recentIds"] = sorted({*out["recentIds"], *more["recentIds"]})
        out["devicesRecent"] = len(out["recentIds"])
    return out
