"""Representations of retrieve and query answers, against a real platform: Linked Entity
Retrieval (join, joinLevel; CIM 009 4.5.23), languages (lang, LanguageProperty; 4.15,
4.5.18), GeoJSON (4.5.16, 4.5.17, 6.3.15), the simplified form of every attribute type
(4.5.4) and compact IRIs in the output (JSON-LD compaction, 5.5.7)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
GEO = "application/geo+json"


def rel(obj: str) -> dict[str, Any]:
    return {"type": "Relationship", "object": obj}


def prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


@pytest.fixture
def linked(client: httpx.Client) -> httpx.Client:
    """A car parked at a parking lot run by a company; the company links back to the car."""
    docs = [
        {
            "id": "urn:ngsi-ld:Car:c1",
            "type": "Car",
            "speed": prop(30),
            "parkedAt": {**rel("urn:ngsi-ld:Parking:p1"), "objectType": "Parking"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}},
        },
        {
            "id": "urn:ngsi-ld:Parking:p1",
            "type": "Parking",
            "name": prop("Central"),
            "operator": rel("urn:ngsi-ld:Company:k1"),
        },
        {
            "id": "urn:ngsi-ld:Company:k1",
            "type": "Company",
            "name": prop("ParkCo"),
            "fleet": rel("urn:ngsi-ld:Car:c1"),
        },
    ]
    r = client.post("/entityOperations/create", json=docs)
    assert r.status_code == 201, r.text
    return client


def bad_request(r: httpx.Response) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["type"] == ERR + "BadRequestData"


# -- join (4.5.23) ---------------------------------------------------------------------------


def test_retrieve_join_inline_adds_the_linked_entity(linked: httpx.Client) -> None:
    """CIM 009 4.5.23: join=inline adds the linked Entity as the Relationship's ``entity``;
    joinLevel 1 (the default) stops there."""
    got = linked.get("/entities/urn:ngsi-ld:Car:c1", params={"join": "inline"}).json()
    parked = got["parkedAt"]
    assert parked["object"] == "urn:ngsi-ld:Parking:p1"
    assert parked["objectType"] == "Parking"
    assert parked["entity"]["id"] == "urn:ngsi-ld:Parking:p1"
    assert parked["entity"]["name"] == prop("Central")
    assert "entity" not in parked["entity"]["operator"]


def test_join_level_follows_more_hops(linked: httpx.Client) -> None:
    """CIM 009 4.5.23: joinLevel=2 inlines the linked Entity's links too, and no further."""
    got = linked.get(
        "/entities/urn:ngsi-ld:Car:c1", params={"join": "inline", "joinLevel": "2"}
    ).json()
    company = got["parkedAt"]["entity"]["operator"]["entity"]
    assert company["id"] == "urn:ngsi-ld:Company:k1"
    assert "entity" not in company["fleet"]  # a third hop (back to the car) is not taken


def test_join_flat_returns_the_linked_entities_once_each(linked: httpx.Client) -> None:
    """CIM 009 4.5.23: join=flat answers an array of the Entity and its linked Entities, each
    once, without inlining; a link back to the Entity does not repeat it."""
    got = linked.get(
        "/entities/urn:ngsi-ld:Car:c1", params={"join": "flat", "joinLevel": "3"}
    ).json()
    assert isinstance(got, list), got
    ids = [e["id"] for e in got]
    assert ids == ["urn:ngsi-ld:Car:c1", "urn:ngsi-ld:Parking:p1", "urn:ngsi-ld:Company:k1"]
    assert "entity" not in got[0]["parkedAt"]


def test_query_join_inline_and_flat(linked: httpx.Client) -> None:
    """CIM 009 5.7.2: join on Query Entities, for every Entity of the answer."""
    inline = linked.get("/entities", params={"type": "Car", "join": "inline"}).json()
    assert [e["id"] for e in inline] == ["urn:ngsi-ld:Car:c1"]
    assert inline[0]["parkedAt"]["entity"]["type"] == "Parking"
    flat = linked.get("/entities", params={"type": "Car,Parking", "join": "flat"}).json()
    assert sorted(e["id"] for e in flat) == [
        "urn:ngsi-ld:Car:c1",
        "urn:ngsi-ld:Company:k1",
        "urn:ngsi-ld:Parking:p1",
    ]


def test_join_inline_simplified_puts_the_entity_in_place(linked: httpx.Client) -> None:
    """CIM 009 4.5.4 with 4.5.23: in the simplified form the linked Entity stands in the
    place of the object's URI."""
    got = linked.get(
        "/entities/urn:ngsi-ld:Car:c1", params={"join": "inline", "options": "keyValues"}
    ).json()
    assert got["parkedAt"]["id"] == "urn:ngsi-ld:Parking:p1"
    assert got["parkedAt"]["name"] == "Central"


def test_join_with_projection_inside_the_linked_entity(linked: httpx.Client) -> None:
    """CIM 009 4.21 with 4.5.23: pick=parkedAt{name} keeps only name of the inlined Entity."""
    got = linked.get(
        "/entities/urn:ngsi-ld:Car:c1", params={"join": "inline", "pick": "id,parkedAt{name}"}
    ).json()
    assert set(got) == {"id", "parkedAt"}
    assert got["parkedAt"]["entity"] == {"name": prop("Central")}


def test_join_on_post_query(linked: httpx.Client) -> None:
    """CIM 009 5.2.23: a Query's join and joinLevel members."""
    query = {"type": "Query", "entities": [{"type": "Car"}], "join": "inline", "joinLevel": 2}
    r = linked.post("/entityOperations/query", json=query)
    assert r.status_code == 200, r.text
    assert r.json()[0]["parkedAt"]["entity"]["operator"]["entity"]["name"] == prop("ParkCo")


def test_join_missing_target_keeps_the_relationship(client: httpx.Client) -> None:
    """A Relationship to an Entity that does not exist is returned as it is."""
    doc = {"id": "urn:ngsi-ld:Car:lonely", "type": "Car", "parkedAt": rel("urn:ngsi-ld:X:none")}
    assert client.post("/entities", json=doc).status_code == 201
    got = client.get("/entities/urn:ngsi-ld:Car:lonely", params={"join": "inline"}).json()
    assert got["parkedAt"] == rel("urn:ngsi-ld:X:none")


@pytest.mark.parametrize(
    "params",
    [{"join": "deep"}, {"join": "inline", "joinLevel": "0"}, {"join": "flat", "joinLevel": "x"}],
)
def test_bad_join_is_400(linked: httpx.Client, params: dict[str, str]) -> None:
    """CIM 009 5.7.1.4: join other than inline/flat/@none, joinLevel not a positive integer."""
    bad_request(linked.get("/entities/urn:ngsi-ld:Car:c1", params=params))
    bad_request(linked.get("/entities", params={"type": "Car", **params}))


def test_join_inline_does_not_repeat_an_entity(linked: httpx.Client) -> None:
    """CIM 009 5.7.1.5: an Entity already met in the tree (here the car itself, linked back
    from the company) is not inlined again, so a loop ends."""
    got = linked.get(
        "/entities/urn:ngsi-ld:Car:c1", params={"join": "inline", "joinLevel": "5"}
    ).json()
    company = got["parkedAt"]["entity"]["operator"]["entity"]
    assert company["fleet"] == rel("urn:ngsi-ld:Car:c1")


def test_contained_by_names_entities_met_before(linked: httpx.Client) -> None:
    """CIM 009 5.7.1.3: containedBy lists Linked Entities met before; they are not inlined."""
    got = linked.get(
        "/entities/urn:ngsi-ld:Car:c1",
        params={"join": "inline", "joinLevel": "3", "containedBy": "urn:ngsi-ld:Company:k1"},
    ).json()
    parking = got["parkedAt"]["entity"]
    assert "entity" not in parking["operator"]
    flat = linked.get(
        "/entities/urn:ngsi-ld:Car:c1",
        params={"join": "flat", "joinLevel": "3", "containedBy": "urn:ngsi-ld:Company:k1"},
    ).json()
    assert [e["id"] for e in flat] == ["urn:ngsi-ld:Car:c1", "urn:ngsi-ld:Parking:p1"]
    bad_request(
        linked.get("/entities/urn:ngsi-ld:Car:c1", params={"join": "flat", "containedBy": "x y"})
    )


def test_join_none_is_no_join(linked: httpx.Client) -> None:
    got = linked.get("/entities/urn:ngsi-ld:Car:c1", params={"join": "@none"}).json()
    assert "entity" not in got["parkedAt"]


# -- lang (4.15, 4.5.18) -----------------------------------------------------------------------


@pytest.fixture
def multilingual(client: httpx.Client) -> httpx.Client:
    doc = {
        "id": "urn:ngsi-ld:Museum:m1",
        "type": "Museum",
        "name": {
            "type": "LanguageProperty",
            "languageMap": {"en": "Science Museum", "fr": "Musée des sciences", "de-CH": "Museum"},
            "note": {"type": "LanguageProperty", "languageMap": {"fr": "note", "@none": "n"}},
        },
        "visitors": prop(12),
    }
    assert client.post("/entities", json=doc).status_code == 201
    return client


def test_language_property_is_returned_whole_without_lang(multilingual: httpx.Client) -> None:
    """CIM 009 4.5.18: a LanguageProperty keeps its languageMap."""
    got = multilingual.get("/entities/urn:ngsi-ld:Museum:m1").json()
    assert got["name"]["type"] == "LanguageProperty"
    assert got["name"]["languageMap"]["fr"] == "Musée des sciences"


def test_lang_turns_it_into_a_property_in_one_language(multilingual: httpx.Client) -> None:
    """CIM 009 4.15, 5.7.1: lang=fr: a Property with the French value and lang "fr"; the
    sub-attribute too; other attributes unchanged."""
    got = multilingual.get("/entities/urn:ngsi-ld:Museum:m1", params={"lang": "fr"}).json()
    assert got["name"]["type"] == "Property"
    assert got["name"]["value"] == "Musée des sciences"
    assert got["name"]["lang"] == "fr"
    assert "languageMap" not in got["name"]
    assert got["name"]["note"] == {"type": "Property", "value": "note", "lang": "fr"}
    assert got["visitors"] == prop(12)


def test_lang_ranges_weights_and_fallback(multilingual: httpx.Client) -> None:
    """lang takes ranges with q weights; 'de' matches 'de-CH'; no match: @none, else the
    first language."""
    url = "/entities/urn:ngsi-ld:Museum:m1"
    got = multilingual.get(url, params={"lang": "it,de;q=0.8,fr;q=0.5"}).json()
    assert (got["name"]["value"], got["name"]["lang"]) == ("Museum", "de-CH")
    got = multilingual.get(url, params={"lang": "it"}).json()
    assert got["name"]["value"] == "Science Museum"  # no Italian, no @none: the first one
    assert got["name"]["note"]["value"] == "n"  # the @none string
    assert got["name"]["note"]["lang"] == "@none"  # 4.15: "in any case" the language returned
    got = multilingual.get(url, params={"lang": "*"}).json()
    assert got["name"]["type"] == "Property"


def test_lang_simplified_and_query(multilingual: httpx.Client) -> None:
    """lang with options=keyValues gives the string; on Query Entities too."""
    got = multilingual.get(
        "/entities", params={"type": "Museum", "lang": "en", "options": "keyValues"}
    ).json()
    assert got[0]["name"] == "Science Museum"


def test_bad_lang_is_400(multilingual: httpx.Client) -> None:
    bad_request(multilingual.get("/entities/urn:ngsi-ld:Museum:m1", params={"lang": "f r"}))


# -- simplified form of each attribute type (4.5.4) -------------------------------------------


def test_simplified_form_of_every_attribute_type(client: httpx.Client) -> None:
    """CIM 009 4.5.4: the value of a Property, the object of a Relationship, the lists as
    arrays, {"languageMap"}, {"json"}, {"vocab"}, and a multi-attribute as a dataset map."""
    doc = {
        "id": "urn:ngsi-ld:Thing:t1",
        "type": "Thing",
        "speed": [prop(55), {**prop(11), "datasetId": "urn:ngsi-ld:Dataset:gps"}],
        "label": {"type": "LanguageProperty", "languageMap": {"en": "hi"}},
        "blob": {"type": "JsonProperty", "json": {"a": 1}},
        "category": {"type": "VocabProperty", "vocab": "commercial"},
        "depths": {"type": "ListProperty", "valueList": [1.5, 2.5]},
        "near": rel("urn:ngsi-ld:Thing:t2"),
    }
    r = client.post("/entities", json=doc)
    assert r.status_code == 201, r.text
    got = client.get("/entities/urn:ngsi-ld:Thing:t1", params={"options": "keyValues"}).json()
    assert got["speed"] == {"dataset": {"@none": 55, "urn:ngsi-ld:Dataset:gps": 11}}
    assert got["label"] == {"languageMap": {"en": "hi"}}
    assert got["blob"] == {"json": {"a": 1}}
    assert got["category"] == {"vocab": "commercial"}
    assert got["depths"] == [1.5, 2.5]
    assert got["near"] == "urn:ngsi-ld:Thing:t2"


# -- GeoJSON (4.5.16, 4.5.17, 6.3.15) ----------------------------------------------------------


def test_retrieve_geojson_feature(linked: httpx.Client) -> None:
    """CIM 009 4.5.16.2: a Feature with id, type, geometry of location, properties without
    the id, @context; the Content-Type is application/geo+json."""
    r = linked.get("/entities/urn:ngsi-ld:Car:c1", headers={"Accept": GEO})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(GEO)
    got = r.json()
    assert got["type"] == "Feature"
    assert got["id"] == "urn:ngsi-ld:Car:c1"
    assert got["geometry"] == {"type": "Point", "coordinates": [1, 2]}
    assert got["properties"]["type"] == "Car"
    assert got["properties"]["speed"] == prop(30)
    assert "id" not in got["properties"]
    assert got["@context"] == CORE


def test_query_geojson_feature_collection(linked: httpx.Client) -> None:
    """CIM 009 4.5.16.3: a FeatureCollection; the @context at its top, not in each Feature;
    an Entity without the GeoProperty has geometry null."""
    r = linked.get("/entities", params={"type": "Car,Parking"}, headers={"Accept": GEO})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["type"] == "FeatureCollection"
    assert "@context" in got
    features = {f["id"]: f for f in got["features"]}
    assert features["urn:ngsi-ld:Car:c1"]["geometry"]["type"] == "Point"
    assert features["urn:ngsi-ld:Parking:p1"]["geometry"] is None
    assert all("@context" not in f for f in got["features"])


def test_geojson_geometry_property_and_simplified(client: httpx.Client) -> None:
    """4.5.16.1: geometryProperty names the GeoProperty; the default instance is used; not
    a geometry: null.  4.5.17: with keyValues the properties are simplified."""
    doc = {
        "id": "urn:ngsi-ld:Bus:b1",
        "type": "Bus",
        "location": [
            {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [9, 9]},
                "datasetId": "urn:ngsi-ld:Dataset:gps",
            },
            {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [3, 4]}},
        ],
        "route": {
            "type": "GeoProperty",
            "value": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
        },
        "speed": prop(5),
    }
    assert client.post("/entities", json=doc).status_code == 201
    url = "/entities/urn:ngsi-ld:Bus:b1"
    got = client.get(url, headers={"Accept": GEO}, params={"options": "keyValues"}).json()
    assert got["geometry"] == {"type": "Point", "coordinates": [3, 4]}
    assert got["properties"]["speed"] == 5
    assert set(got["properties"]["location"]) == {"dataset"}
    got = client.get(url, headers={"Accept": GEO}, params={"geometryProperty": "route"}).json()
    assert got["geometry"]["type"] == "LineString"
    got = client.get(url, headers={"Accept": GEO}, params={"geometryProperty": "speed"}).json()
    assert got["geometry"] is None


def test_geometry_property_needs_geojson_accept(linked: httpx.Client) -> None:
    """5.7.1.4, 5.7.2.4 (v1.9 wording; ETSI 019_27_01): geometryProperty without
    Accept: application/geo+json is 400."""
    bad_request(linked.get("/entities/urn:ngsi-ld:Car:c1", params={"geometryProperty": "location"}))
    bad_request(linked.get("/entities", params={"type": "Car", "geometryProperty": "location"}))


def test_geojson_ld_context_names_the_request_context(linked: httpx.Client) -> None:
    """The Feature's @context is the context the request named (Link header), and a Link
    header names it too."""
    ctx_url = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
    link = f'<{ctx_url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    r = linked.get("/entities/urn:ngsi-ld:Car:c1", headers={"Accept": GEO, "Link": link})
    assert r.json()["@context"] == ctx_url
    assert ctx_url in r.headers["link"]


def test_geojson_prefer_body_json_moves_the_context_to_the_link(linked: httpx.Client) -> None:
    """CIM 009 5.7.1.4: Prefer: body=json: no @context in the Feature, the Link header has it."""
    r = linked.get("/entities/urn:ngsi-ld:Car:c1", headers={"Accept": GEO, "Prefer": "body=json"})
    assert r.status_code == 200, r.text
    assert "@context" not in r.json()
    assert "json-ld#context" in r.headers["link"]


def test_other_accept_is_still_406(linked: httpx.Client) -> None:
    r = linked.get("/entities/urn:ngsi-ld:Car:c1", headers={"Accept": "text/csv"})
    assert r.status_code == 406, r.text


# -- compact IRIs (5.5.7, JSON-LD 1.1 IRI compaction) -----------------------------------------


def test_compact_iris_in_the_output(client: httpx.Client) -> None:
    """CIM 009 5.5.7: an attribute or type whose IRI lies under a prefix the @context
    defines comes back as a compact IRI (``ex:speed``), and is found under that name."""
    context = [{"ex": "http://example.org/ns/"}, CORE]
    doc = {
        "id": "urn:ngsi-ld:Boat:x1",
        "type": "http://example.org/ns/Boat",
        "http://example.org/ns/speed": prop(7),
        "@context": context,
    }
    r = client.post(
        "/entities", content=json.dumps(doc), headers={"Content-Type": "application/ld+json"}
    )
    assert r.status_code == 201, r.text
    r = client.get("/entities/urn:ngsi-ld:Boat:x1", headers={"Accept": "application/ld+json"})
    # With the core context only, the IRIs stay whole.
    assert r.json()["type"] == "http://example.org/ns/Boat"
    query = {
        "type": "Query",
        "entities": [{"type": "ex:Boat"}],
        "attrs": ["ex:speed"],
        "@context": context,
    }
    r = client.post(
        "/entityOperations/query",
        content=json.dumps(query),
        headers={"Content-Type": "application/ld+json", "Accept": "application/ld+json"},
    )
    assert r.status_code == 200, r.text
    (got,) = r.json()
    assert got["type"] == "ex:Boat"
    assert got["ex:speed"] == prop(7)


# -- concise form, objectType, GeoJSON on POST query ------------------------------------------


def test_concise_leaves_out_implied_types(client: httpx.Client) -> None:
    """CIM 009 4.5.x concise forms: "type" is left out where the value member implies it
    (languageMap, json, valueList, object), and the concise form reads back as it was."""
    doc = {
        "id": "urn:ngsi-ld:Thing:c1",
        "type": "Thing",
        "label": {"type": "LanguageProperty", "languageMap": {"en": "hi"}},
        "blob": {"type": "JsonProperty", "json": {"a": 1}},
        "depths": {"type": "ListProperty", "valueList": [1, 2]},
        "near": rel("urn:ngsi-ld:Thing:c2"),
        "speed": prop(3),
    }
    assert client.post("/entities", json=doc).status_code == 201
    got = client.get("/entities/urn:ngsi-ld:Thing:c1", params={"options": "concise"}).json()
    assert got["label"] == {"languageMap": {"en": "hi"}}
    assert got["blob"] == {"json": {"a": 1}}
    assert got["depths"] == {"valueList": [1, 2]}
    assert got["near"] == {"object": "urn:ngsi-ld:Thing:c2"}
    assert got["speed"] == 3
    again = {**got, "id": "urn:ngsi-ld:Thing:c3"}
    assert client.post("/entities", json=again).status_code == 201
    normalized = client.get("/entities/urn:ngsi-ld:Thing:c3").json()
    assert normalized["label"]["type"] == "LanguageProperty"
    assert normalized["depths"]["type"] == "ListProperty"


def test_object_type_is_expanded_and_compacted(client: httpx.Client) -> None:
    """CIM 009 4.5.23: a Relationship's objectType is an entity type name; it is expanded
    with the request's @context and compacted with the answer's."""
    context = [{"Parking": "http://example.org/ns/Parking"}, CORE]
    doc = {
        "id": "urn:ngsi-ld:Car:o1",
        "type": "Car",
        "parkedAt": {**rel("urn:ngsi-ld:Parking:o1"), "objectType": "Parking"},
        "@context": context,
    }
    r = client.post(
        "/entities", content=json.dumps(doc), headers={"Content-Type": "application/ld+json"}
    )
    assert r.status_code == 201, r.text
    plain = client.get("/entities/urn:ngsi-ld:Car:o1").json()
    assert plain["parkedAt"]["objectType"] == "http://example.org/ns/Parking"
    query = {"type": "Query", "entities": [{"type": "Car"}], "@context": context}
    r = client.post(
        "/entityOperations/query",
        content=json.dumps(query),
        headers={"Content-Type": "application/ld+json"},
    )
    assert r.json()[0]["parkedAt"]["objectType"] == "Parking"
    bad = {"id": "urn:ngsi-ld:Car:o2", "type": "Car", "r": {**rel("urn:x:1"), "objectType": 3}}
    bad_request(client.post("/entities", json=bad))


def test_post_query_geojson(linked: httpx.Client) -> None:
    """CIM 009 6.3.15: POST /entityOperations/query negotiates GeoJSON as GET /entities."""
    query = {"type": "Query", "entities": [{"type": "Car"}]}
    r = linked.post("/entityOperations/query", json=query, headers={"Accept": GEO})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["type"] == "FeatureCollection"
    assert got["features"][0]["geometry"] == {"type": "Point", "coordinates": [1, 2]}


# -- q on Linked Entities (4.9, LinkedEntityRelation) -----------------------------------------


def test_q_on_linked_entities(linked: httpx.Client) -> None:
    """CIM 009 4.9 (examples 13, 14): rel{attr}==value holds when the Relationship's target
    satisfies attr==value; a type hint Type:attr; nested rel{rel2{attr}}; combined with ;."""

    def ids(q: str, kind: str = "Car,Parking,Company") -> list[str]:
        r = linked.get("/entities", params={"type": kind, "q": q})
        assert r.status_code == 200, r.text
        return sorted(e["id"] for e in r.json())

    assert ids('parkedAt{name=="Central"}') == ["urn:ngsi-ld:Car:c1"]
    assert ids('parkedAt{name=="Elsewhere"}') == []
    assert ids('parkedAt{Parking:name=="Central"}') == ["urn:ngsi-ld:Car:c1"]
    assert ids('parkedAt{Company:name=="Central"}') == []
    assert ids('parkedAt{operator{name=="ParkCo"}}') == ["urn:ngsi-ld:Car:c1"]
    assert ids("parkedAt{name};speed>10") == ["urn:ngsi-ld:Car:c1"]
    assert ids("parkedAt{name};speed>100") == []
    assert ids('fleet{speed==30}|operator{name=="ParkCo"}') == [
        "urn:ngsi-ld:Company:k1",
        "urn:ngsi-ld:Parking:p1",
    ]
    assert ids("!parkedAt{speed}", kind="Car") == ["urn:ngsi-ld:Car:c1"]
    r = linked.get("/entities", params={"type": "Car", "q": 'parkedAt{name=="x"'})
    assert r.status_code == 400, r.text


def test_flat_join_projection_follows_the_selection(linked: httpx.Client) -> None:
    """4.21 with 4.5.23.3 (the ETSI suite's 018_20, 018_21): in a flat answer each linked
    Entity gets the part of the projection that reaches it; a pick does not follow a
    Relationship it leaves out; an omit applies where it is written."""
    url = "/entities/urn:ngsi-ld:Car:c1"
    got = linked.get(
        url, params={"join": "flat", "joinLevel": "2", "pick": "id,parkedAt{id,name}"}
    ).json()
    assert got == [
        {
            "id": "urn:ngsi-ld:Car:c1",
            "parkedAt": {**rel("urn:ngsi-ld:Parking:p1"), "objectType": "Parking"},
        },
        {"id": "urn:ngsi-ld:Parking:p1", "name": prop("Central")},
    ]
    got = linked.get(
        url,
        params={"join": "flat", "joinLevel": "2", "pick": "id,parkedAt{id,operator{id,name}}"},
    ).json()
    assert [e.get("id") for e in got] == [
        "urn:ngsi-ld:Car:c1",
        "urn:ngsi-ld:Parking:p1",
        "urn:ngsi-ld:Company:k1",
    ]
    assert got[1] == {"id": "urn:ngsi-ld:Parking:p1", "operator": rel("urn:ngsi-ld:Company:k1")}
    assert got[2] == {"id": "urn:ngsi-ld:Company:k1", "name": prop("ParkCo")}
    got = linked.get(
        url, params={"join": "flat", "joinLevel": "2", "omit": "speed,parkedAt{name}"}
    ).json()
    assert "speed" not in got[0]
    assert "name" not in got[1]
    assert got[2]["name"] == prop("ParkCo")  # no omit written for the second hop


def test_flat_join_without_linked_entity_is_one_object(client: httpx.Client) -> None:
    """The ETSI suite's 018_14: join=flat on an Entity whose link leads nowhere answers the
    Entity alone, not an array."""
    doc = {"id": "urn:ngsi-ld:Car:alone", "type": "Car", "parkedAt": rel("urn:ngsi-ld:X:gone")}
    assert client.post("/entities", json=doc).status_code == 201
    got = client.get("/entities/urn:ngsi-ld:Car:alone", params={"join": "flat"}).json()
    assert got == {
        "id": "urn:ngsi-ld:Car:alone",
        "type": "Car",
        "parkedAt": rel("urn:ngsi-ld:X:gone"),
    }


# -- options / format (6.3.7, 6.3.18) ---------------------------------------------------------


def test_options_and_format_choose_the_representation(linked: httpx.Client) -> None:
    """6.3.7, 6.3.18 (the ETSI suite's 018_15): simplified is keyValues in options and
    format; format wins over the representation options names."""
    url = "/entities/urn:ngsi-ld:Car:c1"
    for params in (
        {"options": "simplified"},
        {"format": "simplified"},
        {"format": "keyValues", "options": "normalized"},
    ):
        got = linked.get(url, params=params).json()
        assert got["speed"] == 30, params
    got = linked.get(url, params={"format": "normalized", "options": "keyValues"}).json()
    assert got["speed"] == prop(30)


@pytest.mark.parametrize(
    "params", [{"format": "invalidFormat"}, {"options": "invalid"}, {"options": "keyValues,bad"}]
)
def test_unknown_options_or_format_is_invalid_request(
    linked: httpx.Client, params: dict[str, str]
) -> None:
    """6.3.20 (the ETSI suite's 018_16): an unknown format or options value is 400
    InvalidRequest."""
    r = linked.get("/entities/urn:ngsi-ld:Car:c1", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == ERR + "InvalidRequest"


def test_vocab_is_compacted_with_the_answer_context(client: httpx.Client) -> None:
    """5.7.1.5: a VocabProperty's value is compacted with the @context of the answer."""
    doc = {
        "id": "urn:ngsi-ld:Thing:v1",
        "type": "Thing",
        "category": {"type": "VocabProperty", "vocab": "http://example.org/ns/Commercial"},
    }
    assert client.post("/entities", json=doc).status_code == 201
    context = [{"ex": "http://example.org/ns/"}, CORE]
    query = {"type": "Query", "entities": [{"type": "Thing"}], "@context": context}
    headers = {"Content-Type": "application/ld+json"}
    r = client.post("/entityOperations/query", content=json.dumps(query), headers=headers)
    assert r.json()[0]["category"]["vocab"] == "ex:Commercial"
    r = client.post(
        "/entityOperations/query",
        content=json.dumps(query),
        headers=headers,
        params={"options": "keyValues"},
    )
    assert r.json()[0]["category"] == {"vocab": "ex:Commercial"}
    plain = client.get("/entities/urn:ngsi-ld:Thing:v1").json()
    assert plain["category"]["vocab"] == "http://example.org/ns/Commercial"


def test_geojson_geometry_of_the_selected_dataset(client: httpx.Client) -> None:
    """4.5.16.1: with datasetId the instance it selects gives the geometry."""
    doc = {
        "id": "urn:ngsi-ld:Bus:d1",
        "type": "Bus",
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [7, 8]},
            "datasetId": "urn:ngsi-ld:Dataset:gps",
        },
    }
    assert client.post("/entities", json=doc).status_code == 201
    url = "/entities/urn:ngsi-ld:Bus:d1"
    got = client.get(
        url, headers={"Accept": GEO}, params={"datasetId": "urn:ngsi-ld:Dataset:gps"}
    ).json()
    assert got["geometry"] == {"type": "Point", "coordinates": [7, 8]}


def test_two_level_inline_simplified_and_sys_attrs(linked: httpx.Client) -> None:
    """The ETSI suite's 018_13_03 and 018_11: keyValues nests the linked Entities in place;
    sysAttrs applies to inlined Entities too."""
    got = linked.get(
        "/entities/urn:ngsi-ld:Car:c1",
        params={"join": "inline", "joinLevel": "2", "options": "keyValues"},
    ).json()
    assert got["parkedAt"]["operator"]["id"] == "urn:ngsi-ld:Company:k1"
    assert got["parkedAt"]["operator"]["name"] == "ParkCo"
    got = linked.get(
        "/entities/urn:ngsi-ld:Car:c1", params={"join": "inline", "options": "sysAttrs"}
    ).json()
    assert "createdAt" in got["parkedAt"]["entity"]


def test_lang_on_post_query(multilingual: httpx.Client) -> None:
    """5.2.23: a Query's lang member."""
    query = {"type": "Query", "entities": [{"type": "Museum"}], "lang": "fr"}
    got = multilingual.post("/entityOperations/query", json=query).json()
    assert got[0]["name"]["value"] == "Musée des sciences"
