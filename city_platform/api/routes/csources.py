"""``/csourceRegistrations`` (CIM 009 5.9, 5.10; HTTP binding 6.8, 6.9) and
``/csourceSubscriptions`` (5.11; 6.10, 6.11): context source registrations and the
subscriptions to them."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from city_platform import entities as ent
from city_platform.api.deps import (
    Accept,
    AllowList,
    Broker,
    LinkContext,
    Resolver,
    Tenant,
    link_source,
)
from city_platform.api.negotiation import read_body, render
from city_platform.api.params import count_header, parse_bool, parse_options, parse_page
from city_platform.api.redact import hides_secrets, redact_registration, redact_subscription
from city_platform.api.routes.contexts import implicit_context
from city_platform.errors import BadRequestData
from city_platform.registrations.federation import get_manager
from city_platform.registrations.manager import RegistrationManager
from city_platform.registrations.model import Selection, TemporalFilter, render_registration
from city_platform.search import split_list

router = APIRouter(tags=["context sources"])

Str = Annotated[str | None, Query()]
Manager = Annotated[RegistrationManager, Depends(get_manager)]
REGS = "/csourceRegistrations"
SUBS = "/csourceSubscriptions"


def _location(kind: str, doc_id: str) -> dict[str, str]:
    return {"Location": f"/ngsi-ld/v1{kind}/{quote(doc_id, safe=':')}"}


@router.post(REGS, status_code=201, summary="Register Context Source (5.9.2)")
async def create_registration(
    request: Request, manager: Manager, resolver: Resolver, tenant: Tenant, allow: AllowList
) -> Response:
    body, source = await read_body(request)
    allow.check_registration(body)  # --allow-endpoint (SSRF): the platform forwards there
    ctx = await resolver.resolve(source)
    reg_id = await manager.create(tenant, body, ctx, source)
    return Response(status_code=201, headers=_location(REGS, reg_id))


@router.get(REGS, summary="Query Context Source Registrations (5.10.2)")
async def query_registrations(
    request: Request,
    manager: Manager,
    broker: Broker,
    tenant: Tenant,
    ctx: LinkContext,
    accept: Accept,
    id: Str = None,
    type: Str = None,
    idPattern: Str = None,
    attrs: Str = None,
    q: Str = None,
    csf: Str = None,
    georel: Str = None,
    geometry: Str = None,
    coordinates: Str = None,
    geoproperty: Str = None,
    timerel: Str = None,
    timeAt: Str = None,
    endTimeAt: Str = None,
    timeproperty: Str = None,
    limit: Str = None,
    offset: Str = None,
    count: Str = None,
    options: Str = None,
) -> Response:
    opts = parse_options(options)
    lim, off = parse_page(limit, offset)
    want_count = parse_bool(count, "count")
    if not any((id, type, idPattern, attrs, q, csf, georel, timerel)):
        raise BadRequestData(
            "query context source registrations needs at least one of type, attrs, id, "
            "idPattern, q, csf, a geo-query or a temporal query (5.10.2)"
        )
    temporal = TemporalFilter.parse(timerel, timeAt, endTimeAt, timeproperty)
    selection = Selection.build(
        ctx,
        types=type,
        ids=split_list(id),
        id_pattern=idPattern,
        attrs=split_list(attrs),
        q=q,
        csf=csf,
        georel=georel,
        geometry=geometry,
        coordinates=coordinates,
        geoproperty=geoproperty,
        temporal=temporal,
    )
    await broker.check_tenant(tenant)
    found = manager.query(tenant, selection, ctx)
    headers = {"NGSILD-Results-Count": str(len(found))} if want_count else {}
    page = [render_registration(r, ctx, sys_attrs=opts.sys_attrs) for r in found[off : off + lim]]
    if hides_secrets(request):  # contextSourceInfo credentials are write-only below admin
        page = [redact_registration(doc) for doc in page]
    return render(page, media=accept, context=link_source(request), headers=headers)


@router.get(REGS + "/{reg_id}", summary="Retrieve Context Source Registration (5.10.1)")
async def retrieve_registration(
    request: Request,
    reg_id: str,
    manager: Manager,
    broker: Broker,
    tenant: Tenant,
    ctx: LinkContext,
    accept: Accept,
    options: Str = None,
) -> Response:
    opts = parse_options(options)
    ent.check_uri(reg_id, "registration id")
    await broker.check_tenant(tenant)
    body = manager.render(tenant, reg_id, ctx, sys_attrs=opts.sys_attrs)
    if hides_secrets(request):
        body = redact_registration(body)
    return render(body, media=accept, context=link_source(request))


@router.patch(
    REGS + "/{reg_id}", status_code=204, summary="Update Context Source Registration (5.9.3)"
)
async def update_registration(
    request: Request,
    reg_id: str,
    manager: Manager,
    resolver: Resolver,
    tenant: Tenant,
    allow: AllowList,
) -> Response:
    ent.check_uri(reg_id, "registration id")
    body, source = await read_body(request, patch=True)
    allow.check_registration(body)  # --allow-endpoint (SSRF)
    ctx = await resolver.resolve(source)
    await manager.update(tenant, reg_id, body, ctx)
    return Response(status_code=204)


@router.delete(
    REGS + "/{reg_id}", status_code=204, summary="Delete Context Source Registration (5.9.4)"
)
async def delete_registration(reg_id: str, manager: Manager, tenant: Tenant) -> Response:
    await manager.delete(tenant, reg_id)
    return Response(status_code=204)


# -- csource subscriptions (5.11) --------------------------------------------------------------


@router.post(SUBS, status_code=201, summary="Create Context Source Registration Subscription")
async def create_subscription(
    request: Request, manager: Manager, resolver: Resolver, tenant: Tenant, allow: AllowList
) -> Response:
    """5.11.2."""
    body, source = await read_body(request)
    allow.check_subscription(body)  # --allow-endpoint (SSRF)
    ctx = await resolver.resolve(source)
    source = await implicit_context(request, resolver, tenant, source)  # 5.13.1
    sub_id = await manager.create_subscription(tenant, body, ctx, source)
    return Response(status_code=201, headers=_location(SUBS, sub_id))


@router.get(SUBS, summary="Query Context Source Registration Subscriptions (5.11.5)")
async def query_subscriptions(
    request: Request,
    manager: Manager,
    tenant: Tenant,
    ctx: LinkContext,
    accept: Accept,
    limit: Str = None,
    offset: Str = None,
    count: Str = None,
    options: Str = None,
) -> Response:
    opts = parse_options(options)
    lim, off = parse_page(limit, offset)
    everything = manager.subscriptions(tenant, ctx, sys_attrs=opts.sys_attrs)
    if hides_secrets(request):  # receiverInfo credentials are write-only below admin
        everything = [redact_subscription(doc) for doc in everything]
    headers = count_header(count, len(everything))
    return render(
        everything[off : off + lim], media=accept, context=link_source(request), headers=headers
    )


@router.get(SUBS + "/{sub_id}", summary="Retrieve Context Source Registration Subscription")
async def retrieve_subscription(
    request: Request,
    sub_id: str,
    manager: Manager,
    tenant: Tenant,
    ctx: LinkContext,
    accept: Accept,
    options: Str = None,
) -> Response:
    """5.11.4."""
    opts = parse_options(options)
    body = manager.render_subscription(tenant, sub_id, ctx, sys_attrs=opts.sys_attrs)
    if hides_secrets(request):
        body = redact_subscription(body)
    return render(body, media=accept, context=link_source(request))


@router.patch(
    SUBS + "/{sub_id}", status_code=204, summary="Update Context Source Registration Subscription"
)
async def update_subscription(
    request: Request,
    sub_id: str,
    manager: Manager,
    resolver: Resolver,
    tenant: Tenant,
    allow: AllowList,
) -> Response:
    """5.11.3."""
    ent.check_uri(sub_id, "subscription id")
    body, source = await read_body(request, patch=True)
    allow.check_subscription(body)  # --allow-endpoint (SSRF)
    ctx = await resolver.resolve(source)
    await manager.update_subscription(tenant, sub_id, body, ctx)
    return Response(status_code=204)


@router.delete(
    SUBS + "/{sub_id}", status_code=204, summary="Delete Context Source Registration Subscription"
)
async def delete_subscription(sub_id: str, manager: Manager, tenant: Tenant) -> Response:
    """5.11.6."""
    await manager.delete_subscription(tenant, sub_id)
    return Response(status_code=204)
