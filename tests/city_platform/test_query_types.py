"""Discovery of types and attributes (CIM 009 5.7.5-5.7.10, 5.2.24-5.2.27) on a real platform."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"


@pytest.fixture
def town(client: httpx.Client) -> httpx.Client:
    docs = [
        {
            "id": "urn:ngsi-ld:Building:b1",
            "type": ["Building", "Tower"],
            "name": {"type": "Property", "value": "One"},
            "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:p"},
        },
        {
            "id": "urn:ngsi-ld:Building:b2",
            "type": "Building",
            "name": {"type": "Property", "value": "Two"},
            "scope": "/Madrid",
        },
        {
            "id": "urn:ngsi-ld:Vehicle:v1",
            "type": "Vehicle",
            "owner": {"type": "Property", "value": "Ann"},
        },
    ]
    assert town_create(client, docs)
    return client


def town_create(client: httpx.Client, docs: list[dict[str, object]]) -> bool:
    return client.post("/entityOperations/create", json=docs).status_code == 201


def test_type_list_and_details(town: httpx.Client) -> None:
    """CIM 009 5.7.5/5.7.6, 5.2.24/5.2.25: an EntityTypeList, or EntityTypes with their
    attributeNames; a multi-typed entity counts under each of its types."""
    body = town.get("/types").json()
    assert body["type"] == "EntityTypeList"
    assert body["typeList"] == ["Building", "Tower", "Vehicle"]
    details = {t["typeName"]: t for t in town.get("/types", params={"details": "true"}).json()}
    assert details["Building"] == {
        "id": VOCAB + "Building",
        "type": "EntityType",
        "typeName": "Building",
        "attributeNames": ["name", "owner"],
    }
    assert details["Tower"]["attributeNames"] == ["name", "owner"]
    assert town.get("/types/", params={"details": "true"}).status_code == 200


@pytest.mark.parametrize(
    "name", ["Building", quote(VOCAB + "Building", safe=""), VOCAB + "Building"]
)
def test_type_info_by_term_or_iri(town: httpx.Client, name: str) -> None:
    """CIM 009 5.7.7, 5.2.26: EntityTypeInfo with entityCount and attributeDetails, for a term
    or the expanded IRI (URL-encoded or not)."""
    r = town.get(f"/types/{name}")
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["id"] == VOCAB + "Building"
    assert info["type"] == "EntityTypeInfo"
    assert info["typeName"] == "Building"
    assert info["entityCount"] == 2
    owner = next(a for a in info["attributeDetails"] if a["attributeName"] == "owner")
    assert owner == {
        "id": VOCAB + "owner",
        "type": "Attribute",
        "attributeName": "owner",
        "attributeTypes": ["Relationship"],
    }


def test_type_info_by_compact_iri(town: httpx.Client) -> None:
    """CIM 009 5.7.7, 5.5.7: a compact IRI expands by the prefix of the request's context."""
    # ngsi-ld: is a prefix the core context defines, so no user context is needed.
    doc = {"id": "urn:ngsi-ld:Bridge:1", "type": "ngsi-ld:R197Bridge"}
    assert town.post("/entities", json=doc).status_code == 201
    for name in ("ngsi-ld:R197Bridge", quote("https://uri.etsi.org/ngsi-ld/R197Bridge", safe="")):
        r = town.get(f"/types/{name}")
        assert r.status_code == 200, r.text
        assert r.json()["id"] == "https://uri.etsi.org/ngsi-ld/R197Bridge"
        assert r.json()["entityCount"] == 1


def test_attributes_list_details_and_info(town: httpx.Client) -> None:
    """CIM 009 5.7.8-5.7.10, 5.2.27: AttributeList, Attribute with typeNames, and one
    Attribute with attributeCount, attributeTypes and typeNames; scope is no attribute."""
    body = town.get("/attributes").json()
    assert body["type"] == "AttributeList"
    assert body["attributeList"] == ["name", "owner"]
    details = town.get("/attributes", params={"details": "true"}).json()
    owner = next(a for a in details if a["attributeName"] == "owner")
    assert owner["typeNames"] == ["Building", "Tower", "Vehicle"]
    info = town.get("/attributes/owner").json()
    assert info["attributeCount"] == 2
    assert info["attributeTypes"] == ["Property", "Relationship"]
    assert info["typeNames"] == ["Building", "Tower", "Vehicle"]
    assert town.get(f"/attributes/{quote(VOCAB + 'owner', safe='')}").status_code == 200
    for member in ("id", "type", "scope", "createdAt"):
        r = town.get(f"/attributes/{member}")
        assert r.status_code == 404, member


@pytest.mark.parametrize(
    "path", ["/types/Building?details=true", "/attributes?limit=5", "/attributes/name?details=true"]
)
def test_undefined_parameters_are_invalid_request(town: httpx.Client, path: str) -> None:
    """CIM 009 6.3.20: discovery resources take only their own parameters."""
    r = town.get(path)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == ERR + "InvalidRequest"


def test_unknown_type_is_not_found(town: httpx.Client) -> None:
    """CIM 009 5.7.7: a type no entity has is 404 ResourceNotFound."""
    r = town.get("/types/NoSuchType")
    assert r.status_code == 404
    assert r.json()["type"] == ERR + "ResourceNotFound"
