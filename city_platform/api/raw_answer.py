"""A JSON answer sent straight from an ASGI middleware, before routing (guard, bearer)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson
from starlette.types import Send


async def send_json(
    send: Send, status: int, doc: Mapping[str, object], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """``doc`` as application/json with ``status`` and any further ``headers``."""
    body = orjson.dumps(doc)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
