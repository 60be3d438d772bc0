"""Context source registrations (CIM 009 5.9, 5.10), their subscriptions (5.11) and forwarded
reads (4.3.6), against real platforms on [::1]."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import pytest

from conformance.ngsild_common import LocalServer, QuietHandler
from tests.city_platform.receiver import Receiver
from tests.conftest import PlatformProcess, free_port

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
REGS = "/csourceRegistrations"
SUBS = "/csourceSubscriptions"


def problem(r: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["type"] == ERR + kind, body
    return body


def _kind() -> str:
    return "Csr" + uuid.uuid4().hex[:8]


def registration(kind: str, endpoint: str = "http://[::1]:9", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:ContextSourceRegistration:{uuid.uuid4().hex[:10]}",
        "type": "ContextSourceRegistration",
        "information": [
            {
                "entities": [{"type": kind}],
                "propertyNames": ["name", "height"],
                "relationshipNames": ["locatedAt"],
            }
        ],
        "endpoint": endpoint,
        **extra,
    }


def create(client: httpx.Client, doc: dict[str, Any]) -> str:
    r = client.post(REGS, json=doc)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/ngsi-ld/v1{REGS}/{quote(doc['id'], safe=':')}"
    return str(doc["id"])


def test_register_retrieve_delete(client: httpx.Client) -> None:
    """5.9.2, 5.10.1, 5.9.4: 201 + Location, defaults mode/operations, 409, 204, 404."""
    kind = _kind()
    doc = registration(kind, registrationName="r1", csourceColour="blue")
    reg_id = create(client, doc)
    got = client.get(f"{REGS}/{reg_id}").json()
    assert got["mode"] == "inclusive"
    assert got["operations"] == ["federationOps"]
    assert got["information"] == doc["information"]
    assert got["endpoint"] == "http://[::1]:9"
    assert got["registrationName"] == "r1"
    assert got["csourceColour"] == "blue"
    assert "createdAt" not in got
    got = client.get(f"{REGS}/{reg_id}", params={"options": "sysAttrs"}).json()
    assert {"createdAt", "modifiedAt"} <= set(got)
    problem(client.post(REGS, json=doc), 409, "AlreadyExists")
    # no id: one is generated and named in Location
    r = client.post(REGS, json={k: v for k, v in doc.items() if k != "id"})
    assert r.status_code == 201, r.text
    assert r.headers["Location"].startswith("/ngsi-ld/v1/csourceRegistrations/urn:ngsi-ld:")
    assert client.delete(f"{REGS}/{reg_id}").status_code == 204
    problem(client.get(f"{REGS}/{reg_id}"), 404, "ResourceNotFound")
    problem(client.delete(f"{REGS}/{reg_id}"), 404, "ResourceNotFound")
    problem(client.get(f"{REGS}/not-a-uri"), 400, "BadRequestData")


@pytest.mark.parametrize(
    "change",
    [
        {"information": None},
        {"information": []},
        {"information": [{"entities": [{"id": "urn:x:1"}]}]},  # EntityInfo without type
        {"information": [{"entities": [{"type": "A", "idPattern": "("}]}]},
        {"endpoint": None},
        {"endpoint": "not a url"},
        {"type": "Registration"},
        {"mode": "sometimes"},
        {"operations": []},
        {"expiresAt": "2001-01-01T00:00:00Z"},  # in the past (ETSI 033_10_02)
        {"expiresAt": "tomorrow"},
        {"observationInterval": {"endAt": "2030-01-01T00:00:00Z"}},
        {"location": {"coordinates": [1, 2]}},
        {"id": "not a uri"},
        {"contextSourceInfo": [{"key": "X-A\nB", "value": "1"}]},
        {"contextSourceInfo": [{"key": "X-A", "value": "line\nbreak"}]},
        {"contextSourceInfo": {"key": "X-A", "value": "1"}},
    ],
)
def test_bad_registration(client: httpx.Client, change: dict[str, Any]) -> None:
    """5.9.2.4: an invalid registration is 400 BadRequestData."""
    doc = registration(_kind())
    for key, value in change.items():
        if value is None:
            doc.pop(key)
        else:
            doc[key] = value
    problem(client.post(REGS, json=doc), 400, "BadRequestData")


def test_proxied_modes(client: httpx.Client) -> None:
    """4.3.6.3, 5.9.2.4: an exclusive registration names entity ids and Attributes; an
    auxiliary one only retrieves; no exclusive or redirect registration over what an exclusive
    one holds (409), over a local Entity's Attributes (exclusive) or a local Entity (redirect)."""
    kind = _kind()
    ent_id = f"urn:ngsi-ld:{kind}:1"

    def exclusive(mode: str = "exclusive", **info: Any) -> dict[str, Any]:
        doc = registration(kind, mode=mode)
        doc["information"] = [info]
        return doc

    by_id: dict[str, Any] = {"entities": [{"type": kind, "id": ent_id}], "propertyNames": ["speed"]}
    for bad in (
        exclusive(entities=[{"type": kind}], propertyNames=["speed"]),
        exclusive(entities=[{"type": kind, "idPattern": ".*"}], propertyNames=["speed"]),
        exclusive(entities=[{"type": kind, "id": ent_id}]),
        registration(kind, mode="auxiliary", operations=["retrieveOps", "updateEntity"]),
    ):
        problem(client.post(REGS, json=bad), 400, "BadRequestData")
    create(client, registration(kind, mode="auxiliary", operations=["queryEntity"]))
    create(client, registration(kind, mode="auxiliary"))  # default federationOps (ETSI D011_01_aux)
    first = create(client, exclusive(**by_id))
    problem(client.post(REGS, json=exclusive(**by_id)), 409, "AlreadyExists")
    problem(client.post(REGS, json=exclusive("redirect", **by_id)), 409, "AlreadyExists")
    other: dict[str, Any] = {**by_id, "propertyNames": ["colour"]}
    create(client, exclusive(**other))  # another Attribute of the same entity
    assert client.delete(f"{REGS}/{first}").status_code == 204
    create(client, exclusive("redirect", **by_id))
    create(client, exclusive("redirect", **by_id))  # redirect registrations may overlap
    # local entities
    local = _building(kind, 2, height=3)
    assert client.post("/entities", json=local).status_code == 201
    on_local: dict[str, Any] = {
        "entities": [{"type": kind, "id": local["id"]}],
        "propertyNames": ["height"],
    }
    problem(client.post(REGS, json=exclusive(**on_local)), 409, "AlreadyExists")
    create(client, exclusive(**{**on_local, "propertyNames": ["speed"]}))
    problem(client.post(REGS, json=exclusive("redirect", **on_local)), 409, "AlreadyExists")


def test_bad_json(client: httpx.Client) -> None:
    r = client.post(REGS, content=b"{", headers={"Content-Type": "application/json"})
    problem(r, 400, "InvalidRequest")


def test_query_registrations(client: httpx.Client) -> None:
    """5.10.2: by type, attrs, id, idPattern, q / csf on Context Source Properties, geo."""
    kind, other = _kind(), _kind()
    a = create(client, registration(kind, csourceProperty1="aValue"))
    b_doc = registration(other)
    b_doc["information"] = [
        {"entities": [{"type": other, "id": "urn:ngsi-ld:X:1"}], "propertyNames": ["speed"]}
    ]
    b_doc["location"] = {"type": "Point", "coordinates": [6.14, 46.20]}
    b = create(client, b_doc)
    c_doc = registration(other)
    c_doc["information"] = [{"entities": [{"type": other, "idPattern": "^urn:ngsi-ld:Y:.*"}]}]
    c = create(client, c_doc)

    def ids(**params: str) -> list[str]:
        r = client.get(REGS, params=params)
        assert r.status_code == 200, r.text
        return sorted(x["id"] for x in r.json())

    assert ids(type=kind) == [a]
    assert ids(type=f"{kind},{other}") == sorted([a, b, c])
    assert ids(type=other, attrs="speed") == sorted([b, c])  # c registers every attribute
    assert ids(type=kind, attrs="speed") == []
    assert ids(attrs="locatedAt") == sorted([a, c])
    assert ids(type=other, id="urn:ngsi-ld:X:1") == sorted([b])
    assert ids(type=other, id="urn:ngsi-ld:Y:7") == [c]
    assert ids(type=other, idPattern="^urn:ngsi-ld:X") == sorted([b, c])
    assert ids(q='csourceProperty1=="aValue"') == [a]
    assert ids(type=kind, csf='csourceProperty1=="other"') == []
    near = {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": "[6.14,46.2]"}
    assert ids(type=other, **near) == [b]
    r = client.get(REGS, params={"type": f"{kind},{other}", "count": "true", "limit": "1"})
    assert r.headers["NGSILD-Results-Count"] == "3"
    assert len(r.json()) == 1
    # 037_02, 037_03: no selection, a bad id, q, geo-query or temporal query are 400
    problem(client.get(REGS), 400, "BadRequestData")
    problem(client.get(REGS, params={"id": "invalidUri"}), 400, "BadRequestData")
    problem(client.get(REGS, params={"q": "(invalidQuery"}), 400, "BadRequestData")
    problem(client.get(REGS, params={"georel": "within"}), 400, "BadRequestData")
    problem(client.get(REGS, params={"timerel": "before"}), 400, "BadRequestData")


def test_query_registrations_temporal(client: httpx.Client) -> None:
    """5.10.2 (ETSI 037_09): timerel/timeAt/endTimeAt on observationInterval (timeproperty
    observedAt, the default) or managementInterval (createdAt, modifiedAt)."""
    kind = _kind()
    old = create(client, registration(kind, observationInterval={
        "startAt": "2020-01-01T00:00:00Z", "endAt": "2020-12-31T00:00:00Z"}))  # fmt: skip
    open_ended = create(client, registration(kind, observationInterval={
        "startAt": "2022-01-01T00:00:00Z"}, managementInterval={
        "startAt": "2019-01-01T00:00:00Z", "endAt": "2019-02-01T00:00:00Z"}))  # fmt: skip
    create(client, registration(kind))  # no interval: never matches a temporal query

    def ids(**params: str) -> list[str]:
        r = client.get(REGS, params={"type": kind, **params})
        assert r.status_code == 200, r.text
        return sorted(x["id"] for x in r.json())

    assert ids(timerel="before", timeAt="2021-08-01T22:00:00Z") == [old]
    assert ids(timerel="before", timeAt="2021-08-01T22:00:00Z", timeproperty="observedAt") == [old]
    assert ids(timerel="after", timeAt="2021-01-01T00:00:00Z") == [open_ended]
    between = {"timerel": "between", "timeAt": "2020-06-01T00:00:00Z"}
    assert ids(**between, endTimeAt="2023-01-01T00:00:00Z") == sorted([old, open_ended])
    assert ids(timerel="before", timeAt="2019-06-01T00:00:00Z", timeproperty="modifiedAt") == [
        open_ended
    ]
    at = "2020-06-01T00:00:00Z"
    for bad in ({"timerel": "between", "timeAt": at}, {"timerel": "whenever", "timeAt": at},
                {"timerel": "before", "timeAt": "soon"},
                {"timerel": "before", "timeAt": at, "timeproperty": "x"}):  # fmt: skip
        problem(client.get(REGS, params={"type": kind, **bad}), 400, "BadRequestData")


def test_tenants_are_separate(platform: PlatformProcess, client: httpx.Client) -> None:
    kind = _kind()
    reg_id = create(client, registration(kind))
    other = {"NGSILD-Tenant": "o" + uuid.uuid4().hex[:10]}
    with httpx.Client(base_url=platform.api, headers=other, timeout=10) as c:
        assert c.post("/entities", json={"id": "urn:x:1", "type": "T"}).status_code == 201
        problem(c.get(f"{REGS}/{reg_id}"), 404, "ResourceNotFound")
        assert c.get(REGS, params={"type": kind}).json() == []


def test_update_registration(client: httpx.Client) -> None:
    """5.9.3: PATCH merges a fragment (204); Null removes an optional member."""
    kind = _kind()
    reg_id = create(client, registration(kind, expiresAt="2099-01-01T00:00:00Z"))
    patch = {
        "endpoint": "http://[::1]:10",
        "expiresAt": None,
        "information": [{"entities": [{"type": "Other"}]}],
    }
    r = client.patch(f"{REGS}/{reg_id}", json=patch)
    assert r.status_code == 204, r.text
    got = client.get(f"{REGS}/{reg_id}").json()
    assert got["endpoint"] == "http://[::1]:10"
    assert "expiresAt" not in got
    assert got["information"] == [{"entities": [{"type": "Other"}]}]
    r = client.patch(f"{REGS}/{reg_id}", json={"mode": "auxiliary", "operations": ["queryEntity"]})
    assert r.status_code == 204, r.text
    assert (
        client.patch(f"{REGS}/{reg_id}", json={"mode": None, "operations": None}).status_code == 204
    )
    got = client.get(f"{REGS}/{reg_id}").json()
    assert (got["mode"], got["operations"]) == ("inclusive", ["federationOps"]), got
    problem(client.patch(f"{REGS}/{reg_id}", json={"id": "urn:other:1"}), 400, "BadRequestData")
    problem(client.patch(f"{REGS}/{reg_id}", json={"mode": "x"}), 400, "BadRequestData")
    problem(client.patch(f"{REGS}/{reg_id}", json={"endpoint": None}), 400, "BadRequestData")
    problem(
        client.patch(f"{REGS}/urn:none:1", json={"endpoint": "http://a"}), 404, "ResourceNotFound"
    )


def test_registrations_survive_a_restart(tmp_path: Path) -> None:
    """Registrations and csource subscriptions are stored (SQLite ``csources`` table)."""
    proc = PlatformProcess(db=str(tmp_path / "p.db"))
    proc.start()
    kind = _kind()
    try:
        with httpx.Client(base_url=proc.api, timeout=10) as c:
            reg_id = create(c, registration(kind))
            sub = {"type": "Subscription", "entities": [{"type": kind}],
                   "notification": {"endpoint": {"uri": "http://[::1]:9/n"}}}  # fmt: skip
            r = c.post(SUBS, json=sub)
            assert r.status_code == 201, r.text
            sub_path = r.headers["Location"].removeprefix("/ngsi-ld/v1")
        proc.stop()
        proc.start()
        with httpx.Client(base_url=proc.api, timeout=10) as c:
            assert c.get(f"{REGS}/{reg_id}").json()["information"][0]["entities"] == [
                {"type": kind}
            ]
            assert c.get(sub_path).json()["entities"] == [{"type": kind}]
    finally:
        proc.stop()
        proc.process.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    yield rx
    rx.close()


def _wait(rx: Receiver, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(rx.received) >= count:
            return rx.received
        time.sleep(0.02)
    raise AssertionError(f"expected {count} notifications, got {rx.received}")


def test_csource_subscription_crud(client: httpx.Client) -> None:
    """5.11.2-5.11.6."""
    kind = _kind()
    sub = {"id": f"urn:ngsi-ld:Subscription:{uuid.uuid4().hex[:8]}", "type": "Subscription",
           "entities": [{"type": kind}],
           "notification": {"endpoint": {"uri": "http://[::1]:9/n"}}}  # fmt: skip
    r = client.post(SUBS, json=sub)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/ngsi-ld/v1{SUBS}/{sub['id']}"
    problem(client.post(SUBS, json=sub), 409, "AlreadyExists")
    problem(client.post(SUBS, json={"type": "Subscription"}), 400, "BadRequestData")
    periodic = {**sub, "id": "urn:ngsi-ld:Subscription:p1", "timeInterval": 10}
    problem(client.post(SUBS, json=periodic), 422, "OperationNotSupported")
    got = client.get(f"{SUBS}/{sub['id']}").json()
    assert got["entities"] == [{"type": kind}]
    assert [s["id"] for s in client.get(SUBS).json()] == [sub["id"]]
    problem(client.patch(f"{SUBS}/{sub['id']}", json={"type": None}), 400, "BadRequestData")
    problem(client.patch(f"{SUBS}/not-a-uri", json={"isActive": False}), 400, "BadRequestData")
    problem(client.patch(f"{SUBS}/urn:ngsi-ld:Subscription:none", json={"isActive": False}), 404,
            "ResourceNotFound")  # fmt: skip
    r = client.patch(
        f"{SUBS}/{sub['id']}", content=b"{", headers={"Content-Type": "application/json"}
    )
    problem(r, 400, "InvalidRequest")
    assert client.patch(f"{SUBS}/{sub['id']}", json={"isActive": False}).status_code == 204
    assert client.get(f"{SUBS}/{sub['id']}").json()["isActive"] is False
    assert client.delete(f"{SUBS}/{sub['id']}").status_code == 204
    problem(client.get(f"{SUBS}/{sub['id']}"), 404, "ResourceNotFound")
    problem(client.delete(f"{SUBS}/{sub['id']}"), 404, "ResourceNotFound")


def test_csource_notifications(client: httpx.Client, receiver: Receiver) -> None:
    """5.11.7: newlyMatching on create, updated, noLongerMatching when it stops matching or
    is deleted; the body is a ContextSourceNotification (5.3.2)."""
    kind = _kind()
    sub = {"type": "Subscription", "entities": [{"type": kind}], "watchedAttributes": ["name"],
           "notification": {"endpoint": {"uri": receiver.url}}}  # fmt: skip
    r = client.post(SUBS, json=sub)
    assert r.status_code == 201, r.text
    sub_id = r.headers["Location"].rsplit("/", 1)[-1]
    create(client, registration(_kind()))  # another type: no notification
    reg_id = create(client, registration(kind))
    note = _wait(receiver, 1)[0]
    assert note["type"] == "ContextSourceNotification"
    assert note["subscriptionId"] == sub_id
    assert note["triggerReason"] == "newlyMatching"
    assert [d["id"] for d in note["data"]] == [reg_id]
    assert note["data"][0]["information"][0]["entities"] == [{"type": kind}]
    assert client.patch(f"{REGS}/{reg_id}", json={"endpoint": "http://[::1]:11"}).status_code == 204
    assert _wait(receiver, 2)[1]["triggerReason"] == "updated"
    info = [{"entities": [{"type": kind}], "propertyNames": ["speed"]}]  # name no longer there
    assert client.patch(f"{REGS}/{reg_id}", json={"information": info}).status_code == 204
    assert _wait(receiver, 3)[2]["triggerReason"] == "noLongerMatching"
    info = [{"entities": [{"type": kind}]}]  # every attribute again
    assert client.patch(f"{REGS}/{reg_id}", json={"information": info}).status_code == 204
    assert _wait(receiver, 4)[3]["triggerReason"] == "newlyMatching"
    assert client.delete(f"{REGS}/{reg_id}").status_code == 204
    last = _wait(receiver, 5)[4]
    assert last["triggerReason"] == "noLongerMatching"
    assert last["data"][0]["id"] == reg_id
    time.sleep(0.3)
    assert len(receiver.received) == 5
    status = client.get(f"{SUBS}/{sub_id}").json()["notification"]
    assert (status["timesSent"], status["status"]) == (5, "ok"), status


def test_initial_csource_notification(client: httpx.Client, receiver: Receiver) -> None:
    """5.11.2 (ETSI 047_02): a new csource subscription is notified of the registrations that
    match already (newlyMatching), then of their changes (updated)."""
    kind = _kind()
    first, second = create(client, registration(kind)), create(client, registration(kind))
    create(client, registration(_kind()))
    sub = {"type": "Subscription", "entities": [{"type": kind}],
           "notification": {"endpoint": {"uri": receiver.url}}}  # fmt: skip
    assert client.post(SUBS, json=sub).status_code == 201
    note = _wait(receiver, 1)[0]
    assert note["triggerReason"] == "newlyMatching"
    assert sorted(d["id"] for d in note["data"]) == sorted([first, second])
    assert client.patch(f"{REGS}/{first}", json={"registrationName": "x"}).status_code == 204
    note = _wait(receiver, 2)[1]
    assert (note["triggerReason"], [d["id"] for d in note["data"]]) == ("updated", [first])
    paused = {**sub, "isActive": False}
    assert client.post(SUBS, json=paused).status_code == 201
    time.sleep(0.3)
    assert len(receiver.received) == 2


# -- forwarding (4.3.6) with two real platforms ----------------------------------------------


@pytest.fixture(scope="module")
def second() -> Iterator[PlatformProcess]:
    proc = PlatformProcess()
    proc.start()
    yield proc
    proc.stop()
    proc.process.close()


def _building(kind: str, n: int, **attrs: Any) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:{kind}:{n}", "type": kind,
            **{k: {"type": "Property", "value": v} for k, v in attrs.items()}}  # fmt: skip


def test_forwarding_between_two_platforms(
    client: httpx.Client, second: PlatformProcess, tenant: str
) -> None:
    """Register B's entities on A, query A: B's entities are in the answer, an entity in both
    has the union of the attributes; local=true asks A alone."""
    kind = _kind()
    b_tenant = "b" + uuid.uuid4().hex[:10]
    with httpx.Client(base_url=second.api, headers={"NGSILD-Tenant": b_tenant}, timeout=10) as b:
        for doc in (_building(kind, 1, name="B1", height=10), _building(kind, 2, height=20)):
            assert b.post("/entities", json=doc).status_code == 201
    assert client.post("/entities", json=_building(kind, 2, name="A2")).status_code == 201
    assert client.post("/entities", json=_building(kind, 3, name="A3")).status_code == 201
    create(client, registration(kind, endpoint=second.base, tenant=b_tenant))

    r = client.get("/entities", params={"type": kind})
    assert r.status_code == 200, r.text
    assert "NGSILD-Warning" not in r.headers
    got = {e["id"]: e for e in r.json()}
    assert sorted(got) == [f"urn:ngsi-ld:{kind}:{n}" for n in (1, 2, 3)]
    assert got[f"urn:ngsi-ld:{kind}:1"]["height"]["value"] == 10
    merged = got[f"urn:ngsi-ld:{kind}:2"]
    assert (merged["name"]["value"], merged["height"]["value"]) == ("A2", 20), merged
    r = client.get("/entities", params={"type": kind, "local": "true"})
    assert sorted(e["id"] for e in r.json()) == [f"urn:ngsi-ld:{kind}:{n}" for n in (2, 3)]
    # the count adds what the source counts, less what both hold on the page (6.3.13)
    r = client.get("/entities", params={"type": kind, "count": "true"})
    assert r.headers["NGSILD-Results-Count"] == "3", r.headers
    r = client.get("/entities", params={"type": kind, "count": "true", "local": "true"})
    assert r.headers["NGSILD-Results-Count"] == "2", r.headers
    r = client.get("/entities", params={"type": kind, "options": "keyValues", "q": "height>15"})
    assert r.json() == [{"id": f"urn:ngsi-ld:{kind}:2", "type": kind, "height": 20}], r.json()

    # Retrieve Entity: only at B, and at both
    r = client.get(f"/entities/urn:ngsi-ld:{kind}:1")
    assert r.status_code == 200, r.text
    assert r.json()["name"]["value"] == "B1"
    r = client.get(f"/entities/urn:ngsi-ld:{kind}:2", params={"options": "keyValues"})
    assert r.json() == {"id": f"urn:ngsi-ld:{kind}:2", "type": kind, "name": "A2", "height": 20}
    problem(client.get(f"/entities/urn:ngsi-ld:{kind}:1", params={"local": "true"}), 404,
            "ResourceNotFound")  # fmt: skip
    problem(client.get(f"/entities/urn:ngsi-ld:{kind}:9"), 404, "ResourceNotFound")
    # POST /entityOperations/query is forwarded as the same POST
    query = {"type": "Query", "entities": [{"type": kind}], "q": "height>15"}
    r = client.post("/entityOperations/query", json=query, params={"options": "keyValues"})
    assert r.status_code == 200, r.text
    assert r.json() == [{"id": f"urn:ngsi-ld:{kind}:2", "type": kind, "height": 20}], r.json()
    regs = client.get(REGS, params={"type": kind}).json()
    assert regs[0]["status"] == "ok", regs
    assert regs[0]["timesSent"] >= 1, regs


def test_exclusive_source_wins(client: httpx.Client, second: PlatformProcess) -> None:
    kind = _kind()
    b_tenant = "b" + uuid.uuid4().hex[:10]
    with httpx.Client(base_url=second.api, headers={"NGSILD-Tenant": b_tenant}, timeout=10) as b:
        doc = _building(kind, 1, height=99, colour="red")
        assert b.post("/entities", json=doc).status_code == 201
    doc = registration(kind, endpoint=second.base, tenant=b_tenant, mode="exclusive")
    doc["information"] = [{"entities": [{"type": kind, "id": f"urn:ngsi-ld:{kind}:1"}],
                           "propertyNames": ["height"]}]  # fmt: skip
    create(client, doc)
    # written here after the registration (local writes are not refused): the source wins
    assert client.post("/entities", json=_building(kind, 1, height=1, name="A")).status_code == 201
    # the source is asked for the registered entity and Attributes only (4.3.6.3): no colour
    want = {"id": f"urn:ngsi-ld:{kind}:1", "type": kind, "name": "A", "height": 99}
    r = client.get(f"/entities/urn:ngsi-ld:{kind}:1", params={"options": "keyValues"})
    assert r.json() == want
    r = client.get("/entities", params={"type": kind, "options": "keyValues"})
    assert r.json() == [want]
    r = client.get("/entities", params={"type": kind, "options": "keyValues", "attrs": "name"})
    assert r.json() == [{"id": want["id"], "type": kind, "name": "A"}]


def test_source_down_does_not_fail_the_query(client: httpx.Client) -> None:
    """A source that does not answer: the local answer, and an NGSILD-Warning (6.3.17)."""
    kind = _kind()
    assert client.post("/entities", json=_building(kind, 1, name="A")).status_code == 201
    reg_id = create(client, registration(kind, endpoint=f"http://[::1]:{free_port()}"))
    r = client.get("/entities", params={"type": kind})
    assert r.status_code == 200, r.text
    assert [e["id"] for e in r.json()] == [f"urn:ngsi-ld:{kind}:1"]
    warning = r.headers["NGSILD-Warning"]
    assert warning.startswith("199 r197-"), warning  # 6.3.17: no answer in time
    assert reg_id in warning, warning
    reg = client.get(f"{REGS}/{reg_id}").json()
    assert reg["status"] == "failed", reg
    assert reg["timesFailed"] >= 1, reg


class _Slow(QuietHandler):
    """A context source that starts answering and then trickles (never finishes in time)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        for _ in range(30):
            try:
                self.wfile.write(b" ")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.1)


def test_slow_source_times_out(client: httpx.Client) -> None:
    """management.timeout (ms) bounds the whole exchange with a source, even one that keeps
    sending a byte now and then (6.3.17: it counts as not answering)."""
    with LocalServer(_Slow) as server:
        kind = _kind()
        assert client.post("/entities", json=_building(kind, 1, name="A")).status_code == 201
        endpoint = server.url
        reg_id = create(client, registration(kind, endpoint=endpoint, management={"timeout": 300}))
        started = time.monotonic()
        r = client.get("/entities", params={"type": kind})
        assert time.monotonic() - started < 2.5
        assert r.status_code == 200, r.text
        assert [e["id"] for e in r.json()] == [f"urn:ngsi-ld:{kind}:1"]
        assert r.headers["NGSILD-Warning"].startswith("199 "), r.headers
        assert reg_id in r.headers["NGSILD-Warning"], r.headers


class _Bad(QuietHandler):
    """A context source answering 403 on /forbidden..., and non-JSON otherwise."""

    def do_GET(self) -> None:
        forbidden = self.path.startswith("/forbidden")
        raw = b'{"type": "x"}' if forbidden else b"not a json document"
        self.send_raw(403 if forbidden else 200, raw)


def test_warning_codes(client: httpx.Client) -> None:
    """6.3.17 Table 6.3.17-1: an error answer is 299, an invalid payload 111 (and is not
    incorporated); a Retrieve Entity found nowhere stays 404 with the warnings."""
    with LocalServer(_Bad) as server:
        kind = _kind()
        base = server.url
        bad = create(client, registration(kind, endpoint=base + "/bad"))
        forbidden = create(client, registration(kind, endpoint=base + "/forbidden"))
        r = client.get("/entities", params={"type": kind})
        assert r.status_code == 200, r.text
        assert r.json() == []
        warnings = r.headers["NGSILD-Warning"]
        assert f'{bad}: the answer is not JSON"' in warnings, warnings
        assert warnings.count("111 ") == 1, warnings
        assert warnings.count("299 ") == 1, warnings
        assert forbidden in warnings.split("299 ", 1)[1], warnings
        r = client.get(f"/entities/urn:ngsi-ld:{kind}:1")
        problem(r, 404, "ResourceNotFound")
        assert "111 " in r.headers["NGSILD-Warning"], r.headers
        assert "299 " in r.headers["NGSILD-Warning"], r.headers


class _Recorder(QuietHandler):
    """A context source answering [] and recording the request lines and headers."""

    seen: ClassVar[list[tuple[str, dict[str, str]]]] = []

    def do_GET(self) -> None:
        _Recorder.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.send_raw(200, b"[]")


def test_forwarded_request_headers(client: httpx.Client) -> None:
    """The forwarded request carries the registration's tenant as NGSILD-Tenant, its
    contextSourceInfo as headers, the request's Link, and Via naming this broker (6.3.18);
    local and csf stay here, the other parameters go along."""
    with LocalServer(_Recorder) as server:
        kind = _kind()
        endpoint = server.url + "/broker1"
        info = [{"key": "X-Api-Key", "value": "k1"}]
        create(client, registration(kind, endpoint=endpoint, tenant="tx", contextSourceInfo=info,
                                    csourceColour="blue"))  # fmt: skip
        core = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
        link = f'<{core}>; rel="http://www.w3.org/ns/json-ld#context"'
        _Recorder.seen.clear()
        r = client.get(
            "/entities",
            params={
                "type": kind,
                "q": "height>1",
                "csf": 'csourceColour=="blue"',
                "local": "false",
            },
            headers={"Via": "1.1 proxy-a", "Link": link},
        )
        assert r.status_code == 200, r.text
        ((path, headers),) = _Recorder.seen
        assert path.startswith("/broker1/ngsi-ld/v1/entities?"), path
        assert "q=height%3E1" in path, path
        assert "csf" not in path, path
        assert "local" not in path, path
        assert headers["link"] == link
        assert headers["ngsild-tenant"] == "tx"
        assert headers["x-api-key"] == "k1"
        assert headers["via"].startswith("1.1 proxy-a, 1.1 r197-"), headers
        _Recorder.seen.clear()
        r = client.get("/entities", params={"type": kind, "csf": 'csourceColour=="red"'})
        assert r.status_code == 200, r.text
        assert _Recorder.seen == []  # csf: this registration is not asked


def test_no_forwarding_loop(platform: PlatformProcess, client: httpx.Client, tenant: str) -> None:
    """A registration pointing back at the same broker: the Via header stops the loop."""
    kind = _kind()
    assert client.post("/entities", json=_building(kind, 1, name="A")).status_code == 201
    create(client, registration(kind, endpoint=platform.base, tenant=tenant))
    started = time.monotonic()
    r = client.get("/entities", params={"type": kind})
    assert r.status_code == 200, r.text
    assert [e["id"] for e in r.json()] == [f"urn:ngsi-ld:{kind}:1"]
    assert time.monotonic() - started < 5
    r = client.get("/entities", params={"type": kind}, headers={"Via": "1.1 someone-else"})
    assert r.status_code == 200, r.text


def test_csource_subscription_one_url_context_is_not_copied(client: httpx.Client) -> None:
    """5.13.1 with ETSI 046_10: a one-URL array @context is that URL, as for entity
    subscriptions; no ImplicitlyCreated copy is made (an inline object still is)."""
    core = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
    implicit = {"kind": "ImplicitlyCreated"}
    for n, context in enumerate(([core], [{"flow": "https://example.org/flow"}, core])):
        sub = {"id": f"urn:ngsi-ld:Subscription:ctx{n}", "type": "Subscription",
               "entities": [{"type": _kind()}], "@context": context,
               "notification": {"endpoint": {"uri": "http://[::1]:9/n"}}}  # fmt: skip
        r = client.post(SUBS, json=sub, headers={"Content-Type": "application/ld+json"})
        assert r.status_code == 201, r.text
        assert len(client.get("/jsonldContexts", params=implicit).json()) == n
