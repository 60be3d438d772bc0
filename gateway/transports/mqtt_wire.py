"""The few MQTT packets the gateway's ingest connection uses, encoded and decoded (no I/O).

Why our own codec and not paho's: profiling the gateway at full load (docs/benchmarks.md) put
about half of its CPU in paho's and aiomqtt's per-message machinery (a Properties object, a
message-info object with a threading.Condition, a topic matcher walk, an asyncio queue hop per
PUBLISH).  The ingest connection needs only CONNECT, SUBSCRIBE, PUBLISH in both directions,
the acknowledgements and PINGREQ, and it needs to hold back each PUBACK until the reading is on
disk, which paho does not offer (it acknowledges on receipt).  Devices and the conformance suite
keep using paho and aiomqtt: they stand for other people's clients.

Packet layouts are MQTT 5.0 (OASIS, 2019) section 3 and MQTT 3.1.1 (OASIS, 2014) section 3.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

V311 = 4  # protocol level byte (MQTT 3.1.1 section 3.1.2.2)
V5 = 5

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = 8, 9, 12, 13, 14, 15

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"  # MQTT 5 3.14.2.1: no reason code means 0x00, normal

# MQTT 5 section 2.2.2.2: property identifier -> how its value is encoded.
_BYTE, _TWO, _FOUR, _VARINT, _STRING, _BINARY, _PAIR = range(7)
_PROPERTY_KIND = {
    0x01: _BYTE, 0x02: _FOUR, 0x03: _STRING, 0x08: _STRING, 0x09: _BINARY, 0x0B: _VARINT,
    0x11: _FOUR, 0x12: _STRING, 0x13: _TWO, 0x15: _STRING, 0x16: _BINARY, 0x17: _BYTE,
    0x18: _FOUR, 0x19: _BYTE, 0x1A: _STRING, 0x1C: _STRING, 0x1F: _STRING, 0x21: _TWO,
    0x22: _TWO, 0x23: _TWO, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _FOUR, 0x28: _BYTE,
    0x29: _BYTE, 0x2A: _BYTE,
}  # fmt: skip
CONTENT_TYPE = 0x03
SESSION_EXPIRY = 0x11
SERVER_KEEP_ALIVE = 0x13
RECEIVE_MAXIMUM = 0x21
REASON_STRING = 0x1F


class MalformedPacket(ValueError):
    """The peer sent bytes that are not MQTT (MQTT 5 4.13: close the connection)."""


def varint(n: int) -> bytes:
    """A Variable Byte Integer (MQTT 5 1.5.5)."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | 0x80 if n else digit)
        if not n:
            return bytes(out)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it); raises IndexError when the buffer ends inside it."""
    value = 0
    shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 21:
            raise MalformedPacket("a variable byte integer longer than 4 bytes")


def frames(
    buf: bytes, pos: int = 0, limit: int = 1 << 30
) -> tuple[list[tuple[int, int, int]], int]:
    """Up to ``limit`` complete packets of ``buf`` from ``pos``: ([(first byte, body start,
    body end)], where the rest begins).  Raises MalformedPacket for a bad remaining length."""
    found: list[tuple[int, int, int]] = []
    size = len(buf)
    while size - pos >= 2 and len(found) < limit:
        if buf[pos + 1] < 0x80:  # a remaining length under 128: one byte (the usual case)
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


def utf8(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


def _properties(props: bytes) -> bytes:
    return varint(len(props)) + props


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
    """CONNECT (MQTT 5 3.1, 3.1.1 3.1)."""
    flags = 0x02 if clean else 0
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = utf8("MQTT") + bytes((version, flags)) + keepalive.to_bytes(2, "big")
    if version == V5:
        props = b""
        if session_expiry:
            props += bytes((SESSION_EXPIRY,)) + session_expiry.to_bytes(4, "big")
        if receive_maximum:
            props += bytes((RECEIVE_MAXIMUM,)) + receive_maximum.to_bytes(2, "big")
        body += _properties(props)
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
        body += _properties(b"")
    return _packet(SUBSCRIBE << 4 | 0x02, body + utf8(topic) + bytes((qos,)))


def publish(
    topic: str,
    payload: bytes,
    *,
    qos: int,
    packet_id: int = 0,
    version: int,
    content_type: str | None = None,
) -> bytes:
    """PUBLISH (MQTT 5 3.3); the Content Type property only on MQTT 5."""
    body = utf8(topic)
    if qos:
        body += packet_id.to_bytes(2, "big")
    if version == V5:
        props = bytes((CONTENT_TYPE,)) + utf8(content_type) if content_type else b""
        body += _properties(props)
    return _packet(PUBLISH << 4 | qos << 1, body + payload)


_ACK = struct.Struct(">BBH").pack
_ACK_REASON = struct.Struct(">BBHB").pack


def ack(kind: int, packet_id: int, reason: int = 0, *, version: int) -> bytes:
    """PUBACK, PUBREC, PUBREL or PUBCOMP.  MQTT 5 3.4.2.1: a success code may be left out."""
    first = kind << 4 | (0x02 if kind == PUBREL else 0)
    if reason and version == V5:
        return _ACK_REASON(first, 3, packet_id, reason)
    return _ACK(first, 2, packet_id)


def properties(buf: bytes, pos: int) -> tuple[dict[int, object], int]:
    """MQTT 5 properties at ``pos``: ({identifier: value}, position after them)."""
    length, pos = read_varint(buf, pos)
    end = pos + length
    found: dict[int, object] = {}
    while pos < end:
        ident = buf[pos]
        kind = _PROPERTY_KIND.get(ident)
        pos += 1
        value: object
        if kind == _BYTE:
            value, pos = buf[pos], pos + 1
        elif kind == _TWO:
            value, pos = int.from_bytes(buf[pos : pos + 2], "big"), pos + 2
        elif kind == _FOUR:
            value, pos = int.from_bytes(buf[pos : pos + 4], "big"), pos + 4
        elif kind == _VARINT:
            value, pos = read_varint(buf, pos)
        elif kind in (_STRING, _BINARY):
            size = int.from_bytes(buf[pos : pos + 2], "big")
            raw = buf[pos + 2 : pos + 2 + size]
            value, pos = (raw.decode(errors="replace") if kind == _STRING else raw), pos + 2 + size
        elif kind == _PAIR:
            for _ in range(2):
                pos += 2 + int.from_bytes(buf[pos : pos + 2], "big")
            continue  # user properties carry nothing the gateway uses
        else:
            raise MalformedPacket(f"unknown property identifier 0x{ident:02x}")
        found[ident] = value
    if pos != end:
        raise MalformedPacket("properties overrun their length")
    return found, end


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    reason: int  # MQTT 5 3.2.2.2 reason code, or the 3.1.1 return code (3.2.2.3)
    properties: dict[int, object]


def parse_connack(body: bytes, version: int) -> Connack:
    if len(body) < 2:
        raise MalformedPacket("CONNACK shorter than 2 bytes")
    props: dict[int, object] = {}
    if version == V5 and len(body) > 2:
        props, _ = properties(body, 2)
    return Connack(bool(body[0] & 1), body[1], props)


def parse_suback(body: bytes, version: int) -> tuple[int, list[int]]:
    """(packet id, one reason code / granted QoS per filter), MQTT 5 3.9."""
    packet_id = int.from_bytes(body[:2], "big")
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
