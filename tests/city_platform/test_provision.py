"""Provision (CIM 009 V1.8.1 5.6): merge, update and partial update with the NGSI-LD Null,
replace attribute, batch merge, purge, scope and types in fragments, empty path segments and
batch delete in JSON-LD, on a real platform."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
NULL = "urn:ngsi-ld:null"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
EID = "urn:ngsi-ld:Building:b1"


def problem(r: httpx.Response, status: int, kind: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["type"] == ERR + kind, r.text


def building(**extra: Any) -> dict[str, Any]:
    return {
        "id": EID,
        "type": "Building",
        "name": {"type": "Property", "value": "Eiffel Tower"},
        "airQualityLevel": {
            "type": "Property",
            "value": 4,
            "unitCode": "C62",
            "observedAt": "2020-09-09T16:40:00.000Z",
        },
        "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:p1"},
        "location": {"type": "GeoProperty",
                     "value": {"type": "Point", "coordinates": [2.29, 48.86]}},
        "street": {"type": "LanguageProperty", "languageMap": {"fr": "Quai Branly", "@none": "QB"}},
        "meta": {"type": "Property", "value": {"a": 1, "b": {"c": 2, "d": 3}}},
        **extra,
    }  # fmt: skip


@pytest.fixture
def b1(client: httpx.Client) -> httpx.Client:
    r = client.post("/entities", json=building())
    assert r.status_code == 201, r.text
    return client


def get(client: httpx.Client, eid: str = EID, **params: str) -> dict[str, Any]:
    r = client.get(f"/entities/{eid}", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# -- Merge Entity (5.6.17) --------------------------------------------------------------------


def test_merge_keeps_unnamed_members_and_replaces_named(b1: httpx.Client) -> None:
    """5.6.17 (ETSI 056_01_04): a merged Property keeps the unitCode the fragment does not
    name and takes the value and observedAt it names."""
    frag = {"airQualityLevel": {"type": "Property", "value": 1,
                                "observedAt": "2024-01-01T00:00:00.000Z"}}  # fmt: skip
    r = b1.patch(f"/entities/{EID}", json=frag)
    assert r.status_code == 204, r.text
    assert r.content == b""
    got = get(b1)["airQualityLevel"]
    assert got == {"type": "Property", "value": 1, "unitCode": "C62",
                   "observedAt": "2024-01-01T00:00:00.000Z"}  # fmt: skip
    assert get(b1)["name"]["value"] == "Eiffel Tower"


def test_merge_appends_new_attributes_and_adds_types(b1: httpx.Client) -> None:
    frag = {"type": "Tower", "height": {"type": "Property", "value": 330}}
    assert b1.patch(f"/entities/{EID}", json=frag).status_code == 204
    got = get(b1)
    assert got["height"]["value"] == 330
    assert sorted(got["type"]) == ["Building", "Tower"]


@pytest.mark.parametrize(
    ("attr", "fragment"),
    [
        ("name", {"type": "Property", "value": NULL}),
        ("owner", {"type": "Relationship", "object": NULL}),
        ("location", {"type": "GeoProperty", "value": NULL}),
        ("street", {"type": "LanguageProperty", "languageMap": {"@none": NULL}}),
        ("name", NULL),
    ],
)
def test_merge_null_deletes_the_attribute(b1: httpx.Client, attr: str, fragment: Any) -> None:
    """5.6.17 with 5.2.1 (ETSI 056_03): a Null value deletes the Attribute."""
    assert b1.patch(f"/entities/{EID}", json={attr: fragment}).status_code == 204
    got = get(b1)
    assert attr not in got
    assert "airQualityLevel" in got


def test_merge_null_deletes_the_instance_of_its_dataset(client: httpx.Client) -> None:
    """5.6.17 (ETSI 056_04/056_05): a Null deletes only the instance of its datasetId."""
    doc = {"id": EID, "type": "Building", "name": [
        {"type": "Property", "value": "default"},
        {"type": "Property", "value": "d1", "datasetId": "urn:ngsi-ld:Dataset:01"},
    ]}  # fmt: skip
    assert client.post("/entities", json=doc).status_code == 201
    frag = {"name": {"type": "Property", "value": NULL, "datasetId": "urn:ngsi-ld:Dataset:01"}}
    assert client.patch(f"/entities/{EID}", json=frag).status_code == 204
    assert get(client)["name"] == {"type": "Property", "value": "default"}
    assert client.post("/entities/" + EID + "/attrs", json={"name": [
        {"type": "Property", "value": "d2", "datasetId": "urn:ngsi-ld:Dataset:02"}]}
    ).status_code == 204  # fmt: skip
    assert client.patch(f"/entities/{EID}", json={"name": {"type": "Property", "value": NULL}}
                        ).status_code == 204  # fmt: skip
    assert get(client)["name"]["datasetId"] == "urn:ngsi-ld:Dataset:02"


def test_merge_null_sub_attribute_metadata_and_json_key(b1: httpx.Client) -> None:
    """A Null sub-attribute or unitCode deletes that member; a Null key of a JSON object
    value deletes that key, the other keys merge (RFC 7396, 5.5.4)."""
    frag = {
        "airQualityLevel": {
            "type": "Property",  # without it (and without value) this is a concise JSON value
            "unitCode": NULL,
            "accuracy": {"type": "Property", "value": 0.5},
        },
        "meta": {"type": "Property", "value": {"a": NULL, "b": {"d": NULL, "e": 4}}},
    }
    assert b1.patch(f"/entities/{EID}", json=frag).status_code == 204
    got = get(b1)
    assert got["airQualityLevel"] == {"type": "Property", "value": 4,
                                      "observedAt": "2020-09-09T16:40:00.000Z",
                                      "accuracy": {"type": "Property", "value": 0.5}}  # fmt: skip
    assert got["meta"]["value"] == {"b": {"c": 2, "e": 4}}
    gone = {"type": "Property", "value": NULL}
    frag = {"airQualityLevel": {"type": "Property", "accuracy": gone}}
    assert b1.patch(f"/entities/{EID}", json=frag).status_code == 204
    assert "accuracy" not in get(b1)["airQualityLevel"]


def test_merge_scope_replaced_and_null_removes_it(client: httpx.Client) -> None:
    """4.18 with 5.6.17: a scope in the fragment replaces the entity's; a Null removes it."""
    assert client.post("/entities", json=building(scope="/Paris")).status_code == 201
    assert client.patch(f"/entities/{EID}", json={"scope": ["/France", "/Tour"]}).status_code == 204
    assert get(client)["scope"] == ["/France", "/Tour"]
    assert client.patch(f"/entities/{EID}", json={"scope": NULL}).status_code == 204
    assert "scope" not in get(client)


def test_merge_errors(b1: httpx.Client) -> None:
    """5.6.17.4 (ETSI 056_02): invalid id 400, missing id 400, unknown entity 404; a body
    id other than the URL's 400; a Null datasetId 400."""
    frag = {"name": {"type": "Property", "value": "x"}}
    problem(b1.patch("/entities/invalidUri", json=frag), 400, "BadRequestData")
    problem(b1.patch("/entities/", json=frag), 400, "BadRequestData")
    problem(b1.patch("/entities/urn:ngsi-ld:Building:none", json=frag), 404, "ResourceNotFound")
    problem(b1.patch(f"/entities/{EID}", json={**frag, "id": "urn:x:y"}), 400, "BadRequestData")
    bad = {"name": {"type": "Property", "value": "x", "datasetId": NULL}}
    problem(b1.patch(f"/entities/{EID}", json=bad), 400, "BadRequestData")
    problem(b1.patch(f"/entities/{EID}", json=[frag]), 400, "BadRequestData")


def test_merge_in_json_ld_with_context(b1: httpx.Client) -> None:
    """A merge fragment in application/ld+json expands its terms with its own @context."""
    frag = {"@context": [{"nick": "https://example.org/nick"}, CORE],
            "nick": {"type": "Property", "value": "Dame de fer"}}  # fmt: skip
    r = b1.patch(f"/entities/{EID}", content=__import__("json").dumps(frag),
                 headers={"Content-Type": "application/ld+json"})  # fmt: skip
    assert r.status_code == 204, r.text
    assert get(b1)["https://example.org/nick"]["value"] == "Dame de fer"


# -- Update Entity Attributes (5.6.2), Append (5.6.3), Partial Attribute Update (5.6.4) ---------


def test_update_attributes_null_deletes_and_scope_replaces(client: httpx.Client) -> None:
    assert client.post("/entities", json=building(scope="/Paris")).status_code == 201
    frag = {"name": {"type": "Property", "value": NULL}, "scope": "/Lyon",
            "airQualityLevel": {"type": "Property", "value": 2}}  # fmt: skip
    assert client.patch(f"/entities/{EID}/attrs", json=frag).status_code == 204
    got = get(client)
    assert "name" not in got
    assert got["scope"] == "/Lyon"
    assert got["airQualityLevel"] == {"type": "Property", "value": 2}  # update replaces
    assert client.patch(f"/entities/{EID}/attrs", json={"scope": NULL}).status_code == 204
    assert "scope" not in get(client)
    # ETSI 011_05_02: update does not add a scope the entity does not have.
    r = client.patch(f"/entities/{EID}/attrs", json={"scope": "/Lyon"})
    assert r.status_code == 207, r.text
    assert r.json()["notUpdated"][0]["attributeName"] == "scope"
    assert "scope" not in get(client)
    r = client.patch(f"/entities/{EID}/attrs", json={"nope": {"type": "Property", "value": NULL}})
    assert r.status_code == 207, r.text
    assert r.json()["notUpdated"][0]["attributeName"] == "nope"


def test_append_scopes_and_refuses_null(client: httpx.Client) -> None:
    """ETSI 010_07: append replaces the scope, with noOverwrite it adds the fragment's."""
    assert client.post("/entities", json=building(scope="/Paris")).status_code == 201
    assert client.post(f"/entities/{EID}/attrs", json={"scope": "/Tour"}).status_code == 204
    assert get(client)["scope"] == "/Tour"
    r = client.post(f"/entities/{EID}/attrs", params={"options": "noOverwrite"},
                    json={"scope": "/Paris"})  # fmt: skip
    assert r.status_code == 204, r.text
    assert get(client)["scope"] == ["/Tour", "/Paris"]
    bad = {"name": {"type": "Property", "value": NULL}}
    problem(client.post(f"/entities/{EID}/attrs", json=bad), 400, "BadRequestData")


def test_partial_attribute_update_null(b1: httpx.Client) -> None:
    """5.6.4: the fragment merges into the instance; a Null member is deleted; a Null
    value deletes the attribute."""
    url = f"/entities/{EID}/attrs/airQualityLevel"
    assert b1.patch(url, json={"value": 7, "unitCode": NULL}).status_code == 204
    assert get(b1)["airQualityLevel"] == {"type": "Property", "value": 7,
                                          "observedAt": "2020-09-09T16:40:00.000Z"}  # fmt: skip
    assert b1.patch(url, json={"type": "Property", "value": NULL}).status_code == 204
    assert "airQualityLevel" not in get(b1)
    problem(b1.patch(url, json={"value": 1}), 404, "ResourceNotFound")
    # ETSI 554_01_03: a Null inside a JSON value deletes a key only in a merge (5.5.4).
    meta = f"/entities/{EID}/attrs/meta"
    problem(b1.patch(meta, json={"value": {"a": NULL}}), 400, "BadRequestData")
    frag = {"meta": {"type": "Property", "value": {"a": NULL}}}
    problem(b1.patch(f"/entities/{EID}/attrs", json=frag), 400, "BadRequestData")
    assert get(b1)["meta"]["value"] == {"a": 1, "b": {"c": 2, "d": 3}}


def test_create_and_replace_refuse_the_null(client: httpx.Client) -> None:
    """5.2.1: anywhere but in update and merge fragments the NGSI-LD Null is BadRequestData;
    a Null scope cannot be created (4.18)."""
    for doc in (
        building(name={"type": "Property", "value": NULL}),
        building(name=NULL),
        building(meta={"type": "Property", "value": {"a": NULL}}),
        building(owner={"type": "Relationship", "object": NULL}),
        building(scope=NULL),
        {**building(), "id": NULL},
    ):
        problem(client.post("/entities", json=doc), 400, "BadRequestData")
    assert client.post("/entities", json=building()).status_code == 201
    problem(client.put(f"/entities/{EID}", json=building(name=NULL)), 400, "BadRequestData")


# -- Replace Attribute (5.6.19) ---------------------------------------------------------------


def test_replace_attribute(b1: httpx.Client) -> None:
    """5.6.19 (ETSI 055_01): the attribute is replaced as a whole, its createdAt kept; a new
    attribute type is taken."""
    before = get(b1, options="sysAttrs")["airQualityLevel"]["createdAt"]
    url = f"/entities/{EID}/attrs/airQualityLevel"
    assert b1.put(url, json={"type": "Property", "value": 9}).status_code == 204
    got = get(b1, options="sysAttrs")["airQualityLevel"]
    assert got["value"] == 9
    assert "unitCode" not in got
    assert got["createdAt"] == before
    url = f"/entities/{EID}/attrs/owner"
    assert b1.put(url, json={"type": "Property", "value": "city"}).status_code == 204
    assert get(b1)["owner"] == {"type": "Property", "value": "city"}


def test_replace_attribute_errors(b1: httpx.Client) -> None:
    """ETSI 055_03: invalid entity id 400, unknown entity 404, invalid attribute name 400,
    unknown attribute 404, scope 400; a Null value 400."""
    body = {"type": "Property", "value": True}
    problem(b1.put("/entities/invalidUri/attrs/name", json=body), 400, "BadRequestData")
    problem(b1.put("/entities/urn:ngsi-ld:B:none/attrs/name", json=body), 404, "ResourceNotFound")
    problem(b1.put(f"/entities/{EID}/attrs/@invalid", json=body), 400, "BadRequestData")
    problem(b1.put(f"/entities/{EID}/attrs/brandName", json=body), 404, "ResourceNotFound")
    problem(b1.put(f"/entities/{EID}/attrs/scope", json=body), 400, "BadRequestData")
    problem(b1.put(f"/entities/{EID}/attrs/", json=body), 400, "BadRequestData")
    null = {"type": "Property", "value": NULL}
    problem(b1.put(f"/entities/{EID}/attrs/name", json=null), 400, "BadRequestData")


def test_replace_attribute_of_a_dataset(client: httpx.Client) -> None:
    doc = {"id": EID, "type": "Building", "speed": [
        {"type": "Property", "value": 1},
        {"type": "Property", "value": 2, "datasetId": "urn:ngsi-ld:Dataset:x"},
    ]}  # fmt: skip
    assert client.post("/entities", json=doc).status_code == 201
    body = {"type": "Property", "value": 20, "datasetId": "urn:ngsi-ld:Dataset:x"}
    assert client.put(f"/entities/{EID}/attrs/speed", json=body).status_code == 204
    speeds = {s.get("datasetId"): s["value"] for s in get(client)["speed"]}
    assert speeds == {None: 1, "urn:ngsi-ld:Dataset:x": 20}


# -- Batch Entity Merge (5.6.20) and batch delete ----------------------------------------------


def test_batch_merge(client: httpx.Client) -> None:
    """5.6.20 (ETSI 057_01/057_02): each entity merged, 204; a missing one makes a 207 with
    it among the errors, the others merged."""
    ids = [f"urn:ngsi-ld:Building:m{n}" for n in (1, 2)]
    for eid in ids:
        assert client.post("/entities", json={**building(), "id": eid}).status_code == 201
    frag = {"type": "Building", "airQualityLevel": {"type": "Property", "value": 1}}
    r = client.post("/entityOperations/merge", json=[{"id": i, **frag} for i in ids])
    assert r.status_code == 204, r.text
    for eid in ids:
        assert get(client, eid)["airQualityLevel"]["unitCode"] == "C62"
        assert get(client, eid)["airQualityLevel"]["value"] == 1
    missing = "urn:ngsi-ld:Building:none"
    docs = [{"id": ids[0], "name": {"type": "Property", "value": NULL}}, {"id": missing, **frag}]
    r = client.post("/entityOperations/merge", json=docs)
    assert r.status_code == 207, r.text
    assert r.json()["success"] == [ids[0]]
    assert r.json()["errors"][0]["entityId"] == missing
    assert r.json()["errors"][0]["error"]["type"] == ERR + "ResourceNotFound"
    assert "name" not in get(client, ids[0])


def test_batch_merge_invalid_requests(client: httpx.Client) -> None:
    """ETSI 057_03: invalid JSON 400 InvalidRequest; an invalid entity 207 BadRequestData."""
    r = client.post("/entityOperations/merge", content=b"[{",
                    headers={"Content-Type": "application/json"})  # fmt: skip
    problem(r, 400, "InvalidRequest")
    r = client.post("/entityOperations/merge", json=[{"id": "not a uri", "type": "Building"}])
    assert r.status_code == 207, r.text
    assert r.json()["errors"][0]["error"]["type"] == ERR + "BadRequestData"
    # An invalid fragment is BadRequestData even for an entity that does not exist.
    bad = [{"id": "urn:ngsi-ld:Building:none", "type": "Building",
            "name": {"type": "Property", "value": None}}]  # fmt: skip
    r = client.post("/entityOperations/merge", json=bad)
    assert r.status_code == 207, r.text
    assert r.json()["errors"][0]["error"]["type"] == ERR + "BadRequestData"
    problem(client.post("/entityOperations/merge", json={"id": EID}), 400, "BadRequestData")


def test_batch_delete_takes_json_ld(b1: httpx.Client) -> None:
    """5.6.10: the array of ids may come as application/ld+json (no @context to carry)."""
    r = b1.post("/entityOperations/delete", content=f'["{EID}"]'.encode(),
                headers={"Content-Type": "application/ld+json"})  # fmt: skip
    assert r.status_code == 204, r.text
    problem(b1.get(f"/entities/{EID}"), 404, "ResourceNotFound")


# -- empty path segments and collection paths with a trailing slash ------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/entities/"),
        ("PUT", "/entities/"),
        ("GET", f"/entities/{EID}/attrs/"),
        ("PUT", f"/entities/{EID}/attrs/"),
        ("DELETE", "/entities//attrs/name"),
        ("PATCH", "/entities//attrs/name"),
        ("DELETE", f"/temporal/entities/{EID}/attrs/"),
    ],
)
def test_empty_path_segment_is_bad_request(b1: httpx.Client, method: str, path: str) -> None:
    """An empty id or attribute name segment is 400 BadRequestData (ETSI 056_02_02)."""
    r = b1.request(method, path, json={"type": "Property", "value": 1})
    problem(r, 400, "BadRequestData")


def test_collections_with_a_trailing_slash(client: httpx.Client) -> None:
    """The ETSI suite posts to entities/ and entities/{id}/attrs/: they are the collections
    (answered in place, no redirect)."""
    r = client.post("/entities/", json=building())
    assert r.status_code == 201, r.text
    r = client.post(f"/entities/{EID}/attrs/", json={"height": {"type": "Property", "value": 3}})
    assert r.status_code == 204, r.text
    r = client.patch(f"/entities/{EID}/attrs/", json={"height": {"type": "Property", "value": 4}})
    assert r.status_code == 204, r.text
    r = client.get("/entities/", params={"type": "Building"})
    assert r.status_code == 200, r.text
    assert [e["height"]["value"] for e in r.json()] == [4]
    assert client.get("/subscriptions/").status_code == 200


# -- the entity type selector of 5.6.2, 5.6.3, 5.6.4 and update with a new datasetId -------------


def test_type_selector_gates_append_update_and_partial_update(b1: httpx.Client) -> None:
    frag = {"name": {"type": "Property", "value": "y"}}
    url = f"/entities/{EID}/attrs"
    problem(b1.post(url, params={"type": "Vehicle"}, json=frag), 404, "ResourceNotFound")
    problem(b1.patch(url, params={"type": "Vehicle"}, json=frag), 404, "ResourceNotFound")
    problem(b1.patch(url + "/name", params={"type": "Vehicle"}, json={"value": "z"}), 404,
            "ResourceNotFound")  # fmt: skip
    assert get(b1)["name"]["value"] == "Eiffel Tower"
    assert b1.patch(url, params={"type": "Building"}, json=frag).status_code == 204
    assert (
        b1.patch(url + "/name", params={"type": "Building"}, json={"value": "z"}).status_code == 204
    )
    assert get(b1)["name"]["value"] == "z"
    problem(b1.patch(url + "/scope", json={"value": "/Madrid"}), 400, "BadRequestData")


def test_update_adds_an_instance_of_a_new_dataset(b1: httpx.Client) -> None:
    """5.5.8: in Update Entity Attributes an instance with a new datasetId of an existing
    attribute is added; a Null datasetId is 400."""
    frag = {"airQualityLevel": {"type": "Property", "value": 30, "datasetId": "urn:ngsi-ld:D:x"}}
    assert b1.patch(f"/entities/{EID}/attrs", json=frag).status_code == 204
    assert sorted(i["value"] for i in get(b1)["airQualityLevel"]) == [4, 30]
    bad = {"datasetId": NULL}
    problem(b1.patch(f"/entities/{EID}/attrs/airQualityLevel", json=bad), 400, "BadRequestData")


def test_partial_update_of_a_json_property(client: httpx.Client) -> None:
    """ETSI 012_08: a JsonProperty's json is replaced, its sub-attributes kept, new ones added."""
    doc = {"id": EID, "type": "Building", "jp": {
        "type": "JsonProperty", "json": {"id": "a", "null": None},
        "source": {"type": "Property", "value": "Speedometer"}}}  # fmt: skip
    assert client.post("/entities", json=doc).status_code == 201
    frag = {"json": {"id": "b"}, "by": {"type": "Relationship", "object": "urn:ngsi-ld:P:1"}}
    assert client.patch(f"/entities/{EID}/attrs/jp", json=frag).status_code == 204
    assert get(client)["jp"] == {
        "type": "JsonProperty",
        "json": {"id": "b"},
        "source": {"type": "Property", "value": "Speedometer"},
        "by": {"type": "Relationship", "object": "urn:ngsi-ld:P:1"},
    }


def test_batch_merge_empty_or_null_item(b1: httpx.Client) -> None:
    """5.6.20.4 with 5.5.4: an empty array or a null item is 400 BadRequestData as a whole;
    a bare Null attribute deletes it."""
    problem(b1.post("/entityOperations/merge", json=[]), 400, "BadRequestData")
    r = b1.post("/entityOperations/merge", json=[{"id": EID, "type": "Building"}, None])
    problem(r, 400, "BadRequestData")
    r = b1.post("/entityOperations/merge", json=[{"id": EID, "type": "Building", "name": NULL}])
    assert r.status_code == 204, r.text
    assert "name" not in get(b1)
    assert NULL not in b1.get(f"/entities/{EID}").text


# -- Purge Entities (DELETE /entities) -----------------------------------------------------------


def test_purge_entities_by_type_q_and_scope(client: httpx.Client) -> None:
    docs = [
        {"id": f"urn:ngsi-ld:Lamp:{n}", "type": "Lamp", "power": {"type": "Property", "value": n},
         **({"scope": "/Old"} if n == 3 else {})}
        for n in (1, 2, 3, 4)
    ] + [{"id": "urn:ngsi-ld:Pole:1", "type": "Pole"}]  # fmt: skip
    assert client.post("/entityOperations/create", json=docs).status_code == 201
    assert client.delete("/entities", params={"type": "Lamp", "q": "power<2"}).status_code == 204
    assert client.delete("/entities", params={"scopeQ": "/Old"}).status_code == 204

    def left() -> list[str]:
        r = client.get("/entities", params={"type": "Lamp,Pole"})
        return sorted(e["id"].split(":", 2)[2] for e in r.json())

    assert left() == ["Lamp:2", "Lamp:4", "Pole:1"]
    assert client.delete("/entities", params={"type": "Lamp"}).status_code == 204
    assert left() == ["Pole:1"]
    problem(client.delete("/entities"), 400, "BadRequestData")
    problem(client.delete("/entities", params={"q": "power<"}), 400, "InvalidRequest")
    assert left() == ["Pole:1"]


def test_purge_drop_and_keep_attributes(client: httpx.Client) -> None:
    """Purge Entities with drop deletes the attributes named, with keep all others."""
    docs = [{"id": f"urn:ngsi-ld:Lamp:{n}", "type": "Lamp",
             "power": {"type": "Property", "value": n},
             "colour": {"type": "Property", "value": "red"},
             "height": {"type": "Property", "value": 4}} for n in (1, 2)]  # fmt: skip
    assert client.post("/entityOperations/create", json=docs).status_code == 201
    r = client.delete("/entities", params={"type": "Lamp", "drop": "colour"})
    assert r.status_code == 204, r.text
    assert sorted(get(client, "urn:ngsi-ld:Lamp:1")) == ["height", "id", "power", "type"]
    r = client.delete("/entities", params={"id": "urn:ngsi-ld:Lamp:2", "keep": "power"})
    assert r.status_code == 204, r.text
    assert sorted(get(client, "urn:ngsi-ld:Lamp:2")) == ["id", "power", "type"]
    assert sorted(get(client, "urn:ngsi-ld:Lamp:1")) == ["height", "id", "power", "type"]
    bad = {"type": "Lamp", "keep": "power", "drop": "height"}
    problem(client.delete("/entities", params=bad), 400, "BadRequestData")


# -- notifications -------------------------------------------------------------------------------


def test_merge_null_notifies_attribute_deleted(client: httpx.Client) -> None:
    """A Null in Merge Entity or Update Entity Attributes deletes: an attributeDeleted
    subscription (5.2.12) is told, with the NGSI-LD Null as the value."""
    from tests.city_platform.receiver import Receiver  # noqa: PLC0415

    receiver = Receiver()
    try:
        doc = {
            "type": "Subscription",
            "entities": [{"type": "Building"}],
            "notificationTrigger": ["attributeDeleted"],
            "notification": {"endpoint": {"uri": receiver.url, "accept": "application/json"}},
        }
        assert client.post("/subscriptions", json=doc).status_code == 201
        assert client.post("/entities", json=building()).status_code == 201
        r = client.patch(f"/entities/{EID}", json={"name": {"type": "Property", "value": NULL}})
        assert r.status_code == 204, r.text
        got = receiver.wait_for(1)[0]
        assert got["id"] == EID
        assert got["name"] == {"type": "Property", "value": NULL}
        r = client.patch(f"/entities/{EID}/attrs", json={"owner": NULL})
        assert r.status_code == 204, r.text
        got = receiver.wait_for(2)[1]
        assert NULL in got["owner"].values(), got
    finally:
        receiver.close()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/entities"),
        ("DELETE", "/entities"),
        ("PATCH", f"/entities/{EID}"),
        ("PUT", f"/entities/{EID}/attrs/name"),
        ("POST", "/entityOperations/merge"),
        ("POST", f"/entities/{EID}/attrs"),
        ("PATCH", f"/entities/{EID}/attrs"),
        ("PATCH", f"/entities/{EID}/attrs/name"),
        ("PUT", f"/entities/{EID}"),
    ],
)
def test_unknown_parameter_is_invalid_request(b1: httpx.Client, method: str, path: str) -> None:
    """6.3.20 (ETSI 059_01_01, 059_01_08): a parameter the operation does not define is
    400 InvalidRequest."""
    body: Any = [building()] if path.endswith("merge") else building()
    r = b1.request(method, path, params={"type": "Building", "invalidParam": "1"}, json=body)
    problem(r, 400, "InvalidRequest")


def test_empty_or_broken_body_is_invalid_request(client: httpx.Client) -> None:
    """ETSI 001_02_01/02, 011_04: a body that is not JSON (also an empty one) is 400
    InvalidRequest; valid JSON with bad content is BadRequestData."""
    ld = {"Content-Type": "application/ld+json"}
    problem(client.post("/entities", content=b"", headers=ld), 400, "InvalidRequest")
    problem(client.post("/entities", content=b'{"id": ', headers=ld), 400, "InvalidRequest")
    problem(client.post("/entities", json={"id": EID}), 400, "BadRequestData")
    problem(client.post("/entities", json=[building()]), 400, "BadRequestData")


def test_batch_update_and_upsert_update_set_the_scope(client: httpx.Client) -> None:
    """4.18 in the batch operations that update (5.6.8 with options=update, 5.6.9): the scope
    is replaced, with noOverwrite added to."""
    assert client.post("/entities", json=building(scope="/Paris")).status_code == 201
    r = client.post("/entityOperations/update", json=[{"id": EID, "scope": "/Lyon"}])
    assert r.status_code == 204, r.text
    assert get(client)["scope"] == "/Lyon"
    r = client.post("/entityOperations/update", params={"options": "noOverwrite"},
                    json=[{"id": EID, "scope": "/Nice"}])  # fmt: skip
    assert r.status_code == 204, r.text
    assert get(client)["scope"] == ["/Lyon", "/Nice"]
    doc = {"id": EID, "type": "Building", "scope": ["/Tour"]}
    r = client.post("/entityOperations/upsert", params={"options": "update"}, json=[doc])
    assert r.status_code == 204, r.text
    assert get(client)["scope"] == "/Tour"
    assert get(client)["name"]["value"] == "Eiffel Tower"
    r = client.post("/entityOperations/update", json=[{"id": EID, "scope": "bad"}])
    assert r.status_code == 207, r.text


# -- Batch Entity Update (5.6.9) --------------------------------------------------------------


def test_batch_update_appends_keeps_unnamed_and_null_deletes(b1: httpx.Client) -> None:
    """5.6.9: per entity Append (5.6.3): a new attribute is added (ETSI 005_01_02), a named
    one replaced (its createdAt kept), the others kept; a Null deletes as in 5.6.2."""
    before = get(b1, options="sysAttrs")
    frag = {
        "id": EID,
        "name": {"type": "Property", "value": "Tour Eiffel"},
        "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:paris"},
        "street": {"type": "LanguageProperty", "languageMap": {"@none": NULL}},
        "meta": NULL,
    }
    r = b1.post("/entityOperations/update", json=[frag])
    assert r.status_code == 204, r.text
    got = get(b1, options="sysAttrs")
    assert got["name"]["value"] == "Tour Eiffel"
    assert got["name"]["createdAt"] == before["name"]["createdAt"]
    assert got["locatedAt"]["object"] == "urn:ngsi-ld:City:paris"
    assert "street" not in got
    assert "meta" not in got
    assert got["airQualityLevel"]["unitCode"] == "C62"  # not named: kept


def test_batch_update_no_overwrite_is_207_and_adds_the_new(b1: httpx.Client) -> None:
    """5.6.9 noOverwrite: existing attributes are kept; an entity of which some were kept is
    in the errors (207, ETSI 005_02_01/03), its new attributes added; only new ones 204
    (ETSI 005_02_02)."""
    frag = {"id": EID, "name": "changed", "height": 300}
    r = b1.post("/entityOperations/update", params={"options": "noOverwrite"}, json=[frag])
    assert r.status_code == 207, r.text
    body = r.json()
    assert body["success"] == [], body
    assert body["errors"][0]["entityId"] == EID
    assert "name" in body["errors"][0]["error"]["detail"]
    got = get(b1)
    assert (got["name"]["value"], got["height"]["value"]) == ("Eiffel Tower", 300)
    frag = {"id": EID, "width": 30}
    r = b1.post("/entityOperations/update", params={"options": "noOverwrite"}, json=[frag])
    assert r.status_code == 204, r.text
    assert get(b1)["width"]["value"] == 30


def test_batch_update_errors_per_entity(b1: httpx.Client) -> None:
    """5.6.9: a missing entity (ETSI 005_03_01) or an invalid fragment is an error of the
    BatchOperationResult (207), the others are updated; a Null datasetId is refused (5.5.8)."""
    docs = [
        {"id": EID, "height": 1},
        {"id": "urn:ngsi-ld:Building:none", "height": 2},
        {"id": EID, "name": {"type": "Property", "value": 1, "datasetId": NULL}},
        {"id": "not a uri", "height": 3},
    ]
    r = b1.post("/entityOperations/update", json=docs)
    assert r.status_code == 207, r.text
    body = r.json()
    assert body["success"] == [EID]
    kinds = [(e["entityId"], e["error"]["type"]) for e in body["errors"]]
    assert kinds == [
        ("urn:ngsi-ld:Building:none", ERR + "ResourceNotFound"),
        (EID, ERR + "BadRequestData"),
        ("not a uri", ERR + "BadRequestData"),
    ]
    assert get(b1)["height"]["value"] == 1
    problem(b1.post("/entityOperations/update", json={"id": EID}), 400, "BadRequestData")
