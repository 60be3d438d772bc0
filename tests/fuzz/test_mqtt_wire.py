"""The MQTT codec (gateway/transports/mqtt_wire.py) on arbitrary byte streams in random
chunkings: it finds whole packets or waits for more bytes, and what it cannot read raises
MalformedPacket (MQTT 5 4.13), never IndexError, struct.error or UnicodeDecodeError; what it
encodes it decodes back."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.transports import mqtt_wire as wire

VERSIONS = st.sampled_from([wire.V311, wire.V5])
TOPICS = st.text(max_size=30)
PACKET_IDS = st.integers(1, 65535)


def _value(kind: int) -> st.SearchStrategy[Any]:
    return {
        wire.BYTE: st.integers(0, 255),
        wire.TWO: st.integers(0, 65535),
        wire.FOUR: st.integers(0, 2**32 - 1),
        wire.VARINT: st.integers(0, wire.MAX_VARINT),
        wire.STRING: st.text(max_size=10),
        wire.BINARY: st.binary(max_size=10),
        wire.PAIR: st.tuples(st.text(max_size=5), st.text(max_size=5)),
    }[kind]


@st.composite
def property_sets(draw: st.DrawFn) -> dict[int, wire.PropertyValue]:
    idents = draw(st.lists(st.sampled_from(sorted(wire.PROPERTY_KIND)), max_size=5, unique=True))
    props: dict[int, Any] = {}
    for ident in idents:
        kind = wire.PROPERTY_KIND[ident]
        if ident in wire.REPEATABLE:
            props[ident] = draw(st.lists(_value(kind), min_size=1, max_size=3))
        else:
            props[ident] = draw(_value(kind))
    return props


@st.composite
def valid_packets(draw: st.DrawFn, version: int) -> bytes:
    """A packet our encoders write, or a control packet a broker sends built from parts."""
    choice = draw(st.integers(0, 6))
    if choice == 0:
        qos = draw(st.integers(0, 2))
        return wire.publish(
            draw(TOPICS),
            draw(st.binary(max_size=40)),
            qos=qos,
            packet_id=draw(PACKET_IDS) if qos else 0,
            version=version,
            content_type=draw(st.none() | st.text(max_size=20)),
            retain=draw(st.booleans()),
        )
    if choice == 1:
        kind = draw(st.sampled_from([wire.PUBACK, wire.PUBREC, wire.PUBREL, wire.PUBCOMP]))
        return wire.ack(kind, draw(PACKET_IDS), draw(st.integers(0, 255)), version=version)
    if choice == 2:
        props = wire.pack_properties(draw(property_sets())) if version == wire.V5 else b""
        return b"\x20" + wire.varint(2 + len(props)) + bytes((draw(st.integers(0, 1)), 0)) + props
    if choice == 3:
        props = wire.pack_properties(draw(property_sets())) if version == wire.V5 else b""
        body = draw(PACKET_IDS).to_bytes(2, "big") + props + draw(st.binary(max_size=4))
        return b"\x90" + wire.varint(len(body)) + body
    if choice == 4:
        body = bytes((draw(st.integers(0, 255)),)) + wire.pack_properties(draw(property_sets()))
        return b"\xe0" + wire.varint(len(body)) + body
    if choice == 5:
        return draw(st.sampled_from([b"\xd0\x00", wire.PINGREQ_PACKET, wire.DISCONNECT_PACKET]))
    return wire.subscribe(draw(PACKET_IDS), draw(TOPICS), draw(st.integers(0, 2)), version=version)


@st.composite
def streams(draw: st.DrawFn) -> tuple[int, bytes]:
    """(version, bytes): valid packets with now and then a byte changed, cut or inserted."""
    version = draw(VERSIONS)
    data = bytearray(b"".join(draw(st.lists(valid_packets(version), max_size=5))))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        what = draw(st.integers(0, 2))
        if what == 0 and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif what == 1:
            del data[at : at + draw(st.integers(1, 4))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    if draw(st.integers(0, 9)) == 0:
        data += draw(st.binary(max_size=30))
    return version, bytes(data)


def _handle(first: int, buf: bytes, start: int, end: int, version: int) -> None:
    """What the gateway's MqttProtocol does with one frame (gateway/transports/mqtt.py)."""
    if first >> 4 == wire.PUBLISH:
        _, _, _, pos = wire.parse_publish(first, buf, start, end, version)
        assert start <= pos <= end
        return
    body = buf[start:end]
    kind = wire.check_flags(first)
    if kind == wire.CONNACK:
        wire.parse_connack(body, version)
    elif kind == wire.SUBACK:
        wire.parse_suback(body, version)
    elif kind in (wire.PUBACK, wire.PUBREC, wire.PUBREL, wire.PUBCOMP):
        wire.parse_ack(body, version)
    elif kind == wire.DISCONNECT:
        wire.parse_disconnect(body)


def _read(version: int, data: bytes, cuts: list[int]) -> list[tuple[int, bytes]] | str:
    """Feed ``data`` in pieces cut at ``cuts``: the frames found, or why it was malformed."""
    buf, pos, found = b"", 0, []
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    try:
        for piece in pieces:
            buf += piece
            frames, pos = wire.frames(buf, pos, 3)  # a small turn, as TURN bounds the gateway's
            while frames:
                for first, start, end in frames:
                    _handle(first, buf, start, end, version)
                    found.append((first, buf[start:end]))
                frames, pos = wire.frames(buf, pos, 3)
    except wire.MalformedPacket as exc:
        return f"malformed: {exc}"
    return found


@given(stream=streams(), cuts=st.lists(st.integers(0, 400), max_size=6))
@example(stream=(wire.V5, b"\x30\x03\x00\x01\xff"), cuts=[])  # a topic of one non-UTF-8 byte
@example(stream=(wire.V5, b"\x32\x04\x00\x00\x00"), cuts=[2])  # QoS 1 without its packet id
@example(stream=(wire.V5, b"\x20\x04\x00\x00\x02\x26"), cuts=[])  # a pair property cut short
def test_byte_streams_in_any_chunking_parse_alike_or_are_malformed(
    stream: tuple[int, bytes], cuts: list[int]
) -> None:
    version, data = stream
    whole = _read(version, data, [])
    chunked = _read(version, data, sorted({c for c in cuts if c <= len(data)}))
    # Chunking changes nothing: the same packets, or malformed either way (which fault comes
    # first may differ: frames() checks the lengths of a whole turn before its packets).
    if isinstance(whole, str) or isinstance(chunked, str):
        assert isinstance(whole, str), whole
        assert isinstance(chunked, str), chunked
    else:
        assert chunked == whole


@given(version=VERSIONS, data=st.binary(max_size=80), cuts=st.lists(st.integers(0, 80)))
def test_random_bytes_parse_or_are_malformed(version: int, data: bytes, cuts: list[int]) -> None:
    _read(version, data, sorted({c for c in cuts if c <= len(data)}))


@given(
    version=VERSIONS,
    topic=TOPICS,
    payload=st.binary(max_size=200),
    qos=st.integers(0, 2),
    packet_id=PACKET_IDS,
    content_type=st.none() | st.text(min_size=1, max_size=20),
)
def test_publish_round_trips(
    version: int, topic: str, payload: bytes, qos: int, packet_id: int, content_type: str | None
) -> None:
    data = wire.publish(
        topic, payload, qos=qos, packet_id=packet_id, version=version, content_type=content_type
    )
    [(first, start, end)], rest = wire.frames(data)
    assert rest == len(data)
    got_topic, got_id, got_type, pos = wire.parse_publish(first, data, start, end, version)
    assert (got_topic, data[pos:end]) == (topic, payload)
    assert got_id == (packet_id if qos else 0)
    assert got_type == (content_type if version == wire.V5 else None)


@given(props=property_sets(), tail=st.binary(max_size=4))
def test_properties_round_trip(props: dict[int, wire.PropertyValue], tail: bytes) -> None:
    packed = wire.pack_properties(props)
    found, after = wire.properties(packed + tail, 0)
    assert (found, after) == (props, len(packed))


@given(value=st.integers(0, wire.MAX_VARINT), tail=st.binary(max_size=3))
def test_varints_round_trip(value: int, tail: bytes) -> None:
    encoded = wire.varint(value)
    assert wire.read_varint(encoded + tail, 0) == (value, len(encoded))


@given(data=st.binary(max_size=6), pos=st.integers(0, 6))
def test_varint_reader_waits_or_refuses(data: bytes, pos: int) -> None:
    """A stream reader's contract: IndexError means "not all here yet", only at the end."""
    try:
        value, after = wire.read_varint(data, pos)
    except wire.MalformedPacket:
        return
    except IndexError:
        assert all(b & 0x80 for b in data[pos:])
        assert len(data) - pos < 4
        return
    assert 0 <= value <= wire.MAX_VARINT
    assert after <= len(data)
    assert wire.varint(value) == data[pos:after]


@given(version=VERSIONS, kind=st.sampled_from([4, 5, 6, 7]), packet_id=PACKET_IDS,
       reason=st.integers(0, 255))  # fmt: skip
def test_acks_round_trip(version: int, kind: int, packet_id: int, reason: int) -> None:
    data = wire.ack(kind, packet_id, reason, version=version)
    [(first, body)] = wire.packets(data)
    assert wire.check_flags(first) == kind
    assert wire.parse_ack(body, version) == (packet_id, reason if version == wire.V5 else 0)
