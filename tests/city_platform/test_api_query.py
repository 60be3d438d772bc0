"""Query entities, batch operations and discovery against a real platform (5.6.7-10, 5.7)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

ERR = "https://uri.etsi.org/ngsi-ld/errors/"

GENEVA = [6.1432, 46.2044]


def sensor(n: int, kind: str = "AirQualityObserved", **attrs: Any) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "id": f"urn:ngsi-ld:{kind}:s{n}",
        "type": kind,
        "pm25": {"type": "Property", "value": n * 10, "unitCode": "GQ"},
        "name": {"type": "Property", "value": f"Sensor {n}"},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [GENEVA[0] + n * 0.01, GENEVA[1]]},
        },
        "refDevice": {"type": "Relationship", "object": f"urn:ngsi-ld:Device:d{n}"},
        "status": {"type": "Property", "value": {"level": "ok" if n % 2 else "bad", "code": n}},
    }
    entity.update(attrs)
    return entity


@pytest.fixture
def city(client: httpx.Client) -> httpx.Client:
    """Five air-quality sensors along a line eastwards from Geneva, plus two parking spots."""
    docs = [sensor(n) for n in range(1, 6)] + [sensor(n, "ParkingSpot") for n in (1, 2)]
    r = client.post("/entityOperations/create", json=docs)
    assert r.status_code == 201, r.text
    return client


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()]


def q(client: httpx.Client, **params: str) -> list[str]:
    return ids(client.get("/entities", params=params))


def test_query_by_type_id_and_pattern(city: httpx.Client) -> None:
    """type, id lists and idPattern select entities, in creation order."""
    assert q(city, type="ParkingSpot") == [
        "urn:ngsi-ld:ParkingSpot:s1",
        "urn:ngsi-ld:ParkingSpot:s2",
    ]
    assert len(q(city, type="AirQualityObserved,ParkingSpot")) == 7
    assert q(city, id="urn:ngsi-ld:AirQualityObserved:s2,urn:ngsi-ld:ParkingSpot:s1") == [
        "urn:ngsi-ld:AirQualityObserved:s2",
        "urn:ngsi-ld:ParkingSpot:s1",
    ]
    assert q(city, idPattern=r"^urn:ngsi-ld:AirQualityObserved:s[34]$") == [
        "urn:ngsi-ld:AirQualityObserved:s3",
        "urn:ngsi-ld:AirQualityObserved:s4",
    ]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("pm25>30", [4, 5]),
        ("pm25>=30;pm25<50", [3, 4]),
        ("pm25==10|pm25==50", [1, 5]),
        ('(pm25==10|pm25==50);name=="Sensor 5"', [5]),
        ("pm25==20..40", [2, 3, 4]),
        ("pm25==10,30", [1, 3]),
        ("pm25!=10", [2, 3, 4, 5]),
        ("name~=Sensor [12]", [1, 2]),
        ("refDevice==urn:ngsi-ld:Device:d3", [3]),
        ('status[level]=="bad"', [2, 4]),
        ('pm25.unitCode=="GQ";pm25<20', [1]),
        ("!humidity;pm25==50", [5]),
    ],
)
def test_query_language(city: httpx.Client, expr: str, expected: list[int]) -> None:
    """The q language (4.9): comparisons, ; and |, parentheses, ranges, lists, patterns, paths."""
    got = q(city, type="AirQualityObserved", q=expr)
    assert got == [f"urn:ngsi-ld:AirQualityObserved:s{n}" for n in expected]


@pytest.mark.parametrize("expr", ["pm25==", "pm25>>3", "(pm25==1", 'pm25=="open'])
def test_query_syntax_error_is_400_with_detail(city: httpx.Client, expr: str) -> None:
    """A q syntax error is a 400 with a detail that says what is wrong."""
    r = city.get("/entities", params={"type": "AirQualityObserved", "q": expr})
    assert r.status_code == 400
    assert r.json()["type"] in (ERR + "InvalidRequest", ERR + "BadRequestData")
    assert "q" in r.json()["detail"]


def test_geo_near_within_and_disjoint(city: httpx.Client) -> None:
    """Geo-queries: near;maxDistance, within a polygon, disjoint from it (4.10)."""
    point = f"[{GENEVA[0]},{GENEVA[1]}]"
    # Sensors sit 0.01° (~770 m at this latitude) apart eastwards.
    near = q(
        city,
        type="AirQualityObserved",
        georel="near;maxDistance==1700",
        geometry="Point",
        coordinates=point,
    )
    assert near == ["urn:ngsi-ld:AirQualityObserved:s1", "urn:ngsi-ld:AirQualityObserved:s2"]
    far = q(
        city,
        type="AirQualityObserved",
        georel="near;minDistance==3000",
        geometry="Point",
        coordinates=point,
    )
    assert far == ["urn:ngsi-ld:AirQualityObserved:s4", "urn:ngsi-ld:AirQualityObserved:s5"]
    box = [[[6.16, 46.1], [6.175, 46.1], [6.175, 46.3], [6.16, 46.3], [6.16, 46.1]]]
    inside = q(
        city, type="AirQualityObserved", georel="within", geometry="Polygon", coordinates=str(box)
    )
    assert inside == ["urn:ngsi-ld:AirQualityObserved:s2", "urn:ngsi-ld:AirQualityObserved:s3"]
    outside = q(
        city, type="AirQualityObserved", georel="disjoint", geometry="Polygon", coordinates=str(box)
    )
    assert len(outside) == 3


@pytest.mark.parametrize(
    "params",
    [
        {"georel": "near", "geometry": "Point", "coordinates": "[6,46]"},
        {"georel": "within", "geometry": "Point"},
        {"georel": "within", "geometry": "Triangle", "coordinates": "[6,46]"},
        {"georel": "near;maxDistance==1", "geometry": "Point", "coordinates": "[6,"},
    ],
)
def test_geo_query_errors_are_400(city: httpx.Client, params: dict[str, str]) -> None:
    """Malformed geo-query parameters are BadRequestData."""
    r = city.get("/entities", params={"type": "AirQualityObserved", **params})
    assert r.status_code == 400
    assert r.json()["type"] == ERR + "BadRequestData"


def test_pagination_and_count(city: httpx.Client) -> None:
    """limit/offset page through results; count=true reports the total in a header."""
    r = city.get(
        "/entities", params={"type": "AirQualityObserved", "limit": 2, "offset": 1, "count": "true"}
    )
    assert ids(r) == ["urn:ngsi-ld:AirQualityObserved:s2", "urn:ngsi-ld:AirQualityObserved:s3"]
    assert r.headers["NGSILD-Results-Count"] == "5"
    assert 'rel="next"' in r.headers["link"]
    r = city.get("/entities", params={"type": "AirQualityObserved", "limit": 0, "count": "true"})
    assert r.json() == []
    assert r.headers["NGSILD-Results-Count"] == "5"
    bad = city.get("/entities", params={"type": "AirQualityObserved", "limit": 5000})
    assert bad.status_code == 400


def test_query_needs_a_filter(city: httpx.Client) -> None:
    """A query with no type, id, attrs, q or geo-query is rejected."""
    r = city.get("/entities")
    assert r.status_code == 400
    assert r.json()["type"] == ERR + "BadRequestData"


def test_attrs_projection_and_key_values_in_query(city: httpx.Client) -> None:
    """attrs keeps the named attributes; keyValues applies to every result."""
    r = city.get(
        "/entities", params={"type": "ParkingSpot", "attrs": "pm25", "options": "keyValues"}
    )
    assert r.json()[0] == {"id": "urn:ngsi-ld:ParkingSpot:s1", "type": "ParkingSpot", "pm25": 10}


def test_batch_upsert_creates_then_updates(client: httpx.Client) -> None:
    """Upsert answers 201 with the created ids, then 204 when all existed (5.6.8)."""
    docs = [sensor(n) for n in range(1, 4)]
    r = client.post("/entityOperations/upsert", json=docs)
    assert r.status_code == 201
    assert r.json() == [d["id"] for d in docs]
    docs[0]["pm25"]["value"] = 999
    r = client.post("/entityOperations/upsert", json=docs)
    assert r.status_code == 204
    got = client.get(f"/entities/{docs[0]['id']}", params={"options": "keyValues"}).json()
    assert got["pm25"] == 999


def test_batch_upsert_update_mode_keeps_other_attributes(client: httpx.Client) -> None:
    """options=update merges attributes instead of replacing the entity."""
    client.post("/entityOperations/upsert", json=[sensor(1)])
    patch = {"id": sensor(1)["id"], "type": "AirQualityObserved", "no2": 12}
    assert (
        client.post(
            "/entityOperations/upsert", params={"options": "update"}, json=[patch]
        ).status_code
        == 204
    )
    got = client.get(f"/entities/{patch['id']}", params={"options": "keyValues"}).json()
    assert got["no2"] == 12
    assert got["pm25"] == 10
    client.post("/entityOperations/upsert", json=[patch])  # replace (default)
    got = client.get(f"/entities/{patch['id']}", params={"options": "keyValues"}).json()
    assert "pm25" not in got


def test_batch_partial_failure_is_207_naming_each_failure(client: httpx.Client) -> None:
    """A batch with bad entities answers 207 with success ids and one error per failed entity."""
    docs = [sensor(1), {"id": "bad id", "type": "X"}, sensor(2), sensor(1)]
    r = client.post("/entityOperations/create", json=docs)
    assert r.status_code == 207
    body = r.json()
    assert body["success"] == [sensor(1)["id"], sensor(2)["id"]]
    assert [e["entityId"] for e in body["errors"]] == ["bad id", sensor(1)["id"]]
    assert body["errors"][0]["error"]["type"] == ERR + "BadRequestData"
    assert body["errors"][1]["error"]["type"] == ERR + "AlreadyExists"


def test_batch_update_and_delete(client: httpx.Client) -> None:
    """Batch update changes existing entities (207 for unknown); delete removes (207 unknown)."""
    client.post("/entityOperations/create", json=[sensor(1), sensor(2)])
    upd = [{"id": sensor(1)["id"], "pm25": 1}, {"id": "urn:ngsi-ld:X:none", "pm25": 2}]
    r = client.post("/entityOperations/update", json=upd)
    assert r.status_code == 207
    assert r.json()["errors"][0]["error"]["type"] == ERR + "ResourceNotFound"
    r = client.post(
        "/entityOperations/update",
        params={"options": "noOverwrite"},
        json=[{"id": sensor(1)["id"], "pm25": 5, "extra": 1}],
    )
    assert r.status_code == 207  # pm25 kept by noOverwrite (ETSI 005_02_03), extra added
    got = client.get(f"/entities/{sensor(1)['id']}", params={"options": "keyValues"}).json()
    assert (got["pm25"], got["extra"]) == (1, 1)
    r = client.post("/entityOperations/delete", json=[sensor(1)["id"], sensor(2)["id"]])
    assert r.status_code == 204
    r = client.post("/entityOperations/delete", json=[sensor(1)["id"]])
    assert r.status_code == 207
    assert r.json()["errors"][0]["error"]["type"] == ERR + "ResourceNotFound"


def test_batch_rejects_a_non_array_body(client: httpx.Client) -> None:
    """A batch body that is not an array is 400 BadRequestData."""
    r = client.post("/entityOperations/upsert", json={"id": "urn:x:1"})
    assert r.status_code == 400
    assert r.json()["type"] == ERR + "BadRequestData"


def test_types_and_attributes_discovery(city: httpx.Client) -> None:
    """/types and /attributes list what the tenant holds, with details on request."""
    assert city.get("/types").json()["typeList"] == ["AirQualityObserved", "ParkingSpot"]
    info = city.get("/types/AirQualityObserved").json()
    assert info["entityCount"] == 5
    names = {a["attributeName"]: a["attributeTypes"] for a in info["attributeDetails"]}
    assert names["refDevice"] == ["Relationship"]
    assert names["location"] == ["GeoProperty"]
    attrs = city.get("/attributes").json()["attributeList"]
    assert attrs == ["location", "name", "pm25", "refDevice", "status"]
    detail = city.get("/attributes/pm25").json()
    assert detail["attributeCount"] == 7
    assert detail["typeNames"] == ["AirQualityObserved", "ParkingSpot"]
    assert city.get("/types/Nope").status_code == 404
    detailed = city.get("/types", params={"details": "true"}).json()
    assert {t["typeName"] for t in detailed} == {"AirQualityObserved", "ParkingSpot"}
