"""A lean MQTT load generator: one connection, QoS 0 or 1, a window of messages in flight.

The benchmarks judge the broker, the gateway and the peer, so the load generator must cost as
little as possible: a paho client publishing from one thread while its network loop runs in
another topped out at about 7,500 messages/s on the 2-core machine with 0.6 of a core idle, and
was then the limit of every figure.  This one writes MQTT 3.1.1 PUBLISH packets (encoded with
the gateway's codec, gateway/transports/mqtt_wire.py) straight to an asyncio transport, many
per write, and counts PUBACKs.  Every message carries its own device name and a fresh
timestamp, as before; the payloads are built while sending, not ahead.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable

from gateway.transports import mqtt_wire as wire

WINDOW = 1000  # QoS 1 messages in flight (paho's max_inflight_messages in the old publisher)
CHUNK = 50  # messages per socket write


class _Publisher(asyncio.Protocol):
    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[int] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.acked = 0
        self.progress = asyncio.Event()
        self._rest = b""

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.progress.set()

    def data_received(self, data: bytes) -> None:
        buf = self._rest + data
        packets, used = wire.frames(buf)
        for first, start, end in packets:
            if first >> 4 == wire.PUBACK:
                self.acked += 1  # counted, not parsed: the broker's own acknowledgements
            elif first >> 4 == wire.CONNACK and not self.connack.done():
                try:
                    self.connack.set_result(wire.parse_connack(buf[start:end], wire.V311).reason)
                except wire.MalformedPacket as exc:  # to publish(), not to the event loop
                    self.connack.set_exception(exc)
        self._rest = buf[used:]
        self.progress.set()


async def publish(
    port: int,
    count: int,
    message: Callable[[int, float], tuple[str, bytes]],
    *,
    rate: float | None = None,
    qos: int = 1,
    host: str = "::1",
    client_id: str = "r197-loadgen",
    ca_file: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> float:
    """Publish ``count`` messages (``message(n, now)`` gives topic and payload).

    As fast as the window allows, or at ``rate`` per second.  Returns the monotonic time of
    the first publish; returns once every QoS 1 message is acknowledged.  With ``ca_file`` the
    connection is TLS, the broker's certificate verified as the gateway does.
    """
    loop = asyncio.get_running_loop()
    proto = _Publisher()
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    transport, _ = await loop.create_connection(
        lambda: proto, host, port, ssl=context, server_hostname=host if context else None
    )
    transport.write(
        wire.connect(
            client_id, version=wire.V311, keepalive=60, clean=True, username=username,
            password=password,
        )
    )  # fmt: skip
    async with asyncio.timeout(10):
        code = await proto.connack
    if code:
        raise RuntimeError(f"the broker refused the load generator: return code {code}")
    began = time.monotonic()
    sent = 0
    while sent < count:
        if proto.closed.done():
            raise RuntimeError(f"the broker closed the connection after {sent} messages")
        due = count if rate is None else min(count, int((time.monotonic() - began) * rate) + 1)
        if qos:
            room = WINDOW - (sent - proto.acked)
        else:  # nothing comes back: keep the socket buffer from growing without bound
            room = CHUNK if transport.get_write_buffer_size() < 1 << 20 else 0
        batch = min(due - sent, room, CHUNK)
        if batch <= 0:
            proto.progress.clear()
            if room <= 0 and qos:
                await proto.progress.wait()  # the window is full: wait for PUBACKs
            else:
                await asyncio.sleep(0.001)  # ahead of the offered rate
            continue
        now = time.time()
        packets = []
        for n in range(sent, sent + batch):
            topic, payload = message(n, now)
            packets.append(
                wire.publish(topic, payload, qos=qos, packet_id=n % 0xFFFF + 1, version=wire.V311)
            )
        transport.write(b"".join(packets))
        sent += batch
        await asyncio.sleep(0)  # let PUBACKs in
    while qos and proto.acked < count and not proto.closed.done():
        proto.progress.clear()
        async with asyncio.timeout(60):
            await proto.progress.wait()
    transport.write(wire.DISCONNECT_PACKET)
    transport.close()
    return began
