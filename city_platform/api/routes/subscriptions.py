"""``/subscriptions`` (CIM 009 5.8): create, query, retrieve, update and delete subscriptions."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from city_platform.api.deps import (
    Accept,
    AllowList,
    LinkContext,
    Resolver,
    Tenant,
    link_source,
)
from city_platform.api.negotiation import read_body, render
from city_platform.api.params import count_header, page_links, parse_options, parse_page
from city_platform.api.redact import hides_secrets, redact_subscription
from city_platform.api.routes.contexts import implicit_context
from city_platform.api.routes.types import only_params
from city_platform.subscriptions.manager import SubscriptionManager

router = APIRouter(prefix="/subscriptions", tags=["subscriptions"])

Str = Annotated[str | None, Query()]


def get_manager(request: Request) -> SubscriptionManager:
    manager: SubscriptionManager = request.app.state.subscriptions
    return manager


Manager = Annotated[SubscriptionManager, Depends(get_manager)]


@router.post("", status_code=201, summary="Create subscription (5.8.1)")
async def create_subscription(
    request: Request, manager: Manager, resolver: Resolver, tenant: Tenant, allow: AllowList
) -> Response:
    only_params(request)  # 6.3.20: an unknown parameter is InvalidRequest (ETSI 059_01_06)
    body, source = await read_body(request)
    allow.check_subscription(body)  # --allow-endpoint (SSRF): before any @context is fetched
    ctx = await resolver.resolve(source)
    source = await implicit_context(request, resolver, tenant, source)  # 5.13.1
    sub_id = await manager.create(tenant, body, ctx, source)
    headers = {"Location": f"/ngsi-ld/v1/subscriptions/{quote(sub_id, safe=':')}"}
    return Response(status_code=201, headers=headers)


@router.get("", summary="Query subscriptions (5.8.4)")
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
    only_params(request, "limit", "offset", "count", "options")  # 6.3.20 (ETSI 059_01_07)
    opts = parse_options(options)
    lim, off = parse_page(limit, offset)
    everything = manager.all(tenant, ctx, sys_attrs=opts.sys_attrs)
    headers = count_header(count, len(everything))
    page = everything[off : off + lim]
    if hides_secrets(request):  # receiverInfo credentials are write-only below admin
        page = [redact_subscription(doc) for doc in page]
    links = page_links(request, "/subscriptions", lim, off, len(page), len(everything))
    if links:
        headers["Link"] = links  # render() adds the context link after these
    return render(page, media=accept, context=link_source(request), headers=headers)


@router.get("/{sub_id}", summary="Retrieve subscription (5.8.3)")
async def retrieve_subscription(
    request: Request,
    sub_id: str,
    manager: Manager,
    tenant: Tenant,
    ctx: LinkContext,
    accept: Accept,
    options: Str = None,
) -> Response:
    opts = parse_options(options)
    body = manager.render(tenant, sub_id, ctx, sys_attrs=opts.sys_attrs)
    if hides_secrets(request):  # receiverInfo credentials are write-only below admin
        body = redact_subscription(body)
    return render(body, media=accept, context=link_source(request))


@router.patch("/{sub_id}", status_code=204, summary="Update subscription (5.8.2)")
async def update_subscription(
    request: Request,
    sub_id: str,
    manager: Manager,
    resolver: Resolver,
    tenant: Tenant,
    allow: AllowList,
) -> Response:
    body, source = await read_body(request, patch=True)
    allow.check_subscription(body)  # --allow-endpoint (SSRF)
    ctx = await resolver.resolve(source)
    await manager.update(tenant, sub_id, body, ctx)
    return Response(status_code=204)


@router.delete("/{sub_id}", status_code=204, summary="Delete subscription (5.8.5)")
async def delete_subscription(sub_id: str, manager: Manager, tenant: Tenant) -> Response:
    await manager.delete(tenant, sub_id)
    return Response(status_code=204)
