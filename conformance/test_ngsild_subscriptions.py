"""R197-NGSILD-52..58: subscriptions and notifications - periodic subscriptions, the
notification triggers, showChanges, notification formats and media types, and the
subscription's own validity (ETSI GS CIM 009 V1.8.1 5.2.12, 5.2.14, 5.2.15, 5.8, 5.11).

Every case subscribes to its own uniquely named entity type (an IUT may be shared) and deletes
its subscriptions at the end.  Notifications go to a receiver on [::1].
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from conformance.model import case
from conformance.ngsild_common import Receiver, problem, unique

NULL = "urn:ngsi-ld:null"  # the NGSI-LD Null (CIM 009 4.5.x)
QUIET_S = 1.5  # how long a case waits to see that nothing is notified


def _sub(kind: str, url: str, **extra: Any) -> dict[str, Any]:
    notification = {"endpoint": {"uri": url, "accept": "application/json"}}
    notification.update(extra.pop("notification", {}))
    return {"type": "Subscription", "entities": [{"type": kind}],
            "notification": notification, **extra}  # fmt: skip


def _room(kind: str, n: int = 1, temperature: float = 20) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:{kind}:{n}",
        "type": kind,
        "temperature": {"type": "Property", "value": temperature},
        "humidity": {"type": "Property", "value": 40},
    }


@contextmanager
def _subscribed(api: httpx.Client, doc: dict[str, Any]) -> Iterator[str]:
    """Create the subscription (201 expected), yield its id, delete it afterwards."""
    r = api.post("/subscriptions", json=doc)
    assert r.status_code == 201, f"create subscription: {r.status_code} {r.text[:300]!r}"
    location = r.headers.get("Location", "")
    sub_id = location.rsplit("/", 1)[-1] or str(doc.get("id", ""))
    assert sub_id, "create subscription answered 201 without a Location"
    try:
        yield sub_id
    finally:
        api.delete(f"/subscriptions/{sub_id}")


def _created(api: httpx.Client, doc: dict[str, Any]) -> None:
    r = api.post("/entities", json=doc)
    assert r.status_code == 201, f"create entity: {r.status_code} {r.text[:300]!r}"


def _data(note: Any) -> list[dict[str, Any]]:
    """The notified entities of one notification, checked to be a Notification (5.3.1)."""
    assert isinstance(note, dict), f"notification is not a JSON object: {note!r:.300}"
    assert note.get("type") == "Notification", f"not a Notification: {note!r:.300}"
    data = note.get("data")
    assert isinstance(data, list), f"notification data is not an array: {note!r:.300}"
    assert all(isinstance(e, dict) for e in data), f"data holds non-objects: {note!r:.300}"
    return data


def _attr(entity: dict[str, Any], name: str) -> Any:
    assert name in entity, f"notified entity has no {name!r}: {entity!r:.300}"
    return entity[name]


@case("R197-NGSILD-52", "A periodic subscription (timeInterval) notifies the matching entities "
      "every interval, without any change", verifies=["CIM009-5.2.12-timeInterval"],
      theme="interoperability", pics=["ngsild.subscriptions", "ngsild.periodic-subscriptions"])  # fmt: skip
def test_periodic(api: httpx.Client) -> None:
    kind = unique("R197Per")
    _created(api, _room(kind))
    with Receiver() as rx, _subscribed(api, _sub(kind, rx.url, timeInterval=1)):
        started = time.monotonic()
        notes = rx.wait(3, timeout=12)
        elapsed = time.monotonic() - started
        assert elapsed >= 1.5, f"3 notifications within {elapsed:.2f} s with timeInterval=1"
        for note in notes:
            ids = [e.get("id") for e in _data(note)]
            assert ids == [f"urn:ngsi-ld:{kind}:1"], f"periodic notification data ids {ids}"


@case("R197-NGSILD-53", "timeInterval together with watchedAttributes is 400 BadRequestData",
      verifies=["CIM009-5.2.12-timeInterval-exclusive"], theme="interoperability",
      pics=["ngsild.subscriptions", "ngsild.periodic-subscriptions"])  # fmt: skip
def test_periodic_exclusive(api: httpx.Client) -> None:
    kind = unique("R197Per")
    doc = _sub(kind, "http://[::1]:9/notify", timeInterval=10, watchedAttributes=["temperature"])
    r = api.post("/subscriptions", json=doc)
    if r.status_code == 201:  # do not leave it behind on a wrong IUT
        api.delete(f"/subscriptions/{r.headers.get('Location', '').rsplit('/', 1)[-1]}")
    problem(r, 400, "BadRequestData")


@case("R197-NGSILD-54", "notificationTrigger attributeDeleted notifies a deleted attribute with "
      "the NGSI-LD Null; the default triggers do not notify deletions",
      verifies=["CIM009-5.2.12-notificationTrigger", "CIM009-5.11-deleted-attribute"],
      theme="interoperability", pics=["ngsild.subscriptions", "ngsild.triggers"])  # fmt: skip
def test_attribute_deleted(api: httpx.Client) -> None:
    kind = unique("R197Trg")
    doc = _room(kind)
    _created(api, doc)
    with Receiver() as rx, Receiver() as plain:
        watch = _sub(kind, rx.url, watchedAttributes=["temperature"],
                     notificationTrigger=["attributeDeleted"])  # fmt: skip
        with _subscribed(api, watch), _subscribed(api, _sub(kind, plain.url)):
            r = api.delete(f"/entities/{doc['id']}/attrs/humidity")  # not watched
            assert r.status_code == 204, f"delete humidity: {r.status_code} {r.text[:200]!r}"
            r = api.delete(f"/entities/{doc['id']}/attrs/temperature")
            assert r.status_code == 204, f"delete temperature: {r.status_code} {r.text[:200]!r}"
            data = _data(rx.wait(1)[0])
            assert [e.get("id") for e in data] == [doc["id"]], f"notified {data!r:.300}"
            temperature = _attr(data[0], "temperature")
            assert isinstance(temperature, dict), f"deleted attribute notified as {temperature!r}"
            assert temperature.get("value") == NULL, (
                f"deleted attribute notified as {temperature!r}, not with value {NULL}"
            )
            time.sleep(QUIET_S)
            assert len(rx.got) == 1, f"{len(rx.got)} notifications; humidity is not watched"
            assert plain.got == [], f"default triggers notified a deletion: {plain.got!r:.300}"


@case("R197-NGSILD-55", "entityCreated fires on creation only; entityDeleted notifies id, type "
      "and deletedAt", verifies=["CIM009-5.2.12-notificationTrigger", "CIM009-5.11-deleted-entity"],
      theme="interoperability", pics=["ngsild.subscriptions", "ngsild.triggers"])  # fmt: skip
def test_entity_triggers(api: httpx.Client) -> None:
    kind = unique("R197Trg")
    doc = _room(kind)
    with Receiver() as created, Receiver() as deleted:
        subs = (_sub(kind, created.url, notificationTrigger=["entityCreated"]),
                _sub(kind, deleted.url, notificationTrigger=["entityDeleted"]))  # fmt: skip
        with _subscribed(api, subs[0]), _subscribed(api, subs[1]):
            _created(api, doc)
            data = _data(created.wait(1)[0])
            assert [e.get("id") for e in data] == [doc["id"]], f"entityCreated sent {data!r:.300}"
            r = api.patch(f"/entities/{doc['id']}/attrs", json={"humidity": 41})
            assert r.status_code == 204, f"update: {r.status_code} {r.text[:200]!r}"
            r = api.delete(f"/entities/{doc['id']}")
            assert r.status_code == 204, f"delete entity: {r.status_code} {r.text[:200]!r}"
            gone = _data(deleted.wait(1)[0])
            assert len(gone) == 1, f"entityDeleted notified {gone!r:.300}"
            assert gone[0].get("id") == doc["id"], f"entityDeleted notified {gone!r:.300}"
            assert set(gone[0]) == {"id", "type", "deletedAt"}, (
                f"a deleted entity is notified with id, type and deletedAt only: {gone[0]!r:.300}"
            )
            time.sleep(QUIET_S)
            assert len(created.got) == 1, f"entityCreated fired {len(created.got)} times"
            assert len(deleted.got) == 1, f"entityDeleted fired {len(deleted.got)} times"


@case("R197-NGSILD-56", "showChanges adds the previous value of an updated attribute",
      verifies=["CIM009-5.2.14-showChanges"], theme="interoperability",
      pics=["ngsild.subscriptions", "ngsild.show-changes"])  # fmt: skip
def test_show_changes(api: httpx.Client) -> None:
    kind = unique("R197Chg")
    doc = _room(kind)
    _created(api, doc)
    with Receiver() as rx:
        sub = _sub(kind, rx.url, watchedAttributes=["temperature"],
                   notification={"showChanges": True})  # fmt: skip
        with _subscribed(api, sub):
            r = api.patch(f"/entities/{doc['id']}/attrs", json={"temperature": 25})
            assert r.status_code == 204, f"update: {r.status_code} {r.text[:200]!r}"
            data = _data(rx.wait(1)[0])
            temperature = _attr(data[0], "temperature")
            assert isinstance(temperature, dict), f"temperature notified as {temperature!r}"
            assert temperature.get("value") == 25, f"temperature notified as {temperature!r}"
            assert temperature.get("previousValue") == 20, (
                f"showChanges: previousValue 20 expected, got {temperature!r}"
            )


@case("R197-NGSILD-57", "Notification formats keyValues and concise; accept application/ld+json "
      "puts the @context in the body, application/json in a Link header",
      verifies=["CIM009-5.2.14-format", "CIM009-5.2.15-accept"], theme="interoperability",
      pics=["ngsild.subscriptions"])  # fmt: skip
def test_formats(api: httpx.Client) -> None:
    kind = unique("R197Fmt")
    with Receiver() as kv, Receiver() as concise:
        subs = (_sub(kind, kv.url, notification={"format": "keyValues"}),
                _sub(kind, concise.url, notification={"format": "concise"}))  # fmt: skip
        subs[1]["notification"]["endpoint"]["accept"] = "application/ld+json"
        with _subscribed(api, subs[0]), _subscribed(api, subs[1]):
            doc = _room(kind)
            _created(api, doc)
            simple = _data(kv.wait(1)[0])[0]
            assert simple == {"id": doc["id"], "type": kind, "temperature": 20, "humidity": 40}, (
                f"keyValues notification {simple!r:.300}"
            )
            link = {k.lower(): v for k, v in kv.headers[0].items()}.get("link", "")
            assert "http://www.w3.org/ns/json-ld#context" in link, f"Link header {link!r}"
            assert "@context" not in kv.got[0], "application/json notification has an @context"
            note = concise.wait(1)[0]
            got = _data(note)[0]
            assert got.get("humidity") == 40, f"concise notification {got!r:.300}"
            headers = {k.lower(): v for k, v in concise.headers[0].items()}
            assert headers.get("content-type", "").startswith("application/ld+json"), headers
            assert "@context" in note, "application/ld+json notification without @context"


@case("R197-NGSILD-58", "A non-URI subscription id is 400; a paused subscription (isActive "
      "false) reports status paused and notifies nothing until it is active again",
      verifies=["CIM009-5.8.1.4-id", "CIM009-5.2.12-status"], theme="interoperability",
      pics=["ngsild.subscriptions"])  # fmt: skip
def test_subscription_state(api: httpx.Client) -> None:
    kind = unique("R197Sta")
    r = api.post("/subscriptions", json=_sub(kind, "http://[::1]:9/n", id="not a uri"))
    problem(r, 400, "BadRequestData")
    with Receiver() as rx, _subscribed(api, _sub(kind, rx.url, isActive=False)) as sub_id:
        got = api.get(f"/subscriptions/{sub_id}")
        assert got.status_code == 200, f"retrieve: {got.status_code} {got.text[:200]!r}"
        try:
            body = got.json()
        except ValueError:
            raise AssertionError(f"retrieve answer is not JSON: {got.text[:200]!r}") from None
        status = body.get("status") if isinstance(body, dict) else None
        assert status == "paused", f"status of an inactive subscription: {status!r}"
        _created(api, _room(kind, 1))
        time.sleep(QUIET_S)
        assert rx.got == [], f"a paused subscription notified: {rx.got!r:.300}"
        r = api.patch(f"/subscriptions/{sub_id}", json={"isActive": True})
        assert r.status_code == 204, f"reactivate: {r.status_code} {r.text[:200]!r}"
        _created(api, _room(kind, 2))
        ids = [e.get("id") for e in _data(rx.wait(1)[0])]
        assert ids == [f"urn:ngsi-ld:{kind}:2"], f"after reactivation notified {ids}"
