"""Trailing slashes of the NGSI-LD collection resources (CIM 009 6.4, 6.6, 6.18 and alike).

``/ngsi-ld/v1/entities/`` is the collection ``/ngsi-ld/v1/entities`` (the ETSI test suite
creates entities with ``POST entities/`` and appends and updates attributes with
``POST|PATCH entities/{id}/attrs/``), answered in place rather than by a 307 redirect.  What
then names no resource for the method (``PATCH entities/``: a Merge Entity without an id) is
an empty path segment, 400 BadRequestData (``app.py``), not 404 or 405.

A plain ASGI middleware: the route table stays as it is and paths other than these
collections (an @context id that ends in ``/``) are never touched.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

# The path as the client sent it, kept in the scope when this middleware shortened it.
ORIGINAL_PATH = "r197.original_path"

# Matched from the end of the prefix on (``match`` anchors there; no ``^``).
_COLLECTION = re.compile(
    r"(?:(?:temporal/)?entities(?:/[^/]+/attrs)?"
    r"|subscriptions|csourceRegistrations|csourceSubscriptions)/$"
)


def original_path(scope: Scope) -> str:
    """The request path before a trailing slash was dropped."""
    return str(scope.get(ORIGINAL_PATH, scope.get("path", "")))


class CollectionSlash:
    """Answer ``{prefix}/entities/`` (and the other collections) as ``{prefix}/entities``."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix + "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if (
                path.endswith("/")
                and path.startswith(self.prefix)
                and _COLLECTION.match(path, len(self.prefix)) is not None
            ):
                scope = {**scope, "path": path[:-1], ORIGINAL_PATH: path}
                raw = scope.get("raw_path")
                if isinstance(raw, bytes) and raw.endswith(b"/"):
                    scope["raw_path"] = raw[:-1]
        await self.app(scope, receive, send)
