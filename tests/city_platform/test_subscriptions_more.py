"""Subscriptions beyond the basics, against a real platform and a real receiver (CIM 009 5.8,
5.11, 5.2.12 Subscription, 5.2.14 NotificationParams): periodic subscriptions, every
notificationTrigger, showChanges, the notification formats, sysAttrs, the endpoint's accept
and receiverInfo, and the subscription's own validity (id, expiresAt, isActive)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.city_platform.receiver import Receiver
from tests.conftest import PlatformProcess, free_port

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
NULL = "urn:ngsi-ld:null"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def sub(url: str, *, watched: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "Subscription",
        "entities": [{"type": "Room"}],
        "notification": {"endpoint": {"uri": url, "accept": "application/json"}},
    }
    if watched is not None:
        doc["watchedAttributes"] = watched
    notification = extra.pop("notification", {})
    doc["notification"].update(notification)
    doc.update(extra)
    return doc


def room(n: int, temperature: float = 20, **extra: Any) -> dict[str, Any]:
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


def problem(r: httpx.Response, status: int, kind: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["type"] == ERR + kind, r.text


def quiet(receiver: Receiver, count: int, wait: float = 0.5) -> None:
    """No more than ``count`` notifications arrive within ``wait`` seconds."""
    time.sleep(wait)
    assert len(receiver.received) == count, receiver.received


def in_seconds(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- periodic subscriptions (5.2.12 timeInterval) -------------------------------------------


def test_periodic_subscription_notifies_the_matching_entities_every_interval(
    client: httpx.Client, receiver: Receiver
) -> None:
    """timeInterval=1: about one notification a second with every matching entity, whether
    or not anything changed; deleting the subscription stops them."""
    for n in (1, 2):
        assert client.post("/entities", json=room(n, 20 + n)).status_code == 201
    client.post("/entities", json={**room(3), "type": "Office"})
    sub_id = subscribe(client, sub(receiver.url, timeInterval=1, q="temperature>20"))
    got = client.get(f"/subscriptions/{sub_id}").json()
    assert got["timeInterval"] == 1
    started = time.monotonic()
    deadline = started + 10
    while len(receiver.received) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    assert len(receiver.received) >= 3, receiver.received
    assert 1.5 < elapsed < 6, elapsed
    for note in receiver.received[:3]:
        assert note["subscriptionId"] == sub_id
        assert sorted(e["id"] for e in note["data"]) == ["urn:ngsi-ld:Room:1", "urn:ngsi-ld:Room:2"]
    # the current state, not the state at subscription time
    client.patch("/entities/urn:ngsi-ld:Room:1/attrs", json={"temperature": 30})
    seen = len(receiver.received)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        notes = receiver.received[seen:]
        values = [e["temperature"]["value"] for n in notes for e in n["data"]]
        if 30 in values:
            break
        time.sleep(0.05)
    assert 30 in values, receiver.received[seen:]
    assert client.delete(f"/subscriptions/{sub_id}").status_code == 204
    time.sleep(0.2)
    count = len(receiver.received)
    quiet(receiver, count, wait=1.6)


def test_periodic_subscription_without_matching_entities_sends_nothing(
    client: httpx.Client, receiver: Receiver
) -> None:
    """No matching entity at the tick: no (empty) notification; one appears once there is."""
    subscribe(client, sub(receiver.url, timeInterval=1))
    quiet(receiver, 0, wait=1.5)
    client.post("/entities", json=room(1))
    assert receiver.wait_for(1, timeout=5)[0]["id"] == "urn:ngsi-ld:Room:1"


def test_paused_periodic_subscription_is_silent(client: httpx.Client, receiver: Receiver) -> None:
    """isActive=false pauses a periodic subscription too."""
    client.post("/entities", json=room(1))
    sub_id = subscribe(client, sub(receiver.url, timeInterval=1, isActive=False))
    assert client.get(f"/subscriptions/{sub_id}").json()["status"] == "paused"
    quiet(receiver, 0, wait=1.5)
    assert client.patch(f"/subscriptions/{sub_id}", json={"isActive": True}).status_code == 204
    receiver.wait_for(1, timeout=5)


@pytest.mark.parametrize(
    "extra",
    [
        {"timeInterval": 5, "watchedAttributes": ["temperature"]},
        {"timeInterval": 5, "throttling": 2},
        {"timeInterval": 0},
        {"timeInterval": -3},
        {"timeInterval": "10"},
        {"timeInterval": True},
    ],
)
def test_invalid_periodic_subscriptions_are_400(
    client: httpx.Client, receiver: Receiver, extra: dict[str, Any]
) -> None:
    """timeInterval is a number of seconds >= 1 and excludes watchedAttributes (5.2.12)."""
    problem(client.post("/subscriptions", json=sub(receiver.url, **extra)), 400, "BadRequestData")


def test_update_cannot_make_a_watching_subscription_periodic(
    client: httpx.Client, receiver: Receiver
) -> None:
    """Adding timeInterval to a subscription with watchedAttributes is 400; without
    watchedAttributes it turns periodic."""
    watching = subscribe(
        client, sub(receiver.url, watched=["temperature"], entities=[{"type": "Office"}])
    )
    r = client.patch(f"/subscriptions/{watching}", json={"timeInterval": 1})
    problem(r, 400, "BadRequestData")
    plain = subscribe(client, sub(receiver.url, notificationTrigger=["entityDeleted"]))
    client.post("/entities", json=room(1))
    quiet(receiver, 0, wait=0.3)  # entityDeleted only: creation is not notified
    assert client.patch(f"/subscriptions/{plain}", json={"timeInterval": 1}).status_code == 204
    receiver.wait_for(1, timeout=5)


def test_periodic_subscription_survives_a_restart(tmp_path: Any, receiver: Receiver) -> None:
    """A stored periodic subscription keeps notifying after a restart."""
    proc = PlatformProcess(db=str(tmp_path / "p.db"))
    proc.start()
    try:
        with httpx.Client(base_url=proc.api) as c:
            c.post("/entities", json=room(1))
            subscribe(c, sub(receiver.url, timeInterval=1))
        proc.stop()
        receiver.received.clear()
        proc.start()
        assert receiver.wait_for(1, timeout=6)[0]["id"] == "urn:ngsi-ld:Room:1"
    finally:
        proc.stop()


# -- notificationTrigger (5.2.12) -----------------------------------------------------------


def test_entity_created_and_updated_triggers(client: httpx.Client, receiver: Receiver) -> None:
    """entityCreated fires on creation only; entityUpdated on any update of the entity."""
    created, updated = Receiver(), Receiver()
    try:
        subscribe(client, sub(created.url, notificationTrigger=["entityCreated"]))
        subscribe(client, sub(updated.url, notificationTrigger=["entityUpdated"]))
        client.post("/entities", json=room(1))
        assert created.wait_for(1)[0]["id"] == "urn:ngsi-ld:Room:1"
        client.patch("/entities/urn:ngsi-ld:Room:1/attrs", json={"humidity": 41})
        assert updated.wait_for(1)[0]["humidity"]["value"] == 41
        quiet(created, 1, wait=0.3)
        quiet(updated, 1, wait=0)
    finally:
        created.close()
        updated.close()


def test_attribute_deleted_notifies_the_ngsi_ld_null(
    client: httpx.Client, receiver: Receiver
) -> None:
    """attributeDeleted: the deleted attribute comes with the NGSI-LD Null as its value
    (ETSI 046_22_01/08); deleting an attribute that is not watched notifies nothing."""
    subscribe(
        client,
        sub(receiver.url, watched=["temperature"], notificationTrigger=["attributeDeleted"]),
    )
    client.post("/entities", json=room(1))
    client.delete("/entities/urn:ngsi-ld:Room:1/attrs/humidity")
    quiet(receiver, 0, wait=0.3)
    assert client.delete("/entities/urn:ngsi-ld:Room:1/attrs/temperature").status_code == 204
    got = receiver.wait_for(1)[0]
    assert got["id"] == "urn:ngsi-ld:Room:1"
    assert got["temperature"] == {"type": "Property", "value": NULL}


def test_attribute_deleted_in_key_values(client: httpx.Client, receiver: Receiver) -> None:
    """In keyValues the deleted attribute is the plain NGSI-LD Null."""
    doc = sub(
        receiver.url,
        notificationTrigger=["attributeDeleted"],
        notification={"format": "keyValues"},
    )
    subscribe(client, doc)
    client.post("/entities", json=room(1))
    client.delete("/entities/urn:ngsi-ld:Room:1/attrs/humidity")
    assert receiver.wait_for(1)[0] == {
        "id": "urn:ngsi-ld:Room:1",
        "type": "Room",
        "temperature": 20,
        "humidity": NULL,
    }


def test_attribute_deleted_one_dataset_instance(client: httpx.Client, receiver: Receiver) -> None:
    """Deleting one datasetId instance: the other instances and the deleted one as Null."""
    subscribe(client, sub(receiver.url, notificationTrigger=["attributeDeleted"]))
    doc = room(1)
    doc["temperature"] = [
        {"type": "Property", "value": 20},
        {"type": "Property", "value": 21, "datasetId": "urn:ngsi-ld:Dataset:b"},
    ]
    client.post("/entities", json=doc)
    r = client.delete(
        "/entities/urn:ngsi-ld:Room:1/attrs/temperature",
        params={"datasetId": "urn:ngsi-ld:Dataset:b"},
    )
    assert r.status_code == 204, r.text
    got = receiver.wait_for(1)[0]["temperature"]
    assert got == [
        {"type": "Property", "value": 20},
        {"type": "Property", "value": NULL, "datasetId": "urn:ngsi-ld:Dataset:b"},
    ]


def test_default_triggers_do_not_notify_deletions(client: httpx.Client, receiver: Receiver) -> None:
    """Without notificationTrigger (attributeCreated, attributeUpdated), deleting an
    attribute or the entity notifies nothing."""
    subscribe(client, sub(receiver.url))
    client.post("/entities", json=room(1))
    receiver.wait_for(1)
    client.delete("/entities/urn:ngsi-ld:Room:1/attrs/humidity")
    client.delete("/entities/urn:ngsi-ld:Room:1")
    quiet(receiver, 1)


def test_entity_deleted_notifies_id_type_and_deleted_at(
    client: httpx.Client, receiver: Receiver
) -> None:
    """entityDeleted: the notified entity has exactly id, type and deletedAt (ETSI 046_21)."""
    subscribe(client, sub(receiver.url, notificationTrigger=["entityDeleted"]))
    client.post("/entities", json=room(1))
    client.patch("/entities/urn:ngsi-ld:Room:1/attrs", json={"humidity": 41})
    quiet(receiver, 0, wait=0.3)
    assert client.delete("/entities/urn:ngsi-ld:Room:1").status_code == 204
    got = receiver.wait_for(1)[0]
    assert set(got) == {"id", "type", "deletedAt"}, got
    assert got["id"] == "urn:ngsi-ld:Room:1"
    assert got["type"] == "Room"


def test_attribute_deleted_by_entity_deletion(client: httpx.Client, receiver: Receiver) -> None:
    """attributeDeleted and the entity deleted: its watched attributes come as Null
    (ETSI 046_22_12); batch delete behaves the same."""
    subscribe(
        client,
        sub(receiver.url, watched=["temperature"], notificationTrigger=["attributeDeleted"]),
    )
    client.post("/entities", json=room(1))
    client.post("/entities", json=room(2))
    client.delete("/entities/urn:ngsi-ld:Room:1")
    got = receiver.wait_for(1)[0]
    assert got == {
        "id": "urn:ngsi-ld:Room:1",
        "type": "Room",
        "temperature": {"type": "Property", "value": NULL},
    }
    r = client.post("/entityOperations/delete", json=["urn:ngsi-ld:Room:2"])
    assert r.status_code == 204, r.text
    assert receiver.wait_for(2)[1]["temperature"]["value"] == NULL


# -- showChanges (5.2.14) -------------------------------------------------------------------


def test_show_changes_adds_the_previous_value(client: httpx.Client, receiver: Receiver) -> None:
    """showChanges: an updated Property carries previousValue, a Relationship previousObject;
    a created attribute none."""
    doc = sub(receiver.url, notification={"showChanges": True})
    sub_id = subscribe(client, doc)
    assert client.get(f"/subscriptions/{sub_id}").json()["notification"]["showChanges"] is True
    client.post(
        "/entities",
        json=room(1, inBuilding={"type": "Relationship", "object": "urn:ngsi-ld:Building:a"}),
    )
    first = receiver.wait_for(1)[0]
    assert "previousValue" not in first["temperature"]
    client.patch(
        "/entities/urn:ngsi-ld:Room:1/attrs",
        json={
            "temperature": {"type": "Property", "value": 25},
            "inBuilding": {"type": "Relationship", "object": "urn:ngsi-ld:Building:b"},
        },
    )
    second = receiver.wait_for(2)[1]
    assert second["temperature"]["value"] == 25
    assert second["temperature"]["previousValue"] == 20
    assert second["inBuilding"]["object"] == "urn:ngsi-ld:Building:b"
    assert second["inBuilding"]["previousObject"] == "urn:ngsi-ld:Building:a"
    assert "previousValue" not in second["humidity"]  # not changed by this update


def test_show_changes_in_concise(client: httpx.Client, receiver: Receiver) -> None:
    """In concise, a changed Property becomes {value, previousValue}."""
    subscribe(client, sub(receiver.url, notification={"showChanges": True, "format": "concise"}))
    client.post("/entities", json=room(1))
    receiver.wait_for(1)
    client.patch("/entities/urn:ngsi-ld:Room:1/attrs", json={"humidity": 45})
    got = receiver.wait_for(2)[1]
    assert got["humidity"] == {"value": 45, "previousValue": 40}


def test_show_changes_must_be_boolean(client: httpx.Client, receiver: Receiver) -> None:
    doc = sub(receiver.url, notification={"showChanges": "yes"})
    problem(client.post("/subscriptions", json=doc), 400, "BadRequestData")


# -- formats, sysAttrs, attributes, accept, receiverInfo (5.2.14, 5.2.15) --------------------


def test_concise_format(client: httpx.Client, receiver: Receiver) -> None:
    """format=concise: a Property with only a value is the value, others lose their type."""
    subscribe(client, sub(receiver.url, notification={"format": "concise"}))
    client.post("/entities", json=room(1))
    got = receiver.wait_for(1)[0]
    assert got["humidity"] == 40
    assert got["temperature"] == {"value": 20, "unitCode": "CEL"}


def test_sys_attrs_and_attribute_selection(client: httpx.Client, receiver: Receiver) -> None:
    """sysAttrs=true adds createdAt/modifiedAt; attributes keeps only the named ones."""
    doc = sub(receiver.url, notification={"sysAttrs": True, "attributes": ["humidity"]})
    subscribe(client, doc)
    client.post("/entities", json=room(1))
    got = receiver.wait_for(1)[0]
    assert "temperature" not in got
    assert {"createdAt", "modifiedAt"} <= set(got)
    assert {"createdAt", "modifiedAt"} <= set(got["humidity"])


def test_sys_attrs_must_be_boolean(client: httpx.Client, receiver: Receiver) -> None:
    doc = sub(receiver.url, notification={"sysAttrs": "true"})
    problem(client.post("/subscriptions", json=doc), 400, "BadRequestData")


def test_accept_and_receiver_info(client: httpx.Client, receiver: Receiver) -> None:
    """accept application/json: a Link header and no @context; application/ld+json: the
    @context in the body and no Link; receiverInfo key/value pairs become headers."""
    ld = Receiver()
    try:
        info = [{"key": "X-Auth-Token", "value": "abc"}]
        plain = sub(receiver.url)
        plain["notification"]["endpoint"]["receiverInfo"] = info
        subscribe(client, plain)
        doc = sub(ld.url)
        doc["notification"]["endpoint"]["accept"] = "application/ld+json"
        subscribe(client, doc)
        client.post("/entities", json=room(1))
        receiver.wait_for(1)
        ld.wait_for(1)
        assert "@context" not in receiver.received[0]
        assert 'rel="http://www.w3.org/ns/json-ld#context"' in receiver.headers[0]["link"]
        assert receiver.headers[0]["content-type"] == "application/json"
        assert receiver.headers[0]["x-auth-token"] == "abc"
        assert "@context" in ld.received[0]
        assert "link" not in ld.headers[0]
        assert ld.headers[0]["content-type"] == "application/ld+json"
    finally:
        ld.close()


# -- the subscription itself (5.2.12, 5.8.1) ------------------------------------------------


def test_subscription_id_must_be_a_uri(client: httpx.Client, receiver: Receiver) -> None:
    problem(
        client.post("/subscriptions", json=sub(receiver.url, id="not a uri")), 400, "BadRequestData"
    )


def test_expires_at_in_the_past_is_400(client: httpx.Client, receiver: Receiver) -> None:
    doc = sub(receiver.url, expiresAt="2020-01-01T00:00:00Z")
    problem(client.post("/subscriptions", json=doc), 400, "BadRequestData")


def test_expired_subscription_is_silent(client: httpx.Client, receiver: Receiver) -> None:
    """Once expiresAt is reached the status is expired and nothing is notified."""
    sub_id = subscribe(client, sub(receiver.url, expiresAt=in_seconds(1)))
    assert client.get(f"/subscriptions/{sub_id}").json()["status"] == "active"
    time.sleep(1.2)
    assert client.get(f"/subscriptions/{sub_id}").json()["status"] == "expired"
    client.post("/entities", json=room(1))
    quiet(receiver, 0)


def test_delivery_status_members(client: httpx.Client, receiver: Receiver) -> None:
    """NotificationParams on retrieve: status, timesSent, lastNotification, lastSuccess."""
    sub_id = subscribe(client, sub(receiver.url))
    note = client.get(f"/subscriptions/{sub_id}").json()["notification"]
    assert note["timesSent"] == 0
    assert "lastNotification" not in note
    assert "status" not in note  # no notification tried yet
    client.post("/entities", json=room(1))
    receiver.wait_for(1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        note = client.get(f"/subscriptions/{sub_id}").json()["notification"]
        if note["timesSent"] == 1:
            break
        time.sleep(0.05)
    assert note["timesSent"] == 1
    assert note["status"] == "ok"
    assert {"lastNotification", "lastSuccess"} <= set(note)


def test_scope_q_selects_the_notified_entities(client: httpx.Client, receiver: Receiver) -> None:
    """scopeQ (4.19) on a subscription: only entities in the scope are notified; a bad
    scopeQ is 400."""
    sub_id = subscribe(client, sub(receiver.url, scopeQ="/Madrid/#"))
    assert client.get(f"/subscriptions/{sub_id}").json()["scopeQ"] == "/Madrid/#"
    client.post("/entities", json=room(1, scope="/Paris"))
    client.post("/entities", json=room(2, scope="/Madrid/Centro"))
    got = receiver.wait_for(1)
    quiet(receiver, 1, wait=0.3)
    assert [e["id"] for e in got] == ["urn:ngsi-ld:Room:2"]
    r = client.post("/subscriptions", json=sub(receiver.url, scopeQ="Madrid"))
    assert 400 <= r.status_code < 500, r.text


# -- MQTT endpoints (5.2.15, the MQTT binding) ----------------------------------------------


@pytest.fixture
def mosquitto(tmp_path: Any) -> Iterator[int]:
    """A Mosquitto broker on [::1] (anonymous), for MQTT notification endpoints."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(exe):
        pytest.skip("mosquitto is not installed")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} ::1\nallow_anonymous true\n")
    proc = subprocess.Popen(
        [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("::1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


class MqttListener:
    """A paho client that records what arrives on one topic."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt  # noqa: PLC0415

        self.messages: list[dict[str, Any]] = []
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self._client.on_message = lambda _c, _u, msg: self.messages.append(json.loads(msg.payload))
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_a: subscribed.set()
        self._client.connect("::1", port)
        self._client.subscribe(topic, qos=2)
        self._client.loop_start()
        assert subscribed.wait(5), "MQTT subscription not acknowledged"

    def wait_for(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.messages) >= count, self.messages
        return self.messages

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@pytest.mark.parametrize(
    "notifier_info",
    [
        None,
        [{"key": "MQTT-Version", "value": "mqtt5.0"}, {"key": "MQTT-QoS", "value": "2"}],
        [{"key": "MQTT-Version", "value": "mqtt3.1.1"}, {"key": "MQTT-QoS", "value": 1}],
    ],
)
def test_mqtt_notification(
    client: httpx.Client, mosquitto: int, notifier_info: list[dict[str, Any]] | None
) -> None:
    """An mqtt:// endpoint gets {metadata: Content-Type, Link, receiverInfo, body:
    Notification} on its topic (ETSI 058_04), at each MQTT version and QoS (058_02/03)."""
    listener = MqttListener(mosquitto, "ngsild/notify")
    try:
        endpoint: dict[str, Any] = {
            "uri": f"mqtt://someone@[::1]:{mosquitto}/ngsild/notify",
            "accept": "application/json",
            "receiverInfo": [{"key": "test-receiver-key", "value": "test-receiver-info"}],
        }
        if notifier_info is not None:
            endpoint["notifierInfo"] = notifier_info
        doc = sub("http://unused", notification={"endpoint": endpoint})
        sub_id = subscribe(client, doc)
        client.post("/entities", json=room(1))
        message = listener.wait_for(1)[0]
        assert message["metadata"]["Content-Type"] == "application/json"
        assert "json-ld#context" in message["metadata"]["Link"]
        assert message["metadata"]["test-receiver-key"] == "test-receiver-info"
        assert message["body"]["type"] == "Notification"
        assert message["body"]["subscriptionId"] == sub_id
        assert message["body"]["data"][0]["id"] == "urn:ngsi-ld:Room:1"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            note = client.get(f"/subscriptions/{sub_id}").json()["notification"]
            if note.get("lastSuccess"):
                break
            time.sleep(0.05)
        assert note["status"] == "ok", note
        time.sleep(0.3)
        assert len(listener.messages) == 1
    finally:
        listener.close()


@pytest.mark.parametrize(
    "endpoint",
    [
        {"uri": "mqtt://[::1]:1883"},
        {"uri": "mqtt://[::1]:1883/"},
        {"uri": "mqtt://[::1]:1883/a/#"},
        {"uri": "mqtt://[::1]/t", "notifierInfo": [{"key": "MQTT-QoS", "value": "3"}]},
        {"uri": "mqtt://[::1]/t", "notifierInfo": [{"key": "MQTT-Version", "value": "mqtt4"}]},
        {"uri": "mqtt://[::1]/t", "notifierInfo": "MQTT-QoS=1"},
    ],
)
def test_bad_mqtt_endpoints_are_400(client: httpx.Client, endpoint: dict[str, Any]) -> None:
    doc = sub("http://unused", notification={"endpoint": endpoint})
    problem(client.post("/subscriptions", json=doc), 400, "BadRequestData")


def test_unreachable_mqtt_broker_counts_as_failed(client: httpx.Client) -> None:
    """A closed MQTT port: the notification fails after its tries and the status says so."""
    endpoint = {"uri": f"mqtt://[::1]:{free_port()}/t"}
    sub_id = subscribe(client, sub("http://unused", notification={"endpoint": endpoint}))
    client.post("/entities", json=room(1))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        note = client.get(f"/subscriptions/{sub_id}").json()["notification"]
        if note.get("status") == "failed":
            break
        time.sleep(0.1)
    assert note["status"] == "failed", note
    assert note["timesFailed"] == 1


def test_ngsi_ld_null_in_merge_and_replace_is_attribute_deleted(
    client: httpx.Client, receiver: Receiver
) -> None:
    """An attribute removed by Merge Entity with the NGSI-LD Null (5.6.17) or left out by
    Replace Entity (5.6.18) is attributeDeleted, not an update."""
    subscribe(client, sub(receiver.url, notificationTrigger=["attributeDeleted"]))
    client.post("/entities", json=room(1))
    r = client.patch("/entities/urn:ngsi-ld:Room:1", json={"humidity": NULL})
    assert r.status_code == 204, r.text
    got = receiver.wait_for(1)[0]
    assert got["humidity"] == {"type": "Property", "value": NULL}
    assert got["temperature"]["value"] == 20
    r = client.put("/entities/urn:ngsi-ld:Room:1", json={"type": "Room", "co2": 400})
    assert r.status_code == 204, r.text
    got = receiver.wait_for(2)[1]
    assert got["temperature"] == {"type": "Property", "value": NULL}
    assert got["co2"]["value"] == 400


def test_lang_picks_one_language_of_language_properties(
    client: httpx.Client, receiver: Receiver
) -> None:
    """lang (5.2.12, 4.15): a LanguageProperty is notified as a Property in the best
    language, with lang naming it; a bad lang is 400."""
    sub_id = subscribe(client, sub(receiver.url, lang="fr,en;q=0.5"))
    assert client.get(f"/subscriptions/{sub_id}").json()["lang"] == "fr,en;q=0.5"
    name = {"type": "LanguageProperty", "languageMap": {"en": "Hall", "fr": "Salle"}}
    client.post("/entities", json=room(1, name=name))
    got = receiver.wait_for(1)[0]
    assert got["name"] == {"type": "Property", "value": "Salle", "lang": "fr"}
    bad = sub(receiver.url, lang="fr;q=7")
    problem(client.post("/subscriptions", json=bad), 400, "BadRequestData")


def test_read_only_members_are_ignored_and_csf_is_checked(
    client: httpx.Client, receiver: Receiver
) -> None:
    """Table 5.2.12-2: status and timesSent from the client are ignored (ETSI 5811_02_04);
    csf must be a valid query (4.9), else 400 (5811_02_03); the six triggers are accepted
    together and an unknown one is 400 (5811_02_01/02)."""
    doc = sub(receiver.url, status="expired", csf="brandName==Mercedes")
    doc["notification"]["timesSent"] = 42
    doc["__context"] = "http://localhost:1111/hijacked.jsonld"
    sub_id = subscribe(client, doc)
    r = client.get(f"/subscriptions/{sub_id}")
    assert "hijacked" not in r.text
    got = r.json()
    assert got["status"] == "active"
    assert got["notification"]["timesSent"] == 0
    assert got["csf"] == "brandName==Mercedes"
    problem(client.post("/subscriptions", json=sub(receiver.url, csf="((")), 400, "BadRequestData")
    every = sub(
        receiver.url,
        notificationTrigger=[
            "entityCreated",
            "entityUpdated",
            "entityDeleted",
            "attributeCreated",
            "attributeUpdated",
            "attributeDeleted",
        ],
    )
    subscribe(client, every)
    bad = sub(receiver.url, notificationTrigger=["entityChanged"])
    problem(client.post("/subscriptions", json=bad), 400, "BadRequestData")


def test_query_subscriptions_pages_with_links(client: httpx.Client, receiver: Receiver) -> None:
    """Query Subscriptions (5.8.4) pages with limit/offset, prev/next Link headers (5.5.9,
    ETSI 031_02) and NGSILD-Results-Count."""
    ids = [subscribe(client, sub(receiver.url, description=str(n))) for n in range(3)]
    r = client.get("/subscriptions", params={"limit": 1, "offset": 1, "count": "true"})
    assert r.status_code == 200, r.text
    assert [s["id"] for s in r.json()] == [ids[1]]
    assert r.headers["NGSILD-Results-Count"] == "3"
    link = r.headers["Link"]
    assert '</ngsi-ld/v1/subscriptions?limit=1&offset=0&count=true>; rel="prev"' in link
    assert '</ngsi-ld/v1/subscriptions?limit=1&offset=2&count=true>; rel="next"' in link
    last = client.get("/subscriptions", params={"limit": 1, "offset": 2}).headers["Link"]
    assert 'rel="prev"' in last
    assert 'rel="next"' not in last
    everything = client.get("/subscriptions", params={"limit": 15})
    assert len(everything.json()) == 3
    assert 'rel="next"' not in everything.headers.get("Link", "")
    assert 'rel="prev"' not in everything.headers.get("Link", "")


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_a_subscription_id_that_is_not_a_uri_is_400(client: httpx.Client, method: str) -> None:
    """Retrieve, update and delete with an id that is not a URI: 400 BadRequestData (ETSI
    030_01); an unknown URI stays 404 (030_02, 032_02)."""
    body = {"description": "x"} if method == "PATCH" else None
    r = client.request(method, "/subscriptions/InvalidUri", json=body)
    problem(r, 400, "BadRequestData")
    r = client.request(method, "/subscriptions/urn:ngsi-ld:Subscription:unknown", json=body)
    problem(r, 404, "ResourceNotFound")


def test_an_expired_subscription_stays_expired_when_paused(
    client: httpx.Client, receiver: Receiver
) -> None:
    """5.8.2.4 (ETSI 029_09): isActive=false makes the status paused unless it is expired;
    a new expiresAt in the future and isActive=true make it active again."""
    sub_id = subscribe(client, sub(receiver.url, expiresAt=in_seconds(1)))
    time.sleep(1.2)
    assert client.patch(f"/subscriptions/{sub_id}", json={"isActive": False}).status_code == 204
    assert client.get(f"/subscriptions/{sub_id}").json()["status"] == "expired"
    fragment = {"isActive": True, "expiresAt": in_seconds(60)}
    assert client.patch(f"/subscriptions/{sub_id}", json=fragment).status_code == 204
    assert client.get(f"/subscriptions/{sub_id}").json()["status"] == "active"


def test_a_one_url_context_array_is_named_as_is(client: httpx.Client, receiver: Receiver) -> None:
    """A subscription made with "@context": ["<url>"] notifies with that URL in its Link
    header (ETSI 046_10), not with a stored copy's."""
    r = client.post("/jsonldContexts", json={"@context": {"warmth": "https://example.org/t"}})
    assert r.status_code == 201, r.text
    url = r.headers["Location"]
    if url.startswith("/"):
        url = str(client.base_url).split("/ngsi-ld/")[0] + url
    doc = {**sub(receiver.url, watched=["warmth"]), "@context": [url]}
    r = client.post(
        "/subscriptions", content=json.dumps(doc), headers={"Content-Type": "application/ld+json"}
    )
    assert r.status_code == 201, r.text
    client.post(
        "/entities",
        json={
            "id": "urn:ngsi-ld:Room:1",
            "type": "Room",
            "warmth": {"type": "Property", "value": 1},
        },
        headers={"Link": f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"'},
    )
    receiver.wait_for(1)
    assert receiver.headers[0]["link"].startswith(f"<{url}>"), receiver.headers[0]["link"]
    assert receiver.received[0]["data"][0]["warmth"]["value"] == 1


@pytest.mark.parametrize("how", ["inline", "flat"])
def test_join_in_notifications(client: httpx.Client, receiver: Receiver, how: str) -> None:
    """notification.join (5.2.14, 4.5.23): inline puts the linked entity in the
    Relationship's entity member (ETSI 046_30), flat adds it to the notified data."""
    city = {
        "id": "urn:ngsi-ld:City:paris",
        "type": "City",
        "name": {"type": "Property", "value": "Paris"},
    }
    assert client.post("/entities", json=city).status_code == 201
    doc = sub(receiver.url, notification={"join": how, "joinLevel": 1})
    sub_id = subscribe(client, doc)
    got = client.get(f"/subscriptions/{sub_id}").json()["notification"]
    assert (got["join"], got["joinLevel"]) == (how, 1)
    linked = {"type": "Relationship", "object": "urn:ngsi-ld:City:paris"}
    client.post("/entities", json=room(1, locatedAt=linked))
    data = receiver.wait_for(1)
    room_doc = next(e for e in data if e["id"] == "urn:ngsi-ld:Room:1")
    if how == "inline":
        assert room_doc["locatedAt"]["entity"]["name"]["value"] == "Paris"
        assert len(data) == 1
    else:
        assert "entity" not in room_doc["locatedAt"]
        assert [e["id"] for e in data] == ["urn:ngsi-ld:Room:1", "urn:ngsi-ld:City:paris"]


def test_bad_join_is_400(client: httpx.Client, receiver: Receiver) -> None:
    for notification in ({"join": "deep"}, {"join": "inline", "joinLevel": 0}):
        doc = sub(receiver.url, notification=notification)
        problem(client.post("/subscriptions", json=doc), 400, "BadRequestData")


def test_entity_updated_notifies_deleted_attributes_too(
    client: httpx.Client, receiver: Receiver
) -> None:
    """entityUpdated is attributeCreated + attributeUpdated + attributeDeleted (5.2.12):
    a deleted attribute comes as the NGSI-LD Null; showChanges with keyValues is 400."""
    subscribe(client, sub(receiver.url, notificationTrigger=["entityUpdated"]))
    client.post("/entities", json=room(1))
    client.delete("/entities/urn:ngsi-ld:Room:1/attrs/humidity")
    got = receiver.wait_for(1)[0]
    assert got["humidity"] == {"type": "Property", "value": NULL}
    doc = sub(receiver.url, notification={"format": "keyValues", "showChanges": True})
    problem(client.post("/subscriptions", json=doc), 400, "BadRequestData")


def test_show_changes_on_a_deletion(client: httpx.Client, receiver: Receiver) -> None:
    """showChanges on a deletion (5.2.14): the NGSI-LD Null with the value before."""
    doc = sub(
        receiver.url, notificationTrigger=["attributeDeleted"], notification={"showChanges": True}
    )
    subscribe(client, doc)
    client.post("/entities", json=room(1))
    client.delete("/entities/urn:ngsi-ld:Room:1/attrs/humidity")
    got = receiver.wait_for(1)[0]
    assert got["humidity"] == {"type": "Property", "value": NULL, "previousValue": 40}


def test_pick_and_omit_in_notifications(client: httpx.Client, receiver: Receiver) -> None:
    """notification.pick / omit (5.2.14, 4.21) project the notified entities; pick with omit
    or with attributes, or a bad projection, is 400."""
    picked, omitted = Receiver(), Receiver()
    try:
        subscribe(client, sub(picked.url, notification={"pick": ["id", "temperature"]}))
        subscribe(client, sub(omitted.url, notification={"omit": ["humidity", "type"]}))
        client.post("/entities", json=room(1))
        assert picked.wait_for(1)[0] == {
            "id": "urn:ngsi-ld:Room:1",
            "temperature": {"type": "Property", "value": 20, "unitCode": "CEL"},
        }
        assert set(omitted.wait_for(1)[0]) == {"id", "temperature"}
    finally:
        picked.close()
        omitted.close()
    for notification in (
        {"pick": ["id"], "omit": ["type"]},
        {"pick": ["temperature"], "attributes": ["temperature"]},
        {"pick": ["id;name"]},
        {"pick": []},
    ):
        doc = sub(receiver.url, notification=notification)
        problem(client.post("/subscriptions", json=doc), 400, "BadRequestData")


class SlowReceiver(Receiver):
    """Answers each notification after ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        handler = self._server.RequestHandlerClass
        original = handler.do_POST  # type: ignore[attr-defined]

        def slow(this: Any) -> None:
            time.sleep(delay)
            original(this)

        handler.do_POST = slow  # type: ignore[attr-defined]


def wait_status(client: httpx.Client, sub_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        note: dict[str, Any] = client.get(f"/subscriptions/{sub_id}").json()["notification"]
        if note.get("status") == status:
            return note
        time.sleep(0.05)
    raise AssertionError(f"status never {status}: {note}")


def test_endpoint_timeout(client: httpx.Client) -> None:
    """endpoint.timeout (5.2.15, ms): an endpoint slower than it counts as failed."""
    slow = SlowReceiver(1.0)
    try:
        endpoint = {"uri": slow.url, "timeout": 200}
        sub_id = subscribe(client, sub("http://unused", notification={"endpoint": endpoint}))
        assert (
            client.get(f"/subscriptions/{sub_id}").json()["notification"]["endpoint"]["timeout"]
            == 200
        )
        client.post("/entities", json=room(1))
        note = wait_status(client, sub_id, "failed")
        assert note["timesFailed"] == 1
    finally:
        slow.close()
    bad = sub("http://unused", notification={"endpoint": {"uri": "http://x", "timeout": -1}})
    problem(client.post("/subscriptions", json=bad), 400, "BadRequestData")


def test_endpoint_cooldown(client: httpx.Client) -> None:
    """endpoint.cooldown (5.2.15, ms): after a failure nothing is sent until it has passed."""
    failing = Receiver(status=500)
    try:
        endpoint = {"uri": failing.url, "cooldown": 60_000}
        sub_id = subscribe(client, sub("http://unused", notification={"endpoint": endpoint}))
        client.post("/entities", json=room(1))
        wait_status(client, sub_id, "failed")
        tries = len(failing.received)
        client.patch("/entities/urn:ngsi-ld:Room:1/attrs", json={"temperature": 30})
        time.sleep(0.5)
        assert len(failing.received) == tries  # within the cooldown: not sent
        assert client.get(f"/subscriptions/{sub_id}").json()["notification"]["timesSent"] == 1
    finally:
        failing.close()


@pytest.mark.parametrize("prefer_json", [False, True])
def test_geojson_notifications(client: httpx.Client, receiver: Receiver, prefer_json: bool) -> None:
    """accept application/geo+json (5.2.15): data is a FeatureCollection with each entity's
    location as geometry and the @context, none with receiverInfo Prefer: body=json."""
    endpoint: dict[str, Any] = {"uri": receiver.url, "accept": "application/geo+json"}
    if prefer_json:
        endpoint["receiverInfo"] = [{"key": "Prefer", "value": "body=json"}]
    subscribe(client, sub("http://unused", notification={"endpoint": endpoint}))
    point = {"type": "Point", "coordinates": [6.14, 46.2]}
    client.post("/entities", json=room(1, location={"type": "GeoProperty", "value": point}))
    deadline = time.monotonic() + 10
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.02)
    note = receiver.received[0]
    assert receiver.headers[0]["content-type"] == "application/geo+json"
    data = note["data"]
    assert data["type"] == "FeatureCollection"
    assert data["features"][0]["id"] == "urn:ngsi-ld:Room:1"
    assert data["features"][0]["geometry"] == point
    assert data["features"][0]["properties"]["temperature"]["value"] == 20
    assert ("@context" in data) is not prefer_json


def test_jsonld_context_member_is_used_for_notifications(
    client: httpx.Client, receiver: Receiver
) -> None:
    """jsonldContext (5.2.12, ETSI 046_20): notifications are compacted with it and name it
    in their Link header; it must be a URI."""
    r = client.post("/jsonldContexts", json={"@context": {"warmth": "https://example.org/t"}})
    assert r.status_code == 201, r.text
    url = r.headers["Location"]
    if url.startswith("/"):
        url = str(client.base_url).split("/ngsi-ld/")[0] + url
    doc = sub(receiver.url, watched=["https://example.org/t"], jsonldContext=url)
    sub_id = subscribe(client, doc)
    assert client.get(f"/subscriptions/{sub_id}").json()["jsonldContext"] == url
    client.post(
        "/entities", json={**room(1), "https://example.org/t": {"type": "Property", "value": 3}}
    )
    got = receiver.wait_for(1)[0]
    assert got["warmth"]["value"] == 3
    assert receiver.headers[0]["link"].startswith(f"<{url}>")
    bad = sub(receiver.url, jsonldContext="not a uri")
    problem(client.post("/subscriptions", json=bad), 400, "BadRequestData")


def test_dataset_id_selects_the_notified_instances(
    client: httpx.Client, receiver: Receiver
) -> None:
    """datasetId (v1.8.1 5.2.12, 4.5.5): only those instances are notified, @none the
    default one; not a URI is 400."""
    subscribe(client, sub(receiver.url, datasetId=["urn:ngsi-ld:Dataset:b"]))
    doc = room(1)
    doc["temperature"] = [
        {"type": "Property", "value": 20},
        {"type": "Property", "value": 21, "datasetId": "urn:ngsi-ld:Dataset:b"},
    ]
    client.post("/entities", json=doc)
    got = receiver.wait_for(1)[0]
    assert got["temperature"] == {
        "type": "Property",
        "value": 21,
        "datasetId": "urn:ngsi-ld:Dataset:b",
    }
    assert "humidity" not in got
    bad = sub(receiver.url, datasetId=["not a uri"])
    problem(client.post("/subscriptions", json=bad), 400, "BadRequestData")


def test_local_only_is_kept_and_temporal_q_is_422(client: httpx.Client, receiver: Receiver) -> None:
    sub_id = subscribe(client, sub(receiver.url, localOnly=True))
    assert client.get(f"/subscriptions/{sub_id}").json()["localOnly"] is True
    problem(
        client.post("/subscriptions", json=sub(receiver.url, localOnly="yes")),
        400,
        "BadRequestData",
    )
    r = client.post("/subscriptions", json=sub(receiver.url, temporalQ={"timerel": "after"}))
    problem(r, 422, "OperationNotSupported")


def test_update_with_another_type_is_bad_request(client: httpx.Client, receiver: Receiver) -> None:
    """5.8.2: a fragment's type, when given, is Subscription; null or another is 400."""
    sid = subscribe(client, sub(receiver.url))
    for kind in (None, "Entity"):
        r = client.patch(f"/subscriptions/{sid}", json={"type": kind, "isActive": False})
        problem(r, 400, "BadRequestData")
    ok = {"type": "Subscription", "isActive": False}
    assert client.patch(f"/subscriptions/{sid}", json=ok).status_code == 204
