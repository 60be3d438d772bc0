"""R197-NGSILD: the smart-city platform's NGSI-LD API (ETSI GS CIM 009 V1.8.1)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from conformance.iut import RoleConfig
from conformance.model import case
from conformance.ngsild_common import ERR, Receiver, entity, problem, unique
from conformance.observed import expect_status


@case("R197-NGSILD-01", "Create entity answers 201 with a Location header",
      verifies=["CIM009-5.6.1"], theme="interoperability")  # fmt: skip
def test_create(api: httpx.Client) -> None:
    doc = entity()
    r = api.post("/entities", json=doc)
    expect_status(r, 201)
    assert doc["id"] in r.headers.get("Location", "")


@case("R197-NGSILD-02", "Creating an existing entity is 409 AlreadyExists",
      verifies=["CIM009-5.6.1.4", "CIM009-5.5.2"], theme="interoperability")  # fmt: skip
def test_create_twice(api: httpx.Client) -> None:
    doc = entity()
    api.post("/entities", json=doc)
    problem(api.post("/entities", json=doc), 409, "AlreadyExists")


@case("R197-NGSILD-03", "An invalid entity id is 400 BadRequestData",
      verifies=["CIM009-5.6.1.4", "CIM009-4.6.2"], theme="interoperability")  # fmt: skip
def test_bad_id(api: httpx.Client) -> None:
    problem(api.post("/entities", json={**entity(), "id": "not a uri"}), 400, "BadRequestData")


@case("R197-NGSILD-04", "Retrieve returns the entity's attributes faithfully (value, unitCode, observedAt)",
      verifies=["CIM009-5.7.1", "CIM009-4.5.2"], theme="interoperability")  # fmt: skip
def test_retrieve(api: httpx.Client) -> None:
    doc = entity()
    api.post("/entities", json=doc)
    got = api.get(f"/entities/{doc['id']}").json()
    assert got["temperature"]["value"] == 21.5
    assert got["temperature"]["unitCode"] == "CEL"
    assert got["temperature"]["observedAt"] == "2026-01-01T10:00:00Z"


@case("R197-NGSILD-05", "A missing entity is 404 ResourceNotFound",
      verifies=["CIM009-5.7.1.4"], theme="interoperability")  # fmt: skip
def test_missing(api: httpx.Client) -> None:
    api.post("/entities", json=entity())  # the tenant exists
    problem(api.get("/entities/urn:ngsi-ld:R197Room:none"), 404, "ResourceNotFound")


@case("R197-NGSILD-06", "options=keyValues returns the simplified representation",
      verifies=["CIM009-4.5.4", "CIM009-6.3.7"], theme="interoperability")  # fmt: skip
def test_key_values(api: httpx.Client) -> None:
    doc = entity()
    api.post("/entities", json=doc)
    got = api.get(f"/entities/{doc['id']}", params={"options": "keyValues"}).json()
    assert got["temperature"] == 21.5


@case("R197-NGSILD-07", "Query by type and q filter returns only matching entities",
      verifies=["CIM009-5.7.2", "CIM009-4.9"], theme="interoperability")  # fmt: skip
def test_query_q(api: httpx.Client) -> None:
    kind = f"R197Q{uuid.uuid4().hex[:6]}"
    docs = [entity(n, value=10 * n, kind=kind) for n in range(1, 4)]
    for d in docs:
        api.post("/entities", json=d)
    r = api.get("/entities", params={"type": kind, "q": "temperature>15"})
    expect_status(r, 200)
    assert sorted(e["id"] for e in r.json()) == sorted(d["id"] for d in docs[1:])


@case("R197-NGSILD-08", "A q syntax error is 400 with a detail",
      verifies=["CIM009-4.9", "CIM009-5.5.2"], theme="interoperability")  # fmt: skip
def test_q_error(api: httpx.Client) -> None:
    api.post("/entities", json=entity())
    r = api.get("/entities", params={"type": "R197Room", "q": "temperature>>1"})
    expect_status(r, 400)
    assert r.json().get("type") in (ERR + "InvalidRequest", ERR + "BadRequestData")
    assert r.json().get("detail")


@case("R197-NGSILD-09", "A geo-query near;maxDistance selects entities by distance",
      verifies=["CIM009-4.10"], theme="interoperability", pics=["ngsild.geo"])  # fmt: skip
def test_geo(api: httpx.Client) -> None:
    kind = f"R197G{uuid.uuid4().hex[:6]}"
    doc = entity(kind=kind)
    api.post("/entities", json=doc)
    near = api.get("/entities", params={"type": kind, "georel": "near;maxDistance==2000",
                                        "geometry": "Point", "coordinates": "[6.15,46.20]"})  # fmt: skip
    far = api.get("/entities", params={"type": kind, "georel": "near;maxDistance==100",
                                       "geometry": "Point", "coordinates": "[6.2,46.3]"})  # fmt: skip
    assert [e["id"] for e in near.json()] == [doc["id"]]
    assert far.json() == []


def _read_back(api: httpx.Client, docs: list[dict[str, Any]], value: float) -> None:
    """Every entity of ``docs`` is stored with temperature ``value``: a success status alone
    does not show the batch was applied (an IUT may drop entities and still answer 201)."""
    wrong: list[str] = []
    for doc in docs:
        r = api.get(f"/entities/{doc['id']}", params={"options": "keyValues"})
        if r.status_code != 200:
            wrong.append(f"{doc['id']}: {r.status_code}")
        elif (got := r.json().get("temperature")) != value:
            wrong.append(f"{doc['id']}: temperature {got!r}")
    assert not wrong, (
        f"{len(wrong)} of {len(docs)} upserted entities not stored with temperature {value}: "
        + "; ".join(wrong[:5])
    )


@case("R197-NGSILD-10", "Batch upsert answers 201 (created) then 204 (updated), and every entity reads back as sent",
      verifies=["CIM009-5.6.8", "CIM009-5.6.8-stored"], theme="interoperability")  # fmt: skip
def test_batch_upsert(api: httpx.Client) -> None:
    docs = [entity(n, kind=unique("R197B")) for n in range(10)]
    expect_status(api.post("/entityOperations/upsert", json=docs), 201)
    _read_back(api, docs, 21.5)
    for doc in docs:
        doc["temperature"] = {**doc["temperature"], "value": 23.0}
    r = api.post("/entityOperations/upsert", params={"options": "update"}, json=docs)
    expect_status(r, 204)
    _read_back(api, docs, 23.0)


def _count(r: httpx.Response) -> int:
    """The NGSILD-Results-Count header (CIM 009 6.3.13) as a number; a fail when absent."""
    expect_status(r, 200)
    raw = r.headers.get("NGSILD-Results-Count")
    assert raw is not None, f"count=true, but no NGSILD-Results-Count header in {dict(r.headers)}"
    assert raw.isdigit(), f"NGSILD-Results-Count {raw!r} is not a non-negative integer"
    return int(raw)


@case("R197-NGSILD-86", "count=true gives NGSILD-Results-Count: the number of matching entities really there",
      verifies=["CIM009-6.3.13"], theme="interoperability")  # fmt: skip
def test_results_count(api: httpx.Client) -> None:
    kind = unique("R197C")
    docs = [entity(n, value=10 * n, kind=kind) for n in range(1, 6)]
    for doc in docs:
        expect_status(api.post("/entities", json=doc), 201)
    expect_status(api.post("/entities", json=entity(kind=unique("R197D"))), 201)  # not counted
    # Read every entity of the type page by page: the count must match what is there.
    there: list[str] = []
    for offset in range(0, 10, 2):
        page = api.get("/entities", params={"type": kind, "limit": 2, "offset": offset})
        expect_status(page, 200)
        there += [e["id"] for e in page.json()]
    assert sorted(there) == sorted(d["id"] for d in docs), f"type {kind} holds {there}"
    r = api.get("/entities", params={"type": kind, "limit": 2, "count": "true"})
    assert _count(r) == len(there), f"NGSILD-Results-Count {_count(r)}, {len(there)} entities"
    assert len(r.json()) == 2, f"limit=2 gave {len(r.json())} entities"
    matching = api.get("/entities", params={"type": kind, "q": "temperature>25", "count": "true"})
    assert _count(matching) == 3, (
        f"q=temperature>25: NGSILD-Results-Count {_count(matching)}, 3 match"
    )
    # limit=0 with count=true asks for the count alone (CIM 009 6.3.13, 5.5.9).
    only = api.get("/entities", params={"type": kind, "limit": 0, "count": "true"})
    assert _count(only) == len(there), (
        f"limit=0: NGSILD-Results-Count {_count(only)}, {len(there)} entities"
    )
    assert only.json() == [], "limit=0 returned entities"


@case("R197-NGSILD-11", "A batch with a bad entity is 207 naming it in a BatchOperationResult",
      verifies=["CIM009-5.6.7", "CIM009-5.2.17"], theme="interoperability")  # fmt: skip
def test_batch_partial(api: httpx.Client) -> None:
    good = entity()
    r = api.post("/entityOperations/create", json=[good, {"id": "bad id", "type": "R197Room"}])
    expect_status(r, 207)
    body = r.json()
    assert good["id"] in body["success"]
    assert len(body["errors"]) == 1


@case("R197-NGSILD-12", "Temporal retrieval returns every observed instance, lastN the newest",
      verifies=["CIM009-5.7.3", "CIM009-4.5.7"], theme="interoperability",
      pics=["ngsild.temporal"])  # fmt: skip
def test_temporal(api: httpx.Client) -> None:
    doc = entity()
    api.post("/entities", json=doc)
    for minute in (1, 2):
        prop = {
            "type": "Property",
            "value": 20 + minute,
            "observedAt": f"2026-01-01T10:0{minute}:00Z",
        }
        api.patch(f"/entities/{doc['id']}/attrs", json={"temperature": prop})
    r = api.get(f"/temporal/entities/{doc['id']}", params={"attrs": "temperature", "lastN": "2"})
    expect_status(r, 200)
    assert [i["value"] for i in r.json()["temperature"]] == [21, 22]


@case("R197-NGSILD-13", "An unsupported Content-Type is 415",
      verifies=["CIM009-6.3.4"], theme="interoperability")  # fmt: skip
def test_415(api: httpx.Client) -> None:
    r = api.post("/entities", content=b"x", headers={"Content-Type": "text/plain"})
    expect_status(r, 415)


@case("R197-NGSILD-14", "An unacceptable Accept is 406; application/ld+json carries @context",
      verifies=["CIM009-6.3.6"], theme="interoperability")  # fmt: skip
def test_406_and_ld(api: httpx.Client) -> None:
    doc = entity()
    api.post("/entities", json=doc)
    assert api.get(f"/entities/{doc['id']}", headers={"Accept": "text/csv"}).status_code == 406
    ld = api.get(f"/entities/{doc['id']}", headers={"Accept": "application/ld+json"})
    assert "@context" in ld.json()
    plain = api.get(f"/entities/{doc['id']}", headers={"Accept": "application/json"})
    assert "json-ld#context" in plain.headers.get("Link", "")


@case("R197-NGSILD-15", "Tenants are isolated: an entity in one is not visible in another",
      verifies=["CIM009-4.14", "CIM009-6.3.14"], theme="security",
      pics=["ngsild.tenants"])  # fmt: skip
def test_tenants(ngsild_platform: RoleConfig) -> None:
    base = ngsild_platform.url.rstrip("/") + "/ngsi-ld/v1"
    doc = entity()
    a = {"NGSILD-Tenant": f"r197a{uuid.uuid4().hex[:6]}"}
    b = {"NGSILD-Tenant": f"r197b{uuid.uuid4().hex[:6]}"}
    assert httpx.post(f"{base}/entities", json=doc, headers=a).status_code == 201
    httpx.post(f"{base}/entities", json=entity(), headers=b)
    assert httpx.get(f"{base}/entities/{doc['id']}", headers=b).status_code == 404


@case("R197-NGSILD-16", "A subscription notifies a change of a watched attribute over HTTP",
      verifies=["CIM009-5.8.1", "CIM009-5.11"], theme="interoperability",
      pics=["ngsild.subscriptions"])  # fmt: skip
def test_subscription(api: httpx.Client) -> None:
    with Receiver() as rx:
        kind = f"R197S{uuid.uuid4().hex[:6]}"
        sub = {"type": "Subscription", "entities": [{"type": kind}], "watchedAttributes": ["temperature"],
               "notification": {"endpoint": {"uri": rx.url, "accept": "application/json"}}}  # fmt: skip
        assert api.post("/subscriptions", json=sub).status_code == 201
        doc = entity(kind=kind)
        api.post("/entities", json=doc)
        got = rx.wait()
    assert got[0]["type"] == "Notification"
    assert got[0]["data"][0]["id"] == doc["id"]


@case("R197-NGSILD-17", "The platform answers on an IPv6 literal address",
      verifies=["RFC8200", "RFC3986-3.2.2", "Y4200-8.2"], theme="ipv6")  # fmt: skip
def test_ipv6(ngsild_platform: RoleConfig) -> None:
    assert "[" in ngsild_platform.url, f"{ngsild_platform.url} is not an IPv6 literal URL"
    r = httpx.get(ngsild_platform.url.rstrip("/") + "/ngsi-ld/v1/types")
    assert r.status_code == 200


@case("R197-NGSILD-18", "Delete entity answers 204, then the entity is 404",
      verifies=["CIM009-5.6.6"], theme="interoperability")  # fmt: skip
def test_delete(api: httpx.Client) -> None:
    doc = entity()
    api.post("/entities", json=doc)
    assert api.delete(f"/entities/{doc['id']}").status_code == 204
    problem(api.get(f"/entities/{doc['id']}"), 404, "ResourceNotFound")


@case("R197-NGSILD-19", "GET /types lists the types of stored entities",
      verifies=["CIM009-5.7.5"], theme="interoperability")  # fmt: skip
def test_types(api: httpx.Client) -> None:
    kind = f"R197T{uuid.uuid4().hex[:6]}"
    api.post("/entities", json=entity(kind=kind))
    r = api.get("/types")
    expect_status(r, 200)
    assert kind in r.json()["typeList"]


@case("R197-NGSILD-20", "Append with noOverwrite keeps existing attributes and reports them (207)",
      verifies=["CIM009-5.6.3"], theme="interoperability")  # fmt: skip
def test_append_no_overwrite(api: httpx.Client) -> None:
    doc = entity()
    api.post("/entities", json=doc)
    r = api.post(f"/entities/{doc['id']}/attrs", params={"options": "noOverwrite"},
                 json={"temperature": {"type": "Property", "value": 99}, "humidity": {"type": "Property", "value": 40}})  # fmt: skip
    expect_status(r, 207)
    got = api.get(f"/entities/{doc['id']}", params={"options": "keyValues"}).json()
    assert got["temperature"] == 21.5
    assert got["humidity"] == 40
