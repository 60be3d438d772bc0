"""R197-NGSILD-45..51: @context management (ETSI GS CIM 009 V1.8.1 clause 5.13) and the
precedence of a user @context over the implied core @context (5.5.7).

Every case adds its own uniquely named terms; an IUT may be shared, so a listing is only ever
checked to contain (or not contain) what the case itself added.  An IUT without the @context
API declares ``ngsild.context-api`` false.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote, urljoin

import httpx

from conformance.iut import RoleConfig
from conformance.model import case
from conformance.ngsild_common import CORE_V18, problem, unique
from conformance.observed import watch_responses

LINK = '<{}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
KINDS = ("Hosted", "Cached", "ImplicitlyCreated")
CONTEXT_INFO = {"URL", "localId", "kind", "createdAt", "lastUsage", "numberOfHits", "extraInfo"}


def _body(r: httpx.Response, status: int = 200) -> Any:
    """The JSON body of an answer that must have ``status``, with a readable failure."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:300]!r}"
    try:
        return r.json()
    except ValueError:
        raise AssertionError(f"answer is not JSON: {r.content[:300]!r}") from None


def _obj(r: httpx.Response) -> dict[str, Any]:
    """The JSON object of a 200 answer, with a readable failure for anything else."""
    body = _body(r)
    assert isinstance(body, dict), f"expected a JSON object, got: {r.text[:300]!r}"
    return body


def _add(api: httpx.Client, context: Any) -> tuple[str, str]:
    """Add @context (5.13.2): the local id and the absolute URL named by Location."""
    r = api.post("/jsonldContexts", json={"@context": context})
    assert r.status_code == 201, (
        f"Add @context: expected 201, got {r.status_code}: {r.text[:300]!r}"
    )
    location = r.headers.get("Location")
    assert location, f"Add @context answered 201 without a Location header: {dict(r.headers)}"
    url = urljoin(str(api.base_url).rstrip("/") + "/", location)
    local = location.rstrip("/").rsplit("/", 1)[-1]
    assert local, f"Location {location!r} names no local id"
    return local, url


def _urls(listing: Any) -> list[str]:
    assert isinstance(listing, list), f"List @contexts is not a JSON array: {listing!r:.300}"
    return [u for u in listing if isinstance(u, str)]


def _check_info(info: Any, kind: str) -> None:
    """A ContextInfo object of ``kind`` (5.13.3 details=true)."""
    assert isinstance(info, dict), f"ContextInfo is not a JSON object: {info!r:.300}"
    for member in ("URL", "localId", "kind", "createdAt"):
        value = info.get(member)
        assert isinstance(value, str), f"ContextInfo without a string {member!r}: {info!r:.300}"
        assert value, f"ContextInfo with an empty {member!r}: {info!r:.300}"
    assert info["kind"] == kind, f"ContextInfo kind {info['kind']!r}, expected {kind!r}"
    extra = set(info) - CONTEXT_INFO
    assert not extra, f"ContextInfo members outside 5.13.3: {sorted(extra)}"
    hits = info.get("numberOfHits")
    assert hits is None or (isinstance(hits, int) and hits >= 0), f"numberOfHits {hits!r}"


@case("R197-NGSILD-45", "Add, serve, list and delete a hosted @context",
      verifies=["CIM009-5.13.2", "CIM009-5.13.3", "CIM009-5.13.4", "CIM009-5.13.5"],
      theme="interoperability", pics=["ngsild.context-api"])  # fmt: skip
def test_hosted_context_lifecycle(api: httpx.Client) -> None:
    term = unique("R197T")
    ctx = {term: f"urn:ngsi-ld:attributes:{term}", f"{term}b": f"urn:ngsi-ld:attributes:{term}b"}
    local, url = _add(api, ctx)
    r = api.get(f"/jsonldContexts/{local}")
    assert _body(r) == {"@context": ctx}, f"Serve @context answered {r.text[:300]!r}"
    media = r.headers.get("Content-Type", "").split(";")[0].strip()
    assert media in ("application/json", "application/ld+json"), f"Content-Type {media!r}"
    listed = _urls(_body(api.get("/jsonldContexts")))
    assert any(u.endswith(local) for u in listed), f"{url} not in List @contexts: {listed[:20]}"
    hosted = _urls(_body(api.get("/jsonldContexts", params={"kind": "Hosted"})))
    assert any(u.endswith(local) for u in hosted), f"{url} not listed as Hosted: {hosted[:20]}"
    r = api.delete(f"/jsonldContexts/{local}")
    assert r.status_code == 204, f"Delete @context: expected 204, got {r.status_code}: {r.text!r}"
    problem(api.get(f"/jsonldContexts/{local}"), 404, "ResourceNotFound")
    problem(api.delete(f"/jsonldContexts/{local}"), 404, "ResourceNotFound")
    listed = _urls(_body(api.get("/jsonldContexts")))
    assert not any(u.endswith(local) for u in listed), f"deleted {url} still listed"


@case("R197-NGSILD-46", "List @contexts filters by kind; details=true answers ContextInfo",
      verifies=["CIM009-5.13.3", "CIM009-5.13.3-details"],
      theme="interoperability", pics=["ngsild.context-api"])  # fmt: skip
def test_kind_and_details(api: httpx.Client) -> None:
    term = unique("R197K")
    local, _ = _add(api, {term: f"urn:ngsi-ld:attributes:{term}"})
    for kind in KINDS:
        infos = _body(api.get("/jsonldContexts", params={"kind": kind, "details": "true"}))
        assert isinstance(infos, list), f"kind={kind} details=true: not an array: {infos!r:.300}"
        for info in infos:
            _check_info(info, kind)
        mine = [i for i in infos if i.get("localId") == local]
        assert len(mine) == (1 if kind == "Hosted" else 0), f"kind={kind}: ours is {mine}"
    info = _body(api.get(f"/jsonldContexts/{local}", params={"details": "true"}))
    _check_info(info, "Hosted")
    assert info["localId"] == local, f"localId {info['localId']!r}, expected {local!r}"
    assert str(info["URL"]).endswith(local), f"URL {info['URL']!r} does not name {local!r}"
    plain = _body(api.get("/jsonldContexts", params={"details": "false", "kind": "Hosted"}))
    assert any(u.endswith(local) for u in _urls(plain)), f"details=false: {plain!r:.300}"
    for params in ({"kind": "other"}, {"details": "other"}, {"details": "true", "kind": "hosted"},
                   {"details": "other", "kind": "Hosted"}):  # fmt: skip
        problem(api.get("/jsonldContexts", params=params), 400, "BadRequestData")


@case("R197-NGSILD-47", "A hosted @context is private to the tenant that added it",
      verifies=["CIM009-5.13-tenant", "CIM009-4.14"], theme="security",
      pics=["ngsild.context-api", "ngsild.tenants"])  # fmt: skip
def test_hosted_context_tenant(ngsild_platform: RoleConfig) -> None:
    base = ngsild_platform.url.rstrip("/") + "/ngsi-ld/v1"
    term = unique("R197Private")
    a = {"NGSILD-Tenant": f"r197a{uuid.uuid4().hex[:6]}"}
    b = {"NGSILD-Tenant": f"r197b{uuid.uuid4().hex[:6]}"}
    with watch_responses(httpx.Client(base_url=base, headers=a, timeout=10)) as owner:
        local, _ = _add(owner, {term: f"urn:ngsi-ld:attributes:{term}"})
        with watch_responses(httpx.Client(base_url=base, headers=b, timeout=10)) as other:
            r = other.get(f"/jsonldContexts/{local}")
            assert r.status_code == 404, (
                f"another tenant served it: {r.status_code} {r.text!r:.200}"
            )
            assert term not in r.text, "another tenant's answer shows the private term"
            r = other.get(f"/jsonldContexts/{local}", params={"details": "true"})
            assert r.status_code == 404, f"another tenant got its ContextInfo: {r.status_code}"
            for params in ({}, {"details": "true"}):
                r = other.get("/jsonldContexts", params=params)
                assert r.status_code == 200, f"List @contexts: {r.status_code} {r.text!r:.200}"
                assert local not in r.text, f"another tenant lists it ({params})"
            r = other.delete(f"/jsonldContexts/{local}")
            assert r.status_code == 404, f"another tenant's delete answered {r.status_code}"
        served = owner.get(f"/jsonldContexts/{local}")
        assert served.status_code == 200, f"the owner lost its @context: {served.status_code}"
        assert term in served.text, f"the owner's @context changed: {served.text[:300]!r}"
        r = owner.delete(f"/jsonldContexts/{local}")
        assert r.status_code == 204, f"the owner could not delete it: {r.status_code} {r.text!r}"


@case("R197-NGSILD-48", "Add @context refuses a body without @context or an invalid @context",
      verifies=["CIM009-5.13.2.4"], theme="interoperability",
      pics=["ngsild.context-api"])  # fmt: skip
def test_add_refuses_bad_bodies(api: httpx.Client) -> None:
    term = unique("R197Bad")
    problem(api.post("/jsonldContexts", json={term: f"urn:{term}"}), 400, "InvalidRequest")
    broken = b'{"@context": {"' + term.encode() + b'": '
    r = api.post("/jsonldContexts", content=broken, headers={"Content-Type": "application/json"})
    problem(r, 400, "InvalidRequest")
    for bad in (7, True, ["https://example.org/c.jsonld", 7], {term: 5}):
        r = api.post("/jsonldContexts", json={"@context": bad})
        problem(r, 400, "BadRequestData")
        assert "Location" not in r.headers, f"@context {bad!r} was stored: {r.headers['Location']}"
    listed = _body(api.get("/jsonldContexts", params={"kind": "Hosted"}))
    assert term not in str(listed), "a refused @context is listed"


@case("R197-NGSILD-49", "A hosted @context named in a Link header expands and compacts terms",
      verifies=["CIM009-5.13.4-use"], theme="interoperability",
      pics=["ngsild.context-api"])  # fmt: skip
def test_hosted_context_in_link(api: httpx.Client) -> None:
    kind, attr = unique("R197Car"), unique("speed")
    iri_type, iri_attr = f"https://example.org/{kind}", f"https://example.org/vocab/{attr}"
    local, url = _add(api, {kind: iri_type, attr: iri_attr})
    link = {"Link": LINK.format(url)}
    doc = {"id": f"urn:ngsi-ld:{kind}:1", "type": kind, attr: {"type": "Property", "value": 3}}
    r = api.post("/entities", json=doc, headers=link)
    assert r.status_code == 201, f"create with the hosted @context: {r.status_code} {r.text!r:.300}"
    plain = _obj(api.get(f"/entities/{doc['id']}"))  # the core @context only: full IRIs
    assert plain.get("type") == iri_type, f"type not expanded by the hosted @context: {plain}"
    assert iri_attr in plain, f"attribute not expanded by the hosted @context: {plain}"
    short = _obj(api.get(f"/entities/{doc['id']}", headers=link))
    assert short.get("type") == kind, f"type not compacted again: {short}"
    assert attr in short, f"attribute not compacted again: {short}"
    found = _body(api.get("/entities", params={"type": kind}, headers=link))
    ids = [e.get("id") for e in found if isinstance(e, dict)] if isinstance(found, list) else found
    assert ids == [doc["id"]], f"query by the hosted term: {found!r:.300}"
    info = _body(api.get(f"/jsonldContexts/{local}", params={"details": "true"}))
    _check_info(info, "Hosted")
    if "numberOfHits" in info:  # optional member (5.13.3)
        assert info["numberOfHits"] >= 1, f"used, yet numberOfHits is {info['numberOfHits']}"


def _core_url(api: httpx.Client) -> str:
    """The URL the IUT lists its core @context under (a Cached entry, 5.13.1)."""
    r = api.get("/jsonldContexts", params={"kind": "Cached"})
    listed = _urls(_body(r)) if r.status_code == 200 else []
    cores = [u for u in listed if "ngsi-ld-core-context" in u]
    return CORE_V18 if CORE_V18 in cores or not cores else cores[0]


@case("R197-NGSILD-50", "The core @context cannot be deleted; reload is for Cached @contexts",
      verifies=["CIM009-5.13.5.4", "CIM009-5.13.5"], theme="interoperability",
      pics=["ngsild.context-api"])  # fmt: skip
def test_core_context_and_reload(api: httpx.Client) -> None:
    core = quote(_core_url(api), safe="")
    problem(api.delete(f"/jsonldContexts/{core}"), 400, "BadRequestData")
    problem(
        api.delete(f"/jsonldContexts/{core}", params={"reload": "false"}), 400, "BadRequestData"
    )
    r = api.delete(f"/jsonldContexts/{core}", params={"reload": "true"})
    assert r.status_code == 204, f"reload of the core @context: {r.status_code} {r.text!r:.300}"
    info = _body(api.get(f"/jsonldContexts/{core}", params={"details": "true"}))
    _check_info(info, "Cached")
    term = unique("R197R")
    local, _ = _add(api, {term: f"urn:ngsi-ld:attributes:{term}"})
    r = api.delete(f"/jsonldContexts/{local}", params={"reload": "true"})
    problem(r, 400, "BadRequestData")
    assert api.get(f"/jsonldContexts/{local}").status_code == 200, "a refused reload deleted it"
    missing = unique("r197missing")
    problem(
        api.delete(f"/jsonldContexts/{missing}", params={"reload": "true"}), 400, "BadRequestData"
    )
    problem(
        api.delete(f"/jsonldContexts/{missing}", params={"reload": "xxx"}), 400, "BadRequestData"
    )
    problem(api.delete(f"/jsonldContexts/{missing}"), 404, "ResourceNotFound")
    assert api.delete(f"/jsonldContexts/{local}").status_code == 204


@case("R197-NGSILD-51", "The core @context keeps its terms whatever a user @context says; "
      "a scoped user @context or one embedded into an Attribute is refused",
      verifies=["CIM009-5.5.7-precedence", "CIM009-5.5.7-scoped", "CIM009-5.5.7-embedded"],
      theme="interoperability")  # fmt: skip
def test_core_context_precedence(api: httpx.Client) -> None:
    kind = unique("R197Thing")
    theirs, extra = f"https://example.org/{kind}/location", f"https://example.org/{kind}/name"
    point = {"type": "Point", "coordinates": [8.68, 49.41]}
    doc = {
        "id": f"urn:ngsi-ld:{kind}:1",
        "type": kind,
        "location": {"type": "GeoProperty", "value": point},  # ngsi-ld:location in the core
        "name": {"type": "Property", "value": "x"},  # not a core term (Annex B): the user's
        "@context": [CORE_V18, {"location": theirs, "name": extra}],  # core first, user after
    }
    r = api.post("/entities", json=doc, headers={"Content-Type": "application/ld+json"})
    assert r.status_code == 201, f"create: {r.status_code} {r.text!r:.300}"
    plain = _obj(api.get(f"/entities/{doc['id']}"))  # compacted with the core @context only
    assert theirs not in plain, f"the user @context redefined the core term 'location': {plain}"
    assert isinstance(plain.get("location"), dict), f"'location' is not the core term: {plain}"
    assert extra in plain, f"'name', which the core does not define, is not the user's: {plain}"
    scoped = {"wrap": {"@id": f"https://example.org/{kind}/wrap", "@context": {"name": theirs}}}
    bad = {"id": f"urn:ngsi-ld:{kind}:2", "type": kind, "@context": [scoped, CORE_V18]}
    r = api.post("/entities", json=bad, headers={"Content-Type": "application/ld+json"})
    problem(r, 400, "BadRequestData")
    inner = {"type": "Property", "value": 1, "@context": {"height": theirs}}
    embedded = {"id": f"urn:ngsi-ld:{kind}:3", "type": kind, "height": inner}
    problem(api.post("/entities", json=embedded), 400, "BadRequestData")
