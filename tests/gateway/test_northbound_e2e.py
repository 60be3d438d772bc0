"""Gateway and platform as real processes with authentication on both sides: the uplink's
token (RFC 6750; 403 keeps readings queued, the right token delivers them) and the notify
token the platform hands back as receiverInfo (CIM 009 5.2.15)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiocoap
import httpx
import pytest

from city_platform.auth import issue_token
from testbed.credentials import CityCredentials
from testbed.parts import GatewayOptions, gateway_spec
from testbed.processes import ManagedProcess
from tests.conftest import PlatformProcess, free_port

STREETLIGHT = "urn:ngsi-ld:Streetlight:streetlight-5"


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[PlatformProcess, CityCredentials, int]]:
    """A platform that requires tokens signed with the city's key and may notify only the
    gateway's /notify (the SSRF allow-list), and the gateway's HTTP port for that."""
    creds = CityCredentials(tmp_path / "security")
    creds.ensure()
    port = free_port()
    proc = PlatformProcess(
        db=str(tmp_path / "p.db"),
        auth_key=creds.jwt_key_file,
        allow_endpoints=(f"http://[::1]:{port}/notify",),
    )
    proc.start()
    try:
        yield proc, creds, port
    finally:
        proc.stop()
        proc.process.close()


def gateway(
    tmp_path: Path, platform: PlatformProcess, port: int, token: Path, notify: Path
) -> GatewayOptions:
    return GatewayOptions(
        platform_url=platform.base, broker_url=None, http_port=port,
        coap_port=free_port("udp"), queue=tmp_path / "q.db", rd="off",
        platform_token_file=token, notify_token_file=notify,
    )  # fmt: skip


def until(check: Callable[[], object], what: str, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def metric(options: GatewayOptions, name: str) -> float:
    text = httpx.get(f"http://[::1]:{options.http_port}/metrics").text
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


async def push(options: GatewayOptions, readings: range) -> None:
    ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        for n in readings:
            payload = f"noise-5,{int(time.time()) - 100 + n},LAeq={40 + n}".encode()
            msg = aiocoap.Message(
                code=aiocoap.POST,
                uri=f"coap://[::1]:{options.coap_port}/up/noise-5",
                payload=payload,
            )
            msg.opt.content_format = 0
            assert (await ctx.request(msg).response).code == aiocoap.CHANGED
    finally:
        await ctx.shutdown()


def test_gateway_with_auth_queues_until_its_token_may_write(
    secured: tuple[PlatformProcess, CityCredentials, int], tmp_path: Path
) -> None:
    """A token without the write scope: 403, readings stay queued, /health says unauthorized;
    the same queue with a write token delivers all of them; the platform's notifications pass
    /notify (its receiverInfo token), a forged one does not."""
    platform, creds, port = secured
    key = creds.jwt_key()
    reader = issue_token(key, subject="app", scopes=["read"], tenants=["*"])
    writer = issue_token(key, subject="app", scopes=["write"], tenants=["*"])
    token = tmp_path / "gateway-token"
    token.write_text(reader)
    options = gateway(tmp_path, platform, port, token, creds.notify_token_file)
    entity = f"{platform.api}/entities/urn:ngsi-ld:NoiseLevelObserved:noise-5"
    as_reader = {"Authorization": f"Bearer {reader}"}

    proc = ManagedProcess(gateway_spec(options, wait_for_mqtt=False))
    proc.start()
    try:
        asyncio.run(push(options, range(3)))
        health = f"http://[::1]:{options.http_port}/health"
        until(lambda: httpx.get(health).json()["platform"] == "unauthorized", "never unauthorized")
        assert httpx.get(health).json()["queued"] == 3
        assert httpx.get(entity, headers=as_reader).status_code == 404
    finally:
        proc.stop()
    log = proc.output()
    proc.close()
    assert log.count("refused our token with 403") == 1, log

    token.write_text(writer)
    proc = ManagedProcess(gateway_spec(options, wait_for_mqtt=False))
    proc.start()
    try:
        until(lambda: httpx.get(entity, headers=as_reader).status_code == 200, "never delivered")
        history = httpx.get(
            f"{platform.api}/temporal/entities/urn:ngsi-ld:NoiseLevelObserved:noise-5",
            params={"attrs": "LAeq", "lastN": "10"},
            headers=as_reader,
        ).json()
        assert len(history["LAeq"]) == 3

        # Southbound: the gateway's subscription (written with its token) carries receiverInfo.
        subs = f"{platform.api}/subscriptions"
        until(lambda: len(httpx.get(subs, headers=as_reader).json()) == 1, "no subscription")
        notify = f"http://[::1]:{options.http_port}/notify"
        forged = {"data": [{"id": STREETLIGHT, "type": "Streetlight", "powerState": "off"}]}
        assert httpx.post(notify, json=forged).status_code == 401
        assert metric(options, "r197_gateway_notify_refused_total") == 1
        assert metric(options, "r197_gateway_command_failures_total") == 0  # not relayed
        app = {"Authorization": f"Bearer {writer}"}
        made = httpx.post(
            f"{platform.api}/entities",
            json={
                "id": STREETLIGHT,
                "type": "Streetlight",
                "powerState": {"type": "Property", "value": "on"},
            },
            headers=app,
        )
        assert made.status_code == 201, made.text
        # No broker here: the command the platform's notification asks for cannot be sent,
        # which the gateway counts, so the count says the notification got through /notify.
        until(
            lambda: metric(options, "r197_gateway_command_failures_total") >= 1,
            "the platform's notification never reached the gateway",
        )
        assert metric(options, "r197_gateway_notify_refused_total") == 1
    finally:
        proc.stop()
        proc.close()


def test_a_rotated_notify_token_reaches_the_platform_on_restart(
    secured: tuple[PlatformProcess, CityCredentials, int], tmp_path: Path
) -> None:
    """Rotating the notify token (CityCredentials.rotate("notify")) and restarting the gateway
    updates its subscription's receiverInfo (409, then PATCH): the platform's notifications
    carry the new token and pass /notify; the old token is refused."""
    platform, creds, port = secured
    key = creds.jwt_key()
    writer = issue_token(key, subject="gateway", scopes=["write"], tenants=["*"])
    token = tmp_path / "gateway-token"
    token.write_text(writer)
    options = gateway(tmp_path, platform, port, token, creds.notify_token_file)
    subs = f"{platform.api}/subscriptions"
    app = {"Authorization": f"Bearer {writer}"}

    proc = ManagedProcess(gateway_spec(options, wait_for_mqtt=False))
    proc.start()
    try:
        until(lambda: len(httpx.get(subs, headers=app).json()) == 1, "no subscription")
    finally:
        proc.stop()
        proc.close()
    old = creds.notify_token()
    creds.rotate("notify")
    assert creds.notify_token() != old

    proc = ManagedProcess(gateway_spec(options, wait_for_mqtt=False))
    proc.start()
    try:
        until(lambda: "subscribed to actuator" in proc.output(), "never subscribed again")
        notify = f"http://[::1]:{options.http_port}/notify"
        stale = httpx.post(notify, json={"data": []}, headers={"Authorization": f"Bearer {old}"})
        assert stale.status_code == 401
        made = httpx.post(
            f"{platform.api}/entities",
            json={
                "id": STREETLIGHT,
                "type": "Streetlight",
                "powerState": {"type": "Property", "value": "on"},
            },
            headers=app,
        )
        assert made.status_code == 201, made.text
        until(
            lambda: metric(options, "r197_gateway_command_failures_total") >= 1,
            "the platform's notification with the new token never got through",
        )
    finally:
        proc.stop()
        proc.close()
