"""R197-NGSILD-73..79: robustness of an NGSI-LD platform against hostile input - regexes that
backtrack exponentially, deep nesting, entity ids that are not URIs, control characters in
query parameters (ETSI GS CIM 009 V1.8.1; the error answers are those of 5.5.2).

A case never needs more than the PIXIT ``ngsild.max_answer_s`` (seconds) for one answer: an IUT
that takes longer is stalled by the input, which is the fault these cases look for.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from conformance.iut import IutConfig
from conformance.model import case
from conformance.ngsild_common import ERR, problem, unique

EVIL = "(a+)+$"  # exponential on 'aaa...a!' with a backtracking regex engine


def _max_answer_s(iut: IutConfig) -> float:
    return float(iut.pixit_value("ngsild.max_answer_s") or 5.0)


def _bad_request_any(r: httpx.Response, what: str) -> None:
    """400 ProblemDetails of type BadRequestData or InvalidRequest (5.5.2 allows either for a
    request the IUT cannot take); never 500."""
    assert r.status_code == 400, f"{what}: expected 400, got {r.status_code}: {r.text[:200]!r}"
    try:
        body = r.json()
    except ValueError:
        raise AssertionError(f"{what}: error body is not JSON: {r.content[:200]!r}") from None
    kinds = (ERR + "BadRequestData", ERR + "InvalidRequest")
    assert isinstance(body, dict), f"{what}: error body is not an object: {r.text[:200]!r}"
    assert body.get("type") in kinds, f"{what}: {r.text[:200]!r}"


def _still_serving(client: httpx.Client, kind: str) -> None:
    r = client.get("/entities", params={"type": kind})
    assert r.status_code in (200, 404), f"IUT no longer serves: {r.status_code} {r.text[:200]!r}"


def _hostile_while_served(
    api: httpx.Client, iut: IutConfig, hostile: dict[str, str], kind: str
) -> None:
    """Send the hostile query and, meanwhile, a plain one on another tenant; both must answer
    within the PIXIT time; the hostile one 200 (no match) or 400 (pattern refused)."""
    limit = _max_answer_s(iut)
    results: dict[str, Any] = {}
    base = str(api.base_url)

    def run(key: str, params: dict[str, str], tenant: str | None) -> None:
        headers = dict(api.headers)
        if tenant is not None:
            headers["NGSILD-Tenant"] = tenant
        try:
            with httpx.Client(base_url=base, headers=headers, timeout=limit) as c:
                results[key] = c.get("/entities", params=params)
        except httpx.HTTPError as exc:
            results[key] = exc

    other = api.headers.get("NGSILD-Tenant")
    threads = [
        threading.Thread(target=run, args=("hostile", hostile, None)),
        threading.Thread(
            target=run, args=("other", {"type": kind}, (other + "b") if other else None)
        ),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(limit + 5)
    answer = results.get("hostile")
    assert isinstance(answer, httpx.Response), (
        f"no answer to {hostile} within {limit} s (catastrophic backtracking?): {answer!r}"
    )
    assert answer.status_code in (200, 400), f"{answer.status_code}: {answer.text[:200]!r}"
    if answer.status_code == 200:
        assert answer.json() == [], f"the pattern cannot match: {answer.text[:200]!r}"
    served = results.get("other")
    assert isinstance(served, httpx.Response), (
        f"a plain query was not answered within {limit} s while the pattern ran: {served!r}"
    )
    assert served.status_code in (200, 404), f"{served.status_code}: {served.text[:200]!r}"


@case("R197-NGSILD-73", "An idPattern that backtracks exponentially is answered in time and others are served",
      verifies=["CIM009-5.7.2-regex-time"], theme="resilience", pics=["ngsild.linear-regex"])  # fmt: skip
def test_backtracking_id_pattern(api: httpx.Client, iut: IutConfig) -> None:
    kind = unique("R197Rx")
    doc = {"id": f"urn:ngsi-ld:{kind}:" + "a" * 30 + "!", "type": kind}
    r = api.post("/entities", json=doc)
    assert r.status_code == 201, f"create: {r.status_code} {r.text[:200]!r}"
    _hostile_while_served(api, iut, {"type": kind, "idPattern": ":" + EVIL}, kind)
    _still_serving(api, kind)


@case("R197-NGSILD-74", "A q '~=' pattern that backtracks exponentially is answered in time",
      verifies=["CIM009-5.7.2-regex-time", "CIM009-4.9"], theme="resilience",
      pics=["ngsild.linear-regex"])  # fmt: skip
def test_backtracking_q_pattern(api: httpx.Client, iut: IutConfig) -> None:
    kind = unique("R197Rx")
    doc = {"id": f"urn:ngsi-ld:{kind}:1", "type": kind,
           "name": {"type": "Property", "value": "a" * 30 + "!"}}  # fmt: skip
    r = api.post("/entities", json=doc)
    assert r.status_code == 201, f"create: {r.status_code} {r.text[:200]!r}"
    _hostile_while_served(api, iut, {"type": kind, "q": f'name~="^{EVIL}"'}, kind)
    _still_serving(api, kind)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@case("R197-NGSILD-75", "A Property value or sub-attributes nested 256 deep are 400 BadRequestData, a shallow one is stored",
      verifies=["CIM009-5.5.2-nesting", "CIM009-5.6.1"], theme="resilience",
      pics=["ngsild.nesting-limit"])  # fmt: skip
def test_nesting_limit(api: httpx.Client) -> None:
    kind = unique("R197Deep")
    deep = {"id": f"urn:ngsi-ld:{kind}:1", "type": kind,
            "p": {"type": "Property", "value": _nested(256)}}  # fmt: skip
    problem(api.post("/entities", json=deep), 400, "BadRequestData")
    attr: dict[str, Any] = {"type": "Property", "value": 1}
    for _ in range(256):
        attr = {"type": "Property", "value": 1, "sub": attr}
    problem(api.post("/entities", json={"id": f"urn:ngsi-ld:{kind}:2", "type": kind, "p": attr}),
            400, "BadRequestData")  # fmt: skip
    shallow = {"id": f"urn:ngsi-ld:{kind}:3", "type": kind,
               "p": {"type": "Property", "value": _nested(16)}}  # fmt: skip
    r = api.post("/entities", json=shallow)
    assert r.status_code == 201, f"a value nested 16 deep: {r.status_code} {r.text[:200]!r}"
    r = api.get(f"/entities/{shallow['id']}")
    assert r.status_code == 200, f"{r.status_code} {r.text[:200]!r}"
    assert r.json().get("p", {}).get("value") == shallow["p"]["value"], r.text[:300]


@pytest.mark.parametrize("path", ["/entities", "/entityOperations/create"])
@case("R197-NGSILD-76", "A body of 100,000 nested JSON arrays is 400 and the IUT keeps serving",
      verifies=["CIM009-5.5.2-deep-json"], theme="resilience")  # fmt: skip
def test_deep_arrays_body(api: httpx.Client, path: str) -> None:
    body = "[" * 100_000 + "]" * 100_000
    try:
        r = api.post(path, content=body, headers={"Content-Type": "application/json"})
    except httpx.HTTPError as exc:
        raise AssertionError(f"no answer to a deeply nested body on {path}: {exc!r}") from None
    _bad_request_any(r, f"POST {path} with 100,000 nested arrays")
    _still_serving(api, unique("R197Deep"))


@case("R197-NGSILD-77", "An entity id that is not a URI (NUL, space, '<') is refused with BadRequestData",
      verifies=["CIM009-5.6.1-id-uri", "CIM009-5.2.4"], theme="interoperability")  # fmt: skip
def test_entity_id_not_a_uri(api: httpx.Client) -> None:
    kind = unique("R197Id")
    for bad in (
        f"urn:ngsi-ld:{kind}:a\u0000b",
        f"urn:ngsi-ld:{kind}:a b",
        f"urn:ngsi-ld:{kind}:<a>",
    ):
        problem(api.post("/entities", json={"id": bad, "type": kind}), 400, "BadRequestData")
        r = api.post("/entityOperations/create", json=[{"id": bad, "type": kind}])
        assert r.status_code in (207, 400), (
            f"batch create {bad!r}: {r.status_code} {r.text[:200]!r}"
        )
        if r.status_code == 207:
            try:
                body = r.json()
            except ValueError:
                raise AssertionError(f"207 body is not JSON: {r.text[:200]!r}") from None
            assert not body.get("success"), f"{bad!r} was created: {r.text[:200]!r}"
            kinds = [e.get("error", {}).get("type") for e in body.get("errors", [])]
            assert kinds == [ERR + "BadRequestData"], f"batch create {bad!r}: {r.text[:300]!r}"
    _still_serving(api, kind)


@case("R197-NGSILD-78", "NUL or non-UTF-8 in query parameters is 400 ProblemDetails, never 500",
      verifies=["CIM009-6.3-control-chars"], theme="resilience")  # fmt: skip
def test_control_characters_in_parameters(api: httpx.Client) -> None:
    kind = unique("R197Nul")
    for query in (f"type={kind}%00", f"type={kind}&q=p%3D%3D%00", "id=urn:a%00",
                  f"type={kind}&attrs=a%00", "type=%ff%fe"):  # fmt: skip
        try:
            r = api.get(f"/entities?{query}")
        except httpx.HTTPError as exc:
            raise AssertionError(f"no answer to ?{query}: {exc!r}") from None
        _bad_request_any(r, f"GET /entities?{query}")
    _still_serving(api, kind)


@case("R197-NGSILD-79", "Geo-query coordinates nested 5,000 deep are 400 BadRequestData",
      verifies=["CIM009-4.10-deep-coordinates"], theme="resilience", pics=["ngsild.geo"])  # fmt: skip
def test_deep_coordinates(api: httpx.Client) -> None:
    kind = unique("R197Geo")
    deep = "[" * 5000 + "1" + "]" * 5000
    params = {
        "type": kind,
        "georel": "near;maxDistance==10",
        "geometry": "Point",
        "coordinates": deep,
    }
    problem(api.get("/entities", params=params), 400, "BadRequestData")
    geo = '{"type":"GeoProperty","value":{"type":"Point","coordinates":' + deep + "}}"
    body = '{"id":"urn:ngsi-ld:' + kind + ':1","type":"' + kind + '","location":' + geo + "}"
    r = api.post("/entities", content=body, headers={"Content-Type": "application/json"})
    _bad_request_any(r, "an entity whose coordinates nest 5,000 deep")
    _still_serving(api, kind)
