"""The dashboard's HTTP server (Starlette): the page, its JSON API, /events and /notify.

Routes::

    GET  /                      the page (static/index.html); /static/... its assets
    GET  /api/session           {"secure", "loggedIn"}: whether the page must show the login
    POST /login  /logout        paste a platform token / forget it (cookie session)
    GET  /api/entities          the city's entities (the user's token), for the map and table
    GET  /api/temporal/{id}     one attribute's history (temporal API, lastN or timerel)
    PATCH /api/entities/{id}/attrs   actuation, through the platform as a city application
    GET  /api/gateway           the gateway's /health, rejected readings from /metrics, and
                                the platform's /health
    GET  /api/inventory         protocol and format per device (--devices FILE, optional)
    GET  /api/reports, /api/report?name=, /api/matrix    the conformance reports
    GET  /events                Server-Sent Events: each notification as ``entities``
    POST /notify                the platform's notifications (the dashboard's notify token)

On a secure city (the dashboard has a token of its own) every /api route, /events included,
wants a login: without one it answers 401, and a platform refusal (401, 403) is passed to the
page as it came, so a read token's actuation shows the platform's 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import mimetypes
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from city_platform.dashboard import reports as rep
from city_platform.dashboard.gateway_view import rejected_by_device, totals
from city_platform.dashboard.hub import Hub, subscription
from city_platform.dashboard.sessions import COOKIE, Sessions, cookie_header

log = logging.getLogger("city_platform.dashboard")

STATIC = Path(__file__).parent / "static"
# Media types the platform's mimetypes table may lack or get wrong (RFC 7946 12, RFC 9239).
mimetypes.add_type("application/geo+json", ".geojson")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/css", ".css")

# The Smart Data Model types the city's devices report (gateway/profile_data/*.toml) and their
# Device entities; --type replaces the list.
CITY_TYPES = (
    "AirQualityObserved", "WeatherObserved", "NoiseLevelObserved", "TrafficFlowObserved",
    "ParkingSpot", "Streetlight", "FloodMonitoring", "SinglePhaseAcMeasurement",
    "AgriParcelRecord", "IndoorEnvironmentObserved",
)  # fmt: skip
HISTORY_MAX = 1000  # lastN at most (the platform's own limit of 1000 per page)


@dataclass
class DashboardConfig:
    platform_url: str
    gateway_url: str | None = "http://[::1]:8081"
    token: str | None = None  # the dashboard's own (subscription); set = a secure city
    reports: Sequence[Path] = (Path("conformance-report"),)  # where report JSON files are
    devices: dict[str, Any] = field(default_factory=dict)  # device id -> protocol, format, kind
    types: Sequence[str] = CITY_TYPES
    public_url: str = "http://[::1]:8090"  # how the platform reaches /notify
    notify_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    subscribe: bool = True

    @property
    def secure(self) -> bool:
        return self.token is not None


def _problem(status: int, title: str, detail: str = "") -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="r197-dashboard"'} if status == 401 else None
    return JSONResponse({"title": title, "detail": detail, "status": status}, status, headers)


def _passed_on(answer: httpx.Response) -> Response:
    """A platform answer as the page gets it: status, JSON body and WWW-Authenticate."""
    headers = {k: v for k, v in answer.headers.items() if k.lower() == "www-authenticate"}
    media = answer.headers.get("content-type", "application/json").split(";")[0]
    return Response(answer.content, answer.status_code, headers, media_type=media)


class Dashboard:
    """The state behind the routes: sessions, the browsers' hub, the platform client."""

    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self.sessions = Sessions()
        self.hub = Hub()
        self.client = httpx.AsyncClient(timeout=10)
        self.subscribed = asyncio.Event()
        self.notify_refused = 0
        # One id per dashboard address, as the gateway's: a restart (even after SIGKILL)
        # updates its subscription instead of leaving one that notifies nobody.
        where = urlsplit(config.public_url)
        self.sub_id = f"urn:ngsi-ld:Subscription:r197-dashboard-{where.port or 80}"

    # -- the user's platform calls --------------------------------------------------------------

    def user_headers(self, request: Request) -> dict[str, str] | None:
        """The user's Authorization header ({} on an open city), or None: not logged in."""
        if not self.config.secure:
            return {}
        token = self.sessions.token(request.cookies.get(COOKIE))
        return None if token is None else {"Authorization": f"Bearer {token}"}

    async def platform(
        self, method: str, path: str, headers: dict[str, str], **kwargs: Any
    ) -> httpx.Response | Response:
        url = self.config.platform_url.rstrip("/") + path
        try:
            return await self.client.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            log.warning("dashboard: platform %s %s failed: %s", method, path, exc)
            return _problem(502, "platform unreachable", str(exc))

    # -- the subscription -----------------------------------------------------------------------

    async def subscribe_loop(self) -> None:
        """Create the subscription, retrying with back-off until the platform takes it."""
        endpoint = self.config.public_url.rstrip("/") + "/notify"
        doc = subscription(self.sub_id, endpoint, self.config.types, self.config.notify_token)
        headers = {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}
        api = self.config.platform_url.rstrip("/") + "/ngsi-ld/v1/subscriptions"
        delay, refused = 0.5, 0
        while True:
            try:
                answer = await self.client.post(api, json=doc, headers=headers)
                if answer.status_code == 409:  # ours from before: the new notify token in it
                    patch = {k: v for k, v in doc.items() if k not in ("id", "type")}
                    answer = await self.client.patch(
                        f"{api}/{self.sub_id}", json=patch, headers=headers
                    )
                if answer.status_code in (201, 204):
                    log.info("dashboard: subscribed for %s at %s", self.sub_id, endpoint)
                    self.subscribed.set()
                    return
                if answer.status_code != refused:  # once per status, not every retry
                    refused = answer.status_code
                    log.warning(
                        "dashboard: subscription refused with %s: %s", refused, answer.text[:300]
                    )
            except httpx.HTTPError as exc:
                log.debug("dashboard: platform not reachable yet: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def unsubscribe(self) -> None:
        if not self.subscribed.is_set():
            return
        headers = {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}
        api = f"{self.config.platform_url.rstrip('/')}/ngsi-ld/v1/subscriptions/{self.sub_id}"
        with contextlib.suppress(httpx.HTTPError):
            await self.client.delete(api, headers=headers, timeout=2)


def create_app(config: DashboardConfig) -> Starlette:
    dash = Dashboard(config)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def session(request: Request) -> Response:
        logged = dash.user_headers(request) is not None
        return JSONResponse({"secure": config.secure, "loggedIn": logged})

    async def login(request: Request) -> Response:
        """The pasted token is tried on the platform (a read of /types) before it is kept."""
        try:
            body = await request.json()
            token = str(body["token"]).strip()
        except (ValueError, KeyError, TypeError):
            return _problem(400, "bad login", 'send {"token": "<platform bearer token>"}')
        if not config.secure:
            return JSONResponse({"secure": False, "loggedIn": True})
        answer = await dash.platform(
            "GET", "/ngsi-ld/v1/types", {"Authorization": f"Bearer {token}"}
        )
        if isinstance(answer, httpx.Response) and answer.status_code == 200:
            sid = dash.sessions.create(token)
            return JSONResponse(
                {"secure": True, "loggedIn": True}, headers={"Set-Cookie": cookie_header(sid)}
            )
        if isinstance(answer, httpx.Response):
            log.info("dashboard: login refused by the platform (%s)", answer.status_code)
            return _problem(401, "token refused", f"the platform answered {answer.status_code}")
        return answer

    async def logout(request: Request) -> Response:
        dash.sessions.drop(request.cookies.get(COOKIE))
        return JSONResponse(
            {"loggedIn": False}, headers={"Set-Cookie": cookie_header("", max_age=0)}
        )

    def guarded(request: Request) -> dict[str, str] | Response:
        headers = dash.user_headers(request)
        return (
            _problem(401, "login required", "paste a platform token")
            if headers is None
            else headers
        )

    async def entities(request: Request) -> Response:
        headers = guarded(request)
        if isinstance(headers, Response):
            return headers
        out: list[Any] = []
        types = ",".join([*config.types, "Device"])
        for offset in range(0, 10_000, 1000):  # pages of the platform's maximum
            params = {"type": types, "limit": "1000", "offset": str(offset)}
            answer = await dash.platform("GET", "/ngsi-ld/v1/entities", headers, params=params)
            if not isinstance(answer, httpx.Response) or answer.status_code != 200:
                return answer if not isinstance(answer, httpx.Response) else _passed_on(answer)
            page = answer.json()
            out.extend(page)
            if len(page) < 1000:
                break
        return JSONResponse(out)

    async def temporal(request: Request) -> Response:
        headers = guarded(request)
        if isinstance(headers, Response):
            return headers
        q = request.query_params
        try:
            last = min(max(int(q.get("lastN", "100")), 1), HISTORY_MAX)
        except ValueError:
            return _problem(400, "bad lastN", "an integer")
        params = {"attrs": q.get("attr", ""), "lastN": str(last), "options": "temporalValues"}
        for name in ("timerel", "timeAt", "endTimeAt"):
            if name in q:
                params[name] = q[name]
        eid = quote(request.path_params["id"], safe=":")
        answer = await dash.platform(
            "GET", f"/ngsi-ld/v1/temporal/entities/{eid}", headers, params=params
        )
        return answer if not isinstance(answer, httpx.Response) else _passed_on(answer)

    async def patch_attrs(request: Request) -> Response:
        headers = guarded(request)
        if isinstance(headers, Response):
            return headers
        body = await request.body()
        eid = quote(request.path_params["id"], safe=":")
        answer = await dash.platform(
            "PATCH", f"/ngsi-ld/v1/entities/{eid}/attrs",
            {**headers, "Content-Type": "application/json"}, content=body,
        )  # fmt: skip
        if isinstance(answer, httpx.Response) and answer.status_code >= 400:
            log.info("dashboard: actuation of %s refused (%s)", eid, answer.status_code)
        return answer if not isinstance(answer, httpx.Response) else _passed_on(answer)

    async def gateway(request: Request) -> Response:
        headers = guarded(request)
        if isinstance(headers, Response):
            return headers
        out: dict[str, Any] = {"gateway": None, "rejected": {}, "totals": {}, "platform": None}
        if config.gateway_url:
            base = config.gateway_url.rstrip("/")
            try:
                health, metrics = await asyncio.gather(
                    dash.client.get(f"{base}/health", timeout=3),
                    dash.client.get(f"{base}/metrics", timeout=3),
                )
                out["gateway"] = health.json() if health.status_code == 200 else None
                out["rejected"] = rejected_by_device(metrics.text)
                out["totals"] = totals(metrics.text)
            except (httpx.HTTPError, ValueError) as exc:
                out["gatewayError"] = str(exc) or type(exc).__name__
        answer = await dash.platform("GET", "/health", {})
        if isinstance(answer, httpx.Response):
            try:
                out["platform"] = answer.json() if answer.status_code == 200 else None
            except ValueError:
                out["platform"] = None
        out["subscribed"] = dash.subscribed.is_set()
        return JSONResponse(out)

    async def inventory(request: Request) -> Response:
        headers = guarded(request)
        return headers if isinstance(headers, Response) else JSONResponse(config.devices)

    async def report_list(request: Request) -> Response:
        headers = guarded(request)
        if isinstance(headers, Response):
            return headers
        roots = [str(r) for r in config.reports]
        return JSONResponse({"roots": roots, "reports": rep.listing(config.reports)})

    async def report_one(request: Request) -> Response:
        headers = guarded(request)
        if isinstance(headers, Response):
            return headers
        doc = rep.by_name(config.reports, request.query_params.get("name", ""))
        return _problem(404, "no such report") if doc is None else JSONResponse(doc)

    async def report_matrix(request: Request) -> Response:
        headers = guarded(request)
        return (
            headers if isinstance(headers, Response) else JSONResponse(rep.matrix(config.reports))
        )

    async def events(request: Request) -> Response:
        headers = guarded(request)
        if isinstance(headers, Response):
            return headers
        return StreamingResponse(
            dash.hub.stream(), media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )  # fmt: skip

    async def notify(request: Request) -> Response:
        """Only the platform, which holds the notify token (receiverInfo), may publish here."""
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {config.notify_token}".encode()):
            dash.notify_refused += 1
            if dash.notify_refused % 1000 == 1:  # the first and every 1000th: no log flood
                log.warning(
                    "dashboard: /notify refused (no or wrong token) from %s (%d so far)",
                    request.client, dash.notify_refused,
                )  # fmt: skip
            return _problem(401, "notify token required")
        try:
            body = json.loads(await request.body())
            data = body["data"]
            if not isinstance(data, list):
                raise TypeError(data)
        except (ValueError, KeyError, TypeError):
            return _problem(400, "not an NGSI-LD notification", "a JSON object with a data list")
        dash.hub.publish("entities", [e for e in data if isinstance(e, dict)])
        return Response(status_code=204)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(dash.subscribe_loop(), name="dashboard subscription")
        if not config.subscribe:
            task.cancel()
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await dash.unsubscribe()
            await dash.client.aclose()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/session", session),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/api/entities", entities),
            Route("/api/entities/{id:path}/attrs", patch_attrs, methods=["PATCH"]),
            Route("/api/temporal/{id:path}", temporal),
            Route("/api/gateway", gateway),
            Route("/api/inventory", inventory),
            Route("/api/reports", report_list),
            Route("/api/report", report_one),
            Route("/api/matrix", report_matrix),
            Route("/events", events),
            Route("/notify", notify, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
    )
    app.state.dashboard = dash
    return app
