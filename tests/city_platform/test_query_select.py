"""Entity selection: type expressions and multi-typed entities (4.17, 4.5.1), scope and scopeQ
(4.18, 4.19), and POST /entityOperations/query (5.7.2 with a Query body), on a real platform."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

ERR = "https://uri.etsi.org/ngsi-ld/errors/"


def thing(name: str, types: Any, scope: Any = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": f"urn:ngsi-ld:Thing:{name}",
        "type": types,
        "height": {"type": "Property", "value": len(name)},
    }
    if scope is not None:
        doc["scope"] = scope
    return doc


@pytest.fixture
def city(client: httpx.Client) -> httpx.Client:
    docs = [
        thing("tower", ["Building", "Tower"], "/Madrid/Centro"),
        thing("house", "Building", ["/Madrid", "/Spain/Houses"]),
        thing("mast", "Tower", "/Madrid/Centro/Norte"),
        thing("car", "Vehicle"),
    ]
    r = client.post("/entityOperations/create", json=docs)
    assert r.status_code == 201, r.text
    return client


def names(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return sorted(e["id"].rsplit(":", 1)[-1] for e in r.json())


def test_multi_typed_entity_is_stored_and_found_by_either_type(city: httpx.Client) -> None:
    """CIM 009 4.5.1: an entity may have several types; it is returned with all of them and
    found by each."""
    got = city.get("/entities/urn:ngsi-ld:Thing:tower").json()
    assert sorted(got["type"]) == ["Building", "Tower"]
    assert names(city.get("/entities", params={"type": "Building"})) == ["house", "tower"]
    assert names(city.get("/entities", params={"type": "Tower"})) == ["mast", "tower"]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("Building;Tower", ["tower"]),
        ("Building,Tower", ["house", "mast", "tower"]),
        ("Building|Vehicle", ["car", "house", "tower"]),
        ("(Building|Vehicle);Tower", ["tower"]),
        ("Tower;(Building|Vehicle)", ["tower"]),
        ("*", ["car", "house", "mast", "tower"]),
    ],
)
def test_type_selection_language(city: httpx.Client, expr: str, expected: list[str]) -> None:
    """CIM 009 4.17: ';' is AND, ',' and '|' are OR, parentheses group; '*' is every type."""
    assert names(city.get("/entities", params={"type": expr})) == expected


@pytest.mark.parametrize("expr", ["Building;", "(Building", "Building)", ";Tower", "A;;B", "()"])
def test_bad_type_selection_is_bad_request(city: httpx.Client, expr: str) -> None:
    """CIM 009 4.17, 5.7.2.4: a type selection outside the grammar is 400 BadRequestData."""
    r = city.get("/entities", params={"type": expr})
    assert r.status_code == 400, r.text
    assert r.json()["type"] == ERR + "BadRequestData"


def test_scope_is_stored_and_returned(city: httpx.Client) -> None:
    """CIM 009 4.18: scope is a string (one) or an array (several), returned as given."""
    assert city.get("/entities/urn:ngsi-ld:Thing:tower").json()["scope"] == "/Madrid/Centro"
    house = city.get("/entities/urn:ngsi-ld:Thing:house").json()
    assert sorted(house["scope"]) == ["/Madrid", "/Spain/Houses"]
    assert "scope" not in city.get("/entities/urn:ngsi-ld:Thing:car").json()


@pytest.mark.parametrize(
    ("scope_q", "expected"),
    [
        ("/Madrid", ["house"]),
        ("/Madrid/#", ["house", "mast", "tower"]),
        ("/Madrid/+", ["tower"]),
        ("/Madrid/+/+", ["mast"]),
        ("/#", ["house", "mast", "tower"]),
        ("/Madrid;/Spain/#", ["house"]),
        ("/Madrid/Centro,/Spain/Houses", ["house", "tower"]),
        ("(/Madrid,/Madrid/Centro);/Spain/#", ["house"]),
    ],
)
def test_scope_query_language(city: httpx.Client, scope_q: str, expected: list[str]) -> None:
    """CIM 009 4.19: exact scopes, '#' for a scope and its descendants, '+' for one level."""
    r = city.get("/entities", params={"type": "*", "scopeQ": scope_q})
    assert names(r) == expected


@pytest.mark.parametrize(
    "scope", [None, "urn:ngsi-ld:null", "Madrid", "/Madrid//x", [], ["/ok", 3], "/a#"]
)
def test_bad_scope_is_refused(client: httpx.Client, scope: Any) -> None:
    """CIM 009 4.18: a Null scope cannot be created; a scope is a /-path or an array of them."""
    doc = {"id": "urn:ngsi-ld:Thing:bad", "type": "Thing", "scope": scope}
    r = client.post("/entities", json=doc)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == ERR + "BadRequestData"


@pytest.mark.parametrize("scope_q", ["Madrid", "/Madrid;", "/Mad#rid", "(/Madrid"])
def test_bad_scope_query_is_bad_request(city: httpx.Client, scope_q: str) -> None:
    """CIM 009 4.19, 5.7.2.4: a scopeQ outside the grammar is 400 BadRequestData."""
    r = city.get("/entities", params={"type": "*", "scopeQ": scope_q})
    assert r.status_code == 400, r.text
    assert r.json()["type"] == ERR + "BadRequestData"


def test_post_query_answers_as_get(city: httpx.Client) -> None:
    """CIM 009 5.7.2 (6.23.3.1): a Query body selects what the same GET parameters select."""
    body = {
        "type": "Query",
        "entities": [{"type": "Building"}],
        "q": "height>4",
    }
    r = city.post("/entityOperations/query", json=body)
    assert names(r) == ["house", "tower"]
    get = city.get("/entities", params={"type": "Building", "q": "height>4"})
    assert r.json() == get.json()


def test_post_query_selectors_scope_pick_and_paging(city: httpx.Client) -> None:
    """CIM 009 5.2.23, 5.2.33: several EntitySelectors are OR-ed; scopeQ and pick apply;
    limit, offset and count are URL parameters."""
    body = {"type": "Query", "entities": [{"type": "Vehicle"}, {"type": "Tower"}]}
    assert names(city.post("/entityOperations/query", json=body)) == ["car", "mast", "tower"]
    ids = {"type": "Query", "entities": [{"id": "urn:ngsi-ld:Thing:car", "type": "Vehicle"}]}
    assert names(city.post("/entityOperations/query", json=ids)) == ["car"]
    scoped = {"type": "Query", "entities": [{"type": "Tower"}], "scopeQ": "/Madrid/+/+"}
    assert names(city.post("/entityOperations/query", json=scoped)) == ["mast"]
    picked = {"type": "Query", "entities": [{"type": "Tower"}], "pick": ["id"]}
    r = city.post("/entityOperations/query", json=picked, params={"limit": 1, "count": "true"})
    assert r.status_code == 200, r.text
    assert len(r.json()) == 1
    assert set(r.json()[0]) == {"id"}
    assert r.headers["NGSILD-Results-Count"] == "2"


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"entities": [{"type": "Building"}]},
        {"type": "Subscription", "entities": [{"type": "Building"}]},
        {"type": "Query", "entities": "Building"},
        {"type": "Query", "entities": [{"type": "Building"}], "q": "height>>1"},
        {"type": "Query"},
        {"type": "Query", "entities": []},
        {"type": "Query", "entities": [{"type": "Building"}], "attrs": []},
        {"type": "Query", "entities": [{"type": "Building"}], "q": 42},
        {"type": "Query", "entities": [{"type": "Building"}], "join": "inline", "joinLevel": 0},
        {
            "type": "Query",
            "entities": [{"type": "Building"}],
            "temporalQ": {"timerel": "after", "timeAt": "2020-01-01T00:00:00Z"},
        },
    ],
)
def test_bad_post_query_is_400(city: httpx.Client, body: Any) -> None:
    """CIM 009 5.2.23, 5.7.2.4: a body that is not a valid Query, or selects nothing, is 400."""
    r = city.post("/entityOperations/query", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["type"] in (ERR + "BadRequestData", ERR + "InvalidRequest")
    assert r.json()["detail"]


def test_retrieve_with_type_selects_the_entity(city: httpx.Client) -> None:
    """CIM 009 5.7.1.4: Retrieve Entity with a type it does not have is 404 ResourceNotFound."""
    url = "/entities/urn:ngsi-ld:Thing:tower"
    assert city.get(url, params={"type": "Tower"}).status_code == 200
    assert city.get(url, params={"type": "Building;Tower"}).status_code == 200
    r = city.get(url, params={"type": "Vehicle"})
    assert r.status_code == 404, r.text
    assert r.json()["type"] == ERR + "ResourceNotFound"


def test_type_wildcard_with_local_false_is_bad_request(city: httpx.Client) -> None:
    """CIM 009 Table 6.4.3.2-1: type=* implies local=true and shall not set it false."""
    r = city.get("/entities", params={"type": "*", "local": "false"})
    assert r.status_code == 400, r.text
    assert r.json()["type"] == ERR + "BadRequestData"


def test_post_query_entity_selector_members(city: httpx.Client) -> None:
    """CIM 009 Table 5.2.33-1: id is a URI or an array of URIs and takes precedence over
    idPattern; type is mandatory."""
    tower, car = "urn:ngsi-ld:Thing:tower", "urn:ngsi-ld:Thing:car"
    both = {"type": "Query", "entities": [{"type": "Building,Vehicle", "id": [tower, car]}]}
    assert names(city.post("/entityOperations/query", json=both)) == ["car", "tower"]
    first = {"type": "Query", "entities": [{"type": "Tower", "id": tower, "idPattern": ".*mast"}]}
    assert names(city.post("/entityOperations/query", json=first)) == ["tower"]
    for selector in ({"id": tower}, {"type": "Tower", "id": "not a uri"}, {"type": "T", "id": [1]}):
        r = city.post("/entityOperations/query", json={"type": "Query", "entities": [selector]})
        assert r.status_code == 400, (selector, r.text)
        assert r.json()["type"] == ERR + "BadRequestData"
