"""The entity API against a real platform process on [::1] (CIM 009 5.6, 5.7)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import PlatformProcess

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
LD = "application/ld+json"


def room(n: int = 1, **extra: Any) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "id": f"urn:ngsi-ld:Room:{n}",
        "type": "Room",
        "temperature": {
            "type": "Property",
            "value": 20 + n,
            "unitCode": "CEL",
            "observedAt": "2026-11-24T10:00:00Z",
            "accuracy": {"type": "Property", "value": 0.5},
        },
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [6.14, 46.2]},
        },
        "inBuilding": {"type": "Relationship", "object": "urn:ngsi-ld:Building:A"},
    }
    entity.update(extra)
    return entity


def problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["type"] == ERR + kind
    assert body["title"]
    assert body["detail"]
    return body


def test_create_answers_201_with_location(client: httpx.Client) -> None:
    """POST /entities creates the entity and names it in Location."""
    r = client.post("/entities", json=room())
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/ngsi-ld/v1/entities/urn:ngsi-ld:Room:1"


def test_create_twice_is_409_already_exists(client: httpx.Client) -> None:
    """A second create with the same id is rejected with AlreadyExists."""
    assert client.post("/entities", json=room()).status_code == 201
    problem(client.post("/entities", json=room()), 409, "AlreadyExists")


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"id": "not a uri", "type": "Room"}, "id"),
        ({"type": "Room"}, "id"),
        ({"id": "urn:ngsi-ld:Room:x"}, "type"),
        ({"id": "urn:ngsi-ld:Room:x", "type": "Ro(om"}, "type"),
        ({"id": "urn:ngsi-ld:Room:x", "type": "Room", "t": {"type": "Property"}}, "value"),
        (
            {
                "id": "urn:ngsi-ld:Room:x",
                "type": "Room",
                "t": {"type": "Relationship", "object": "x y"},
            },
            "URI",
        ),
        ({"id": "urn:ngsi-ld:Room:x", "type": "Room", "t": {"type": "Bogus", "value": 1}}, "Bogus"),
        (
            {
                "id": "urn:ngsi-ld:Room:x",
                "type": "Room",
                "t": {"type": "Property", "value": 1, "observedAt": "yesterday"},
            },
            "observedAt",
        ),
        (
            {
                "id": "urn:ngsi-ld:Room:x",
                "type": "Room",
                "t": {"type": "Property", "value": 1, "observedAt": 1767225600},
            },
            "observedAt",
        ),
        (
            {
                "id": "urn:ngsi-ld:Room:x",
                "type": "Room",
                "t": {"type": "Property", "value": 1, "unitCode": 5},
            },
            "unitCode",
        ),
        (
            {
                "id": "urn:ngsi-ld:Room:x",
                "type": "Room",
                "t": {"type": "Property", "value": None, "unitCode": "CEL"},
            },
            "value",
        ),
        (
            {
                "id": "urn:ngsi-ld:Room:x",
                "type": "Room",
                "location": {
                    "type": "GeoProperty",
                    "value": {"type": "Point", "coordinates": [500, 1]},
                },
            },
            "location",
        ),
        ([1, 2], "object"),
    ],
)
def test_create_rejects_invalid_entities_with_bad_request_data(
    client: httpx.Client, doc: Any, fragment: str
) -> None:
    """Invalid ids, types and attribute shapes are 400 BadRequestData naming the problem."""
    body = problem(client.post("/entities", json=doc), 400, "BadRequestData")
    assert fragment.lower() in body["detail"].lower()


def test_malformed_json_is_400_invalid_request(client: httpx.Client) -> None:
    """A body that is not JSON is InvalidRequest."""
    r = client.post("/entities", content=b"{nope", headers={"Content-Type": "application/json"})
    problem(r, 400, "InvalidRequest")


def test_retrieve_returns_normalized_entity_faithfully(client: httpx.Client) -> None:
    """Properties with metadata and sub-properties, GeoProperties and Relationships round-trip."""
    client.post("/entities", json=room())
    r = client.get("/entities/urn:ngsi-ld:Room:1")
    assert r.status_code == 200
    assert CORE in r.headers["link"]
    assert r.json() == room()


def test_retrieve_key_values_and_concise(client: httpx.Client) -> None:
    """options=keyValues gives bare values; concise drops the implied types."""
    client.post("/entities", json=room())
    kv = client.get("/entities/urn:ngsi-ld:Room:1", params={"options": "keyValues"}).json()
    assert kv["temperature"] == 21
    assert kv["inBuilding"] == "urn:ngsi-ld:Building:A"
    assert kv["location"] == {"type": "Point", "coordinates": [6.14, 46.2]}
    concise = client.get("/entities/urn:ngsi-ld:Room:1", params={"format": "concise"}).json()
    assert concise["temperature"]["value"] == 21
    assert "type" not in concise["temperature"]
    assert concise["temperature"]["accuracy"] == 0.5
    assert concise["inBuilding"] == {"object": "urn:ngsi-ld:Building:A"}


def test_retrieve_sys_attrs_and_attrs_projection(client: httpx.Client) -> None:
    """sysAttrs adds createdAt/modifiedAt; attrs keeps only the named attributes."""
    client.post("/entities", json=room())
    full = client.get("/entities/urn:ngsi-ld:Room:1", params={"options": "sysAttrs"}).json()
    assert full["createdAt"].endswith("Z")
    assert "modifiedAt" in full["temperature"]
    only = client.get("/entities/urn:ngsi-ld:Room:1", params={"attrs": "temperature"}).json()
    assert set(only) == {"id", "type", "temperature"}


def test_concise_input_is_understood(client: httpx.Client) -> None:
    """Concise input (bare values, GeoJSON, {object}) is stored as normalized attributes."""
    doc = {
        "id": "urn:ngsi-ld:Room:c",
        "type": "Room",
        "name": "Kitchen",
        "location": {"type": "Point", "coordinates": [6.1, 46.2]},
        "inBuilding": {"object": "urn:ngsi-ld:Building:A"},
        "temperature": {"value": 3, "unitCode": "CEL"},
    }
    assert client.post("/entities", json=doc).status_code == 201
    got = client.get("/entities/urn:ngsi-ld:Room:c").json()
    assert got["name"] == {"type": "Property", "value": "Kitchen"}
    assert got["location"]["type"] == "GeoProperty"
    assert got["inBuilding"] == {"type": "Relationship", "object": "urn:ngsi-ld:Building:A"}
    assert got["temperature"] == {"type": "Property", "value": 3, "unitCode": "CEL"}


def test_missing_entity_is_404_and_bad_id_is_400(client: httpx.Client) -> None:
    """Retrieve/delete of an unknown id is ResourceNotFound; a non-URI id is BadRequestData."""
    client.post("/entities", json=room())  # make the tenant exist
    problem(client.get("/entities/urn:ngsi-ld:Room:nope"), 404, "ResourceNotFound")
    problem(client.delete("/entities/urn:ngsi-ld:Room:nope"), 404, "ResourceNotFound")
    problem(client.get("/entities/nope"), 400, "BadRequestData")


def test_delete_entity(client: httpx.Client) -> None:
    """DELETE answers 204 and the entity is gone."""
    client.post("/entities", json=room())
    assert client.delete("/entities/urn:ngsi-ld:Room:1").status_code == 204
    assert client.get("/entities/urn:ngsi-ld:Room:1").status_code == 404


def test_append_with_no_overwrite_reports_207(client: httpx.Client) -> None:
    """Append adds new attributes; with noOverwrite existing ones are kept and listed."""
    client.post("/entities", json=room())
    body = {
        "temperature": {"type": "Property", "value": 99},
        "humidity": {"type": "Property", "value": 40},
    }
    r = client.post(
        "/entities/urn:ngsi-ld:Room:1/attrs", params={"options": "noOverwrite"}, json=body
    )
    assert r.status_code == 207
    assert r.json()["updated"] == ["humidity"]
    assert r.json()["notUpdated"][0]["attributeName"] == "temperature"
    got = client.get("/entities/urn:ngsi-ld:Room:1", params={"options": "keyValues"}).json()
    assert (got["temperature"], got["humidity"]) == (21, 40)
    r = client.post(
        "/entities/urn:ngsi-ld:Room:1/attrs", json={"temperature": {"type": "Property", "value": 5}}
    )
    assert r.status_code == 204
    got = client.get("/entities/urn:ngsi-ld:Room:1", params={"options": "keyValues"}).json()
    assert got["temperature"] == 5


def test_update_attrs_only_touches_existing(client: httpx.Client) -> None:
    """PATCH /attrs updates existing attributes and reports unknown ones in 207."""
    client.post("/entities", json=room())
    body = {
        "temperature": {"type": "Property", "value": 7},
        "ghost": {"type": "Property", "value": 1},
    }
    r = client.patch("/entities/urn:ngsi-ld:Room:1/attrs", json=body)
    assert r.status_code == 207
    assert r.json()["notUpdated"][0]["attributeName"] == "ghost"
    got = client.get("/entities/urn:ngsi-ld:Room:1", params={"options": "keyValues"}).json()
    assert got["temperature"] == 7
    assert "ghost" not in got


def test_partial_attribute_update_keeps_other_members(client: httpx.Client) -> None:
    """PATCH /attrs/{attr} changes the value and keeps unitCode and sub-properties."""
    client.post("/entities", json=room())
    r = client.patch("/entities/urn:ngsi-ld:Room:1/attrs/temperature", json={"value": 30})
    assert r.status_code == 204, r.text
    got = client.get("/entities/urn:ngsi-ld:Room:1").json()["temperature"]
    assert got["value"] == 30
    assert got["unitCode"] == "CEL"
    assert got["accuracy"] == {"type": "Property", "value": 0.5}
    problem(
        client.patch("/entities/urn:ngsi-ld:Room:1/attrs/ghost", json={"value": 1}),
        404,
        "ResourceNotFound",
    )


def test_delete_attribute_and_dataset_instances(client: httpx.Client) -> None:
    """Multi-instance attributes keep their datasetIds; deleting one instance leaves the other."""
    doc = room(
        speed=[
            {"type": "Property", "value": 1, "datasetId": "urn:ngsi-ld:Dataset:gps"},
            {"type": "Property", "value": 2, "datasetId": "urn:ngsi-ld:Dataset:radar"},
        ]
    )
    client.post("/entities", json=doc)
    got = client.get("/entities/urn:ngsi-ld:Room:1").json()
    assert got["speed"] == doc["speed"]
    r = client.delete(
        "/entities/urn:ngsi-ld:Room:1/attrs/speed", params={"datasetId": "urn:ngsi-ld:Dataset:gps"}
    )
    assert r.status_code == 204
    got = client.get("/entities/urn:ngsi-ld:Room:1").json()
    assert got["speed"] == doc["speed"][1]
    assert client.delete("/entities/urn:ngsi-ld:Room:1/attrs/inBuilding").status_code == 204
    problem(client.delete("/entities/urn:ngsi-ld:Room:1/attrs/inBuilding"), 404, "ResourceNotFound")


def test_merge_and_replace_entity(client: httpx.Client) -> None:
    """PATCH /entities/{id} merges attributes; PUT replaces the whole entity."""
    client.post("/entities", json=room())
    assert client.patch("/entities/urn:ngsi-ld:Room:1", json={"humidity": 3}).status_code == 204
    got = client.get("/entities/urn:ngsi-ld:Room:1", params={"options": "keyValues"}).json()
    assert got["humidity"] == 3
    assert got["temperature"] == 21
    r = client.put("/entities/urn:ngsi-ld:Room:1", json={"type": "Office", "name": "x"})
    assert r.status_code == 204, r.text
    got = client.get("/entities/urn:ngsi-ld:Room:1", params={"options": "keyValues"}).json()
    assert got == {"id": "urn:ngsi-ld:Room:1", "type": "Office", "name": "x"}


def test_content_negotiation(client: httpx.Client) -> None:
    """415 for unknown Content-Type, 406 for unknown Accept, @context in JSON-LD answers."""
    r = client.post("/entities", content=b"<x/>", headers={"Content-Type": "application/xml"})
    problem(r, 415, "UnsupportedMediaType")
    client.post("/entities", json=room())
    problem(
        client.get("/entities/urn:ngsi-ld:Room:1", headers={"Accept": "text/csv"}),
        406,
        "NotAcceptable",
    )
    r = client.get("/entities/urn:ngsi-ld:Room:1", headers={"Accept": LD})
    assert r.headers["content-type"].startswith(LD)
    assert r.json()["@context"] == CORE
    doc = {**room(2), "@context": CORE}
    problem(client.post("/entities", json=doc), 400, "BadRequestData")  # @context in plain JSON


def test_json_ld_context_expands_and_compacts_terms(client: httpx.Client) -> None:
    """Terms from a client's @context are stored as IRIs and compacted per requester."""
    ctx = [
        {"temp": "https://example.org/ns#temperature", "Sensor": "https://example.org/ns#Sensor"},
        CORE,
    ]
    doc = {"id": "urn:ngsi-ld:Sensor:1", "type": "Sensor", "temp": 5, "@context": ctx}
    r = client.post(
        "/entities",
        content=httpx.Request("POST", "/", json=doc).content,
        headers={"Content-Type": LD},
    )
    assert r.status_code == 201, r.text
    plain = client.get("/entities/urn:ngsi-ld:Sensor:1").json()
    assert plain["type"] == "https://example.org/ns#Sensor"
    assert plain["https://example.org/ns#temperature"]["value"] == 5
    found = client.get("/entities", params={"type": "https://example.org/ns#Sensor"}).json()
    assert [e["id"] for e in found] == ["urn:ngsi-ld:Sensor:1"]


def test_tenants_are_isolated(platform: PlatformProcess, client: httpx.Client) -> None:
    """An entity in one tenant is invisible from another and from the default tenant."""
    client.post("/entities", json=room())
    with httpx.Client(base_url=platform.api, headers={"NGSILD-Tenant": "other"}) as other:
        other.post("/entities", json=room(9))
        assert other.get("/entities/urn:ngsi-ld:Room:1").status_code == 404
        assert client.get("/entities/urn:ngsi-ld:Room:9").status_code == 404
    problem(
        httpx.get(
            platform.api + "/entities",
            params={"type": "Room"},
            headers={"NGSILD-Tenant": "never-created"},
        ),
        404,
        "NonexistentTenant",
    )
    default = httpx.get(platform.api + "/entities", params={"type": "Room"}).json()
    assert all(e["id"] not in ("urn:ngsi-ld:Room:1",) for e in default)


def test_unknown_route_and_method_give_problem_details(client: httpx.Client) -> None:
    """Unknown paths are 404 and unsupported methods 405, both as ProblemDetails JSON."""
    problem(client.get("/nothing-here"), 404, "ResourceNotFound")
    r = client.put("/entities")
    assert r.status_code == 405
    assert r.json()["type"] == ERR + "OperationNotSupported"


def test_health_and_openapi_docs(platform: PlatformProcess) -> None:
    """/health answers ok and /docs serves the OpenAPI UI."""
    assert httpx.get(platform.base + "/health").json()["status"] == "ok"
    assert httpx.get(platform.base + "/docs").status_code == 200
    spec = httpx.get(platform.base + "/openapi.json").json()
    assert "/ngsi-ld/v1/entities" in spec["paths"]


def test_shipped_contexts_are_served(platform: PlatformProcess) -> None:
    """The core and testbed contexts are served by the platform itself (offline use)."""
    r = httpx.get(platform.base + "/ngsi-ld/contexts/ngsi-ld-core-context-v1.8.jsonld")
    assert r.status_code == 200
    assert r.json()["@context"]["observedAt"]["@id"] == "ngsi-ld:observedAt"
    assert httpx.get(platform.base + "/ngsi-ld/contexts/testbed-context.jsonld").status_code == 200
    assert httpx.get(platform.base + "/ngsi-ld/contexts/evil.jsonld").status_code == 404


def test_a_type_named_twice_is_one_type(client: httpx.Client) -> None:
    """An entity's types are a set (CIM 009 4.5.1): a repeated name is stored once, and a
    later batch upsert with the same type does not add it again."""
    doc = {"id": "urn:ngsi-ld:Room:twice", "type": ["Room", "Room"], "t": {"value": 1}}
    assert client.post("/entities", json=doc).status_code == 201
    again = [{"id": "urn:ngsi-ld:Room:twice", "type": "Room", "t": {"value": 2}}]
    r = client.post("/entityOperations/upsert", params={"options": "update"}, json=again)
    assert r.status_code in (201, 204)
    got = client.get("/entities/urn:ngsi-ld:Room:twice").json()
    assert got["type"] == "Room"
    assert got["t"]["value"] == 2
