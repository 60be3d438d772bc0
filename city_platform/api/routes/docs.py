"""The interactive API documentation, served with no outside request (the testbed works offline).

FastAPI's default ``/docs`` page loads Swagger UI from a CDN and its favicon from the FastAPI
site; here ``/docs`` names only the copies shipped in ``city_platform/api/static/swagger/``
(swagger-ui-dist, Apache-2.0, see the README there), served under ``/docs/static/``.  The
ReDoc page (``/redoc``) would need another CDN bundle and is turned off.
"""

from __future__ import annotations

import functools
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from city_platform.errors import ResourceNotFound

router = APIRouter(include_in_schema=False)

STATIC_PREFIX = "/docs/static"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "swagger-ui-bundle.js.LICENSE.txt": "text/plain; charset=utf-8",
    "LICENSE": "text/plain; charset=utf-8",
    "NOTICE": "text/plain; charset=utf-8",
}


@functools.cache
def asset(name: str) -> bytes:
    """One shipped Swagger UI file (read once)."""
    return resources.files("city_platform.api").joinpath("static", "swagger", name).read_bytes()


@router.get("/docs")
async def get_docs(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}{STATIC_PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{STATIC_PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{root}{STATIC_PREFIX}/favicon-32x32.png",
        # No validator badge: Swagger UI would send the OpenAPI document to validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(STATIC_PREFIX + "/{name}")
async def get_docs_asset(name: str) -> Response:
    media = ASSETS.get(name)
    if media is None:
        raise ResourceNotFound(f"no documentation asset named {name!r}")
    return Response(asset(name), media_type=media, headers={"Cache-Control": "max-age=86400"})
