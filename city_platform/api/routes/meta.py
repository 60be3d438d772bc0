"""Served @context documents and the health endpoint (the testbed works offline, 5.5.7)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from city_platform.errors import ResourceNotFound
from city_platform.ldcontext import SHIPPED_FILES, shipped_document

router = APIRouter(tags=["meta"])


@router.get(
    "/ngsi-ld/contexts/{name}",
    summary="A JSON-LD context shipped with the platform or from its --context-dir",
)
async def get_context(request: Request, name: str) -> Response:
    directory: dict[str, bytes] = request.app.state.resolver.directory
    if name in directory:  # --context-dir files take precedence: the operator chose them
        return Response(directory[name], media_type="application/ld+json")
    if name not in SHIPPED_FILES:
        known = sorted({*SHIPPED_FILES, *directory})
        raise ResourceNotFound(f"no context named {name!r}; known: {', '.join(known)}")
    return Response(shipped_document(name), media_type="application/ld+json")


@router.get("/health", summary="Liveness and storage readiness")
async def get_health(request: Request) -> dict[str, object]:
    from city_platform.influx.storage import InfluxSinkStorage  # noqa: PLC0415

    storage = request.app.state.broker.storage
    if isinstance(storage, InfluxSinkStorage):  # the sink's outbox depth, for monitoring
        return {
            "status": "ok",
            "storage": type(storage.inner).__name__,
            "influx": storage.sink.status(),
        }
    return {"status": "ok", "storage": type(storage).__name__}
