"""MQTT ingest: readings from ``city/<kind>/<device>/up/<format>``, acknowledged once on disk.

With MQTT 5 the gateway subscribes through a shared subscription (MQTT 5 section 4.8.2,
``$share/<group>/...``) so that several gateways share the load; brokers that refuse MQTT 5
(amqtt) get MQTT 3.1.1 and a plain subscription.  The payload format is the MQTT 5 Content Type
property when present, else the last topic level (DESIGN 3).

Every PUBLISH read from the socket in one go is normalized, the accepted readings are committed
to the uplink's durable queue in one transaction, and only then are the PUBACKs sent, together
(MQTT 5 4.3.2: the receiver owns the message once it has sent PUBACK).  A gateway that dies
before the commit leaves the messages unacknowledged in its persistent session, and the broker
sends them again when it comes back.  A rejected payload is acknowledged with the MQTT 5 reason
code that says why (RejectedPayload.mqtt_reason_code), so one bad message is never redelivered.
The Receive Maximum we announce bounds how many readings the broker has in flight to us; beyond
it the broker holds them, which is the back-pressure when we fall behind.

With an ``mqtts://`` URL the connection is TLS (MQTT 5 5.4.9): the broker's certificate must
chain to ``ca_file`` (the city's CA; else the system's CAs) and name the host of the URL
(RFC 6125 6).  A handshake that fails is said once, in words, as a BrokerTlsError; the ingest
keeps retrying, as for any broker outage.

The wire format lives in :mod:`gateway.transports.mqtt_wire`; this module holds the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from gateway.errors import BrokerError, BrokerTlsError, RejectedPayload
from gateway.normalizer import FORMATS, Format, Inbound, format_for_media_type
from gateway.transports import mqtt_wire as wire

log = logging.getLogger(__name__)

TOPIC = "city/+/+/up/+"
SHORT_SESSION = 5.0  # seconds; sessions the broker ends sooner, in a row, suggest a takeover
SESSION_EXPIRY = 3600  # seconds the broker keeps our session (and queued readings) while away
RECEIVE_MAXIMUM = 1000  # unacknowledged QoS 1 readings the broker may have in flight to us
KEEPALIVE = 30
TIMEOUT = 5.0  # seconds for CONNACK, SUBACK and a command's PUBACK
# Packets handled per event-loop turn.  One socket read holds up to 256 KiB (about 2,000
# readings, 80 ms of work); handling it in one go kept the uplink's HTTP answers waiting that
# long at every await, so gateway and platform took turns instead of overlapping.
TURN = 128
UNSPECIFIED_ERROR = 0x80  # MQTT 5 2.4: for a message the gateway failed on (a bug of ours)
Handler = Callable[[Inbound], RejectedPayload | None]


def parse_broker_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp", "mqtts"):
        raise ValueError(f"broker URL must be mqtt://host:port or mqtts://host:port, got {url!r}")
    return parts.hostname or "::1", parts.port or (8883 if parts.scheme == "mqtts" else 1883)


def tls_context(url: str, ca_file: Path | None) -> ssl.SSLContext | None:
    """The TLS context for an ``mqtts://`` URL (None for ``mqtt://``): certificate and host
    name verified, TLS 1.2 at least (RFC 8996)."""
    if urlsplit(url).scheme != "mqtts":
        if ca_file is not None:
            # A CA file with a plain URL would look secure and not be: say so at start.
            raise ValueError(f"a broker CA file is for mqtts:// URLs, got {url!r}")
        return None
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def tls_failure(exc: ssl.SSLError, host: str, port: int) -> BrokerTlsError:
    """A handshake failure in words (the one place ssl errors become gateway errors)."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if not isinstance(exc, ssl.SSLCertVerificationError):
        return BrokerTlsError(f"TLS handshake with the broker at {where} failed: {exc}")
    why = exc.verify_message or str(exc)
    if "expired" in why:
        hint = "the broker's certificate has expired (or our clock is wrong)"
    elif "mismatch" in why:
        hint = "the broker's certificate names another host than the URL"
    else:
        hint = "wrong CA? (--broker-ca)"
    return BrokerTlsError(f"TLS to the broker at {where}: certificate verify failed: {why}; {hint}")


def inbound_from(
    topic: str, payload: bytes, content_type: str | None, now: float
) -> Inbound | None:
    """The Inbound for a message, or None when the topic is not a reading topic."""
    # Without a content type (the usual case) the topic says it all, and devices repeat it.
    # Long topics are not remembered: the cache would keep what a publisher invents (64 KB each).
    cached = content_type is None and len(topic) <= 256
    known = _topic_parts(topic) if cached else _parse_topic(topic, content_type)
    if known is None:
        return None
    fmt, device = known
    return Inbound("mqtt", payload, fmt, now, device)


@functools.lru_cache(maxsize=65536)
def _topic_parts(topic: str) -> tuple[Format, str] | None:
    return _parse_topic(topic, None)


def _parse_topic(topic: str, content_type: str | None) -> tuple[Format, str] | None:
    levels = topic.split("/")
    if len(levels) != 5 or levels[0] != "city" or levels[3] != "up":
        return None
    fmt: Format | None = format_for_media_type(content_type)
    if fmt is None and levels[4] in FORMATS:
        fmt = levels[4]  # narrowed to a Format by the test above
    if fmt is None:
        # An unknown format level: the normalizer rejects it as unsupported-format.
        return levels[4], levels[2]  # type: ignore[return-value]
    return fmt, levels[2]


class _Connection(asyncio.Protocol):
    """One TCP connection to the broker: parses packets, delivers readings, batches PUBACKs."""

    def __init__(self, ingest: MqttIngest, version: int) -> None:
        self.ingest = ingest
        self.version = version
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[wire.Connack] = loop.create_future()
        self.closed: asyncio.Future[str] = loop.create_future()
        self.waiting: dict[int, asyncio.Future[list[int]]] = {}  # our packet id -> its ack
        self.last_received = time.monotonic()
        self._buf = b""  # bytes read and not yet handled, from ``_pos``
        self._pos = 0
        self._paused = False  # reading paused while a read is handled over several turns
        self._qos2: set[int] = set()  # broker packet ids we sent PUBREC for (MQTT 5 4.3.3)
        self.failure: Exception | None = None  # a bug of ours met in a callback; run raises it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not a subclass of asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._close(f"connection lost: {exc}" if exc else "connection closed by the broker")

    def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise BrokerError("not connected to the broker")
        self.transport.write(data)

    def _close(self, why: str) -> None:
        if not self.closed.done():
            self.closed.set_result(why)
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(BrokerError(why))
        self.waiting.clear()
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.last_received = time.monotonic()
        self._buf = self._buf[self._pos :] + data if self._pos < len(self._buf) else data
        self._pos = 0
        self._turn_or_fail()

    def _turn_or_fail(self) -> None:
        """``_turn``, ending the session with an unexpected exception: raised in a protocol
        callback it would only be logged by asyncio (and a paused connection never resumed),
        while ``_session`` raises it from the run loop, which stops the gateway (DESIGN 4)."""
        try:
            self._turn()
        except Exception as exc:
            self.failure = exc
            self._close(f"failed: {exc!r}")

    def _turn(self) -> None:
        """Handle up to TURN packets, commit their readings, acknowledge them; when more
        complete packets are waiting, pause reading and go on at the next loop turn."""
        if self.closed.done():
            return
        buf = self._buf
        acks: list[bytes] = []
        try:
            packets, self._pos = wire.frames(buf, self._pos, TURN)
            for first, start, end in packets:
                if first >> 4 == wire.PUBLISH:
                    self._publish(first, buf, start, end, acks)
                else:
                    self._control(first, buf[start:end])
        except wire.MalformedPacket as exc:
            # MQTT 5 4.13: a malformed packet closes the connection; unacknowledged readings
            # come again after the reconnection.
            log.warning("MQTT: malformed packet from the broker (%s); reconnecting", exc)
            self._close(f"malformed packet: {exc}")
            return
        if acks:
            try:
                self.ingest.commit()
            except Exception as exc:  # a full disk: do not acknowledge what is not stored
                log.error("MQTT: durable queue commit failed (%s); not acknowledging", exc)
                self._close(f"commit failed: {exc}")
                return
            self.write(b"".join(acks))
        assert self.transport is not None
        if len(packets) == TURN:
            if not self._paused:
                self._paused = True
                self.transport.pause_reading()
            asyncio.get_running_loop().call_soon(self._turn_or_fail)
        elif self._paused:
            self._paused = False
            self.transport.resume_reading()

    def _publish(self, first: int, buf: bytes, start: int, end: int, acks: list[bytes]) -> None:
        qos = (first >> 1) & 3
        topic, packet_id, content_type, pos = wire.parse_publish(
            first, buf, start, end, self.version
        )
        if qos == 2 and packet_id in self._qos2:
            acks.append(wire.ack(wire.PUBREC, packet_id, version=self.version))  # a resend
            return
        reason = self.ingest.deliver(topic, buf[pos:end], content_type)
        if qos == 1:
            acks.append(wire.ack(wire.PUBACK, packet_id, reason, version=self.version))
        elif qos == 2:
            self._qos2.add(packet_id)
            acks.append(wire.ack(wire.PUBREC, packet_id, reason, version=self.version))

    def _control(self, first: int, body: bytes) -> None:
        kind = wire.check_flags(first)
        if kind == wire.CONNACK:
            if not self.connack.done():
                self.connack.set_result(wire.parse_connack(body, self.version))
        elif kind in (wire.SUBACK, wire.PUBACK):
            if kind == wire.SUBACK:
                packet_id, codes = wire.parse_suback(body, self.version)
            else:
                packet_id, reason = wire.parse_ack(body, self.version)
                codes = [reason]
            future = self.waiting.pop(packet_id, None)
            if future is not None and not future.done():
                future.set_result(codes)
        elif kind == wire.PUBREL:
            packet_id, _ = wire.parse_ack(body, self.version)
            self._qos2.discard(packet_id)
            self.write(wire.ack(wire.PUBCOMP, packet_id, version=self.version))
        elif kind == wire.DISCONNECT:
            reason, text = wire.parse_disconnect(body)
            log.warning("MQTT: the broker disconnected us: 0x%02x %s", reason, text)
            self._close(f"DISCONNECT 0x{reason:02x} {text}".strip())
        elif kind != wire.PINGRESP:
            raise wire.MalformedPacket(f"unexpected packet type {kind} from the broker")


class MqttIngest:
    """Subscribes and hands every message to ``handler``; reconnects with back-off.

    ``commit`` makes what the handler accepted durable; it runs before the PUBACKs go out.
    """

    def __init__(
        self,
        *,
        url: str,
        handler: Handler,
        commit: Callable[[], None] = lambda: None,
        username: str | None = None,
        password: str | None = None,
        group: str = "r197-gateways",
        client_id: str | None = None,
        shared: bool = True,
        ca_file: Path | None = None,
    ) -> None:
        self.host, self.port = parse_broker_url(url)
        self.ssl = tls_context(url, ca_file)
        self._tls_said: str | None = None  # the last TLS failure logged (said once, DESIGN 4)
        self.handler = handler
        self.commit = commit
        self.username = username
        self.password = password
        self.group = group
        self.client_id = client_id or "r197-gateway"
        self.shared = shared
        self.connected = asyncio.Event()
        self.protocol = "5"
        self._conn: _Connection | None = None
        self._packet_id = 0
        self._failures = 0
        self.sessions = 0  # connections that got as far as the subscription
        self._short = 0  # sessions in a row the broker ended within SHORT_SESSION of their start

    def deliver(self, topic: str, payload: bytes, content_type: str | None) -> int:
        """Hand one message to the handler; the MQTT 5 reason code for its acknowledgement."""
        inbound = inbound_from(topic, payload, content_type, time.time())
        if inbound is None:
            log.debug("MQTT: ignoring topic %s", topic)
            return 0
        try:
            rejected = self.handler(inbound)
        except Exception:  # a bug of ours must not stop the other devices' readings
            self._failures += 1
            if self._failures == 1 or self._failures % 1000 == 0:
                log.exception(
                    "MQTT: failed on a message from %s (%d so far)", topic, self._failures
                )
            return UNSPECIFIED_ERROR
        return rejected.mqtt_reason_code if rejected is not None else 0

    async def run(self) -> None:
        backoff = 0.5
        version = wire.V5
        ever_connected = False
        while True:
            began = time.monotonic()
            try:
                await self._session(version)
            except BrokerTlsError as exc:
                # Not a broker refusing MQTT 5: no fallback; a warning the first time only.
                self.connected.clear()
                if str(exc) != self._tls_said:
                    self._tls_said = str(exc)
                    log.warning("MQTT: %s; retrying", exc)
            except (BrokerError, OSError, TimeoutError) as exc:
                was_up = self.connected.is_set()
                self.connected.clear()
                if was_up:
                    ever_connected = True
                    backoff = 0.5
                    self._note_session_end(time.monotonic() - began)
                elif version == wire.V5 and not ever_connected and await self._reachable():
                    # A broker that refuses MQTT 5 (amqtt) says so in different ways, or just
                    # closes the connection: fall back to 3.1.1 and a plain subscription.
                    log.info("MQTT: MQTT 5 connection refused (%s); trying 3.1.1", exc)
                    version = wire.V311
                    self.protocol = "3.1.1"
                    continue
                log.info("MQTT: %s; retrying in %.1f s", exc, backoff)
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))  # noqa: S311
            backoff = min(backoff * 2, 10.0)

    def _note_session_end(self, lasted: float) -> None:
        """Warn when the broker keeps ending our sessions right after they start: the sign of
        another client connected with the same client id, each taking the session over from the
        other (MQTT 5 3.1.4-3; Mosquitto closes the older connection without a DISCONNECT).
        Each takeover also sends the unacknowledged readings again (duplicates, not losses)."""
        self._short = self._short + 1 if lasted < SHORT_SESSION else 0
        if self._short in (3, 100) or (self._short and self._short % 1000 == 0):
            log.warning(
                "MQTT: the broker ended %d sessions in a row within %.0f s of their start: "
                "another client is probably connected with our client id %r and the two take "
                "the session over from each other; give each gateway its own client id "
                "(testbed gateway --client-id, or [gateway] client_id; its own username where "
                "the broker ties client ids to usernames, as a secure city's Mosquitto does) "
                "and its own queue file",
                self._short,
                SHORT_SESSION,
                self.client_id,
            )

    async def _session(self, version: int) -> None:
        """One connection, from CONNECT to its end (returns or raises when it is gone)."""
        loop = asyncio.get_running_loop()
        conn = _Connection(self, version)
        try:
            async with asyncio.timeout(TIMEOUT):
                await loop.create_connection(
                    lambda: conn, self.host, self.port, ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )  # fmt: skip
        except ssl.SSLError as exc:
            raise tls_failure(exc, self.host, self.port) from None
        self._tls_said = None
        try:
            # A persistent session under a stable client id: readings published while the
            # gateway restarts wait in the broker (MQTT 5 3.1.2.11.2, 3.1.1 clean session 0).
            conn.write(
                wire.connect(
                    self.client_id,
                    version=version,
                    keepalive=KEEPALIVE,
                    clean=False,
                    username=self.username,
                    password=self.password,
                    session_expiry=SESSION_EXPIRY,
                    receive_maximum=RECEIVE_MAXIMUM,
                )
            )
            async with asyncio.timeout(TIMEOUT):
                connack = await asyncio.shield(conn.connack)
            if connack.reason:
                raise BrokerError("the broker refused the connection", connack.reason)
            keepalive = connack.properties.get(wire.SERVER_KEEP_ALIVE, KEEPALIVE)
            assert isinstance(keepalive, int)
            self._conn = conn
            topic = TOPIC
            if version == wire.V5 and self.shared:
                topic = f"$share/{self.group}/{TOPIC}"
            packet_id = self._next_id()
            codes = await self._request(
                conn, packet_id, wire.subscribe(packet_id, topic, 1, version=version)
            )
            if not codes or codes[0] >= 0x80:
                raise BrokerError(f"subscription to {topic} refused", codes[0] if codes else None)
            log.info("MQTT: subscribed to %s at [%s]:%d", topic, self.host, self.port)
            self.sessions += 1
            self.connected.set()
            await self._keep_alive(conn, keepalive)
        finally:
            self._conn = None
            conn._close("session ended")
            if conn.failure is not None:
                raise conn.failure

    async def _keep_alive(self, conn: _Connection, keepalive: int) -> None:
        """PINGREQ every half keep-alive; a broker silent for one is gone (MQTT 5 3.1.2.10)."""
        period = max(keepalive / 2, 0.5) if keepalive else 30.0
        while not conn.closed.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await asyncio.shield(conn.closed)
            if conn.closed.done():
                break
            if keepalive and time.monotonic() - conn.last_received > keepalive:
                raise BrokerError(f"no answer from the broker for {keepalive} s")
            conn.write(wire.PINGREQ_PACKET)
        raise BrokerError(conn.closed.result())

    async def _request(self, conn: _Connection, packet_id: int, packet: bytes) -> list[int]:
        """Send a packet carrying ``packet_id``; the reason codes of its SUBACK or PUBACK."""
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        conn.waiting[packet_id] = future
        conn.write(packet)
        async with asyncio.timeout(TIMEOUT):
            return await future

    def _next_id(self) -> int:
        self._packet_id = self._packet_id % 0xFFFF + 1
        return self._packet_id

    async def _reachable(self) -> bool:
        """Whether the broker accepts TCP connections (then it is MQTT 5 it refused)."""
        try:
            async with asyncio.timeout(3):
                _reader, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True

    async def publish(self, topic: str, payload: bytes, content_type: str | None = None) -> None:
        """Publish a command at QoS 1 (southbound); raises BrokerError when disconnected."""
        conn = self._conn
        if conn is None:
            raise BrokerError("not connected to the broker")
        packet_id = self._next_id()
        packet = wire.publish(
            topic, payload, qos=1, packet_id=packet_id, version=conn.version,
            content_type=content_type,
        )  # fmt: skip
        codes = await self._request(conn, packet_id, packet)
        if codes and codes[0] >= 0x80:
            raise BrokerError(f"the broker refused the command on {topic}", codes[0])
