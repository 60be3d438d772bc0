"""R197-NGSILD-66..72: context source registrations, their subscriptions and distributed reads
(ETSI GS CIM 009 V1.8.1 clauses 5.9, 5.10, 5.11, 4.3.6).

Every case makes its own uniquely named types and ids, so a shared IUT tenant does not disturb
it.  The forwarding cases register a tiny NGSI-LD context source of their own on [::1]
(:class:`StubSource`, answering GET /ngsi-ld/v1/entities and /entities/{id}): the IUT is the
broker under test, the stub only plays the registered source.
"""

from __future__ import annotations

import socket
import uuid
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from conformance.model import case
from conformance.ngsild_common import LocalServer, QuietHandler, Receiver, problem, unique

REGS = "/csourceRegistrations"
SUBS = "/csourceSubscriptions"


def _json(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:300]!r}"
    try:
        return r.json()
    except ValueError:
        raise AssertionError(f"answer is not JSON: {r.content[:200]!r}") from None


def _registration(kind: str, endpoint: str = "http://[::1]:9", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:ContextSourceRegistration:{unique('R197CSR')}",
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": kind}], "propertyNames": ["name", "height"]}],
        "endpoint": endpoint,
        **extra,
    }


def _register(api: httpx.Client, doc: dict[str, Any]) -> str:
    r = api.post(REGS, json=doc)
    assert r.status_code == 201, f"register: expected 201, got {r.status_code}: {r.text[:300]!r}"
    location = r.headers.get("Location", "")
    assert location.endswith(doc["id"]) or unquote(location).endswith(doc["id"]), (
        f"Location {location!r} does not name {doc['id']}"
    )
    return str(doc["id"])


def _ids(body: Any) -> list[str]:
    assert isinstance(body, list), f"expected a JSON array, got {body!r:.300}"
    return sorted(str(x.get("id")) for x in body if isinstance(x, dict))


class StubSource(LocalServer):
    """An NGSI-LD context source on [::1] holding ``entities`` (normalized, compacted with the
    core context); records the requests it gets."""

    def __init__(self, entities: list[dict[str, Any]]) -> None:
        self.entities = entities
        self.requests: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                outer.requests.append((self.path, dict(self.headers.items())))
                url = urlsplit(self.path)
                prefix = "/ngsi-ld/v1/entities"
                if url.path == prefix:
                    params = parse_qs(url.query)
                    asked = [t for t in ",".join(params.get("type", [])).split(",") if t]
                    # a term or its expanded IRI (the IUT may forward either)
                    found: Any = [
                        e for e in outer.entities
                        if not asked or any(t == e["type"] or t.endswith(("/" + e["type"],
                                            "#" + e["type"])) for t in asked)
                    ]  # fmt: skip
                elif url.path.startswith(prefix + "/"):
                    wanted = unquote(url.path[len(prefix) + 1 :])
                    found = next((e for e in outer.entities if e["id"] == wanted), None)
                else:
                    found = None
                if found is None:
                    self.answer(404, {"type": "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound",
                                      "title": "not found"})  # fmt: skip
                else:
                    self.answer(200, found)

        super().__init__(Handler)


def _closed_port_url() -> str:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        return f"http://[::1]:{s.getsockname()[1]}"


@case("R197-NGSILD-66", "A context source registration is created (201, Location), retrieved "
      "with its information and endpoint, refused twice (409) and deleted (204, then 404)",
      verifies=["CIM009-5.9.2", "CIM009-5.10.1", "CIM009-5.9.4", "CIM009-5.2.9"],
      theme="interoperability", pics=["ngsild.csource-registrations"])  # fmt: skip
def test_register_retrieve_delete(api: httpx.Client) -> None:
    kind = unique("R197Csr")
    doc = _registration(kind)
    reg_id = _register(api, doc)
    got = _json(api.get(f"{REGS}/{reg_id}"))
    assert isinstance(got, dict), f"retrieve: expected an object, got {got!r:.300}"
    assert got.get("id") == reg_id, got
    assert got.get("type") == "ContextSourceRegistration", got
    assert got.get("endpoint") == doc["endpoint"], got
    info = got.get("information")
    assert isinstance(info, list), f"information is not an array: {got!r:.300}"
    assert info, f"information is empty: {got!r:.300}"
    assert info[0].get("entities") == [{"type": kind}], info
    assert sorted(info[0].get("propertyNames") or []) == ["height", "name"], info
    assert got.get("mode", "inclusive") == "inclusive", f"default mode (5.2.9): {got!r:.300}"
    problem(api.post(REGS, json=doc), 409, "AlreadyExists")
    r = api.delete(f"{REGS}/{reg_id}")
    assert r.status_code == 204, f"delete: expected 204, got {r.status_code}: {r.text[:200]!r}"
    problem(api.get(f"{REGS}/{reg_id}"), 404, "ResourceNotFound")
    problem(api.delete(f"{REGS}/{reg_id}"), 404, "ResourceNotFound")


@case("R197-NGSILD-67", "An invalid registration (no information, no endpoint, expiresAt in the "
      "past) is 400 BadRequestData; PATCH updates a registration (204)",
      verifies=["CIM009-5.9.2.4", "CIM009-5.9.3"], theme="interoperability",
      pics=["ngsild.csource-registrations"])  # fmt: skip
def test_invalid_and_update(api: httpx.Client) -> None:
    kind = unique("R197Csr")
    for change in ({"information": None}, {"endpoint": None},
                   {"expiresAt": "2001-01-01T00:00:00Z"}):  # fmt: skip
        doc = _registration(kind)
        for key, value in change.items():
            if value is None:
                doc.pop(key)
            else:
                doc[key] = value
        problem(api.post(REGS, json=doc), 400, "BadRequestData")
    reg_id = _register(api, _registration(kind))
    r = api.patch(f"{REGS}/{reg_id}", json={"endpoint": "http://[::1]:10"})
    assert r.status_code == 204, f"update: expected 204, got {r.status_code}: {r.text[:200]!r}"
    got = _json(api.get(f"{REGS}/{reg_id}"))
    assert got.get("endpoint") == "http://[::1]:10", got
    problem(api.patch(f"{REGS}/urn:ngsi-ld:ContextSourceRegistration:{unique()}",
                      json={"endpoint": "http://[::1]:10"}), 404, "ResourceNotFound")  # fmt: skip


@case("R197-NGSILD-68", "Query Context Source Registrations selects by entity type and by "
      "attribute name; a query with neither is 400 BadRequestData",
      verifies=["CIM009-5.10.2"], theme="interoperability",
      pics=["ngsild.csource-registrations"])  # fmt: skip
def test_query_registrations(api: httpx.Client) -> None:
    kind, other = unique("R197Csr"), unique("R197Csr")
    a = _register(api, _registration(kind))
    doc = _registration(other)
    doc["information"] = [{"entities": [{"type": other}], "propertyNames": ["speed"]}]
    b = _register(api, doc)
    assert _ids(_json(api.get(REGS, params={"type": kind}))) == [a]
    assert _ids(_json(api.get(REGS, params={"type": f"{kind},{other}"}))) == sorted([a, b])
    assert _ids(_json(api.get(REGS, params={"type": f"{kind},{other}", "attrs": "speed"}))) == [b]
    problem(api.get(REGS), 400, "BadRequestData")


@case("R197-NGSILD-69", "A csource subscription notifies a ContextSourceNotification "
      "(newlyMatching) when a matching registration is created, and noLongerMatching when it "
      "is deleted",
      verifies=["CIM009-5.11.2", "CIM009-5.11.7", "CIM009-5.3.2"], theme="interoperability",
      pics=["ngsild.csource-subscriptions"])  # fmt: skip
def test_csource_notifications(api: httpx.Client) -> None:
    kind = unique("R197Csr")
    with Receiver() as rx:
        sub = {"id": f"urn:ngsi-ld:Subscription:{unique()}", "type": "Subscription",
               "entities": [{"type": kind}],
               "notification": {"endpoint": {"uri": rx.url, "accept": "application/json"}}}  # fmt: skip
        r = api.post(SUBS, json=sub)
        assert r.status_code == 201, (
            f"subscribe: expected 201, got {r.status_code}: {r.text[:300]!r}"
        )
        reg_id = _register(api, _registration(kind))
        (note,) = rx.wait(1)
        assert isinstance(note, dict), f"notification is not a JSON object: {note!r:.300}"
        assert note.get("type") == "ContextSourceNotification", note
        assert note.get("subscriptionId") == sub["id"], note
        assert note.get("triggerReason") == "newlyMatching", note
        assert _ids(note.get("data")) == [reg_id], note
        assert api.delete(f"{REGS}/{reg_id}").status_code == 204
        second = rx.wait(2)[1]
        assert isinstance(second, dict), second
        assert second.get("triggerReason") == "noLongerMatching", second
    api.delete(f"{SUBS}/{sub['id']}")


def _stub_entities(kind: str) -> list[dict[str, Any]]:
    return [
        {"id": f"urn:ngsi-ld:{kind}:remote", "type": kind,
         "name": {"type": "Property", "value": "remote"}},
        {"id": f"urn:ngsi-ld:{kind}:both", "type": kind,
         "height": {"type": "Property", "value": 42}},
    ]  # fmt: skip


@case("R197-NGSILD-70", "Query Entities asks the inclusive registration's context source and "
      "merges its entities with the local ones; local=true asks the broker alone",
      verifies=["CIM009-4.3.6.2", "CIM009-4.3.6.4"], theme="interoperability",
      pics=["ngsild.forwarding"])  # fmt: skip
def test_forwarded_query(api: httpx.Client) -> None:
    kind = unique("R197Fed")
    local = {"id": f"urn:ngsi-ld:{kind}:both", "type": kind,
             "name": {"type": "Property", "value": "local"}}  # fmt: skip
    assert api.post("/entities", json=local).status_code == 201
    with StubSource(_stub_entities(kind)) as stub:
        _register(api, _registration(kind, endpoint=stub.url))
        body = _json(api.get("/entities", params={"type": kind}))
        assert _ids(body) == sorted([f"urn:ngsi-ld:{kind}:both", f"urn:ngsi-ld:{kind}:remote"]), (
            f"expected the local and the source's entities: {body!r:.400}; "
            f"the source saw {[p for p, _ in stub.requests]}"
        )
        both = next(e for e in body if e.get("id") == f"urn:ngsi-ld:{kind}:both")
        assert {"name", "height"} <= set(both), f"attributes not merged: {both!r:.300}"
        seen = len(stub.requests)
        body = _json(api.get("/entities", params={"type": kind, "local": "true"}))
        assert _ids(body) == [f"urn:ngsi-ld:{kind}:both"], f"local=true: {body!r:.300}"
        assert len(stub.requests) == seen, "local=true was forwarded to the context source"


@case("R197-NGSILD-71", "Retrieve Entity of an entity held only by a registered context source "
      "answers the source's entity",
      verifies=["CIM009-4.3.6.2", "CIM009-5.7.1"], theme="interoperability",
      pics=["ngsild.forwarding"])  # fmt: skip
def test_forwarded_retrieve(api: httpx.Client) -> None:
    kind = unique("R197Fed")
    with StubSource(_stub_entities(kind)) as stub:
        _register(api, _registration(kind, endpoint=stub.url))
        got = _json(api.get(f"/entities/urn:ngsi-ld:{kind}:remote"))
        assert isinstance(got, dict), got
        assert got.get("id") == f"urn:ngsi-ld:{kind}:remote", got
        name = got.get("name")
        assert isinstance(name, dict), f"no name attribute: {got!r:.300}"
        assert name.get("value") == "remote", got
        problem(api.get(f"/entities/urn:ngsi-ld:{kind}:{uuid.uuid4().hex[:6]}"), 404,
                "ResourceNotFound")  # fmt: skip


@case("R197-NGSILD-72", "A registered context source that does not answer does not fail Query "
      "Entities: the local entities are answered (200)",
      verifies=["CIM009-6.3.17"], theme="interoperability",
      pics=["ngsild.forwarding"])  # fmt: skip
def test_source_down(api: httpx.Client) -> None:
    kind = unique("R197Fed")
    local = {"id": f"urn:ngsi-ld:{kind}:1", "type": kind,
             "name": {"type": "Property", "value": "local"}}  # fmt: skip
    assert api.post("/entities", json=local).status_code == 201
    _register(api, _registration(kind, endpoint=_closed_port_url()))
    body = _json(api.get("/entities", params={"type": kind}))
    assert _ids(body) == [local["id"]], f"expected the local entity only: {body!r:.300}"
