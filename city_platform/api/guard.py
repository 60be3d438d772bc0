"""Refuse hostile request targets before routing, as NGSI-LD ProblemDetails (CIM 009 5.5.2).

A plain ASGI middleware.  The query string and the path are percent-decoded and refused with
400 BadRequestData when they

- are not UTF-8 (``%ff``): RFC 3986 2.5 and CIM 009 6.3 carry text parameters as UTF-8;
- hold a control character (NUL and the other C0 controls, DEL): no NGSI-LD parameter value
  (ids are URIs, names follow 4.6.2, ``q`` 4.9 and the geo-query 4.10 are printable text) can
  contain one, and a NUL would otherwise reach SQLite, the logs and the regex engine;
- are longer than :data:`MAX_QUERY_STRING` (the query string).

Unknown query parameters are not refused here: the operations that define their parameters
refuse the others as 400 InvalidRequest themselves (CIM 009 6.3.20, ``only_params``).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from city_platform.api.raw_answer import send_json
from city_platform.errors import BadRequestData

MAX_QUERY_STRING = 64 * 1024  # bytes, before percent-decoding
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_target(path: str, raw_path: bytes | None, query: bytes) -> None:
    """BadRequestData when the request path or query string is refused (module docstring)."""
    if len(query) > MAX_QUERY_STRING:
        raise BadRequestData(f"query string longer than {MAX_QUERY_STRING} bytes")
    _check_text(unquote_to_bytes(query.replace(b"+", b" ")), "query string")
    # The path arrives decoded in scope["path"]; a %ff there was decoded with errors replaced,
    # so the raw path is what tells invalid UTF-8.
    _check_text(unquote_to_bytes(raw_path) if raw_path is not None else path.encode(), "path")


def _check_text(data: bytes, what: str) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestData(f"the {what} is not UTF-8 once percent-decoded") from None
    found = _CONTROL.search(text)
    if found is not None:
        raise BadRequestData(
            f"the {what} holds the control character U+{ord(found.group()):04X} "
            "(no NGSI-LD parameter can contain one)"
        )


class TargetGuard:
    """Answers 400 ProblemDetails for a refused path or query string; passes the rest on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                check_target(scope["path"], scope.get("raw_path"), scope.get("query_string", b""))
            except BadRequestData as exc:
                await send_json(send, exc.status, exc.problem())
                return
        await self.app(scope, receive, send)
