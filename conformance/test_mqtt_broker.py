"""R197-MQTT: broker behaviour seen by clients (MQTT 3.1.1 OASIS 2014, MQTT 5.0 OASIS 2019)."""

from __future__ import annotations

import socket
import time
import uuid

from conformance.iut import IutConfig, RoleConfig
from conformance.model import case
from conformance.mqtt_client import ProbeClient, address
from gateway.transports import mqtt_wire as wire

KEEPALIVE = 2  # seconds, in the raw CONNECT of R197-MQTT-16


def topic() -> str:
    return f"r197test/{uuid.uuid4().hex[:10]}"


@case("R197-MQTT-01", "CONNECT with clean session is accepted and session present is 0",
      verifies=["MQTT311-3.2.2-1"], theme="interoperability", pics=["mqtt.v311"])  # fmt: skip
def test_connect_311(mqtt_broker: RoleConfig) -> None:
    client = ProbeClient(mqtt_broker)
    flags, rc = client.connect()
    client.disconnect()
    assert rc == 0, f"CONNACK return code {rc}"
    assert not flags.session_present


@case("R197-MQTT-02", "MQTT 5 CONNECT is accepted with reason code Success",
      verifies=["MQTT5-3.2.2.2"], theme="interoperability", pics=["mqtt.v5"])  # fmt: skip
def test_connect_v5(mqtt_broker: RoleConfig) -> None:
    client = ProbeClient(mqtt_broker, v5=True)
    _flags, rc = client.connect()
    client.disconnect()
    assert rc == 0, f"CONNACK reason code {rc}"


def _round_trip(role: RoleConfig, qos: int) -> None:
    t = topic()
    sub, pub = ProbeClient(role), ProbeClient(role)
    sub.connect()
    sub.subscribe(t, qos)
    time.sleep(0.2)
    pub.connect()
    pub.publish(t, b"hello", qos=qos)
    message = sub.receive()
    duplicate = sub.receive(timeout=0.5) if qos == 2 else None
    sub.disconnect()
    pub.disconnect()
    assert message is not None, f"no QoS {qos} message delivered"
    assert message.payload == b"hello"
    assert message.qos == qos
    assert duplicate is None, "QoS 2 message delivered twice"


@case("R197-MQTT-03", "A QoS 0 PUBLISH reaches a matching subscriber",
      verifies=["MQTT311-4.3.1-1"], theme="interoperability", pics=["mqtt.v311"])  # fmt: skip
def test_qos0(mqtt_broker: RoleConfig) -> None:
    _round_trip(mqtt_broker, 0)


@case("R197-MQTT-04", "A QoS 1 PUBLISH is acknowledged and delivered at QoS 1",
      verifies=["MQTT311-4.3.2-2"], theme="interoperability", pics=["mqtt.v311"])  # fmt: skip
def test_qos1(mqtt_broker: RoleConfig) -> None:
    _round_trip(mqtt_broker, 1)


@case("R197-MQTT-05", "A QoS 2 PUBLISH is delivered exactly once",
      verifies=["MQTT311-4.3.3-2"], theme="interoperability", pics=["mqtt.qos2"])  # fmt: skip
def test_qos2(mqtt_broker: RoleConfig) -> None:
    _round_trip(mqtt_broker, 2)


@case("R197-MQTT-06", "A retained message is sent to a new subscriber with the retain flag",
      verifies=["MQTT311-3.3.1-6", "MQTT311-3.3.1-8"], theme="interoperability",
      pics=["mqtt.retain"])  # fmt: skip
def test_retained(mqtt_broker: RoleConfig) -> None:
    t = topic()
    pub = ProbeClient(mqtt_broker)
    pub.connect()
    pub.publish(t, b"kept", retain=True)
    sub = ProbeClient(mqtt_broker)
    sub.connect()
    sub.subscribe(t)
    message = sub.receive()
    pub.publish(t, b"", retain=True)  # clean up
    pub.disconnect()
    sub.disconnect()
    assert message is not None, "retained message not delivered"
    assert message.payload == b"kept"
    assert message.retain


@case("R197-MQTT-07", "A zero-length retained PUBLISH clears the retained message",
      verifies=["MQTT311-3.3.1-10", "MQTT311-3.3.1-11"], theme="interoperability",
      pics=["mqtt.retain"])  # fmt: skip
def test_retained_cleared(mqtt_broker: RoleConfig) -> None:
    t = topic()
    pub = ProbeClient(mqtt_broker)
    pub.connect()
    pub.publish(t, b"kept", retain=True)
    pub.publish(t, b"", retain=True)
    pub.disconnect()
    sub = ProbeClient(mqtt_broker)
    sub.connect()
    sub.subscribe(t)
    message = sub.receive(timeout=1.5)
    sub.disconnect()
    assert message is None, f"retained message still delivered: {message.payload!r}"


@case("R197-MQTT-08", "The will message is published when a client disconnects abnormally",
      verifies=["MQTT311-3.1.2-8"], theme="resilience", pics=["mqtt.will"])  # fmt: skip
def test_will_on_abnormal_disconnect(mqtt_broker: RoleConfig) -> None:
    t = topic()
    sub = ProbeClient(mqtt_broker)
    sub.connect()
    sub.subscribe(t)
    dying = ProbeClient(mqtt_broker, will=(t, b"gone"), keepalive=2)
    dying.connect()
    time.sleep(0.2)
    dying.drop()
    message = sub.receive(timeout=8)
    sub.disconnect()
    assert message is not None, "no will message after an abnormal disconnect"
    assert message.payload == b"gone"


@case("R197-MQTT-09", "The will message is discarded on a normal DISCONNECT",
      verifies=["MQTT311-3.14.4-3", "MQTT311-3.1.2-10"], theme="interoperability",
      pics=["mqtt.will"])  # fmt: skip
def test_no_will_on_disconnect(mqtt_broker: RoleConfig) -> None:
    t = topic()
    sub = ProbeClient(mqtt_broker)
    sub.connect()
    sub.subscribe(t)
    polite = ProbeClient(mqtt_broker, will=(t, b"gone"))
    polite.connect()
    polite.disconnect()
    message = sub.receive(timeout=2)
    sub.disconnect()
    assert message is None, "will message sent after a normal DISCONNECT"


@case("R197-MQTT-10", "QoS 1 messages published while a persistent-session client is away are delivered when it returns",
      verifies=["MQTT311-3.1.2-4", "MQTT311-3.1.2-5"], theme="resilience",
      pics=["mqtt.persistent-sessions"])  # fmt: skip
def test_persistent_session(mqtt_broker: RoleConfig) -> None:
    t = topic()
    client_id = f"r197-persist-{uuid.uuid4().hex[:8]}"
    away = ProbeClient(mqtt_broker, client_id=client_id, clean=False)
    away.connect()
    away.subscribe(t, 1)
    away.disconnect()
    pub = ProbeClient(mqtt_broker)
    pub.connect()
    pub.publish(t, b"while away", qos=1)
    pub.disconnect()
    back = ProbeClient(mqtt_broker, client_id=client_id, clean=False)
    flags, _rc = back.connect()
    message = back.receive()
    back.disconnect()
    cleanup = ProbeClient(mqtt_broker, client_id=client_id, clean=True)
    cleanup.connect()
    cleanup.disconnect()
    assert flags.session_present, "session present flag not set [MQTT-3.2.2-2]"
    assert message is not None, "queued QoS 1 message not delivered"
    assert message.payload == b"while away"


@case("R197-MQTT-11", "A '#' subscription does not match topics starting with '$'",
      verifies=["MQTT311-4.7.2-1"], theme="interoperability", pics=["mqtt.v311"])  # fmt: skip
def test_dollar_topics(mqtt_broker: RoleConfig) -> None:
    sub = ProbeClient(mqtt_broker)
    sub.connect()
    sub.subscribe("#", 0)
    message = None
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        message = sub.receive(timeout=0.3)
        if message is not None and message.topic.startswith("$"):
            break
        message = None
    sub.disconnect()
    assert message is None, f"'#' matched {message.topic if message else ''}"


@case("R197-MQTT-12", "'+' matches exactly one topic level",
      verifies=["MQTT311-4.7.1-3"], theme="interoperability", pics=["mqtt.v311"])  # fmt: skip
def test_single_level_wildcard(mqtt_broker: RoleConfig) -> None:
    base = topic()
    sub = ProbeClient(mqtt_broker)
    sub.connect()
    sub.subscribe(f"{base}/+/x")
    pub = ProbeClient(mqtt_broker)
    pub.connect()
    pub.publish(f"{base}/a/b/x", b"two levels")
    pub.publish(f"{base}/a/x", b"one level")
    got = [sub.receive(timeout=1.5) for _ in range(2)]
    pub.disconnect()
    sub.disconnect()
    payloads = [m.payload for m in got if m is not None]
    assert payloads == [b"one level"], payloads


@case("R197-MQTT-13", "User properties and content type are passed to subscribers unchanged",
      verifies=["MQTT5-3.3.2.3.9", "MQTT5-3.3.2-18"], theme="interoperability",
      pics=["mqtt.v5", "mqtt.user-properties"])  # fmt: skip
def test_properties_pass_through(mqtt_broker: RoleConfig) -> None:
    t = topic()
    sub = ProbeClient(mqtt_broker, v5=True)
    sub.connect()
    sub.subscribe(t)
    pub = ProbeClient(mqtt_broker, v5=True)
    pub.connect()
    pub.publish(t, b"[]", ContentType="application/senml+json", UserProperty=[("site", "geneva")])
    message = sub.receive()
    pub.disconnect()
    sub.disconnect()
    assert message is not None, "message not delivered"
    props = message.properties
    assert getattr(props, "ContentType", None) == "application/senml+json"
    assert ("site", "geneva") in list(getattr(props, "UserProperty", []))


@case("R197-MQTT-14", "A message whose expiry interval has passed is not delivered",
      verifies=["MQTT5-3.3.2-5"], theme="energy-efficiency",
      pics=["mqtt.v5", "mqtt.message-expiry"])  # fmt: skip
def test_message_expiry(mqtt_broker: RoleConfig) -> None:
    t = topic()
    pub = ProbeClient(mqtt_broker, v5=True)
    pub.connect()
    pub.publish(t, b"stale", retain=True, MessageExpiryInterval=1)
    time.sleep(2.2)
    sub = ProbeClient(mqtt_broker, v5=True)
    sub.connect()
    sub.subscribe(t)
    message = sub.receive(timeout=1.5)
    pub.publish(t, b"", retain=True)
    pub.disconnect()
    sub.disconnect()
    assert message is None, "an expired retained message was delivered"


@case("R197-MQTT-15", "A shared subscription delivers each message to one member of the group",
      verifies=["MQTT5-4.8.2-1"], theme="resilience",
      pics=["mqtt.v5", "mqtt.shared-subscriptions"])  # fmt: skip
def test_shared_subscription(mqtt_broker: RoleConfig) -> None:
    t = topic()
    members = [ProbeClient(mqtt_broker, v5=True) for _ in range(2)]
    for m in members:
        m.connect()
        m.subscribe(f"$share/r197/{t}")
    time.sleep(0.3)
    pub = ProbeClient(mqtt_broker, v5=True)
    pub.connect()
    for n in range(10):
        pub.publish(t, str(n).encode())
    time.sleep(1.0)
    received = [m.messages.qsize() for m in members]
    for m in members:
        m.disconnect()
    pub.disconnect()
    assert sum(received) == 10, f"members received {received} of 10 (each exactly once in total)"


@case("R197-MQTT-16", "The broker closes a connection silent for 1.5 x the keep-alive",
      verifies=["MQTT311-3.1.2-24"], theme="resilience", pics=["mqtt.v311"])  # fmt: skip
def test_keep_alive_timeout(mqtt_broker: RoleConfig, iut: IutConfig) -> None:
    host, port = address(mqtt_broker)
    connect = _connect("r197-ka", mqtt_broker, wire.V311, KEEPALIVE)
    tolerance = float(iut.pixit_value("mqtt.keepalive_tolerance_s"))
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(connect)
        try:
            connack = sock.recv(4)
        except TimeoutError:
            raise AssertionError("no CONNACK within 10 s") from None
        assert _first(connack, wire.V311)[0] == wire.CONNACK, f"no CONNACK: {connack!r}"
        began = time.monotonic()
        sock.settimeout(1.5 * KEEPALIVE + tolerance + 5)
        try:
            closed = sock.recv(16) == b""
        except TimeoutError:
            closed = False
        elapsed = time.monotonic() - began
    assert closed, f"connection still open after {elapsed:.1f} s of silence"
    assert elapsed <= 1.5 * KEEPALIVE + tolerance, (
        f"closed after {elapsed:.1f} s; 1.5 x keep-alive is {1.5 * KEEPALIVE} s (+{tolerance} s tolerance)"
    )


@case("R197-MQTT-17", "A zero-length client id with clean session is accepted (server assigns one)",
      verifies=["MQTT311-3.1.3-6"], theme="interoperability", pics=["mqtt.v311"])  # fmt: skip
def test_empty_client_id(mqtt_broker: RoleConfig) -> None:
    client = ProbeClient(mqtt_broker, client_id="")
    _flags, rc = client.connect()
    client.disconnect()
    assert rc == 0, f"CONNACK return code {rc}"


@case("R197-MQTT-18", "The broker is reachable at an IPv6 literal address",
      verifies=["RFC8200", "Y4200-8.2"], theme="ipv6", pics=["mqtt.v311"])  # fmt: skip
def test_ipv6_literal(mqtt_broker: RoleConfig) -> None:
    host, port = address(mqtt_broker)
    assert ":" in host, f"the broker URL {mqtt_broker.url} is not an IPv6 literal"
    with socket.create_connection((host, port), timeout=5) as sock:
        assert sock.family == socket.AF_INET6


@case("R197-MQTT-19", "The broker keeps at most Receive Maximum QoS 1 PUBLISHes unacknowledged",
      verifies=["MQTT5-3.1.2.11.3", "MQTT5-3.3.4-9", "MQTT5-4.9"], theme="resilience",
      pics=["mqtt.v5"])  # fmt: skip
def test_receive_maximum(mqtt_broker: RoleConfig) -> None:
    t = topic()
    sub = ProbeClient(
        mqtt_broker, v5=True, manual_ack=True, connect_properties={"ReceiveMaximum": 2}
    )
    sub.connect()
    sub.subscribe(t, 1)
    time.sleep(0.2)
    pub = ProbeClient(mqtt_broker, v5=True)
    pub.connect()
    for n in range(6):
        pub.publish(t, str(n).encode(), qos=1)
    time.sleep(1.0)
    held = sub.messages.qsize()  # none acknowledged yet
    got = [sub.receive(timeout=0.1) for _ in range(held)]
    for m in got:
        if m is not None:
            sub.client.ack(m.mid, m.qos)
    rest = []
    while (m := sub.receive(timeout=1.5)) is not None:
        rest.append(m)
        sub.client.ack(m.mid, m.qos)
    sub.disconnect()
    pub.disconnect()
    assert held == 2, f"{held} QoS 1 PUBLISHes in flight with Receive Maximum 2"
    total = [m.payload for m in got + rest if m is not None]
    assert total == [str(n).encode() for n in range(6)], f"delivered {total} after acknowledging"


@case("R197-MQTT-20", "A message larger than the client's Maximum Packet Size is not sent to it",
      verifies=["MQTT5-3.1.2-25", "MQTT5-3.1.2-24"], theme="energy-efficiency",
      pics=["mqtt.v5"])  # fmt: skip
def test_maximum_packet_size(mqtt_broker: RoleConfig) -> None:
    t = topic()
    sub = ProbeClient(mqtt_broker, v5=True, connect_properties={"MaximumPacketSize": 200})
    sub.connect()
    sub.subscribe(t, 1)
    time.sleep(0.2)
    pub = ProbeClient(mqtt_broker, v5=True)
    pub.connect()
    pub.publish(t, b"x" * 500, qos=1)
    pub.publish(t, b"small", qos=1)
    first = sub.receive(timeout=3)
    more = sub.receive(timeout=0.5)
    pub.disconnect()
    sub.disconnect()
    assert first is not None, "the small message after the oversized one was not delivered"
    assert first.payload == b"small", f"got a {len(first.payload)}-byte message over the limit"
    assert more is None


@case("R197-MQTT-21", "A second connection with the same client id closes the first one",
      verifies=["MQTT311-3.1.4-2", "MQTT5-3.14.2.1"], theme="security",
      pics=["mqtt.v5"])  # fmt: skip
def test_session_takeover(mqtt_broker: RoleConfig, figures: dict[str, float]) -> None:
    # Raw sockets: a library client would reconnect on its own and hide what the broker sent.
    client_id = f"r197-take-{uuid.uuid4().hex[:6]}"
    host, port = address(mqtt_broker)
    with socket.create_connection((host, port), timeout=5) as first:
        first.sendall(_connect(client_id, mqtt_broker, wire.V5, 30))
        kind, _ = _first(first.recv(64), wire.V5)
        assert kind == wire.CONNACK, "no CONNACK for the first connection"
        with socket.create_connection((host, port), timeout=5) as second:
            second.sendall(_connect(client_id, mqtt_broker, wire.V5, 30))
            connack = second.recv(64)
            try:
                packet = first.recv(64)
            except TimeoutError:
                packet = None
    kind, refused = _first(connack, wire.V5)
    assert kind == wire.CONNACK, f"no CONNACK for the second connection: {connack!r}"
    assert not refused, f"the second CONNECT was refused: 0x{refused:02x}"
    assert packet is not None, "the first connection was still open 5 s after the takeover"
    # Closing is the MUST of [MQTT-3.1.4-3]; the DISCONNECT 0x8E before it is what 4.13 lets
    # the server send (Mosquitto 2.0 closes without it), so it is reported, not required.
    kind, reason = _first(packet, wire.V5)
    figures["disconnect_0x8e_sent"] = 1.0 if (kind, reason) == (wire.DISCONNECT, 0x8E) else 0.0
    if packet:
        assert kind == wire.DISCONNECT, f"the first connection got {packet[:4]!r}, not DISCONNECT"


def _connect(client_id: str, role: RoleConfig, version: int, keepalive: int) -> bytes:
    """A raw CONNECT with clean start and no properties, logging in as the PIXIT says."""
    username = role.username or None
    password = role.password or None
    return wire.connect(client_id, version=version, keepalive=keepalive, clean=True,
                        username=username, password=password)  # fmt: skip


def _first(data: bytes, version: int) -> tuple[int, int]:
    """(packet type, reason code) of the first whole packet of a raw read, the reason of a
    CONNACK or DISCONNECT, else 0; (0, 0) for no whole packet.  Bytes that are not MQTT are
    the broker's failure (MQTT 5 4.13), not an error of the suite."""
    try:
        found = wire.packets(data)
        if not found:
            return 0, 0
        first, body = found[0]
        kind = wire.check_flags(first)
        if kind == wire.CONNACK:
            return kind, wire.parse_connack(body, version).reason
        if kind == wire.DISCONNECT:
            return kind, wire.parse_disconnect(body)[0]
    except wire.MalformedPacket as exc:
        raise AssertionError(
            f"the broker sent a malformed packet ({exc}): {data[:32].hex()}"
        ) from None
    return kind, 0


@case("R197-MQTT-22", "A session is kept for its Session Expiry Interval and discarded after it",
      verifies=["MQTT5-3.1.2-23", "MQTT5-3.2.2.1.1"], theme="energy-efficiency",
      pics=["mqtt.v5", "mqtt.persistent-sessions"])  # fmt: skip
def test_session_expiry(mqtt_broker: RoleConfig) -> None:
    client_id = f"r197-exp-{uuid.uuid4().hex[:6]}"
    kept = ProbeClient(mqtt_broker, v5=True, client_id=client_id, clean=False, session_expiry=60)
    kept.connect()
    kept.disconnect()
    back = ProbeClient(mqtt_broker, v5=True, client_id=client_id, clean=False, session_expiry=1)
    flags, _ = back.connect()
    back.disconnect()
    assert flags.session_present, "a session with 60 s expiry was gone after a reconnect"
    time.sleep(3.5)
    late = ProbeClient(mqtt_broker, v5=True, client_id=client_id, clean=False, session_expiry=0)
    flags, _ = late.connect()
    late.disconnect()
    assert not flags.session_present, "the session outlived its 1 s Session Expiry Interval"
