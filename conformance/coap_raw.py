"""Raw CoAP messages over UDP (RFC 7252 section 3), for cases a library would hide.

Decoding is strict: a datagram that is not a well-formed CoAP message (RFC 7252 3 and 3.1: the
reserved version, token lengths 9 to 15, option nibble 15, an extension or option running past
the end, a payload marker with no payload) raises :class:`MalformedCoap` with the reason and
the bytes.  :class:`Endpoint`, which reads what an implementation under test answers, turns it
into :class:`MalformedAnswer`, an AssertionError: a malformed answer is the IUT's failure, so
the case's verdict is *fail* with that reason, not *error* (conformance/conftest.py).
"""

from __future__ import annotations

import enum
import random
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

CON, NON, ACK, RST = 0, 1, 2, 3
URI_PATH, CONTENT_FORMAT, URI_QUERY, ACCEPT, OBSERVE, BLOCK2 = 11, 12, 15, 17, 6, 23
ETAG, MAX_AGE, BLOCK1 = 4, 14, 27
PAYLOAD_MARKER = 0xFF


class CoapCode(enum.IntEnum):
    """Method and response codes, ``class << 5 | detail`` (RFC 7252 12.1; RFC 7959 2.31 and
    4.08, RFC 8132 FETCH/PATCH and 4.09/4.22, RFC 8516 4.29, RFC 8768 5.08).  ``str()`` and
    ``format()`` give the dotted form, "2.05"."""

    EMPTY = 0x00
    GET = 0x01
    POST = 0x02
    PUT = 0x03
    DELETE = 0x04
    FETCH = 0x05
    PATCH = 0x06
    IPATCH = 0x07
    CREATED = 0x41
    DELETED = 0x42
    VALID = 0x43
    CHANGED = 0x44
    CONTENT = 0x45
    CONTINUE = 0x5F
    BAD_REQUEST = 0x80
    UNAUTHORIZED = 0x81
    BAD_OPTION = 0x82
    FORBIDDEN = 0x83
    NOT_FOUND = 0x84
    METHOD_NOT_ALLOWED = 0x85
    NOT_ACCEPTABLE = 0x86
    REQUEST_ENTITY_INCOMPLETE = 0x88
    CONFLICT = 0x89
    PRECONDITION_FAILED = 0x8C
    REQUEST_ENTITY_TOO_LARGE = 0x8D
    UNSUPPORTED_CONTENT_FORMAT = 0x8F
    UNPROCESSABLE_ENTITY = 0x96
    TOO_MANY_REQUESTS = 0x9D
    INTERNAL_SERVER_ERROR = 0xA0
    NOT_IMPLEMENTED = 0xA1
    BAD_GATEWAY = 0xA2
    SERVICE_UNAVAILABLE = 0xA3
    GATEWAY_TIMEOUT = 0xA4
    PROXYING_NOT_SUPPORTED = 0xA5
    HOP_LIMIT_REACHED = 0xA8

    def __str__(self) -> str:
        return dotted(self)

    def __format__(self, spec: str) -> str:
        return dotted(self) if not spec else int.__format__(int(self), spec)

    @classmethod
    def of(cls, code: int) -> int:
        """The member for a code byte, or the plain int for a code no RFC here names."""
        try:
            return cls(code)
        except ValueError:
            return code


GET, POST, PUT, DELETE = CoapCode.GET, CoapCode.POST, CoapCode.PUT, CoapCode.DELETE


def dotted(code: int) -> str:
    """A code as RFC 7252 12.1 writes it: class, dot, two-digit detail ("4.04")."""
    return f"{code >> 5}.{code & 0x1F:02d}"


class MalformedCoap(ValueError):
    """A datagram that is not a CoAP message (RFC 7252 3: a message format error)."""

    def __init__(self, reason: str, data: bytes, offset: int | None = None) -> None:
        self.reason = reason
        self.data = data
        self.offset = offset
        at = f" at byte {offset}" if offset is not None else ""
        shown = data[:64].hex() + ("..." if len(data) > 64 else "")
        super().__init__(f"{reason}{at} of {len(data)}: {shown}")


class MalformedAnswer(AssertionError):
    """The peer under test answered with a malformed datagram: a fail of the case."""


@dataclass
class Message:
    type: int
    code: int
    mid: int
    token: bytes = b""
    options: list[tuple[int, bytes]] = field(default_factory=list)
    payload: bytes = b""

    @property
    def code_text(self) -> str:
        return dotted(self.code)

    def option(self, number: int) -> bytes | None:
        return next((v for n, v in self.options if n == number), None)


def _ext(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes([value - 13])
    return 14, (value - 269).to_bytes(2, "big")


def encode(msg: Message) -> bytes:
    out = bytearray([0x40 | (msg.type << 4) | len(msg.token), msg.code])
    out += msg.mid.to_bytes(2, "big") + msg.token
    last = 0
    for number, value in sorted(msg.options, key=lambda o: o[0]):
        delta, dext = _ext(number - last)
        length, lext = _ext(len(value))
        out += bytes([(delta << 4) | length]) + dext + lext + value
        last = number
    if msg.payload:
        out += bytes([PAYLOAD_MARKER]) + msg.payload
    return bytes(out)


def decode(data: bytes) -> Message:
    """The message in a datagram; MalformedCoap for anything RFC 7252 3 calls a message format
    error (and for what it reserves: another version, token lengths 9 to 15)."""
    if len(data) < 4:
        raise MalformedCoap("shorter than the 4-byte header (RFC 7252 3)", data)
    version, tkl = data[0] >> 6, data[0] & 0x0F
    if version != 1:
        raise MalformedCoap(f"version {version}; only 1 is defined (RFC 7252 3)", data, 0)
    if tkl > 8:
        raise MalformedCoap(f"token length {tkl} is reserved (RFC 7252 3)", data, 0)
    if 4 + tkl > len(data):
        raise MalformedCoap(f"the {tkl}-byte token runs past the end (RFC 7252 3)", data, 4)
    msg = Message(type=(data[0] >> 4) & 0x3, code=CoapCode.of(data[1]),
                  mid=int.from_bytes(data[2:4], "big"), token=data[4 : 4 + tkl])  # fmt: skip
    if msg.code == CoapCode.EMPTY and len(data) > 4:
        raise MalformedCoap(
            "an Empty message (0.00) with bytes after the header (RFC 7252 4.1)", data, 4
        )
    i, number = 4 + tkl, 0
    while i < len(data):
        if data[i] == PAYLOAD_MARKER:
            if i + 1 == len(data):
                raise MalformedCoap("a payload marker with no payload (RFC 7252 3)", data, i)
            msg.payload = data[i + 1 :]
            break
        start, head = i, data[i]
        # The option's byte, then the delta's extension bytes, then the length's (RFC 7252 3.1).
        delta, i = _extended(data, head >> 4, i + 1, "delta", start)
        length, i = _extended(data, head & 0x0F, i, "length", start)
        number += delta
        if number > 0xFFFF:
            raise MalformedCoap(f"option number {number} above 65535 (RFC 7252 12.2)", data, start)
        if i + length > len(data):
            raise MalformedCoap(
                f"option {number} of {length} bytes runs past the end (RFC 7252 3.1)", data, start
            )
        msg.options.append((number, data[i : i + length]))
        i += length
    return msg


def _extended(data: bytes, nibble: int, i: int, what: str, start: int) -> tuple[int, int]:
    """An option delta or length from its 4-bit field and extension bytes (RFC 7252 3.1)."""
    if nibble < 13:
        return nibble, i
    if nibble == 15:
        why = "reserved for the payload marker" if what == "delta" else "reserved"
        raise MalformedCoap(f"option {what} nibble 15 is {why} (RFC 7252 3.1)", data, start)
    size = 1 if nibble == 13 else 2
    if i + size > len(data):
        raise MalformedCoap(f"the extended option {what} is cut short (RFC 7252 3.1)", data, start)
    base = 13 if size == 1 else 269
    return int.from_bytes(data[i : i + size], "big") + base, i + size


def path_options(path: str) -> list[tuple[int, bytes]]:
    return [(URI_PATH, p.encode()) for p in path.strip("/").split("/") if p]


def uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""


class Endpoint:
    """A UDP socket talking to one CoAP server."""

    def __init__(self, url: str, timeout: float = 3.0) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname or "::1", parts.port or 5683)
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)
        self.mid = random.randrange(1, 60000)  # noqa: S311

    def request(self, msg: Message) -> Message:
        """Send and return the response, following a separate response (RFC 7252 5.2.2)."""
        self.send(msg)
        answer = self.receive()
        if answer.type == ACK and answer.code == 0 and msg.code != 0:
            answer = self.receive()  # empty ACK: the response follows in its own message
            if answer.type == CON:
                self.send(Message(ACK, 0, answer.mid))
        return answer

    def send(self, msg: Message) -> int:
        data = encode(msg)
        self.sock.sendto(data, self.address)
        return len(data)

    def receive(self) -> Message:
        """The next datagram; a malformed one is the peer's fail (MalformedAnswer)."""
        data, _ = self.sock.recvfrom(65535)
        try:
            return decode(data)
        except MalformedCoap as exc:
            host, port = self.address[:2]
            raise MalformedAnswer(
                f"[{host}]:{port} answered a malformed CoAP message: {exc}"
            ) from exc

    def next_mid(self) -> int:
        self.mid = (self.mid + 1) % 65536
        return self.mid

    def close(self) -> None:
        self.sock.close()
