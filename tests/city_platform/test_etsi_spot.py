"""Fixes found replaying ETSI NGSI-LD test suite cases by hand (docs/etsi-spot-check.md).

Each test names the ETSI test case it comes from and the CIM 009 clause it checks.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import PlatformProcess

INVALID_REQUEST = "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest"
NONEXISTENT_TENANT = "https://uri.etsi.org/ngsi-ld/errors/NonexistentTenant"


@pytest.fixture
def building(client: httpx.Client) -> str:
    eid = f"urn:ngsi-ld:Building:{uuid.uuid4().hex[:12]}"
    r = client.post("/entities", json={"id": eid, "type": "Building"})
    assert r.status_code == 201, r.text
    return eid


@pytest.fixture
def subscription(client: httpx.Client) -> Iterator[str]:
    sid = f"urn:ngsi-ld:Subscription:{uuid.uuid4().hex[:12]}"
    body = {
        "id": sid,
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notification": {"endpoint": {"uri": "http://localhost:1/notify"}},
    }
    r = client.post("/subscriptions", json=body)
    assert r.status_code == 201, r.text
    yield sid
    client.delete(f"/subscriptions/{sid}")


# -- CIM 009 6.3.4: Accept, list order and q weights (ETSI 045_02, 045_03, 045_04) --------

ENTITY_ACCEPTS = [
    ("application/ld+json, application/json", "application/json"),  # 045_02_01
    ("application/geo+json, application/json", "application/json"),  # 045_02_02
    ("application/json;q=0.1, application/ld+json;q=0.9", "application/ld+json"),  # 045_02_03
    ("application/json;q=0, */*", "application/ld+json"),  # 045_04_01
    ("*/*;q=0.9, application/ld+json;q=0.8", "application/json"),  # 045_04_03
    ("application/ld+json;q=notanumber", "application/ld+json"),  # 045_04_04
    ("application/geo+json", "application/geo+json"),
]


@pytest.mark.parametrize(("accept", "expected"), ENTITY_ACCEPTS)
def test_accept_list_order_and_weights_on_retrieve_entity(
    client: httpx.Client, building: str, accept: str, expected: str
) -> None:
    """6.3.4: of the options json, ld+json, geo+json the first of the list is selected unless
    the q weights (RFC 9110: the most specific range decides) amend it."""
    r = client.get(f"/entities/{building}", headers={"Accept": accept})
    assert r.status_code == 200, (accept, r.status_code, r.text)
    assert r.headers["content-type"].startswith(expected), (accept, r.headers["content-type"])


SUBSCRIPTION_ACCEPTS = [
    ("application/geo+json, application/json", "application/json"),  # 045_03_01
    ("application/geo+json;q=0.9, application/ld+json;q=0.1", "application/ld+json"),  # 045_03_02
    ("*/*", "application/json"),  # 045_03_03
    ("application/json;q=0, application/ld+json", "application/ld+json"),  # 045_03_04
]


@pytest.mark.parametrize(("accept", "expected"), SUBSCRIPTION_ACCEPTS)
def test_accept_where_geojson_is_not_offered(
    client: httpx.Client, subscription: str, accept: str, expected: str
) -> None:
    """6.3.4 / 6.3.15: geo+json is not on offer for a subscription; the others decide."""
    r = client.get(f"/subscriptions/{subscription}", headers={"Accept": accept})
    assert r.status_code == 200, (accept, r.status_code, r.text)
    assert r.headers["content-type"].startswith(expected), (accept, r.headers["content-type"])


def test_geojson_alone_where_not_offered_is_406(client: httpx.Client, subscription: str) -> None:
    """ETSI 049_02_01: geo+json only, on Retrieve Subscription, is 406."""
    r = client.get(f"/subscriptions/{subscription}", headers={"Accept": "application/geo+json"})
    assert r.status_code == 406, r.text


# -- CIM 009 6.3.14 / 5.5.10: the Tenant header is echoed (ETSI 414_01_01, 5510_01_01) -----


def test_tenant_header_echoed_on_retrieve_and_on_errors(
    client: httpx.Client, building: str, tenant: str
) -> None:
    r = client.get(f"/entities/{building}")
    assert r.status_code == 200, r.text
    assert r.headers.get("NGSILD-Tenant") == tenant, dict(r.headers)
    missing = f"tp5510{uuid.uuid4().hex[:8]}"
    r = client.get("/entities", params={"type": "Building"}, headers={"NGSILD-Tenant": missing})
    assert r.status_code == 404, r.text
    assert r.json()["type"] == NONEXISTENT_TENANT, r.text
    assert r.headers.get("NGSILD-Tenant") == missing, dict(r.headers)


def test_no_tenant_header_without_tenant(platform: PlatformProcess) -> None:
    with httpx.Client(base_url=platform.api, timeout=10) as c:
        r = c.get("/entities", params={"type": "Building"})
    assert r.status_code == 200, r.text
    assert "NGSILD-Tenant" not in r.headers


# -- CIM 009 6.3.4 / 6.3.2: no Content-Length on POST/PATCH/PUT is a bare 411 (ETSI 046_01) --


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/entities/"),
        ("PATCH", "/entities/urn:ngsi-ld:Building:411-01/attrs/"),
        ("PUT", "/entities/urn:ngsi-ld:Building:411-01"),
    ],
)
def test_chunked_body_without_content_length_is_bare_411(
    client: httpx.Client, method: str, path: str
) -> None:
    body = b'{"id": "urn:ngsi-ld:Building:411-01", "type": "Building"}'
    r = client.request(
        method, path, content=iter([body]), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 411, (r.status_code, r.text)
    assert r.content == b""


def test_411_comes_before_the_tenant_lookup(client: httpx.Client) -> None:
    """ETSI 046_01_05: a Tenant that does not exist does not turn the 411 into a 404."""
    r = client.post(
        "/entities/",
        content=iter([b"{}"]),
        headers={"Content-Type": "application/json", "NGSILD-Tenant": "tp46105nosuchtenant"},
    )
    assert r.status_code == 411, (r.status_code, r.text)
    assert r.content == b""


def test_get_needs_no_content_length(client: httpx.Client) -> None:
    """ETSI 046_01_04: the precondition is for POST, PATCH and PUT only."""
    r = client.get("/entities/", params={"type": "Building"})
    assert r.status_code != 411, r.text


# -- CIM 009 6.3.20: an unknown URL parameter is InvalidRequest (ETSI 059_01) -------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/entities?type=Building", None),  # 059_01_02
        ("POST", "/temporal/entities", {"id": "urn:ngsi-ld:Building:t059", "type": "Building"}),
        ("GET", "/temporal/entities?type=Building", None),  # 059_01_04
        ("GET", "/subscriptions", None),  # 059_01_07
        (
            "POST",
            "/subscriptions",
            {
                "type": "Subscription",
                "entities": [{"type": "Building"}],
                "notification": {"endpoint": {"uri": "http://localhost:1/notify"}},
            },
        ),  # 059_01_06
    ],
)
def test_unknown_parameter_is_invalid_request(
    client: httpx.Client, method: str, path: str, body: object
) -> None:
    sep = "&" if "?" in path else "?"
    r = client.request(method, f"{path}{sep}invalidParameter=dummy", json=body)
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["type"] == INVALID_REQUEST, r.text


def test_known_query_parameters_still_taken(client: httpx.Client, building: str) -> None:
    """The parameters Query Entities defines (and join, lang, local) are not refused."""
    params = {"type": "Building", "limit": "5", "count": "true", "local": "true"}
    r = client.get("/entities", params={**params, "lang": "en", "join": "inline"})
    assert r.status_code == 200, r.text
    r = client.get("/subscriptions", params={"limit": "5", "count": "true"})
    assert r.status_code == 200, r.text


# -- CIM 009 5.6.5 / 6.7.3.2: Delete Entity Attribute needs its attrId (ETSI 013_02) --------


def test_delete_attribute_without_its_name_is_405(client: httpx.Client, building: str) -> None:
    """ETSI 013_02_03: DELETE entities/{id}/attrs/ names no attribute: the resource exists
    but takes no DELETE, 405; an empty entity id (013_02_01) stays 400 BadRequestData."""
    r = client.delete(f"/entities/{building}/attrs/", params={"deleteAll": "false"})
    assert r.status_code == 405, r.text
    r = client.delete("/entities//attrs/speed", params={"deleteAll": "false"})
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", r.text


# -- CIM 009 5.6.7 / 5.5.6: batch create with an @context that cannot be fetched (043_01_04) --


def test_batch_create_with_unretrievable_context_is_207(client: httpx.Client) -> None:
    """Every entity fails with LdContextNotAvailable in the BatchOperationResult."""
    ctx = ["http://[::1]:1/nonexistent.jsonld"]
    ids = [f"urn:ngsi-ld:Building:{uuid.uuid4().hex[:10]}" for _ in range(2)]
    body = [{"id": i, "type": "Building", "@context": ctx} for i in ids]
    r = client.post(
        "/entityOperations/create", json=body, headers={"Content-Type": "application/ld+json"}
    )
    assert r.status_code == 207, r.text
    errors = r.json()["errors"]
    assert [e["entityId"] for e in errors] == ids, r.text
    for e in errors:
        assert e["error"]["type"] == "https://uri.etsi.org/ngsi-ld/errors/LdContextNotAvailable"
        assert e["error"]["title"], r.text
    assert r.json()["success"] == [], r.text
