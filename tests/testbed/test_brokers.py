"""The testbed's MQTT brokers: Mosquitto with per-device ACL, and the embedded amqtt fallback."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from testbed.brokers import AmqttBroker, MosquittoBroker, choose_broker, find_mosquitto
from tests.conftest import free_port


async def first_message(client: aiomqtt.Client) -> aiomqtt.Message | None:
    try:
        async with asyncio.timeout(5):
            async for message in client.messages:
                return message
    except TimeoutError:
        return None
    return None


async def test_mosquitto_lets_a_device_publish_only_under_its_own_id() -> None:
    """ACL: weather-1 reaches the gateway's shared subscription; as weather-2 it does not."""
    users = {"gateway": "gw-secret", "weather-1": "p1", "weather-2": "p2"}
    async with MosquittoBroker(port=free_port(), users=users) as broker:
        v5 = aiomqtt.ProtocolVersion.V5
        async with (
            aiomqtt.Client(
                "::1", broker.port, username="gateway", password="gw-secret", protocol=v5
            ) as gw,
            aiomqtt.Client(
                "::1", broker.port, username="weather-1", password="p1", protocol=v5
            ) as dev,
        ):
            await gw.subscribe("$share/gw/city/+/+/up/#", qos=1)
            await dev.publish("city/weather/weather-2/up/senml-json", b"spoofed", qos=1)
            await dev.publish("city/weather/weather-1/up/senml-json", b"genuine", qos=1)
            message = await first_message(gw)
            assert message is not None
            assert message.payload == b"genuine"
            assert str(message.topic) == "city/weather/weather-1/up/senml-json"


async def test_mosquitto_refuses_a_wrong_password() -> None:
    """A device with the wrong password is refused at CONNECT."""
    async with MosquittoBroker(port=free_port(), users={"weather-1": "p1"}) as broker:
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client("::1", broker.port, username="weather-1", password="nope"):
                pass


async def test_amqtt_fallback_relays_messages_over_ipv6() -> None:
    """The embedded broker accepts MQTT 3.1.1 on [::1] and relays a QoS 1 message."""
    async with AmqttBroker(port=free_port()) as broker:
        async with aiomqtt.Client("::1", broker.port) as client:
            await client.subscribe("city/#", qos=1)
            await client.publish("city/noise/noise-1/up/senml-json", b"[]", qos=1)
            message = await first_message(client)
        assert message is not None
        assert message.payload == b"[]"


def test_choose_broker_prefers_what_is_asked() -> None:
    """auto picks Mosquitto where installed; amqtt when asked for."""
    assert choose_broker(prefer="amqtt").name == "amqtt"
    expected = "mosquitto" if find_mosquitto() else "amqtt"
    assert choose_broker(prefer="auto").name == expected
