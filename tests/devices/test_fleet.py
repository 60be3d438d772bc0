"""The fleet stops every device task, even one that misses a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from devices.fleet import Fleet
from devices.mqtt import MqttDevice
from devices.scenario import Scenario


async def test_fleet_stops_a_task_that_swallowed_a_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Python 3.11's asyncio.wait_for (under aiomqtt's publish) can swallow a cancellation that
    # races with the awaited future completing; the device task then goes on.  Model that task.
    swallowed = asyncio.Event()
    tasks: list[asyncio.Task[object]] = []

    async def device(self: MqttDevice) -> None:
        tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            swallowed.set()
        await asyncio.Event().wait()  # goes on until cancelled once more

    monkeypatch.setattr(MqttDevice, "run", device)
    fleet = Fleet(
        Scenario.model_validate({"groups": [{"kind": "noise", "count": 1, "protocol": "mqtt"}]}),
        broker="mqtt://[::1]:1",
        use_rd=False,
    )
    await fleet.__aenter__()
    await asyncio.sleep(0)
    stopping = asyncio.create_task(fleet.__aexit__())
    # A fleet that hangs is the failure, not a slow one; asyncio.wait does not cancel it.
    done, _ = await asyncio.wait([stopping], timeout=30)
    assert stopping in done, "the fleet is still waiting for a device task"
    assert swallowed.is_set()
    assert [task.cancelled() for task in tasks] == [True]
