"""Temporal API against a real platform (CIM 009 5.6.11-5.6.16, 5.7.3-5.7.4)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
ROOM = "urn:ngsi-ld:Room:t1"


def reading(value: float, minute: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "Property",
        "value": value,
        "unitCode": "CEL",
        "observedAt": f"2026-01-01T10:{minute:02d}:00Z",
        **extra,
    }


@pytest.fixture
def room(client: httpx.Client) -> httpx.Client:
    """A room whose temperature was updated five times, one minute apart (10:00 to 10:04)."""
    r = client.post(
        "/entities",
        json={"id": ROOM, "type": "Room", "temperature": reading(20, 0), "name": "R1"},
    )
    assert r.status_code == 201, r.text
    for minute in range(1, 5):
        r = client.patch(
            f"/entities/{ROOM}/attrs", json={"temperature": reading(20 + minute, minute)}
        )
        assert r.status_code == 204, r.text
    return client


def values(body: dict[str, Any], attr: str = "temperature") -> list[Any]:
    return [i["value"] for i in body[attr]]


def test_every_observed_update_is_kept_in_history(room: httpx.Client) -> None:
    """Each update with observedAt is one instance, oldest first, with an instanceId."""
    r = room.get(f"/temporal/entities/{ROOM}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == ROOM
    assert body["type"] == "Room"
    assert values(body) == [20, 21, 22, 23, 24]
    assert all(i["instanceId"].startswith("urn:") for i in body["temperature"])
    assert body["temperature"][0]["observedAt"] == "2026-01-01T10:00:00Z"
    assert body["temperature"][0]["unitCode"] == "CEL"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"timerel": "before", "timeAt": "2026-01-01T10:02:00Z"}, [20, 21]),
        ({"timerel": "after", "timeAt": "2026-01-01T10:02:00Z"}, [22, 23, 24]),
        (
            {
                "timerel": "between",
                "timeAt": "2026-01-01T10:01:00Z",
                "endTimeAt": "2026-01-01T10:03:00Z",
            },
            [21, 22],
        ),
        ({"lastN": "2"}, [23, 24]),
        ({"timerel": "before", "timeAt": "2026-01-01T12:02:00+02:00"}, [20, 21]),
        ({"timerel": "after", "timeAt": "2026-01-01T10:01:00Z", "lastN": "1"}, [24]),
    ],
)
def test_time_windows_and_last_n(
    room: httpx.Client, params: dict[str, str], expected: list[int]
) -> None:
    """timerel before/after/between, timeAt with offsets, and lastN select the right instances."""
    r = room.get(f"/temporal/entities/{ROOM}", params=params)
    assert r.status_code == 200, r.text
    assert values(r.json()) == expected


def test_temporal_values_representation(room: httpx.Client) -> None:
    """options=temporalValues gives [value, observedAt] pairs (4.5.9)."""
    r = room.get(f"/temporal/entities/{ROOM}", params={"options": "temporalValues", "lastN": "2"})
    assert r.status_code == 200, r.text
    assert r.json()["temperature"] == {
        "type": "Property",
        "values": [[23, "2026-01-01T10:03:00Z"], [24, "2026-01-01T10:04:00Z"]],
    }
    same = room.get(f"/temporal/entities/{ROOM}", params={"format": "temporalValues", "lastN": "2"})
    assert same.json()["temperature"] == r.json()["temperature"]


def test_attrs_projection(room: httpx.Client) -> None:
    """attrs limits the attributes returned."""
    r = room.get(f"/temporal/entities/{ROOM}", params={"attrs": "name"})
    assert r.status_code == 200, r.text
    assert "temperature" not in r.json()


def test_query_temporal_by_type(room: httpx.Client) -> None:
    """GET /temporal/entities?type= returns the temporal representation of every match."""
    room.post(
        "/entities",
        json={"id": "urn:ngsi-ld:Room:t2", "type": "Room", "temperature": reading(5, 0)},
    )
    r = room.get(
        "/temporal/entities",
        params={"type": "Room", "timerel": "after", "timeAt": "2026-01-01T10:03:00Z"},
    )
    assert r.status_code == 200, r.text
    got = {e["id"]: values(e) if "temperature" in e else [] for e in r.json()}
    assert got == {ROOM: [23, 24], "urn:ngsi-ld:Room:t2": []}
    assert room.get("/temporal/entities").status_code == 400


@pytest.mark.parametrize(
    "params",
    [
        {"timerel": "during", "timeAt": "2026-01-01T10:00:00Z"},
        {"timerel": "before"},
        {"timerel": "between", "timeAt": "2026-01-01T10:00:00Z"},
        {
            "timerel": "between",
            "timeAt": "2026-01-01T10:00:00Z",
            "endTimeAt": "2026-01-01T09:00:00Z",
        },
        {"timerel": "after", "timeAt": "yesterday"},
        {"lastN": "0"},
        {"lastN": "ten"},
        {"timeproperty": "seenAt"},
        {"timeAt": "2026-01-01T10:00:00Z"},
        {"options": "keyValues"},
    ],
)
def test_bad_temporal_parameters_are_bad_request_data(
    room: httpx.Client, params: dict[str, str]
) -> None:
    """Malformed timerel/timeAt/endTimeAt/lastN/timeproperty are 400 BadRequestData."""
    r = room.get(f"/temporal/entities/{ROOM}", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == ERR + "BadRequestData"


def test_unknown_entity_is_404(client: httpx.Client) -> None:
    """Temporal retrieval of a missing entity is ResourceNotFound."""
    client.post("/entities", json={"id": "urn:ngsi-ld:Room:other", "type": "Room"})
    r = client.get("/temporal/entities/urn:ngsi-ld:Room:none")
    assert r.status_code == 404
    assert r.json()["type"] == ERR + "ResourceNotFound"


def test_create_and_add_temporal_instances(client: httpx.Client) -> None:
    """POST /temporal/entities creates from instance arrays; POST .../attrs adds instances."""
    doc = {
        "id": "urn:ngsi-ld:Meter:m1",
        "type": "Meter",
        "power": [reading(1, 0), reading(3, 2), reading(2, 1)],
    }
    r = client.post("/temporal/entities", json=doc)
    assert r.status_code == 201, r.text
    assert client.post("/temporal/entities", json=doc).status_code == 204
    r = client.post(
        "/temporal/entities/urn:ngsi-ld:Meter:m1/attrs", json={"power": [reading(9, 9)]}
    )
    assert r.status_code == 204, r.text
    hist = client.get("/temporal/entities/urn:ngsi-ld:Meter:m1").json()
    # The second POST repeated the same three instances: stored once (a client's retry adds
    # nothing, as a redelivered reading does not: city_platform/storage/repeats.py).
    assert values(hist, "power") == [1, 2, 3, 9]
    # The newest instance (10:09) is the entity's current value.
    current = client.get("/entities/urn:ngsi-ld:Meter:m1", params={"options": "keyValues"})
    assert current.json()["power"] == 9
    missing = client.post("/temporal/entities/urn:ngsi-ld:Meter:none/attrs", json={"power": 1})
    assert missing.status_code == 404


def test_modify_and_delete_instances(room: httpx.Client) -> None:
    """PATCH and DELETE of one instance by instanceId; deleting an attribute's history."""
    first = room.get(f"/temporal/entities/{ROOM}").json()["temperature"][0]
    url = f"/temporal/entities/{ROOM}/attrs/temperature/{first['instanceId']}"
    r = room.patch(url, json={"temperature": reading(-5, 0)})
    assert r.status_code == 204, r.text
    assert values(room.get(f"/temporal/entities/{ROOM}").json())[0] == -5
    assert room.delete(url).status_code == 204
    assert values(room.get(f"/temporal/entities/{ROOM}").json()) == [21, 22, 23, 24]
    r = room.delete(url)
    assert r.status_code == 404
    assert r.json()["type"] == ERR + "ResourceNotFound"
    assert room.delete(f"/temporal/entities/{ROOM}/attrs/temperature").status_code == 204
    assert "temperature" not in room.get(f"/temporal/entities/{ROOM}").json()
    assert room.delete(f"/temporal/entities/{ROOM}").status_code == 204
    assert room.get(f"/entities/{ROOM}").status_code == 404


def test_history_is_isolated_per_tenant(room: httpx.Client, platform: Any) -> None:
    """Another tenant sees neither the entity nor its history."""
    other = httpx.Client(base_url=room.base_url, headers={"NGSILD-Tenant": "someone-else"})
    other.post("/entities", json={"id": "urn:ngsi-ld:X:1", "type": "X"})
    r = other.get(f"/temporal/entities/{ROOM}")
    assert r.status_code == 404
