"""R197-NGSILD-29..36: consumption of context information - representations: Linked Entity
Retrieval (join, joinLevel), languages (lang, LanguageProperty), the simplified form of each
attribute type, GeoJSON and compact IRIs (ETSI GS CIM 009 V1.8.1; GeoJSON details as
clarified in V1.9.1).

Every case makes its own uniquely named types and ids, so a shared IUT tenant does not
disturb it.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from conformance.model import case
from conformance.ngsild_common import CORE_V18, problem, unique

GEO = "application/geo+json"
LD = "application/ld+json"


def _json(r: httpx.Response, status: int = 200) -> Any:
    """The JSON body of an answer with ``status``, else an AssertionError saying what came."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:300]!r}"
    try:
        return r.json()
    except ValueError:
        raise AssertionError(f"the body is not JSON: {r.content[:300]!r}") from None


def _obj(value: Any, what: str) -> dict[str, Any]:
    assert isinstance(value, dict), f"{what}: expected a JSON object, got {value!r:.300}"
    return value


def _prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def _rel(obj: str) -> dict[str, Any]:
    return {"type": "Relationship", "object": obj}


def _chain(api: httpx.Client) -> tuple[str, str, str]:
    """Three entities: A -> B -> C (Relationship ``next``), C -> A; returns their ids."""
    kind = unique("R197J")
    a, b, c = (f"urn:ngsi-ld:{kind}:{n}" for n in "abc")
    docs = [
        {"id": a, "type": kind, "name": _prop("A"), "next": _rel(b)},
        {"id": b, "type": kind, "name": _prop("B"), "next": _rel(c)},
        {"id": c, "type": kind, "name": _prop("C"), "next": _rel(a)},
    ]
    for doc in docs:
        r = api.post("/entities", json=doc)
        assert r.status_code == 201, f"create {doc['id']}: {r.status_code} {r.text[:200]!r}"
    return a, b, c


@case("R197-NGSILD-29", "join=inline adds the linked Entity to the Relationship as 'entity'",
      verifies=["CIM009-4.5.23-inline", "CIM009-5.7.1-join"], theme="interoperability",
      pics=["ngsild.join"])  # fmt: skip
def test_join_inline(api: httpx.Client) -> None:
    a, b, c = _chain(api)
    got = _obj(_json(api.get(f"/entities/{a}", params={"join": "inline"})), "retrieve")
    nxt = _obj(got.get("next"), "the Relationship next")
    assert nxt.get("object") == b, f"the Relationship keeps its object: {nxt!r:.300}"
    linked = _obj(nxt.get("entity"), "the inlined entity")
    assert linked.get("id") == b, f"inlined entity id {linked.get('id')!r}, expected {b}"
    assert linked.get("name") == _prop("B"), f"inlined entity: {linked!r:.300}"
    deeper = _obj(linked.get("next"), "the inlined entity's next")
    assert "entity" not in deeper, "joinLevel 1 (the default) inlined a second hop"
    got = _obj(
        _json(api.get(f"/entities/{a}", params={"join": "inline", "joinLevel": "2"})), "retrieve"
    )
    hop1 = _obj(_obj(got.get("next"), "next").get("entity"), "joinLevel=2: first hop")
    hop2 = _obj(_obj(hop1.get("next"), "first hop's next").get("entity"), "second hop")
    assert hop2.get("id") == c, f"joinLevel=2: second hop {hop2.get('id')!r}, expected {c}"


@case("R197-NGSILD-30", "join=flat returns the linked Entities once each as further array members",
      verifies=["CIM009-4.5.23-flat", "CIM009-5.7.2-join"], theme="interoperability",
      pics=["ngsild.join"])  # fmt: skip
def test_join_flat(api: httpx.Client) -> None:
    a, b, c = _chain(api)
    got = _json(api.get(f"/entities/{a}", params={"join": "flat", "joinLevel": "5"}))
    assert isinstance(got, list), f"retrieve with join=flat is an array, got {got!r:.300}"
    ids = [e.get("id") for e in got if isinstance(e, dict)]
    assert ids[:1] == [a], f"the retrieved entity comes first: {ids}"
    assert sorted(ids) == sorted([a, b, c]), f"each entity once (C links back to A): {ids}"
    r = api.get("/entities", params={"id": a, "type": a.split(":")[2], "join": "flat"})
    got = _json(r)
    assert isinstance(got, list), f"query answer: {got!r:.300}"
    ids = sorted(e.get("id") for e in got if isinstance(e, dict))
    assert ids == sorted([a, b]), f"query with join=flat, joinLevel 1: {ids}"


@case("R197-NGSILD-31", "A join other than inline/flat/@none or a joinLevel < 1 is 400",
      verifies=["CIM009-5.7.1.4-join"], theme="interoperability",
      pics=["ngsild.join"])  # fmt: skip
def test_bad_join(api: httpx.Client) -> None:
    a, _, _ = _chain(api)
    for params in ({"join": "deep"}, {"join": "inline", "joinLevel": "0"},
                   {"join": "flat", "joinLevel": "-1"}):  # fmt: skip
        problem(api.get(f"/entities/{a}", params=params), 400, "BadRequestData")
    got = _obj(_json(api.get(f"/entities/{a}", params={"join": "@none"})), "join=@none")
    assert "entity" not in _obj(got.get("next"), "next"), "join=@none inlined an entity"


@case("R197-NGSILD-32", "lang turns a LanguageProperty into a Property in the best language",
      verifies=["CIM009-4.5.18", "CIM009-4.15-lang"], theme="interoperability",
      pics=["ngsild.lang"])  # fmt: skip
def test_lang(api: httpx.Client) -> None:
    kind = unique("R197L")
    eid = f"urn:ngsi-ld:{kind}:1"
    doc = {"id": eid, "type": kind,
           "name": {"type": "LanguageProperty",
                    "languageMap": {"en": "Town hall", "fr": "Mairie", "@none": "TH"}}}  # fmt: skip
    r = api.post("/entities", json=doc)
    assert r.status_code == 201, f"create: {r.status_code} {r.text[:200]!r}"
    name = _obj(_obj(_json(api.get(f"/entities/{eid}")), "retrieve").get("name"), "name")
    assert name.get("type") == "LanguageProperty", f"without lang: {name!r}"
    language_map = _obj(name.get("languageMap"), "languageMap without lang")
    assert language_map.get("fr") == "Mairie", f"without lang: {name!r}"
    got = _obj(_json(api.get(f"/entities/{eid}", params={"lang": "fr"})), "retrieve lang=fr")
    name = _obj(got.get("name"), "name with lang=fr")
    assert name.get("type") == "Property", f"lang=fr: type {name.get('type')!r}"
    assert name.get("value") == "Mairie", f"lang=fr: value {name.get('value')!r}"
    assert name.get("lang") == "fr", f"lang=fr: lang {name.get('lang')!r}"
    r = api.get("/entities", params={"type": kind, "lang": "en", "options": "keyValues"})
    got = _json(r)
    assert isinstance(got, list), f"query: {got!r:.300}"
    assert got, "query: no entity"
    assert _obj(got[0], "entity").get("name") == "Town hall", f"keyValues lang=en: {got!r:.300}"


@case("R197-NGSILD-33", "The simplified form keeps languageMap/json/vocab keys and maps datasets",
      verifies=["CIM009-4.5.4-types"], theme="interoperability",
      pics=["ngsild.simplified-types"])  # fmt: skip
def test_simplified_types(api: httpx.Client) -> None:
    kind = unique("R197S")
    eid = f"urn:ngsi-ld:{kind}:1"
    doc = {"id": eid, "type": kind,
           "speed": [_prop(55), {**_prop(11), "datasetId": "urn:ngsi-ld:Dataset:gps"}],
           "label": {"type": "LanguageProperty", "languageMap": {"en": "hi"}},
           "blob": {"type": "JsonProperty", "json": {"a": 1}},
           "depths": {"type": "ListProperty", "valueList": [1.5, 2.5]},
           "near": _rel("urn:ngsi-ld:R197S:x")}  # fmt: skip
    r = api.post("/entities", json=doc)
    assert r.status_code == 201, f"create: {r.status_code} {r.text[:200]!r}"
    got = _obj(_json(api.get(f"/entities/{eid}", params={"options": "keyValues"})), "keyValues")
    expected = {
        "speed": {"dataset": {"@none": 55, "urn:ngsi-ld:Dataset:gps": 11}},
        "label": {"languageMap": {"en": "hi"}},
        "blob": {"json": {"a": 1}},
        "depths": [1.5, 2.5],
        "near": "urn:ngsi-ld:R197S:x",
    }
    for name, value in expected.items():
        assert got.get(name) == value, f"{name}: expected {value!r}, got {got.get(name)!r}"


def _geo_entity(api: httpx.Client) -> tuple[str, str]:
    kind = unique("R197G")
    eid = f"urn:ngsi-ld:{kind}:1"
    doc = {"id": eid, "type": kind, "speed": _prop(5),
           "location": [{"type": "GeoProperty", "datasetId": "urn:ngsi-ld:Dataset:gps",
                         "value": {"type": "Point", "coordinates": [9.0, 9.0]}},
                        {"type": "GeoProperty",
                         "value": {"type": "Point", "coordinates": [1.0, 2.0]}}],
           "route": {"type": "GeoProperty",
                     "value": {"type": "LineString", "coordinates": [[0.0, 0.0], [1.0, 1.0]]}}}  # fmt: skip
    r = api.post("/entities", json=doc)
    assert r.status_code == 201, f"create: {r.status_code} {r.text[:200]!r}"
    return kind, eid


@case("R197-NGSILD-34", "Accept: application/geo+json answers a Feature for Retrieve Entity",
      verifies=["CIM009-4.5.16", "CIM009-6.3.15"], theme="interoperability",
      pics=["ngsild.geojson"])  # fmt: skip
def test_geojson_feature(api: httpx.Client) -> None:
    _, eid = _geo_entity(api)
    r = api.get(f"/entities/{eid}", headers={"Accept": GEO})
    got = _obj(_json(r), "GeoJSON retrieve")
    assert r.headers.get("content-type", "").startswith(GEO), (
        f"Content-Type {r.headers.get('content-type')!r}"
    )
    assert got.get("type") == "Feature", f"type {got.get('type')!r}"
    assert got.get("id") == eid, f"id {got.get('id')!r}"
    assert got.get("geometry") == {"type": "Point", "coordinates": [1.0, 2.0]}, (
        f"geometry: the default instance of location, got {got.get('geometry')!r}"
    )
    props = _obj(got.get("properties"), "properties")
    assert "id" not in props, "properties carry no id"
    assert props.get("speed") == _prop(5), f"properties.speed {props.get('speed')!r}"
    r = api.get(f"/entities/{eid}", headers={"Accept": GEO}, params={"geometryProperty": "route"})
    got = _obj(_json(r), "geometryProperty=route")
    assert _obj(got.get("geometry"), "geometry").get("type") == "LineString", f"{got!r:.300}"
    r = api.get(f"/entities/{eid}", headers={"Accept": GEO}, params={"geometryProperty": "speed"})
    got = _obj(_json(r), "geometryProperty=speed")
    assert "geometry" in got, f"a Feature has a geometry member: {got!r:.300}"
    assert got["geometry"] is None, f"not a geometry: null, {got!r:.300}"


@case("R197-NGSILD-35", "GeoJSON Query Entities answers a FeatureCollection; geometryProperty "
      "needs the GeoJSON Accept", verifies=["CIM009-4.5.16.3", "CIM009-4.5.17",
      "CIM009-5.7.2.4-geometryProperty"], theme="interoperability",
      pics=["ngsild.geojson"])  # fmt: skip
def test_geojson_collection(api: httpx.Client) -> None:
    kind, eid = _geo_entity(api)
    r = api.get("/entities", params={"type": kind, "options": "keyValues"}, headers={"Accept": GEO})
    got = _obj(_json(r), "GeoJSON query")
    assert got.get("type") == "FeatureCollection", f"type {got.get('type')!r}"
    features = got.get("features")
    assert isinstance(features, list), f"features: {features!r:.300}"
    assert len(features) == 1, f"features: {features!r:.300}"
    one = _obj(features[0], "feature")
    assert one.get("type") == "Feature", f"feature: {one!r:.300}"
    assert one.get("id") == eid, f"feature: {one!r:.300}"
    assert "@context" not in one, "a Feature of a FeatureCollection carries no @context"
    props = _obj(one.get("properties"), "properties")
    assert props.get("speed") == 5, f"keyValues properties: speed {props.get('speed')!r}"
    r = api.get("/entities", params={"type": kind, "geometryProperty": "location"},
                headers={"Accept": "application/json"})  # fmt: skip
    problem(r, 400, "BadRequestData")


@case("R197-NGSILD-36", "IRIs under a prefix the @context defines come back as compact IRIs",
      verifies=["CIM009-5.5.7-compaction"], theme="interoperability",
      pics=["ngsild.compact-iris"])  # fmt: skip
def test_compact_iris(api: httpx.Client) -> None:
    ns = f"http://example.org/{unique('r197ns')}/"
    context = [{"ex": ns}, CORE_V18]
    eid = f"urn:ngsi-ld:{unique('R197C')}:1"
    doc = {"id": eid, "type": "ex:Boat", "ex:speed": _prop(7), "@context": context}
    r = api.post("/entities", content=json.dumps(doc), headers={"Content-Type": LD})
    assert r.status_code == 201, f"create: {r.status_code} {r.text[:200]!r}"
    query = {"type": "Query", "entities": [{"type": "ex:Boat"}], "@context": context}
    r = api.post("/entityOperations/query", content=json.dumps(query),
                 headers={"Content-Type": LD, "Accept": LD})  # fmt: skip
    got = _json(r)
    assert isinstance(got, list), f"query: {got!r:.300}"
    assert len(got) == 1, f"query: {got!r:.300}"
    one = _obj(got[0], "entity")
    assert one.get("type") == "ex:Boat", f"type {one.get('type')!r}, expected ex:Boat"
    assert one.get("ex:speed") == _prop(7), f"attributes: {sorted(one)}"
    r = api.get(f"/entities/{eid}", headers={"Accept": LD})
    one = _obj(_json(r), "retrieve with the core context")
    assert one.get("type") == ns + "Boat", f"core context only: type {one.get('type')!r}"
