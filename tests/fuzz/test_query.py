"""The platform's query languages from their grammars: q (CIM 009 4.9), geo-queries (4.10),
scopeQ (4.19), the type selection (4.17), pick/omit (4.21), datasetId, options, paging.  Each
parses or raises a PlatformError subclass (400/403, never 500), and what parses evaluates
against stored entities without raising."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from city_platform.api import params
from city_platform.errors import PlatformError
from city_platform.ldcontext import ContextResolver
from city_platform.limits import header_number
from city_platform.query import geo, linked_q, projection, q, scope, typeexpr
from tests.fuzz.strategies import json_values, mostly

CTX = ContextResolver(allow_remote=False).core
NAMES = st.one_of(
    st.sampled_from(["temperature", "name", "a", "b", "observedAt", "unitCode", "@id", "x:y"]),
    st.text(alphabet="abcXYZ019_@:#/-", min_size=1, max_size=6),
)
QUOTED = st.text(max_size=8).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"')
SINGLES = st.one_of(
    QUOTED,
    st.integers().map(str),
    st.floats(allow_nan=False).map(repr),
    st.sampled_from(
        [
            "true",
            "false",
            "1e999",
            "-0",
            ".5",
            "1.",
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-02-30",
            "2026-01-01",
            "25:00",
            "12:30:00Z",
            "9" * 400,
            "abc",
            "a(b",
            '"open',
            '"\\"',
        ]
    ),
)


def _value() -> st.SearchStrategy[str]:
    return st.one_of(
        SINGLES,
        st.lists(SINGLES, min_size=2, max_size=3).map(",".join),
        st.tuples(SINGLES, SINGLES).map(lambda p: f"{p[0]}..{p[1]}"),
    )


PATTERNS = st.one_of(
    st.sampled_from(["^a", "(a+)+$", "(?=x)", "\\1", "[", "a{1000}{1000}", "\\p{Greek}", "(?i)x"]),
    st.text(alphabet="ab()[]{}*+?|^$\\.,0-9", max_size=10),
)


@st.composite
def paths(draw: st.DrawFn) -> str:
    text = ".".join(draw(st.lists(NAMES, min_size=1, max_size=3)))
    for key in draw(st.lists(NAMES, max_size=2)):
        text += f"[{key}]"
    return text


@st.composite
def terms(draw: st.DrawFn) -> str:
    path = draw(paths())
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return path
    if choice == 1:
        return "!" + path
    if choice == 2:
        op = draw(st.sampled_from(["~=", "!~="]))
        pattern = draw(PATTERNS)
        quoted = '"' + pattern.replace('"', '\\"') + '"'
        return f"{path}{op}{draw(st.sampled_from([pattern, quoted]))}"
    op = draw(st.sampled_from((*q.OPS, "=", "===", "<>", "=~")))
    return f"{path}{op}{draw(_value())}"


def queries(depth: int = 3) -> st.SearchStrategy[str]:
    return st.recursive(
        terms(),
        lambda inner: st.one_of(
            st.lists(inner, min_size=2, max_size=3).map(";".join),
            st.lists(inner, min_size=2, max_size=3).map("|".join),
            inner.map(lambda t: f"({t})"),
            st.tuples(paths(), inner).map(lambda p: f"{p[0]}{{{p[1]}}}"),  # linked rel{...}
        ),
        max_leaves=6,
    )


@st.composite
def mangled_queries(draw: st.DrawFn) -> str:
    text = draw(queries())
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at] + draw(st.sampled_from([*list('()";|!=<>~.[]{}\\ ,'), "(" * 20])) + text[at:]
        )
    return text


INSTANCES = st.fixed_dictionaries(
    {"type": st.sampled_from(["Property", "Relationship", "LanguageProperty"])},
    optional={
        "value": json_values(leaves=6),
        "object": st.text(max_size=10),
        "languageMap": st.dictionaries(st.text(max_size=3), st.text(max_size=5)),
        "observedAt": st.sampled_from(["2026-01-01T00:00:00Z", "nope", "2026-01-01T00:00:00"]),
    },
)
ENTITIES = st.fixed_dictionaries(
    {
        "id": st.just("urn:ngsi-ld:X:1"),
        "type": st.just(["https://uri.etsi.org/ngsi-ld/default-context/X"]),
        "attrs": st.dictionaries(
            NAMES.map(CTX.expand), st.lists(INSTANCES, max_size=2), max_size=4
        ),
    }
)


@given(text=st.one_of(mangled_queries(), st.text(max_size=40)), entity=ENTITIES)
@example(text="a==" + "9" * 4090, entity={"attrs": {}})
@example(text="a~=" + "(" * 30, entity={"attrs": {}})
def test_q_parses_or_refuses_and_evaluates(text: str, entity: dict[str, Any]) -> None:
    try:
        if linked_q.has_linked_terms(text):
            linked_q._terms(text)
            return  # the rest is resolved against storage (linked_q.resolve)
        expr = q.parse_q(text, CTX.expand)
    except PlatformError:
        return
    expr.matches(entity)
    expr.attributes()


COORDS = st.recursive(
    st.one_of(st.floats(-200, 200), st.integers(-200, 200), st.floats(), st.booleans()),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=20,
)


@st.composite
def rings(draw: st.DrawFn) -> list[list[float]]:
    points = draw(
        st.lists(st.tuples(st.floats(-180, 180), st.floats(-90, 90)), min_size=3, max_size=5)
    )
    ring = [list(p) for p in points]
    return [*ring, ring[0]]


SHAPES = st.one_of(
    st.tuples(st.floats(-180, 180), st.floats(-90, 90)).map(list),
    st.lists(st.tuples(st.floats(-180, 180), st.floats(-90, 90)).map(list), min_size=1, max_size=4),
    rings().map(lambda r: [r]),
    rings().map(lambda r: [[r]]),
    st.just([[[0, 0], [0, 0], [0, 0], [0, 0]]]),  # a ring of one point
    st.just([[[0, 0], [1, 1], [2, 2], [0, 0]]]),  # a ring with no area
    COORDS,
)
GEORELS = st.one_of(
    st.sampled_from(sorted(geo.GEORELS)),
    st.sampled_from(
        [
            "near;maxDistance==100",
            "near;minDistance==1e400",
            "near;maxDistance==-1",
            "near;maxDistance==nan",
            "near",
            "within;maxDistance==1",
            "near;x==1",
            "near;maxDistance==1;minDistance==2",
            "near;maxDistance==inf",
        ]
    ),
    st.text(max_size=12),
)


@given(
    georel=mostly(GEORELS, st.none()),
    geometry=mostly(
        st.sampled_from(sorted(geo.GEOMETRIES)), st.one_of(st.none(), st.text(max_size=8))
    ),
    coordinates=mostly(SHAPES.map(json.dumps), st.one_of(st.none(), st.text(max_size=10))),
    target=st.one_of(
        st.fixed_dictionaries(
            {"type": st.sampled_from(sorted(geo.GEOMETRIES)), "coordinates": SHAPES}
        ),
        json_values(leaves=4),
    ),
)
@example(
    georel="near;maxDistance==10",
    geometry="Polygon",
    coordinates="[[[0,0],[0,0],[0,0],[0,0]]]",
    target=None,
)
@example(
    georel="within",
    geometry="Polygon",
    coordinates="[[[0,0],[1,1],[2,2],[0,0]]]",
    target={"type": "Point", "coordinates": [0, 0]},
)
@example(georel="near;maxDistance==10", geometry="Point", coordinates="[0, NaN]", target=None)
def test_geoquery_parses_or_refuses_and_evaluates(
    georel: str | None, geometry: str | None, coordinates: str | None, target: Any
) -> None:
    try:
        query = geo.parse_geoquery(georel=georel, geometry=geometry, coordinates=coordinates)
    except PlatformError:
        return
    if query is not None and isinstance(target, dict):
        query.matches(target)


@given(value=st.one_of(SHAPES.map(lambda c: {"type": "Polygon", "coordinates": c}), json_values()))
def test_geometry_validation_refuses_with_bad_request(value: Any) -> None:
    try:
        geo.validate_geometry(value)
        geo.to_shape(value)
    except PlatformError:
        pass


SCOPE_LEVELS = st.one_of(
    st.sampled_from(["Madrid", "Gardens", "+", "#", "", " "]), st.text(max_size=4)
)


@st.composite
def scope_queries(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        parts.append("/" + "/".join(draw(st.lists(SCOPE_LEVELS, max_size=3))))
    seps = draw(
        st.lists(st.sampled_from([";", ",", "|"]), min_size=len(parts) - 1, max_size=len(parts) - 1)
    )
    text = parts[0] + "".join(s + p for s, p in zip(seps, parts[1:], strict=True))
    return draw(st.sampled_from([text, f"({text})", f"({text}", f"{text})", "(" * 20 + text]))


@given(
    text=st.one_of(scope_queries(), st.text(max_size=20)),
    scopes=st.lists(st.text(max_size=10), max_size=3),
)
def test_scope_query_parses_or_refuses(text: str, scopes: list[str]) -> None:
    try:
        matcher = scope.parse_scope_query(text)
    except PlatformError:
        return
    matcher(scopes)


@given(
    raw=st.one_of(
        st.lists(st.one_of(scope_queries(), st.text(max_size=6)), max_size=3), json_values()
    )
)
def test_entity_scope_normalizes_or_refuses(raw: Any) -> None:
    with contextlib.suppress(PlatformError):
        scope.normalize_scope(raw)


TYPE_TOKENS = st.one_of(
    st.sampled_from(["Building", "Vehicle", "(", ")", ";", ",", "|", " ", "*", "a:b", "@x"]),
    st.text(max_size=4),
)


@given(text=st.one_of(st.lists(TYPE_TOKENS, max_size=8).map("".join), st.text(max_size=20)),
       types=st.lists(st.sampled_from(["Building", "Vehicle"]).map(CTX.expand)))  # fmt: skip
def test_type_selection_parses_or_refuses(text: str, types: list[str]) -> None:
    try:
        selection = typeexpr.parse_type_selection(text, CTX)
    except PlatformError:
        return
    if selection is not None:
        selection.matches(types)


PROJECTION_TOKENS = st.one_of(
    st.sampled_from(["id", "type", "name", "rel", "{", "}", ",", "|", " ", "@id"]),
    st.text(max_size=3),
)


@given(
    text=st.lists(PROJECTION_TOKENS, max_size=10).map("".join),
    which=st.sampled_from(["pick", "omit", "both"]),
    attrs=st.none() | st.just("a"),
    join=st.none() | st.sampled_from(["flat", "inline", "x"]),
    join_level=st.none() | st.sampled_from(["1", "0", "-1", "99", "x", "9" * 5000]),
    entity=json_values(leaves=8),
)
def test_projection_parses_or_refuses(
    text: str, which: str, attrs: str | None, join: str | None, join_level: str | None, entity: Any
) -> None:
    pick = text if which in ("pick", "both") else None
    omit = text if which in ("omit", "both") else None
    try:
        built = projection.build_projection(
            CTX, pick=pick, omit=omit, attrs=attrs, join=join, join_level=join_level
        )
    except PlatformError:
        return
    if built is not None and isinstance(entity, dict):
        built.apply(entity)


@given(
    value=st.none()
    | st.lists(
        st.sampled_from(["@none", "urn:a", "x", "", " ", "a:b c", "urn:ngsi-ld:Dataset:1"])
    ).map(",".join)
)
def test_dataset_ids_parse_or_refuse(value: str | None) -> None:
    with contextlib.suppress(PlatformError):
        projection.parse_dataset_ids(value)


NUMERIC = st.one_of(
    st.none(),
    st.integers().map(str),
    st.sampled_from(["", "1.5", "-0", " 7", "1_000", "9" * 5000, "٣"]),
    st.text(max_size=5),
)


@given(
    options=st.none()
    | st.lists(
        st.sampled_from(["keyValues", "simplified", "normalized", "concise", "sysAttrs", "x", ""])
    ).map(",".join),
    fmt=st.none() | st.sampled_from(["keyValues", "simplified", "normalized", "concise", "x"]),
    limit=NUMERIC,
    offset=NUMERIC,
    flag=st.none() | st.sampled_from(["true", "false", "True", "1", ""]),
)
def test_api_parameters_parse_or_refuse(
    options: str | None, fmt: str | None, limit: str | None, offset: str | None, flag: str | None
) -> None:
    for parse in (
        lambda: params.parse_options(options, fmt),
        lambda: params.parse_page(limit, offset),
        lambda: params.parse_bool(flag, "count"),
        lambda: params.count_header(flag, 3),
    ):
        with contextlib.suppress(PlatformError):
            parse()


ODD_NUMBERS = st.sampled_from(["²", "٣", "9" * 5000, " 1", "+1", "-1", "1_0"])


@given(
    value=st.one_of(st.none(), st.text(max_size=8), st.integers(0, 10**30).map(str), ODD_NUMBERS)
)
@example(value="²")  # isdigit() holds, int() refuses: a 500 in read_limited before
@example(value="9" * 5000)  # int() refuses more than 4,300 digits
def test_header_numbers_are_a_number_or_none(value: str | None) -> None:
    """Content-Length and NGSILD-Results-Count as city_platform.limits.header_number reads
    them (request bodies, remote @contexts, distributed query counts)."""
    number = header_number(value)
    if number is not None:
        assert value is not None
        assert value.isascii()
        assert 0 <= number <= 10**18
        if len(value) <= 18:
            assert number == int(value)
