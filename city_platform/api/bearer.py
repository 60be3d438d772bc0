"""Bearer-token authentication of the API (RFC 6750), a plain ASGI middleware.

With a key (``create_app(auth_key=...)``, ``testbed platform --auth-key FILE``) every request
needs ``Authorization: Bearer <jwt>`` (:mod:`city_platform.auth`), except the ones in
:func:`is_open`: ``/health``, ``/docs`` with its assets, ``/openapi.json`` and the shipped
@context files under ``/ngsi-ld/contexts/`` (clients and JSON-LD processors fetch them
anonymously).  Anything else, unknown paths included, is closed: a path that the router would
answer 404 still needs a token first, so the open set cannot be widened by path tricks.

- no token: 401 with ``WWW-Authenticate: Bearer realm="r197"`` and no error code (RFC 6750 3.1);
- a token that does not verify (signature, expiry, algorithm, claims): 401
  ``error="invalid_token"``;
- a token without the scope the request needs: 403 ``error="insufficient_scope"``, ``scope=``;
- a token not bound to the request's tenant (the ``NGSILD-Tenant`` header, CIM 009 6.3.14;
  none is the default tenant ""): 403 ``error="insufficient_scope"``.

Bodies are RFC 7807 ProblemDetails (``application/json``).  The NGSI-LD error types (CIM 009
5.5.2) name no authentication errors, so ``type`` is ``about:blank`` and ``title`` the HTTP
reason phrase (RFC 7807 4.2).  A refusal is logged at WARNING once per (client, reason) per
minute, so a client retrying in a loop cannot flood the log.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from city_platform.api.raw_answer import send_json
from city_platform.auth import (
    AuthError,
    InsufficientScope,
    Principal,
    TokenInvalid,
    TokenMissing,
    WrongTenant,
    check_key,
    required_scope,
    verify,
)

log = logging.getLogger(__name__)

REALM: Final = "r197"
LOG_EVERY: Final = 60.0  # seconds between two log lines for one (client, reason)
_OPEN_EXACT: Final = frozenset({"/health", "/docs", "/openapi.json"})
_OPEN_DIRS: Final = ("/docs/static/", "/ngsi-ld/contexts/")  # one file name after the prefix
_MAX_REMEMBERED: Final = 4096  # (client, reason) pairs and verified tokens kept


def is_open(path: str) -> bool:
    """Whether ``path`` is served without a token (module docstring)."""
    if path in _OPEN_EXACT:
        return True
    for prefix in _OPEN_DIRS:
        if path.startswith(prefix):
            name = path[len(prefix) :]
            return bool(name) and "/" not in name and name not in (".", "..")
    return False


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((v for k, v in scope.get("headers", ()) if k == name), None)


def _token(scope: Scope) -> str:
    raw = _header(scope, b"authorization")
    if raw is None:
        raise TokenMissing("this API needs Authorization: Bearer <token> (RFC 6750 2.1)")
    kind, _, token = raw.decode("latin-1").strip().partition(" ")
    if kind.lower() != "bearer":
        # RFC 6750 3: "attempted using an unsupported authentication method" is answered as
        # lacking authentication: the challenge without an error code.
        raise TokenMissing(f"the Authorization scheme {kind!r} is not supported; send Bearer")
    if not token.strip():
        raise TokenInvalid("the Authorization header has no token after 'Bearer'")
    return token.strip()


def _tenant(scope: Scope) -> str:
    raw = _header(scope, b"ngsild-tenant")
    return raw.decode("latin-1").strip() if raw is not None else ""


class BearerAuth:
    """Refuses unauthenticated or unauthorized API requests; passes the rest on."""

    def __init__(self, app: ASGIApp, key: bytes) -> None:
        self.app = app
        self.key = check_key(key)
        self._logged: dict[tuple[str, str], float] = {}
        # Verified tokens (signature included in the key), so a client sending the same token
        # on every request pays the HMAC and claim checks once (45 us each) until it expires.
        self._verified: dict[str, Principal] = {}

    def principal(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None and (known.expires is None or time.time() < known.expires):
            return known
        self._verified.pop(token, None)
        principal = verify(self.key, token)  # raises for an expired one, as PyJWT decides
        if len(self._verified) >= _MAX_REMEMBERED:
            self._verified.clear()
        self._verified[token] = principal
        return principal

    def authorize(self, scope: Scope) -> Principal:
        """The principal of the request, or the AuthError that refuses it."""
        principal = self.principal(_token(scope))
        needed = required_scope(scope.get("method", "GET"), scope["path"])
        if not principal.allows(needed):
            have = " ".join(sorted(principal.scopes)) or "none"
            raise InsufficientScope(
                f"{scope.get('method')} {scope['path']} needs the {needed!r} scope; "
                f"the token has {have}",
                scope=needed,
            )
        tenant = _tenant(scope)
        if not principal.serves(tenant):
            shown = repr(tenant) if tenant else "the default tenant (no NGSILD-Tenant header)"
            raise WrongTenant(f"the token is not bound to tenant {shown}", scope=needed)
        return principal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            principal = self.authorize(scope)
        except AuthError as exc:
            self._note(scope, exc)
            await _refuse(send, exc)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    def _note(self, scope: Scope, exc: AuthError) -> None:
        client = scope.get("client")
        who = str(client[0]) if client else "-"
        now = time.monotonic()
        last = self._logged.get((who, exc.reason))
        if last is not None and now - last < LOG_EVERY:
            return
        if len(self._logged) >= _MAX_REMEMBERED:
            self._logged.clear()
        self._logged[who, exc.reason] = now
        log.warning(
            "refused %s %s from %s: %d %s (further ones from this client for %s are not "
            "logged for %.0f s)",
            scope.get("method"),
            scope["path"],
            who,
            exc.status,
            exc.detail,
            exc.reason,
            LOG_EVERY,
        )


async def _refuse(send: Send, exc: AuthError) -> None:
    doc = {"type": "about:blank", "title": exc.title, "status": exc.status, "detail": exc.detail}
    challenge = (b"www-authenticate", exc.challenge(REALM).encode("latin-1"))
    await send_json(send, exc.status, doc, (challenge,))


def document_security(app: FastAPI) -> None:
    """Declare the bearer scheme in the OpenAPI document (OpenAPI 3.1 4.8.27), so /docs offers
    an Authorize button and sends the token on "Try it out"."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {})
            components.setdefault("securitySchemes", {})["bearer"] = {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "`testbed token --scope read|write|admin --tenant NAME|'*'`",
            }
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
