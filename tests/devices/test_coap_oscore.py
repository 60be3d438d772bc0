"""OSCORE (RFC 8613) for observe devices and the resource directory, real aiocoap on [::1]."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiocoap
import pytest

from devices.coap import CoapDevice
from devices.device import SimDevice
from devices.fleet import Fleet
from devices.oscore import DeviceContexts, read_keys, state_dir
from devices.scenario import Scenario
from gateway.errors import RejectedPayload
from gateway.normalizer import Inbound
from gateway.oscore import GatewayOscore
from gateway.transports.coap import CoapObserver
from testbed.credentials import CityCredentials
from testbed.oscore_client import answer_of, credentials_for, device_context
from testbed.parts import rd_spec
from testbed.processes import ManagedProcess, free_port


def streetlight() -> SimDevice:
    spec = Scenario.model_validate(
        {"groups": [{"kind": "streetlight", "count": 1, "protocol": "coap", "interval": 0.3}]}
    ).devices()[0]
    return SimDevice(spec)


@pytest.fixture
def light() -> SimDevice:
    return streetlight()


@pytest.fixture
def city(tmp_path: Path, light: SimDevice) -> CityCredentials:
    creds = CityCredentials(tmp_path / "security")
    creds.ensure(oscore_devices=[light.device_id, "other-device"])
    return creds


@pytest.fixture
def rd(city: CityCredentials) -> Iterator[str]:
    """``testbed rd --oscore``: registrations from provisioned devices only."""
    port = free_port("udp")
    with ManagedProcess(rd_spec(port=port, oscore=city.oscore_file)):
        yield f"coap://[::1]:{port}"


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    context = await aiocoap.Context.create_client_context(transports=["oscore", "udp6"])
    yield context
    await context.shutdown()


async def eventually(predicate: Any, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.1)
    return False


def register(rd: str, ep: str) -> aiocoap.Message:
    return aiocoap.Message(
        code=aiocoap.POST, uri=f"{rd}/resourcedirectory/?ep={ep}&base=coap://[::1]:9",
        payload=b"</sensors>", content_format=40,
    )  # fmt: skip


async def test_rd_refuses_unprotected_and_foreign_registrations(
    rd: str, city: CityCredentials, client: Any, light: SimDevice
) -> None:
    """Plain POST /rd?ep= is 4.01; other-device's context registering, updating or removing
    light is 4.03; light's own RD context registers (2.01), updates and removes it; lookups
    stay open, a plain removal is 4.01."""
    plain = await answer_of(client, register(rd, light.device_id))
    assert plain.code == aiocoap.UNAUTHORIZED, (plain, plain.payload)
    keys = city.oscore()
    other_context = device_context(keys["other-device"], rd=True)  # one context: one sequence
    client.client_credentials.update(credentials_for(f"{rd}/*", other_context))
    foreign = await answer_of(client, register(rd, light.device_id))
    assert foreign.code == aiocoap.FORBIDDEN, (foreign, foreign.payload)
    client.client_credentials.update(
        credentials_for(f"{rd}/*", device_context(keys[light.device_id], rd=True))
    )
    own = await answer_of(client, register(rd, light.device_id))
    assert own.code == aiocoap.CREATED, (own, own.payload)
    location = f"{rd}/" + "/".join(own.opt.location_path)
    # Updates and removals of the registration (RFC 9176 5.3.1, 5.3.2): its endpoint only.
    other = await aiocoap.Context.create_client_context(transports=["oscore", "udp6"])
    try:
        other.client_credentials.update(credentials_for(f"{rd}/*", other_context))
        for code in (aiocoap.POST, aiocoap.DELETE):
            foreign = await answer_of(other, aiocoap.Message(code=code, uri=location))
            assert foreign.code == aiocoap.FORBIDDEN, (code, foreign, foreign.payload)
    finally:
        await other.shutdown()
    update = await answer_of(client, aiocoap.Message(code=aiocoap.POST, uri=location))
    assert update.code == aiocoap.CHANGED, (update, update.payload)
    lookup = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        found = await lookup.request(
            aiocoap.Message(code=aiocoap.GET, uri=f"{rd}/endpoint-lookup/")
        ).response
        plain_delete = await lookup.request(
            aiocoap.Message(code=aiocoap.DELETE, uri=location)
        ).response
    finally:
        await lookup.shutdown()
    assert found.code == aiocoap.CONTENT
    assert f'ep="{light.device_id}"' in found.payload.decode()
    assert "other-device" not in found.payload.decode()
    assert plain_delete.code == aiocoap.UNAUTHORIZED, plain_delete
    removed = await answer_of(client, aiocoap.Message(code=aiocoap.DELETE, uri=location))
    assert removed.code == aiocoap.DELETED, (removed, removed.payload)


async def test_observe_and_actuator_put_over_oscore(
    rd: str, city: CityCredentials, client: Any, light: SimDevice
) -> None:
    """The device registers with OSCORE, the gateway's observer observes it over OSCORE and
    gets notifications (RFC 8613 4.1.3.5), its PUT switches the light; plain GET is 4.01."""
    readings: list[Inbound] = []

    async def handler(inbound: Inbound) -> RejectedPayload | None:
        readings.append(inbound)
        return None

    keys = read_keys(city.oscore_file)
    contexts = DeviceContexts(light.device_id, keys[light.device_id], state_dir(city.oscore_file))
    gateway = GatewayOscore(city.oscore_file)
    port = free_port("udp")
    try:
        async with (
            CoapDevice(light, host="::1", port=port, rd=rd, oscore=contexts) as device,
            CoapObserver(rd_url=rd, handler=handler, rescan=0.5, oscore=gateway) as observer,
        ):

            async def notified() -> bool:
                return len(readings) >= 3

            assert await eventually(notified), (device.registered, observer.bases)
            target = "off" if light.state.power_state == "on" else "on"
            await observer.put_actuators(light.device_id, {"powerState": target})
            assert light.state.power_state == target
            base = f"coap://[::1]:{port}"
            plain = await client.request(
                aiocoap.Message(code=aiocoap.GET, uri=f"{base}/sensors")
            ).response
            assert plain.code == aiocoap.UNAUTHORIZED, plain
            wkc = await client.request(
                aiocoap.Message(code=aiocoap.GET, uri=f"{base}/.well-known/core")
            ).response
            assert wkc.code == aiocoap.CONTENT  # discovery stays open
    finally:
        gateway.close()
        contexts.close()
    assert {r.device_id for r in readings} == {light.device_id}


def test_fleet_refuses_coap_devices_without_oscore_keys(tmp_path: Path) -> None:
    """With OSCORE on, a CoAP device missing from oscore.json stops the fleet before it starts
    (it could only be refused), and the keys need a directory for their sequence numbers."""
    scenario = Scenario.model_validate(
        {"groups": [{"kind": "noise", "count": 2, "protocol": "coap-push"}]}
    )
    creds = CityCredentials(tmp_path / "security")
    creds.ensure(oscore_devices=["noise-0001"])
    keys = read_keys(creds.oscore_file)
    with pytest.raises(ValueError, match="noise-0002"):
        Fleet(scenario, oscore=keys, oscore_dir=state_dir(creds.oscore_file))
    with pytest.raises(ValueError, match="directory"):
        Fleet(scenario, oscore=keys)
