"""No reading lost: a 30-second platform outage and a gateway restart, with real processes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from devices.fleet import Fleet
from devices.scenario import Scenario
from testbed.brokers import MosquittoBroker
from testbed.parts import GatewayOptions, gateway_spec
from testbed.processes import ManagedProcess
from tests.conftest import PlatformProcess, free_port

OUTAGE = 30.0


def gateway_process(platform: str, broker: str, queue: Path, http_port: int) -> ManagedProcess:
    """The gateway as a process on [::1]; started (and waited for) by the caller."""
    options = GatewayOptions(
        platform_url=platform, broker_url=broker, http_port=http_port, coap_port=free_port("udp"),
        queue=queue, broker_password="gw", southbound=False,
    )  # fmt: skip
    return ManagedProcess(gateway_spec(options, verbose=0, wait_for_mqtt=False))


async def wait_http(url: str, within: float = 30) -> httpx.Response:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                return await client.get(url)
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


async def observed_times(api: str, device: str) -> list[str]:
    async with httpx.AsyncClient() as client:
        r = await client.get(
            f"{api}/temporal/entities/urn:ngsi-ld:NoiseLevelObserved:{device}",
            params={"attrs": "LAeq", "lastN": "100000"},
        )
    assert r.status_code == 200, r.text
    return [i["observedAt"] for i in r.json().get("LAeq", [])]


@pytest.mark.slow
async def test_outage_and_gateway_restart_lose_no_reading(tmp_path: Path) -> None:
    """Every reading a device published with QoS 1 reaches the platform history (dups allowed)."""
    scenario = Scenario.model_validate(
        {
            "groups": [
                {"kind": "noise", "count": 2, "protocol": "mqtt", "mqtt_version": "5",
                 "format": "senml-cbor", "interval": 0.2, "qos": 1},
                {"kind": "noise", "count": 1, "protocol": "mqtt", "mqtt_version": "3.1.1",
                 "format": "senml-json", "interval": 0.2, "qos": 1, "prefix": "v3-"},
            ]
        }
    )  # fmt: skip
    ids = [d.device_id for d in scenario.devices()]
    users = {"gateway": "gw", **dict.fromkeys(ids, scenario.password)}
    platform = PlatformProcess(db=str(tmp_path / "p.db"))
    http_port = free_port()
    queue = tmp_path / "queue.db"
    async with MosquittoBroker(port=free_port(), users=users) as broker:
        await asyncio.to_thread(platform.start)
        gateway = gateway_process(platform.base, broker.url, queue, http_port)
        await gateway.astart()
        try:
            async with Fleet(scenario, broker=broker.url, use_rd=False) as fleet:
                await asyncio.sleep(3)
                await asyncio.to_thread(platform.stop)  # the platform goes away ...
                await asyncio.sleep(OUTAGE)
                await asyncio.to_thread(platform.start)  # ... and comes back
                await asyncio.sleep(2)
                await gateway.astop()  # the gateway restarts while devices keep publishing
                await asyncio.sleep(2)
                await gateway.astart()
                await asyncio.sleep(2)
            sent = {d.device_id: d.counters.sent for d in fleet.devices}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                health = (await wait_http(f"http://[::1]:{http_port}/health")).json()
                if health["queued"] == 0 and health["platform"] == "up":
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(1)
            for device in ids:
                times = await observed_times(platform.api, device)
                assert sent[device] > 100, sent
                assert len(set(times)) == sent[device], (device, len(set(times)), sent[device])
        finally:
            await gateway.astop()
            await asyncio.to_thread(platform.stop)
