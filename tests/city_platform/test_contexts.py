"""The @context API (CIM 009 5.13) and @context resolution (5.5.7), against a real platform."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import PlatformProcess

CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
CORE_19 = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
LINK = '<{}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
ERR = "https://uri.etsi.org/ngsi-ld/errors/"


def problem(r: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["type"] == ERR + kind, body
    assert body["detail"]
    return body


def add(client: httpx.Client, context: Any) -> str:
    r = client.post("/jsonldContexts", json={"@context": context})
    assert r.status_code == 201, r.text
    location = r.headers["Location"]
    assert location.startswith("/ngsi-ld/v1/jsonldContexts/")
    return location.rsplit("/", 1)[-1]


class _Served(BaseHTTPRequestHandler):
    """A tiny remote @context server: /ctx.jsonld, /slow.jsonld, /big.jsonld, /bad.jsonld,
    /added.jsonld, and /flaky.jsonld (served once, then 404)."""

    hits: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        _Served.hits[self.path] = _Served.hits.get(self.path, 0) + 1
        if self.path == "/slow.jsonld":
            time.sleep(3)
        if self.path == "/big.jsonld":
            body = b'{"@context": {"x": "' + b"a" * (2 * 1024 * 1024) + b'"}}'
        elif self.path == "/bad.jsonld":
            body = b"not json"
        elif self.path == "/flaky.jsonld" and _Served.hits[self.path] > 1:
            self.send_error(404)
            return
        elif self.path in ("/ctx.jsonld", "/slow.jsonld", "/added.jsonld", "/flaky.jsonld"):
            body = b'{"@context": {"remoteTerm": "https://example.org/remoteTerm"}}'
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/ld+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def remote() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Served)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_add_serve_list_delete_hosted_context(client: httpx.Client) -> None:
    """5.13.2-5.13.5: add (201, Location), serve it back as posted, list it, delete (204)."""
    ctx = {"A1": "urn:ngsi-ld:attributes:A1", "A2": "urn:ngsi-ld:attributes:A2"}
    local = add(client, ctx)
    r = client.get(f"/jsonldContexts/{local}")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"@context": ctx}
    listed = client.get("/jsonldContexts").json()
    assert any(url.endswith(f"/ngsi-ld/v1/jsonldContexts/{local}") for url in listed)
    assert CORE in listed  # the core context is a Cached entry (5.13.1)
    info = client.get(f"/jsonldContexts/{local}", params={"details": "true"}).json()
    assert info["localId"] == local
    assert info["kind"] == "Hosted"
    assert info["URL"].endswith(f"/ngsi-ld/v1/jsonldContexts/{local}")
    assert info["createdAt"].endswith("Z")
    assert info["numberOfHits"] == 0
    assert client.delete(f"/jsonldContexts/{local}").status_code == 204
    problem(client.get(f"/jsonldContexts/{local}"), 404, "ResourceNotFound")
    problem(client.delete(f"/jsonldContexts/{local}"), 404, "ResourceNotFound")


def test_list_filters_by_kind_and_details(client: httpx.Client) -> None:
    """5.13.3: kind= selects Hosted/Cached/ImplicitlyCreated, details=true gives ContextInfo."""
    local = add(client, {"B1": "urn:b1"})
    hosted = client.get("/jsonldContexts", params={"kind": "Hosted"}).json()
    assert len(hosted) == 1
    assert hosted[0].endswith(local)
    cached = client.get("/jsonldContexts", params={"kind": "Cached", "details": "true"}).json()
    assert all(c["kind"] == "Cached" for c in cached)
    assert CORE in [c["URL"] for c in cached]
    assert client.get("/jsonldContexts", params={"kind": "ImplicitlyCreated"}).json() == []
    for params in ({"kind": "other"}, {"details": "yes"}, {"details": "true", "kind": "hosted"}):
        problem(client.get("/jsonldContexts", params=params), 400, "BadRequestData")


def test_add_rejects_bad_documents(client: httpx.Client) -> None:
    """5.13.2.4: no @context member or bad JSON is InvalidRequest; a bad @context value is
    BadRequestData; nothing is stored either way."""
    problem(client.post("/jsonldContexts", json={"A1": "urn:a1"}), 400, "InvalidRequest")
    problem(
        client.post(
            "/jsonldContexts",
            content=b'{"@context": {',
            headers={"Content-Type": "application/json"},
        ),
        400,
        "InvalidRequest",
    )
    for bad in (7, True, ["https://example.org/c.jsonld", 7], {"t": 5}):
        r = client.post("/jsonldContexts", json={"@context": bad})
        problem(r, 400, "BadRequestData")
        assert "Location" not in r.headers
    assert client.get("/jsonldContexts", params={"kind": "Hosted"}).json() == []


def test_hosted_contexts_are_private_to_their_tenant(
    platform: PlatformProcess, client: httpx.Client
) -> None:
    """5.5.10 with 5.13.3-5.13.5: another tenant can neither serve, list nor delete it."""
    local = add(client, {"TenantPrivateTerm": "urn:private"})
    other = {"NGSILD-Tenant": "x" + uuid.uuid4().hex[:10]}
    r = httpx.get(f"{platform.api}/jsonldContexts/{local}", headers=other)
    problem(r, 404, "ResourceNotFound")
    assert "TenantPrivateTerm" not in r.text
    r = httpx.get(f"{platform.api}/jsonldContexts?details=true", headers=other)
    assert r.status_code == 200
    assert local not in r.text
    problem(
        httpx.delete(f"{platform.api}/jsonldContexts/{local}", headers=other),
        404,
        "ResourceNotFound",
    )
    assert client.get(f"/jsonldContexts/{local}").status_code == 200


def test_hosted_context_is_used_by_link_and_counts_hits(
    platform: PlatformProcess, client: httpx.Client
) -> None:
    """5.13.4: a hosted @context named in a Link header expands terms; numberOfHits counts it."""
    local = add(client, {"speed": "https://example.org/vocab/speed"})
    url = f"{platform.api}/jsonldContexts/{local}"
    ent = {"id": "urn:ngsi-ld:Car:h1", "type": "Car", "speed": {"type": "Property", "value": 3}}
    r = client.post("/entities", json=ent, headers={"Link": LINK.format(url)})
    assert r.status_code == 201, r.text
    got = client.get("/entities/urn:ngsi-ld:Car:h1").json()  # core context only: full IRI
    assert "https://example.org/vocab/speed" in got
    info = client.get(f"/jsonldContexts/{local}", params={"details": "true"}).json()
    assert info["numberOfHits"] == 1
    assert "lastUsage" in info


def test_core_context_cannot_be_deleted_but_reloads(client: httpx.Client) -> None:
    """5.13.5: deleting the core @context is BadRequestData; reload=true reloads it (204)."""
    problem(client.delete("/jsonldContexts/" + CORE), 400, "BadRequestData")
    assert client.delete("/jsonldContexts/" + CORE, params={"reload": "true"}).status_code == 204
    info = client.get("/jsonldContexts/" + CORE, params={"details": "true"}).json()
    assert info["kind"] == "Cached"
    assert info["URL"] == CORE


def test_delete_reload_errors(client: httpx.Client) -> None:
    """5.13.5: reload=true on a non-Cached or unknown id is BadRequestData; reload=xxx too."""
    local = add(client, {"C1": "urn:c1"})
    problem(
        client.delete(f"/jsonldContexts/{local}", params={"reload": "true"}), 400, "BadRequestData"
    )
    problem(client.delete("/jsonldContexts/nope", params={"reload": "true"}), 400, "BadRequestData")
    problem(client.delete("/jsonldContexts/nope", params={"reload": "xxx"}), 400, "BadRequestData")
    problem(
        client.delete("/jsonldContexts/nope", params={"reload": "false"}), 404, "ResourceNotFound"
    )


def test_core_terms_keep_their_meaning_whatever_the_position(client: httpx.Client) -> None:
    """CIM 009 4.4 / 5.5.7: the core @context is protected and has absolute precedence, even
    when a user @context placed after it names a core term (`location` is ngsi-ld:location);
    `name` is no core term (Annex B), so a Smart Data Models @context defines it."""
    ctx = {"location": "https://example.org/location", "name": "https://smartdatamodels.org/name"}
    ent = {
        "id": "urn:ngsi-ld:Thing:n1",
        "type": "Thing",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}},
        "name": {"type": "Property", "value": "x"},
        "@context": [CORE, ctx],  # JSON-LD alone would let the later definition win
    }
    h = {"Content-Type": "application/ld+json"}
    r = client.post("/entities", json=ent, headers=h)
    assert r.status_code == 201, r.text
    plain = client.get("/entities/urn:ngsi-ld:Thing:n1").json()
    assert plain["location"]["value"]["type"] == "Point", plain  # still the core term
    assert "https://example.org/location" not in plain
    assert plain["https://smartdatamodels.org/name"]["value"] == "x", plain  # the user's term
    r = client.get("/entities", params={"type": "Thing", "q": 'name=="x"'})  # default vocab
    assert r.json() == [], r.text


def test_scoped_user_context_is_refused(client: httpx.Client) -> None:
    """5.5.7: a user @context shall not contain JSON-LD scoped contexts (BadRequestData), on a
    request and on Add @context alike."""
    scoped = {"wrap": {"@id": "https://example.org/wrap", "@context": {"name": "urn:x:name"}}}
    ent = {"id": "urn:ngsi-ld:Thing:sc", "type": "Thing", "@context": [scoped, CORE]}
    r = client.post("/entities", json=ent, headers={"Content-Type": "application/ld+json"})
    problem(r, 400, "BadRequestData")
    problem(client.post("/jsonldContexts", json={"@context": scoped}), 400, "BadRequestData")


def test_v19_core_context_url_is_the_shipped_copy(client: httpx.Client) -> None:
    """The v1.9 core context URL resolves locally (never fetched), as v1.8 does."""
    ent = {"id": "urn:ngsi-ld:Thing:v19", "type": "Thing", "@context": CORE_19}
    r = client.post("/entities", json=ent, headers={"Content-Type": "application/ld+json"})
    assert r.status_code == 201, r.text
    r = client.get("/entities/urn:ngsi-ld:Thing:v19", headers={"Link": LINK.format(CORE_19)})
    assert r.status_code == 200
    assert r.json()["type"] == "Thing"


def test_remote_context_is_fetched_once_cached_and_reloaded(
    client: httpx.Client, remote: str
) -> None:
    """5.13.1: a remote @context is fetched once and becomes a Cached entry; reload=true
    fetches it again; delete drops it."""
    url = remote + "/ctx.jsonld"
    for n in range(2):
        ent = {"id": f"urn:ngsi-ld:Car:r{n}", "type": "Car", "remoteTerm": 1}
        r = client.post("/entities", json=ent, headers={"Link": LINK.format(url)})
        assert r.status_code == 201, r.text
    assert _Served.hits["/ctx.jsonld"] == 1
    info = client.get("/jsonldContexts/" + url, params={"details": "true"}).json()
    assert info["kind"] == "Cached"
    assert info["URL"] == url
    assert info["numberOfHits"] == 2
    assert client.delete("/jsonldContexts/" + url, params={"reload": "true"}).status_code == 204
    assert _Served.hits["/ctx.jsonld"] == 2
    assert client.delete("/jsonldContexts/" + url).status_code == 204
    problem(client.get("/jsonldContexts/" + url), 404, "ResourceNotFound")


def test_remote_context_limits(client: httpx.Client, remote: str) -> None:
    """5.5.2: a remote @context over 1 MiB, unreachable or not JSON is LdContextNotAvailable."""
    for path in ("/big.jsonld", "/bad.jsonld", "/missing.jsonld"):
        ent = {"id": "urn:ngsi-ld:Car:lim", "type": "Car"}
        r = client.post("/entities", json=ent, headers={"Link": LINK.format(remote + path)})
        body = problem(r, 503, "LdContextNotAvailable")
        assert path in body["detail"]


@pytest.mark.parametrize("remote_allowed", [False])
def test_no_remote_contexts_and_context_dir(
    tmp_path: Path, remote: str, remote_allowed: bool
) -> None:
    """--no-remote-contexts refuses remote URLs (503) while --context-dir files resolve by
    their served path and by the URLs they name, and are served under /ngsi-ld/contexts/."""
    standin = remote + "/ctx.jsonld"
    (tmp_path / "city.jsonld").write_text(
        json.dumps({"url": standin, "@context": {"flow": "https://example.org/flow"}})
    )
    proc = PlatformProcess()
    proc.process.spec = _with_args(proc, ["--context-dir", str(tmp_path)])
    proc.start()
    try:
        headers = {"NGSILD-Tenant": "t" + uuid.uuid4().hex[:10]}
        served = httpx.get(proc.base + "/ngsi-ld/contexts/city.jsonld")
        assert served.status_code == 200
        assert "flow" in served.text
        before = _Served.hits.get("/ctx.jsonld", 0)
        for n, url in enumerate((standin, "http://[::1]:9/ngsi-ld/contexts/city.jsonld")):
            ent = {"id": f"urn:ngsi-ld:Road:{n}", "type": "Road", "flow": 1}
            h = {**headers, "Link": LINK.format(url)}
            assert httpx.post(proc.api + "/entities", json=ent, headers=h).status_code == 201
            got = httpx.get(proc.api + f"/entities/urn:ngsi-ld:Road:{n}", headers=headers).json()
            assert "https://example.org/flow" in got
        assert _Served.hits.get("/ctx.jsonld", 0) == before  # never fetched
        h = {**headers, "Link": LINK.format(remote + "/slow.jsonld")}
        r = httpx.post(proc.api + "/entities", json={"id": "urn:x:1", "type": "T"}, headers=h)
        problem(r, 503, "LdContextNotAvailable")
    finally:
        proc.stop()
        proc.process.close()


def _with_args(proc: PlatformProcess, extra: list[str]) -> Any:
    """The platform's ProcessSpec with --no-remote-contexts and ``extra`` arguments."""
    import dataclasses  # noqa: PLC0415

    spec = proc.process.spec
    return dataclasses.replace(spec, argv=(*spec.argv, "--no-remote-contexts", *extra))


async def test_fetch_has_a_time_limit(remote: str) -> None:
    """A remote @context not answered within the time limit is LdContextNotAvailable, and the
    wait does not block the event loop (another task runs meanwhile)."""
    import asyncio  # noqa: PLC0415

    from city_platform.errors import LdContextNotAvailable  # noqa: PLC0415
    from city_platform.ldcontext import ContextResolver  # noqa: PLC0415

    resolver = ContextResolver(timeout=0.5)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.ensure_future(tick())
    started = time.monotonic()
    with pytest.raises(LdContextNotAvailable, match=r"within 0\.5 s"):
        await resolver.resolve(remote + "/slow.jsonld")
    ticker.cancel()
    assert time.monotonic() - started < 2
    assert ticks >= 5


async def test_protected_terms_cannot_be_redefined() -> None:
    """JSON-LD 1.1 4.1.11: a term a user context protects keeps its IRI against a later user
    context (BadRequestData); a core term keeps its IRI silently, whatever the user says."""
    from city_platform.errors import BadRequestData  # noqa: PLC0415
    from city_platform.ldcontext import ContextResolver  # noqa: PLC0415

    resolver = ContextResolver(allow_remote=False)
    guarded = {"@protected": True, "lock": "https://example.org/lock"}
    with pytest.raises(BadRequestData, match="protected term 'lock'"):
        await resolver.resolve([guarded, {"lock": "https://evil.example/lock"}])
    same = await resolver.resolve([guarded, {"lock": "https://example.org/lock"}])
    assert same.expand("lock") == "https://example.org/lock"
    ctx = await resolver.resolve({"location": "https://evil.example/loc", "x": "urn:x"})
    assert ctx.expand("location") == "https://uri.etsi.org/ngsi-ld/location"  # core wins, 5.5.7
    assert ctx.expand("x") == "urn:x"
    ctx = await resolver.resolve({"name": "https://smartdatamodels.org/name"})
    assert ctx.expand("name") == "https://smartdatamodels.org/name"  # no core term (Annex B)
    assert ctx.expand("observedAt") == "https://uri.etsi.org/ngsi-ld/observedAt"


def test_subscription_inline_context_is_implicitly_created_and_durable(tmp_path: Path) -> None:
    """5.13.1: a subscription made with an inline @context keeps it as an ImplicitlyCreated
    entry (the URL its notifications name in their Link header); stored, it is still served
    after a restart, as a Hosted one is."""
    proc = PlatformProcess(db=str(tmp_path / "city.db"))
    proc.start()
    headers = {"NGSILD-Tenant": "t" + uuid.uuid4().hex[:10]}
    sub = {
        "id": "urn:ngsi-ld:Subscription:implicit",
        "type": "Subscription",
        "entities": [{"type": "Road"}],
        "notification": {"endpoint": {"uri": "http://[::1]:9/notify"}},
        "@context": [{"flow": "https://example.org/flow"}, CORE],
    }
    try:
        h = {**headers, "Content-Type": "application/ld+json"}
        r = httpx.post(proc.api + "/subscriptions", content=json.dumps(sub), headers=h)
        assert r.status_code == 201, r.text
        url = f"{proc.api}/jsonldContexts"
        implicit = httpx.get(url, params={"kind": "ImplicitlyCreated"}, headers=headers).json()
        assert len(implicit) == 1, implicit
        hosted = {"@context": {"kept": "https://example.org/kept"}}
        r = httpx.post(url, json=hosted, headers=headers)
        assert r.status_code == 201, r.text
        location = r.headers["Location"]
        proc.stop()
        proc.start()
        again = httpx.get(url, params={"kind": "ImplicitlyCreated"}, headers=headers).json()
        assert again == implicit
        kept = httpx.get(proc.base + location, headers=headers)  # Hosted ones are stored too
        assert kept.status_code == 200, kept.text
        assert kept.json() == hosted
        served = httpx.get(implicit[0], headers=headers)
        assert served.status_code == 200, served.text
        assert "https://example.org/flow" in served.text
    finally:
        proc.stop()
        proc.process.close()


def test_add_fetches_the_remote_contexts_it_names(client: httpx.Client, remote: str) -> None:
    """5.13.2.4 with 5.13.1: a hosted @context naming a remote URL is processed on Add; the
    remote one becomes a Cached entry; one that cannot be retrieved is LdContextNotAvailable
    and nothing is stored."""
    url = remote + "/added.jsonld"
    local = add(client, [url, {"localTerm": "https://example.org/localTerm"}])
    assert _Served.hits["/added.jsonld"] == 1
    info = client.get("/jsonldContexts/" + url, params={"details": "true"}).json()
    assert info["kind"] == "Cached", info
    assert client.get(f"/jsonldContexts/{local}").json()["@context"][0] == url
    r = client.post("/jsonldContexts", json={"@context": [remote + "/missing.jsonld"]})
    problem(r, 503, "LdContextNotAvailable")
    assert "Location" not in r.headers
    assert len(client.get("/jsonldContexts", params={"kind": "Hosted"}).json()) == 1
    guarded = {"@protected": True, "lockedTerm": "https://example.org/locked"}
    r = client.post("/jsonldContexts", json={"@context": [guarded, {"lockedTerm": "urn:x"}]})
    problem(r, 400, "BadRequestData")


def test_serve_and_delete_by_url_encoded_id(
    platform: PlatformProcess, client: httpx.Client
) -> None:
    """5.13.4/5.13.5: the id of Serve and Delete may be the (URL-encoded) URL of the @context,
    ours for a hosted one (as the ETSI suite sends it) or the remote one for a Cached one."""
    local = add(client, {"EncTerm": "urn:enc"})
    ours = quote(f"{platform.api}/jsonldContexts/{local}", safe="")
    r = client.get(f"/jsonldContexts/{ours}")
    assert r.status_code == 200, r.text
    assert r.json() == {"@context": {"EncTerm": "urn:enc"}}
    core = client.get("/jsonldContexts/" + quote(CORE, safe=""), params={"details": "true"})
    assert core.status_code == 200, core.text
    assert core.json()["kind"] == "Cached"
    assert client.delete(f"/jsonldContexts/{ours}").status_code == 204
    problem(client.get(f"/jsonldContexts/{local}"), 404, "ResourceNotFound")


def test_failed_reload_keeps_the_cached_context(client: httpx.Client, remote: str) -> None:
    """5.13.5.4: when the reload download fails it is LdContextNotAvailable and the Cached
    @context stays (served, still resolving requests); a plain delete then removes it."""
    url = remote + "/flaky.jsonld"
    ent = {"id": "urn:ngsi-ld:Car:flaky", "type": "Car", "remoteTerm": 1}
    assert client.post("/entities", json=ent, headers={"Link": LINK.format(url)}).status_code == 201
    r = client.delete("/jsonldContexts/" + url, params={"reload": "true"})
    problem(r, 503, "LdContextNotAvailable")
    info = client.get("/jsonldContexts/" + url, params={"details": "true"})
    assert info.status_code == 200, info.text
    assert info.json()["kind"] == "Cached"
    ent2 = {**ent, "id": "urn:ngsi-ld:Car:flaky2"}
    assert (
        client.post("/entities", json=ent2, headers={"Link": LINK.format(url)}).status_code == 201
    )
    assert client.delete("/jsonldContexts/" + url).status_code == 204
    problem(client.get("/jsonldContexts/" + url), 404, "ResourceNotFound")


def test_cached_entries_are_bounded_and_the_core_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most MAX_ENTRIES Cached copies are kept: the oldest fetched one makes room, the
    shipped core @context never does."""
    from city_platform import ldregistry  # noqa: PLC0415
    from city_platform.ldcontext import ContextResolver  # noqa: PLC0415

    monkeypatch.setattr(ldregistry, "MAX_ENTRIES", 3)
    registry = ContextResolver(allow_remote=False).registry
    for n in range(5):
        registry.note_cached(f"https://example.org/{n}.jsonld", {"@context": {}})
    cached = [e.url for e in registry.visible("t", "Cached")]
    assert cached == [CORE, "https://example.org/3.jsonld", "https://example.org/4.jsonld"]


def test_context_embedded_in_an_attribute_is_refused(client: httpx.Client) -> None:
    """5.5.7: a user @context only at the top level; one embedded into an Attribute (or a
    sub-attribute, or an entity of a batch) is BadRequestData; a JsonProperty's json member is
    native JSON and may hold any key."""
    inner = {"type": "Property", "value": 1, "@context": {"a": "urn:x:a"}}
    for body in (
        {"id": "urn:ngsi-ld:T:e1", "type": "T", "a": inner},
        {"id": "urn:ngsi-ld:T:e2", "type": "T", "a": {"type": "Property", "value": 1, "s": inner}},
    ):
        problem(client.post("/entities", json=body), 400, "BadRequestData")
    batch = [{"id": "urn:ngsi-ld:T:e3", "type": "T", "a": inner}]
    problem(client.post("/entityOperations/create", json=batch), 400, "BadRequestData")
    ok = {
        "id": "urn:ngsi-ld:T:e4",
        "type": "T",
        "j": {"type": "JsonProperty", "json": {"@context": "kept as data"}},
    }
    r = client.post("/entities", json=ok)
    assert r.status_code == 201, r.text
    ld = {"id": "urn:ngsi-ld:T:e5", "type": "T", "@context": CORE}
    r = client.post("/entities", json=ld, headers={"Content-Type": "application/ld+json"})
    assert r.status_code == 201, r.text


def test_at_id_and_at_type_stand_for_id_and_type(client: httpx.Client) -> None:
    """CIM 009 4.4: the core @context maps id to @id and type to @type, so a request may use
    @id/@type (entity and Attributes); answers use id and type only; a typed value keeps its
    own @type."""
    when = {"@type": "DateTime", "@value": "2026-01-01T10:00:00Z"}
    body = {
        "@id": "urn:ngsi-ld:Thing:at1",
        "@type": "Thing",
        "speed": {"@type": "Property", "value": 3, "accuracy": {"@type": "Property", "value": 1}},
        "seen": {"@type": "Property", "value": when},
    }
    r = client.post("/entities", json=body)
    assert r.status_code == 201, r.text
    got = client.get("/entities/urn:ngsi-ld:Thing:at1").json()
    assert got["id"] == "urn:ngsi-ld:Thing:at1"
    assert got["type"] == "Thing"
    assert "@id" not in got
    assert "@type" not in got
    assert got["speed"]["type"] == "Property"
    assert got["speed"]["accuracy"] == {"type": "Property", "value": 1}
    assert got["seen"]["value"] == when
    found = client.get("/entities", params={"type": "Thing", "q": "speed==3"}).json()
    assert [e["id"] for e in found] == ["urn:ngsi-ld:Thing:at1"]
