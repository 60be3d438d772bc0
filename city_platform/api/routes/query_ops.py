"""``POST /entityOperations/query``: Query Entities with a Query body (CIM 009 5.7.2, 6.23).

The body is a Query (5.2.23): ``type`` "Query", ``entities`` (EntitySelectors, 5.2.33),
``attrs``, ``pick``/``omit``, ``q``, ``geoQ`` (5.2.13), ``csf``, ``scopeQ``, ``lang``;
``temporalQ`` is refused: Table 5.2.23-1 keeps it for Query Temporal Evolution (5.7.4), and
the ETSI suite (019_32_08) expects 400 here.  ``limit``, ``offset``, ``count``, ``options``
and ``format`` stay URL parameters.  The answer is the one GET /entities gives for the same
selection: the body becomes that operation's parameters and the same handler answers.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from city_platform.api.deps import AcceptGeo, Broker, Resolver, Tenant
from city_platform.api.negotiation import read_body
from city_platform.api.routes import entities
from city_platform.api.shaping import BODY_PARAMS
from city_platform.entities import check_uri
from city_platform.errors import BadRequestData, OperationNotSupported

router = APIRouter(prefix="/entityOperations", tags=["batch"])
Str = Annotated[str | None, Query()]

_GEO_MEMBERS = ("georel", "geometry", "coordinates", "geoproperty")


def _string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequestData(f"Query: {key!r} must be a non-empty string")
    return value


def _names(body: dict[str, Any], key: str) -> str | None:
    """An array of names (or one comma-separated string) as the URL parameter's list."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if not isinstance(value, list) or not value:
        raise BadRequestData(f"Query: {key!r} must be a non-empty array (Table 5.2.23-1)")
    if not all(isinstance(v, str) and v for v in value):
        raise BadRequestData(f"Query: {key!r} must be an array of strings")
    return ",".join(value)


def _selectors(raw: object) -> dict[str, str]:
    """EntitySelectors (5.2.33) as ``id``/``type``/``idPattern`` parameters.

    One selector maps as it is; several map when they differ in one respect only (their
    types, or their ids or idPatterns under the same type).  Other mixes would need an OR of
    whole selectors, which the query parameters cannot say: OperationNotSupported.
    """
    if raw is None:
        return {}
    if not isinstance(raw, list) or not raw or not all(isinstance(s, dict) for s in raw):
        raise BadRequestData("Query: 'entities' must be a non-empty array of EntitySelectors")
    selectors = [_selector(sel) for sel in raw]
    if len(selectors) == 1:
        return selectors[0]
    types = {sel["type"] for sel in selectors}
    if all(len(s) == 1 for s in selectors):  # types only
        return {"type": ",".join(f"({s['type']})" for s in selectors)}
    if len(types) == 1:
        (kind,) = types
        if all("id" in s for s in selectors):
            return {"type": kind, "id": ",".join(s["id"] for s in selectors)}
        if all("idPattern" in s for s in selectors):
            patterns = "|".join(f"(?:{s['idPattern']})" for s in selectors)
            return {"type": kind, "idPattern": patterns}
    raise OperationNotSupported(
        "Query: EntitySelectors that differ in both type and id/idPattern are not supported"
    )


def _selector(sel: dict[str, Any]) -> dict[str, str]:
    """One EntitySelector (Table 5.2.33-1): type is mandatory, id a URI or an array of them
    (it takes precedence over idPattern)."""
    kind = sel.get("type")
    if not isinstance(kind, str) or not kind:
        raise BadRequestData("Query: an EntitySelector needs a type (Table 5.2.33-1)")
    out = {"type": kind}
    ids = sel.get("id")
    if ids is not None:
        items = [ids] if isinstance(ids, str) else ids
        if not isinstance(items, list) or not items:
            raise BadRequestData("Query: EntitySelector id must be a URI or an array of URIs")
        for item in items:
            check_uri(item, "Query: EntitySelector id")
        out["id"] = ",".join(items)
        return out
    pattern = sel.get("idPattern")
    if pattern is not None:
        if not isinstance(pattern, str) or not pattern:
            raise BadRequestData("Query: EntitySelector idPattern must be a non-empty string")
        out["idPattern"] = pattern
    return out


def _geo(raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequestData("Query: 'geoQ' must be a GeoQuery object (5.2.13)")
    out: dict[str, str] = {}
    for key in _GEO_MEMBERS:
        value = raw.get(key)
        if value is None:
            continue
        out[key] = value if isinstance(value, str) else orjson.dumps(value).decode()
    return out


def _join_level(value: object) -> None:
    if value is not None and (type(value) is not int or value < 1):
        raise BadRequestData(f"Query: joinLevel must be a positive integer, got {value!r}")


@router.post("/query", summary="Query entities by a Query body (5.7.2, 6.23)")
async def query_by_body(
    request: Request,
    broker: Broker,
    resolver: Resolver,
    tenant: Tenant,
    accept: AcceptGeo,  # GeoJSON too (6.3.15), as GET /entities
    limit: Str = None,
    offset: Str = None,
    count: Str = None,
    options: Str = None,
    format: Str = None,
    geometryProperty: Str = None,
) -> Response:
    body, source = await read_body(request)
    if not isinstance(body, dict):
        raise BadRequestData("the request body must be a Query object (5.2.23)")
    if body.get("type") != "Query":
        raise BadRequestData("a Query's type must be 'Query' (5.2.23)")
    if "temporalQ" in body:
        raise BadRequestData(
            "Query: temporalQ is only for Query Temporal Evolution of Entities (5.2.23, 5.7.4)"
        )
    _join_level(body.get("joinLevel"))
    ctx = await resolver.resolve(source)
    setattr(
        request.state, BODY_PARAMS, {k: str(body[k]) for k in ("join", "joinLevel") if k in body}
    )
    params: dict[str, Any] = {
        **_selectors(body.get("entities")),
        **_geo(body.get("geoQ")),
        "attrs": _names(body, "attrs"),
        "pick": _names(body, "pick"),
        "omit": _names(body, "omit"),
        "q": _string(body, "q"),
        "scopeQ": _string(body, "scopeQ"),
        "csf": _string(body, "csf"),
        "lang": _string(body, "lang"),
        "datasetId": _names(body, "datasetId"),
        "limit": limit,
        "offset": offset,
        "count": count,
        "options": options,
        "format": format,
        "geometryProperty": geometryProperty,
    }
    # GET /entities takes the same selection; pass what it accepts (it grows with features).
    accepted = inspect.signature(entities.query_entities).parameters
    chosen = {k: v for k, v in params.items() if k in accepted and v is not None}
    return await entities.query_entities(
        request=request, broker=broker, tenant=tenant, ctx=ctx, accept=accept, **chosen
    )
