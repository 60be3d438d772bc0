"""pick / omit projections and the datasetId parameter on retrieve and query (CIM 009 4.21,
5.7.1, 5.7.2), against a real platform."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

ERR = "https://uri.etsi.org/ngsi-ld/errors/"


def building(n: int, **attrs: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": f"urn:ngsi-ld:Building:b{n}",
        "type": "Building",
        "name": {"type": "Property", "value": f"Building {n}"},
        "height": {"type": "Property", "value": 10 * n, "unitCode": "MTR"},
        "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:p1"},
    }
    doc.update(attrs)
    return doc


@pytest.fixture
def town(client: httpx.Client) -> httpx.Client:
    docs = [
        building(1),
        building(2),
        {
            "id": "urn:ngsi-ld:Vehicle:v1",
            "type": "Vehicle",
            "speed": {"type": "Property", "value": 3},
        },
    ]
    r = client.post("/entityOperations/create", json=docs)
    assert r.status_code == 201, r.text
    return client


def bad_request(r: httpx.Response) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["type"] == ERR + "BadRequestData"
    assert r.json()["detail"]


def test_retrieve_pick_keeps_only_the_named_members(town: httpx.Client) -> None:
    """CIM 009 4.21, 5.7.1: pick=id,name keeps id and name, nothing else."""
    got = town.get("/entities/urn:ngsi-ld:Building:b1", params={"pick": "id,name"}).json()
    assert got == {
        "id": "urn:ngsi-ld:Building:b1",
        "name": {"type": "Property", "value": "Building 1"},
    }


def test_retrieve_omit_drops_the_named_members(town: httpx.Client) -> None:
    """CIM 009 4.21, 5.7.1: omit=type,height drops them and keeps the rest."""
    got = town.get("/entities/urn:ngsi-ld:Building:b1", params={"omit": "type,height"}).json()
    assert set(got) == {"id", "name", "owner"}


def test_query_pick_drops_entities_left_empty(town: httpx.Client) -> None:
    """CIM 009 4.21, 5.7.2: pick=name over Building,Vehicle: the vehicle has nothing left."""
    r = town.get("/entities", params={"type": "Building,Vehicle", "pick": "name"})
    assert r.status_code == 200, r.text
    assert sorted(e["name"]["value"] for e in r.json()) == ["Building 1", "Building 2"]
    assert all(set(e) == {"name"} for e in r.json())
    r = town.get("/entities", params={"type": "Building,Vehicle", "pick": "id,name"})
    assert sorted(e["id"] for e in r.json())[-1] == "urn:ngsi-ld:Vehicle:v1"


def test_query_omit_with_key_values(town: httpx.Client) -> None:
    """CIM 009 4.21: omit applies to the simplified representation as well."""
    r = town.get(
        "/entities", params={"type": "Building", "omit": "id,owner", "options": "keyValues"}
    )
    assert r.status_code == 200, r.text
    assert sorted(r.json(), key=lambda e: e["height"]) == [
        {"type": "Building", "name": "Building 1", "height": 10},
        {"type": "Building", "name": "Building 2", "height": 20},
    ]


@pytest.mark.parametrize(
    "params",
    [
        {"pick": "name", "omit": "name"},
        {"pick": "name", "omit": "height"},
        {"pick": "name", "attrs": "height"},
        {"omit": "name", "attrs": "height"},
        {"pick": "id;name"},
        {"pick": "id,owner{name"},
        {"pick": "id,owner{{name}"},
        {"pick": "id,,name"},
        {"pick": "id,owner{,name}"},
        {"pick": "id,owner{}"},
        {"pick": ""},
        {"pick": "owner{name}"},  # a Linked Entity selection without join
        {"pick": "owner{a{name}}", "join": "inline", "joinLevel": "1"},
    ],
)
def test_bad_projection_is_bad_request_data(town: httpx.Client, params: dict[str, str]) -> None:
    """CIM 009 4.21, 5.7.2.4: a projection outside the grammar, pick with omit or attrs, or
    deeper than joinLevel is 400 BadRequestData."""
    bad_request(town.get("/entities", params={"type": "Building", **params}))
    bad_request(town.get("/entities/urn:ngsi-ld:Building:b1", params=params))


def test_dataset_id_selects_instances(client: httpx.Client) -> None:
    """CIM 009 5.7.1, 5.7.2 (v1.8 datasetId): only the instances with those datasetIds; @none
    names the default instance."""
    doc = {
        "id": "urn:ngsi-ld:Sensor:ds1",
        "type": "Sensor",
        "temperature": [
            {"type": "Property", "value": 20},
            {"type": "Property", "value": 21, "datasetId": "urn:ngsi-ld:dataset:a"},
            {"type": "Property", "value": 22, "datasetId": "urn:ngsi-ld:dataset:b"},
        ],
        "humidity": {"type": "Property", "value": 50},
    }
    assert client.post("/entities", json=doc).status_code == 201
    got = client.get(f"/entities/{doc['id']}", params={"datasetId": "urn:ngsi-ld:dataset:a"}).json()
    assert got["temperature"]["value"] == 21
    assert "humidity" not in got
    got = client.get(f"/entities/{doc['id']}", params={"datasetId": "@none,urn:ngsi-ld:dataset:b"})
    temps = sorted(i["value"] for i in got.json()["temperature"])
    assert temps == [20, 22]
    assert got.json()["humidity"]["value"] == 50
    r = client.get("/entities", params={"type": "Sensor", "datasetId": "urn:ngsi-ld:dataset:b"})
    assert r.json()[0]["temperature"]["value"] == 22
    bad_request(client.get(f"/entities/{doc['id']}", params={"datasetId": "not a uri"}))


def test_system_attrs_alone_are_too_wide(town: httpx.Client) -> None:
    """CIM 009 5.7.2.4: attrs or q naming only system attributes do not narrow a query."""
    bad_request(town.get("/entities", params={"attrs": "createdAt"}))
    bad_request(town.get("/entities", params={"q": 'modifiedAt>"2020-01-01T00:00:00Z"'}))
