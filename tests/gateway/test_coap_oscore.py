"""OSCORE (RFC 8613) on the gateway's CoAP ingest: real aiocoap endpoints on [::1]."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiocoap
import pytest

from gateway.errors import RejectedPayload
from gateway.normalizer import Inbound
from gateway.oscore import GatewayOscore
from gateway.transports.coap import CoapIngest
from testbed.credentials import CityCredentials
from testbed.oscore_client import answer_of, credentials_for, device_context
from testbed.processes import free_port

SENML = b'[{"bn":"urn:dev:x:","n":"temperature","u":"Cel","v":21.5}]'


class Ingest:
    """A CoapIngest with OSCORE and the readings it accepted."""

    def __init__(self, keys_file: Path) -> None:
        self.keys_file = keys_file
        self.port = free_port("udp")
        self.url = f"coap://[::1]:{self.port}"
        self.accepted: list[Inbound] = []

    async def handler(self, inbound: Inbound) -> RejectedPayload | None:
        self.accepted.append(inbound)
        return None


@pytest.fixture
def city(tmp_path: Path) -> CityCredentials:
    creds = CityCredentials(tmp_path / "security")
    creds.ensure(oscore_devices=["dev-a", "dev-b"])
    return creds


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    context = await aiocoap.Context.create_client_context(transports=["oscore", "udp6"])
    yield context
    await context.shutdown()


async def post(client: Any, url: str, device: str) -> aiocoap.Message:
    request = aiocoap.Message(
        code=aiocoap.POST, uri=f"{url}/up/{device}", payload=SENML, content_format=110
    )
    return await answer_of(client, request)


async def test_protected_push_is_accepted_and_plain_push_is_401(
    city: CityCredentials, client: Any
) -> None:
    """A POST protected with dev-a's context is 2.04; the same POST without OSCORE is 4.01."""
    ingest = Ingest(city.oscore_file)
    oscore = GatewayOscore(city.oscore_file)
    try:
        async with CoapIngest(host="::1", port=ingest.port, handler=ingest.handler, oscore=oscore):
            plain = await post(client, ingest.url, "dev-a")
            assert plain.code == aiocoap.UNAUTHORIZED, plain
            client.client_credentials.update(
                credentials_for(f"{ingest.url}/*", device_context(city.oscore()["dev-a"]))
            )
            answer = await post(client, ingest.url, "dev-a")
            assert answer.code == aiocoap.CHANGED, (answer, answer.payload)
    finally:
        oscore.close()
    assert [i.device_id for i in ingest.accepted] == ["dev-a"]


async def test_push_as_another_device_is_403(city: CityCredentials, client: Any) -> None:
    """dev-a's context cannot push for dev-b (the context authenticates the sender)."""
    ingest = Ingest(city.oscore_file)
    oscore = GatewayOscore(city.oscore_file)
    try:
        async with CoapIngest(host="::1", port=ingest.port, handler=ingest.handler, oscore=oscore):
            client.client_credentials.update(
                credentials_for(f"{ingest.url}/*", device_context(city.oscore()["dev-a"]))
            )
            answer = await post(client, ingest.url, "dev-b")
    finally:
        oscore.close()
    assert answer.code == aiocoap.FORBIDDEN, answer
    assert ingest.accepted == []


async def test_replayed_push_is_401_also_after_a_gateway_restart(
    city: CityCredentials, client: Any
) -> None:
    """The same sequence number twice is 4.01 Replay detected (RFC 8613 7.4), and stays so
    after the gateway restarts on its persisted window (RFC 8613 7.5)."""
    ingest = Ingest(city.oscore_file)
    context = device_context(city.oscore()["dev-a"])
    client.client_credentials.update(credentials_for(f"{ingest.url}/*", context))
    for restart in (False, True):
        oscore = GatewayOscore(city.oscore_file)
        try:
            async with CoapIngest(
                host="::1", port=ingest.port, handler=ingest.handler, oscore=oscore
            ):
                if not restart:
                    first = await post(client, ingest.url, "dev-a")
                    assert first.code == aiocoap.CHANGED, first
                context.sender_sequence_number -= 1  # the last number once more
                replay = await post(client, ingest.url, "dev-a")
                assert replay.code == aiocoap.UNAUTHORIZED, (restart, replay, replay.payload)
                fresh = await post(client, ingest.url, "dev-a")
                assert fresh.code == aiocoap.CHANGED, (restart, fresh, fresh.payload)
        finally:
            oscore.close()
    assert len(ingest.accepted) == 3


@pytest.mark.parametrize(
    ("change", "code"),
    [
        # Known kid, wrong key: RFC 8613 8.2 step 6, 4.00 "Decryption failed" (aiocoap).
        ({"master_secret": bytes(16)}, aiocoap.BAD_REQUEST),
        # A kid the gateway has no context for: RFC 8613 8.2 step 2, 4.01.
        ({"device_id": b"\x7f\x7f"}, aiocoap.UNAUTHORIZED),
    ],
)
async def test_forged_push_is_refused(
    city: CityCredentials, client: Any, change: dict[str, bytes], code: Any
) -> None:
    """A push protected with a key the gateway does not hold is refused, nothing accepted."""
    ingest = Ingest(city.oscore_file)
    forged = dataclasses.replace(city.oscore()["dev-a"], **change)
    oscore = GatewayOscore(city.oscore_file)
    try:
        async with CoapIngest(host="::1", port=ingest.port, handler=ingest.handler, oscore=oscore):
            client.client_credentials.update(
                credentials_for(f"{ingest.url}/*", device_context(forged))
            )
            answer = await post(client, ingest.url, "dev-a")
    finally:
        oscore.close()
    assert answer.code == code, (answer, answer.payload)
    assert ingest.accepted == []


async def test_non_confirmable_protected_push_is_accepted(
    city: CityCredentials, client: Any
) -> None:
    """A qos-0 device's NON POST (RFC 7252 4.3) protected with its context is taken in too."""
    ingest = Ingest(city.oscore_file)
    oscore = GatewayOscore(city.oscore_file)
    try:
        async with CoapIngest(host="::1", port=ingest.port, handler=ingest.handler, oscore=oscore):
            client.client_credentials.update(
                credentials_for(f"{ingest.url}/*", device_context(city.oscore()["dev-b"]))
            )
            request = aiocoap.Message(
                code=aiocoap.POST, uri=f"{ingest.url}/up/dev-b", payload=SENML, content_format=110
            )
            request.mtype = aiocoap.NON  # as devices.coap.PushDevice sends qos 0
            answer = await answer_of(client, request)
    finally:
        oscore.close()
    assert answer.code == aiocoap.CHANGED, (answer, answer.payload)
    assert [i.device_id for i in ingest.accepted] == ["dev-b"]
