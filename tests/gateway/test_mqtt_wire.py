"""The MQTT codec against paho-mqtt's: what paho encodes we parse, what we encode paho parses.

The gateway and the load generator share gateway/transports/mqtt_wire.py, so a bug in it could
cancel out in every benchmark; paho (2.x) is an independent implementation.  Its encoders are
the Client's own ``_send_*`` methods writing to a socket stand-in, its decoders the functions
of ``paho.mqtt._packet`` and ``Properties.unpack``: private names, pinned by paho-mqtt>=2.0.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.transports import mqtt_wire as wire

TOPIC = "city/noise/noise-7/up/senml-cbor"
VERSIONS = {wire.V311: paho.MQTTv311, wire.V5: paho.MQTTv5}
BOUNDARIES = [0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455]


class _Sink:
    """A socket for a paho Client that keeps what it sends."""

    def __init__(self) -> None:
        self.sent = bytearray()

    def send(self, data: bytes) -> int:
        self.sent += data
        return len(data)

    def recv(self, size: int) -> bytes:
        raise BlockingIOError

    def close(self) -> None:
        pass


def paho_client(version: int, **kwargs: Any) -> tuple[paho.Client, _Sink]:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=VERSIONS[version], **kwargs)
    sink = _Sink()
    client._sock = sink  # type: ignore[assignment]
    return client, sink


def sent_by_paho(version: int, send: str, *args: Any, **kwargs: Any) -> bytes:
    """What ``client._send_<send>(*args)`` writes."""
    client, sink = paho_client(version, **kwargs)
    getattr(client, f"_send_{send}")(*args)
    return bytes(sink.sent)


def paho_publish(version: int, mid: int, qos: int, payload: bytes, props: Properties | None,
                 retain: bool = False) -> bytes:  # fmt: skip
    info = paho.MQTTMessageInfo(mid)
    return sent_by_paho(
        version, "publish", mid, TOPIC.encode(), payload, qos, retain, False, info, props
    )


def one_packet(data: bytes) -> tuple[int, bytes]:
    found, rest = wire.frames(data)
    assert len(found) == 1
    assert rest == len(data)
    first, start, end = found[0]
    return first, data[start:end]


def publish_properties() -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.PayloadFormatIndicator = 0
    props.MessageExpiryInterval = 3600
    props.ContentType = "application/senml+cbor"
    props.ResponseTopic = "city/noise/noise-7/down"
    props.CorrelationData = b"\x00\x01\xff"
    props.SubscriptionIdentifier = 268435455
    props.SubscriptionIdentifier = 7
    props.TopicAlias = 3
    props.UserProperty = ("site", "lab-1")
    props.UserProperty = ("site", "lab-2")  # the same name twice is allowed (MQTT 5 3.3.2.3.7)
    return props


@pytest.mark.parametrize("version", [wire.V311, wire.V5])
@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("size", [0, 1, 100, 16384, 2097152])
def test_a_publish_encoded_by_paho_is_parsed_by_ours(version: int, qos: int, size: int) -> None:
    """Topic, packet id, content type and payload, with remaining lengths of 1 to 4 bytes."""
    payload = bytes(range(256)) * (size // 256) + b"p" * (size % 256)
    props = publish_properties() if version == wire.V5 else None
    data = paho_publish(version, 77, qos, payload, props)
    found, _ = wire.frames(b"\x00" + data + wire.PINGREQ_PACKET, 1)
    assert [f for f, _, _ in found] == [data[0], 0xC0]
    first, start, end = found[0]
    topic, packet_id, content_type, pos = wire.parse_publish(
        first, b"\x00" + data, start, end, version
    )
    assert topic == TOPIC
    assert packet_id == (77 if qos else 0)
    assert content_type == ("application/senml+cbor" if version == wire.V5 else None)
    assert (b"\x00" + data)[pos:end] == payload


@pytest.mark.parametrize("version", [wire.V311, wire.V5])
@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("content_type", [None, "text/csv"])
def test_a_publish_encoded_by_ours_is_paho_s_byte_for_byte(
    version: int, qos: int, content_type: str | None
) -> None:
    """Our PUBLISH equals paho's, and paho's decoder reads every field back."""
    payload = b"\x81\xa2\x00cLAeq\x02\xfb@I\x80\x00\x00\x00\x00\x00" * 9  # over 127 bytes
    ours = wire.publish(TOPIC, payload, qos=qos, packet_id=513, version=version,
                        content_type=content_type, retain=qos == 1)  # fmt: skip
    props = None
    if content_type and version == wire.V5:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = content_type
    theirs = paho_publish(version, 513, qos, payload, props, retain=qos == 1)
    assert ours == theirs
    first, body = one_packet(ours)
    got = _packet.decode_publish(first, body, VERSIONS[version])
    assert (got.topic, got.qos, got.retain, got.payload) == (TOPIC.encode(), qos, qos == 1, payload)
    assert got.mid == (513 if qos else 0)
    if version == wire.V5:
        assert getattr(got.properties, "ContentType", None) == content_type


@pytest.mark.parametrize("version", [wire.V311, wire.V5])
@pytest.mark.parametrize("login", [None, ("gw", None), ("gw", "s3cret-ä")])
@pytest.mark.parametrize("clean", [True, False])
def test_a_connect_encoded_by_ours_is_paho_s_byte_for_byte(
    version: int, login: tuple[str, str | None] | None, clean: bool
) -> None:
    """CONNECT with and without user name and password, clean or not, MQTT 5 properties."""
    kwargs: dict[str, Any] = {"client_id": "r197-gateway"}
    if version == wire.V311:
        kwargs["clean_session"] = clean
    client, sink = paho_client(version, **kwargs)
    if login:
        client.username_pw_set(*login)
    if version == wire.V5:
        client._clean_start = clean
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = 1000
        client._connect_properties = props
    client._send_connect(30)
    username, password = login or (None, None)
    ours = wire.connect("r197-gateway", version=version, keepalive=30, clean=clean,
                        username=username, password=password, session_expiry=3600,
                        receive_maximum=1000)  # fmt: skip
    assert ours == bytes(sink.sent)


@pytest.mark.parametrize("version", [wire.V311, wire.V5])
def test_a_subscribe_encoded_by_ours_is_paho_s_byte_for_byte(version: int) -> None:
    topic = "$share/r197-gateways/city/+/+/up/+"
    qos: Any = SubscribeOptions(qos=1) if version == wire.V5 else 1
    theirs = sent_by_paho(version, "subscribe", False, [(topic.encode(), qos)])
    assert wire.subscribe(1, topic, 1, version=version) == theirs


ACKS = {
    wire.PUBACK: ("puback", _packet.decode_puback),
    wire.PUBREC: ("pubrec", _packet.decode_pubrec),
    wire.PUBREL: ("pubrel", _packet.decode_pubrel),
    wire.PUBCOMP: ("pubcomp", _packet.decode_pubcomp),
}


@pytest.mark.parametrize("kind", sorted(ACKS))
@pytest.mark.parametrize("version", [wire.V311, wire.V5])
def test_acknowledgements_round_trip_with_paho(kind: int, version: int) -> None:
    """Paho's acks parse with ours; ours (with an MQTT 5 reason code) parse with paho's."""
    send, decode = ACKS[kind]
    theirs = sent_by_paho(version, send, 65535)
    assert theirs == wire.ack(kind, 65535, version=version)
    first, body = one_packet(theirs)
    assert wire.check_flags(first) == kind
    assert wire.parse_ack(body, version) == (65535, 0)
    # MQTT 5 3.4.2.1, 3.6.2.1: Payload format invalid; Packet Identifier not found
    reason = 0x99 if kind in (wire.PUBACK, wire.PUBREC) else 0x92
    sent = reason if version == wire.V5 else 0  # MQTT 3.1.1 acknowledgements carry no reason
    first, body = one_packet(wire.ack(kind, 258, reason, version=version))
    got = decode(first, body, VERSIONS[version])
    assert (got.mid, got.reason.value) == (258, sent)
    assert wire.parse_ack(body, version) == (258, sent)


def test_a_connack_suback_and_disconnect_packed_by_paho_are_read() -> None:
    """Server packets paho has no encoder for, built from paho's properties and reason codes."""
    props = Properties(PacketTypes.CONNACK)  # type: ignore[no-untyped-call]
    props.ServerKeepAlive = 20
    props.AssignedClientIdentifier = "auto-1"
    props.ReceiveMaximum = 10
    props.UserProperty = ("a", "b")
    connack = wire.parse_connack(b"\x01\x00" + props.pack(), wire.V5)  # type: ignore[no-untyped-call]
    assert connack == wire.Connack(
        True, 0, {0x13: 20, 0x12: "auto-1", 0x21: 10, 0x26: [("a", "b")]}
    )
    assert wire.parse_connack(b"\x00\x05", wire.V311) == wire.Connack(False, 5, {})
    props = Properties(PacketTypes.SUBACK)  # type: ignore[no-untyped-call]
    props.ReasonString = "ok"
    assert wire.parse_suback(b"\x12\x34" + props.pack() + b"\x01\x87", wire.V5) == (
        0x1234,
        [1, 0x87],
    )  # type: ignore[no-untyped-call]
    assert wire.parse_suback(b"\x00\x01\x01", wire.V311) == (1, [1])
    props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
    props.ReasonString = "session taken over"
    packet = sent_by_paho(
        wire.V5, "disconnect", ReasonCode(PacketTypes.DISCONNECT, identifier=0x8E), props
    )
    first, body = one_packet(packet)
    assert wire.check_flags(first) == wire.DISCONNECT
    assert wire.parse_disconnect(body) == (0x8E, "session taken over")
    assert wire.parse_disconnect(one_packet(wire.DISCONNECT_PACKET)[1]) == (0, "")


PAHO_KINDS = {"Byte": wire.BYTE, "Two Byte Integer": wire.TWO, "Four Byte Integer": wire.FOUR,
              "Variable Byte Integer": wire.VARINT, "Binary Data": wire.BINARY,
              "UTF-8 Encoded String": wire.STRING, "UTF-8 String Pair": wire.PAIR}  # fmt: skip
SAMPLES: dict[int, list[Any]] = {
    wire.BYTE: [0, 1], wire.TWO: [1, 0xFFFF], wire.FOUR: [1, 0xFFFFFFFF],
    wire.VARINT: [1, 127, 128, 268435455], wire.BINARY: [b"", b"\x00\xff"],
    wire.STRING: ["", "ä/€/𝄞"], wire.PAIR: [("", ""), ("k", "ü")],
}  # fmt: skip


def test_our_property_table_is_paho_s() -> None:
    """Every MQTT 5 property identifier with the same data type (MQTT 5 2.2.2.2)."""
    table = Properties(PacketTypes.PUBLISH).properties  # type: ignore[no-untyped-call]
    names = Properties(PacketTypes.PUBLISH).types  # type: ignore[no-untyped-call]
    assert {
        ident: PAHO_KINDS[names[kind]] for ident, (kind, _) in table.items()
    } == wire.PROPERTY_KIND


@pytest.mark.parametrize("ident", sorted(wire.PROPERTY_KIND))
def test_each_property_round_trips_with_paho(ident: int) -> None:
    """Each identifier with the edge values of its type, packed by paho and read by us, and
    packed by us and read by paho."""
    probe = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    packet_type = probe.properties[ident][1][0]
    name = probe.getNameFromIdent(ident).replace(" ", "")  # type: ignore[no-untyped-call]
    for value in SAMPLES[wire.PROPERTY_KIND[ident]]:
        if name in ("ReceiveMaximum", "TopicAlias", "MaximumPacketSize") and value in (
            0,
            0xFFFFFFFF,
        ):
            continue  # values the spec forbids for these (MQTT 5 3.1.2.11.3, 3.3.2.3.4)
        if name in ("PayloadFormatIndicator", "RequestProblemInformation") and value > 1:
            continue
        theirs = Properties(packet_type)  # type: ignore[no-untyped-call]
        setattr(theirs, name, value)
        expected = value if ident not in wire.REPEATABLE else [value]
        packed = theirs.pack()  # type: ignore[no-untyped-call]
        assert wire.properties(b"xy" + packed + b"z", 2) == ({ident: expected}, 2 + len(packed))
        ours = wire.pack_properties({ident: expected})
        assert ours == packed
        back = Properties(packet_type)  # type: ignore[no-untyped-call]
        back.unpack(ours)  # type: ignore[no-untyped-call]
        assert getattr(back, name) == expected


@pytest.mark.parametrize("value", BOUNDARIES)
def test_variable_byte_integers_agree_with_paho(value: int) -> None:
    """MQTT 5 1.5.5 at the boundaries of one to four bytes, both ways."""
    theirs = VariableByteIntegers.encode(value)  # type: ignore[no-untyped-call]
    assert wire.varint(value) == theirs
    assert wire.read_varint(b"x" + theirs + b"y", 1) == (value, 1 + len(theirs))
    assert VariableByteIntegers.decode(wire.varint(value)) == (value, len(theirs))  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("value", [-1, 268435456, 1 << 40])
def test_a_number_over_four_bytes_is_not_a_variable_byte_integer(value: int) -> None:
    with pytest.raises(wire.MalformedPacket):
        wire.varint(value)


@pytest.mark.parametrize(
    "data", [b"\x80\x80\x80\x80\x01", b"\xff\xff\xff\xff", b"\x80\x00", b"\xff\x80\x00"]
)
def test_over_long_variable_byte_integers_are_malformed(data: bytes) -> None:
    """Five bytes, or more bytes than the value needs [MQTT-1.5.5-1]."""
    with pytest.raises(wire.MalformedPacket):
        wire.read_varint(data, 0)
    with pytest.raises(wire.MalformedPacket):
        wire.frames(b"\x30" + data + b"\x00" * 200)


@pytest.mark.parametrize("version", [wire.V311, wire.V5])
def test_a_truncated_frame_waits_for_the_rest(version: int) -> None:
    """Every prefix of a stream of packets yields only its complete packets."""
    props = publish_properties() if version == wire.V5 else None
    stream = paho_publish(version, 9, 1, b"v" * 300, props)
    stream += wire.ack(wire.PUBACK, 9, version=version)
    first_end = len(stream) - 4
    for cut in range(len(stream) + 1):
        found, rest = wire.frames(stream[:cut])
        complete = [end for _, _, end in found]
        assert complete == (
            [first_end, len(stream)]
            if cut == len(stream)
            else [first_end]
            if cut >= first_end
            else []
        )
        assert rest == (complete[-1] if complete else 0)


def test_a_publish_cut_short_inside_its_header_is_malformed() -> None:
    """A remaining length too short for the topic, packet id or properties: MalformedPacket,
    even when the buffer goes on with the next packet (the parser stays inside its packet)."""
    props = publish_properties()
    data = paho_publish(wire.V5, 9, 1, b"", props)
    first, body = one_packet(data)
    for cut in range(len(body)):
        buf = body[:cut] + b"\x00\x03abc\xff\xff" * 40  # bytes of a following packet
        with pytest.raises(wire.MalformedPacket):
            wire.parse_publish(first, buf, 0, cut, wire.V5)
    assert wire.parse_publish(first, body, 0, len(body), wire.V5)[3] == len(body)


@pytest.mark.parametrize(
    ("first", "body", "version"),
    [
        (0x36, b"\x00\x01t\x00\x01", wire.V311),  # QoS 3 [MQTT-3.3.1-4]
        (0x32, b"\x00\x01t\x00\x00", wire.V311),  # packet id 0 (MQTT 5 2.2.1)
        (0x30, b"\x00\x02\xc3\x28", wire.V311),  # topic not UTF-8 [MQTT-1.5.4-1]
        (0x30, b"\x00\x01t", wire.V5),  # no property length
        (0x30, b"\x00\x01t\x08\x03\x00\x01a\x03\x00\x01b", wire.V5),  # Content Type twice
        (0x30, b"\x00\x01t\x02\x7f\x00", wire.V5),  # unknown property 0x7f
        (0x30, b"\x00\x01t\x04\x03\x00\x05a", wire.V5),  # string past the properties
    ],
)
def test_malformed_publishes_are_refused(first: int, body: bytes, version: int) -> None:
    with pytest.raises(wire.MalformedPacket):
        wire.parse_publish(first, body, 0, len(body), version)


@pytest.mark.parametrize("first", [0x00, 0x21, 0x41, 0x60, 0x80, 0x91, 0xC1, 0xE8, 0x36])
def test_reserved_types_and_flags_are_malformed(first: int) -> None:
    """MQTT 5 2.1.2 (type 0) and 2.1.3 (fixed flags; PUBREL and SUBSCRIBE carry 0b0010)."""
    with pytest.raises(wire.MalformedPacket):
        wire.check_flags(first)


@pytest.mark.parametrize(
    ("parse", "body"),
    [
        (lambda b: wire.parse_connack(b, wire.V311), b"\x00"),
        (lambda b: wire.parse_connack(b, wire.V311), b"\x00\x00\x00"),
        (lambda b: wire.parse_connack(b, wire.V5), b"\x02\x00\x00"),  # reserved flag
        (lambda b: wire.parse_connack(b, wire.V5), b"\x00\x00\x05\x13\x00"),  # cut short
        (lambda b: wire.parse_ack(b, wire.V311), b"\x00\x01\x00"),
        (lambda b: wire.parse_ack(b, wire.V5), b"\x00"),
        (lambda b: wire.parse_suback(b, wire.V5), b"\x00\x01\x03\x1f\x00"),
        (wire.parse_disconnect, b"\x8e\x04\x1f\x00\x09x"),
    ],
)
def test_malformed_control_packets_are_refused(parse: Any, body: bytes) -> None:
    with pytest.raises(wire.MalformedPacket):
        parse(body)


def test_packets_splits_a_read_into_whole_packets() -> None:
    """The helper for plain-socket clients: complete packets only, bodies copied out."""
    data = wire.ack(wire.PUBACK, 1, version=wire.V5) + wire.DISCONNECT_PACKET + b"\x90\x05\x00"
    assert wire.packets(data) == [(0x40, b"\x00\x01"), (0xE0, b"")]


def test_our_protocol_levels_are_paho_s() -> None:
    """The CONNECT protocol level byte (MQTT 5 3.1.2.2, 3.1.1 3.1.2.2)."""
    assert (MQTTProtocolVersion.MQTTv311, MQTTProtocolVersion.MQTTv5) == (wire.V311, wire.V5)
