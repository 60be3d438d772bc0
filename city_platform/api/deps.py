"""Request-scoped dependencies (FastAPI ``Annotated`` style, as in the FastAPI template)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request

from city_platform.allowlist import EndpointAllowList
from city_platform.api.negotiation import choose_response_type, context_from_link
from city_platform.broker import ContextBroker
from city_platform.entities import check_name
from city_platform.errors import BadRequestData
from city_platform.ldcontext import Context, ContextResolver


def get_broker(request: Request) -> ContextBroker:
    broker: ContextBroker = request.app.state.broker
    return broker


def get_resolver(request: Request) -> ContextResolver:
    resolver: ContextResolver = request.app.state.resolver
    return resolver


def get_allow_list(request: Request) -> EndpointAllowList:
    allow: EndpointAllowList = request.app.state.allow_list
    return allow


def get_tenant(
    ngsild_tenant: Annotated[str | None, Header(alias="NGSILD-Tenant")] = None,
) -> str:
    """The tenant of the request (CIM 009 4.14, 6.3.14); "" is the default tenant."""
    if ngsild_tenant is None:
        return ""
    tenant = ngsild_tenant.strip()
    if tenant and len(tenant) > 256:
        raise BadRequestData("NGSILD-Tenant header longer than 256 characters")
    return check_name(tenant, "tenant") if tenant else ""


def get_accept(request: Request) -> str:
    return choose_response_type(request.headers.get("accept"))


def get_accept_geo(request: Request) -> str:
    """Accept for Retrieve and Query Entities, which also offer application/geo+json (6.3.15)."""
    return choose_response_type(request.headers.get("accept"), geo=True)


async def get_link_context(request: Request) -> Context:
    """The context for GET/DELETE requests: the Link header's, else the core context."""
    resolver = get_resolver(request)
    return await resolver.resolve(context_from_link(request.headers.get("link")))


def link_source(request: Request) -> Any:
    return context_from_link(request.headers.get("link"))


Broker = Annotated[ContextBroker, Depends(get_broker)]
Resolver = Annotated[ContextResolver, Depends(get_resolver)]
AllowList = Annotated[EndpointAllowList, Depends(get_allow_list)]
Tenant = Annotated[str, Depends(get_tenant)]
Accept = Annotated[str, Depends(get_accept)]
AcceptGeo = Annotated[str, Depends(get_accept_geo)]
LinkContext = Annotated[Context, Depends(get_link_context)]
