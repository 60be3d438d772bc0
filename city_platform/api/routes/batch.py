"""``/entityOperations``: batch create, upsert, update and delete (CIM 009 5.6.7 - 5.6.10).

Batch upsert is the gateway's hot path: one request, one storage transaction.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from city_platform import provision
from city_platform.api.deps import Broker, Resolver, Tenant
from city_platform.api.negotiation import read_body, render
from city_platform.api.params import parse_options
from city_platform.api.routes.types import only_params
from city_platform.broker import BatchResult
from city_platform.errors import BadRequestData, LdContextNotAvailable

router = APIRouter(prefix="/entityOperations", tags=["batch"])

Str = Annotated[str | None, Query()]
_JSON = "application/json"


def _answer(result: BatchResult, *, created_status: bool) -> Response:
    if result.errors:
        return render(result.body(), media=_JSON, context=None, status=207)
    if created_status:
        return render(result.created, media=_JSON, context=None, status=201)
    return Response(status_code=204)


@router.post("/create", summary="Batch entity creation (5.6.7)")
async def create_batch(
    request: Request, broker: Broker, resolver: Resolver, tenant: Tenant
) -> Response:
    body, source = await read_body(request)
    try:
        ctx = await resolver.resolve(source)
    except LdContextNotAvailable as exc:
        # 5.6.7: each entity that cannot be created is a BatchEntityError of the 207 answer;
        # an @context that cannot be fetched fails every entity it applies to (ETSI 043_01_04)
        if not isinstance(body, list):
            raise
        result = BatchResult()
        for item in body:
            result.fail(item.get("id") if isinstance(item, dict) else None, exc)
        return _answer(result, created_status=True)
    result = await broker.batch_write(tenant, body, ctx, mode="create")
    return _answer(result, created_status=True)


@router.post("/upsert", summary="Batch entity upsert (5.6.8)")
async def upsert_batch(
    request: Request, broker: Broker, resolver: Resolver, tenant: Tenant, options: Str = None
) -> Response:
    opts = parse_options(options)
    if {"replace", "update"} <= opts.flags:
        raise BadRequestData("options: 'replace' and 'update' exclude each other")
    body, source = await read_body(request)
    ctx = await resolver.resolve(source)
    result = await broker.batch_write(
        tenant, body, ctx, mode="upsert", replace="update" not in opts.flags
    )
    return _answer(result, created_status=bool(result.created))


@router.post("/update", summary="Batch entity update (5.6.9)")
async def update_batch(
    request: Request, broker: Broker, resolver: Resolver, tenant: Tenant, options: Str = None
) -> Response:
    """5.6.9: Append Entity Attributes (5.6.3) per entity, ``noOverwrite`` keeping existing
    instances, the NGSI-LD Null deleting as in 5.6.2 (city_platform.provision.batch_update)."""
    opts = parse_options(options)
    body, source = await read_body(request)
    ctx = await resolver.resolve(source)
    overwrite = "noOverwrite" not in opts.flags
    result = await provision.batch_update(broker, tenant, body, ctx, overwrite=overwrite)
    return _answer(result, created_status=False)


@router.post("/merge", summary="Batch entity merge (5.6.20)")
async def merge_batch(
    request: Request, broker: Broker, resolver: Resolver, tenant: Tenant
) -> Response:
    """Merge Entity (5.6.17) for each entity of the array (6.31.3.1); 204, or 207 with a
    BatchOperationResult when some fail."""
    only_params(request, "options")  # 6.3.20: an unknown parameter is InvalidRequest
    body, source = await read_body(request, patch=True)
    ctx = await resolver.resolve(source)
    result = await provision.batch_merge(broker, tenant, body, ctx)
    return _answer(result, created_status=False)


@router.post("/delete", summary="Batch entity delete (5.6.10)")
async def delete_batch(request: Request, broker: Broker, tenant: Tenant) -> Response:
    # An array of ids has no term to expand: application/ld+json needs no @context here.
    body, _ = await read_body(request, context_required=False)
    if body == []:  # nothing to delete is a bad request (ETSI 006_03_02 EmptyJson)
        raise BadRequestData("Batch Entity Delete (5.6.10) takes a non-empty array of entity ids")
    result = await broker.batch_delete(tenant, body)
    return _answer(result, created_status=False)
