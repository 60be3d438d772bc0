"""Entity documents as clients POST them: the platform stores them or answers a 4xx
ProblemDetails, never a 500 (CIM 009 5.5.2; limits in city_platform/limits.py).

Two levels: the pipeline's functions (parse within the nesting limit, resolve the @context,
validate and expand, render back) with many examples, and the real app in process (httpx
over ASGI, SQLite in memory) for POST /entities and GET of what was stored."""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from city_platform.entities import normalize_entity, now_iso, render_entity
from city_platform.errors import BadRequestData, PlatformError
from city_platform.ldcontext import ContextResolver
from city_platform.limits import MAX_JSON_DEPTH, loads_json
from tests.fuzz.strategies import NUMBERS, SCALARS, json_values, mostly, nested, sometimes

# DateTimes at the edges of what has a UTC form (years 1 and 9999 with offsets).
EDGE_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z"]
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
ATTR_TYPES = ["Property", "Relationship", "GeoProperty", "LanguageProperty", "ListProperty",
              "ListRelationship", "JsonProperty", "VocabProperty", "Nonsense"]  # fmt: skip
NAMES = st.one_of(
    st.sampled_from(["temperature", "location", "name", "refDevice", "@id", "@type", "a:b",
                     "https://x.example/t", "id", "scope", "createdAt", "observedAt"]),
    st.text(max_size=8),
)  # fmt: skip
URNS = st.text(alphabet="abcXYZ0189:-_.", max_size=8).map(lambda s: "urn:ngsi-ld:X:" + s)
VALUES = json_values(st.one_of(SCALARS, NUMBERS), leaves=8)
GEOMETRY = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["Point", "Polygon", "LineString", "GeometryCollection", "X"]),
        "coordinates": st.one_of(
            st.tuples(st.floats(-200, 200), st.floats(-100, 100)).map(list), VALUES
        ),
    }
)
CONTEXTS = st.one_of(
    st.just(CORE),
    st.sampled_from(["http://unknown.invalid/ctx.jsonld", "", "ngsi-ld", "urn:x"]),
    st.dictionaries(NAMES, st.one_of(st.text(max_size=10), VALUES), max_size=3),
    st.lists(
        st.one_of(st.just(CORE), st.dictionaries(NAMES, st.text(max_size=8), max_size=2)),
        max_size=3,
    ),
    st.just({"@vocab": "https://x.example/"}),
    st.just({"@protected": True, "temperature": "https://x.example/t"}),
    st.just({"temperature": {"@id": "https://x.example/t", "@context": {}}}),  # scoped
    VALUES,
)


@st.composite
def instances(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(ATTR_TYPES))
    inst: dict[str, Any] = {} if sometimes(draw, 10) else {"type": kind}
    member = {"Relationship": "object", "LanguageProperty": "languageMap",
              "ListProperty": "valueList", "ListRelationship": "objectList",
              "JsonProperty": "json", "VocabProperty": "vocab"}.get(kind, "value")  # fmt: skip
    if kind == "GeoProperty":
        inst["value"] = draw(mostly(GEOMETRY, VALUES))
    elif kind in ("Relationship", "ListRelationship"):
        inst[member] = draw(mostly(URNS if kind == "Relationship" else st.lists(URNS), VALUES))
    elif not sometimes(draw, 10):
        inst[member] = draw(VALUES)
    for extra in draw(st.lists(st.sampled_from(
        ["observedAt", "unitCode", "datasetId", "createdAt", "lang", "sub", "instanceId"]
    ), max_size=2)):  # fmt: skip
        inst[extra] = draw(
            st.one_of(
                st.sampled_from(["2026-01-01T00:00:00Z", "urn:a", "CEL", "x", *EDGE_TIMES]), SCALARS
            )
        )
    if sometimes(draw, 5):
        inst["sub"] = {"type": "Property", "value": draw(VALUES)}
    return draw(VALUES) if sometimes(draw, 10) else inst  # now and then a bare value


@st.composite
def documents(draw: st.DrawFn) -> Any:
    doc: dict[str, Any] = {}
    if not sometimes(draw, 10):
        doc["id"] = draw(mostly(URNS, st.one_of(st.text(max_size=8), SCALARS)))
    if not sometimes(draw, 10):
        doc["type"] = draw(
            mostly(st.sampled_from(["X", "Building", "a:b"]), st.one_of(VALUES, st.lists(NAMES)))
        )
    for name in draw(st.lists(NAMES, max_size=4)):
        doc[name] = draw(st.one_of(instances(), st.lists(instances(), max_size=2)))
    if sometimes(draw, 4):
        doc["@context"] = draw(CONTEXTS)
    if sometimes(draw, 6):
        doc["scope"] = draw(st.one_of(st.sampled_from(["/a", "/a/b", "a", "/"]), VALUES))
    if sometimes(draw, 10):  # nesting up to and past the limit
        depth = draw(st.integers(MAX_JSON_DEPTH - 3, MAX_JSON_DEPTH + 3))
        name = draw(st.sampled_from(["temperature", "deep"]))
        doc[name] = {"type": "Property", "value": nested(depth - 3, 1)}
    return draw(VALUES) if sometimes(draw, 20) else doc


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, default=lambda b: b.hex()).encode()


RESOLVER = ContextResolver(allow_remote=False)
Platform = tuple[asyncio.Runner, httpx.AsyncClient]


async def _pipeline(raw: bytes) -> None:
    doc = loads_json(raw, "request body")
    source = doc.get("@context") if isinstance(doc, dict) else None
    ctx = await RESOLVER.resolve(source)
    entity = normalize_entity(doc, ctx, now=now_iso())
    for mode in ("normalized", "keyValues", "concise"):
        orjson.dumps(render_entity(entity, ctx, mode=mode, sys_attrs=True))  # type: ignore[arg-type]


# The documents go in as JSON bytes: hypothesis prints an example by recursing into it, which
# overflows the stack at the nesting depths tested here.
BODIES = documents().map(_dumps)


@given(raw=BODIES)
@example(raw=_dumps({"id": "urn:ngsi-ld:X:1", "type": "X", "a": nested(MAX_JSON_DEPTH + 1, 1)}))
def test_entity_pipeline_stores_or_refuses(raw: bytes) -> None:
    with suppress(PlatformError):
        asyncio.run(_pipeline(raw))


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 1024, 1025, 5000])
def test_bodies_nested_past_the_limit_are_bad_request_data(depth: int) -> None:
    """Past MAX_JSON_DEPTH (and past orjson's own 1,024 levels) a body is BadRequestData; up
    to it the entity is valid."""
    # The entity is level 1, the attribute level 2, its value's arrays the rest.
    value = b"[" * (depth - 2) + b"1" + b"]" * (depth - 2)
    raw = b'{"id": "urn:ngsi-ld:X:1", "type": "X", "a": {"type": "Property", "value": %s}}' % value
    if depth <= MAX_JSON_DEPTH:
        asyncio.run(_pipeline(raw))
    else:
        with pytest.raises(BadRequestData, match="deeper than"):
            asyncio.run(_pipeline(raw))


@settings(max_examples=120)  # two HTTP requests each, in process
@given(raw=BODIES, ld=st.booleans(), tenant=st.sampled_from([None, "t1", "bad tenant"]))
@example(
    raw=_dumps({"id": "urn:ngsi-ld:X:deep", "type": "X", "a": nested(MAX_JSON_DEPTH - 2, 1)}),
    ld=False,
    tenant=None,
)
def test_post_entity_answers_201_or_a_problem(
    platform: Platform, raw: bytes, ld: bool, tenant: str | None
) -> None:
    runner, http = platform
    headers = {"Content-Type": "application/ld+json" if ld else "application/json"}
    if tenant:
        headers["NGSILD-Tenant"] = tenant
    posted = runner.run(http.post("/entities", content=raw, headers=headers))
    if posted.status_code != 201:
        assert posted.status_code >= 400, posted.text
        assert "type" in posted.json()  # a ProblemDetails (RFC 7807)
        # 4xx, or the 503 LdContextNotAvailable of an @context URL we do not fetch (5.5.2).
        if posted.status_code >= 500:
            assert posted.json()["type"].endswith("/LdContextNotAvailable"), posted.text
            assert posted.status_code == 503
        return
    location = posted.headers["Location"].removeprefix("/ngsi-ld/v1")
    got = runner.run(http.get(location, headers={"NGSILD-Tenant": tenant} if tenant else {}))
    assert got.status_code == 200, got.text
    runner.run(http.delete(location, headers={"NGSILD-Tenant": tenant} if tenant else {}))


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_observed_at_without_a_utc_form_is_bad_request_data(platform: Platform, when: str) -> None:
    """Found by test_entity_pipeline_stores_or_refuses' time filter sibling: a DateTime whose
    UTC form falls in the year 0 or 10000 made the history key overflow (500); now 400."""
    runner, http = platform
    doc = {"id": "urn:ngsi-ld:X:when", "type": "X",
           "a": {"type": "Property", "value": 1, "observedAt": when}}  # fmt: skip
    posted = runner.run(http.post("/entities", json=doc))
    assert posted.status_code == 400, posted.text
    assert posted.json()["type"].endswith("/BadRequestData")
    assert "in UTC" in posted.json()["detail"]
