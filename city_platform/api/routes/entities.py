"""``/entities``: create, query, retrieve, update, append, patch and delete (CIM 009 5.6, 5.7)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from city_platform import provision
from city_platform.api.deps import (
    AcceptGeo,
    Broker,
    LinkContext,
    Resolver,
    Tenant,
    link_source,
)
from city_platform.api.negotiation import read_body, render
from city_platform.api.params import page_links, parse_bool, parse_options, parse_page
from city_platform.api.representation import Representation
from city_platform.api.routes.types import only_params
from city_platform.api.shaping import Shaping, require_type, user_attrs, user_q, wildcard_local
from city_platform.errors import BadRequestData
from city_platform.ldcontext import Context
from city_platform.query import linked_q
from city_platform.registrations import federation
from city_platform.search import EntitySearch, split_list

router = APIRouter(prefix="/entities", tags=["entities"])

Str = Annotated[str | None, Query()]


def _update_result(
    ctx: Context, updated: list[str], skipped: list[str], reason: str
) -> dict[str, object]:
    return {
        "updated": [ctx.compact(i) for i in updated],
        "notUpdated": [{"attributeName": ctx.compact(i), "reason": reason} for i in skipped],
    }


@router.post("", status_code=201, summary="Create entity (5.6.1)")
async def create_entity(
    request: Request, broker: Broker, resolver: Resolver, tenant: Tenant
) -> Response:
    only_params(request)  # 6.3.20: an unknown parameter is InvalidRequest (ETSI 059_01_01)
    body, source = await read_body(request)
    ctx = await resolver.resolve(source)
    entity_id = await broker.create(tenant, body, ctx)
    headers = {"Location": f"/ngsi-ld/v1/entities/{quote(entity_id, safe=':')}"}
    if tenant:
        headers["NGSILD-Tenant"] = tenant
    return Response(status_code=201, headers=headers)


# Query Entities' URL parameters (CIM 009 6.4.3.2, 4.5.23 join, 4.15 lang, 4.5.16 GeoJSON,
# 4.3.6.4 containedBy, 4.3.6.3 csf/local for distributed operations).
QUERY_PARAMS = (
    *("id", "type", "idPattern", "attrs", "q", "georel", "geometry", "coordinates"),
    *("geoproperty", "limit", "offset", "count", "options", "format", "pick", "omit"),
    *("scopeQ", "datasetId", "lang", "geometryProperty", "join", "joinLevel"),
    *("containedBy", "csf", "local"),
)


@router.get("", summary="Query entities (5.7.2)")
async def query_entities(
    request: Request,
    broker: Broker,
    tenant: Tenant,
    ctx: LinkContext,
    accept: AcceptGeo,
    id: Str = None,  # the NGSI-LD parameter name
    type: Str = None,
    idPattern: Str = None,
    attrs: Str = None,
    q: Str = None,
    georel: Str = None,
    geometry: Str = None,
    coordinates: Str = None,
    geoproperty: Str = None,
    limit: Str = None,
    offset: Str = None,
    count: Str = None,
    options: Str = None,
    format: Str = None,
    pick: Str = None,
    omit: Str = None,
    scopeQ: Str = None,
    datasetId: Str = None,
    lang: Str = None,
    geometryProperty: Str = None,
) -> Response:
    only_params(request, *QUERY_PARAMS)  # 6.3.20: unknown is InvalidRequest (ETSI 059_01_02)
    opts = parse_options(options, format)
    lim, off = parse_page(limit, offset)
    want_count = parse_bool(count, "count")
    attr_list = split_list(attrs)
    shape = Shaping.build(ctx, request, pick=pick, omit=omit, attrs=attrs, datasets=datasetId)
    rep = Representation.from_request(  # join, lang, GeoJSON (4.5.23, 4.15, 4.5.16)
        ctx, request, media=accept, lang=lang, geometry_property=geometryProperty
    )
    wildcard_local(type, request)
    if not any((id, type, idPattern, user_attrs(attr_list), user_q(q), georel)):
        raise BadRequestData(
            "query entities needs at least one of type, id, idPattern, attrs, q or a geo-query"
        )
    linked = await linked_q.resolve(q, ctx, broker.storage, tenant)  # rel{attr} terms, 4.9
    search = EntitySearch.build(
        ctx,
        ids=split_list(id),
        types=type,
        id_pattern=idPattern,
        attrs=attr_list,
        q=linked.q,
        georel=georel,
        geometry=geometry,
        coordinates=coordinates,
        geoproperty=geoproperty,
        scope_q=scopeQ,
    )
    await broker.check_tenant(tenant)
    found, total = await broker.storage.find_entities(
        tenant,
        search.where,
        predicate=linked.wrap(search.predicate()),
        limit=lim,
        offset=off,
        count=want_count,
    )
    projection = shape.attr_iris(search.where.attrs)
    pairs = await rep.entities(
        broker.storage,
        tenant,
        ctx,
        shape.instances(found),
        attrs=projection,
        mode=opts.mode,
        sys_attrs=opts.sys_attrs,
        projection=shape.projection,
        drop_empty=True,
    )
    body = [r for _, r in pairs]
    body, headers = await federation.federate_query(  # registered sources, 4.3.6; the count
        request, tenant, ctx, body, types=type, ids=id, id_pattern=idPattern, attrs=attrs,
        limit=lim, total=total,
    )  # fmt: skip
    links = page_links(request, "/entities", lim, off, len(found), total)
    if links:
        headers["Link"] = links  # render() adds the context link after these
    source = link_source(request)
    out = rep.body(body, stored={s["id"]: s for s, _ in pairs}, context=source, one=False)
    return render(out, media=accept, context=source, headers=headers)


@router.delete("", status_code=204, summary="Purge entities (5.6.21 of V1.9.1)")
async def purge_entities(
    request: Request,
    broker: Broker,
    tenant: Tenant,
    ctx: LinkContext,
    id: Str = None,  # the NGSI-LD parameter name
    type: Str = None,
    idPattern: Str = None,
    q: Str = None,
    scopeQ: Str = None,
    keep: Str = None,
    drop: Str = None,
) -> Response:
    """Purge Entities: delete every entity the selection (type, id, idPattern, q, scopeQ, as
    Query Entities 5.7.2 takes them) finds, 204; with ``drop`` only the attributes named, with
    ``keep`` all attributes but those named.  A selection is mandatory: without one the
    request is 400 BadRequestData, never "delete everything"."""
    only_params(request, "id", "type", "idPattern", "q", "scopeQ", "keep", "drop")  # 6.3.20
    if not any((id, type, idPattern, user_q(q), scopeQ)):
        raise BadRequestData("purge entities needs at least one of type, id, idPattern, q, scopeQ")
    search = EntitySearch.build(
        ctx, ids=split_list(id), types=type, id_pattern=idPattern, q=q, scope_q=scopeQ
    )
    await broker.check_tenant(tenant)
    found, _ = await broker.storage.find_entities(
        tenant, search.where, predicate=search.predicate()
    )
    await provision.purge(broker, tenant, found, ctx, keep=split_list(keep), drop=split_list(drop))
    return Response(status_code=204)


@router.get("/{entity_id}", summary="Retrieve entity (5.7.1)")
async def retrieve_entity(
    request: Request,
    entity_id: str,
    broker: Broker,
    tenant: Tenant,
    ctx: LinkContext,
    accept: AcceptGeo,
    attrs: Str = None,
    options: Str = None,
    format: Str = None,
    pick: Str = None,
    omit: Str = None,
    datasetId: Str = None,
    type: Str = None,
    lang: Str = None,
    geometryProperty: Str = None,
) -> Response:
    opts = parse_options(options, format)
    shape = Shaping.build(ctx, request, pick=pick, omit=omit, attrs=attrs, datasets=datasetId)
    rep = Representation.from_request(  # join, lang, GeoJSON (4.5.23, 4.15, 4.5.16)
        ctx, request, media=accept, lang=lang, geometry_property=geometryProperty
    )
    entity = await federation.local_or_none(broker, tenant, entity_id)
    if entity is None:  # maybe at a registered context source (4.3.6)
        return await federation.remote_entity(request, tenant, ctx, entity_id, accept)
    require_type(entity, type, ctx)
    names = split_list(attrs)
    projection = shape.attr_iris({ctx.expand(a) for a in names} if names else None)
    pairs = await rep.entities(
        broker.storage,
        tenant,
        ctx,
        shape.instances([entity]),
        attrs=projection,
        mode=opts.mode,
        sys_attrs=opts.sys_attrs,
        projection=shape.projection,
        drop_empty=False,
    )
    body = pairs[0][1]
    merged, headers = await federation.federate_retrieve(
        request, tenant, ctx, entity_id, body, entity["type"]
    )
    # join=flat answers an array: the Entity, then its linked Entities (4.5.23)
    # (a single object when no linked Entity was found, as the ETSI suite's 018_14 expects)
    shown: object = (
        [merged or body, *(r for _, r in pairs[1:])] if len(pairs) > 1 else merged or body
    )
    source = link_source(request)
    out = rep.body(shown, stored={s["id"]: s for s, _ in pairs}, context=source, one=True)
    return render(out, media=accept, context=source, headers=headers)


@router.delete("/{entity_id}", status_code=204, summary="Delete entity (5.6.6)")
async def delete_entity(entity_id: str, broker: Broker, tenant: Tenant) -> Response:
    await broker.delete(tenant, entity_id)
    return Response(status_code=204)


@router.post("/{entity_id}/attrs", summary="Append entity attributes (5.6.3)")
async def append_attrs(
    request: Request,
    entity_id: str,
    broker: Broker,
    resolver: Resolver,
    tenant: Tenant,
    options: Str = None,
    type: Str = None,
) -> Response:
    only_params(request, "options", "type")  # 6.3.20
    opts = parse_options(options)
    body, source = await read_body(request)
    ctx = await resolver.resolve(source)
    overwrite = "noOverwrite" not in opts.flags
    updated, skipped = await provision.change_entity(
        broker,
        tenant,
        entity_id,
        body,
        ctx,
        mode="append",
        overwrite=overwrite,
        type_selection=type,
    )
    if skipped:
        result = _update_result(ctx, updated, skipped, "attribute exists and noOverwrite was given")
        return render(result, media="application/json", context=source, status=207)
    return Response(status_code=204)


@router.patch("/{entity_id}/attrs", summary="Update entity attributes (5.6.2)")
async def update_attrs(
    request: Request,
    entity_id: str,
    broker: Broker,
    resolver: Resolver,
    tenant: Tenant,
    type: Str = None,
) -> Response:
    only_params(request, "options", "type")  # 6.3.20
    body, source = await read_body(request, patch=True)
    ctx = await resolver.resolve(source)
    # 5.6.2 with the NGSI-LD Null (an attribute of Null value deletes it), scope (4.18) and
    # the optional entity type selector.
    updated, skipped = await provision.change_entity(
        broker, tenant, entity_id, body, ctx, mode="update", type_selection=type
    )
    if skipped:
        result = _update_result(ctx, updated, skipped, "attribute does not exist")
        return render(result, media="application/json", context=source, status=207)
    return Response(status_code=204)


@router.patch(
    "/{entity_id}/attrs/{attr}", status_code=204, summary="Partial attribute update (5.6.4)"
)
async def patch_attr(
    request: Request,
    entity_id: str,
    attr: str,
    broker: Broker,
    resolver: Resolver,
    tenant: Tenant,
    type: Str = None,
) -> Response:
    only_params(request, "options", "type")  # 6.3.20
    body, source = await read_body(request, patch=True)
    ctx = await resolver.resolve(source)
    await provision.patch_attribute(broker, tenant, entity_id, attr, body, ctx, type_selection=type)
    return Response(status_code=204)


@router.put("/{entity_id}/attrs/{attr}", status_code=204, summary="Replace attribute (5.6.19)")
async def replace_attr(
    request: Request, entity_id: str, attr: str, broker: Broker, resolver: Resolver, tenant: Tenant
) -> Response:
    only_params(request)  # 6.3.20
    body, source = await read_body(request)
    ctx = await resolver.resolve(source)
    await provision.replace_attribute(broker, tenant, entity_id, attr, body, ctx)
    return Response(status_code=204)


@router.delete("/{entity_id}/attrs/{attr}", status_code=204, summary="Delete attribute (5.6.5)")
async def delete_attr(
    entity_id: str,
    attr: str,
    broker: Broker,
    tenant: Tenant,
    ctx: LinkContext,
    datasetId: Str = None,
    deleteAll: Str = None,
) -> Response:
    await broker.delete_attr(
        tenant,
        entity_id,
        attr,
        ctx,
        dataset_id=datasetId,
        delete_all=parse_bool(deleteAll, "deleteAll"),
    )
    return Response(status_code=204)


@router.patch("/{entity_id}", status_code=204, summary="Merge entity (5.6.17)")
async def merge_entity(
    request: Request,
    entity_id: str,
    broker: Broker,
    resolver: Resolver,
    tenant: Tenant,
    type: Str = None,
) -> Response:
    """5.6.17: the fragment is merged into the entity (city_platform.provision: the NGSI-LD
    Null deletes, the types named are added, a scope replaces the entity's)."""
    only_params(request, "type", "options")  # 6.3.20
    body, source = await read_body(request, patch=True)
    ctx = await resolver.resolve(source)
    await provision.change_entity(
        broker, tenant, entity_id, body, ctx, mode="merge", type_selection=type
    )
    return Response(status_code=204)


@router.put("/{entity_id}", status_code=204, summary="Replace entity (5.6.18)")
async def replace_entity(
    request: Request, entity_id: str, broker: Broker, resolver: Resolver, tenant: Tenant
) -> Response:
    only_params(request, "options", "type")  # 6.3.20
    body, source = await read_body(request)
    ctx = await resolver.resolve(source)
    await broker.replace(tenant, entity_id, body, ctx)
    return Response(status_code=204)
