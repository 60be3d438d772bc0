"""InvalidRequest vs BadRequestData (CIM 009 V1.8.1 5.5.2, 6.3.20) outside provision, as the
ETSI NGSI-LD test suite expects them, on a real platform: a body that is not JSON or an
unknown parameter or parameter value is InvalidRequest; valid JSON or parameters with content
the operation cannot take (a bad id, a missing selection, a bad geo-query or time filter, a
bad subscription member, an empty batch) are BadRequestData."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
EID = "urn:ngsi-ld:Vehicle:err1"
SUB: dict[str, Any] = {
    "type": "Subscription",
    "entities": [{"type": "Vehicle"}],
    "notification": {"endpoint": {"uri": "http://localhost:1/notify"}},
}


def problem(r: httpx.Response, kind: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == ERR + kind, r.text
    assert body.get("title"), r.text  # the ETSI suite checks a title is there


@pytest.fixture
def v1(client: httpx.Client) -> httpx.Client:
    doc = {"id": EID, "type": "Vehicle", "speed": {"type": "Property", "value": 1}}
    r = client.post("/entities", json=doc)
    assert r.status_code == 201, r.text
    return client


@pytest.mark.parametrize(
    "params",
    [
        {"format": "invalidFormat"},  # ETSI 018_16_01
        {"options": "invalidOptions"},  # 018_16_02
        {"options": "keyValues,invalid"},  # 018_16_03
        {"format": "keyValues", "options": "invalid"},  # 018_16_04
    ],
)
def test_retrieve_unknown_format_or_options_is_invalid_request(
    v1: httpx.Client, params: dict[str, str]
) -> None:
    """6.3.7, 6.3.20: an unknown format/options value is InvalidRequest (ETSI 018_16)."""
    problem(v1.get(f"/entities/{EID}", params=params), "InvalidRequest")


def test_query_parameters(v1: httpx.Client) -> None:
    """5.7.2: an unknown parameter or options value is InvalidRequest; no selection, an id
    that is not a URI, a bad geo-query or a negative limit is BadRequestData."""
    problem(v1.get("/entities", params={"type": "Vehicle", "foo": "1"}), "InvalidRequest")
    problem(v1.get("/entities", params={"type": "Vehicle", "options": "x"}), "InvalidRequest")
    problem(v1.get("/entities"), "BadRequestData")
    problem(v1.get("/entities", params={"id": "notAUri"}), "BadRequestData")
    geo = {"type": "Vehicle", "georel": "nearish", "geometry": "Point", "coordinates": "[1,2]"}
    problem(v1.get("/entities", params=geo), "BadRequestData")
    geo = {"type": "Vehicle", "georel": "near;maxDistance==10"}  # 4.10: all three needed
    problem(v1.get("/entities", params=geo), "BadRequestData")
    problem(v1.get("/entities", params={"type": "Vehicle", "limit": "-1"}), "BadRequestData")
    for params in ({"attrs": "speed", "pick": "speed"}, {"pick": "speed", "omit": "speed"}):
        # 4.21 (ETSI 019_18)
        problem(v1.get("/entities", params={"type": "Vehicle", **params}), "BadRequestData")


def test_invalid_uri_in_a_path_is_bad_request_data(client: httpx.Client) -> None:
    """An id that is not a URI in the path is BadRequestData (ETSI 5_11_4 and alike)."""
    for path in ("/entities", "/subscriptions", "/csourceRegistrations", "/csourceSubscriptions"):
        problem(client.get(f"{path}/invalidUri"), "BadRequestData")


def test_temporal_time_filter_is_bad_request_data(client: httpx.Client) -> None:
    """5.7.4: no selection at all (ETSI 021_xx), an unknown timerel, a missing or bad timeAt,
    between without endTimeAt are BadRequestData."""
    at = "2020-07-01T12:05:00Z"
    problem(client.get("/temporal/entities", params={"timerel": "after", "timeAt": at}),
            "BadRequestData")  # fmt: skip
    for params in (
        {"timerel": "whenever", "timeAt": at},
        {"timerel": "after"},
        {"timerel": "after", "timeAt": "yesterday"},
        {"timerel": "between", "timeAt": at},
    ):
        r = client.get("/temporal/entities", params={"type": "Vehicle", **params})
        problem(r, "BadRequestData")


def test_subscription_bodies(client: httpx.Client) -> None:
    """5.8.1: a body that is not JSON (or empty) is InvalidRequest; throttling with
    timeInterval, a negative throttling (ETSI 028_05), no type, a bad geoQ are BadRequestData."""
    js = {"Content-Type": "application/json"}
    problem(client.post("/subscriptions", content=b'{"type": ', headers=js), "InvalidRequest")
    problem(client.post("/subscriptions", content=b"", headers=js), "InvalidRequest")
    for doc in (
        {**SUB, "throttling": 5, "timeInterval": 10},
        {**SUB, "throttling": -5},
        {k: v for k, v in SUB.items() if k != "type"},
        {**SUB, "geoQ": {"georel": "near", "geometry": "Point", "coordinates": [1, 2]}},
    ):
        problem(client.post("/subscriptions", json=doc), "BadRequestData")


def test_batch_bodies(v1: httpx.Client) -> None:
    """5.6.9, 5.6.10: invalid JSON is InvalidRequest (ETSI 005_04_01, 006_03_01); an empty
    array to delete is BadRequestData (006_03_02); a batch update of an entity with a JSON null
    value is a BadRequestData error of the BatchOperationResult, 207 (005_04_02)."""
    js = {"Content-Type": "application/json"}
    problem(v1.post("/entityOperations/delete", content=b"[", headers=js), "InvalidRequest")
    problem(v1.post("/entityOperations/update", content=b"[{", headers=js), "InvalidRequest")
    problem(v1.post("/entityOperations/delete", json=[]), "BadRequestData")
    doc = {"id": "urn:ngsi-ld:Building:none", "type": "Building",
           "name": {"type": "Property", "value": None}}  # fmt: skip
    r = v1.post("/entityOperations/update", json=[doc])
    assert r.status_code == 207, r.text
    error = r.json()["errors"][0]["error"]
    assert error["type"] == ERR + "BadRequestData", r.text
    assert error["title"], r.text


def test_ld_json_with_a_link_header_is_bad_request_data(client: httpx.Client) -> None:
    """6.3.5: application/ld+json with a JSON-LD Link header is BadRequestData (ETSI
    001_09_01)."""
    link = f'<{CORE}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    headers = {"Content-Type": "application/ld+json", "Link": link}
    doc = {"id": EID, "type": "Vehicle", "@context": CORE}
    problem(client.post("/entities", json=doc, headers=headers), "BadRequestData")


def test_temporal_query_with_ids_only_is_bad_request_data(client: httpx.Client) -> None:
    """ETSI 021_24: ids alone are not one of the minimal parameters of a temporal query."""
    ids = "urn:ngsi-ld:Entity:01,urn:ngsi-ld:Entity:02"
    params = {"id": ids, "timerel": "after", "timeAt": "2020-07-01T12:05:00Z"}
    problem(client.get("/temporal/entities", params=params), "BadRequestData")


def test_temporal_retrieve_pick_with_attrs_is_bad_request_data(client: httpx.Client) -> None:
    """4.21, ETSI 020_22: pick or omit beside attrs is BadRequestData."""
    speed = {"type": "Property", "value": 1, "observedAt": "2020-01-01T00:00:00Z"}
    doc = {"id": EID, "type": "Vehicle", "speed": [speed]}
    assert client.post("/temporal/entities", json=doc).status_code == 201
    r = client.get(f"/temporal/entities/{EID}", params={"attrs": "speed", "pick": "speed"})
    problem(r, "BadRequestData")
