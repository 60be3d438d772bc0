"""MQTT ingest with aiomqtt: readings from ``city/<kind>/<device>/up/<format>``.

With MQTT 5 the gateway subscribes through a shared subscription (MQTT 5 section 4.8.2,
``$share/<group>/...``) so that several gateways share the load; brokers that refuse MQTT 5
(amqtt) get MQTT 3.1.1 and a plain subscription.  The payload format is the MQTT 5 Content Type
property when present, else the last topic level (DESIGN 3).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.normalizer import FORMATS, Format, Inbound, format_for_media_type

log = logging.getLogger(__name__)

TOPIC = "city/+/+/up/+"
SESSION_EXPIRY = 3600  # seconds the broker keeps our session (and queued readings) while away
Handler = Callable[[Inbound], object]  # its result (a rejection or None) is not needed here


def parse_broker_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp"):
        raise ValueError(f"broker URL must be mqtt://host:port, got {url!r}")
    return parts.hostname or "::1", parts.port or 1883


def inbound_from(
    topic: str, payload: bytes, content_type: str | None, now: float
) -> Inbound | None:
    """The Inbound for a message, or None when the topic is not a reading topic."""
    levels = topic.split("/")
    if len(levels) != 5 or levels[0] != "city" or levels[3] != "up":
        return None
    fmt: Format | None = format_for_media_type(content_type)
    if fmt is None:
        fmt = next((f for f in FORMATS if f == levels[4]), None)
    if fmt is None:
        # An unknown format level: the normalizer rejects it as unsupported-format.
        return Inbound("mqtt", payload, levels[4], now, levels[2])  # type: ignore[arg-type]
    return Inbound("mqtt", payload, fmt, now, levels[2])


class MqttIngest:
    """Subscribes and hands every message to ``handler``; reconnects with back-off."""

    def __init__(
        self,
        *,
        url: str,
        handler: Handler,
        username: str | None = None,
        password: str | None = None,
        group: str = "r197-gateways",
        client_id: str | None = None,
        shared: bool = True,
    ) -> None:
        self.host, self.port = parse_broker_url(url)
        self.handler = handler
        self.username = username
        self.password = password
        self.group = group
        self.client_id = client_id or "r197-gateway"
        self.shared = shared
        self.client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.protocol = "5"

    def _client(self, version: aiomqtt.ProtocolVersion) -> aiomqtt.Client:
        # A persistent session under a stable client id: readings published while the gateway
        # restarts wait in the broker (MQTT 5 3.1.2.11.2 session expiry, 3.1.1 clean session 0).
        v5 = version == aiomqtt.ProtocolVersion.V5
        props = None
        if v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = SESSION_EXPIRY
        session: dict[str, Any] = (
            {"clean_start": False, "properties": props} if v5 else {"clean_session": False}
        )
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=self.client_id,
            protocol=version,
            max_queued_incoming_messages=100_000,
            keepalive=30,
            timeout=5,
            **session,
        )

    async def run(self) -> None:
        backoff = 0.5
        version = aiomqtt.ProtocolVersion.V5
        ever_connected = False
        while True:
            try:
                async with self._client(version) as client:
                    self.client = client
                    topic = TOPIC
                    if version == aiomqtt.ProtocolVersion.V5 and self.shared:
                        topic = f"$share/{self.group}/{TOPIC}"
                    await client.subscribe(topic, qos=1)
                    log.info("MQTT: subscribed to %s at [%s]:%d", topic, self.host, self.port)
                    self.connected.set()
                    ever_connected = True
                    backoff = 0.5
                    async for message in client.messages:
                        self._on_message(message)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                self.client = None
                v5 = version == aiomqtt.ProtocolVersion.V5
                if v5 and not ever_connected and await self._reachable():
                    # A broker that refuses MQTT 5 (amqtt) says so in different ways, or just
                    # closes the connection: fall back to 3.1.1 and a plain subscription.
                    log.info("MQTT: MQTT 5 connection refused (%s); trying 3.1.1", exc)
                    version = aiomqtt.ProtocolVersion.V311
                    self.protocol = "3.1.1"
                    continue
                log.info("MQTT: connection lost (%s); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))  # noqa: S311
                backoff = min(backoff * 2, 10.0)

    async def _reachable(self) -> bool:
        """Whether the broker accepts TCP connections (then it is MQTT 5 it refused)."""
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), 3
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True

    def _on_message(self, message: aiomqtt.Message) -> None:
        content_type = None
        props = message.properties
        if props is not None and hasattr(props, "ContentType"):
            content_type = props.ContentType
        payload = (
            message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        )
        inbound = inbound_from(str(message.topic), payload, content_type, time.time())
        if inbound is None:
            log.debug("MQTT: ignoring topic %s", message.topic)
            return
        self.handler(inbound)

    async def publish(self, topic: str, payload: bytes, content_type: str | None = None) -> None:
        """Publish a command (southbound); raises aiomqtt.MqttError when disconnected."""
        if self.client is None:
            raise aiomqtt.MqttError("not connected to the broker")
        props = None
        if content_type and self.protocol == "5":
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ContentType = content_type
        await self.client.publish(topic, payload, qos=1, properties=props)
