"""The gateway end to end with real parts: Mosquitto, the platform, CoAP on [::1]."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiocoap
import aiomqtt
import cbor2
import httpx
import orjson
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.service import Gateway, GatewayConfig
from testbed.brokers import MosquittoBroker
from tests.conftest import PlatformProcess, free_port

NOW = int(time.time())


@pytest.fixture
async def stack(platform: PlatformProcess, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """Mosquitto (with users and ACL), the platform, and a gateway in this process."""
    users = {"gateway": "gw", "weather-1": "w1", "streetlight-1": "s1", "noise-1": "n1"}
    tenant = f"gw{time.monotonic_ns()}"
    async with MosquittoBroker(port=free_port(), users=users) as broker:
        config = GatewayConfig(
            platform_url=platform.base,
            tenant=tenant,
            queue_path=tmp_path / "q.db",
            broker_url=broker.url,
            broker_password="gw",
            coap_port=free_port("udp"),  # SOCK_DGRAM
            rd_url=None,
            http_port=0,
        )
        async with Gateway(config) as gw:
            assert gw.mqtt is not None
            await asyncio.wait_for(gw.mqtt.connected.wait(), 10)
            yield {"gateway": gw, "broker": broker, "platform": platform, "tenant": tenant}


async def entity(stack: dict[str, Any], entity_id: str, attr: str, within: float = 10) -> Any:
    """Poll the platform until the entity has the attribute; returns the entity."""
    headers = {"NGSILD-Tenant": stack["tenant"]}
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=stack["platform"].api, headers=headers) as client:
        while time.monotonic() < deadline:
            r = await client.get(f"/entities/{entity_id}")
            if r.status_code == 200 and attr in r.json():
                return r.json()
            await asyncio.sleep(0.05)
    raise AssertionError(f"{entity_id}.{attr} never reached the platform")


def device(stack: dict[str, Any], name: str, password: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        "::1", stack["broker"].port, username=name, password=password,
        protocol=aiomqtt.ProtocolVersion.V5,
    )  # fmt: skip


async def test_mqtt_senml_cbor_reaches_the_platform(stack: dict[str, Any]) -> None:
    """SenML CBOR over MQTT 5 (Content Type set) becomes WeatherObserved with units."""
    pack = [{-2: "urn:dev:r197:weather-1:", -3: NOW, 0: "temperature", 1: "Cel", 2: 19.5},
            {0: "pressure", 1: "Pa", 2: 100000}]  # fmt: skip
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/senml+cbor"
    async with device(stack, "weather-1", "w1") as client:
        await client.publish(
            "city/weather/weather-1/up/x", cbor2.dumps(pack), qos=1, properties=props
        )
    got = await entity(stack, "urn:ngsi-ld:WeatherObserved:weather-1", "temperature")
    assert got["temperature"]["value"] == 19.5
    assert got["temperature"]["unitCode"] == "CEL"
    assert got["atmosphericPressure"]["value"] == 1000.0
    dev = await entity(stack, "urn:ngsi-ld:Device:weather-1", "supportedProtocol")
    assert dev["supportedProtocol"]["value"] == ["mqtt"]


async def test_bad_payloads_do_not_stop_good_ones(stack: dict[str, Any]) -> None:
    """A flood of malformed payloads is counted by reason while good readings keep flowing."""
    gw: Gateway = stack["gateway"]
    async with device(stack, "noise-1", "n1") as client:
        for n in range(200):
            await client.publish("city/noise/noise-1/up/senml-json", b"[{garbage" + bytes([n]))
        await client.publish(
            "city/noise/noise-1/up/vendor-csv", f"noise-1,{NOW},LAeq=55.5".encode(), qos=1
        )
    got = await entity(stack, "urn:ngsi-ld:NoiseLevelObserved:noise-1", "LAeq")
    assert got["LAeq"]["value"] == 55.5
    # Not yet heard from when they came: counted under device="other" (bounded labels).
    assert (
        gw.metrics.value("r197_gateway_rejected_total", device="other", reason="malformed") == 200
    )
    async with device(stack, "noise-1", "n1") as client:  # now a known device: its own label
        for n in range(5):
            await client.publish("city/noise/noise-1/up/senml-json", b"[{x" + bytes([n]), qos=1)
    deadline = time.monotonic() + 10
    while gw.metrics.value("r197_gateway_rejected_total", device="noise-1", reason="malformed") < 5:
        assert time.monotonic() < deadline, "the rejections were never counted"
        await asyncio.sleep(0.02)
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"http://[::1]:{gw.http_port}/metrics")).text
    assert 'r197_gateway_rejected_total{device="other",reason="malformed"} 200' in metrics
    assert 'r197_gateway_rejected_total{device="noise-1",reason="malformed"} 5' in metrics


async def test_coap_push_answers_with_the_right_codes(stack: dict[str, Any]) -> None:
    """2.04 for a good push; 4.00 malformed, 4.15 unknown Content-Format, 4.04 unknown kind."""
    gw: Gateway = stack["gateway"]
    uri = f"coap://[::1]:{gw.config.coap_port}/up"
    ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:

        async def post(dev: str, payload: bytes, fmt: int) -> Any:
            msg = aiocoap.Message(code=aiocoap.POST, uri=f"{uri}/{dev}", payload=payload)
            msg.opt.content_format = fmt
            return (await ctx.request(msg).response).code

        vendor = orjson.dumps(
            {"dev": "weather-2", "time": "2026-11-25T06:00:00+02:00", "tempF": 68}
        )
        assert await post("weather-2", vendor, 50) == aiocoap.CHANGED
        assert await post("weather-2", b"[{", 110) == aiocoap.BAD_REQUEST
        assert await post("weather-2", b"x", 41) == aiocoap.UNSUPPORTED_CONTENT_FORMAT
        assert await post("lamp-2", b'[{"n": "x", "v": 1}]', 110) == aiocoap.NOT_FOUND
    finally:
        await ctx.shutdown()
    got = await entity(stack, "urn:ngsi-ld:WeatherObserved:weather-2", "temperature")
    assert got["temperature"]["value"] == 20.0
    assert got["temperature"]["observedAt"] == "2026-11-25T04:00:00.000Z"


async def test_a_city_app_switches_a_streetlight_through_the_platform(
    stack: dict[str, Any],
) -> None:
    """PATCH powerState in the platform -> the gateway publishes a command to the device."""
    async with device(stack, "streetlight-1", "s1") as light:
        await light.subscribe("city/streetlight/streetlight-1/cmd", qos=1)
        report = orjson.dumps({"dev": "streetlight-1", "time": "2026-11-25T04:00:00Z",
                               "light": "on", "dim_pct": 80})  # fmt: skip
        await light.publish("city/streetlight/streetlight-1/up/vendor-json", report, qos=1)
        await entity(stack, "urn:ngsi-ld:Streetlight:streetlight-1", "powerState")
        headers = {"NGSILD-Tenant": stack["tenant"]}
        api = stack["platform"].api
        deadline = time.monotonic() + 10
        command = None
        async with httpx.AsyncClient(base_url=api, headers=headers) as app:
            while command is None and time.monotonic() < deadline:
                r = await app.patch(
                    "/entities/urn:ngsi-ld:Streetlight:streetlight-1/attrs",
                    json={"powerState": "off"},
                )
                assert r.status_code == 204
                try:
                    async with asyncio.timeout(1.5):
                        async for message in light.messages:
                            command = orjson.loads(message.payload)  # type: ignore[arg-type]
                            break
                except TimeoutError:
                    await app.patch(  # the subscription may not exist yet: flip back and retry
                        "/entities/urn:ngsi-ld:Streetlight:streetlight-1/attrs",
                        json={"powerState": "on"},
                    )
        assert command == {"powerState": "off"}


async def test_health_counts_devices_heard_from_recently(stack: dict[str, Any]) -> None:
    """/health?recent=S counts devices whose last accepted reading is at most S seconds old;
    a rejected payload does not make a device count."""
    gw: Gateway = stack["gateway"]
    health = f"http://[::1]:{gw.http_port}/health"
    async with device(stack, "noise-1", "n1") as client:
        await client.publish("city/noise/noise-1/up/senml-json", b"[{garbage", qos=1)
        async with httpx.AsyncClient() as http:
            await asyncio.sleep(0.5)
            assert (await http.get(health)).json()["devicesRecent"] == 0
            await client.publish(
                "city/noise/noise-1/up/vendor-csv", f"noise-1,{NOW},LAeq=50".encode(), qos=1
            )
            await entity(stack, "urn:ngsi-ld:NoiseLevelObserved:noise-1", "LAeq")
            now = (await http.get(health, params={"recent": "30"})).json()
            assert (now["devicesRecent"], now["devicesSeen"]) == (1, 1)
            await asyncio.sleep(0.3)
            assert (await http.get(health, params={"recent": "0.2"})).json()["devicesRecent"] == 0
            assert (await http.get(health, params={"recent": "soon"})).status_code == 400
