"""A small synchronous MQTT test client over paho-mqtt, collecting what it receives."""

from __future__ import annotations

import queue
import ssl
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from conformance.iut import RoleConfig
from conformance.model import time_left


def address(role: RoleConfig) -> tuple[str, int]:
    parts = urlsplit(role.url)
    return parts.hostname or "::1", parts.port or (8883 if parts.scheme == "mqtts" else 1883)


class ProbeClient:
    def __init__(
        self,
        role: RoleConfig,
        *,
        v5: bool = False,
        client_id: str | None = None,
        clean: bool = True,
        will: tuple[str, bytes] | None = None,
        keepalive: int = 30,
        session_expiry: int | None = None,
        manual_ack: bool = False,
        connect_properties: dict[str, Any] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port = address(role)
        self.v5 = v5
        self.client_id = client_id if client_id is not None else f"r197-{uuid.uuid4().hex[:12]}"
        protocol = paho.MQTTv5 if v5 else paho.MQTTv311
        kwargs: dict[str, Any] = {"client_id": self.client_id, "protocol": protocol}
        if not v5:
            kwargs["clean_session"] = clean
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, manual_ack=manual_ack, **kwargs)
        if role.username:
            self.client.username_pw_set(role.username, role.password)
        if tls is not None:  # an mqtts:// listener (R197-SEC): the context verifies the broker
            self.client.tls_set_context(tls)
        if will:
            self.client.will_set(will[0], will[1], qos=1, retain=False)
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.connack: queue.Queue[tuple[Any, Any]] = queue.Queue()
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_connect = lambda c, u, flags, rc, props: self.connack.put((flags, rc))
        self.subacks: queue.Queue[int] = queue.Queue()  # message ids of SUBACKs received
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.subacks.put(mid)
        self.disconnects: queue.Queue[Any] = queue.Queue()  # reason codes the broker sent
        self.client.on_disconnect = lambda c, u, flags, rc, props: self.disconnects.put(rc)
        self.connect_properties = connect_properties or {}
        self.clean = clean
        self.keepalive = keepalive
        self.session_expiry = session_expiry

    def connect(self, timeout: float = 10) -> tuple[Any, Any]:
        props = None
        kwargs: dict[str, Any] = {}
        if self.v5:
            kwargs["clean_start"] = self.clean
            props = Properties(PacketTypes.CONNECT)
            if self.session_expiry is not None:
                props.SessionExpiryInterval = self.session_expiry
            for key, value in self.connect_properties.items():
                setattr(props, key, value)
            kwargs["properties"] = props
        self.client.connect(self.host, self.port, keepalive=self.keepalive, **kwargs)
        self.client.loop_start()
        timeout = time_left(timeout)
        try:
            return self.connack.get(timeout=timeout)
        except queue.Empty:
            # The server's first packet is CONNACK (MQTT-3.2.0-1): silence is its fail, said
            # so, not a bare queue.Empty with an empty reason.
            raise AssertionError(
                f"no CONNACK from [{self.host}]:{self.port} within {timeout:g} s"
            ) from None

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 10) -> None:
        """Subscribe and wait for the SUBACK: a message published from another connection
        before the broker has the subscription is not delivered (MQTT 3.1.1 3.8.4), and the
        cases publish right after subscribing (one failed so on a loaded CI machine)."""
        result, mid = self.client.subscribe(topic, qos)
        assert result == paho.MQTT_ERR_SUCCESS
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                if self.subacks.get(timeout=left) == mid:
                    return
            except queue.Empty:
                break
        raise AssertionError(f"no SUBACK for {topic!r} within {timeout} s")

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, **properties: Any
    ) -> None:
        props = None
        if properties:
            props = Properties(PacketTypes.PUBLISH)
            for key, value in properties.items():
                setattr(props, key, value)
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        info.wait_for_publish(10)

    def receive(self, timeout: float = 5) -> paho.MQTTMessage | None:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """Close the socket without DISCONNECT (an abnormal disconnect)."""
        sock = self.client.socket()
        if sock is not None:
            sock.close()
        self.client.loop_stop()
