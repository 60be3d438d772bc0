"""The fleet's loops in TaskGroups (DESIGN 4): stopping leaves no task, a bug stops the fleet,
a lost connection still only reconnects."""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt
import pytest

from devices.coap import PushDevice
from devices.fleet import Fleet
from devices.scenario import Scenario
from testbed.brokers import MosquittoBroker
from tests.conftest import free_port


def city(*groups: dict[str, Any]) -> Scenario:
    return Scenario.model_validate(
        {
            "groups": [{"count": 1, "interval": 0.2, **group} for group in groups],
            "endpoints": {
                "coap_base_port": free_port("udp"),
                "gateway": f"coap://[::1]:{free_port('udp')}",  # nobody there: pushes fail
            },
        }
    )


def leftover_tasks() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


async def online(fleet: Fleet, count: int) -> None:
    async with asyncio.timeout(15):
        while fleet.status().mqtt_online < count:  # noqa: ASYNC110  # a counter, no event
            await asyncio.sleep(0.05)


async def test_stopping_a_fleet_leaves_no_task() -> None:
    """MQTT devices (a streetlight with its command loop too), CoAP and push devices all end."""
    scenario = city(
        {"kind": "streetlight", "protocol": "mqtt"},
        {"kind": "noise", "protocol": "mqtt"},
        {"kind": "weather", "protocol": "coap"},
        {"kind": "parking", "protocol": "coap-push"},
    )
    async with MosquittoBroker(port=free_port(), persistence=False) as broker:
        async with Fleet(scenario, broker=broker.url, use_rd=False) as fleet:
            await online(fleet, 2)
            await asyncio.sleep(0.5)  # readings flow on every device
        assert not leftover_tasks()


async def test_a_bug_in_a_device_loop_fails_the_fleet(monkeypatch: pytest.MonkeyPatch) -> None:
    """A device loop that raises stops the fleet with that exception instead of dying alone."""

    async def push_once(self: PushDevice) -> None:
        raise RuntimeError("injected device bug")

    monkeypatch.setattr(PushDevice, "push_once", push_once)
    scenario = city({"kind": "parking", "protocol": "coap-push"})
    with pytest.raises(ExceptionGroup) as failed:
        async with asyncio.timeout(15), Fleet(scenario, use_rd=False):
            await asyncio.sleep(30)  # the fleet's failure ends this
    assert failed.group_contains(RuntimeError, match="injected device bug")
    assert not leftover_tasks()


async def test_a_streetlight_reconnects_after_its_connection_drops() -> None:
    """A lost connection ends its publish and command loops as MqttError: the device
    reconnects (announcing itself online again) instead of failing the fleet."""
    scenario = city({"kind": "streetlight", "protocol": "mqtt"})
    async with (
        MosquittoBroker(port=free_port(), persistence=False) as broker,
        aiomqtt.Client("::1", broker.port) as watcher,
    ):
        await watcher.subscribe("city/streetlight/+/status", qos=1)
        async with Fleet(scenario, broker=broker.url, use_rd=False) as fleet:
            await online(fleet, 1)
            # Another client with the device's client id takes the session over: the broker
            # closes the device's connection (MQTT 5 3.1.4-3).
            device_id = fleet.devices[0].device_id
            async with aiomqtt.Client("::1", broker.port, identifier=device_id):
                pass
            statuses: list[bytes] = []
            async with asyncio.timeout(15):
                async for message in watcher.messages:
                    assert isinstance(message.payload, bytes)
                    statuses.append(message.payload)
                    if statuses.count(b"online") == 2:
                        break
            await online(fleet, 1)  # its own PUBACK may come after the watcher's copy
    assert statuses.count(b"online") == 2
