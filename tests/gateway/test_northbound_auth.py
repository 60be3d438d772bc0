"""The gateway's northbound authentication: its bearer token to the platform (uplink and the
actuator subscription) and the token its POST /notify requires (RFC 6750, CIM 009 5.2.15)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import orjson
import pytest

from gateway.http import bearer_refusal
from gateway.normalizer import Inbound, Normalized, normalize
from gateway.profiles import Profiles
from gateway.service import Gateway, GatewayConfig
from gateway.southbound import actuator_subscription
from gateway.uplink import Uplink
from testbed.brokers import MosquittoBroker
from tests.conftest import PlatformProcess, free_port

T0 = 1_795_579_200
PROFILES = Profiles()
TOKEN = "uplink-token-7f3a"
NOTIFY = "notify-token-91c2"


def reading(n: int, device: str = "noise-1") -> Normalized:
    payload = f"{device},{T0 + n},LAeq={40 + n % 50}".encode()
    return normalize(Inbound("mqtt", payload, "vendor-csv", T0 + n + 1, device), PROFILES)


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (None, "missing"),
        ("", "missing"),
        ("Basic Zm9vOmJhcg==", "missing"),
        ("Bearer", "missing"),
        ("Bearer ", "missing"),
        (f"Bearer {NOTIFY}x", "invalid_token"),
        ("Bearer notify-token-91c3", "invalid_token"),
        (f"Bearer {NOTIFY}", None),
        (f"bearer {NOTIFY}", None),  # RFC 6750 2.1 / RFC 7235 2.1: the scheme is case-insensitive
    ],
)
def test_bearer_refusal_tells_missing_from_invalid(header: str | None, why: str | None) -> None:
    """No bearer credential is "missing" (a bare challenge), another token "invalid_token"."""
    assert bearer_refusal(header, NOTIFY) == why


def test_the_actuator_subscription_carries_the_notify_token_as_receiver_info() -> None:
    """CIM 009 5.2.15: receiverInfo pairs go with each notification as HTTP headers."""
    doc = actuator_subscription(PROFILES, "http://[::1]:1/notify", "urn:x", notify_token=NOTIFY)
    assert doc["notification"]["endpoint"]["receiverInfo"] == [
        {"key": "Authorization", "value": f"Bearer {NOTIFY}"}
    ]
    plain = actuator_subscription(PROFILES, "http://[::1]:1/notify", "urn:x")
    assert "receiverInfo" not in plain["notification"]["endpoint"]


async def test_a_refused_token_keeps_readings_queued_until_the_platform_takes_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every upsert carries the bearer token; while the platform answers 401 the readings stay
    in the durable queue, /health's state says unauthorized, one WARNING says why; once it
    accepts the token they all arrive (a fake platform at the HTTP boundary)."""
    accept, retried = asyncio.Event(), asyncio.Event()
    seen: list[str | None] = []
    arrived: list[Any] = []

    async def platform(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        if len(seen) >= 4:  # refused, retried with back-off, refused again
            retried.set()
        if not accept.is_set():
            detail = {"type": "https://uri.etsi.org/ngsi-ld/errors/Unauthorized",
                      "title": "Unauthorized", "detail": "token expired"}  # fmt: skip
            return httpx.Response(401, json=detail)
        arrived.extend(orjson.loads(request.content))
        return httpx.Response(204)

    caplog.set_level(logging.WARNING, logger="gateway.uplink")
    async with Uplink(
        platform_url="http://[::1]:1",
        queue_path=tmp_path / "q.db",
        transport=httpx.MockTransport(platform),
        max_backoff=0.05,
        token=TOKEN,
        lanes=1,
    ) as uplink:
        for n in range(10):
            await uplink.accept(reading(n))
        await asyncio.wait_for(retried.wait(), 10)
        assert uplink.queued == 10
        assert uplink.platform_state == "unauthorized"
        assert uplink.metrics.value("r197_gateway_rejected_total") == 0
        warned = [r for r in caplog.records if "refused our token" in r.getMessage()]
        assert len(warned) == 1
        assert "token expired" in warned[0].getMessage()
        accept.set()
        assert await uplink.drain(within=10)
        assert uplink.platform_state == "up"
    assert set(seen) == {f"Bearer {TOKEN}"}
    assert sum(1 for e in arrived if e["type"] == "NoiseLevelObserved") == 10


async def test_the_uplink_token_reaches_a_real_platform(
    platform: PlatformProcess, tmp_path: Path
) -> None:
    """With a token the uplink still delivers to a real platform (one without auth ignores
    the header); test_northbound_e2e.py checks it against a platform with auth."""
    async with Uplink(
        platform_url=platform.base, queue_path=tmp_path / "q.db", token=TOKEN, tenant="tok1"
    ) as uplink:
        for n in range(5):
            uplink.submit(reading(n, "noise-tok"))
        assert await uplink.drain(within=20)
    r = await asyncio.to_thread(
        httpx.get,
        f"{platform.api}/entities/urn:ngsi-ld:NoiseLevelObserved:noise-tok",
        headers={"NGSILD-Tenant": "tok1"},
    )
    assert r.status_code == 200, r.text


@pytest.fixture
async def guarded(platform: PlatformProcess, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """Mosquitto, the platform and a gateway whose /notify requires NOTIFY."""
    users = {"gateway": "gw", "streetlight-9": "s9"}
    tenant = f"nb{time.monotonic_ns()}"
    async with MosquittoBroker(port=free_port(), users=users) as broker:
        config = GatewayConfig(
            platform_url=platform.base,
            tenant=tenant,
            queue_path=tmp_path / "q.db",
            broker_url=broker.url,
            broker_password="gw",
            coap_port=free_port("udp"),
            rd_url=None,
            http_port=0,
            notify_token=NOTIFY,
        )
        async with Gateway(config) as gw:
            assert gw.mqtt is not None
            await asyncio.wait_for(gw.mqtt.connected.wait(), 10)
            yield {"gateway": gw, "broker": broker, "platform": platform, "tenant": tenant}


async def _next_command(light: aiomqtt.Client, within: float) -> Any:
    try:
        async with asyncio.timeout(within):
            async for message in light.messages:
                return orjson.loads(message.payload)  # type: ignore[arg-type]
    except TimeoutError:
        return None
    return None


async def test_a_forged_notification_is_refused_and_the_platforms_is_relayed(
    guarded: dict[str, Any],
) -> None:
    """POST /notify without the token gets 401 with a Bearer challenge, with a wrong token 401
    invalid_token, and neither publishes a command; the platform's own notification (the
    token in the subscription's receiverInfo) switches the streetlight."""
    gw: Gateway = guarded["gateway"]
    notify = f"http://[::1]:{gw.http_port}/notify"
    forged = {"id": "urn:ngsi-ld:Notification:1", "type": "Notification",
              "data": [{"id": "urn:ngsi-ld:Streetlight:streetlight-9", "type": "Streetlight",
                        "powerState": "off"}]}  # fmt: skip
    broker: MosquittoBroker = guarded["broker"]
    light = aiomqtt.Client("::1", broker.port, username="streetlight-9", password="s9")
    async with light, httpx.AsyncClient() as http:
        await light.subscribe("city/streetlight/streetlight-9/cmd", qos=1)
        report = orjson.dumps({"dev": "streetlight-9", "time": "2026-11-25T04:00:00Z",
                               "light": "on", "dim_pct": 80})  # fmt: skip
        await light.publish("city/streetlight/streetlight-9/up/vendor-json", report, qos=1)
        api = guarded["platform"].api
        tenant = {"NGSILD-Tenant": guarded["tenant"]}
        entity = "/entities/urn:ngsi-ld:Streetlight:streetlight-9"
        deadline = time.monotonic() + 10
        while (await http.get(api + entity, headers=tenant)).status_code != 200:
            assert time.monotonic() < deadline, "the streetlight never reached the platform"
            await asyncio.sleep(0.05)

        missing = await http.post(notify, json=forged)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="r197-gateway"'
        wrong = await http.post(notify, json=forged, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
        assert await _next_command(light, 1.0) is None  # no command for the forgeries
        assert gw.metrics.value("r197_gateway_notify_refused_total") == 2

        command = None
        deadline = time.monotonic() + 10
        while command is None and time.monotonic() < deadline:
            r = await http.patch(f"{api}{entity}/attrs", json={"powerState": "off"}, headers=tenant)
            assert r.status_code == 204
            command = await _next_command(light, 1.5)
            if command is None:  # the subscription may not exist yet: flip back and retry
                await http.patch(f"{api}{entity}/attrs", json={"powerState": "on"}, headers=tenant)
        assert command == {"powerState": "off"}
        assert gw.metrics.value("r197_gateway_notify_refused_total") == 2


def test_the_gateway_reads_its_tokens_from_files(tmp_path: Path) -> None:
    """--platform-token-file / --notify-token-file (a file: a token on the command line shows
    in `ps`); GatewayOptions passes them on; an empty file stops the gateway with a reason."""
    from testbed.cli import build_parser  # noqa: PLC0415
    from testbed.gateway_cmd import gateway_config  # noqa: PLC0415
    from testbed.parts import GatewayOptions, gateway_spec  # noqa: PLC0415
    from testbed.settings import load_settings  # noqa: PLC0415

    (tmp_path / "up").write_text(TOKEN + "\n")
    (tmp_path / "notify").write_text(NOTIFY)
    options = GatewayOptions(
        platform_url="http://[::1]:1", broker_url=None, http_port=1, coap_port=2,
        queue=tmp_path / "q.db", platform_token_file=tmp_path / "up",
        notify_token_file=tmp_path / "notify",
    )  # fmt: skip
    argv = list(gateway_spec(options).argv)
    args = build_parser().parse_args(argv[argv.index("gateway") :])
    config = gateway_config(args, load_settings(None))
    assert (config.platform_token, config.notify_token) == (TOKEN, NOTIFY)
    assert TOKEN not in " ".join(argv)
    (tmp_path / "notify").write_text("\n")
    with pytest.raises(SystemExit, match="empty"):
        gateway_config(args, load_settings(None))


async def test_notify_checks_the_token_first_then_size_and_shape() -> None:
    """No token: 401 before the body is read; with it, a body over 1 MiB is 413 and a
    notification whose data is not an array 400 (CIM 009 5.3.1); a good one 204."""
    from gateway.http import MAX_NOTIFICATION, build_app  # noqa: PLC0415
    from gateway.metrics import Metrics  # noqa: PLC0415

    got: list[dict[str, Any]] = []

    async def on_notification(body: dict[str, Any]) -> None:
        got.append(body)

    app = build_app(Metrics(), on_notification, lambda _: {}, notify_token=NOTIFY)
    auth = {"Authorization": f"Bearer {NOTIFY}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        assert (await http.post("/notify", content=b"{not json")).status_code == 401
        big = b'{"data": [' + b" " * MAX_NOTIFICATION + b"]}"
        assert (await http.post("/notify", content=big, headers=auth)).status_code == 413
        bad = await http.post("/notify", json={"data": 7}, headers=auth)
        assert bad.status_code == 400
        ok = await http.post("/notify", json={"data": [{"id": "urn:x"}]}, headers=auth)
        assert ok.status_code == 204
    assert got == [{"data": [{"id": "urn:x"}]}]
