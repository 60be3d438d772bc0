"""R197-SEC-20..28: the NGSI-LD API behind bearer tokens, and its endpoint allow-list.

Against the IUT's ``ngsild-platform`` ``security`` block, or the reference platform started with
``--auth-key`` (the city's HS256 key) and ``--allow-endpoint`` (the secure gateway's /notify).
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from conformance.iut import IutConfig
from conformance.model import Inconclusive, case
from conformance.observed import watch_responses
from conformance.security import need
from conformance.security_pixit import SecurityPixit

LD = "application/ld+json"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"


def client(pixit: SecurityPixit, token: str | None, tenant: str | None = None) -> httpx.Client:
    assert pixit.url is not None
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if tenant:
        headers["NGSILD-Tenant"] = tenant
    return watch_responses(
        httpx.Client(base_url=pixit.url.rstrip("/") + "/ngsi-ld/v1", headers=headers, timeout=10)
    )


def entity() -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:NoiseLevelObserved:r197sec-{uuid.uuid4().hex[:8]}",
        "type": "NoiseLevelObserved",
        "LAeq": {"type": "Property", "value": 55.0},
    }


def seen(r: httpx.Response) -> str:
    """The observed answer, for a verdict's reason."""
    challenge = r.headers.get("www-authenticate")
    extra = f" WWW-Authenticate: {challenge}" if challenge else ""
    return f"{r.request.method} {r.request.url.path} -> {r.status_code}{extra} {r.text[:200]!r}"


def read_ok(pixit: SecurityPixit, token: str) -> None:
    """The control: the read token is accepted (else the refusal proves nothing)."""
    with client(pixit, token) as c:
        r = c.get("/entities", params={"type": "NoiseLevelObserved", "limit": "1"})
    if r.status_code != 200:
        raise Inconclusive(f"the read token is refused too: {seen(r)}")


def assert_401(r: httpx.Response, invalid_token: bool) -> None:
    assert r.status_code == 401, f"expected 401: {seen(r)}"
    challenge = r.headers.get("www-authenticate", "")
    assert challenge.lower().startswith("bearer"), f"no Bearer challenge (RFC 6750 3): {seen(r)}"
    if invalid_token:
        assert 'error="invalid_token"' in challenge, f'no error="invalid_token": {seen(r)}'


@case("R197-SEC-20", "A request without a token is 401 with a WWW-Authenticate: Bearer challenge",
      verifies=["RFC6750-3", "Y4806"], theme="security", pics=["sec.ngsild-auth"])  # fmt: skip
def test_no_token(request: pytest.FixtureRequest, secure_platform: SecurityPixit) -> None:
    need(request, secure_platform, "url", "tokens.read")
    read_ok(secure_platform, secure_platform.tokens["read"])
    with client(secure_platform, None) as c:
        got = c.get("/entities", params={"type": "NoiseLevelObserved"})
        wrote = c.post(
            "/entities",
            json=entity(),
            headers={"Link": f'<{CORE}>; rel="http://www.w3.org/ns/json-ld#context"'},
        )
    assert_401(got, invalid_token=False)
    assert_401(wrote, invalid_token=False)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    """The claims of a JWT (not verified); for an opaque token, claims like the reference's."""
    try:
        return dict(jwt.decode(token, options={"verify_signature": False}))
    except jwt.PyJWTError:
        now = int(time.time())
        return {
            "iss": "r197-testbed",
            "sub": "r197-sec",
            "scope": "read",
            "tenants": ["*"],
            "iat": now,
        }


def forged(token: str) -> str:
    """The same claims signed with a key the platform does not hold."""
    return jwt.encode(claims_of(token), secrets.token_bytes(32), algorithm="HS256")


def unsecured(token: str) -> str:
    """The same claims as an unsecured JWT: alg none, empty signature (RFC 7519 6.1)."""
    claims = claims_of(token)
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


@case("R197-SEC-21", "A token signed with another key is 401 invalid_token",
      verifies=["RFC6750-3.1", "RFC7519-7.2"], theme="security", pics=["sec.ngsild-auth"])  # fmt: skip
def test_bad_signature(request: pytest.FixtureRequest, secure_platform: SecurityPixit) -> None:
    need(request, secure_platform, "url", "tokens.read")
    read_ok(secure_platform, secure_platform.tokens["read"])
    with client(secure_platform, forged(secure_platform.tokens["read"])) as c:
        assert_401(c.get("/entities", params={"type": "NoiseLevelObserved"}), invalid_token=True)


@case("R197-SEC-22", "An unsecured token (alg none) carrying valid claims is 401 invalid_token",
      verifies=["RFC8725-3.1", "RFC6750-3.1"], theme="security", pics=["sec.ngsild-auth"])  # fmt: skip
def test_alg_none(request: pytest.FixtureRequest, secure_platform: SecurityPixit) -> None:
    need(request, secure_platform, "url", "tokens.read")
    read_ok(secure_platform, secure_platform.tokens["read"])
    with client(secure_platform, unsecured(secure_platform.tokens["read"])) as c:
        assert_401(c.get("/entities", params={"type": "NoiseLevelObserved"}), invalid_token=True)


@case("R197-SEC-23", "An expired token is 401 invalid_token",
      verifies=["RFC7519-4.1.4", "RFC6750-3.1"], theme="security", pics=["sec.ngsild-auth"])  # fmt: skip
def test_expired(request: pytest.FixtureRequest, secure_platform: SecurityPixit) -> None:
    need(request, secure_platform, "url", "tokens.read", "tokens.expired")
    read_ok(secure_platform, secure_platform.tokens["read"])
    with client(secure_platform, secure_platform.tokens["expired"]) as c:
        assert_401(c.get("/entities", params={"type": "NoiseLevelObserved"}), invalid_token=True)


@case("R197-SEC-24", "A read-only token cannot write (403 insufficient_scope); a write token can",
      verifies=["RFC6750-3.1"], theme="security", pics=["sec.ngsild-auth", "sec.ngsild-scopes"])  # fmt: skip
def test_read_token_cannot_write(
    request: pytest.FixtureRequest, secure_platform: SecurityPixit
) -> None:
    need(request, secure_platform, "url", "tokens.read", "tokens.write")
    body = entity()
    with client(secure_platform, secure_platform.tokens["read"]) as c:
        refused = c.post("/entities", json=body)
    with client(secure_platform, secure_platform.tokens["write"]) as c:
        created = c.post("/entities", json=entity())
    if created.status_code != 201:
        raise Inconclusive(f"the write token cannot create an entity either: {seen(created)}")
    assert refused.status_code == 403, f"expected 403: {seen(refused)}"
    challenge = refused.headers.get("www-authenticate", "")
    assert 'error="insufficient_scope"' in challenge, (
        f'no error="insufficient_scope": {seen(refused)}'
    )


@case("R197-SEC-25", "A token bound to one tenant is refused (403) on another tenant and works on its own",
      verifies=["CIM009-4.14", "RFC6750-3.1"], theme="security",
      pics=["sec.ngsild-auth", "sec.ngsild-tenants"])  # fmt: skip
def test_tenant_bound_token(request: pytest.FixtureRequest, secure_platform: SecurityPixit) -> None:
    need(request, secure_platform, "url", "tokens.tenant", "tenant")
    token = secure_platform.tokens["tenant"]
    with client(secure_platform, token, tenant=secure_platform.tenant) as c:
        own = c.post("/entities", json=entity())
    other = f"r197sec-other-{uuid.uuid4().hex[:8]}"
    with client(secure_platform, token, tenant=other) as c:
        wrote, read = (
            c.post("/entities", json=entity()),
            c.get("/entities", params={"type": "NoiseLevelObserved"}),
        )
    if own.status_code != 201:
        raise Inconclusive(f"the tenant token cannot write on its own tenant: {seen(own)}")
    assert wrote.status_code == 403, f"write on tenant {other}: {seen(wrote)}"
    assert read.status_code == 403, f"read on tenant {other}: {seen(read)}"


class _Recorder(http.server.BaseHTTPRequestHandler):
    """An HTTP server on [::1] that counts the requests a platform makes to it."""

    hits: list[str]

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = json.dumps({"@context": {"LAeq": "https://example.org/LAeq"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/ld+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


class _V6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


@contextlib.contextmanager
def recorder() -> Iterator[tuple[str, list[str]]]:
    """A loopback URL no allow-list should hold (loopback is an SSRF target, OWASP), and the
    paths requested from it."""
    hits: list[str] = []
    handler = type("Recorder", (_Recorder,), {"hits": hits})
    server = _V6(("::1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://[::1]:{server.server_address[1]}/", hits
    finally:
        server.shutdown()
        server.server_close()


def write_ok(c: httpx.Client) -> None:
    """The control: the write token creates an entity (else a refusal proves nothing)."""
    r = c.post("/entities", json=entity())
    if r.status_code != 201:
        raise Inconclusive(f"the write token cannot create an entity: {seen(r)}")


def ssrf_targets(iut: IutConfig, local: str) -> list[str]:
    return [*iut.pixit_value("sec.ssrf_urls"), local + "r197sec"]


def assert_refused_problem(r: httpx.Response, what: str) -> None:
    assert 400 <= r.status_code < 500, f"{what}: expected a 4xx ProblemDetails: {seen(r)}"
    try:
        problem = r.json()
    except ValueError:
        problem = None
    assert isinstance(problem, dict), f"{what}: not ProblemDetails: {seen(r)}"
    assert "type" in problem, f"{what}: ProblemDetails without type: {seen(r)}"


@case("R197-SEC-26", "A subscription whose notification endpoint is not on the allow-list is refused",
      verifies=["OWASPSSRF-allowlist"], theme="security",
      pics=["sec.ngsild-ssrf", "ngsild.subscriptions"])  # fmt: skip
def test_ssrf_subscription(
    request: pytest.FixtureRequest, secure_platform: SecurityPixit, iut: IutConfig
) -> None:
    need(request, secure_platform, "url", "tokens.write")
    with recorder() as (local, hits), client(secure_platform, secure_platform.tokens["write"]) as c:
        write_ok(c)
        for target in ssrf_targets(iut, local):
            sub = {
                "id": f"urn:ngsi-ld:Subscription:r197sec-{uuid.uuid4().hex[:8]}",
                "type": "Subscription",
                "entities": [{"type": "NoiseLevelObserved"}],
                "notification": {"endpoint": {"uri": target, "accept": "application/json"}},
            }
            r = c.post("/subscriptions", json=sub)
            assert_refused_problem(r, f"subscription to {target}")
            # Had it been stored, this update would make the platform notify the target.
            c.post("/entities", json=entity())
    assert not hits, f"the platform requested {hits} from a refused endpoint"


@case("R197-SEC-27", "A context source registration whose endpoint is not on the allow-list is refused",
      verifies=["OWASPSSRF-allowlist"], theme="security",
      pics=["sec.ngsild-ssrf", "ngsild.csource-registrations"])  # fmt: skip
def test_ssrf_registration(
    request: pytest.FixtureRequest, secure_platform: SecurityPixit, iut: IutConfig
) -> None:
    need(request, secure_platform, "url", "tokens.write")
    with recorder() as (local, hits), client(secure_platform, secure_platform.tokens["write"]) as c:
        write_ok(c)
        for target in ssrf_targets(iut, local):
            reg = {
                "id": f"urn:ngsi-ld:ContextSourceRegistration:r197sec-{uuid.uuid4().hex[:8]}",
                "type": "ContextSourceRegistration",
                "information": [{"entities": [{"type": "NoiseLevelObserved"}]}],
                "endpoint": target,
            }
            assert_refused_problem(
                c.post("/csourceRegistrations", json=reg), f"registration of {target}"
            )
            # Had it been stored, a query would be forwarded to it (CIM 009 4.3.6).
            c.get("/entities", params={"type": "NoiseLevelObserved"})
    assert not hits, f"the platform requested {hits} from a refused endpoint"


@case("R197-SEC-28", "A remote @context at a URL not on the allow-list is refused and never fetched",
      verifies=["OWASPSSRF-allowlist"], theme="security", pics=["sec.ngsild-ssrf"])  # fmt: skip
def test_ssrf_remote_context(
    request: pytest.FixtureRequest, secure_platform: SecurityPixit
) -> None:
    need(request, secure_platform, "url", "tokens.write")
    with recorder() as (local, hits), client(secure_platform, secure_platform.tokens["write"]) as c:
        write_ok(c)
        body = {**entity(), "@context": [local + "context.jsonld", CORE]}
        r = c.post("/entities", json=body, headers={"Content-Type": LD})
    assert not hits, f"the platform fetched {hits} from a URL outside its allow-list: {seen(r)}"
    assert r.status_code >= 400, (
        f"an entity with @context {local}context.jsonld was accepted: {seen(r)}"
    )
    assert r.status_code < 500 or r.status_code == 503, f"not a refusal: {seen(r)}"
