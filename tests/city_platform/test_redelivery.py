"""A reading delivered twice is stored once (issue 19 scale-out).

MQTT QoS 1 is at-least-once: a gateway that dies after queueing a reading but before its PUBACK
gets it again from the broker (MQTT 5 4.3.2, 4.8.2 for shared subscriptions), and an uplink
that dies after the platform's answer but before marking the batch sent posts it again.  The
platform makes those repeats harmless: a history instance identical to a stored one (same
entity, attribute, datasetId and observedAt, same content apart from instanceId and the system
times) is not added again (city_platform/storage/series.py ``drop_repeats``).
"""

from __future__ import annotations

from typing import Any

import httpx

UPSERT = "/entityOperations/upsert"


def reading(device: int, second: int, value: float) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:WeatherObserved:w-{device}",
        "type": "WeatherObserved",
        "temperature": {
            "type": "Property",
            "value": value,
            "unitCode": "CEL",
            "observedAt": f"2026-01-01T10:00:{second:02d}Z",
        },
    }


def history(client: httpx.Client, device: int) -> list[dict[str, Any]]:
    r = client.get(
        f"/temporal/entities/urn:ngsi-ld:WeatherObserved:w-{device}",
        params={"attrs": "temperature", "lastN": 1000},
    )
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json().get("temperature", [])
    return found


def upsert(client: httpx.Client, batch: list[dict[str, Any]]) -> None:
    r = client.post(UPSERT, params={"options": "update"}, json=batch)
    assert r.status_code in (201, 204), r.text


def test_a_repeated_batch_adds_no_instance(client: httpx.Client) -> None:
    first = [reading(d, s, 20 + s) for d in (1, 2) for s in range(5)]
    upsert(client, first)
    upsert(client, first)  # the uplink's resend of a batch the platform had stored
    # A redelivered older reading after newer ones (another gateway of the group had it).
    upsert(client, [reading(1, 2, 22), reading(1, 7, 27)])
    assert [i["value"] for i in history(client, 1)] == [20, 21, 22, 23, 24, 27]
    assert [i["value"] for i in history(client, 2)] == [20, 21, 22, 23, 24]


def test_one_reading_twice_in_one_batch_is_one_instance(client: httpx.Client) -> None:
    upsert(client, [reading(3, 1, 5), reading(3, 1, 5), reading(3, 2, 6)])
    assert [(i["observedAt"], i["value"]) for i in history(client, 3)] == [
        ("2026-01-01T10:00:01Z", 5),
        ("2026-01-01T10:00:02Z", 6),
    ]


def test_a_different_value_at_the_same_time_is_kept(client: httpx.Client) -> None:
    """Only a repeat is dropped: a corrected value for the same observedAt is new data."""
    upsert(client, [reading(4, 1, 5)])
    upsert(client, [reading(4, 1, 6)])
    assert sorted(i["value"] for i in history(client, 4)) == [5, 6]
