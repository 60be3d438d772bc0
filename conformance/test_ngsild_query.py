"""R197-NGSILD-21..28: consumption of context information - projections, POST query, type
expressions and multi-typed entities, scopes, datasetId and discovery (ETSI GS CIM 009 V1.8.1).

Every case makes its own uniquely named types, so a shared IUT tenant does not disturb it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from conformance.model import case
from conformance.ngsild_common import problem, unique
from conformance.observed import expect_status

VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"


def _building(kind: str, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:{kind}:{n}",
        "type": kind,
        "name": {"type": "Property", "value": f"B{n}"},
        "height": {"type": "Property", "value": 10 * n},
        **extra,
    }


def _ids(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, f"expected 200, got {r.status_code}: {r.text[:200]!r}"
    return sorted(e["id"] for e in r.json())


@case("R197-NGSILD-21", "pick and omit project retrieve and query answers to the named members",
      verifies=["CIM009-4.21", "CIM009-5.7.1-projection", "CIM009-5.7.2-projection"],
      theme="interoperability", pics=["ngsild.projection"])  # fmt: skip
def test_pick_omit(api: httpx.Client) -> None:
    kind = unique("R197P")
    doc = _building(kind, 1)
    assert api.post("/entities", json=doc).status_code == 201
    got = api.get(f"/entities/{doc['id']}", params={"pick": "id,name"}).json()
    assert got == {"id": doc["id"], "name": {"type": "Property", "value": "B1"}}, got
    got = api.get(f"/entities/{doc['id']}", params={"omit": "type,name"}).json()
    assert set(got) == {"id", "height"}, got
    r = api.get("/entities", params={"type": kind, "pick": "height", "options": "keyValues"})
    expect_status(r, 200)
    assert r.json() == [{"height": 10}]


@case("R197-NGSILD-22", "A bad projection, or pick with omit or attrs, is 400 BadRequestData",
      verifies=["CIM009-5.7.2.4-projection"], theme="interoperability",
      pics=["ngsild.projection"])  # fmt: skip
def test_bad_projection(api: httpx.Client) -> None:
    kind = unique("R197P")
    assert api.post("/entities", json=_building(kind, 1)).status_code == 201
    for params in ({"pick": "name", "omit": "name"}, {"pick": "name", "attrs": "height"},
                   {"pick": "id;name"}, {"pick": "id,,name"}, {"pick": "id,name{"}):  # fmt: skip
        problem(api.get("/entities", params={"type": kind, **params}), 400, "BadRequestData")


@case("R197-NGSILD-23", "POST /entityOperations/query with a Query body answers as GET /entities",
      verifies=["CIM009-6.23.3.1", "CIM009-5.2.23"], theme="interoperability",
      pics=["ngsild.post-query"])  # fmt: skip
def test_post_query(api: httpx.Client) -> None:
    kind = unique("R197Q")
    for n in (1, 2, 3):
        assert api.post("/entities", json=_building(kind, n)).status_code == 201
    body = {"type": "Query", "entities": [{"type": kind}], "q": "height>15"}
    r = api.post("/entityOperations/query", json=body)
    assert _ids(r) == [f"urn:ngsi-ld:{kind}:2", f"urn:ngsi-ld:{kind}:3"]
    assert _ids(r) == _ids(api.get("/entities", params={"type": kind, "q": "height>15"}))
    r = api.post("/entityOperations/query", json=body, params={"limit": 1, "count": "true"})
    expect_status(r, 200)
    assert len(r.json()) == 1
    assert r.headers.get("NGSILD-Results-Count") == "2"


@case("R197-NGSILD-24", "A multi-typed entity is found by each type; ';' in type means AND",
      verifies=["CIM009-4.5.1-types", "CIM009-4.17"], theme="interoperability",
      pics=["ngsild.type-expressions"])  # fmt: skip
def test_multi_typed(api: httpx.Client) -> None:
    a, b = unique("R197A"), unique("R197B")
    both = {
        "id": f"urn:ngsi-ld:{a}:both",
        "type": [a, b],
        "height": {"type": "Property", "value": 1},
    }
    only_a = {"id": f"urn:ngsi-ld:{a}:one", "type": a, "height": {"type": "Property", "value": 2}}
    for doc in (both, only_a):
        assert api.post("/entities", json=doc).status_code == 201, doc
    got = api.get(f"/entities/{both['id']}").json()
    assert sorted(got["type"]) == sorted([a, b]), got
    assert _ids(api.get("/entities", params={"type": b})) == [both["id"]]
    assert _ids(api.get("/entities", params={"type": a})) == sorted([both["id"], only_a["id"]])
    assert _ids(api.get("/entities", params={"type": f"{a};{b}"})) == [both["id"]]
    assert _ids(api.get("/entities", params={"type": f"({a}|{b});{b}"})) == [both["id"]]


@case("R197-NGSILD-25", "scope is stored and returned; scopeQ selects by scope, '#' and '+'",
      verifies=["CIM009-4.18", "CIM009-4.19"], theme="interoperability",
      pics=["ngsild.scope"])  # fmt: skip
def test_scope(api: httpx.Client) -> None:
    kind = unique("R197S")
    root = "/" + unique("City")
    docs = [_building(kind, 1, scope=root), _building(kind, 2, scope=[f"{root}/North", "/Other"]),
            _building(kind, 3, scope=f"{root}/North/Park"), _building(kind, 4)]  # fmt: skip
    for doc in docs:
        assert api.post("/entities", json=doc).status_code == 201, doc
    assert api.get(f"/entities/{docs[0]['id']}").json()["scope"] == root
    assert sorted(api.get(f"/entities/{docs[1]['id']}").json()["scope"]) == sorted(
        [f"{root}/North", "/Other"]
    )

    def scoped(query: str) -> list[int]:
        r = api.get("/entities", params={"type": kind, "scopeQ": query})
        return sorted(int(i.rsplit(":", 1)[-1]) for i in _ids(r))

    assert scoped(root) == [1]
    assert scoped(f"{root}/#") == [1, 2, 3]
    assert scoped(f"{root}/+") == [2]
    assert scoped(f"{root}/North/#;/Other") == [2]
    assert scoped(f"{root},/Other") == [1, 2]
    bad = _building(kind, 5, scope=None)
    problem(api.post("/entities", json=bad), 400, "BadRequestData")


@case("R197-NGSILD-26", "datasetId on retrieve and query keeps only those instances (@none: default)",
      verifies=["CIM009-5.7.1-datasetId", "CIM009-5.7.2-datasetId"], theme="interoperability",
      pics=["ngsild.dataset-id-param"])  # fmt: skip
def test_dataset_id(api: httpx.Client) -> None:
    kind = unique("R197D")
    doc = {"id": f"urn:ngsi-ld:{kind}:1", "type": kind, "speed": [
        {"type": "Property", "value": 1},
        {"type": "Property", "value": 2, "datasetId": "urn:ngsi-ld:Dataset:gps"},
    ]}  # fmt: skip
    assert api.post("/entities", json=doc).status_code == 201
    got = api.get(f"/entities/{doc['id']}", params={"datasetId": "urn:ngsi-ld:Dataset:gps"})
    expect_status(got, 200)
    assert got.json()["speed"]["value"] == 2, got.json()
    got = api.get(f"/entities/{doc['id']}", params={"datasetId": "@none"}).json()
    assert got["speed"]["value"] == 1, got
    r = api.get("/entities", params={"type": kind, "datasetId": "urn:ngsi-ld:Dataset:gps"})
    expect_status(r, 200)
    assert r.json()[0]["speed"]["value"] == 2


@case("R197-NGSILD-27", "GET /types?details=true and /types/{type} by term or expanded IRI",
      verifies=["CIM009-5.7.6", "CIM009-5.7.7", "CIM009-5.2.25", "CIM009-5.2.26"],
      theme="interoperability")  # fmt: skip
def test_type_details(api: httpx.Client) -> None:
    kind = unique("R197T")
    for n in (1, 2):
        assert api.post("/entities", json=_building(kind, n)).status_code == 201
    r = api.get("/types", params={"details": "true"})
    expect_status(r, 200)
    mine = [t for t in r.json() if t.get("typeName") == kind]
    assert len(mine) == 1, r.json()
    assert mine[0]["type"] == "EntityType"
    assert sorted(mine[0]["attributeNames"]) == ["height", "name"]
    for name in (kind, quote(VOCAB + kind, safe="")):
        r = api.get(f"/types/{name}")
        expect_status(r, 200)
        info = r.json()
        assert info["type"] == "EntityTypeInfo"
        assert info["typeName"] == kind
        assert info["entityCount"] == 2
        details = {a["attributeName"]: a for a in info["attributeDetails"]}
        assert details["height"]["attributeTypes"] == ["Property"]
    problem(api.get(f"/types/{unique('R197None')}"), 404, "ResourceNotFound")


@case("R197-NGSILD-28", "GET /attributes?details=true and /attributes/{attr} describe attributes",
      verifies=["CIM009-5.7.8", "CIM009-5.7.9", "CIM009-5.7.10", "CIM009-5.2.27"],
      theme="interoperability")  # fmt: skip
def test_attribute_details(api: httpx.Client) -> None:
    kind = unique("R197T")
    attr = unique("r197attr")
    doc = {"id": f"urn:ngsi-ld:{kind}:1", "type": kind, attr: {"type": "Property", "value": 1}}
    assert api.post("/entities", json=doc).status_code == 201
    r = api.get("/attributes")
    expect_status(r, 200)
    assert r.json()["type"] == "AttributeList"
    assert attr in r.json()["attributeList"]
    r = api.get("/attributes", params={"details": "true"})
    mine = [a for a in r.json() if a.get("attributeName") == attr]
    assert len(mine) == 1, r.json()
    assert mine[0]["type"] == "Attribute"
    assert mine[0]["typeNames"] == [kind]
    info = api.get(f"/attributes/{attr}").json()
    assert info["type"] == "Attribute"
    assert info["attributeCount"] == 1
    assert info["attributeTypes"] == ["Property"]
    assert info["typeNames"] == [kind]
    problem(api.get(f"/attributes/{unique('r197none')}"), 404, "ResourceNotFound")
