"""Structured access log as a plain ASGI middleware (cheaper than BaseHTTPMiddleware)."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("city_platform.access")


class AccessLog:
    """One ``key=value`` line per request at INFO on ``city_platform.access``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not access_log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            headers: dict[bytes, bytes] = dict(scope.get("headers", ()))
            client: Any = scope.get("client")
            # api/bearer.py leaves the token's principal in the scope: who did it, for audit
            principal: Any = scope.get("state", {}).get("principal")
            access_log.info(
                "method=%s path=%s status=%d ms=%.2f tenant=%s client=%s sub=%s",
                scope.get("method"),
                scope.get("path"),
                status,
                (time.perf_counter() - start) * 1000,
                headers.get(b"ngsild-tenant", b"").decode("latin-1"),
                client[0] if client else "-",
                getattr(principal, "subject", "-"),
            )
