"""Discovery: ``/types``, ``/types/{type}``, ``/attributes`` (CIM 009 5.7.5 - 5.7.10)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from city_platform.api.deps import Accept, Broker, LinkContext, Tenant, link_source
from city_platform.api.negotiation import render
from city_platform.api.params import parse_bool
from city_platform.errors import InvalidRequest, ResourceNotFound
from city_platform.storage.base import EntityFilter

router = APIRouter(tags=["discovery"])
Str = Annotated[str | None, Query()]


def only_params(request: Request, *allowed: str) -> None:
    """6.3.20: a discovery resource takes only the parameters it defines (and ``local``);
    anything else is InvalidRequest."""
    unknown = sorted(set(request.query_params) - {"local", *allowed})
    if unknown:
        raise InvalidRequest(
            f"{request.url.path} takes no parameter {', '.join(unknown)} (CIM 009 6.3.20)"
        )


@router.get("/types", summary="Available entity types (5.7.5, 5.7.6)")
@router.get("/types/", include_in_schema=False)
async def list_types(
    request: Request,
    broker: Broker,
    tenant: Tenant,
    ctx: LinkContext,
    accept: Accept,
    details: Str = None,
) -> Response:
    only_params(request, "details")
    summary = await broker.type_summary(tenant)
    names = sorted(ctx.compact(t) for t in summary)
    if parse_bool(details, "details"):
        body: object = [
            {
                "id": t,
                "type": "EntityType",
                "typeName": ctx.compact(t),
                "attributeNames": sorted(ctx.compact(a) for a in info if a != "#count"),
            }
            for t, info in sorted(summary.items())
        ]
    else:
        body = {
            "id": "urn:ngsi-ld:EntityTypeList:" + (tenant or "default"),
            "type": "EntityTypeList",
            "typeList": names,
        }
    return render(body, media=accept, context=link_source(request))


@router.get("/types/{type_name:path}", summary="Details of one entity type (5.7.7)")
async def retrieve_type(
    request: Request,
    type_name: str,
    broker: Broker,
    tenant: Tenant,
    ctx: LinkContext,
    accept: Accept,
) -> Response:
    # ':path': an expanded IRI arrives URL-encoded (https:%2F%2F...) and is decoded before
    # routing; a term, a compact IRI (ex:Building) or an IRI all expand as in the body (5.5.7).
    only_params(request)
    summary = await broker.type_summary(tenant)
    iri = ctx.expand(type_name)
    info = summary.get(iri)
    if info is None:
        raise ResourceNotFound(f"no entity of type {type_name!r}")
    body = {
        "id": iri,
        "type": "EntityTypeInfo",
        "typeName": ctx.compact(iri),
        "entityCount": len(info["#count"]),
        "attributeDetails": [
            {
                "id": a,
                "type": "Attribute",
                "attributeName": ctx.compact(a),
                "attributeTypes": sorted(kinds),
            }
            for a, kinds in sorted(info.items())
            if a != "#count"
        ],
    }
    return render(body, media=accept, context=link_source(request))


def _attribute_index(summary: dict[str, dict[str, set[str]]]) -> dict[str, dict[str, set[str]]]:
    index: dict[str, dict[str, set[str]]] = {}
    for type_iri, info in summary.items():
        for attr, kinds in info.items():
            if attr == "#count":
                continue
            entry = index.setdefault(attr, {"types": set(), "kinds": set(), "#count": set()})
            entry["types"].add(type_iri)
            entry["kinds"].update(kinds)
            entry["#count"].update(info["#count"])
    return index


@router.get("/attributes", summary="Available attributes (5.7.8, 5.7.9)")
@router.get("/attributes/", include_in_schema=False)
async def list_attributes(
    request: Request,
    broker: Broker,
    tenant: Tenant,
    ctx: LinkContext,
    accept: Accept,
    details: Str = None,
) -> Response:
    only_params(request, "details", "count")
    index = _attribute_index(await broker.type_summary(tenant))
    if parse_bool(details, "details"):
        body: object = [
            {
                "id": a,
                "type": "Attribute",
                "attributeName": ctx.compact(a),
                "typeNames": sorted(ctx.compact(t) for t in e["types"]),
            }
            for a, e in sorted(index.items())
        ]
    else:
        body = {
            "id": "urn:ngsi-ld:AttributeList:" + (tenant or "default"),
            "type": "AttributeList",
            "attributeList": sorted(ctx.compact(a) for a in index),
        }
    return render(body, media=accept, context=link_source(request))


@router.get("/attributes/{attr:path}", summary="Details of one attribute (5.7.10)")
async def retrieve_attribute(
    request: Request,
    attr: str,
    broker: Broker,
    tenant: Tenant,
    ctx: LinkContext,
    accept: Accept,
) -> Response:
    only_params(request)
    index = _attribute_index(await broker.type_summary(tenant))
    iri = ctx.expand(attr)
    entry = index.get(iri)
    if entry is None:
        raise ResourceNotFound(f"no attribute {attr!r} in any entity")
    # 5.2.27 attributeCount: the entities that have the attribute (not all of their types').
    _, holders = await broker.storage.find_entities(
        tenant, EntityFilter(attrs=frozenset({iri})), limit=0, count=True
    )
    body = {
        "id": iri,
        "type": "Attribute",
        "attributeName": ctx.compact(iri),
        "attributeCount": holders or 0,
        "attributeTypes": sorted(entry["kinds"]),
        "typeNames": sorted(ctx.compact(t) for t in entry["types"]),
    }
    return render(body, media=accept, context=link_source(request))
