"""The uplink against a real platform: delivery, a platform outage, and a gateway restart."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import orjson

from gateway.normalizer import Inbound, Normalized, normalize
from gateway.profiles import Profiles
from gateway.uplink import Uplink
from tests.conftest import PlatformProcess

T0 = 1_795_579_200
PROFILES = Profiles()


def reading(n: int, device: str = "noise-1") -> Normalized:
    payload = f"{device},{T0 + n},LAeq={40 + n % 50}".encode()
    return normalize(Inbound("mqtt", payload, "vendor-csv", T0 + n + 1, device), PROFILES)


def history_count(api: str, device: str = "noise-1") -> int:
    r = httpx.get(
        f"{api}/temporal/entities/urn:ngsi-ld:NoiseLevelObserved:{device}",
        params={"attrs": "LAeq", "lastN": "100000"},
    )
    if r.status_code == 404:
        return 0
    assert r.status_code == 200, r.text
    return len(r.json().get("LAeq", []))


async def test_readings_reach_the_platform(platform: PlatformProcess, tmp_path: Path) -> None:
    """Submitted readings become entity updates and history in the platform."""
    async with Uplink(platform_url=platform.base, queue_path=tmp_path / "q.db") as uplink:
        assert "r197_gateway_last_forward_timestamp_seconds" not in uplink.metrics.render()
        began = time.time()
        for n in range(50):
            uplink.submit(reading(n, "noise-50"))
        assert await uplink.drain(within=20)
        assert uplink.metrics.value("r197_gateway_forwarded_total") == 50
        last = re.search(
            r"^r197_gateway_last_forward_timestamp_seconds (\S+)$", uplink.metrics.render(), re.M
        )
        assert last is not None
        assert began <= float(last.group(1)) <= time.time()
    assert history_count(platform.api, "noise-50") == 50
    url = f"{platform.api}/entities/urn:ngsi-ld:NoiseLevelObserved:noise-50"
    entity = (await asyncio.to_thread(httpx.get, url)).json()
    assert entity["LAeq"]["value"] == 40 + 49
    assert entity["LAeq"]["unitCode"] == "2N"


async def test_platform_outage_loses_nothing(tmp_path: Path) -> None:
    """Readings accepted while the platform is down arrive, all of them, once it is back."""
    proc = PlatformProcess(db=str(tmp_path / "p.db"))
    proc.start()
    try:
        async with Uplink(
            platform_url=proc.base, queue_path=tmp_path / "q.db", max_backoff=0.5
        ) as uplink:
            for n in range(20):
                uplink.submit(reading(n))
            assert await uplink.drain(within=20)
            await asyncio.to_thread(proc.stop)
            for n in range(20, 120):
                await uplink.accept(reading(n))
            await asyncio.sleep(1.0)
            assert uplink.queued > 0  # nowhere to go: kept
            await asyncio.to_thread(proc.start)
            assert await uplink.drain(within=30)
        assert history_count(proc.api) == 120
    finally:
        proc.stop()


async def test_gateway_restart_delivers_what_was_queued(tmp_path: Path) -> None:
    """A new uplink on the same queue file sends what an earlier one accepted but never sent."""
    queue = tmp_path / "q.db"
    dead = "http://[::1]:9"  # nothing listens: everything stays queued
    async with Uplink(platform_url=dead, queue_path=queue, max_backoff=0.2) as uplink:
        for n in range(30):
            await uplink.accept(reading(n, "noise-77"))
        assert uplink.queued == 30
    proc = PlatformProcess(db=str(tmp_path / "p.db"))
    proc.start()
    try:
        async with Uplink(platform_url=proc.base, queue_path=queue) as uplink:
            assert await uplink.drain(within=20)
        assert history_count(proc.api, "noise-77") == 30
    finally:
        proc.stop()


async def test_lanes_overlap_batches_and_keep_each_devices_order(tmp_path: Path) -> None:
    """Two lanes put two batch upserts in flight at once; each device's updates still reach
    the platform in the order they were accepted (a fake platform at the HTTP boundary)."""
    arrived: list[list[dict[str, object]]] = []
    in_flight = 0
    overlapped = asyncio.Event()

    async def platform(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight
        in_flight += 1
        if in_flight == 2:
            overlapped.set()
        try:
            # Hold the first batch until a second one comes: with one batch in flight at a
            # time it never would, and the platform answers 503 after a while instead.
            await asyncio.wait_for(overlapped.wait(), 2.0)
        except TimeoutError:
            return httpx.Response(503)
        finally:
            in_flight -= 1
        arrived.append(orjson.loads(request.content))
        return httpx.Response(204)

    devices = [f"noise-{d}" for d in range(20)]
    async with Uplink(
        platform_url="http://[::1]:1",
        queue_path=tmp_path / "q.db",
        batch_entities=10,
        lanes=2,
        transport=httpx.MockTransport(platform),
    ) as uplink:
        for n in range(30):
            for device in devices:
                uplink.submit(reading(n, device))
        assert await uplink.drain(within=20)
    assert overlapped.is_set()
    values: dict[str, list[float]] = {}
    for body in arrived:
        for entity in body:
            laeq = entity.get("LAeq")
            if isinstance(laeq, dict):  # not the Device entity sent beside it
                values.setdefault(str(entity["id"]), []).append(laeq["value"])
    assert len(values) == len(devices)
    for entity_id, seen in values.items():
        assert seen == [40 + n for n in range(30)], entity_id
