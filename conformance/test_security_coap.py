"""R197-SEC-40..45: CoAP with OSCORE (RFC 8613) at the gateway's ingest and at the RD.

The suite plays a provisioned device with its context (``security.oscore`` of the gateway role,
or the reference gateway started with ``--oscore`` and the city's oscore.json), sending raw
datagrams: a replay is the same protected bytes again, as an attacker on the path would send.
"""

from __future__ import annotations

import json
import secrets
import time
from urllib.parse import urlsplit

import aiocoap
import pytest

from conformance.model import Inconclusive, case
from conformance.security import need, not_applicable
from conformance.security_pixit import OscorePixit, SecurityPixit
from testbed.oscore_client import (
    MemoryContext,
    exchange,
    protected_datagram,
    read_answer,
    with_message_id,
)

T = 1_795_579_200  # 2026-11-25T04:00:00Z
SENML_JSON = 110
LINK_FORMAT = 40


def first_sequence() -> int:
    """Above every number an earlier run used: the IUT's replay window remembers (7.4)."""
    return int(time.time() * 100) % (2**40 - 2**20)


def context(o: OscorePixit, *, secret: bytes | None = None, rd: bool = False) -> MemoryContext:
    if rd:
        return MemoryContext(
            secret=bytes.fromhex(o.master_secret), salt=bytes.fromhex(o.master_salt),
            sender_id=bytes.fromhex(o.sender_id), recipient_id=bytes.fromhex(o.rd_recipient_id or ""),
            id_context=bytes.fromhex(o.rd_id_context or ""), first_sequence=first_sequence(),
        )  # fmt: skip
    return MemoryContext(
        secret=secret or bytes.fromhex(o.master_secret), salt=bytes.fromhex(o.master_salt),
        sender_id=bytes.fromhex(o.sender_id), recipient_id=bytes.fromhex(o.recipient_id),
        first_sequence=first_sequence(),
    )  # fmt: skip


def oscore_of(request: pytest.FixtureRequest, gw: SecurityPixit) -> tuple[OscorePixit, str, int]:
    need(request, gw, "coap_url", "oscore")
    assert gw.oscore is not None
    assert gw.coap_url is not None
    parts = urlsplit(gw.coap_url)
    return gw.oscore, parts.hostname or "::1", parts.port or 5683


def reading(device: str) -> bytes:
    value = 30 + secrets.randbelow(60)
    return json.dumps(
        [{"bn": f"urn:dev:r197:{device}:", "bt": T, "n": "LAeq", "u": "dB", "v": value}]
    ).encode()


def push(device: str, payload: bytes) -> aiocoap.Message:
    return aiocoap.Message(
        code=aiocoap.POST, uri_path=("up", device), payload=payload, content_format=SENML_JSON
    )


def plain_datagram(message: aiocoap.Message, mid: int) -> bytes:
    message.mtype, message.mid, message.token = aiocoap.CON, mid, b"\x02"
    data: bytes = message.encode()
    return data


def seen(answer: aiocoap.Message) -> str:
    protected = " (protected)" if answer.opt.oscore is not None else ""
    return f"{answer.code}{protected} {bytes(answer.payload)[:80]!r}"


def send(host: str, port: int, datagram: bytes) -> aiocoap.Message:
    try:
        return exchange(host, port, datagram)
    except TimeoutError:
        raise AssertionError(f"no answer from coap://[{host}]:{port} within 5 s") from None


def accepted(host: str, port: int, ctx: MemoryContext, message: aiocoap.Message) -> aiocoap.Message:
    """The control: a protected request in the right context is answered 2.xx (unprotected)."""
    datagram, rid = protected_datagram(ctx, message, mid=secrets.randbelow(60000) + 1)
    answer = send(host, port, datagram)
    inner = read_answer(ctx, answer, rid)
    if not inner.code.is_successful():
        raise Inconclusive(
            f"a protected request in the provisioned context got {seen(answer)} / {inner.code}"
        )
    return answer


@case("R197-SEC-40", "An unprotected CoAP push to the gateway is 4.01 Unauthorized",
      verifies=["RFC7252-5.9.2.2", "X1361"], theme="security", pics=["sec.coap-oscore"])  # fmt: skip
def test_unprotected_push(request: pytest.FixtureRequest, secure_gateway: SecurityPixit) -> None:
    o, host, port = oscore_of(request, secure_gateway)
    answer = send(host, port, plain_datagram(push(o.device, reading(o.device)), mid=4001))
    assert answer.code == aiocoap.UNAUTHORIZED, f"a plain push to /up/{o.device} got {seen(answer)}"


@case("R197-SEC-41", "A push protected in the device's context is accepted and answered protected",
      verifies=["RFC8613-8.2", "RFC8613-8.3", "Y4806"], theme="security", pics=["sec.coap-oscore"])  # fmt: skip
def test_protected_push(request: pytest.FixtureRequest, secure_gateway: SecurityPixit) -> None:
    o, host, port = oscore_of(request, secure_gateway)
    ctx = context(o)
    datagram, rid = protected_datagram(ctx, push(o.device, reading(o.device)), mid=4101)
    answer = send(host, port, datagram)
    assert answer.opt.oscore is not None, f"the answer is not protected: {seen(answer)}"
    inner = read_answer(ctx, answer, rid)
    assert inner.code == aiocoap.CHANGED, f"protected push answered {inner.code} inside"


@case("R197-SEC-42", "A replayed protected push (same bytes, new Message ID) is refused with 4.01",
      verifies=["RFC8613-7.4"], theme="security", pics=["sec.coap-oscore"])  # fmt: skip
def test_replay(request: pytest.FixtureRequest, secure_gateway: SecurityPixit) -> None:
    o, host, port = oscore_of(request, secure_gateway)
    ctx = context(o)
    datagram, rid = protected_datagram(ctx, push(o.device, reading(o.device)), mid=4201)
    first = read_answer(ctx, send(host, port, datagram), rid)
    if not first.code.is_successful():
        raise Inconclusive(f"the original push was not accepted: {first.code}")
    # A new Message ID, or CoAP deduplication (RFC 7252 4.5) would answer from its cache.
    again = send(host, port, with_message_id(datagram, 4202))
    assert again.code == aiocoap.UNAUTHORIZED, f"the replay got {seen(again)}"


@case("R197-SEC-43", "A push protected with a wrong key under a provisioned Sender ID is refused (4.00 or 4.01)",
      verifies=["RFC8613-8.2"], theme="security", pics=["sec.coap-oscore"])  # fmt: skip
def test_wrong_key(request: pytest.FixtureRequest, secure_gateway: SecurityPixit) -> None:
    o, host, port = oscore_of(request, secure_gateway)
    accepted(host, port, context(o), push(o.device, reading(o.device)))
    forged = context(o, secret=secrets.token_bytes(16))
    datagram, _rid = protected_datagram(forged, push(o.device, reading(o.device)), mid=4301)
    answer = send(host, port, datagram)
    assert answer.code in (aiocoap.BAD_REQUEST, aiocoap.UNAUTHORIZED), f"wrong key: {seen(answer)}"


@case("R197-SEC-44", "A device pushing under another device's id, in its own valid context, is refused (4.03 or 4.01)",
      verifies=["RFC7252-5.9.2.4", "X1361"], theme="security", pics=["sec.coap-oscore"])  # fmt: skip
def test_push_as_another_device(
    request: pytest.FixtureRequest, secure_gateway: SecurityPixit
) -> None:
    o, host, port = oscore_of(request, secure_gateway)
    if not o.other_device:
        not_applicable(request, "PIXIT security.oscore.other_device not given")
    assert o.other_device is not None
    ctx = context(o)
    accepted(host, port, ctx, push(o.device, reading(o.device)))
    datagram, rid = protected_datagram(ctx, push(o.other_device, reading(o.other_device)), mid=4401)
    answer = send(host, port, datagram)
    code = read_answer(ctx, answer, rid).code if answer.opt.oscore is not None else answer.code
    assert code in (aiocoap.FORBIDDEN, aiocoap.UNAUTHORIZED), (
        f"{o.device} pushing to /up/{o.other_device}: {seen(answer)} (inner {code})"
    )


def registration(ep: str) -> aiocoap.Message:
    return aiocoap.Message(
        code=aiocoap.POST, uri_path=("rd",), uri_query=(f"ep={ep}", "lt=120"),
        payload=b'</sensors>;rt="r197.sensor"', content_format=LINK_FORMAT,
    )  # fmt: skip


@case("R197-SEC-45", "The resource directory refuses registrations that are unprotected or from an unprovisioned context (4.01)",
      verifies=["RFC7252-5.9.2.2", "RFC8613-8.2", "Y4806"], theme="security",
      pics=["sec.rd-oscore"])  # fmt: skip
def test_rd_refuses_unprovisioned(
    request: pytest.FixtureRequest, secure_gateway: SecurityPixit
) -> None:
    need(request, secure_gateway, "oscore")
    o = secure_gateway.oscore
    assert o is not None
    if not (o.rd_url and o.rd_id_context is not None and o.rd_recipient_id):
        not_applicable(
            request, "PIXIT security.oscore.rd_url, rd_id_context, rd_recipient_id not given"
        )
    parts = urlsplit(o.rd_url or "")
    host, port = parts.hostname or "::1", parts.port or 5683
    plain = send(
        host, port, plain_datagram(registration(f"r197sec-{secrets.token_hex(3)}"), mid=4501)
    )
    stranger = MemoryContext(
        secret=secrets.token_bytes(16), salt=b"", sender_id=b"\xfe\xed",
        recipient_id=bytes.fromhex(o.rd_recipient_id or ""),
        id_context=bytes.fromhex(o.rd_id_context or ""), first_sequence=1,
    )  # fmt: skip
    datagram, _rid = protected_datagram(stranger, registration("r197sec-stranger"), mid=4502)
    unknown = send(host, port, datagram)
    assert plain.code == aiocoap.UNAUTHORIZED, f"an unprotected registration got {seen(plain)}"
    assert unknown.code == aiocoap.UNAUTHORIZED, (
        f"a registration in an unknown context got {seen(unknown)}"
    )
    # The control comes last: an RD taking everything fails above, one refusing everything
    # (the provisioned registration too) is inconclusive here.
    accepted(host, port, context(o, rd=True), registration(o.device))
