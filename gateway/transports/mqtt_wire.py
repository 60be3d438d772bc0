"""MQTT packets encoded and decoded (no I/O): the project's one MQTT codec.

Why our own codec and not paho's: profiling the gateway at full load (docs/benchmarks.md) put
about half of its CPU in paho's and aiomqtt's per-message machinery (a Properties object, a
message-info object with a threading.Condition, a topic matcher walk, an asyncio queue hop per
PUBLISH), and the gateway must hold back each PUBACK until the reading is on disk, which paho
does not offer.  The load generator and the conformance suite's raw-socket cases use it too
(devices keep paho and aiomqtt: they stand for other people's clients), so a bug in it could
cancel out between our benchmark's two ends: tests/gateway/test_mqtt_wire.py checks it
against paho's encoder and decoder.

Decoding is strict: bytes that are not MQTT raise :class:`MalformedPacket` (MQTT 5 4.13: close
the connection).  The PUBLISH parser indexes the read buffer in place and returns a tuple, no
object per packet: it is on the gateway's hot path.  Layouts are MQTT 5.0 (OASIS, 2019) section
3 and MQTT 3.1.1 (OASIS, 2014) section 3.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

V311 = 4  # protocol level byte (MQTT 3.1.1 section 3.1.2.2)
V5 = 5

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = 8, 9, 12, 13, 14, 15

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"  # MQTT 5 3.14.2.1: no reason code means 0x00, normal
MAX_VARINT = 268_435_455  # the largest Variable Byte Integer (MQTT 5 1.5.5)

# MQTT 5 section 2.2.2.2: property identifier -> how its value is encoded.
BYTE, TWO, FOUR, VARINT, STRING, BINARY, PAIR = range(7)
PROPERTY_KIND = {
    0x01: BYTE, 0x02: FOUR, 0x03: STRING, 0x08: STRING, 0x09: BINARY, 0x0B: VARINT,
    0x11: FOUR, 0x12: STRING, 0x13: TWO, 0x15: STRING, 0x16: BINARY, 0x17: BYTE,
    0x18: FOUR, 0x19: BYTE, 0x1A: STRING, 0x1C: STRING, 0x1F: STRING, 0x21: TWO,
    0x22: TWO, 0x23: TWO, 0x24: BYTE, 0x25: BYTE, 0x26: PAIR, 0x27: FOUR, 0x28: BYTE,
    0x29: BYTE, 0x2A: BYTE,
}  # fmt: skip
CONTENT_TYPE = 0x03
SUBSCRIPTION_IDENTIFIER = 0x0B
SESSION_EXPIRY = 0x11
SERVER_KEEP_ALIVE = 0x13
REASON_STRING = 0x1F
RECEIVE_MAXIMUM = 0x21
USER_PROPERTY = 0x26
# The properties that may appear more than once (MQTT 5 3.3.2.3.4, 3.3.2.3.8); their value is
# a list.  Any other twice is a Protocol Error (e.g. MQTT 5 3.3.2.3.9 for Content Type).
REPEATABLE = frozenset({SUBSCRIPTION_IDENTIFIER, USER_PROPERTY})
# Fixed-header flags each control packet must carry (MQTT 5 2.1.3, 3.1.1 2.2.2): others are a
# Malformed Packet.  PUBLISH carries DUP, QoS and RETAIN there instead.
_FLAGS = {CONNECT: 0, CONNACK: 0, PUBACK: 0, PUBREC: 0, PUBREL: 2, PUBCOMP: 0, SUBSCRIBE: 2,
          SUBACK: 0, PINGREQ: 0, PINGRESP: 0, DISCONNECT: 0, AUTH: 0}  # fmt: skip

PropertyValue = int | str | bytes | list[int] | list[tuple[str, str]]


class MalformedPacket(ValueError):
    """The peer sent bytes that are not MQTT (MQTT 5 4.13: close the connection)."""


def varint(n: int) -> bytes:
    """A Variable Byte Integer (MQTT 5 1.5.5, 3.1.1 2.2.3)."""
    if 0 <= n < 128:  # one byte: every remaining length under 128
        return bytes((n,))
    if not 0 <= n <= MAX_VARINT:
        raise MalformedPacket(f"{n} does not fit a variable byte integer (MQTT 5 1.5.5)")
    out = bytearray()
    while n:
        n, digit = divmod(n, 128)
        out.append(digit | 0x80 if n else digit)
    return bytes(out)


def read_varint(buf: bytes, pos: int, end: int | None = None) -> tuple[int, int]:
    """(value, position after it).  Raises IndexError when ``buf`` (or ``end``) stops inside
    it: for a stream that means "not all here yet", inside a whole packet a malformed one."""
    stop = len(buf) if end is None else end
    value = shift = 0
    for _ in range(4):
        if pos >= stop:
            raise IndexError("the data ends inside a variable byte integer")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and shift:
                raise MalformedPacket(
                    "a variable byte integer not in its fewest bytes [MQTT-1.5.5-1]"
                )
            return value, pos
        shift += 7
    raise MalformedPacket("a variable byte integer longer than 4 bytes (MQTT 5 1.5.5)")


def frames(
    buf: bytes, pos: int = 0, limit: int = 1 << 30
) -> tuple[list[tuple[int, int, int]], int]:
    """Up to ``limit`` complete packets of ``buf`` from ``pos``: ([(first byte, body start,
    body end)], where the rest begins).  Raises MalformedPacket for a bad remaining length."""
    found: list[tuple[int, int, int]] = []
    size = len(buf)
    while size - pos >= 2 and len(found) < limit:
        if buf[pos + 1] < 0x80:  # a remaining length under 128: one byte
            length, start = buf[pos + 1], pos + 2
        else:
            try:
                length, start = read_varint(buf, pos + 1)
            except IndexError:
                break  # the length itself is not complete yet
        end = start + length
        if end > size:
            break
        found.append((buf[pos], start, end))
        pos = end
    return found, pos


def packets(data: bytes) -> list[tuple[int, bytes]]:
    """The complete packets at the start of ``data`` as (first byte, body): for clients that
    read a few packets with plain sockets (the conformance suite), not for the hot path."""
    found, _ = frames(data)
    return [(first, data[start:end]) for first, start, end in found]


def check_flags(first: int) -> int:
    """The packet type of a fixed header's first byte, once its flags are the ones MQTT 5
    2.1.3 prescribes (PUBLISH: not QoS 3, [MQTT-3.3.1-4]); else MalformedPacket."""
    kind = first >> 4
    if kind == PUBLISH:
        if first & 0x06 == 0x06:
            raise MalformedPacket("PUBLISH with QoS 3 [MQTT-3.3.1-4]")
    elif kind not in _FLAGS:
        raise MalformedPacket(f"packet type {kind} is reserved (MQTT 5 2.1.2)")
    elif first & 0x0F != _FLAGS[kind]:
        raise MalformedPacket(f"packet type {kind} with flags {first & 0x0F:#x} (MQTT 5 2.1.3)")
    return kind


def utf8(text: str) -> bytes:
    """A UTF-8 Encoded String (MQTT 5 1.5.4): two length bytes, then the bytes."""
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


def pack_properties(props: Mapping[int, PropertyValue]) -> bytes:
    """MQTT 5 properties (2.2.2): their length, then each identifier and value; a repeatable
    one (REPEATABLE) takes a list of values."""
    out = bytearray()
    for ident, value in props.items():
        values = value if ident in REPEATABLE and isinstance(value, list) else [value]
        for one in values:
            out.append(ident)
            out += _pack_value(ident, one)
    return varint(len(out)) + out


def _pack_value(ident: int, value: object) -> bytes:
    kind = PROPERTY_KIND.get(ident)
    if kind in (BYTE, TWO, FOUR) and isinstance(value, int):
        return value.to_bytes(1 if kind == BYTE else 2 if kind == TWO else 4, "big")
    if kind == VARINT and isinstance(value, int):
        return varint(value)
    if kind == STRING and isinstance(value, str):
        return utf8(value)
    if kind == BINARY and isinstance(value, bytes):
        return len(value).to_bytes(2, "big") + value
    if kind == PAIR and isinstance(value, tuple):
        return utf8(value[0]) + utf8(value[1])
    raise ValueError(f"property 0x{ident:02x} cannot carry {value!r}")


def connect(
    client_id: str,
    *,
    version: int,
    keepalive: int,
    clean: bool,
    username: str | None = None,
    password: str | None = None,
    session_expiry: int = 0,
    receive_maximum: int = 0,
) -> bytes:
    """CONNECT (MQTT 5 3.1, 3.1.1 3.1); a password only with a user name (3.1.1 3.1.2.9)."""
    flags = 0x02 if clean else 0
    if username is not None:
        flags |= 0x80
        if password is not None:
            flags |= 0x40
    body = utf8("MQTT") + bytes((version, flags)) + keepalive.to_bytes(2, "big")
    if version == V5:
        props: dict[int, PropertyValue] = {}
        if session_expiry:
            props[SESSION_EXPIRY] = session_expiry
        if receive_maximum:
            props[RECEIVE_MAXIMUM] = receive_maximum
        body += pack_properties(props)
    body += utf8(client_id)
    if username is not None:
        body += utf8(username)
        if password is not None:
            body += utf8(password)
    return _packet(CONNECT << 4, body)


def subscribe(packet_id: int, topic: str, qos: int, *, version: int) -> bytes:
    """SUBSCRIBE with one topic filter (MQTT 5 3.8; the fixed header flags are 0b0010)."""
    body = packet_id.to_bytes(2, "big")
    if version == V5:
        body += b"\x00"  # no properties
    return _packet(SUBSCRIBE << 4 | 0x02, body + utf8(topic) + bytes((qos,)))


def publish(
    topic: str,
    payload: bytes,
    *,
    qos: int,
    packet_id: int = 0,
    version: int,
    content_type: str | None = None,
    retain: bool = False,
) -> bytes:
    """PUBLISH (MQTT 5 3.3); the Content Type property only on MQTT 5."""
    body = utf8(topic)
    if qos:
        body += packet_id.to_bytes(2, "big")
    if version == V5:
        body += pack_properties({CONTENT_TYPE: content_type}) if content_type else b"\x00"
    return _packet(PUBLISH << 4 | qos << 1 | retain, body + payload)


_ACK = struct.Struct(">BBH").pack
_ACK_REASON = struct.Struct(">BBHB").pack


def ack(kind: int, packet_id: int, reason: int = 0, *, version: int) -> bytes:
    """PUBACK, PUBREC, PUBREL or PUBCOMP.  MQTT 5 3.4.2.1: a success code may be left out."""
    first = kind << 4 | (0x02 if kind == PUBREL else 0)
    if reason and version == V5:
        return _ACK_REASON(first, 3, packet_id, reason)
    return _ACK(first, 2, packet_id)


def properties(
    buf: bytes, pos: int, end: int | None = None
) -> tuple[dict[int, PropertyValue], int]:
    """MQTT 5 properties at ``pos`` of a packet ending at ``end`` (default: the buffer's end):
    ({identifier: value}, position after them)."""
    stop = len(buf) if end is None else end
    try:
        length, pos = read_varint(buf, pos, stop)
        last = pos + length
        if last > stop:
            raise MalformedPacket("properties longer than their packet")
        found: dict[int, PropertyValue] = {}
        while pos < last:
            ident = buf[pos]
            kind = PROPERTY_KIND.get(ident)
            pos += 1
            value: PropertyValue | tuple[str, str]
            if kind == BYTE:
                value, pos = buf[pos], pos + 1
            elif kind == TWO:
                value, pos = buf[pos] << 8 | buf[pos + 1], pos + 2
            elif kind == FOUR:
                value, pos = int.from_bytes(buf[pos : pos + 4], "big"), pos + 4
            elif kind == VARINT:
                value, pos = read_varint(buf, pos, last)
            elif kind in (STRING, BINARY):
                value, pos = _field(buf, pos, last, kind == STRING)
            elif kind == PAIR:
                name, pos = _field(buf, pos, last, True)
                text, pos = _field(buf, pos, last, True)
                value = (str(name), str(text))
            else:
                raise MalformedPacket(f"unknown property identifier 0x{ident:02x} (MQTT 5 2.2.2.2)")
            if pos > last:
                raise MalformedPacket(f"property 0x{ident:02x} runs past the properties' length")
            if ident in REPEATABLE:  # a list of values; a pair only in User Property (0x26)
                cast(list[object], found.setdefault(ident, [])).append(value)
            elif ident in found:
                raise MalformedPacket(f"property 0x{ident:02x} twice (MQTT 5 2.2.2.2)")
            else:
                found[ident] = cast(PropertyValue, value)
    except IndexError:
        raise MalformedPacket("properties cut short") from None
    return found, last


def _field(buf: bytes, pos: int, end: int, text: bool) -> tuple[str | bytes, int]:
    """A UTF-8 string or binary data (MQTT 5 1.5.4, 1.5.6) at ``pos``, ending by ``end``."""
    after = pos + 2 + (buf[pos] << 8 | buf[pos + 1])
    if after > end:
        raise MalformedPacket("a string or binary field runs past its packet")
    raw = buf[pos + 2 : after]
    if not text:
        return raw, after
    try:
        return raw.decode(), after
    except UnicodeDecodeError:
        raise MalformedPacket("a string that is not UTF-8 [MQTT-1.5.4-1]") from None


def parse_publish(
    first: int, buf: bytes, start: int, end: int, version: int
) -> tuple[str, int, str | None, int]:
    """(topic, packet id, content type, payload start) of the PUBLISH in ``buf[start:end]``
    (MQTT 5 3.3, 3.1.1 3.3); the payload is ``buf[payload start:end]``, not copied here."""
    qos = (first >> 1) & 3
    try:
        pos = start + 2 + (buf[start] << 8 | buf[start + 1])
        if pos > end:
            raise MalformedPacket("PUBLISH topic runs past the packet")
        topic = buf[start + 2 : pos].decode()
        packet_id = 0
        if qos:
            if qos == 3:
                raise MalformedPacket("PUBLISH with QoS 3 [MQTT-3.3.1-4]")
            packet_id = buf[pos] << 8 | buf[pos + 1]
            pos += 2
            if pos > end or not packet_id:
                raise MalformedPacket("PUBLISH without a packet identifier (MQTT 5 2.2.1)")
        content_type = None
        if version == V5:
            if pos >= end:
                raise MalformedPacket("PUBLISH without its property length (MQTT 5 3.3.2.3)")
            if buf[pos] == 0:  # no properties: the usual case
                pos += 1
            else:
                props, pos = properties(buf, pos, end)
                found = props.get(CONTENT_TYPE)
                content_type = found if isinstance(found, str) else None
    except IndexError:
        raise MalformedPacket("PUBLISH cut short") from None
    except UnicodeDecodeError:
        raise MalformedPacket("PUBLISH topic is not UTF-8 [MQTT-1.5.4-1]") from None
    return topic, packet_id, content_type, pos


def parse_ack(body: bytes, version: int) -> tuple[int, int]:
    """(packet id, reason code) of a PUBACK, PUBREC, PUBREL or PUBCOMP (MQTT 5 3.4.2: the
    reason may be left out, meaning success; MQTT 3.1.1 3.4: exactly the packet id)."""
    if len(body) < 2 or (version != V5 and len(body) != 2):
        raise MalformedPacket(f"an acknowledgement of {len(body)} bytes (MQTT 5 3.4.2)")
    reason = body[2] if len(body) > 2 else 0
    if len(body) > 3:
        properties(body, 3)  # checked, not used
    return body[0] << 8 | body[1], reason


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    reason: int  # MQTT 5 3.2.2.2 reason code, or the 3.1.1 return code (3.2.2.3)
    properties: dict[int, PropertyValue]


def parse_connack(body: bytes, version: int) -> Connack:
    """CONNACK (MQTT 5 3.2, 3.1.1 3.2).  A broker without MQTT 5 answers an MQTT 5 CONNECT
    with a 3.1.1 CONNACK (two bytes, return code 1), so two bytes are accepted with MQTT 5."""
    if len(body) < 2 or (version != V5 and len(body) != 2):
        raise MalformedPacket(f"CONNACK of {len(body)} bytes (MQTT 5 3.2.2)")
    if body[0] & 0xFE:
        raise MalformedPacket("CONNACK flags other than Session Present [MQTT-3.2.2-1]")
    props: dict[int, PropertyValue] = {}
    if len(body) > 2:
        props, after = properties(body, 2)
        if after != len(body):
            raise MalformedPacket("bytes after the CONNACK properties")
    return Connack(bool(body[0] & 1), body[1], props)


def parse_suback(body: bytes, version: int) -> tuple[int, list[int]]:
    """(packet id, one reason code / granted QoS per filter), MQTT 5 3.9."""
    if len(body) < 2:
        raise MalformedPacket("SUBACK shorter than its packet identifier")
    packet_id = body[0] << 8 | body[1]
    pos = 2
    if version == V5:
        _, pos = properties(body, pos)
    return packet_id, list(body[pos:])


def parse_disconnect(body: bytes) -> tuple[int, str]:
    """(reason code, reason string) of a server DISCONNECT (MQTT 5 3.14)."""
    if not body:
        return 0, ""
    reason = body[0]
    text = ""
    if len(body) > 1:
        props, _ = properties(body, 1)
        text = str(props.get(REASON_STRING, ""))
    return reason, text
