"""Temporal API beyond the basics, against a real platform: instance limits with 206 Partial
Content (CIM 009 6.3.10), the aggregated representation (4.5.19) and Query Temporal Evolution
by a Query body (5.7.4, 6.24)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from city_platform.temporal import INSTANCE_LIMIT

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
CAR = "urn:ngsi-ld:Vehicle:car1"


def at(seconds: float) -> str:
    """T0 plus ``seconds`` as the API writes it."""
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def inst(value: Any, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": at(seconds), **extra}


def create(client: httpx.Client, doc: dict[str, Any]) -> None:
    r = client.post("/temporal/entities", json=doc)
    assert r.status_code == 201, r.text


def observed(body: dict[str, Any], attr: str) -> list[str]:
    return [i["observedAt"] for i in body.get(attr, [])]


# -- 6.3.10: at most INSTANCE_LIMIT instances per attribute, 206 with Content-Range ------------

SPEED_N = INSTANCE_LIMIT + 200  # one instance a second from T0
FUEL_AT = (0, 500, INSTANCE_LIMIT - 1, INSTANCE_LIMIT, INSTANCE_LIMIT + 100)


@pytest.fixture
def long_history(client: httpx.Client) -> httpx.Client:
    """A car whose speed has INSTANCE_LIMIT + 200 instances and fuelLevel five."""
    create(
        client,
        {
            "id": CAR,
            "type": "Vehicle",
            "speed": [inst(i, i) for i in range(SPEED_N)],
            "fuelLevel": [inst(s, s) for s in FUEL_AT],
        },
    )
    return client


def test_long_history_is_cut_at_the_limit_with_206(long_history: httpx.Client) -> None:
    """Without lastN the oldest instances come, every attribute cut where one hit the limit."""
    r = long_history.get(f"/temporal/entities/{CAR}")
    assert r.status_code == 206, r.text
    last = at(INSTANCE_LIMIT - 1)
    assert r.headers["Content-Range"] == f"date-time {at(0)}-{last}/*"
    body = r.json()
    assert len(body["speed"]) == INSTANCE_LIMIT
    assert observed(body, "speed")[-1] == last
    assert observed(body, "fuelLevel") == [at(0), at(500), last]
    # The next page starts where this one ended and is complete.
    r = long_history.get(f"/temporal/entities/{CAR}", params={"timerel": "after", "timeAt": last})
    assert r.status_code == 200, r.text
    assert "Content-Range" not in r.headers
    assert len(r.json()["speed"]) == SPEED_N - INSTANCE_LIMIT + 1
    assert observed(r.json(), "fuelLevel") == [at(s) for s in FUEL_AT[2:]]


def test_last_n_above_the_limit_gives_the_newest_with_size(long_history: httpx.Client) -> None:
    """lastN beyond the limit: the newest instances, the range going back, size lastN."""
    r = long_history.get(f"/temporal/entities/{CAR}", params={"lastN": "1100"})
    assert r.status_code == 206, r.text
    oldest = SPEED_N - INSTANCE_LIMIT
    assert r.headers["Content-Range"] == f"date-time {at(SPEED_N - 1)}-{at(oldest)}/1100"
    body = r.json()
    assert len(body["speed"]) == INSTANCE_LIMIT
    assert observed(body, "speed")[0] == at(oldest)
    assert observed(body, "fuelLevel") == [at(s) for s in FUEL_AT if s >= oldest]
    r = long_history.get(f"/temporal/entities/{CAR}", params={"lastN": "3"})
    assert r.status_code == 200, r.text
    assert observed(r.json(), "speed") == [at(SPEED_N - 3), at(SPEED_N - 2), at(SPEED_N - 1)]


@pytest.mark.parametrize(
    ("params", "start"),
    [
        ({"timerel": "after", "timeAt": at(-10)}, at(-10)),
        ({"timerel": "between", "timeAt": at(-10), "endTimeAt": at(5000)}, at(-10)),
        ({"timerel": "before", "timeAt": at(5000), "lastN": "2000"}, at(5000)),
        ({"timerel": "between", "timeAt": at(-10), "endTimeAt": at(5000), "lastN": "2000"}, None),
    ],
)
def test_content_range_starts_at_the_requested_bound(
    long_history: httpx.Client, params: dict[str, str], start: str | None
) -> None:
    """after/between start the range at timeAt; with lastN before at timeAt, between at
    endTimeAt (the ETSI suite's 020_13 expectations)."""
    r = long_history.get(f"/temporal/entities/{CAR}", params=params)
    assert r.status_code == 206, r.text
    expected = start or params["endTimeAt"]
    assert r.headers["Content-Range"].startswith(f"date-time {expected}-"), r.headers


def test_temporal_values_and_query_are_limited_too(long_history: httpx.Client) -> None:
    """The simplified form and Query Temporal Evolution apply the same limit."""
    r = long_history.get(f"/temporal/entities/{CAR}", params={"options": "temporalValues"})
    assert r.status_code == 206, r.text
    assert len(r.json()["speed"]["values"]) == INSTANCE_LIMIT
    r = long_history.get("/temporal/entities", params={"type": "Vehicle", "count": "true"})
    assert r.status_code == 206, r.text
    assert r.headers["Content-Range"] == f"date-time {at(0)}-{at(INSTANCE_LIMIT - 1)}/*"
    assert r.headers["NGSILD-Results-Count"] == "1"
    r = long_history.post(
        "/temporal/entityOperations/query",
        json={"type": "Query", "entities": [{"type": "Vehicle"}], "temporalQ": {"lastN": 1100}},
    )
    assert r.status_code == 206, r.text
    assert r.headers["Content-Range"].endswith("/1100")


def test_short_history_is_not_partial(client: httpx.Client) -> None:
    """Below the limit the answer is 200 without Content-Range."""
    create(client, {"id": CAR, "type": "Vehicle", "speed": [inst(i, i) for i in range(5)]})
    r = client.get(f"/temporal/entities/{CAR}", params={"lastN": str(INSTANCE_LIMIT + 5)})
    assert r.status_code == 200, r.text
    assert "Content-Range" not in r.headers
    assert len(r.json()["speed"]) == 5


# -- 4.5.19: aggregated temporal representation -------------------------------------------------

ETSI_CAR = {  # the ETSI suite's 2020-08 vehicle (speeds and fuel levels), moved to T0
    "id": CAR,
    "type": "Vehicle",
    "speed": [inst(120, 180), inst(80, 300), inst(100, 420)],
    "fuelLevel": [inst(67, 180), inst(53, 3900), inst(40, 7620)],
}


def aggregated(client: httpx.Client, **params: str) -> httpx.Response:
    return client.get(f"/temporal/entities/{CAR}", params={"options": "aggregatedValues", **params})


def test_avg_per_hour_starts_at_the_oldest_instance(client: httpx.Client) -> None:
    """avg by PT1H: periods from the oldest instance, empty periods left out (ETSI 020_11_01)."""
    create(client, ETSI_CAR)
    r = aggregated(client, aggrMethods="avg", aggrPeriodDuration="PT1H")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["speed"] == {"type": "Property", "avg": [[100.0, at(180), at(3780)]]}
    assert body["fuelLevel"] == {
        "type": "Property",
        "avg": [
            [67.0, at(180), at(3780)],
            [53.0, at(3780), at(7380)],
            [40.0, at(7380), at(10980)],
        ],
    }
    one = aggregated(client, aggrMethods="avg", aggrPeriodDuration="PT1H", attrs="fuelLevel")
    assert set(one.json()) == {"id", "type", "fuelLevel"}


def test_every_method_over_the_whole_range(client: httpx.Client) -> None:
    """PT0S (and no duration) is one period over the whole window; all eight methods."""
    create(client, ETSI_CAR)
    methods = "totalCount,distinctCount,sum,avg,min,max,stddev,sumsq"
    for params in ({"aggrPeriodDuration": "PT0S"}, {}):
        r = aggregated(client, aggrMethods=methods, **params)
        assert r.status_code == 200, r.text
        speed = r.json()["speed"]
        bounds = [at(180), at(7620)]  # the entity's oldest and newest instance
        assert speed["totalCount"] == [[3, *bounds]]
        assert speed["distinctCount"] == [[3, *bounds]]
        assert speed["sum"] == [[300, *bounds]]
        assert speed["avg"] == [[100.0, *bounds]]
        assert speed["min"] == [[80, *bounds]]
        assert speed["max"] == [[120, *bounds]]
        assert speed["sumsq"] == [[120**2 + 80**2 + 100**2, *bounds]]
        assert speed["stddev"][0][0] == pytest.approx(20.0)


def test_timerel_after_starts_the_periods_at_time_at(client: httpx.Client) -> None:
    """With timerel=after the periods start at timeAt; between ends a PT0S period at endTimeAt."""
    create(client, ETSI_CAR)
    r = aggregated(
        client, aggrMethods="max", aggrPeriodDuration="PT1H", timerel="after", timeAt=at(0)
    )
    assert r.json()["fuelLevel"]["max"] == [
        [67, at(0), at(3600)],
        [53, at(3600), at(7200)],
        [40, at(7200), at(10800)],
    ]
    r = aggregated(
        client, aggrMethods="totalCount", timerel="between", timeAt=at(0), endTimeAt=at(4000)
    )
    assert r.json()["fuelLevel"]["totalCount"] == [[2, at(0), at(4000)]]


def test_values_of_other_types(client: httpx.Client) -> None:
    """Booleans count as 1/0, strings take min/max and counts, other methods are null."""
    create(
        client,
        {
            "id": CAR,
            "type": "Vehicle",
            "moving": [inst(True, 0), inst(False, 10), inst(True, 20)],
            "driver": [inst("bob", 0), inst("alice", 10), inst("bob", 20)],
        },
    )
    r = aggregated(client, aggrMethods="sum,avg,min,max,distinctCount", aggrPeriodDuration="P1D")
    assert r.status_code == 200, r.text
    body = r.json()
    day = [at(0), at(86400)]
    assert body["moving"]["sum"] == [[2, *day]]
    assert body["moving"]["avg"][0][0] == pytest.approx(2 / 3)
    assert body["driver"]["min"] == [["alice", *day]]
    assert body["driver"]["max"] == [["bob", *day]]
    assert body["driver"]["distinctCount"] == [[2, *day]]
    assert body["driver"]["sum"] == [[None, *day]]


def test_calendar_months_and_datasets(client: httpx.Client) -> None:
    """P1M periods follow the calendar; each datasetId is aggregated on its own."""
    ds = "urn:ngsi-ld:Dataset:b"
    jan31 = datetime(2026, 1, 31, tzinfo=UTC)
    doc = {
        "id": CAR,
        "type": "Vehicle",
        "odometer": [
            {"type": "Property", "value": v, "observedAt": (jan31 + timedelta(days=d)).isoformat()}
            for v, d in ((1, 0), (2, 20), (3, 40))
        ]
        + [{"type": "Property", "value": 9, "datasetId": ds, "observedAt": "2026-02-01T00:00:00Z"}],
    }
    create(client, doc)
    r = aggregated(client, aggrMethods="sum", aggrPeriodDuration="P1M")
    assert r.status_code == 200, r.text
    groups = {g.get("datasetId"): g["sum"] for g in r.json()["odometer"]}
    # Jan 31 + 1 month is Feb 28 (clamped), + 2 months Mar 31: counted from the origin.
    assert groups[None] == [
        [1 + 2, "2026-01-31T00:00:00Z", "2026-02-28T00:00:00Z"],  # Jan 31 and Feb 20
        [3, "2026-02-28T00:00:00Z", "2026-03-31T00:00:00Z"],  # Mar 12
    ]
    assert groups[ds] == [[9, "2026-01-31T00:00:00Z", "2026-02-28T00:00:00Z"]]


def test_format_aggregated_values_is_the_same(client: httpx.Client) -> None:
    """format=aggregatedValues selects the representation as the option does (6.3.7)."""
    create(client, ETSI_CAR)
    a = aggregated(client, aggrMethods="min", aggrPeriodDuration="PT1H")
    b = client.get(
        f"/temporal/entities/{CAR}",
        params={"format": "aggregatedValues", "aggrMethods": "min", "aggrPeriodDuration": "PT1H"},
    )
    assert b.status_code == 200, b.text
    assert a.json() == b.json()


@pytest.mark.parametrize(
    "params",
    [
        {"options": "aggregatedValues"},
        {"options": "aggregatedValues", "aggrMethods": "mean"},
        {"options": "aggregatedValues", "aggrMethods": "avg,"},
        {"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "1H"},
        {"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "PT"},
        {"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "P1H"},
        {"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "P1Y2W"},
        {"options": "aggregatedValues,temporalValues", "aggrMethods": "avg"},
    ],
)
def test_bad_aggregation_parameters_are_bad_request_data(
    client: httpx.Client, params: dict[str, str]
) -> None:
    """Missing or unknown aggrMethods, a malformed or too short duration: 400 BadRequestData."""
    create(client, ETSI_CAR)
    r = client.get(f"/temporal/entities/{CAR}", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == ERR + "BadRequestData"


# -- 5.7.4 / 6.24: POST /temporal/entityOperations/query ----------------------------------------


def post_query(client: httpx.Client, temporal_q: Any, **params: str) -> httpx.Response:
    body = {"type": "Query", "entities": [{"type": "Vehicle"}], "temporalQ": temporal_q}
    return client.post("/temporal/entityOperations/query", json=body, params=params)


def test_post_query_answers_as_the_get(client: httpx.Client) -> None:
    """A Query body with temporalQ gives what GET /temporal/entities gives."""
    create(client, ETSI_CAR)
    create(client, {**ETSI_CAR, "id": "urn:ngsi-ld:Vehicle:car2"})
    tq = {"timerel": "between", "timeAt": at(200), "endTimeAt": at(4000)}
    r = post_query(client, tq)
    assert r.status_code == 200, r.text
    get = client.get("/temporal/entities", params={"type": "Vehicle", **tq})
    assert r.json() == get.json()
    assert [observed(e, "fuelLevel") for e in r.json()] == [[at(3900)], [at(3900)]]
    r = post_query(client, {"lastN": 1}, limit="1", count="true")
    assert r.status_code == 200, r.text
    assert r.headers["NGSILD-Results-Count"] == "2"
    assert [observed(e, "speed") for e in r.json()] == [[at(420)]]


def test_post_query_aggregates_with_aggr_methods(client: httpx.Client) -> None:
    """aggrMethods in the TemporalQuery (an array or a comma list) gives the aggregated form."""
    create(client, ETSI_CAR)
    for methods in (["avg", "max"], "avg,max"):
        tq = {"timerel": "after", "timeAt": at(0), "aggrMethods": methods}
        r = post_query(client, {**tq, "aggrPeriodDuration": "PT0S"})
        assert r.status_code == 200, r.text
        (car,) = r.json()
        assert car["speed"]["avg"] == [[100.0, at(0), at(7620)]]
        assert car["speed"]["max"] == [[120, at(0), at(7620)]]
        assert "instanceId" not in r.text


@pytest.mark.parametrize(
    "temporal_q",
    [
        {"lastN": 0},
        {"lastN": 1.5},
        {"lastN": "1"},
        {"timerel": "during", "timeAt": "2026-01-01T00:00:00Z"},
        {"timerel": "between", "timeAt": "2026-01-01T00:00:00Z"},
        {"timeproperty": "seenAt"},
        {"aggrMethods": ["avg"], "aggrPeriodDuration": "an hour"},
        {"aggrMethods": [1]},
        "after",
    ],
)
def test_post_query_bad_temporal_query_is_400(client: httpx.Client, temporal_q: Any) -> None:
    """A TemporalQuery outside Table 5.2.21-1 is 400 BadRequestData."""
    create(client, ETSI_CAR)
    r = post_query(client, temporal_q)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == ERR + "BadRequestData"


def test_post_query_needs_a_query(client: httpx.Client) -> None:
    """The body must be a Query (type Query); its selection is checked as for the GET."""
    for body in ([], {"type": "Subscription"}, {"type": "Query"}):
        r = client.post("/temporal/entityOperations/query", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["type"] == ERR + "BadRequestData"


def test_modified_at_time_property(client: httpx.Client) -> None:
    """timeproperty=modifiedAt selects and orders by the time the platform wrote instances."""
    create(client, ETSI_CAR)
    r = client.get(
        f"/temporal/entities/{CAR}",
        params={"timeproperty": "modifiedAt", "timerel": "after", "timeAt": "2000-01-01T00:00:00Z"},
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["speed"]) == 3
    r = client.get(
        f"/temporal/entities/{CAR}",
        params={
            "timeproperty": "modifiedAt",
            "timerel": "before",
            "timeAt": "2000-01-01T00:00:00Z",
        },
    )
    assert "speed" not in r.json()


def test_q_is_checked_against_the_instances_in_the_window(client: httpx.Client) -> None:
    """5.7.4.4: q holds when an instance selected by the temporal query satisfies it."""
    fast, slow = "urn:ngsi-ld:Vehicle:fast", "urn:ngsi-ld:Vehicle:slow"
    create(client, {"id": fast, "type": "Vehicle", "speed": [inst(30, 100), inst(90, 9000)]})
    create(client, {"id": slow, "type": "Vehicle", "speed": [inst(10, 100), inst(80, 9000)]})
    window = {"timerel": "between", "timeAt": at(0), "endTimeAt": at(1000)}

    def ids(**params: str) -> list[str]:
        r = client.get("/temporal/entities", params={"type": "Vehicle", **params})
        assert r.status_code == 200, r.text
        return [e["id"] for e in r.json()]

    assert ids(q="speed>25", **window) == [fast]
    assert ids(q="speed>85", **window) == []  # 90 was observed outside the window
    assert ids(q="speed<20") == [slow]  # the whole history: its current speed is 80
    assert ids(q="speed>75", lastN="1") == [fast, slow]
    r = client.get(
        "/temporal/entities",
        params={"type": "Vehicle", "q": "speed>5", "limit": "1", "offset": "1", "count": "true"},
    )
    assert [e["id"] for e in r.json()] == [slow]
    assert r.headers["NGSILD-Results-Count"] == "2"
    r = post_query(client, window, limit="5")
    assert len(r.json()) == 2
    body = {
        "type": "Query",
        "entities": [{"type": "Vehicle"}],
        "q": "speed<20",
        "temporalQ": window,
    }
    r = client.post("/temporal/entityOperations/query", json=body)
    assert [e["id"] for e in r.json()] == [slow]
    assert observed(r.json()[0], "speed") == [at(100)]


def test_deleted_attributes_are_kept_with_deleted_at(client: httpx.Client) -> None:
    """Deleting an Attribute records the NGSI-LD Null with deletedAt; timeproperty=deletedAt
    retrieves the deletions (4.8), the observedAt history stays as it was."""
    gps = "urn:ngsi-ld:Dataset:gps"
    doc = {"id": CAR, "type": "Vehicle", "speed": [inst(5, 0), inst(7, 0, datasetId=gps)]}
    assert client.post("/entities", json=doc).status_code == 201
    assert client.delete(f"/entities/{CAR}/attrs/speed").status_code == 204  # the default one
    r = client.get(f"/temporal/entities/{CAR}", params={"timeproperty": "deletedAt"})
    assert r.status_code == 200, r.text
    (gone,) = r.json()["speed"]
    assert gone["value"] == "urn:ngsi-ld:null"
    assert gone["deletedAt"].startswith("20")
    assert "datasetId" not in gone
    simple = client.get(
        f"/temporal/entities/{CAR}",
        params={"timeproperty": "deletedAt", "options": "temporalValues"},
    )
    assert simple.json()["speed"]["values"] == [["urn:ngsi-ld:null", gone["deletedAt"]]]
    r = client.delete(f"/entities/{CAR}/attrs/speed", params={"datasetId": gps})
    assert r.status_code == 204, r.text
    r = client.get(f"/temporal/entities/{CAR}", params={"timeproperty": "deletedAt", "lastN": "1"})
    assert [i.get("datasetId") for i in r.json()["speed"]] == [gps]
    before = {"timeproperty": "deletedAt", "timerel": "before", "timeAt": "2000-01-01T00:00:00Z"}
    assert "speed" not in client.get(f"/temporal/entities/{CAR}", params=before).json()
    observed_history = client.get(f"/temporal/entities/{CAR}").json()
    assert [i["value"] for i in observed_history["speed"]] == [5, 7]


def test_query_pages_of_entities_have_links(client: httpx.Client) -> None:
    """limit/offset page the entities of a temporal query, with Link rel next/prev (5.5.9)."""
    for n in range(3):
        create(
            client, {"id": f"urn:ngsi-ld:Vehicle:p{n}", "type": "Vehicle", "speed": [inst(n, n)]}
        )
    r = client.get("/temporal/entities", params={"type": "Vehicle", "limit": "1", "offset": "1"})
    assert r.status_code == 200, r.text
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Vehicle:p1"]
    link = r.headers["Link"]
    assert '</ngsi-ld/v1/temporal/entities?type=Vehicle&limit=1&offset=0>; rel="prev"' in link
    assert '</ngsi-ld/v1/temporal/entities?type=Vehicle&limit=1&offset=2>; rel="next"' in link
    # On the last page the count tells there is no next one.
    params = {"type": "Vehicle", "limit": "1", "offset": "2", "count": "true"}
    last = client.get("/temporal/entities", params=params)
    assert 'rel="next"' not in last.headers.get("Link", ""), last.headers
    r = client.post(
        "/temporal/entityOperations/query",
        json={"type": "Query", "entities": [{"type": "Vehicle"}]},
        params={"limit": "1"},
    )
    assert "/temporal/entities?" not in r.headers.get("Link", ""), "POST: no GET links"


def test_an_attribute_cut_away_entirely_stays_empty(client: httpx.Client) -> None:
    """An attribute whose instances all fall beyond the cut is returned empty (ETSI 020_14)."""
    create(
        client,
        {
            "id": CAR,
            "type": "Vehicle",
            "speed": [inst(i, i) for i in range(SPEED_N)],
            "early": [inst(1, -5)],
            "late": [inst(2, SPEED_N + 10)],
        },
    )
    r = client.get(f"/temporal/entities/{CAR}")
    assert r.status_code == 206, r.text
    assert r.json()["late"] == []
    assert observed(r.json(), "early") == [at(-5)]
    r = client.get(
        f"/temporal/entities/{CAR}", params={"lastN": "2000", "format": "temporalValues"}
    )
    assert r.status_code == 206, r.text
    assert r.json()["early"] == {"type": "Property", "values": []}
    assert r.json()["late"]["values"] == [[2, at(SPEED_N + 10)]]


def test_null_deletions_are_kept_with_deleted_at(client: httpx.Client) -> None:
    """An instance deleted by the NGSI-LD Null in Update Entity Attributes (5.6.2), Merge
    Entity (5.6.17), Partial Attribute Update (5.6.4) or Batch Entity Merge (5.6.20) stays in
    the history as Delete Attribute leaves it: the NGSI-LD Null with deletedAt (4.8, 5.7.3)."""
    null = "urn:ngsi-ld:null"
    gps = "urn:ngsi-ld:Dataset:gps"
    doc = {
        "id": CAR,
        "type": "Vehicle",
        "speed": [inst(5, 0), inst(7, 0, datasetId=gps)],
        "color": inst("red", 0),
        "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:p1"},
        "fuel": inst(30, 0),
    }
    assert client.post("/entities", json=doc).status_code == 201
    deleted = {"timeproperty": "deletedAt"}
    url = f"/temporal/entities/{CAR}"
    assert client.get(url, params=deleted).json().keys() == {"id", "type"}, "nothing deleted yet"
    r = client.patch(f"/entities/{CAR}/attrs", json={"color": {"type": "Property", "value": null}})
    assert r.status_code == 204, r.text
    gps_null = {"type": "Property", "value": null, "datasetId": gps}
    assert client.patch(f"/entities/{CAR}", json={"speed": gps_null}).status_code == 204
    r = client.patch(f"/entities/{CAR}/attrs/owner", json={"type": "Relationship", "object": null})
    assert r.status_code == 204, r.text
    r = client.post("/entityOperations/merge", json=[{"id": CAR, "type": "Vehicle", "fuel": null}])
    assert r.status_code == 204, r.text
    body = client.get(url, params=deleted).json()
    (color,) = body["color"]
    assert color["value"] == null, color
    assert color["deletedAt"].startswith("20"), color
    (speed,) = body["speed"]  # only the gps instance was deleted, the default one stays
    assert speed["datasetId"] == gps, speed
    assert speed["value"] == null, speed
    (owner,) = body["owner"]
    assert owner["type"] == "Relationship", owner
    assert owner["object"] == null, owner
    (fuel,) = body["fuel"]
    assert fuel["value"] == null, fuel
    assert [i["value"] for i in client.get(url).json()["speed"]] == [5, 7], "observedAt history"
    current = client.get(f"/entities/{CAR}").json()
    assert not {"color", "owner", "fuel"} & current.keys(), current
    assert current["speed"]["value"] == 5


@pytest.mark.parametrize(
    "params",
    [
        {"options": "concise"},
        {"options": "keyValues"},
        {"options": "simplified"},
        {"format": "concise"},
        {"format": "keyValues"},
        {"format": "simplified"},
        {"options": "temporalValues,concise"},
    ],
)
def test_temporal_api_has_no_concise_or_key_values_form(
    client: httpx.Client, params: dict[str, str]
) -> None:
    """V1.8.1 gives the temporal API the normalized (4.5.7), simplified (temporalValues, 4.5.9)
    and aggregated (4.5.19) representations only: its format/options (6.3.12) take
    temporalValues and aggregatedValues, so concise or keyValues is 400 BadRequestData."""
    create(client, {"id": CAR, "type": "Vehicle", "speed": [inst(5, 0)]})
    r = client.get(f"/temporal/entities/{CAR}", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == ERR + "BadRequestData", r.text
    r = client.get("/temporal/entities", params={"type": "Vehicle", **params})
    assert r.status_code == 400, r.text
