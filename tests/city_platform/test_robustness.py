"""Hostile input on a real platform: backtracking regexes (RE2), deep nesting, ids that are not
URIs, hostile query strings, and the offline /docs page (issue 16, "Robustness")."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from city_platform.limits import MAX_JSON_DEPTH
from city_platform.storage.base import EntityFilter
from city_platform.storage.sqlite import SCAN_YIELD_ROWS, SqliteStorage
from tests.city_platform.receiver import Receiver
from tests.conftest import PlatformProcess

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
EVIL = "(a+)+$"  # exponential on a run of 'a' followed by '!' with a backtracking engine
VICTIM = "urn:ngsi-ld:Victim:" + "a" * 30 + "!"


def bad_request(r: httpx.Response, fragment: str = "") -> str:
    """Assert a 400 BadRequestData ProblemDetails and return its detail."""
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == ERR + "BadRequestData", body
    assert fragment in body.get("detail", ""), body
    return str(body["detail"])


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.fixture
def victim(client: httpx.Client) -> httpx.Client:
    r = client.post(
        "/entities",
        json={"id": VICTIM, "type": "Victim", "name": {"type": "Property", "value": VICTIM}},
    )
    assert r.status_code == 201, r.text
    return client


# -- regexes: RE2, linear time -----------------------------------------------------------


def _served_meanwhile(platform: PlatformProcess, hostile: dict[str, str], tenant: str) -> None:
    """Send ``hostile`` and, while it runs, a plain query of another tenant: both answer."""
    results: dict[str, httpx.Response | Exception] = {}

    def run(key: str, params: dict[str, str], who: str) -> None:
        try:
            with httpx.Client(
                base_url=platform.api, headers={"NGSILD-Tenant": who}, timeout=5
            ) as c:
                results[key] = c.get("/entities", params=params)
        except httpx.HTTPError as exc:  # a timeout: the platform hung
            results[key] = exc

    threads = [
        threading.Thread(target=run, args=("hostile", hostile, tenant)),
        threading.Thread(target=run, args=("other", {"type": "Other"}, tenant + "x")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    hostile_answer, other = results.get("hostile"), results.get("other")
    assert isinstance(hostile_answer, httpx.Response), f"hostile query: {hostile_answer!r}"
    assert hostile_answer.status_code == 200, hostile_answer.text
    assert hostile_answer.json() == [], hostile_answer.text
    assert isinstance(other, httpx.Response), f"other tenant: {other!r}"
    assert other.status_code in (200, 404), other.text  # 404: that tenant has no entity yet


def test_backtracking_id_pattern_answers_and_other_tenants_are_served(
    victim: httpx.Client, platform: PlatformProcess, tenant: str
) -> None:
    """idPattern (a+)+$ on an id of 30 'a' and '!' answers at once (RE2), others are served."""
    _served_meanwhile(platform, {"idPattern": ":" + EVIL}, tenant)


def test_backtracking_q_pattern_answers(
    victim: httpx.Client, platform: PlatformProcess, tenant: str
) -> None:
    """q name~=(a+)+$ on a value of 30 'a' and '!' answers at once."""
    _served_meanwhile(platform, {"type": "Victim", "q": f'name~="{EVIL}"'}, tenant)


def test_re2_matches_what_the_pattern_says(victim: httpx.Client) -> None:
    """RE2 still finds what a plain pattern matches (search semantics, classes, anchors)."""
    r = victim.get("/entities", params={"idPattern": r"^urn:ngsi-ld:Victim:a{30}!$"})
    assert [e["id"] for e in r.json()] == [VICTIM], r.text
    r = victim.get("/entities", params={"type": "Victim", "q": r'name~="Victim:[a-z]{30}!"'})
    assert [e["id"] for e in r.json()] == [VICTIM], r.text


@pytest.mark.parametrize("pattern", [r"(a)\1", "(?=a)a", "(?<!b)a", "a{1001}"])
def test_pattern_re2_cannot_run_is_bad_request(victim: httpx.Client, pattern: str) -> None:
    """Backreferences, lookaround and huge repetitions are 400 BadRequestData with the reason."""
    detail = bad_request(victim.get("/entities", params={"idPattern": pattern}), "idPattern")
    assert "regular expression" in detail
    sub = {
        "type": "Subscription",
        "entities": [{"type": "Victim", "idPattern": pattern}],
        "notification": {"endpoint": {"uri": "http://[::1]:9/notify"}},
    }
    bad_request(victim.post("/subscriptions", json=sub), "idPattern")


def test_q_pattern_re2_cannot_run_is_400(victim: httpx.Client) -> None:
    """A q ~= lookahead is refused 400 (q syntax errors are InvalidRequest, CIM 009 4.9)."""
    r = victim.get("/entities", params={"type": "Victim", "q": 'name~="(?=a)"'})
    assert r.status_code == 400, r.text
    assert "regular expression" in r.json()["detail"], r.text


def test_subscription_with_backtracking_pattern_does_not_stall(
    client: httpx.Client, platform: PlatformProcess, tenant: str
) -> None:
    """A subscription whose idPattern backtracks is tested on each change without stalling:
    both creates answer, only the matching entity is notified, other tenants are served."""
    rx = Receiver()
    try:
        sub = {
            "type": "Subscription",
            "entities": [{"type": "Victim", "idPattern": "^urn:ngsi-ld:Victim:" + EVIL}],
            "notification": {"endpoint": {"uri": rx.url}},
        }
        r = client.post("/subscriptions", json=sub)
        assert r.status_code == 201, r.text
        temp = {"type": "Property", "value": 1}
        doc = {"id": VICTIM, "type": "Victim", "temp": temp}
        r = client.post("/entities", json=doc)  # does not match: 'a...a!' is not a+$
        assert r.status_code == 201, r.text
        plain = "urn:ngsi-ld:Victim:" + "a" * 30
        r = client.post("/entities", json={"id": plain, "type": "Victim", "temp": temp})
        assert r.status_code == 201, r.text
        got = rx.wait_for(1)
        assert [e["id"] for e in got] == [plain], got
        with httpx.Client(base_url=platform.api, headers={"NGSILD-Tenant": tenant + "o"}) as c:
            assert c.get("/entities", params={"type": "Other"}).status_code in (200, 404)
    finally:
        rx.close()


def test_hostile_link_header_and_long_registration_endpoint_answer(
    client: httpx.Client,
) -> None:
    """A Link header of 20 000 '<' and a 100 000-character endpoint URL ending in a space are
    answered at once (the regexes that parse them run in linear time), never 500."""
    client.post("/entities", json={"id": "urn:ngsi-ld:L:1", "type": "L"})
    r = client.get("/entities", params={"type": "L"}, headers={"Link": "<" * 20_000})
    assert r.status_code in (200, 400, 431), r.text
    reg = {
        "id": "urn:ngsi-ld:ContextSourceRegistration:long",
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "L"}]}],
        "endpoint": "http://" + "a" * 100_000 + " ",
    }
    bad_request(client.post("/csourceRegistrations", json=reg), "endpoint")


def test_long_number_in_q_answers(client: httpx.Client) -> None:
    """A q literal of 4000 digits and an 'x' is parsed in linear time (no 403/500)."""
    client.post("/entities", json={"id": "urn:ngsi-ld:N:1", "type": "N"})
    r = client.get("/entities", params={"type": "N", "q": "p==" + "1" * 4000 + "x"})
    assert r.status_code in (200, 400), r.text


async def test_long_scan_lets_other_work_run(tmp_path: Path) -> None:
    """A query scan of many entities hands the event loop back (SCAN_YIELD_ROWS), and writes
    made meanwhile on the same connection do not break it."""
    async with SqliteStorage(tmp_path / "scan.db") as store:
        docs = [
            {"id": f"urn:ngsi-ld:S:{n}", "type": ["https://example.org/S"], "createdAt": "x",
             "modifiedAt": "x", "attrs": {}}
            for n in range(4 * SCAN_YIELD_ROWS)
        ]  # fmt: skip
        await store.write_entities("big", docs, [])
        writes = 0
        seen: list[int] = []
        done = asyncio.Event()

        async def writer() -> None:
            nonlocal writes
            while not done.is_set():
                n = writes
                doc = {**docs[0], "id": f"urn:ngsi-ld:W:{n}"}
                await store.insert_entity("other", doc, [])
                await store.insert_entity("other", doc, [])  # exists: a ROLLBACK mid-scan
                writes += 1
                await asyncio.sleep(0)

        def predicate(entity: dict[str, Any]) -> bool:
            seen.append(writes)
            return True

        task = asyncio.create_task(writer())
        await asyncio.sleep(0)
        page, total = await store.find_entities(
            "big", EntityFilter(), predicate=predicate, count=True
        )
        done.set()
        await task
        assert total == len(docs)
        assert [e["id"] for e in page] == [d["id"] for d in docs]
        assert seen[-1] > seen[0], "no write ran while the scan was going on"


# -- nesting limit -----------------------------------------------------------------------


def test_value_nested_256_deep_is_bad_request(client: httpx.Client) -> None:
    """A Property value nested 256 levels is 400 BadRequestData, not 500 (nesting limit)."""
    doc = {
        "id": "urn:ngsi-ld:Deep:1",
        "type": "Deep",
        "p": {"type": "Property", "value": nested(256)},
    }
    bad_request(client.post("/entities", json=doc), "deeper than")
    r = client.post("/entityOperations/upsert", json=[doc])
    assert r.status_code == 400, r.text


def test_value_within_the_limit_is_stored_and_returned(client: httpx.Client) -> None:
    """A value nested up to the limit (less entity and attribute levels) round-trips."""
    value = nested(MAX_JSON_DEPTH - 3)
    doc = {"id": "urn:ngsi-ld:Deep:2", "type": "Deep", "p": {"type": "Property", "value": value}}
    r = client.post("/entities", json=doc)
    assert r.status_code == 201, r.text
    r = client.get("/entities/urn:ngsi-ld:Deep:2")
    assert r.status_code == 200, r.text
    assert r.json()["p"]["value"] == value


def test_sub_attributes_nested_256_deep_are_bad_request(client: httpx.Client) -> None:
    """Sub-attributes of sub-attributes 256 levels down are 400 BadRequestData."""
    attr: dict[str, Any] = {"type": "Property", "value": 1}
    for _ in range(256):
        attr = {"type": "Property", "value": 1, "sub": attr}
    doc = {"id": "urn:ngsi-ld:Deep:3", "type": "Deep", "p": attr}
    bad_request(client.post("/entities", json=doc), "deeper than")


def test_geo_coordinates_nested_5000_deep_are_bad_request(client: httpx.Client) -> None:
    """Coordinates nested 5,000 deep, in a body or the coordinates parameter, are 400."""
    deep = "[" * 5000 + "1" + "]" * 5000
    body = (
        '{"id":"urn:ngsi-ld:Deep:4","type":"Deep","location":{"type":"GeoProperty",'
        f'"value":{{"type":"Point","coordinates":{deep}}}}}}}'
    )
    r = client.post("/entities", content=body, headers={"Content-Type": "application/json"})
    bad_request(r, "deeper than")
    params = {
        "type": "Deep",
        "georel": "near;maxDistance==1",
        "geometry": "Point",
        "coordinates": deep,
    }
    bad_request(client.get("/entities", params=params), "coordinates")
    params["coordinates"] = "[" * 300 + "1" + "]" * 300  # parses, then over the limit
    bad_request(client.get("/entities", params=params), "coordinates")


@pytest.mark.parametrize("path", ["/entities", "/entityOperations/create", "/subscriptions"])
def test_arrays_nested_100000_deep_are_bad_request(client: httpx.Client, path: str) -> None:
    """A body of 100,000 nested arrays is 400 BadRequestData and the platform goes on."""
    body = "[" * 100_000 + "]" * 100_000
    r = client.post(path, content=body, headers={"Content-Type": "application/json"})
    bad_request(r, "deeper than")
    assert client.get("/entities", params={"type": "Deep"}).status_code in (200, 404)


def test_body_over_the_size_limit_is_refused_unread(
    client: httpx.Client, platform: PlatformProcess, tenant: str
) -> None:
    """A Content-Length over 8 MiB is 400 at once, before any body arrives; a chunked body
    (no Content-Length) is a bare 411 before it is read (CIM 009 6.3.4, ETSI 046_01)."""
    request = (
        f"POST /ngsi-ld/v1/entities HTTP/1.1\r\nHost: [::1]:{platform.port}\r\n"
        f"NGSILD-Tenant: {tenant}\r\nContent-Type: application/json\r\n"
        "Content-Length: 100000000000\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("::1", platform.port), timeout=5) as sock:
        sock.sendall(request)  # and no body: the answer must not wait for it
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"larger than" in answer, answer[:300]

    def chunks() -> Iterator[bytes]:
        yield b'{"id": "urn:ngsi-ld:Big:1", "type": "Big", "p": {"type": "Property", "value": "'
        for _ in range(9):
            yield b"x" * (1 << 20)
        yield b'"}}'

    r = client.post("/entities", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 411, (r.status_code, r.text[:200])
    assert r.content == b""


# -- entity ids must be URIs -------------------------------------------------------------

BAD_IDS = ["urn:a/b", "urn:a\x00b", "urn:a b", "urn:a<b>", "urn:a%zz", "urn:caf\u00e9", "no-scheme"]


@pytest.mark.parametrize("bad_id", BAD_IDS)
def test_entity_id_not_an_addressable_uri_is_refused(client: httpx.Client, bad_id: str) -> None:
    """An id with '/', NUL, space, '<', a bad %-escape or non-ASCII is refused on create (400)
    and per entity in batch create and upsert (BadRequestData in the 207 errors)."""
    bad_request(client.post("/entities", json={"id": bad_id, "type": "T"}), "entity id")
    for op in ("create", "upsert"):
        r = client.post(f"/entityOperations/{op}", json=[{"id": bad_id, "type": "T"}])
        assert r.status_code in (207, 400), r.text
        if r.status_code == 207:
            body = r.json()
            assert body["success"] == [], body
            assert [e["error"]["type"] for e in body["errors"]] == [ERR + "BadRequestData"], body
    r = client.post("/temporal/entities", json={"id": bad_id, "type": "T"})
    bad_request(r, "entity id")


def test_uri_with_reserved_characters_is_accepted_and_addressable(client: httpx.Client) -> None:
    """RFC 3986 reserved characters other than '/' (here '#', '?', '%41') stay allowed."""
    entity_id = "urn:ngsi-ld:T:x?y=1#frag%41"
    r = client.post("/entities", json={"id": entity_id, "type": "T"})
    assert r.status_code == 201, r.text
    r = client.get("/entities/" + quote(entity_id, safe=":"))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == entity_id


# -- hostile query strings ---------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"type": "T\x00"},
        {"type": "T", "q": "p==\x00"},
        {"type": "T", "attrs": "a\x00"},
        {"id": "urn:a\x00"},
        {"type": "T", "idPattern": "a\x00"},
        {"type": "T\x07"},
    ],
)
def test_control_characters_in_parameters_are_bad_request(
    client: httpx.Client, params: dict[str, str]
) -> None:
    """NUL (and other C0 controls) in a query parameter is 400 BadRequestData."""
    bad_request(client.get("/entities", params=params), "control character")


def test_nul_in_path_and_invalid_utf8_are_bad_request(client: httpx.Client) -> None:
    """A %00 in the path and a query string that is not UTF-8 are 400 BadRequestData."""
    bad_request(client.get("/entities/urn:a%00b"), "control character")
    bad_request(client.get("/entities?type=%ff%fe"), "UTF-8")
    bad_request(client.get("/entities/urn:%ff"), "UTF-8")


def test_unknown_parameter_is_ignored(client: httpx.Client) -> None:
    """An unknown query parameter of Query Entities is 400 InvalidRequest, never 500 (CIM 009
    6.3.20, ETSI 059_01_02); ``local`` is always taken."""
    client.post("/entities", json={"id": "urn:ngsi-ld:U:1", "type": "U"})
    r = client.get("/entities", params={"type": "U", "fooBar": "x\u00e9", "local": "true"})
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest", r.text
    r = client.get("/entities", params={"type": "U", "local": "true"})
    assert r.status_code == 200, r.text
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:U:1"]


def test_very_long_q_and_query_string_are_refused_not_500(
    client: httpx.Client, platform: PlatformProcess, tenant: str
) -> None:
    """A q over the q limit is 403 TooComplexQuery; a 60 KiB query string is 400 or 414."""
    r = client.get("/entities", params={"type": "T", "q": ";".join(["p==1"] * 2000)})
    assert r.status_code == 403, r.text
    assert r.json()["type"] == ERR + "TooComplexQuery"
    # Sent over a raw socket: httpx itself refuses URLs this long.
    target = "/ngsi-ld/v1/entities?type=T&q=" + "p%3D%3D1%3B" * 6000
    request = (
        f"GET {target} HTTP/1.1\r\nHost: [::1]:{platform.port}\r\nNGSILD-Tenant: {tenant}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("::1", platform.port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 414, 431), answer[:300]


# -- offline /docs -----------------------------------------------------------------------


def test_docs_page_uses_only_local_assets(platform: PlatformProcess) -> None:
    """/docs names no outside URL but its own OpenAPI document; every asset it names is served."""
    with httpx.Client(base_url=platform.base, timeout=10) as c:
        r = c.get("/docs")
        assert r.status_code == 200, r.text
        html = r.text
        assert "cdn" not in html.lower(), html
        urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)
        assert urls, html
        for url in urls:
            assert url.startswith("/"), f"/docs names an outside URL: {url}"
            answer = c.get(url)
            assert answer.status_code == 200, (url, answer.status_code)
        assert "/docs/static/swagger-ui-bundle.js" in urls
        assert "/docs/static/swagger-ui.css" in urls
        js = c.get("/docs/static/swagger-ui-bundle.js")
        assert js.headers["content-type"].startswith("text/javascript")
        assert len(js.content) > 100_000
        assert c.get("/docs/static/LICENSE").status_code == 200
        assert c.get("/docs/static/..%2Fguard.py").status_code == 404
        assert c.get("/redoc").status_code == 404
