"""Two real `testbed platform --db postgresql://...` processes serving one city.

What one writes the other reads; a subscription created through one is known to the other
(LISTEN/NOTIFY) and each change is notified once, by the process that made it, to a real
receiver that counts what arrives.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.city_platform.receiver import Receiver
from tests.conftest import PlatformProcess


@pytest.fixture
def pair(pg_database: str) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    procs = [PlatformProcess(db=pg_database), PlatformProcess(db=pg_database)]
    for p in procs:
        p.start()
    clients = [httpx.Client(base_url=p.api, timeout=10) for p in procs]
    yield clients[0], clients[1]
    for c in clients:
        c.close()
    for p in procs:
        p.stop()
        p.process.close()


def room(n: int, temperature: float) -> dict[str, object]:
    return {
        "id": f"urn:ngsi-ld:Room:{n}",
        "type": "Room",
        "temperature": {"type": "Property", "value": temperature},
    }


def known(client: httpx.Client, sub_id: str) -> bool:
    """Whether ``client``'s platform has loaded the subscription (polled: it arrives by
    NOTIFY, asynchronously)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if client.get(f"/subscriptions/{sub_id}").status_code == 200:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow  # two platform processes and a PostgreSQL database: ~6 s
def test_two_platforms_share_entities_and_notify_each_change_once(
    pair: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = pair
    receiver = Receiver()
    try:
        sub = {
            "id": "urn:ngsi-ld:Subscription:rooms",
            "type": "Subscription",
            "entities": [{"type": "Room"}],
            "watchedAttributes": ["temperature"],
            "notification": {"endpoint": {"uri": receiver.url, "accept": "application/json"}},
        }
        assert a.post("/subscriptions", json=sub).status_code == 201
        assert known(b, sub["id"]), "the second platform never heard of the subscription"
        # Created through B, read and updated through A: one database.
        assert b.post("/entities", json=room(1, 20.0)).status_code == 201
        got = a.get("/entities/urn:ngsi-ld:Room:1")
        assert got.status_code == 200
        assert got.json()["temperature"]["value"] == 20.0
        writes = 1
        for n in range(1, 11):  # alternate the processes
            via = a if n % 2 else b
            r = via.patch("/entities/urn:ngsi-ld:Room:1/attrs", json={"temperature": 20.0 + n})
            assert r.status_code == 204, r.text
            writes += 1
        # One last change through each: once both have arrived, each process's queue is
        # drained up to them (a worker notifies in order), so any duplicate would be here.
        assert a.post("/entities", json=room(2, 1.0)).status_code == 201
        assert b.post("/entities", json=room(3, 1.0)).status_code == 201
        writes += 2
        deadline = time.monotonic() + 10
        while not {"urn:ngsi-ld:Room:2", "urn:ngsi-ld:Room:3"} <= {
            e["id"] for e in receiver.entities()
        }:
            assert time.monotonic() < deadline, f"markers not notified: {receiver.entities()}"
            time.sleep(0.05)
        time.sleep(0.5)  # not a timing assertion: room for a stray duplicate to show up
        seen = [(e["id"], e["temperature"]["value"]) for e in receiver.entities()]
        # Notifications may batch several changes of one entity into its newest state, so
        # count per write with the value each write set.
        assert len(seen) == len(set(seen)), f"notified twice: {seen}"
        assert len(seen) <= writes
        assert ("urn:ngsi-ld:Room:3", 1.0) in seen
        assert ("urn:ngsi-ld:Room:2", 1.0) in seen
        assert ("urn:ngsi-ld:Room:1", 30.0) in seen
        # Deleted through B: gone from A's subscriptions too.
        assert b.delete(f"/subscriptions/{sub['id']}").status_code == 204
        deadline = time.monotonic() + 10
        while a.get(f"/subscriptions/{sub['id']}").status_code != 404:
            assert time.monotonic() < deadline, "A still has the deleted subscription"
            time.sleep(0.05)
    finally:
        receiver.close()


QUERIES = [
    {"type": "Spot", "georel": "near;maxDistance==1500", "geometry": "Point",
     "coordinates": "[2.35, 48.85]"},
    {"type": "Spot", "georel": "within", "geometry": "Polygon",
     "coordinates": "[[[2.3, 48.8], [2.4, 48.8], [2.4, 48.9], [2.3, 48.9], [2.3, 48.8]]]"},
    {"type": "Spot", "q": "level>3", "options": "keyValues", "limit": "2", "count": "true"},
    {"type": "Spot", "idPattern": "Spot:[12]$", "attrs": "level"},
]  # fmt: skip


PLACES = [(2.35, 48.85), (2.36, 48.85), (2.5, 48.9), (13.4, 52.5)]


def spot(n: int, lon: float, lat: float) -> dict[str, object]:
    point = {"type": "Point", "coordinates": [lon, lat]}
    return {
        "id": f"urn:ngsi-ld:Spot:{n}",
        "type": "Spot",
        "level": {"type": "Property", "value": n + 2},
        "location": {"type": "GeoProperty", "value": point},
    }


@pytest.mark.slow  # two platform processes: ~8 s
def test_the_api_answers_the_same_on_sqlite_and_postgresql(pg_database: str) -> None:
    """The same entities and queries (geo, q, paging, idPattern, temporal lastN) through a
    platform on SQLite and one on PostgreSQL: the same answers, byte for byte in JSON."""
    procs = [PlatformProcess(), PlatformProcess(db=pg_database)]
    for p in procs:
        p.start()
    try:
        answers = []
        for p in procs:
            with httpx.Client(base_url=p.api, timeout=10) as c:
                for n, (lon, lat) in enumerate(PLACES):
                    assert c.post("/entities", json=spot(n, lon, lat)).status_code == 201
                for k in range(5):
                    level = {
                        "type": "Property",
                        "value": k,
                        "observedAt": f"2026-01-01T00:00:0{k}Z",
                    }
                    r = c.patch("/entities/urn:ngsi-ld:Spot:0/attrs", json={"level": level})
                    assert r.status_code == 204
                got = []
                for query in QUERIES:
                    r = c.get("/entities", params=query)
                    assert r.status_code == 200, r.text
                    got.append((r.headers.get("NGSILD-Results-Count"), _without_times(r.json())))
                r = c.get("/temporal/entities/urn:ngsi-ld:Spot:0",
                          params={"attrs": "level", "lastN": "3"})  # fmt: skip
                assert r.status_code == 200
                got.append((None, _without_times(r.json())))
                answers.append(got)
        assert answers[0] == answers[1]
        ids = [[e["id"] for e in body] for _, body in answers[0][:2]]
        assert ids == [["urn:ngsi-ld:Spot:0", "urn:ngsi-ld:Spot:1"],
                       ["urn:ngsi-ld:Spot:0", "urn:ngsi-ld:Spot:1"]]  # fmt: skip
    finally:
        for p in procs:
            p.stop()
            p.process.close()


def _without_times(doc: object) -> object:
    """The answer without instanceIds (random per platform)."""
    if isinstance(doc, dict):
        return {k: _without_times(v) for k, v in doc.items() if k != "instanceId"}
    if isinstance(doc, list):
        return [_without_times(v) for v in doc]
    return doc


def test_an_unreachable_database_is_one_line_and_exit_2() -> None:
    """testbed platform --db postgresql://... with no server there: a line naming the URL
    (its password masked), exit status 2, no traceback."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from tests.conftest import free_port  # noqa: PLC0415

    url = f"postgresql://city:secret@[::1]:{free_port()}/city"
    argv = [sys.executable, "-m", "testbed", "platform", "--host", "::1"]
    argv += ["--port", str(free_port()), "--db", url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "platform: --db: cannot connect to postgresql://city:***@[::1]:" in done.stderr
    assert "secret" not in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow  # two platforms and five periodic rounds: ~8 s
def test_a_periodic_subscription_is_notified_by_one_process(
    pair: tuple[httpx.Client, httpx.Client],
) -> None:
    """timeInterval (CIM 009 5.2.12) on two processes: one of them, holding the advisory lock,
    notifies each interval; without the lock both would, twice the notifications."""
    from datetime import datetime  # noqa: PLC0415

    a, b = pair
    receiver = Receiver()
    try:
        assert a.post("/entities", json=room(1, 20.0)).status_code == 201
        sub = {
            "id": "urn:ngsi-ld:Subscription:periodic",
            "type": "Subscription",
            "entities": [{"type": "Room"}],
            "timeInterval": 1,
            "notification": {"endpoint": {"uri": receiver.url, "accept": "application/json"}},
        }
        assert a.post("/subscriptions", json=sub).status_code == 201
        assert known(b, sub["id"])
        first = len(receiver.received)  # rounds before B knew it are A's alone
        deadline = time.monotonic() + 20
        while len(receiver.received) < first + 6:
            assert time.monotonic() < deadline, f"only {len(receiver.received)} notifications"
            time.sleep(0.05)
        times = sorted(
            datetime.fromisoformat(n["notifiedAt"].replace("Z", "+00:00"))
            for n in receiver.received[first:]
        )
        span = (times[-1] - times[0]).total_seconds()
        # One process: one notification a second, so 6 take at least ~5 s; two processes
        # would put 6 within ~2.5 s.
        assert span >= 3.5, (
            f"{len(times)} notifications within {span:.1f} s: more than one notifier"
        )
    finally:
        receiver.close()
