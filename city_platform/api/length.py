"""Bare 411 for a POST, PATCH or PUT without ``Content-Length`` (CIM 009 6.3.2, 6.3.4).

6.3.4: for HTTP POST, PATCH and PUT requests "Content-Length header shall include the length
of the request payload body"; its absence "shall result in just a 411 HTTP status code
(without any payload body)".  No exemption is made for ``Transfer-Encoding: chunked``
(ETSI 046_01).  A plain ASGI middleware, so the answer comes before routing and before the
Tenant is looked up (046_01_05).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

_METHODS = frozenset({"POST", "PATCH", "PUT"})


class LengthRequired:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope.get("method") in _METHODS
            and not any(k == b"content-length" for k, _ in scope.get("headers", ()))
        ):
            await send(
                {
                    "type": "http.response.start",
                    "status": 411,
                    "headers": [(b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)
