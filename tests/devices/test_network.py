# long CoAP URIs read best on one line
"""Devices on the network: a real Mosquitto subscriber, aiocoap and libcoap clients on [::1]."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import aiocoap
import aiomqtt
import cbor2
import pytest

from devices.coap import CoapDevice
from devices.device import SimDevice
from devices.fleet import Fleet
from devices.mqtt import MqttDevice
from devices.scenario import Scenario
from testbed.brokers import MosquittoBroker
from tests.conftest import free_port


def scenario(**group: Any) -> Scenario:
    return Scenario.model_validate({"groups": [{"count": 1, **group}]})


async def messages(client: aiomqtt.Client, count: int) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []
    async with asyncio.timeout(10):
        async for message in client.messages:
            got.append(message)
            if len(got) == count:
                break
    return got


async def test_mqtt5_device_publishes_with_content_type_and_retained_status() -> None:
    """Topic city/<kind>/<id>/up/<format>, Content Type property, retained 'online'."""
    spec = scenario(kind="weather", format="senml-cbor", interval=0.2).devices()[0]
    v5 = aiomqtt.ProtocolVersion.V5
    async with MosquittoBroker(port=free_port()) as broker:
        sub = aiomqtt.Client("::1", broker.port, protocol=v5)
        async with sub:
            await sub.subscribe("city/#", qos=1)
            dev = MqttDevice(SimDevice(spec), broker=broker.url, password="x")
            task = asyncio.create_task(dev.run())
            try:
                got = await messages(sub, 3)
            finally:
                task.cancel()
    by_topic = {str(m.topic): m for m in got}
    status = by_topic["city/weather/weather-0001/status"]
    assert status.payload == b"online"
    reading = by_topic["city/weather/weather-0001/up/senml-cbor"]
    assert reading.properties is not None
    assert reading.properties.ContentType == "application/senml+cbor"
    records = cbor2.loads(reading.payload)  # type: ignore[arg-type]
    assert records[0][-2] == "urn:dev:r197:weather-0001:"


async def test_will_is_sent_on_abnormal_disconnect_only() -> None:
    """Dropping the TCP connection makes the broker publish the retained 'offline' will."""
    spec = scenario(kind="noise", mqtt_version="3.1.1", interval=5).devices()[0]
    async with MosquittoBroker(port=free_port()) as broker:
        dev = MqttDevice(SimDevice(spec), broker=broker.url, password="x")
        task = asyncio.create_task(dev.run())
        async with aiomqtt.Client("::1", broker.port) as sub:
            await sub.subscribe("city/noise/noise-0001/status", qos=1)
            assert [m.payload for m in await messages(sub, 1)] == [b"online"]
            await dev.disconnect_abruptly()
            task.cancel()
            assert [m.payload for m in await messages(sub, 1)] == [b"offline"]


async def test_coap_device_resources() -> None:
    """/.well-known/core, Accept 110/112 and 4.06, observe notifications, Block2 /log, PUT."""
    port = free_port("udp")
    spec = scenario(kind="streetlight", protocol="coap", interval=0.3).devices()[0]
    async with CoapDevice(SimDevice(spec), host="::1", port=port, rd=None):
        ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
        base = f"coap://[::1]:{port}"
        try:
            wkc = await ctx.request(
                aiocoap.Message(code=aiocoap.GET, uri=f"{base}/.well-known/core")
            ).response
            links = wkc.payload.decode()
            assert '</sensors>;obs;rt="r197.streetlight";if="core.s";ct="110 112"' in links
            assert "</actuators/powerState>" in links
            get = aiocoap.Message(code=aiocoap.GET, uri=f"{base}/sensors")
            get.opt.accept = 112
            answer = await ctx.request(get).response
            assert answer.opt.content_format == 112
            assert cbor2.loads(answer.payload)[0][-2] == "urn:dev:r197:streetlight-0001:"
            bad = aiocoap.Message(code=aiocoap.GET, uri=f"{base}/sensors")
            bad.opt.accept = 50
            assert (await ctx.request(bad).response).code == aiocoap.NOT_ACCEPTABLE
            log = await ctx.request(aiocoap.Message(code=aiocoap.GET, uri=f"{base}/log")).response
            assert len(log.payload) > 1024  # reassembled from Block2 by the client
            assert log.opt.block2 is not None
            observe = aiocoap.Message(code=aiocoap.GET, uri=f"{base}/sensors", observe=0)
            pending = ctx.request(observe)
            await pending.response
            notification = None
            async with asyncio.timeout(5):
                async for notification in pending.observation:  # noqa: B007  # the first one
                    break
            assert notification is not None
            assert notification.code == aiocoap.CONTENT
            pending.observation.cancel()
            put = aiocoap.Message(
                code=aiocoap.PUT, uri=f"{base}/actuators/powerState", payload=b"off"
            )
            put.opt.content_format = 0
            assert (await ctx.request(put).response).code == aiocoap.CHANGED
            wrong = aiocoap.Message(
                code=aiocoap.PUT, uri=f"{base}/actuators/dimmingLevel", payload=b"250"
            )
            wrong.opt.content_format = 0
            assert (await ctx.request(wrong).response).code == aiocoap.BAD_REQUEST
        finally:
            await ctx.shutdown()


async def test_libcoap_client_reads_a_device() -> None:
    """Debian's coap-client (libcoap) discovers resources and reads /sensors and /log."""
    port = free_port("udp")
    spec = scenario(kind="flood", protocol="coap", interval=1).devices()[0]
    async with CoapDevice(SimDevice(spec), host="::1", port=port, rd=None):

        def client(*args: str) -> str:
            done = subprocess.run(
                ["coap-client-notls", *args], capture_output=True, timeout=20, check=True
            )
            return done.stdout.decode(errors="replace")

        wkc = await asyncio.to_thread(client, "-m", "get", f"coap://[::1]:{port}/.well-known/core")
        assert 'rt="r197.flood"' in wkc
        reading = await asyncio.to_thread(
            client, "-m", "get", "-A", "110", f"coap://[::1]:{port}/sensors"
        )
        assert "waterLevel" in reading
        log = await asyncio.to_thread(client, "-m", "get", f"coap://[::1]:{port}/log")
        assert len(log) > 1024


@pytest.mark.slow
async def test_one_process_holds_a_thousand_mqtt_devices() -> None:
    """The city-1000 shape: 1,000 MQTT devices in this process all connect and publish."""
    spec = Scenario.model_validate(
        {"groups": [{"kind": "noise", "count": 1000, "protocol": "mqtt", "interval": 2, "qos": 0}]}
    )
    async with (
        MosquittoBroker(port=free_port()) as broker,
        Fleet(spec, broker=broker.url, use_rd=False) as fleet,
    ):
        async with asyncio.timeout(60):
            while fleet.status().mqtt_online < 1000 or fleet.status().sent < 1000:  # noqa: ASYNC110
                await asyncio.sleep(0.5)
        assert fleet.status().mqtt_online == 1000
