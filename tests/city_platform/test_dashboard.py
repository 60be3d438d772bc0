"""The dashboard server (city_platform/dashboard) against a real secure platform on [::1]:
login cookie, 401 without it, the SSE fan-out of the platform's notifications, the temporal
proxy with the user's token, actuation refused for a read token, reports, media types."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from city_platform.auth import issue_token
from city_platform.dashboard import DashboardConfig, create_app
from city_platform.dashboard.app import STATIC
from testbed.parts import dashboard_spec
from testbed.processes import ManagedProcess, free_port
from tests.conftest import PlatformProcess

KEY = b"k" * 48


@dataclass
class Stack:
    platform: PlatformProcess
    url: str  # the dashboard
    tokens: dict[str, str]
    reports: Path

    def api(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


def _report(implementation: str, verdicts: dict[str, str]) -> dict[str, Any]:
    """A report.json as conformance/report.py writes it (the members the dashboard reads)."""
    results = [{"id": c, "objective": f"objective of {c}", "theme": "interoperability",
                "verdict": v, "detail": ""} for c, v in verdicts.items()]  # fmt: skip
    summary: dict[str, int] = {}
    for v in verdicts.values():
        summary[v] = summary.get(v, 0) + 1
    return {"implementation": implementation, "roles": {}, "date": "2026-12-03T10:00:00+00:00",
            "summary": summary, "results": results}  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("dashboard")
    (tmp / "key").write_bytes(KEY)
    port = free_port()
    url = f"http://[::1]:{port}"
    tokens = {
        scope: issue_token(KEY, subject=f"test-{scope}", scopes=[scope], tenants=["*"])
        for scope in ("read", "write")
    }
    (tmp / "dash.jwt").write_text(tokens["write"])
    reports = tmp / "reports"
    for name, impl, verdicts in (
        ("ours", "reference", {"R197-A-01": "pass", "R197-A-02": "pass"}),
        ("theirs/run1", "vendor X", {"R197-A-01": "fail", "R197-A-02": "pass"}),
    ):
        (reports / name).mkdir(parents=True)
        (reports / name / "report.json").write_text(json.dumps(_report(impl, verdicts)))
    # docs/interop's form: <implementation>.json; and a JSON file that is no report
    (reports / "vendor-y.json").write_text(json.dumps(_report("vendor Y", {"R197-A-01": "n/a"})))
    (reports / "ours" / "pics.json").write_text('{"pics": []}')
    platform = PlatformProcess(auth_key=tmp / "key", allow_endpoints=[f"{url}/notify"])
    platform.start()
    spec = dashboard_spec(
        port=port, platform_url=platform.base, token_file=tmp / "dash.jwt", reports=[reports]
    )
    dashboard = ManagedProcess(spec, log_path=tmp / "dashboard.log")
    dashboard.start()
    try:
        yield Stack(platform, url, tokens, reports)
    finally:
        dashboard.stop()
        platform.stop()


def _login(stack: Stack, client: httpx.Client | httpx.AsyncClient, scope: str) -> Any:
    return client.post(f"{stack.url}/login", json={"token": stack.tokens[scope]})


def _streetlight(stack: Stack, n: str, state: str = "off") -> str:
    eid = f"urn:ngsi-ld:Streetlight:dash-{n}"
    entity = {"id": eid, "type": "Streetlight",
              "powerState": {"type": "Property", "value": state},
              "illuminanceLevel": {"type": "Property", "value": 0.5, "unitCode": "C62"},
              "location": {"type": "GeoProperty",
                           "value": {"type": "Point", "coordinates": [6.14, 46.2]}}}  # fmt: skip
    answer = httpx.post(f"{stack.platform.api}/entities", json=entity, headers=stack.api("write"))
    assert answer.status_code == 201, answer.text
    return eid


def test_a_secure_dashboard_wants_a_login_for_every_api_route(stack: Stack) -> None:
    """No session cookie: 401 with WWW-Authenticate on the data routes and /events; the page
    itself loads and holds no token."""
    for path in ("/api/entities", "/events", "/api/gateway", "/api/reports", "/api/temporal/x"):
        answer = httpx.get(stack.url + path)
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{stack.url}/api/session").json() == {"secure": True, "loggedIn": False}
    page = httpx.get(stack.url + "/").text + httpx.get(stack.url + "/static/dashboard.js").text
    assert "login-form" in page
    assert stack.tokens["write"] not in page


def test_login_keeps_the_token_in_an_httponly_samesite_strict_cookie(stack: Stack) -> None:
    """A token the platform accepts gives a session cookie scripts cannot read and other
    sites do not send; a forged token is refused with 401 and no cookie."""
    with httpx.Client() as client:
        answer = _login(stack, client, "read")
        assert answer.status_code == 200
        cookie = answer.headers["set-cookie"]
        for flag in ("HttpOnly", "SameSite=Strict", "Path=/"):
            assert flag in cookie
        assert stack.tokens["read"] not in cookie
        assert client.get(f"{stack.url}/api/session").json()["loggedIn"] is True
        assert client.get(f"{stack.url}/api/entities").status_code == 200
    forged = issue_token(b"x" * 48, subject="mallory", scopes=["admin"], tenants=["*"])
    refused = httpx.post(f"{stack.url}/login", json={"token": forged})
    assert refused.status_code == 401
    assert "set-cookie" not in refused.headers


def _wait_subscribed(stack: Stack, client: httpx.Client) -> None:
    deadline = time.monotonic() + 20
    while not client.get(f"{stack.url}/api/gateway").json()["subscribed"]:
        assert time.monotonic() < deadline, "the dashboard never got its subscription"
        time.sleep(0.1)


async def _next_entities(lines: AsyncIterator[str], eid: str) -> list[dict[str, Any]]:
    event = None
    async for line in lines:
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event == "entities":
            data = json.loads(line.removeprefix("data: "))
            if any(e.get("id") == eid for e in data):
                return list(data)
    raise AssertionError("stream ended")


async def test_one_notification_reaches_every_browser_stream(stack: Stack) -> None:
    """The platform notifies the dashboard's one subscription; both open /events streams get
    the entity (SSE ``entities`` event)."""
    with httpx.Client() as sync:
        _login(stack, sync, "read")
        _wait_subscribed(stack, sync)
        cookies = sync.cookies
    async with (
        httpx.AsyncClient(cookies=cookies, timeout=30) as a,
        httpx.AsyncClient(cookies=cookies, timeout=30) as b,
        a.stream("GET", f"{stack.url}/events") as ra,
        b.stream("GET", f"{stack.url}/events") as rb,
    ):
        assert ra.headers["content-type"].startswith("text/event-stream")
        lines = (ra.aiter_lines(), rb.aiter_lines())
        for stream in lines:  # each browser is in the hub once it has its "ready" event
            async with asyncio.timeout(10):
                while await anext(stream) != "event: ready":
                    pass
        eid = await asyncio.to_thread(_streetlight, stack, "sse")
        async with asyncio.timeout(20):
            got = await asyncio.gather(*(_next_entities(stream, eid) for stream in lines))
    for data in got:
        (entity,) = [e for e in data if e["id"] == eid]
        assert entity["powerState"]["value"] == "off"


def test_notify_without_the_notify_token_is_refused(stack: Stack) -> None:
    """Only the platform (which holds the receiverInfo token) may publish to the browsers."""
    body = {"id": "urn:x", "type": "Notification", "data": [{"id": "urn:fake", "type": "X"}]}
    assert httpx.post(f"{stack.url}/notify", json=body).status_code == 401
    forged = httpx.post(f"{stack.url}/notify", json=body, headers=stack.api("write"))
    assert forged.status_code == 401


def test_history_is_read_with_the_users_token_and_lastN(stack: Stack) -> None:
    """/api/temporal asks the secure platform's temporal API with the session's token (the
    platform answers 401 to a request without one) for the newest lastN values."""
    eid = _streetlight(stack, "history")
    for level in (0.1, 0.2, 0.3, 0.4):
        at = f"2026-12-03T10:00:0{int(level * 10)}Z"
        attrs = {"illuminanceLevel": {"type": "Property", "value": level, "observedAt": at}}
        patched = httpx.patch(
            f"{stack.platform.api}/entities/{eid}/attrs", json=attrs, headers=stack.api("write")
        )
        assert patched.status_code == 204, patched.text
    with httpx.Client() as client:
        _login(stack, client, "read")
        answer = client.get(
            f"{stack.url}/api/temporal/{eid}", params={"attr": "illuminanceLevel", "lastN": 2}
        )
    assert answer.status_code == 200, answer.text
    values = [v for v, _ in answer.json()["illuminanceLevel"]["values"]]
    assert sorted(values) == [0.3, 0.4]


def test_a_read_token_sees_the_platforms_403_when_it_switches_a_light(stack: Stack) -> None:
    """Actuation goes through the platform as the user: read scope gets the platform's own
    403 (insufficient_scope); write scope changes the entity's powerState."""
    eid = _streetlight(stack, "switch")
    change = {"powerState": {"type": "Property", "value": "on"}}
    with httpx.Client() as client:
        _login(stack, client, "read")
        refused = client.patch(f"{stack.url}/api/entities/{eid}/attrs", json=change)
        assert refused.status_code == 403
        assert "write" in refused.json()["detail"]
        assert "insufficient_scope" in refused.headers["www-authenticate"]
    with httpx.Client() as client:
        _login(stack, client, "write")
        assert client.patch(f"{stack.url}/api/entities/{eid}/attrs", json=change).status_code == 204
    now = httpx.get(f"{stack.platform.api}/entities/{eid}", headers=stack.api("read")).json()
    assert now["powerState"]["value"] == "on"


def test_reports_are_listed_rendered_and_merged_into_a_matrix(stack: Stack) -> None:
    """Every report (report.json, <name>.json) under --reports, each by name, and case x
    implementation verdicts; other JSON files and names outside the directory are not."""
    with httpx.Client() as client:
        _login(stack, client, "read")
        listing = client.get(f"{stack.url}/api/reports").json()["reports"]
        names = sorted(r["name"] for r in listing)
        assert names == ["reports/ours", "reports/theirs/run1", "reports/vendor-y"]
        one = client.get(f"{stack.url}/api/report", params={"name": "reports/theirs/run1"}).json()
        assert one["implementation"] == "vendor X"
        missing = client.get(f"{stack.url}/api/report", params={"name": "../../etc"})
        assert missing.status_code == 404
        matrix = client.get(f"{stack.url}/api/matrix").json()
    assert matrix["cases"]["R197-A-01"] == {
        "reference (reports/ours)": "pass",
        "vendor X (reports/theirs/run1)": "fail",
        "vendor Y (reports/vendor-y)": "n/a",
    }


@pytest.mark.parametrize(
    ("path", "media"),
    [
        ("/static/vendor/leaflet/leaflet.js", "text/javascript"),
        ("/static/vendor/leaflet/leaflet.css", "text/css"),
        ("/static/vendor/leaflet/images/marker-icon.png", "image/png"),
        ("/static/vendor/uplot/uPlot.iife.min.js", "text/javascript"),
        ("/static/city.geojson", "application/geo+json"),
        ("/", "text/html"),
    ],
)
def test_shipped_assets_are_served_with_their_media_types(
    stack: Stack, path: str, media: str
) -> None:
    """Offline assets from the package, each with its media type (no CDN)."""
    answer = httpx.get(stack.url + path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].split(";")[0] == media


def test_every_vendored_library_ships_its_licence() -> None:
    """Leaflet (BSD-2-Clause) and uPlot (MIT) with their LICENSE next to them."""
    for lib in ("leaflet", "uplot"):
        assert "Copyright" in (STATIC / "vendor" / lib / "LICENSE").read_text()
    assert "leaflet" in (STATIC / "vendor" / "README.md").read_text().lower()


def test_an_open_city_dashboard_has_no_login() -> None:
    """Without a token of its own (an --insecure city) the routes need no session; a platform
    that does not answer is a 502, not a crash."""
    config = DashboardConfig(platform_url=f"http://[::1]:{free_port()}", subscribe=False)
    transport = httpx.ASGITransport(app=create_app(config))

    async def run() -> tuple[Any, int]:
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
            session = (await client.get("/api/session")).json()
            return session, (await client.get("/api/entities")).status_code

    session, status = asyncio.run(run())
    assert session == {"secure": False, "loggedIn": True}
    assert status == 502


def test_rejected_readings_by_device_and_reason_from_the_gateways_metrics() -> None:
    """The device table's column reads what the gateway's /metrics renders (Prometheus text):
    per device and reason, other series and the latency histogram ignored."""
    from city_platform.dashboard.gateway_view import rejected_by_device, totals  # noqa: PLC0415
    from gateway.metrics import Metrics  # noqa: PLC0415  # the real exposition, not a copy

    metrics = Metrics()
    metrics.inc("r197_gateway_rejected_total", reason="bad-payload", device="noise-0001")
    metrics.inc("r197_gateway_rejected_total", 2, reason="out-of-range", device="noise-0001")
    metrics.inc("r197_gateway_rejected_total", reason="unknown-device", device="other")
    metrics.inc("r197_gateway_rejected_total", 3, reason="platform-refused")
    metrics.inc("r197_gateway_received_total", 5, protocol="mqtt")
    metrics.observe_latency(0.02)
    text = metrics.render()
    assert rejected_by_device(text) == {
        "noise-0001": {"bad-payload": 1.0, "out-of-range": 2.0},
        "other": {"unknown-device": 1.0},
        "": {"platform-refused": 3.0},
    }
    assert totals(text)["received_total"] == {"mqtt": 5.0}
