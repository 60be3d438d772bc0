"""Every query parameter parser together, through the platform's real routes in process:
GET /entities, /temporal/entities and /entities/{id} with parameters drawn from their
grammars, POST /subscriptions and batch upserts with generated documents.  The answer is a
2xx or a 4xx ProblemDetails (CIM 009 5.5.2, 6.3.20), never a 500."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.fuzz.strategies import SCALARS, json_values, sometimes
from tests.fuzz.test_entities import BODIES, CONTEXTS, CORE, _dumps, documents
from tests.fuzz.test_query import GEORELS, SHAPES, queries, scope_queries

Platform = tuple[asyncio.Runner, httpx.AsyncClient]
SEED = [
    {"id": "urn:ngsi-ld:Building:1", "type": "Building", "scope": "/Madrid/Gardens",
     "temperature": {"type": "Property", "value": 21.5, "observedAt": "2026-01-01T00:00:00Z",
                     "unitCode": "CEL"},
     "name": {"type": "Property", "value": "north"},
     "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [-3.7, 40.4]}},
     "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:1"}},
    {"id": "urn:ngsi-ld:Person:1", "type": "Person", "name": {"type": "Property", "value": "A"}},
]  # fmt: skip
TIMES = st.one_of(
    st.sampled_from(["2026-01-01T00:00:00Z", "2025-12-31T23:59:59.999+01:00", "2026-01-01",
                     "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-13-01T00:00:00Z", ""]),
    st.text(max_size=8),
)  # fmt: skip
SMALL = st.one_of(st.sampled_from(["0", "1", "-1", "1000", "1001", "9" * 30, "x", ""]),
                  st.text(max_size=4))  # fmt: skip
ATTRS = st.lists(st.sampled_from(["temperature", "name", "owner", "location", "x", "", "@id"]),
                 max_size=3).map(",".join)  # fmt: skip
PARAMS: dict[str, st.SearchStrategy[str]] = {
    "type": st.sampled_from(["Building", "Person", "Building,Person", "(Building;Person)", "*",
                             "Building|", "", "a b"]),
    "id": st.sampled_from(["urn:ngsi-ld:Building:1", "urn:ngsi-ld:Building:1,urn:x", "x", ""]),
    "idPattern": st.sampled_from(["urn:.*", "(a+)+$", "[", ".*Building.*", ""]),
    "attrs": ATTRS,
    "q": queries(),
    "georel": GEORELS,
    "geometry": st.sampled_from(["Point", "Polygon", "LineString", "X"]),
    "coordinates": SHAPES.map(json.dumps),
    "geoproperty": st.sampled_from(["location", "name", "x", ""]),
    "limit": SMALL,
    "offset": SMALL,
    "count": st.sampled_from(["true", "false", "x"]),
    "options": st.sampled_from(["keyValues", "sysAttrs", "concise", "keyValues,concise", "x",
                                "temporalValues", "aggregatedValues", "aggregatedValues,sysAttrs"]),
    "format": st.sampled_from(["keyValues", "normalized", "x", "temporalValues",
                               "aggregatedValues"]),
    "pick": st.sampled_from(["id,name", "owner{name}", "{", "name}", "", "id|type"]),
    "omit": st.sampled_from(["type", "location", "x{y}", ""]),
    "scopeQ": scope_queries(),
    "datasetId": st.sampled_from(["@none", "urn:a", "x", ""]),
    "lang": st.sampled_from(["en", "*", "en,fr", "", "x;q=2"]),
    "join": st.sampled_from(["flat", "inline", "@none", "x"]),
    "joinLevel": SMALL,
    "timerel": st.sampled_from(["before", "after", "between", "x", ""]),
    "timeAt": TIMES,
    "endTimeAt": TIMES,
    "lastN": SMALL,
    "timeproperty": st.sampled_from(["observedAt", "createdAt", "modifiedAt", "x"]),
    "aggrMethods": st.lists(st.sampled_from(["totalCount", "sum", "avg", "min", "max", "x", ""]),
                            max_size=3).map(",".join),
    "aggrPeriodDuration": st.sampled_from(["PT1H", "P1D", "P1Y2M", "PT0S", "P", "PT", "1H",
                                           "P99999999999Y", "PT1.5S", "-PT1H", "P9000Y",
                                           "P1000000000D", "P999999999W", "P7973Y11M"]),
    "unknownParam": st.just("1"),
}  # fmt: skip


TEMPORAL = {"timerel", "timeAt", "endTimeAt", "lastN", "timeproperty", "aggrMethods",
            "aggrPeriodDuration"}  # fmt: skip
PATHS = ["/entities", "/temporal/entities", "/entities/urn:ngsi-ld:Building:1",
         "/temporal/entities/urn:ngsi-ld:Building:1", "/types", "/attributes"]  # fmt: skip


ACCEPTS = st.sampled_from(
    [
        "application/geo+json",
        "application/ld+json",
        "text/html",
        "*/*",
        "application/*;q=0.5",
        "application/json;q=nan",
        "x;q=inf",
        ";",
        "",
    ]
)
LINKS = st.one_of(
    st.sampled_from([
        f'<{CORE}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"',
        '<http://unknown.invalid/c.jsonld>; rel="http://www.w3.org/ns/json-ld#context"',
        '<>; rel="http://www.w3.org/ns/json-ld#context"', "<", '<a>;rel=', ",,,",
    ]),
    st.text(max_size=20),
)  # fmt: skip


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    """A path and its parameters: mostly the ones it takes, now and then a foreign one, a
    value of none of the grammars, or an entity query's required type missing."""
    path = draw(st.sampled_from(PATHS))
    own = sorted(set(PARAMS) - {"unknownParam"} - (set() if "temporal" in path else TEMPORAL))
    pool = st.sampled_from(sorted(PARAMS)) if sometimes(draw, 8) else st.sampled_from(own)
    names = draw(st.lists(pool, max_size=4, unique=True))
    params = {}
    for name in names:
        garbage = sometimes(draw, 8)
        params[name] = draw(st.text(max_size=6) if garbage else PARAMS[name])
    if path.endswith("entities") and not sometimes(draw, 8):
        params.setdefault("type", "Building")
    if "timerel" in params and not sometimes(draw, 4):
        params.setdefault("timeAt", "2026-01-01T00:00:00Z")
    return path, params


@pytest.fixture(scope="module")
def seeded(platform: Platform) -> Platform:
    runner, http = platform
    posted = runner.run(http.post("/entityOperations/upsert", json=SEED))
    assert posted.status_code in (201, 204), posted.text
    return platform


def _problem_or_success(answer: httpx.Response) -> None:
    """A 2xx, a 4xx ProblemDetails, or the one 5xx CIM 009 5.5.2 defines for the client's
    input: 503 LdContextNotAvailable (an @context URL the platform will not fetch)."""
    if answer.status_code >= 400 and answer.content:
        assert "type" in answer.json(), answer.text  # a ProblemDetails (RFC 7807)
    if answer.status_code == 503:
        assert answer.json()["type"].endswith("/LdContextNotAvailable"), answer.text
    else:
        assert answer.status_code < 500, (answer.request.url, answer.text)


@settings(max_examples=150)
@given(
    request=requests(),
    headers=st.fixed_dictionaries(
        {},
        optional={
            "Accept": st.one_of(ACCEPTS, st.lists(ACCEPTS, max_size=3).map(", ".join)),
            "Link": LINKS,
            "NGSILD-Tenant": st.sampled_from(["", "t1", "a b", "x" * 300, "../x", "é"]),
        },
    ),
)  # fmt: skip
@example(request=("/entities", {"type": "Building", "limit": "9" * 30}), headers={})
# Periods past the year 9999 from the oldest instance (2026): an OverflowError (500) before.
@example(request=("/temporal/entities", {"type": "Building", "options": "aggregatedValues",
         "aggrMethods": "sum", "aggrPeriodDuration": "P9000Y"}), headers={})  # fmt: skip
@example(request=("/temporal/entities/urn:ngsi-ld:Building:1", {"format": "aggregatedValues",
         "aggrMethods": "max", "aggrPeriodDuration": "P1000000000D"}), headers={})  # fmt: skip
def test_queries_answer_a_result_or_a_problem(
    seeded: Platform, request: tuple[str, dict[str, str]], headers: dict[str, str]
) -> None:
    runner, http = seeded
    path, params = request
    raw = {name: value.encode() for name, value in headers.items()}  # UTF-8 bytes on the wire

    _problem_or_success(runner.run(http.get(path, params=params, headers=raw)))


SUBSCRIPTION_MEMBERS: dict[str, st.SearchStrategy[Any]] = {
    "id": st.sampled_from(["urn:ngsi-ld:Subscription:x", "x", 5]),
    "type": st.sampled_from(["Subscription", "X"]),
    "entities": st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["Building", "", "a b"])},
            optional={
                "id": st.sampled_from(["urn:a", "x"]),
                "idPattern": st.sampled_from([".*", "["]),
            },
        ),
        max_size=2,
    ),
    "watchedAttributes": st.lists(st.sampled_from(["temperature", "", "x y"]), max_size=2),
    "q": queries(),
    "geoQ": st.fixed_dictionaries(
        {"georel": GEORELS, "geometry": st.sampled_from(["Point", "Polygon"]),
         "coordinates": SHAPES}
    ),
    "scopeQ": scope_queries(),
    "notification": st.fixed_dictionaries(
        {"endpoint": st.fixed_dictionaries(
            {"uri": st.sampled_from(["http://[::1]:9/notify", "ftp://x", "", "http://"])},
            optional={"accept": st.sampled_from(["application/json", "x"]),
                      "receiverInfo": st.lists(st.fixed_dictionaries(
                          {"key": st.sampled_from(["Authorization", ""]),
                           "value": st.text(max_size=5)}
                      ), max_size=2)},
        )},
        optional={"format": st.sampled_from(["keyValues", "x"]),
                  "attributes": st.lists(st.text(max_size=4))},
    ),
    "throttling": st.one_of(st.integers(-1, 10), st.floats(), st.text(max_size=2)),
    "timeInterval": st.one_of(st.integers(-1, 10), st.floats()),
    "expiresAt": TIMES,
    "isActive": st.one_of(st.booleans(), st.text(max_size=2)),
    "@context": CONTEXTS,
}  # fmt: skip


@st.composite
def subscriptions(draw: st.DrawFn) -> bytes:
    names = draw(st.lists(st.sampled_from(sorted(SUBSCRIPTION_MEMBERS)), max_size=6, unique=True))
    doc = {"type": "Subscription", "entities": [{"type": "Building"}]}
    doc["notification"] = {"endpoint": {"uri": "http://[::1]:9/notify"}}
    for name in names:
        bad = sometimes(draw, 10)
        doc[name] = draw(json_values(leaves=4) if bad else SUBSCRIPTION_MEMBERS[name])
    return json.dumps(doc, default=bytes.hex).encode()


@settings(max_examples=100)
@given(body=subscriptions(), ld=st.booleans())
@example(body=_dumps({"type": "Subscription", "entities": [{"type": "Building"}],
                      "notification": {"endpoint": {"uri": "http://[::1]:9/notify",
                                       "receiverInfo": [{"key": "X", "value": "é"}]}}}),
         ld=False)  # fmt: skip
def test_subscriptions_are_created_or_refused(seeded: Platform, body: bytes, ld: bool) -> None:
    runner, http = seeded
    headers = {"Content-Type": "application/ld+json" if ld else "application/json"}
    answer = runner.run(http.post("/subscriptions", content=body, headers=headers))
    _problem_or_success(answer)
    if answer.status_code == 201:
        # What was accepted can be delivered: receiverInfo pairs become HTTP headers (5.2.15).
        endpoint = json.loads(body).get("notification", {}).get("endpoint", {})
        pairs = [(i["key"], i["value"]) for i in endpoint.get("receiverInfo", [])]
        if str(endpoint.get("uri", "")).startswith("http"):
            httpx.Request("POST", "http://[::1]:9/notify", headers=pairs)
        location = answer.headers["Location"].removeprefix("/ngsi-ld/v1")
        _problem_or_success(runner.run(http.get(location)))
        runner.run(http.delete(location))


@settings(max_examples=80)
@given(
    batch=st.one_of(st.lists(documents(), max_size=3).map(_dumps), BODIES),
    operation=st.sampled_from(["upsert", "create", "update", "delete", "merge"]),
    patch=documents().map(_dumps),
)  # fmt: skip
def test_batches_and_patches_answer_a_result_or_a_problem(
    seeded: Platform, batch: bytes, operation: str, patch: bytes
) -> None:
    runner, http = seeded
    headers = {"Content-Type": "application/json"}
    answer = runner.run(http.post(f"/entityOperations/{operation}", content=batch, headers=headers))
    _problem_or_success(answer)
    for method, path in (("PATCH", "/entities/urn:ngsi-ld:Person:1/attrs"),
                         ("POST", "/entities/urn:ngsi-ld:Person:1/attrs"),
                         ("PATCH", "/entities/urn:ngsi-ld:Person:1")):  # fmt: skip
        merge = {"Content-Type": "application/merge-patch+json"} if path.endswith(":1") else {}
        sent = runner.run(http.request(method, path, content=patch, headers=headers | merge))
        _problem_or_success(sent)


QUERY_MEMBERS: dict[str, st.SearchStrategy[Any]] = {
    "entities": SUBSCRIPTION_MEMBERS["entities"],
    "attrs": st.lists(st.sampled_from(["temperature", "name", "", "a b"]), max_size=2),
    "q": queries(),
    "geoQ": SUBSCRIPTION_MEMBERS["geoQ"],
    "scopeQ": scope_queries(),
    "joinLevel": st.one_of(st.integers(-1, 20), st.text(max_size=2)),
    "temporalQ": st.fixed_dictionaries(
        {},
        optional={name: PARAMS[name] for name in sorted(TEMPORAL - {"lastN"})}
        | {"lastN": st.one_of(st.integers(-1, 10**6), st.text(max_size=2))},
    ),
}


@st.composite
def query_bodies(draw: st.DrawFn) -> bytes:
    doc: dict[str, Any] = {"type": "Query" if not sometimes(draw, 10) else "X"}
    if not sometimes(draw, 5):
        doc["entities"] = [{"type": "Building"}]
    for name in draw(st.lists(st.sampled_from(sorted(QUERY_MEMBERS)), max_size=4, unique=True)):
        doc[name] = draw(json_values(leaves=4) if sometimes(draw, 10) else QUERY_MEMBERS[name])
    return _dumps(doc)


@settings(max_examples=100)
@given(
    body=query_bodies(),
    temporal=st.booleans(),
    params=st.sampled_from([{}, {"options": "aggregatedValues"}, {"limit": "1"}, {"x": "1"}]),
    created=BODIES,
)
@example(
    body=_dumps({"type": "Query", "entities": [{"type": "Building"}],
                 "temporalQ": {"aggrMethods": ["sum"], "aggrPeriodDuration": "P9000Y"}}),
    temporal=True, params={}, created=b"{}",
)  # fmt: skip
def test_query_bodies_and_temporal_creation_answer_a_result_or_a_problem(
    seeded: Platform, body: bytes, temporal: bool, params: dict[str, str], created: bytes
) -> None:
    runner, http = seeded
    headers = {"Content-Type": "application/json"}
    path = "/temporal/entityOperations/query" if temporal else "/entityOperations/query"
    _problem_or_success(runner.run(http.post(path, content=body, params=params, headers=headers)))
    # Create Temporal Representation (5.6.11) writes the instances' observedAt into history.
    _problem_or_success(
        runner.run(http.post("/temporal/entities", content=created, headers=headers))
    )


REGISTRATION_MEMBERS: dict[str, st.SearchStrategy[Any]] = {
    "information": st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "entities": SUBSCRIPTION_MEMBERS["entities"],
                "propertyNames": st.lists(st.sampled_from(["temperature", "", "a b"]), max_size=2),
                "relationshipNames": st.lists(st.sampled_from(["owner", "x"]), max_size=2),
            },
        ),
        max_size=2,
    ),
    "endpoint": st.sampled_from(["http://[::1]:9", "ftp://x", "", "http://", "urn:x"]),
    "mode": st.sampled_from(["inclusive", "exclusive", "redirect", "auxiliary", "x"]),
    "operations": st.lists(st.sampled_from(["retrieveEntity", "queryEntity", "x", ""]), max_size=2),
    "location": st.one_of(SUBSCRIPTION_MEMBERS["geoQ"].map(
        lambda g: {"type": g["geometry"], "coordinates": g["coordinates"]}), json_values(leaves=3)),
    "observationInterval": st.fixed_dictionaries(
        {"startAt": TIMES}, optional={"endAt": TIMES, "x": st.just(1)}
    ),
    "expiresAt": TIMES,
    "contextSourceInfo": st.lists(st.fixed_dictionaries(
        {"key": st.sampled_from(["Authorization", "", "a b", "x"]),
         "value": st.sampled_from(["v", "\n", "é", ""])}), max_size=2),
    "management": st.fixed_dictionaries(
        {}, optional={"timeout": st.one_of(st.floats(), st.integers(), st.booleans()),
                      "cacheDuration": SCALARS}),
    "scope": st.one_of(scope_queries(), st.lists(st.text(max_size=4))),
    "brandName": json_values(leaves=3),  # a Context Source Property
    "@context": CONTEXTS,
}  # fmt: skip
HOSTED = st.one_of(
    CONTEXTS.map(lambda c: {"@context": c}),
    st.just({"@context": {"Building": "https://x.example/Building", "@version": 1.1}}),
    st.just({"@context": {"t": {"@id": "https://x.example/t", "@type": "@id"}}}),
    json_values(leaves=4),
)


@st.composite
def registrations(draw: st.DrawFn) -> bytes:
    doc: dict[str, Any] = {"type": "ContextSourceRegistration", "endpoint": "http://[::1]:9",
                           "information": [{"entities": [{"type": "Building"}]}]}  # fmt: skip
    for name in draw(st.lists(st.sampled_from(sorted(REGISTRATION_MEMBERS)), max_size=4,
                              unique=True)):  # fmt: skip
        bad = sometimes(draw, 10)
        doc[name] = draw(json_values(leaves=3) if bad else REGISTRATION_MEMBERS[name])
    return _dumps(doc)


@settings(max_examples=80)
@given(
    body=registrations(),
    hosted=HOSTED.map(_dumps),
    query=st.fixed_dictionaries({}, optional={
        "type": PARAMS["type"], "q": PARAMS["q"], "csf": PARAMS["q"], "georel": GEORELS,
        "geometry": PARAMS["geometry"], "coordinates": PARAMS["coordinates"],
        "timerel": PARAMS["timerel"], "timeAt": TIMES, "limit": SMALL}),
)  # fmt: skip
def test_registrations_and_hosted_contexts_answer_a_result_or_a_problem(
    seeded: Platform, body: bytes, hosted: bytes, query: dict[str, str]
) -> None:
    runner, http = seeded
    headers = {"Content-Type": "application/json"}
    made = runner.run(http.post("/csourceRegistrations", content=body, headers=headers))
    _problem_or_success(made)
    try:
        _problem_or_success(runner.run(http.get("/csourceRegistrations", params=query)))
        # With a registration in place the entity query is forwarded to it (a refused port).
        _problem_or_success(runner.run(http.get("/entities", params={"type": "Building"})))
    finally:
        if made.status_code == 201:
            runner.run(http.delete(made.headers["Location"].removeprefix("/ngsi-ld/v1")))
    stored = runner.run(http.post("/jsonldContexts", content=hosted, headers=headers))
    _problem_or_success(stored)
    if stored.status_code == 201:
        runner.run(http.delete(stored.headers["Location"].removeprefix("/ngsi-ld/v1")))


@pytest.mark.parametrize(
    "pair",
    [{"key": "X-Name", "value": "é"}, {"key": "a b", "value": "v"}, {"key": "X", "value": "a\nb"}],
)
def test_receiver_info_that_is_no_http_header_is_bad_request_data(
    seeded: Platform, pair: dict[str, str]
) -> None:
    """Regression: a receiverInfo pair that cannot be an HTTP header was stored, and every
    notification then failed (for 'é' a UnicodeEncodeError out of the notifier, logged with
    a traceback each time)."""
    runner, http = seeded
    endpoint = {"uri": "http://[::1]:9/notify", "receiverInfo": [pair]}
    doc = {"type": "Subscription", "entities": [{"type": "Building"}],
           "notification": {"endpoint": endpoint}}  # fmt: skip
    answer = runner.run(http.post("/subscriptions", json=doc))
    assert answer.status_code == 400, answer.text
    assert "receiverInfo" in answer.json()["detail"]


SEGMENTS = st.one_of(
    st.sampled_from(["urn:ngsi-ld:Building:1", "urn:ngsi-ld:Person:1", "x", "%2F", "%00", "..",
                     "%ZZ", "%C3%A9", "urn:a%2Fb", "a" * 300, "temperature", "@id"]),
    st.text(max_size=10).map(lambda t: quote(t, safe="")),
)  # fmt: skip


@settings(max_examples=100)
@given(
    method=st.sampled_from(["GET", "DELETE", "PATCH", "POST", "PUT"]),
    template=st.sampled_from(["/entities/{}", "/entities/{}/attrs/{}", "/entities/{}/attrs",
                              "/temporal/entities/{}/attrs/{}", "/subscriptions/{}",
                              "/csourceRegistrations/{}", "/types/{}", "/attributes/{}",
                              "/jsonldContexts/{}", "/entities/{}/attrs/{}/{}"]),
    segments=st.lists(SEGMENTS, min_size=3, max_size=3),
    body=st.one_of(st.just(b""), BODIES),
)  # fmt: skip
def test_paths_answer_a_result_or_a_problem(
    seeded: Platform, method: str, template: str, segments: list[str], body: bytes
) -> None:
    """Ids and names in the path, percent-encoded as clients send them (6.5.3, 6.6.3)."""
    runner, http = seeded
    path = template.format(*segments)
    if method == "DELETE" and segments[0] in ("urn:ngsi-ld:Building:1", "urn:ngsi-ld:Person:1"):
        method = "GET"  # keep the seeded entities for the other tests
    headers = {"Content-Type": "application/json"}
    _problem_or_success(runner.run(http.request(method, path, content=body, headers=headers)))


async def _raw_post(app: Any, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """One ASGI request with exactly these header bytes (httpx writes its own Length)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": [(b"host", b"p"), *headers],
             "client": ("::1", 1), "server": ("::1", 80)}  # fmt: skip
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))


@settings(max_examples=60)
@given(
    length=st.one_of(st.integers(0, 10**30).map(lambda n: str(n).encode()), st.binary(max_size=6),
                     st.sampled_from([b"\xb2", b"9" * 5000, b"", b"-1", b" 2"])),
    body=BODIES,
)  # fmt: skip
@example(length=b"\xb2", body=b"{}")  # '²' (latin-1): isdigit() then int() raised, a 500
@example(length=b"9" * 5000, body=b"{}")  # more digits than int() reads, a 500
def test_any_content_length_answers_a_status_under_500(
    seeded: Platform, length: bytes, body: bytes
) -> None:
    runner, http = seeded
    app = http._transport.app  # type: ignore[attr-defined]  # the ASGI app under the client
    headers = [(b"content-type", b"application/json"), (b"content-length", length)]
    status = runner.run(_raw_post(app, "/ngsi-ld/v1/entities", headers, body))
    assert status < 500
