"""``/temporal/entities`` and ``/temporal/entityOperations/query`` (CIM 009 5.6.11-5.6.16,
5.7.3-5.7.4, 6.18-6.24): attribute history, its representations and its limits (6.3.10)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from city_platform import entities as ent
from city_platform import temporal as tmp
from city_platform.api.deps import Accept, Broker, LinkContext, Resolver, Tenant, link_source
from city_platform.api.negotiation import read_body, render
from city_platform.api.params import page_links, parse_bool, parse_options, parse_page
from city_platform.api.routes import query_ops
from city_platform.api.routes.types import only_params
from city_platform.errors import BadRequestData, ResourceNotFound
from city_platform.search import EntitySearch, split_list
from city_platform.storage.base import HistoryRow
from city_platform.temporal import history_for, parse_time_filter, render_temporal, write_temporal
from city_platform.temporal_aggr import Aggregation, parse_aggregation

router = APIRouter(prefix="/temporal", tags=["temporal"])

Str = Annotated[str | None, Query()]
_FORMATS: tuple[tmp.Representation, ...] = ("normalized", "temporalValues", "aggregatedValues")


def _representation(options: str | None, fmt: str | None) -> tuple[tmp.Representation, bool]:
    """(representation, sysAttrs) from ``options``/``format``: normalized, temporalValues
    (4.5.9) or aggregatedValues (4.5.19); the others (keyValues, concise) are 400."""
    opts = parse_options(options, None if fmt in _FORMATS else fmt)
    if opts.mode != "normalized":
        raise BadRequestData(f"the temporal API has no {opts.mode} representation")
    chosen = [f for f in _FORMATS[1:] if f in opts.flags or f == fmt]
    if len(chosen) > 1:
        raise BadRequestData("options: temporalValues and aggregatedValues exclude each other")
    return (chosen[0] if chosen else "normalized"), opts.sys_attrs


def _aggregation(
    rep: tmp.Representation, methods: str | None, duration: str | None
) -> Aggregation | None:
    return parse_aggregation(methods, duration) if rep == "aggregatedValues" else None


def _no_projection_with_attrs(request: Request, attrs: str | None) -> None:
    """4.21: pick or omit beside attrs is BadRequestData (ETSI 020_22).  The temporal API does
    not apply pick/omit otherwise (docs/platform.md, temporal rows)."""
    params = request.query_params
    if attrs is not None and ("pick" in params or "omit" in params):
        raise BadRequestData("pick and omit cannot be combined with attrs (4.21)")


def _partial(headers: dict[str, str], content_range: str | None) -> int:
    """206 Partial Content with Content-Range when instances were cut off (6.3.10)."""
    if content_range is None:
        return 200
    headers["Content-Range"] = content_range
    return 206


# Query Temporal Evolution of Entities' URL parameters (CIM 009 6.18.3.2), and ``local``.
_TEMPORAL_QUERY_PARAMS = (
    *("id", "type", "idPattern", "attrs", "q", "georel", "geometry", "coordinates"),
    *("geoproperty", "timerel", "timeAt", "endTimeAt", "lastN", "timeproperty"),
    *("aggrMethods", "aggrPeriodDuration", "limit", "offset", "count", "options", "format"),
    "local",
)


@router.get("/entities", summary="Query temporal evolution of entities (5.7.4)")
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
    aggrMethods: Str = None,
    aggrPeriodDuration: Str = None,
    limit: Str = None,
    offset: Str = None,
    count: Str = None,
    options: Str = None,
    format: Str = None,
) -> Response:
    only_params(request, *_TEMPORAL_QUERY_PARAMS)  # 6.3.20 (ETSI 059_01_04)
    rep, sys_attrs = _representation(options, format)
    aggregation = _aggregation(rep, aggrMethods, aggrPeriodDuration)
    window = parse_time_filter(
        timerel=timerel,
        time_at=timeAt,
        end_time_at=endTimeAt,
        last_n=lastN,
        timeproperty=timeproperty,
    )
    lim, off = parse_page(limit, offset)
    attr_list = split_list(attrs)
    # CIM 009 5.7.4.4: without an Entity type, Attribute names, a query or a geo-query the
    # request is BadRequestData; ids or an idPattern alone do not select (ETSI 021_24).
    if not any((type, attr_list, q, georel)):
        raise BadRequestData(
            "query temporal entities needs at least one of type, attrs, q or a geo-query (5.7.4.4)"
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
    found, page, total = await tmp.query_temporal(
        broker,
        tenant,
        search,
        window,
        limit=lim,
        offset=off,
        count=parse_bool(count, "count"),
        instance_limit=None if aggregation else tmp.INSTANCE_LIMIT,
    )
    body = [
        render_temporal(
            e,
            page.rows[e["id"]],
            ctx,
            representation=rep,
            sys_attrs=sys_attrs,
            time_filter=window,
            aggregation=aggregation,
            emptied=page.emptied.get(e["id"]),
        )
        for e in found
    ]
    headers = {"NGSILD-Results-Count": str(total)} if total is not None else {}
    # none for POST /temporal/entityOperations/query, whose selection is in the body
    links = (
        page_links(request, "/temporal/entities", lim, off, len(found), total)
        if request.method == "GET"
        else ""
    )
    if links:
        headers["Link"] = links
    status = _partial(headers, page.content_range)
    return render(body, media=accept, context=link_source(request), status=status, headers=headers)


def _temporal_q(raw: object) -> dict[str, str]:
    """A TemporalQuery (5.2.21) as the URL parameters of Query Temporal Evolution (5.7.4)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequestData("Query: 'temporalQ' must be a TemporalQuery object (5.2.21)")
    out: dict[str, str] = {}
    for key in ("timerel", "timeAt", "endTimeAt", "timeproperty", "aggrPeriodDuration"):
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise BadRequestData(f"TemporalQuery: {key!r} must be a non-empty string (5.2.21)")
        out[key] = value
    last_n = raw.get("lastN")
    if last_n is not None:
        if type(last_n) is not int:
            raise BadRequestData(f"TemporalQuery: lastN must be a positive integer, got {last_n!r}")
        out["lastN"] = str(last_n)
    methods = raw.get("aggrMethods")
    if methods is not None:
        if isinstance(methods, list) and all(isinstance(m, str) for m in methods) and methods:
            out["aggrMethods"] = ",".join(methods)
        elif isinstance(methods, str):
            out["aggrMethods"] = methods
        else:
            raise BadRequestData("TemporalQuery: aggrMethods must be a string or an array of them")
    return out


@router.post(
    "/entityOperations/query",
    summary="Query temporal evolution of entities by a Query body (5.7.4, 6.24)",
)
async def query_temporal_by_body(
    request: Request,
    broker: Broker,
    resolver: Resolver,
    tenant: Tenant,
    accept: Accept,
    limit: Str = None,
    offset: Str = None,
    count: Str = None,
    options: Str = None,
    format: Str = None,
) -> Response:
    """The Query (5.2.23) with its ``temporalQ`` (5.2.21) becomes the parameters of GET
    /temporal/entities, which answers.  ``aggrMethods`` in the TemporalQuery asks for the
    aggregated representation unless ``options``/``format`` name another one."""
    body, source = await read_body(request)
    if not isinstance(body, dict):
        raise BadRequestData("the request body must be a Query object (5.2.23)")
    if body.get("type") != "Query":
        raise BadRequestData("a Query's type must be 'Query' (5.2.23)")
    ctx = await resolver.resolve(source)
    temporal_q = _temporal_q(body.get("temporalQ"))
    flags = set(split_list(options) or [])
    if "aggrMethods" in temporal_q and format is None and not flags & set(_FORMATS):
        options = ",".join([*sorted(flags), "aggregatedValues"])
    params: dict[str, Any] = {
        **query_ops._selectors(body.get("entities")),
        **query_ops._geo(body.get("geoQ")),
        **temporal_q,
        "attrs": query_ops._names(body, "attrs"),
        "q": query_ops._string(body, "q"),
    }
    chosen = {k: v for k, v in params.items() if v is not None}
    return await query_temporal_entities(
        request=request,
        broker=broker,
        tenant=tenant,
        ctx=ctx,
        accept=accept,
        limit=limit,
        offset=offset,
        count=count,
        options=options,
        format=format,
        **chosen,
    )


@router.post(
    "/entities", status_code=201, summary="Create or update temporal representation (5.6.11)"
)
async def create_temporal_entity(
    request: Request, broker: Broker, resolver: Resolver, tenant: Tenant
) -> Response:
    only_params(request)  # 6.3.20: an unknown parameter is InvalidRequest (ETSI 059_01_03)
    body, source = await read_body(request)
    ctx = await resolver.resolve(source)
    created = await write_temporal(broker, tenant, body, ctx)
    if not created:
        return Response(status_code=204)
    headers = {"Location": f"/ngsi-ld/v1/temporal/entities/{body['id']}"}
    return Response(status_code=201, headers=headers)


@router.get("/entities/{entity_id}", summary="Retrieve temporal evolution of an entity (5.7.3)")
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
    aggrMethods: Str = None,
    aggrPeriodDuration: Str = None,
    options: Str = None,
    format: Str = None,
) -> Response:
    _no_projection_with_attrs(request, attrs)
    rep, sys_attrs = _representation(options, format)
    aggregation = _aggregation(rep, aggrMethods, aggrPeriodDuration)
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
    page = await history_for(
        broker,
        tenant,
        [entity],
        window,
        projection,
        instance_limit=None if aggregation else tmp.INSTANCE_LIMIT,
    )
    body = render_temporal(
        entity,
        page.rows[entity["id"]],
        ctx,
        representation=rep,
        sys_attrs=sys_attrs,
        time_filter=window,
        aggregation=aggregation,
        emptied=page.emptied.get(entity["id"]),
    )
    headers: dict[str, str] = {}
    status = _partial(headers, page.content_range)
    return render(body, media=accept, context=link_source(request), status=status, headers=headers)


@router.delete(
    "/entities/{entity_id}", status_code=204, summary="Delete temporal representation (5.6.16)"
)
async def delete_temporal_entity(entity_id: str, broker: Broker, tenant: Tenant) -> Response:
    await broker.delete(tenant, entity_id)
    return Response(status_code=204)


@router.post(
    "/entities/{entity_id}/attrs", status_code=204, summary="Add attribute instances (5.6.12)"
)
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
    "/entities/{entity_id}/attrs/{attr}",
    status_code=204,
    summary="Delete attribute history (5.6.13)",
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
    "/entities/{entity_id}/attrs/{attr}/{instance_id}",
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
    "/entities/{entity_id}/attrs/{attr}/{instance_id}",
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
