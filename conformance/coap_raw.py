"""Raw CoAP messages over UDP (RFC 7252 section 3), for cases a library would hide."""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

CON, NON, ACK, RST = 0, 1, 2, 3
GET, POST, PUT, DELETE = 1, 2, 3, 4
URI_PATH, CONTENT_FORMAT, URI_QUERY, ACCEPT, OBSERVE, BLOCK2 = 11, 12, 15, 17, 6, 23
ETAG, MAX_AGE, BLOCK1 = 4, 14, 27


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
        return f"{self.code >> 5}.{self.code & 0x1F:02d}"

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
        out += b"\xff" + msg.payload
    return bytes(out)


def decode(data: bytes) -> Message:
    tkl = data[0] & 0x0F
    msg = Message(type=(data[0] >> 4) & 0x3, code=data[1], mid=int.from_bytes(data[2:4], "big"))
    msg.token = data[4 : 4 + tkl]
    i, number = 4 + tkl, 0
    while i < len(data):
        if data[i] == 0xFF:
            msg.payload = data[i + 1 :]
            break
        delta, length = data[i] >> 4, data[i] & 0x0F
        i += 1
        if delta == 13:
            delta, i = data[i] + 13, i + 1
        elif delta == 14:
            delta, i = int.from_bytes(data[i : i + 2], "big") + 269, i + 2
        if length == 13:
            length, i = data[i] + 13, i + 1
        elif length == 14:
            length, i = int.from_bytes(data[i : i + 2], "big") + 269, i + 2
        number += delta
        msg.options.append((number, data[i : i + length]))
        i += length
    return msg


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
        data, _ = self.sock.recvfrom(65535)
        return decode(data)

    def next_mid(self) -> int:
        self.mid = (self.mid + 1) % 65536
        return self.mid

    def close(self) -> None:
        self.sock.close()
