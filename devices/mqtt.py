"""MQTT devices (aiomqtt): readings, retained online/offline status with a will, commands.

Topics and payloads follow docs/wire-formats.md.  Each device is one MQTT client (its own
session, credentials and will), as a real fleet is; they share one event loop.  With an
``mqtts://`` broker URL they speak TLS and check the broker's certificate and host name
(RFC 6125 6) against the CA file given (the city's CA), as a deployed device must.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.device import SimDevice
from devices.tasks import together

log = logging.getLogger(__name__)


def broker_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp", "mqtts"):
        raise ValueError(
            f"broker URL must look like mqtt://[::1]:1883 or mqtts://[::1]:8883, got {url!r}"
        )
    return parts.hostname or "::1", parts.port or (8883 if parts.scheme == "mqtts" else 1883)


def broker_tls(url: str, ca_file: Path | None) -> ssl.SSLContext | None:
    """One TLS context for every device of a fleet (None for ``mqtt://``): the broker's
    certificate must chain to ``ca_file`` (else the system's CAs) and name the URL's host."""
    if urlsplit(url).scheme != "mqtts":
        if ca_file is not None:
            raise ValueError(f"a broker CA file is for mqtts:// URLs, got {url!r}")
        return None
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8996
    return context


def command_of(payload: bytes | bytearray | str | object) -> dict[str, object] | None:
    """The command in a cmd message (a JSON object, docs/wire-formats.md), None for anything
    else.  RecursionError too: JSON nested a few thousand deep is refused by json's parser
    that way, and must not end the device's command loop."""
    try:
        command = json.loads(payload)  # type: ignore[arg-type]
    except (ValueError, TypeError, RecursionError):
        return None
    return command if isinstance(command, dict) else None


class MqttDevice:
    """Publishes readings every ``interval`` seconds until cancelled."""

    def __init__(
        self,
        device: SimDevice,
        *,
        broker: str,
        password: str,
        start_delay: float = 0.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.device = device
        self.start_delay = start_delay
        self.host, self.port = broker_address(broker)
        self.password = password
        self.tls = tls
        group = device.spec.group
        kind = device.kind
        self.base = f"city/{kind}/{device.device_id}"
        self.v5 = group.mqtt_version == "5"
        self.online = False
        self.client: aiomqtt.Client | None = None

    def _client(self) -> aiomqtt.Client:
        dev = self.device
        return aiomqtt.Client(
            self.host,
            self.port,
            username=dev.device_id,
            password=self.password,
            identifier=dev.device_id,
            protocol=aiomqtt.ProtocolVersion.V5 if self.v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(f"{self.base}/status", b"offline", qos=1, retain=True),
            keepalive=60,
            timeout=30,
            tls_context=self.tls,
        )

    async def run(self) -> None:
        dev = self.device
        group = dev.spec.group
        backoff = 1.0
        # Connect at the fleet's pace (a storm of thousands of CONNECTs overloads broker and
        # loop alike), then spread the readings over the interval.
        await asyncio.sleep(self.start_delay + random.random() * min(group.interval, 1.0))
        while True:
            try:
                async with self._client() as client:
                    self.client = client
                    await client.publish(f"{self.base}/status", b"online", qos=1, retain=True)
                    self.online = True
                    backoff = 1.0
                    if dev.kind == "streetlight":
                        await client.subscribe(f"{self.base}/cmd", qos=1)
                        await together(
                            (f"{dev.device_id} publish", self._publish_loop(client)),
                            (f"{dev.device_id} commands", self._commands(client)),
                        )
                    else:
                        await self._publish_loop(client)
            except aiomqtt.MqttError as exc:
                self.online = False
                self.client = None
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    # aiomqtt 2.5 turns a cancellation during CONNECT into MqttError; a
                    # device being stopped must stop, not reconnect.
                    raise asyncio.CancelledError from exc
                log.info("%s: MQTT connection lost (%s), retrying", dev.device_id, exc)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 30.0)
            except asyncio.CancelledError:
                self.online = False
                raise

    async def publish_once(self, client: aiomqtt.Client) -> None:
        dev = self.device
        if dev.read() is None:
            return
        fmt = dev.spec.group.format
        payload, media_type = dev.encode()
        props = None
        if self.v5:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ContentType = media_type
        await client.publish(
            f"{self.base}/up/{fmt}", payload, qos=dev.spec.group.qos, properties=props
        )
        dev.counters.sent += 1

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        interval = self.device.spec.group.interval
        next_at = time.monotonic()
        me = asyncio.current_task()
        while True:
            if me is not None and me.cancelling():
                # Python 3.11's wait_for (inside aiomqtt's publish) can swallow a cancellation
                # that races with the publish completing; stop anyway.
                raise asyncio.CancelledError
            await self.publish_once(client)
            next_at += interval
            await asyncio.sleep(max(next_at - time.monotonic(), 0.0))

    async def _commands(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            command = command_of(message.payload)
            if command is None:
                log.warning("%s: ignoring a malformed command", self.device.device_id)
                continue
            self.device.state.apply_command(command)
            self.device.counters.commands += 1
            log.info("%s: command %s", self.device.device_id, command)
            await self.publish_once(client)  # report the new state at once

    async def disconnect_abruptly(self) -> None:
        """Drop the TCP connection without DISCONNECT, so the broker sends the will."""
        sock = self.client._client.socket() if self.client is not None else None
        if sock is not None:
            sock.close()  # a test hook: simulate a crash
