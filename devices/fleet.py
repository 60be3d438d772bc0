"""A fleet: every device of a scenario, started and stopped together in one process."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiocoap

from devices.coap import CoapDevice, PushDevice
from devices.device import SimDevice
from devices.mqtt import MqttDevice, broker_tls
from devices.oscore import DeviceContexts, DeviceKeys
from devices.scenario import Scenario
from devices.tasks import Background

log = logging.getLogger(__name__)

CONNECTS_PER_SECOND = 250  # MQTT devices connecting per second when a fleet starts


@dataclass
class FleetStatus:
    devices: int
    mqtt_online: int
    coap_servers: int
    coap_registered: int
    sent: int
    failed: int
    commands: int

    def line(self) -> str:
        return (
            f"devices {self.devices}: MQTT online {self.mqtt_online}, CoAP servers "
            f"{self.coap_servers} ({self.coap_registered} in the RD), readings sent {self.sent}, "
            f"failed {self.failed}, commands {self.commands}"
        )


class Fleet:
    """``async with Fleet(scenario):`` runs every device until the block ends."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        broker: str | None = None,
        rd: str | None = None,
        gateway: str | None = None,
        password: str | None = None,
        use_rd: bool = True,
        passwords: Mapping[str, str] | None = None,
        broker_ca: Path | None = None,
        oscore: Mapping[str, DeviceKeys] | None = None,
        oscore_dir: Path | None = None,
    ) -> None:
        self.scenario = scenario
        ends = scenario.endpoints
        self.broker = broker or ends.broker
        self.rd = (rd or ends.rd) if use_rd else None
        self.gateway = gateway or ends.gateway
        self.password = password or scenario.password
        # Each device's own password (CityCredentials); the shared one is the lab mode's.
        self.passwords = dict(passwords or {})
        self.tls = broker_tls(self.broker, broker_ca)
        # OSCORE (RFC 8613) for CoAP and push devices: each its own context, whose sequence
        # numbers persist under oscore_dir (devices.oscore.state_dir(oscore.json)).
        if oscore is not None and oscore_dir is None:
            raise ValueError("OSCORE keys need a directory for their sequence numbers")
        self.oscore = dict(oscore) if oscore is not None else None
        self.oscore_dir = oscore_dir
        self.devices = [SimDevice(spec) for spec in scenario.devices()]
        if self.oscore is not None:
            unkeyed = [
                d.device_id for d in self.devices
                if d.spec.group.protocol != "mqtt" and d.device_id not in self.oscore
            ]  # fmt: skip
            if unkeyed:
                raise ValueError(f"CoAP devices without OSCORE keys: {', '.join(unkeyed[:5])}")
        self.mqtt: list[MqttDevice] = []
        self.coap: list[CoapDevice] = []
        self.push: list[PushDevice] = []
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def __aenter__(self) -> Fleet:
        host = self.scenario.endpoints.coap_host
        async with contextlib.AsyncExitStack() as stack:
            tasks = await stack.enter_async_context(Background())
            for dev in self.devices:
                protocol = dev.spec.group.protocol
                if protocol == "mqtt":
                    delay = len(self.mqtt) / CONNECTS_PER_SECOND
                    mqtt = MqttDevice(
                        dev, broker=self.broker, start_delay=delay, tls=self.tls,
                        password=self.passwords.get(dev.device_id, self.password),
                    )  # fmt: skip
                    self.mqtt.append(mqtt)
                    tasks.start(mqtt.run(), name=dev.device_id)
                elif protocol == "coap":
                    assert dev.spec.coap_port is not None
                    server = CoapDevice(
                        dev, host=host, port=dev.spec.coap_port, rd=self.rd,
                        oscore=self._contexts(dev.device_id, stack),
                    )  # fmt: skip
                    await stack.enter_async_context(server)
                    self.coap.append(server)
                else:
                    if self._client is None:
                        self._client = await aiocoap.Context.create_client_context(
                            transports=["oscore", "udp6"] if self.oscore else ["udp6"]
                        )
                        # Shut down after the push devices' loops have stopped (LIFO).
                        stack.push_async_callback(self._client.shutdown)
                        tasks = await stack.enter_async_context(Background())
                    push = PushDevice(
                        dev, gateway=self.gateway, context=self._client,
                        oscore=self._contexts(dev.device_id, stack),
                    )  # fmt: skip
                    self.push.append(push)
                    tasks.start(push.run(), name=dev.device_id)
            self._stack = stack.pop_all()
        log.info(
            "fleet: %d MQTT, %d CoAP, %d push devices",
            len(self.mqtt),
            len(self.coap),
            len(self.push),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        try:
            await self._stack.__aexit__(exc_type, exc, tb)
        finally:
            self._client = None

    def _contexts(
        self, device: str, stack: contextlib.AsyncExitStack[bool | None]
    ) -> DeviceContexts | None:
        """The device's OSCORE contexts, closed (sequence numbers written) when the fleet ends."""
        if self.oscore is None:
            return None
        assert self.oscore_dir is not None
        contexts = DeviceContexts(device, self.oscore[device], self.oscore_dir)
        stack.callback(contexts.close)
        return contexts

    def status(self) -> FleetStatus:
        return FleetStatus(
            devices=len(self.devices),
            mqtt_online=sum(1 for m in self.mqtt if m.online),
            coap_servers=len(self.coap),
            coap_registered=sum(1 for c in self.coap if c.registered),
            sent=sum(d.counters.sent for d in self.devices),
            failed=sum(d.counters.failed for d in self.devices),
            commands=sum(d.counters.commands for d in self.devices),
        )

    def device(self, device_id: str) -> SimDevice:
        return next(d for d in self.devices if d.device_id == device_id)
