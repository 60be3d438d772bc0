"""CoAP path end to end: RD discovery, observation, and an actuator command relayed by PUT."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devices.coap import CoapDevice
from devices.device import SimDevice
from devices.scenario import Scenario
from gateway.service import Gateway, GatewayConfig
from testbed.parts import rd_spec
from testbed.processes import ManagedProcess
from tests.conftest import PlatformProcess, free_port


@pytest.fixture
def rd() -> Iterator[str]:
    """aiocoap's resource directory on [::1], UDP only."""
    port = free_port("udp")
    with ManagedProcess(rd_spec(port=port)):
        yield f"coap://[::1]:{port}"


async def wait_for(predicate: Any, within: float = 20) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_observed_streetlight_is_switched_by_a_city_app(
    platform: PlatformProcess, rd: str, tmp_path: Path
) -> None:
    """RD -> observe -> platform; PATCH powerState -> gateway PUTs it to the CoAP device."""
    tenant = f"sb{time.monotonic_ns()}"
    spec = Scenario.model_validate(
        {"groups": [{"kind": "streetlight", "count": 1, "protocol": "coap", "interval": 0.5}]}
    ).devices()[0]
    light = SimDevice(spec)
    config = GatewayConfig(
        platform_url=platform.base, tenant=tenant, queue_path=tmp_path / "q.db",
        broker_url=None, coap_port=free_port("udp"), rd_url=rd, http_port=0,
    )  # fmt: skip
    entity = f"{platform.api}/entities/urn:ngsi-ld:Streetlight:{light.device_id}"
    headers = {"NGSILD-Tenant": tenant}
    async with (
        CoapDevice(light, host="::1", port=free_port("udp"), rd=rd),
        Gateway(config) as gateway,
        httpx.AsyncClient(headers=headers) as app,
    ):

        async def observed() -> bool:
            r = await app.get(entity)
            return r.status_code == 200 and "powerState" in r.json()

        assert await wait_for(observed), "the observed device never reached the platform"
        assert gateway.observer is not None
        assert gateway.observer.observed == 1
        target = "off" if light.state.power_state == "on" else "on"

        async def switched() -> bool:
            if light.state.power_state == target:
                return True
            await app.patch(f"{entity}/attrs", json={"powerState": target})
            await asyncio.sleep(0.5)
            return light.state.power_state == target

        assert await wait_for(switched), "the command never reached the device"
        assert light.counters.commands >= 1
        assert gateway.metrics.value("r197_gateway_commands_total") >= 1
