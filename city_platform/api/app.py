"""The FastAPI application: routers, error mapping and access log.

Every error leaves as RFC 7807 ProblemDetails JSON with an NGSI-LD error type (CIM 009 5.5.2);
an unexpected exception is logged with its traceback and answered 500 without one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from city_platform.allowlist import EndpointAllowList
from city_platform.api.access import AccessLog
from city_platform.api.bearer import BearerAuth, document_security
from city_platform.api.guard import TargetGuard
from city_platform.api.length import LengthRequired
from city_platform.api.slashes import CollectionSlash, original_path
from city_platform.api.tenancy import TenantEcho
from city_platform.broker import ContextBroker
from city_platform.errors import (
    BadRequestData,
    InvalidRequest,
    OperationNotSupported,
    PlatformError,
    ResourceNotFound,
)
from city_platform.ldcontext import ContextResolver
from city_platform.storage.base import Storage

log = logging.getLogger(__name__)

API_PREFIX = "/ngsi-ld/v1"


def problem_response(error: PlatformError) -> Response:
    return Response(
        orjson.dumps(error.problem()), status_code=error.status, media_type="application/json"
    )


# DELETE on entities/{id}/attrs/ with its trailing slash (slashes.py keeps the original path).
_DELETE_ALL_ATTRS = re.compile(re.escape(API_PREFIX) + r"/entities/[^/]+/attrs/")


def create_app(
    storage: Storage,
    *,
    allow_remote_contexts: bool = True,
    context_dir: Path | None = None,
    auth_key: bytes | None = None,
    allow_endpoints: Sequence[str] = (),
) -> FastAPI:
    """Build the platform app around a storage backend (opened and closed by the lifespan).

    ``context_dir``: a directory of ``*.jsonld`` @context files resolved and served locally.
    ``auth_key``: the HS256 key of the API's bearer tokens; None leaves the API open
    (api/bearer.py).  ``allow_endpoints``: the URL prefixes notification and registration
    endpoints and remote @contexts must lie under; empty allows every URL (allowlist.py)."""
    from city_platform.api.routes import batch, entities, meta, subscriptions, temporal, types  # noqa: PLC0415  # noqa: PLC0415
    from city_platform.subscriptions.manager import SubscriptionManager  # noqa: PLC0415

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with storage:
            await contexts.open_registry(app.state.resolver, storage)  # hosted @contexts, 5.13
            manager = SubscriptionManager(app.state.broker, app.state.resolver)
            app.state.subscriptions = manager
            async with manager:
                yield

    app = FastAPI(
        title="r197-testbed smart-city platform",
        summary="An NGSI-LD (ETSI GS CIM 009) context broker subset",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # /docs is served from shipped assets: routes/docs.py
        redoc_url=None,
        # No 307 from /entities/ to /entities: an empty path segment is a bad request (below).
        redirect_slashes=False,
    )
    app.state.broker = ContextBroker(storage)
    app.state.allow_list = EndpointAllowList(allow_endpoints)
    app.state.resolver = ContextResolver(
        allow_remote=allow_remote_contexts, directory=context_dir, allow_list=app.state.allow_list
    )
    for module in (entities, batch, temporal, subscriptions, types):
        app.include_router(module.router, prefix=API_PREFIX)
    from city_platform.api.routes import query_ops  # noqa: PLC0415  # POST entityOperations/query

    app.include_router(query_ops.router, prefix=API_PREFIX)
    app.include_router(meta.router)
    from city_platform.api.routes import docs  # noqa: PLC0415  # offline Swagger UI

    app.include_router(docs.router)
    from city_platform.api.routes import contexts  # noqa: PLC0415  # the @context API, 5.13

    app.include_router(contexts.router, prefix=API_PREFIX)
    from city_platform.api.routes import csources  # noqa: PLC0415  # registrations, 5.9-5.11

    app.include_router(csources.router, prefix=API_PREFIX)

    @app.exception_handler(PlatformError)
    async def on_platform_error(request: Request, exc: PlatformError) -> Response:
        log.warning(
            "%s %s -> %d %s: %s",
            request.method,
            request.url.path,
            exc.status,
            exc.type_name,
            exc.detail,
        )
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return problem_response(InvalidRequest(details or "invalid request"))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        path = original_path(request.scope)  # with the trailing slash slashes.py dropped
        # An empty id or name segment (/entities/, /entities/{id}/attrs/): the request lacks
        # a mandatory identifier, 400 BadRequestData (ETSI suite 056_02_02 and alike).
        # DELETE entities/{id}/attrs/ (no attribute name) is left to the 405 below: Delete
        # Entity Attribute is only defined on entities/{id}/attrs/{attrId} (ETSI 013_02_03).
        if (
            exc.status_code in (404, 405)
            and path.startswith(API_PREFIX + "/")
            and "" in path[len(API_PREFIX) + 1 :].split("/")
            and not (request.method == "DELETE" and _DELETE_ALL_ATTRS.fullmatch(path))
        ):
            return problem_response(BadRequestData(f"empty path segment in {path!r}"))
        if exc.status_code == 404:
            error: PlatformError = ResourceNotFound(f"no resource at {request.url.path}")
        elif exc.status_code == 405:
            error = OperationNotSupported(
                f"{request.method} is not supported on {request.url.path}"
            )
            return Response(
                orjson.dumps(error.problem()), status_code=405, media_type="application/json"
            )
        else:
            error = BadRequestData(str(exc.detail))
        return problem_response(error)

    @app.exception_handler(Exception)
    async def on_unhandled(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem_response(PlatformError("internal error; see the platform log"))

    app.add_middleware(TargetGuard)  # NUL, non-UTF-8, oversized query strings: 400 (guard.py)
    # entities/ and entities/{id}/attrs/ as the collections the ETSI suite posts to (slashes.py)
    app.add_middleware(CollectionSlash, prefix=API_PREFIX)
    app.add_middleware(LengthRequired)  # 6.3.4: POST/PATCH/PUT without Content-Length: 411
    if auth_key is not None:  # RFC 6750 bearer tokens; 401/403 before any other check
        app.add_middleware(BearerAuth, key=auth_key)
        document_security(app)
    app.add_middleware(TenantEcho)  # 6.3.14: NGSILD-Tenant of the request on every response
    app.add_middleware(AccessLog)
    return app
