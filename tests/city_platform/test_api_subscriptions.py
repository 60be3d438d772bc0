"""Subscriptions and notifications against a real platform and a real receiver (CIM 009 5.8)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.city_platform.receiver import Receiver
from tests.conftest import PlatformProcess

ERR = "https://uri.etsi.org/ngsi-ld/errors/"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def subscription(url: str, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "Subscription",
        "entities": [{"type": "Room"}],
        "watchedAttributes": ["temperature"],
        "notification": {"endpoint": {"uri": url, "accept": "application/json"}},
    }
    doc.update(extra)
    return doc


def room(n: int, temperature: float, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:Room:{n}",
        "type": "Room",
        "temperature": {"type": "Property", "value": temperature, "unitCode": "CEL"},
        "humidity": {"type": "Property", "value": 40},
        **extra,
    }


def subscribe(client: httpx.Client, doc: dict[str, Any]) -> str:
    r = client.post("/subscriptions", json=doc)
    assert r.status_code == 201, r.text
    location: str = r.headers["Location"]
    return location.rsplit("/", 1)[1]


def test_subscription_crud(client: httpx.Client, receiver: Receiver) -> None:
    """Create (201 + Location), retrieve, list, update (204), delete (204), then 404."""
    doc = subscription(receiver.url, id="urn:ngsi-ld:Subscription:crud", description="d")
    sub_id = subscribe(client, doc)
    assert sub_id == "urn:ngsi-ld:Subscription:crud"
    got = client.get(f"/subscriptions/{sub_id}").json()
    assert got["entities"] == [{"type": "Room"}]
    assert got["watchedAttributes"] == ["temperature"]
    assert got["status"] == "active"
    assert got["notification"]["format"] == "normalized"
    assert client.post("/subscriptions", json=doc).status_code == 409
    assert [s["id"] for s in client.get("/subscriptions").json()] == [sub_id]
    r = client.patch(f"/subscriptions/{sub_id}", json={"description": "e", "isActive": False})
    assert r.status_code == 204, r.text
    got = client.get(f"/subscriptions/{sub_id}").json()
    assert got["description"] == "e"
    assert got["status"] == "paused"
    assert client.delete(f"/subscriptions/{sub_id}").status_code == 204
    r = client.get(f"/subscriptions/{sub_id}")
    assert r.status_code == 404
    assert r.json()["type"] == ERR + "ResourceNotFound"
    assert client.delete(f"/subscriptions/{sub_id}").status_code == 404


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        ({"type": "Thing"}, "BadRequestData"),
        ({"notification": {}}, "BadRequestData"),
        ({"notification": {"endpoint": {"uri": "not a url"}}}, "BadRequestData"),
        (
            {"notification": {"endpoint": {"uri": "http://[::1]:1/x"}, "format": "x"}},
            "BadRequestData",
        ),
        ({"entities": [{"id": "urn:x:1"}]}, "BadRequestData"),
        ({"watchedAttributes": []}, "BadRequestData"),
        ({"q": "temperature>>1"}, "InvalidRequest"),
        (
            {"geoQ": {"georel": "near", "geometry": "Point", "coordinates": [1, 2]}},
            "BadRequestData",
        ),
        ({"throttling": -1}, "BadRequestData"),
        ({"expiresAt": "tomorrow"}, "BadRequestData"),
        ({"timeInterval": 10}, "BadRequestData"),  # with watchedAttributes (5.2.12)
    ],
)
def test_invalid_subscriptions_are_rejected(
    client: httpx.Client, receiver: Receiver, change: dict[str, Any], kind: str
) -> None:
    """Each invalid member gives a 4xx ProblemDetails of the right type."""
    doc = subscription(receiver.url)
    doc.update(change)
    r = client.post("/subscriptions", json=doc)
    assert 400 <= r.status_code < 600, r.text
    assert r.json()["type"] == ERR + kind


def test_subscription_without_entities_or_watched_attributes_is_400(
    client: httpx.Client, receiver: Receiver
) -> None:
    """entities or watchedAttributes is mandatory."""
    doc = subscription(receiver.url)
    del doc["entities"]
    del doc["watchedAttributes"]
    r = client.post("/subscriptions", json=doc)
    assert r.status_code == 400
    assert r.json()["type"] == ERR + "BadRequestData"


def test_notification_on_watched_attribute_change(client: httpx.Client, receiver: Receiver) -> None:
    """A change of a watched attribute notifies with the entity; others do not."""
    sub_id = subscribe(client, subscription(receiver.url))
    assert client.post("/entities", json=room(1, 20)).status_code == 201
    first = receiver.wait_for(1)[0]
    assert first["id"] == "urn:ngsi-ld:Room:1"
    assert first["temperature"]["value"] == 20
    note = receiver.received[0]
    assert note["type"] == "Notification"
    assert note["subscriptionId"] == sub_id
    assert note["id"].startswith("urn:ngsi-ld:Notification:")
    assert "notifiedAt" in note
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in receiver.headers[0]["link"]
    # humidity is not watched: nothing; temperature is: one more.
    client.patch("/entities/urn:ngsi-ld:Room:1/attrs", json={"humidity": 50})
    client.patch("/entities/urn:ngsi-ld:Room:1/attrs", json={"temperature": 25})
    entities = receiver.wait_for(2)
    time.sleep(0.3)
    assert [e["temperature"]["value"] for e in receiver.entities()] == [20, 25]
    assert len(entities) == 2


def test_key_values_format_and_attribute_selection(
    client: httpx.Client, receiver: Receiver
) -> None:
    """notification.format=keyValues and notification.attributes shape the data."""
    doc = subscription(receiver.url)
    doc["notification"]["format"] = "keyValues"
    doc["notification"]["attributes"] = ["temperature"]
    subscribe(client, doc)
    client.post("/entities", json=room(2, 18))
    assert receiver.wait_for(1)[0] == {
        "id": "urn:ngsi-ld:Room:2",
        "type": "Room",
        "temperature": 18,
    }


def test_ld_json_notifications_carry_the_context(client: httpx.Client, receiver: Receiver) -> None:
    """accept=application/ld+json gives an @context in the body."""
    doc = subscription(receiver.url)
    doc["notification"]["endpoint"]["accept"] = "application/ld+json"
    subscribe(client, doc)
    client.post("/entities", json=room(3, 18))
    receiver.wait_for(1)
    assert receiver.headers[0]["content-type"] == "application/ld+json"
    assert "@context" in receiver.received[0]


def test_q_and_type_filters_suppress_notifications(
    client: httpx.Client, receiver: Receiver
) -> None:
    """Only entities of the subscribed type that satisfy q are notified."""
    subscribe(client, subscription(receiver.url, q="temperature>30"))
    client.post("/entities", json=room(4, 20))
    client.post("/entities", json={**room(5, 40), "type": "Office"})
    client.post("/entities", json=room(6, 35))
    got = receiver.wait_for(1)
    time.sleep(0.3)
    assert [e["id"] for e in receiver.entities()] == ["urn:ngsi-ld:Room:6"]
    assert got[0]["temperature"]["value"] == 35


def test_throttling_coalesces_changes(client: httpx.Client, receiver: Receiver) -> None:
    """With throttling, rapid changes arrive in fewer notifications, the last state included."""
    subscribe(client, subscription(receiver.url, throttling=1))
    client.post("/entities", json=room(7, 1))
    receiver.wait_for(1)
    for value in range(2, 7):
        client.patch("/entities/urn:ngsi-ld:Room:7/attrs", json={"temperature": value})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and receiver.entities()[-1]["temperature"]["value"] != 6:
        time.sleep(0.05)
    assert receiver.entities()[-1]["temperature"]["value"] == 6
    assert len(receiver.received) == 2


def test_tenants_do_not_see_each_others_changes(
    platform: Any, client: httpx.Client, receiver: Receiver
) -> None:
    """A subscription in one tenant is not triggered by changes in another."""
    subscribe(client, subscription(receiver.url))
    other = httpx.Client(
        base_url=platform.api, headers={"NGSILD-Tenant": client.headers["NGSILD-Tenant"] + "x"}
    )
    other.post("/entities", json=room(8, 20))
    assert other.get("/subscriptions").json() == []
    client.post("/entities", json=room(9, 20))
    receiver.wait_for(1)
    time.sleep(0.3)
    assert [e["id"] for e in receiver.entities()] == ["urn:ngsi-ld:Room:9"]


def test_delivery_status_after_success_and_failure(client: httpx.Client) -> None:
    """timesSent, lastSuccess / lastFailure and notification.status follow the deliveries."""
    good, bad = Receiver(), Receiver(status=500)
    try:
        ok_id = subscribe(client, subscription(good.url))
        bad_id = subscribe(client, subscription(bad.url))
        client.post("/entities", json=room(10, 20))
        good.wait_for(1)
        bad.wait_for(3)  # three tries in all
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            failed = client.get(f"/subscriptions/{bad_id}").json()["notification"]
            if failed.get("status") == "failed":
                break
            time.sleep(0.05)
        assert failed["status"] == "failed"
        assert "lastFailure" in failed
        assert failed["timesSent"] == 1
        ok = client.get(f"/subscriptions/{ok_id}").json()["notification"]
        assert ok["status"] == "ok"
        assert ok["timesSent"] == 1
        assert "lastSuccess" in ok
        assert "lastNotification" in ok
    finally:
        good.close()
        bad.close()


def test_dead_endpoint_does_not_hold_up_ingestion(client: httpx.Client, receiver: Receiver) -> None:
    """A subscription to a closed port: a 500-entity upsert succeeds, live endpoints get all."""
    dead = Receiver()
    dead_url = dead.url
    dead.close()
    subscribe(client, subscription(dead_url))
    subscribe(client, subscription(receiver.url))
    batch = [room(1000 + n, n) for n in range(500)]
    r = client.post("/entityOperations/upsert", json=batch)
    assert r.status_code == 201, r.text
    assert len(receiver.wait_for(500)) == 500


def test_subscriptions_survive_a_restart(tmp_path: Any, receiver: Receiver) -> None:
    """Subscriptions are stored: after a restart they still notify."""
    proc = PlatformProcess(db=str(tmp_path / "p.db"))
    proc.start()
    try:
        with httpx.Client(base_url=proc.api) as c:
            subscribe(c, subscription(receiver.url))
        proc.stop()
        proc.start()
        with httpx.Client(base_url=proc.api) as c:
            c.post("/entities", json=room(1, 21))
            assert receiver.wait_for(1)[0]["temperature"]["value"] == 21
    finally:
        proc.stop()
