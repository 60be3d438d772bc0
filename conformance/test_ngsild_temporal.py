"""R197-NGSILD-59..65: the temporal API - instance limits with 206 Partial Content, the
aggregated representation, Query Temporal Evolution by a Query body, the temporal query
language's errors and q over the selected instances (ETSI GS CIM 009 V1.8.1).

Every case makes its own uniquely named types, so a shared IUT tenant does not disturb it.
The instance limit of the IUT (6.3.10 leaves it to the implementation) is the PIXIT
``ngsild.temporal_instance_limit``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from conformance.iut import IutConfig
from conformance.model import case
from conformance.ngsild_common import problem, unique

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_TIME = r"\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:\d{2})?"
_RANGE = re.compile(rf"^date-time ({_TIME})-({_TIME})/(\*|\d+)$")


def _at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _inst(value: Any, seconds: float) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": _at(seconds)}


def _json(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:300]!r}"
    try:
        return r.json()
    except ValueError:
        raise AssertionError(f"the answer is not JSON: {r.content[:200]!r}") from None


def _create(api: httpx.Client, doc: dict[str, Any]) -> None:
    r = api.post("/temporal/entities", json=doc)
    assert r.status_code == 201, f"create temporal entity: {r.status_code} {r.text[:300]!r}"


def _content_range(r: httpx.Response) -> tuple[datetime, datetime, str, str]:
    """(start, end, size, end as written) of a ``Content-Range: date-time`` header."""
    header = r.headers.get("Content-Range")
    assert header is not None, f"a 206 answer without Content-Range; headers {dict(r.headers)}"
    m = _RANGE.match(header)
    assert m is not None, f"Content-Range {header!r} is not 'date-time <start>-<end>/<size>'"
    return _when(m[1]), _when(m[2]), m[3], m[2]


def _times(body: Any, attr: str) -> list[datetime]:
    assert isinstance(body, dict), f"not an entity: {str(body)[:200]!r}"
    items = body.get(attr, [])
    assert isinstance(items, list), f"{attr} is not an array of instances: {str(items)[:200]!r}"
    return [_when(i["observedAt"]) for i in items if isinstance(i, dict) and "observedAt" in i]


def _values(attr: Any, method: str) -> list[Any]:
    """The values of an aggregated attribute's ``method`` member ([value, start, end] each)."""
    assert isinstance(attr, dict), f"not an aggregated attribute: {str(attr)[:200]!r}"
    periods = attr.get(method)
    assert isinstance(periods, list), f"no {method} array in {str(attr)[:200]!r}"
    for p in periods:
        assert isinstance(p, list), f"a {method} period is not [value, start, end]: {p!r}"
        assert len(p) == 3, f"a {method} period is not [value, start, end]: {p!r}"
    return [p[0] for p in periods]


@pytest.fixture
def limit(iut: IutConfig) -> int:
    return int(iut.pixit_value("ngsild.temporal_instance_limit"))


def _long_history(api: httpx.Client, limit: int) -> tuple[str, int]:
    """An entity whose speed has ``limit`` + 20 instances, one a second from T0."""
    kind = unique("R197T")
    n = limit + 20
    doc = {"id": f"urn:ngsi-ld:{kind}:1", "type": kind, "speed": [_inst(i, i) for i in range(n)]}
    _create(api, doc)
    return doc["id"], n


@case("R197-NGSILD-59", "More instances than the limit: 206 with Content-Range date-time, no loss",
      verifies=["CIM009-6.3.10", "CIM009-5.7.3"], theme="interoperability",
      pics=["ngsild.temporal", "ngsild.temporal-pagination"])  # fmt: skip
def test_temporal_pagination(api: httpx.Client, limit: int) -> None:
    eid, n = _long_history(api, limit)
    r = api.get(f"/temporal/entities/{eid}")
    first = _json(r, 206)
    start, end, size, end_text = _content_range(r)
    got = _times(first, "speed")
    assert 0 < len(got) <= limit, f"{len(got)} instances in a page, limit {limit}"
    assert size == "*", f"size {size!r} without lastN, expected '*'"
    span = f"range {start}..{end}, body {got[0]}..{got[-1]}"
    assert start <= got[0], span
    assert end == got[-1], span
    # The next page starts where this one ended (20 instances or so: complete, 200).
    r = api.get(f"/temporal/entities/{eid}", params={"timerel": "after", "timeAt": end_text})
    rest = _times(_json(r), "speed")
    everything = {T0 + timedelta(seconds=i) for i in range(n)}
    missing = everything - set(got) - set(rest)
    assert not missing, f"the two pages miss {len(missing)} instances, e.g. {min(missing)}"


@case("R197-NGSILD-60", "lastN above the limit gives the newest instances, range going back, size lastN",
      verifies=["CIM009-6.3.10-lastN", "CIM009-5.7.3"], theme="interoperability",
      pics=["ngsild.temporal", "ngsild.temporal-pagination"])  # fmt: skip
def test_temporal_pagination_last_n(api: httpx.Client, limit: int) -> None:
    eid, n = _long_history(api, limit)
    r = api.get(f"/temporal/entities/{eid}", params={"lastN": str(limit + 10)})
    body = _json(r, 206)
    start, end, size, _ = _content_range(r)
    got = _times(body, "speed")
    assert 0 < len(got) <= limit, f"{len(got)} instances, limit {limit}"
    assert size == str(limit + 10), f"size {size!r}, expected lastN {limit + 10}"
    newest = T0 + timedelta(seconds=n - 1)
    assert got[-1] == newest, f"the newest instance {newest} is missing; last is {got[-1]}"
    span = f"range {start}..{end}, body {got[0]}..{got[-1]}"
    assert start == newest, span
    assert end == got[0], span


_CAR = {  # the ETSI suite's 2020-08 vehicle, moved to T0
    "speed": [_inst(120, 180), _inst(80, 300), _inst(100, 420)],
    "fuelLevel": [_inst(67, 180), _inst(53, 3900), _inst(40, 7620)],
}


def _car(api: httpx.Client) -> tuple[str, str]:
    kind = unique("R197V")
    eid = f"urn:ngsi-ld:{kind}:1"
    _create(api, {"id": eid, "type": kind, **_CAR})
    return kind, eid


@case("R197-NGSILD-61", "aggregatedValues applies aggrMethods per aggrPeriodDuration as [value, start, end]",
      verifies=["CIM009-4.5.19"], theme="interoperability",
      pics=["ngsild.temporal", "ngsild.temporal-aggregation"])  # fmt: skip
def test_temporal_aggregation(api: httpx.Client) -> None:
    _, eid = _car(api)
    params = {"options": "aggregatedValues", "aggrMethods": "avg,max", "aggrPeriodDuration": "PT1H"}
    body = _json(api.get(f"/temporal/entities/{eid}", params=params))
    assert isinstance(body, dict), f"not an entity: {str(body)[:200]!r}"
    fuel = body.get("fuelLevel")
    assert _values(fuel, "avg") == [67, 53, 40], f"fuelLevel avg per hour: {fuel!r}"
    assert isinstance(fuel, dict)
    assert fuel.get("type") == "Property", fuel
    for _, a, b in fuel["avg"]:
        assert _when(b) - _when(a) == timedelta(hours=1), f"a period of {a}..{b}"
    assert _values(fuel, "max") == [67, 53, 40], fuel
    speed = body.get("speed")
    assert _values(speed, "avg") == [100], f"speed avg {speed!r}"
    assert _values(speed, "max") == [120], f"speed max {speed!r}"


@case("R197-NGSILD-62", "Unknown aggrMethods, no aggrMethods or a bad aggrPeriodDuration is 400",
      verifies=["CIM009-4.5.19-params"], theme="interoperability",
      pics=["ngsild.temporal", "ngsild.temporal-aggregation"])  # fmt: skip
def test_temporal_aggregation_errors(api: httpx.Client) -> None:
    _, eid = _car(api)
    for params in ({"aggrMethods": "mean"}, {}, {"aggrMethods": "avg", "aggrPeriodDuration": "1h"},
                   {"aggrMethods": "avg", "aggrPeriodDuration": "P1H"}):  # fmt: skip
        r = api.get(f"/temporal/entities/{eid}", params={"options": "aggregatedValues", **params})
        problem(r, 400, "BadRequestData")


@case("R197-NGSILD-63", "POST /temporal/entityOperations/query with a TemporalQuery answers as the GET",
      verifies=["CIM009-6.24.3.1", "CIM009-5.2.21"], theme="interoperability",
      pics=["ngsild.temporal", "ngsild.temporal-post-query"])  # fmt: skip
def test_temporal_post_query(api: httpx.Client) -> None:
    kind, _ = _car(api)
    tq = {"timerel": "between", "timeAt": _at(200), "endTimeAt": _at(4000)}
    body = {"type": "Query", "entities": [{"type": kind}], "temporalQ": tq}
    got = _json(api.post("/temporal/entityOperations/query", json=body))
    expected = _json(api.get("/temporal/entities", params={"type": kind, **tq}))
    assert isinstance(got, list), f"not an array of entities: {str(got)[:300]!r}"
    assert len(got) == 1, f"expected one entity: {str(got)[:300]!r}"
    assert _times(got[0], "fuelLevel") == [_when(_at(3900))], got
    assert _times(got[0], "speed") == _times(expected[0], "speed"), (got, expected)
    last = {**body, "temporalQ": {"lastN": 1}}
    got = _json(api.post("/temporal/entityOperations/query", json=last))
    assert _times(got[0], "speed") == [_when(_at(420))], got
    for bad in ({"lastN": 0}, {"timerel": "between", "timeAt": _at(0)}, {"timerel": "during",
                "timeAt": _at(0)}):  # fmt: skip
        r = api.post("/temporal/entityOperations/query", json={**body, "temporalQ": bad})
        problem(r, 400, "BadRequestData")


@case("R197-NGSILD-64", "timerel without timeAt, between without endTimeAt, a bad lastN are 400",
      verifies=["CIM009-4.11", "CIM009-5.7.3"], theme="interoperability",
      pics=["ngsild.temporal"])  # fmt: skip
def test_temporal_query_errors(api: httpx.Client) -> None:
    _, eid = _car(api)
    for params in ({"timerel": "before"}, {"timerel": "between", "timeAt": _at(0)},
                   {"timerel": "around", "timeAt": _at(0)}, {"timerel": "after", "timeAt": "noon"},
                   {"lastN": "0"}, {"lastN": "many"}):  # fmt: skip
        problem(api.get(f"/temporal/entities/{eid}", params=params), 400, "BadRequestData")


@case("R197-NGSILD-65", "Query Temporal Evolution checks q against the instances in the time window",
      verifies=["CIM009-5.7.4.4-q"], theme="interoperability",
      pics=["ngsild.temporal"])  # fmt: skip
def test_temporal_q_in_window(api: httpx.Client) -> None:
    kind = unique("R197W")
    fast, slow = f"urn:ngsi-ld:{kind}:fast", f"urn:ngsi-ld:{kind}:slow"
    _create(api, {"id": fast, "type": kind, "speed": [_inst(30, 100), _inst(90, 9000)]})
    _create(api, {"id": slow, "type": kind, "speed": [_inst(10, 100), _inst(80, 9000)]})
    window = {"timerel": "between", "timeAt": _at(0), "endTimeAt": _at(1000)}

    def ids(q: str) -> list[str]:
        r = api.get("/temporal/entities", params={"type": kind, "q": q, **window})
        found = _json(r)
        assert isinstance(found, list), f"not an array of entities: {str(found)[:200]!r}"
        return sorted(str(e.get("id")) if isinstance(e, dict) else repr(e) for e in found)

    assert ids("speed>25") == [fast], "speed 30 was observed in the window, only by fast"
    assert ids("speed>85") == [], "speed 90 was observed outside the window"
