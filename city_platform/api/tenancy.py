"""Echo the request's ``NGSILD-Tenant`` header on every response (CIM 009 6.3.14, 4.14).

6.3.14: when a request carries the NGSILD-Tenant header, the Tenant the operation applied to
"shall also be present in the HTTP response", errors included (ETSI 414_01_01, 5510_01_01).
A plain ASGI middleware, so it covers ProblemDetails answers of dependencies and handlers
alike; a response that already names the Tenant (Create Entity) keeps its own header.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_HEADER = b"ngsild-tenant"
_MAX = 256  # longer is BadRequestData (deps.get_tenant): not echoed back


class TenantEcho:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tenant = next((v for k, v in scope.get("headers", ()) if k == _HEADER), None)
        if tenant is None or not tenant.strip() or len(tenant) > _MAX:
            await self.app(scope, receive, send)
            return
        value = tenant.strip()

        async def echo(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(k.lower() == _HEADER for k, _ in headers):
                    headers.append((b"NGSILD-Tenant", value))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, echo)
