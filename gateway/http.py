"""The gateway's small HTTP side: /metrics (Prometheus), /health, /notify (southbound).

With a notify token, POST /notify is a protected resource (RFC 6750): the platform sends the
token as the ``Authorization`` receiverInfo of the gateway's subscription (CIM 009 5.2.15); a
request without it gets 401 with a ``WWW-Authenticate: Bearer`` challenge (RFC 6750 3), one with
another token 401 ``error="invalid_token"`` (RFC 6750 3.1).  Refusals are counted in
``r197_gateway_notify_refused_total`` and logged at most once a minute: a forger neither
switches a streetlight nor floods the log.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateway.metrics import Metrics

log = logging.getLogger(__name__)

RECENT = 60.0  # seconds: /health's default for devicesRecent
REALM = "r197-gateway"
LOG_EVERY = 60.0  # seconds between two log lines about refused notifications
MAX_NOTIFICATION = 1024 * 1024  # bytes: a keyValues notification of actuators is far smaller


def bearer_refusal(header: str | None, token: str) -> str | None:
    """Why an ``Authorization`` header does not carry ``token`` (None: it does).

    ``missing`` when there is no bearer credential at all, ``invalid_token`` otherwise; the
    comparison takes the same time wherever the tokens differ (hmac.compare_digest)."""
    if not header:
        return "missing"
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return "missing"
    if hmac.compare_digest(credential.strip().encode(), token.encode()):
        return None
    return "invalid_token"


def build_app(
    metrics: Metrics,
    on_notification: Callable[[dict[str, Any]], Awaitable[None]],
    health: Callable[[float], dict[str, Any]],
    *,
    notify_token: str | None = None,
    recent_ids: Callable[[float], list[str]] | None = None,
) -> Starlette:
    last_log = [-LOG_EVERY]

    def refuse(request: Request, why: str) -> Response:
        metrics.inc("r197_gateway_notify_refused_total", reason=why)
        now = time.monotonic()
        if now - last_log[0] >= LOG_EVERY:
            last_log[0] = now
            peer = request.client.host if request.client else "?"
            log.warning("southbound: refused a notification from %s (%s token)", peer, why)
        challenge = f'Bearer realm="{REALM}"'
        if why == "invalid_token":  # RFC 6750 3: no error code when no credential was sent
            challenge += ', error="invalid_token", error_description="the token is not ours"'
        return Response(status_code=401, headers={"WWW-Authenticate": challenge})

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
        state = health(recent)
        if recent_ids is not None and request.query_params.get("ids") == "1":
            # The ids too: `testbed up --gateways N` counts a device heard by any gateway once.
            state["recentIds"] = recent_ids(recent)
        return Response(orjson.dumps(state), media_type="application/json")

    async def post_notify(request: Request) -> Response:
        if notify_token:
            why = bearer_refusal(request.headers.get("authorization"), notify_token)
            if why is not None:
                return refuse(request, why)
        raw = bytearray()
        async for chunk in request.stream():  # read no more than the limit, whatever is sent
            raw += chunk
            if len(raw) > MAX_NOTIFICATION:
                return Response(status_code=413)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return Response(status_code=400)
        # CIM 009 5.3.1: a Notification's data is an array of entities.
        if not isinstance(body, dict) or not isinstance(body.get("data", []), list):
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
