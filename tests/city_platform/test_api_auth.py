"""Bearer-token authentication, scopes, tenant binding and the endpoint allow-list, against a
real platform process on [::1] started with --auth-key and --allow-endpoint (RFC 6750 3)."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from city_platform.auth import issue_token
from tests.city_platform.receiver import Receiver
from tests.conftest import PlatformProcess, free_port

KEY = secrets.token_urlsafe(32).encode()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def secured(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> Iterator[PlatformProcess]:
    """A platform that needs tokens and notifies only the receiver's /notify."""
    key_file: Path = tmp_path_factory.mktemp("auth") / "api-jwt.key"
    key_file.write_bytes(KEY + b"\n")  # a trailing newline, as an editor leaves it
    proc = PlatformProcess(auth_key=key_file, allow_endpoints=[receiver.url])
    proc.start()
    yield proc
    proc.stop()
    proc.process.close()


def token(*scopes: str, tenants: tuple[str, ...] = ("*",), key: bytes = KEY) -> str:
    return issue_token(key, subject="test", scopes=scopes, tenants=tenants, ttl=600)


def api(platform: PlatformProcess, tok: str | None, tenant: str | None) -> httpx.Client:
    headers = {} if tok is None else {"Authorization": f"Bearer {tok}"}
    if tenant is not None:
        headers["NGSILD-Tenant"] = tenant
    return httpx.Client(base_url=platform.api, headers=headers, timeout=10)


def room(n: int = 1) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:Room:{n}",
        "type": "Room",
        "temperature": {"type": "Property", "value": 21.5, "unitCode": "CEL"},
    }


def subscription(url: str) -> dict[str, Any]:
    return {
        "type": "Subscription",
        "entities": [{"type": "Room"}],
        "watchedAttributes": ["temperature"],
        "notification": {"endpoint": {"uri": url, "accept": "application/json"}},
    }


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"] == ("Unauthorized" if status == 401 else "Forbidden")
    assert body["detail"]
    return body


def test_request_without_token_is_401_with_bearer_challenge(
    secured: PlatformProcess, tenant: str
) -> None:
    """No Authorization header: 401 and WWW-Authenticate: Bearer realm="r197" (RFC 6750 3.1)."""
    with api(secured, None, tenant) as c:
        r = c.get("/entities", params={"type": "Room"})
    assert_problem(r, 401)
    assert r.headers["www-authenticate"] == 'Bearer realm="r197"'
    assert r.headers["ngsild-tenant"] == tenant  # 6.3.14 holds for refusals too


@pytest.mark.parametrize(
    "bad",
    [
        token("admin", key=secrets.token_bytes(32)),  # another key
        "not-a-jwt",
        jwt.encode(
            {"iss": "r197-testbed", "sub": "x", "scope": "admin", "tenants": ["*"], "iat": 0},
            None,
            algorithm="none",
        ),
        jwt.encode(
            {
                "iss": "r197-testbed",
                "sub": "x",
                "scope": "admin",
                "tenants": ["*"],
                "iat": 0,
                "exp": int(time.time()) - 60,
            },
            KEY,
            algorithm="HS256",
        ),
    ],
    ids=["other-key", "garbage", "alg-none", "expired"],
)
def test_invalid_token_is_401_invalid_token(secured: PlatformProcess, bad: str) -> None:
    """A token that does not verify: 401 error="invalid_token" (RFC 6750 3.1)."""
    with api(secured, bad, None) as c:
        r = c.get("/entities", params={"type": "Room"})
    assert_problem(r, 401)
    assert r.headers["www-authenticate"].startswith('Bearer realm="r197", error="invalid_token"')


def test_other_scheme_is_401(secured: PlatformProcess) -> None:
    """Basic credentials are an unsupported method: 401 with the bare challenge (RFC 6750 3);
    "Bearer" without a token is invalid_token."""
    with httpx.Client(base_url=secured.api, timeout=10) as c:
        r = c.get("/entities", params={"type": "Room"}, auth=("user", "pass"))
        assert_problem(r, 401)
        assert r.headers["www-authenticate"] == 'Bearer realm="r197"'
        assert "'Basic' is not supported" in r.json()["detail"]
        r = c.get("/entities", params={"type": "Room"}, headers={"Authorization": "Bearer"})
    assert_problem(r, 401)
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_read_token_cannot_write(secured: PlatformProcess, tenant: str) -> None:
    """A read token creating an entity: 403 insufficient_scope, scope="write" (RFC 6750 3.1)."""
    with api(secured, token("read"), tenant) as c:
        r = c.post("/entities", json=room())
    assert_problem(r, 403)
    challenge = r.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="write"' in challenge
    with api(secured, token("read"), tenant) as c:  # nothing was written
        assert c.get("/entities/urn:ngsi-ld:Room:1").status_code == 404


def test_write_token_writes_and_read_token_reads(secured: PlatformProcess, tenant: str) -> None:
    """The right scopes pass: 201 create, 200 retrieve, 200 query POST with read only."""
    with api(secured, token("write"), tenant) as c:
        r = c.post("/entities", json=room())
        assert r.status_code == 201, r.text
        assert r.headers["ngsild-tenant"] == tenant
    with api(secured, token("read"), tenant) as c:
        r = c.get("/entities/urn:ngsi-ld:Room:1", params={"options": "keyValues"})
        assert r.status_code == 200, r.text
        assert r.json()["temperature"] == 21.5
        # the JSON answer still names its @context in a Link header (6.3.5), behind the middleware
        assert 'rel="http://www.w3.org/ns/json-ld#context"' in r.headers["link"]
        assert r.headers["ngsild-tenant"] == tenant
        r = c.post(
            "/entityOperations/query", json={"type": "Query", "entities": [{"type": "Room"}]}
        )
        assert r.status_code == 200, r.text
        assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Room:1"]
        r = c.delete("/entities/urn:ngsi-ld:Room:1")
    assert_problem(r, 403)


def test_token_for_tenant_a_is_refused_on_tenant_b(secured: PlatformProcess) -> None:
    """A token bound to tenant A writing or reading tenant B: 403; on A it works."""
    a, b = "a" + uuid.uuid4().hex[:8], "b" + uuid.uuid4().hex[:8]
    tok = token("write", tenants=(a,))
    with api(secured, tok, b) as c:
        r = c.post("/entities", json=room())
        assert_problem(r, 403)
        assert "tenant" in r.json()["detail"]
        assert_problem(c.get("/entities", params={"type": "Room"}), 403)
    with api(secured, tok, None) as c:  # the default tenant is not A either
        assert_problem(c.get("/entities", params={"type": "Room"}), 403)
    with api(secured, tok, a) as c:
        assert c.post("/entities", json=room()).status_code == 201


def test_default_tenant_token(secured: PlatformProcess) -> None:
    """tenants [""] is the default tenant: requests without NGSILD-Tenant, not other tenants."""
    tok = token("read", tenants=("",))
    with api(secured, tok, None) as c:
        assert c.get("/entities", params={"type": "Room"}).status_code == 200
    with api(secured, tok, "t" + uuid.uuid4().hex[:8]) as c:
        assert_problem(c.get("/entities", params={"type": "Room"}), 403)


def test_jsonld_contexts_writes_need_admin(secured: PlatformProcess, tenant: str) -> None:
    """POST /jsonldContexts (5.13.2) needs admin: write gets 403, admin 201, read may list."""
    doc = {"@context": {"Thing": "https://example.org/Thing"}}
    with api(secured, token("write"), tenant) as c:
        r = c.post("/jsonldContexts", json=doc)
    assert_problem(r, 403)
    assert 'scope="admin"' in r.headers["www-authenticate"]
    with api(secured, token("admin"), tenant) as c:
        assert c.post("/jsonldContexts", json=doc).status_code == 201
    with api(secured, token("read"), tenant) as c:
        assert c.get("/jsonldContexts").status_code == 200


@pytest.mark.parametrize(
    "path", ["/health", "/docs", "/openapi.json", "/ngsi-ld/contexts/testbed-context.jsonld"]
)
def test_open_paths_need_no_token(secured: PlatformProcess, path: str) -> None:
    """/health, the docs and the shipped @context files stay anonymous."""
    r = httpx.get(secured.base + path, timeout=10)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "path",
    ["/ngsi-ld/contexts/../v1/entities", "/nothing", "/ngsi-ld//v1/entities", "/ngsi-ld/v1"],
)
def test_other_paths_are_closed(secured: PlatformProcess, path: str) -> None:
    """Outside the open set even unknown paths need a token first (no probing around it)."""
    r = httpx.get(secured.base + path, timeout=10)
    assert_problem(r, 401)


def test_subscription_to_endpoint_outside_allow_list_is_400(
    secured: PlatformProcess, tenant: str, receiver: Receiver
) -> None:
    """SSRF: notification.endpoint.uri outside --allow-endpoint is 400 BadRequestData."""
    with api(secured, token("write"), tenant) as c:
        for uri in (
            "http://[::1]:1/notify",
            receiver.url.replace("/notify", "/admin"),
            f"http://[::1]:{receiver.port}@[::1]:1/notify",
            receiver.url + "/../../admin",
        ):
            r = c.post("/subscriptions", json=subscription(uri))
            assert r.status_code == 400, (uri, r.text)
            body = r.json()
            assert body["type"].endswith("/BadRequestData")
            assert "--allow-endpoint" in body["detail"]
        r = c.post(
            "/csourceRegistrations",
            json={
                "type": "ContextSourceRegistration",
                "information": [{"entities": [{"type": "Room"}]}],
                "endpoint": "http://[::1]:1/csource",
            },
        )
        assert r.status_code == 400, r.text
        assert "--allow-endpoint" in r.json()["detail"]


def test_allowed_subscription_notifies_with_auth_on(
    secured: PlatformProcess, tenant: str, receiver: Receiver
) -> None:
    """An allowed endpoint is accepted and notified: outgoing notifications need no token."""
    with api(secured, token("write"), tenant) as c:
        r = c.post("/subscriptions", json=subscription(receiver.url))
        assert r.status_code == 201, r.text
        sub_id = r.headers["Location"].rsplit("/", 1)[1]
        # The same origin spelled otherwise is allowed: the comparison is normalized.
        upper = receiver.url.replace("[::1]", "[0:0:0:0:0:0:0:1]").replace("/notify", "/%6Eotify")
        r = c.patch(
            f"/subscriptions/{sub_id}",
            json={"notification": {"endpoint": {"uri": upper, "accept": "application/json"}}},
        )
        assert r.status_code == 204, r.text
        assert c.post("/entities", json=room(7)).status_code == 201
    ids = [e["id"] for e in receiver.wait_for(1) if e["id"] == "urn:ngsi-ld:Room:7"]
    assert ids
    assert "authorization" not in receiver.headers[-1]


def test_remote_context_outside_allow_list_is_not_fetched(
    secured: PlatformProcess, tenant: str
) -> None:
    """A Link to a @context URL outside the allow-list: 503 LdContextNotAvailable, no fetch."""
    link = '<http://[::1]:1/ctx.jsonld>; rel="http://www.w3.org/ns/json-ld#context"'
    with api(secured, token("read"), tenant) as c:
        r = c.get("/entities", params={"type": "Room"}, headers={"Link": link})
    assert r.status_code == 503, r.text
    assert r.json()["type"].endswith("/LdContextNotAvailable")
    assert "allow-list" in r.json()["detail"]


def test_refusals_are_logged_once_per_client_and_reason(tmp_path: Path) -> None:
    """Ten requests without a token give one WARNING line, not ten."""
    key_file = tmp_path / "k"
    key_file.write_bytes(KEY)
    proc = PlatformProcess(auth_key=key_file)
    proc.start()
    try:
        for _ in range(10):
            assert httpx.get(proc.api + "/entities?type=Room", timeout=10).status_code == 401
    finally:
        out = proc.stop()
        proc.process.close()
    assert out.count("refused GET /ngsi-ld/v1/entities") == 1, out


def test_receiver_credentials_are_masked_below_admin(
    secured: PlatformProcess, tenant: str, receiver: Receiver
) -> None:
    """receiverInfo Authorization is answered as *** to read/write tokens, in full to admin,
    and still sent in full with the notification (api/redact.py)."""
    doc = subscription(receiver.url)
    doc["entities"] = [{"type": "Lamp"}]
    doc["notification"]["endpoint"]["receiverInfo"] = [
        {"key": "Authorization", "value": "Bearer s3cret"},
        {"key": "X-Trace", "value": "keep"},
    ]
    with api(secured, token("write"), tenant) as c:
        r = c.post("/subscriptions", json=doc)
        assert r.status_code == 201, r.text
        sub_path = "/subscriptions/" + r.headers["Location"].rsplit("/", 1)[1]
        masked = c.get(sub_path).json()["notification"]["endpoint"]["receiverInfo"]
        listed = c.get("/subscriptions").json()[0]["notification"]["endpoint"]["receiverInfo"]
        lamp = {"id": "urn:ngsi-ld:Lamp:1", "type": "Lamp", "temperature": {"value": 1}}
        assert c.post("/entities", json=lamp).status_code == 201
    expected = [{"key": "Authorization", "value": "***"}, {"key": "X-Trace", "value": "keep"}]
    assert masked == expected
    assert listed == expected
    with api(secured, token("admin"), tenant) as c:
        full = c.get(sub_path).json()["notification"]["endpoint"]["receiverInfo"]
    assert full[0] == {"key": "Authorization", "value": "Bearer s3cret"}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sent = [h for h in receiver.headers if h.get("x-trace") == "keep"]
        if sent:
            break
        time.sleep(0.02)
    assert sent, receiver.headers
    assert sent[0]["authorization"] == "Bearer s3cret"


def test_stored_subscription_outside_a_new_allow_list_is_not_notified(tmp_path: Path) -> None:
    """A subscription made before --allow-endpoint was set is not sent outside the list after a
    restart with it: the delivery counts as failed and the receiver gets nothing."""
    db = str(tmp_path / "city.db")
    outside = Receiver()
    try:
        first = PlatformProcess(db=db)
        first.start()
        try:
            with httpx.Client(base_url=first.api, timeout=10) as c:
                r = c.post("/subscriptions", json=subscription(outside.url))
                assert r.status_code == 201, r.text
                sub_path = "/subscriptions/" + r.headers["Location"].rsplit("/", 1)[1]
        finally:
            first.stop()
            first.process.close()
        second = PlatformProcess(db=db, allow_endpoints=["http://[::1]:1/notify"])
        second.start()
        try:
            with httpx.Client(base_url=second.api, timeout=10) as c:
                assert c.post("/entities", json=room(3)).status_code == 201
                deadline = time.monotonic() + 10
                note: dict[str, Any] = {}
                while time.monotonic() < deadline:
                    note = c.get(sub_path).json()["notification"]
                    if note.get("timesFailed"):
                        break
                    time.sleep(0.05)
        finally:
            out = second.stop()
            second.process.close()
        assert note.get("timesFailed") == 1, note
        assert note["status"] == "failed"
        assert outside.received == []
        assert out.count("outside the --allow-endpoint list") == 1, out
    finally:
        outside.close()


def test_stored_registration_outside_a_new_allow_list_is_not_asked(tmp_path: Path) -> None:
    """A registration made before --allow-endpoint was set is not forwarded to after a restart
    with it: the query answers with a 299 NGSILD-Warning naming the list (6.3.17)."""
    db = str(tmp_path / "city.db")
    source = f"http://[::1]:{free_port()}"
    first = PlatformProcess(db=db)
    first.start()
    try:
        with httpx.Client(base_url=first.api, timeout=10) as c:
            reg = {
                "type": "ContextSourceRegistration",
                "information": [{"entities": [{"type": "Bus"}]}],
                "endpoint": source,
            }
            assert c.post("/csourceRegistrations", json=reg).status_code == 201
    finally:
        first.stop()
        first.process.close()
    second = PlatformProcess(db=db, allow_endpoints=["http://[::1]:1/"])
    second.start()
    try:
        with httpx.Client(base_url=second.api, timeout=10) as c:
            r = c.get("/entities", params={"type": "Bus"})
    finally:
        second.stop()
        second.process.close()
    assert r.status_code == 200, r.text
    assert r.json() == []
    warning = r.headers["ngsild-warning"]
    assert warning.startswith("299 ")
    assert "outside the --allow-endpoint list" in warning


def test_openapi_declares_the_bearer_scheme(secured: PlatformProcess) -> None:
    """/openapi.json names the bearer scheme, so /docs can send a token (Authorize)."""
    schema = httpx.get(secured.base + "/openapi.json", timeout=10).json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["security"] == [{"bearer": []}]


def test_access_log_names_the_token_subject(tmp_path: Path) -> None:
    """With -vv the access log line of an authenticated request carries sub=<token subject>."""
    key_file = tmp_path / "k"
    key_file.write_bytes(KEY)
    proc = PlatformProcess(auth_key=key_file, verbose=2)
    proc.start()
    try:
        tok = issue_token(KEY, subject="audit-me", scopes=["read"], tenants=["*"])
        headers = {"Authorization": f"Bearer {tok}"}
        httpx.get(proc.api + "/entities/urn:ngsi-ld:Nothing:1", headers=headers, timeout=10)
        httpx.get(proc.api + "/entities/urn:ngsi-ld:Nothing:2", timeout=10)
    finally:
        out = proc.stop()
        proc.process.close()
    lines = {x.split("path=")[1].split()[0]: x for x in out.splitlines() if "path=/ngsi" in x}
    assert "sub=audit-me" in lines["/ngsi-ld/v1/entities/urn:ngsi-ld:Nothing:1"]
    assert "status=404" in lines["/ngsi-ld/v1/entities/urn:ngsi-ld:Nothing:1"]
    assert "sub=-" in lines["/ngsi-ld/v1/entities/urn:ngsi-ld:Nothing:2"]
    assert "status=401" in lines["/ngsi-ld/v1/entities/urn:ngsi-ld:Nothing:2"]
