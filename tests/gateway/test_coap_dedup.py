"""The gateway's CoAP duplicate table: RFC 7252 4.5 behaviour, and what it keeps per request."""

from __future__ import annotations

import asyncio
import gc
import socket

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from conformance.coap_raw import CONTENT_FORMAT, POST, Message, encode, path_options, uint
from gateway.errors import RejectedPayload
from gateway.normalizer import Inbound
from gateway.transports import coap_dedup
from gateway.transports.coap import CoapIngest
from gateway.transports.coap_dedup import BUCKET, DuplicateTable
from tests.conftest import free_port


def test_entries_live_the_lifetime_and_at_most_one_bucket_more() -> None:
    now = [1000.0]
    table = DuplicateTable(247.0, clock=lambda: now[0])
    assert table.add("a")
    now[0] += 0.6
    assert table.add("b")
    assert not table.add("a"), "a key seen within the lifetime is a duplicate"
    table.set_answer("a", b"answer")
    table.set_answer("never-seen", b"x")
    assert table.answer("a") == b"answer"
    assert "never-seen" not in table
    now[0] = 1000.0 + 247.0 - 0.01
    table.expire()
    assert "a" in table, "an entry left before EXCHANGE_LIFETIME"
    assert "b" in table, "an entry left before EXCHANGE_LIFETIME"
    now[0] = 1000.6 + 247.0 + BUCKET
    table.expire()
    assert len(table) == 0, "entries outlived their lifetime by more than a bucket"
    assert table.add("a"), "an expired key counts as new again"


def _post(mtype: Type, mid: int, token: bytes, device: str) -> bytes:
    options = [*path_options(f"/up/{device}"), (CONTENT_FORMAT, uint(110))]
    return encode(Message(int(mtype), POST, mid, token, options, b'[{"n":"t","v":1}]'))


def _client(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.settimeout(5)
    sock.connect(("::1", port))
    return sock


def _exchange(sock: socket.socket, datagrams: list[bytes], expect: int) -> list[bytes]:
    """Send each datagram and collect ``expect`` answers (blocking; run in a thread)."""
    answers = []
    for datagram in datagrams:
        sock.send(datagram)
        if len(answers) < expect:
            answers.append(sock.recv(2048))
    return answers


async def test_a_duplicate_gets_the_same_answer_and_is_processed_once() -> None:
    seen: list[Inbound] = []

    async def handler(inbound: Inbound) -> RejectedPayload | None:
        seen.append(inbound)
        return None

    port = free_port("udp")
    async with CoapIngest(host="::1", port=port, handler=handler) as ingest:
        assert ingest.duplicates is not None
        sock = _client(port)
        con = _post(Type.CON, 4711, b"\x01\x02", "noise-1")
        first, second = await asyncio.to_thread(_exchange, sock, [con, con], 2)
        assert second == first, "the retransmitted CON got a different answer"
        answer = aiocoap.Message.decode(first)
        assert (answer.mtype, answer.mid, answer.code) == (Type.ACK, 4711, Code.CHANGED)
        assert answer.token == b"\x01\x02"
        non = _post(Type.NON, 4712, b"\x03", "noise-2")
        await asyncio.to_thread(_exchange, sock, [non, non, con], 1)
        await asyncio.sleep(0.2)
        assert [i.device_id for i in seen] == ["noise-1", "noise-2"], "a duplicate was processed"
        assert seen[0].source == "::1"
        # The same Message ID from another port is another sender's request (RFC 7252 4.5).
        await asyncio.to_thread(_exchange, _client(port), [con], 1)
        assert len(seen) == 3
        sock.close()


async def test_what_stays_behind_per_request_is_small() -> None:
    """aiocoap's own table kept ~24 objects the collector walks per request for 247 s."""

    async def handler(inbound: Inbound) -> RejectedPayload | None:
        return None

    port = free_port("udp")
    count = 2000
    async with CoapIngest(host="::1", port=port, handler=handler) as ingest:
        assert ingest.duplicates is not None
        sock = _client(port)
        await asyncio.to_thread(_exchange, sock, [_post(Type.CON, 1, b"\x01", "warm-up")], 1)
        gc.collect()
        before = len(gc.get_objects())
        posts = [_post(Type.CON, 2 + n, n.to_bytes(2, "big"), f"d{n % 50}") for n in range(count)]
        answers = await asyncio.to_thread(_exchange, sock, posts, count)
        sock.close()
        assert len(answers) == count
        assert len(ingest.duplicates) == count + 1
        gc.collect()
        kept = (len(gc.get_objects()) - before) / count
        assert kept < 1.0, f"{kept:.1f} tracked objects kept per request"


async def test_entries_leave_after_a_burst_without_new_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Expiry does not wait for the next request: a quiet gateway gives the memory back."""

    async def handler(inbound: Inbound) -> RejectedPayload | None:
        return None

    monkeypatch.setattr(coap_dedup, "EXPIRE_EVERY", 0.1)
    monkeypatch.setattr(coap_dedup, "BUCKET", 0.1)
    port = free_port("udp")
    async with CoapIngest(host="::1", port=port, handler=handler) as ingest:
        assert ingest.duplicates is not None
        ingest.duplicates.lifetime = 0.3
        sock = _client(port)
        posts = [_post(Type.CON, 100 + n, bytes([n]), "noise-1") for n in range(20)]
        await asyncio.to_thread(_exchange, sock, posts, len(posts))
        sock.close()
        assert len(ingest.duplicates) == 20
        await asyncio.sleep(1.0)
        assert len(ingest.duplicates) == 0, "entries stayed after their lifetime"
