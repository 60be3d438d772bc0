"""``/temporal/entities`` (CIM 009 5.6.11-5.6.16, 5.7.3-5.7.4): attribute history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from city_platform import entities as ent
from city_platform.api.deps import Accept, Broker, LinkContext, Resolver, Tenant, link_source
from city_platform.api.negotiation import read_body, render
from city_platform.api.params import parse_bool, parse_options, parse_page
from city_platform.errors import BadRequestData, ResourceNotFound
from city_platform.search import EntitySearch, split_list
from city_platform.storage.base import HistoryRow
from city_platform.temporal import history_for, parse_time_filter, render_temporal, write_temporal

router = APIRouter(prefix="/temporal/entities", tags=["temporal"])

Str = Annotated[str | None, Query()]


def _temporal_values(options: str | None, fmt: str | None) -> tuple[bool, bool]:
    """(temporalValues, sysAttrs) from ``options``/``format``; other representations are 400."""
    simplified = fmt == "temporalValues"
    opts = parse_options(options, None if fmt in (None, "temporalValues", "normalized") else fmt)
    if opts.mode != "normalized":
        raise BadRequestData(f"the temporal API has no {opts.mode} representation")
    return simplified or "temporalValues" in opts.flags, opts.sys_attrs


@router.get("", summary="Query temporal evolution of entities (5.7.4)")
async def query_temporal_entities(
    request: Request,
    broker: Broker,
    tenant: Tenant,
    ctx: LinkContext,
    accept: Accept,
    id: Str = None,  # the NGSI-LD parameter name
    type: Str = None,
    idPattern: Str = None,
    attrs: Str = None,
    q: Str = None,
    georel: Str = None,
    geometry: Str = None,
    coordinates: Str = None,
    geoproperty: Str = None,
    timerel: Str = None,
    timeAt: Str = None,
    endTimeAt: Str = None,
    lastN: Str = None,
    timeproperty: Str = None,
    limit: Str = None,
    offset: Str = None,
    count: Str = None,
    options: Str = None,
    format: Str = None,
) -> Response:
    simplified, sys_attrs = _temporal_values(options, format)
    window = parse_time_filter(
        timerel=timerel,
        time_at=timeAt,
        end_time_at=endTimeAt,
        last_n=lastN,
        timeproperty=timeproperty,
    )
    lim, off = parse_page(limit, offset)
    attr_list = split_list(attrs)
    if not any((id, type, idPattern, attr_list, q, georel)):
        raise BadRequestData(
            "query temporal entities needs at least one of type, id, idPattern, attrs, q "
            "or a geo-query"
        )
    search = EntitySearch.build(
        ctx,
        ids=split_list(id),
        types=type,
        id_pattern=idPattern,
        attrs=attr_list,
        q=q,
        georel=georel,
        geometry=geometry,
        coordinates=coordinates,
        geoproperty=geoproperty,
    )
    await broker.check_tenant(tenant)
    found, total = await broker.storage.find_entities(
        tenant,
        search.where,
        predicate=search.predicate(),
        limit=lim,
        offset=off,
        count=parse_bool(count, "count"),
    )
    rows = await history_for(broker, tenant, found, window, search.where.attrs)
    body = [
        render_temporal(
            e,
            rows[e["id"]],
            ctx,
            temporal_values=simplified,
            sys_attrs=sys_attrs,
            timeproperty=window.timeproperty,
        )
        for e in found
    ]
    headers = {"NGSILD-Results-Count": str(total)} if total is not None else {}
    return render(body, media=accept, context=link_source(request), headers=headers)


@router.post("", status_code=201, summary="Create or update temporal representation (5.6.11)")
async def create_temporal_entity(
    request: Request, broker: Broker, resolver: Resolver, tenant: Tenant
) -> Response:
    body, source = await read_body(request)
    ctx = await resolver.resolve(source)
    created = await write_temporal(broker, tenant, body, ctx)
    if not created:
        return Response(status_code=204)
    headers = {"Location": f"/ngsi-ld/v1/temporal/entities/{body['id']}"}
    return Response(status_code=201, headers=headers)


@router.get("/{entity_id}", summary="Retrieve temporal evolution of an entity (5.7.3)")
async def retrieve_temporal_entity(
    request: Request,
    entity_id: str,
    broker: Broker,
    tenant: Tenant,
    ctx: LinkContext,
    accept: Accept,
    attrs: Str = None,
    timerel: Str = None,
    timeAt: Str = None,
    endTimeAt: Str = None,
    lastN: Str = None,
    timeproperty: Str = None,
    options: Str = None,
    format: Str = None,
) -> Response:
    simplified, sys_attrs = _temporal_values(options, format)
    window = parse_time_filter(
        timerel=timerel,
        time_at=timeAt,
        end_time_at=endTimeAt,
        last_n=lastN,
        timeproperty=timeproperty,
    )
    entity = await broker.get(tenant, entity_id)
    names = split_list(attrs)
    projection = {ctx.expand(ent.check_name(a, "attrs")) for a in names} if names else None
    rows = await history_for(broker, tenant, [entity], window, projection)
    body = render_temporal(
        entity,
        rows[entity["id"]],
        ctx,
        temporal_values=simplified,
        sys_attrs=sys_attrs,
        timeproperty=window.timeproperty,
    )
    return render(body, media=accept, context=link_source(request))


@router.delete("/{entity_id}", status_code=204, summary="Delete temporal representation (5.6.16)")
async def delete_temporal_entity(entity_id: str, broker: Broker, tenant: Tenant) -> Response:
    await broker.delete(tenant, entity_id)
    return Response(status_code=204)


@router.post("/{entity_id}/attrs", status_code=204, summary="Add attribute instances (5.6.12)")
async def add_temporal_attrs(
    request: Request, entity_id: str, broker: Broker, resolver: Resolver, tenant: Tenant
) -> Response:
    body, source = await read_body(request)
    ctx = await resolver.resolve(source)
    await broker.get(tenant, entity_id)  # 404 before anything is written
    if isinstance(body, dict) and body.get("id", entity_id) != entity_id:
        raise BadRequestData("the id in the body differs from the id in the URL")
    fragment = {k: v for k, v in body.items() if k != "id"} if isinstance(body, dict) else body
    await write_temporal(broker, tenant, fragment, ctx, entity_id=entity_id)
    return Response(status_code=204)


@router.delete(
    "/{entity_id}/attrs/{attr}", status_code=204, summary="Delete attribute history (5.6.13)"
)
async def delete_temporal_attr(
    entity_id: str,
    attr: str,
    broker: Broker,
    tenant: Tenant,
    ctx: LinkContext,
    datasetId: Str = None,
    deleteAll: Str = None,
) -> Response:
    entity = await broker.get(tenant, entity_id)
    iri = ctx.expand(ent.check_name(attr, "attribute name"))
    all_sets = deleteAll == "true"
    removed = await broker.storage.delete_history(
        tenant, entity_id, iri, None if all_sets else (datasetId or "")
    )
    if not removed and iri not in entity["attrs"]:
        raise ResourceNotFound(f"entity {entity_id!r} has no attribute {attr!r}")
    return Response(status_code=204)


def _instance_from(body: object, attr: str, iri: str) -> object:
    """The instance of a Modify Attribute Instance body: ``{attr: instance}`` or the instance."""
    if isinstance(body, dict):
        for key in (attr, iri):
            if key in body:
                inner = body[key]
                return inner[0] if isinstance(inner, list) and len(inner) == 1 else inner
    return body


@router.patch(
    "/{entity_id}/attrs/{attr}/{instance_id}",
    status_code=204,
    summary="Modify attribute instance (5.6.14)",
)
async def patch_temporal_instance(
    request: Request,
    entity_id: str,
    attr: str,
    instance_id: str,
    broker: Broker,
    resolver: Resolver,
    tenant: Tenant,
) -> Response:
    body, source = await read_body(request, patch=True)
    ctx = await resolver.resolve(source)
    await broker.get(tenant, entity_id)
    iri = ctx.expand(ent.check_name(attr, "attribute name"))
    now = ent.now_iso()
    inst = ent.normalize_instance(attr, _instance_from(body, attr, iri), ctx, now=now)
    inst["instanceId"] = instance_id
    observed = inst.get("observedAt")
    row = HistoryRow(
        entity_id=entity_id,
        attr=iri,
        dataset_id=inst.get("datasetId"),
        observed_at=ent.utc_key(observed) if observed else None,
        modified_at=ent.utc_key(now),
        instance_id=instance_id,
        instance=inst,
    )
    if not await broker.storage.replace_history_instance(tenant, entity_id, iri, row):
        raise ResourceNotFound(f"attribute {attr!r} has no instance {instance_id!r}")
    return Response(status_code=204)


@router.delete(
    "/{entity_id}/attrs/{attr}/{instance_id}",
    status_code=204,
    summary="Delete attribute instance (5.6.15)",
)
async def delete_temporal_instance(
    entity_id: str, attr: str, instance_id: str, broker: Broker, tenant: Tenant, ctx: LinkContext
) -> Response:
    await broker.get(tenant, entity_id)
    iri = ctx.expand(ent.check_name(attr, "attribute name"))
    if not await broker.storage.delete_history_instance(tenant, entity_id, iri, instance_id):
        raise ResourceNotFound(f"attribute {attr!r} has no instance {instance_id!r}")
    return Response(status_code=204)
