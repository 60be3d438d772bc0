"""The gateway's small HTTP side: /metrics (Prometheus), /health, /notify (southbound)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateway.metrics import Metrics

RECENT = 60.0  # seconds: /health's default for devicesRecent


def build_app(
    metrics: Metrics,
    on_notification: Callable[[dict[str, Any]], Awaitable[None]],
    health: Callable[[float], dict[str, Any]],
) -> Starlette:
    async def get_metrics(request: Request) -> Response:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    async def get_health(request: Request) -> Response:
        # ?recent=SECONDS: how old a device's last reading may be to count as recent.
        try:
            recent = float(request.query_params.get("recent", RECENT))
        except ValueError:
            recent = -1.0
        if not 0 <= recent <= 86_400:
            return PlainTextResponse("recent: seconds, 0 to 86400", status_code=400)
        return Response(orjson.dumps(health(recent)), media_type="application/json")

    async def post_notify(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return Response(status_code=400)
        if not isinstance(body, dict):
            return Response(status_code=400)
        await on_notification(body)
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/metrics", get_metrics),
            Route("/health", get_health),
            Route("/notify", post_notify, methods=["POST"]),
        ]
    )
