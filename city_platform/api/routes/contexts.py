"""The @context API: ``/ngsi-ld/v1/jsonldContexts`` (CIM 009 5.13, HTTP binding 6.31-6.32).

- ``POST /jsonldContexts``: Add @context (5.13.2), 201 with ``Location`` (a path under our API);
  the remote @contexts it names are fetched then, and become Cached entries.
- ``GET /jsonldContexts?details=&kind=``: List @contexts (5.13.3), URLs or ContextInfo objects.
- ``GET /jsonldContexts/{id}?details=``: Serve @context (5.13.4), by local id or by URL.
- ``DELETE /jsonldContexts/{id}?reload=``: Delete and Reload @context (5.13.5), 204.

Hosted and ImplicitlyCreated entries belong to the tenant of the request that made them
(5.5.10); Cached ones (remote documents and the core context) are seen by every tenant.  A
@context still in use (by an entity's request or a subscription) may be deleted: the spec puts
no condition on it, later requests naming its URL fail as for any unreachable @context.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from city_platform.api.deps import Resolver, Tenant
from city_platform.api.negotiation import read_limited
from city_platform.errors import (
    BadRequestData,
    InvalidRequest,
    ResourceNotFound,
    UnsupportedMediaType,
)
from city_platform.ldcontext import (
    CORE_CONTEXT_URL,
    MAX_CONTEXT_BYTES,
    ContextResolver,
    is_core_url,
)
from city_platform.ldregistry import KINDS, ContextEntry, Kind
from city_platform.limits import check_depth
from city_platform.storage.base import Storage

router = APIRouter(tags=["@context"])
JSON = "application/json"


async def open_registry(resolver: ContextResolver, storage: Storage) -> None:
    """Load the Hosted and ImplicitlyCreated @contexts from storage and write later changes
    through to it."""
    resolver.registry.load_stored(await storage.list_jsonld_contexts())

    async def persist(tenant: str, local_id: str, doc: dict[str, Any] | None) -> None:
        if doc is None:
            await storage.delete_jsonld_context(tenant, local_id)
        else:
            await storage.put_jsonld_context(tenant, local_id, doc)

    resolver.registry.persist = persist


def _flag(value: str | None, name: str) -> bool:
    """A boolean query parameter: absent, ``true`` or ``false`` (anything else 400, 5.13)."""
    if value is None or value == "false":
        return False
    if value == "true":
        return True
    raise BadRequestData(f"{name} must be 'true' or 'false', not {value!r}")


def _kind(value: str | None) -> Kind | None:
    if value is None:
        return None
    for kind in KINDS:
        if value == kind:
            return kind
    raise BadRequestData(f"kind must be one of {', '.join(KINDS)}, not {value!r}")


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON)


def _base(request: Request) -> str:
    return str(request.base_url)


def _check_context(value: Any, *, depth: int = 0) -> None:
    """The @context value must be a JSON-LD context: a URL, an object or an array of those,
    each term defined by a string, an object or null (5.13.2.4 applies 5.5.4 validation)."""
    if isinstance(value, str):
        if not value:
            raise BadRequestData("@context: an empty string is not a context URL")
    elif isinstance(value, dict):
        for key, definition in value.items():
            if key.startswith("@") or definition is None:
                continue
            if not isinstance(definition, str | dict):
                raise BadRequestData(
                    f"@context: term {key!r} is defined by a {type(definition).__name__}, not "
                    "by a string, an object or null"
                )
    elif isinstance(value, list) and depth == 0:
        for item in value:
            _check_context(item, depth=1)
    else:
        raise BadRequestData(
            "@context must be a URL, an object or an array of those, "
            f"not {type(value).__name__}: {orjson.dumps(value).decode()[:80]}"
        )


@router.post("/jsonldContexts", status_code=201, summary="Add @context (CIM 009 5.13.2)")
async def post_jsonld_contexts(request: Request, resolver: Resolver, tenant: Tenant) -> Response:
    media = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
    if media not in (JSON, "application/ld+json"):
        raise UnsupportedMediaType(
            f"Content-Type {media!r}: send the @context as application/json or ld+json"
        )
    raw = await read_limited(request, MAX_CONTEXT_BYTES, "@context document")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    check_depth(document, "the @context document")  # the nesting limit, city_platform/limits.py
    if not isinstance(document, dict) or "@context" not in document:
        raise InvalidRequest("the body must be a JSON object with an '@context' member")
    context = document["@context"]
    _check_context(context)
    # 5.13.2.4: the @context must be valid JSON-LD, so it is processed as a request's would be:
    # the remote @contexts it names are fetched (and kept as Cached entries, 5.13.1), a protected
    # term redefined is BadRequestData, one that cannot be retrieved LdContextNotAvailable (as
    # for any request, 5.5.2).  Nothing is stored then.
    await resolver.resolve(context)
    entry = await resolver.registry.add_hosted(tenant, {"@context": context})
    return Response(
        status_code=201, headers={"Location": f"/ngsi-ld/v1/jsonldContexts/{entry.local_id}"}
    )


@router.get("/jsonldContexts", summary="List @contexts (CIM 009 5.13.3)")
async def get_jsonld_contexts(
    request: Request,
    resolver: Resolver,
    tenant: Tenant,
    details: Annotated[str | None, Query()] = None,
    kind: Annotated[str | None, Query()] = None,
) -> Response:
    detailed = _flag(details, "details")
    entries = resolver.registry.visible(tenant, _kind(kind))
    base = _base(request)
    if detailed:
        return _json([e.info(base) for e in entries])
    return _json([e.public_url(base) for e in entries])


def _find(resolver: ContextResolver, tenant: str, context_id: str) -> ContextEntry | None:
    if is_core_url(context_id):
        context_id = CORE_CONTEXT_URL  # every core version is the shipped copy
    return resolver.registry.find(tenant, context_id)


@router.get("/jsonldContexts/{context_id:path}", summary="Serve @context (CIM 009 5.13.4)")
async def get_jsonld_context(
    request: Request,
    context_id: str,
    resolver: Resolver,
    tenant: Tenant,
    details: Annotated[str | None, Query()] = None,
) -> Response:
    detailed = _flag(details, "details")
    entry = _find(resolver, tenant, context_id)
    if entry is None:
        raise ResourceNotFound(f"no @context {context_id!r} here")
    if detailed:
        return _json(entry.info(_base(request)))
    return _json(entry.document)


@router.delete(
    "/jsonldContexts/{context_id:path}",
    status_code=204,
    summary="Delete and Reload @context (CIM 009 5.13.5)",
)
async def delete_jsonld_context(
    context_id: str,
    resolver: Resolver,
    tenant: Tenant,
    reload: Annotated[str | None, Query()] = None,
) -> Response:
    again = _flag(reload, "reload")
    entry = _find(resolver, tenant, context_id)
    if again:
        if entry is None or entry.kind != "Cached" or entry.url is None:
            raise BadRequestData(
                f"reload=true applies to Cached @contexts only; {context_id!r} is "
                + ("unknown" if entry is None else entry.kind)
            )
        await resolver.reload(entry.url)  # LdContextNotAvailable keeps the old copy
        return Response(status_code=204)
    if entry is None:
        raise ResourceNotFound(f"no @context {context_id!r} here")
    if entry.url == CORE_CONTEXT_URL:
        raise BadRequestData("the NGSI-LD core @context cannot be deleted (reload=true reloads it)")
    await resolver.registry.delete(entry)
    resolver.forget(entry.url)
    return Response(status_code=204)


async def implicit_context(
    request: Request, resolver: ContextResolver, tenant: str, source: Any
) -> Any:
    """The @context a subscription keeps: an inline or array @context becomes an
    ImplicitlyCreated entry whose URL notifications name in their Link header (5.13.1, 5.8.1);
    a single URL (or none) stays as it is, and so does ``["url"]``, which is the context "url":
    notifications name that URL in their Link header (ETSI 046_10 expects the subscriber's own
    URL there)."""
    if isinstance(source, list) and len(source) == 1 and isinstance(source[0], str):
        source = source[0]
    if source is None or isinstance(source, str):
        return source
    entry = await resolver.registry.add_implicit(tenant, source)
    return entry.public_url(_base(request))
