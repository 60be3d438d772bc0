"""R197-COAP: a CoAP device seen on the wire (RFC 7252, RFC 7641, RFC 7959, RFC 6690)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import cbor2
import pytest

from conformance.coap_raw import (
    ACCEPT,
    ACK,
    BLOCK2,
    CON,
    CONTENT_FORMAT,
    DELETE,
    GET,
    NON,
    OBSERVE,
    RST,
    URI_QUERY,
    Endpoint,
    Message,
    path_options,
    uint,
)
from conformance.iut import RoleConfig
from conformance.model import Inconclusive, case

CONTENT, NOT_FOUND, BAD_OPTION, NOT_ALLOWED, NOT_ACCEPTABLE = 0x45, 0x84, 0x82, 0x85, 0x86


@pytest.fixture
def ep(coap_device: RoleConfig) -> Iterator[Endpoint]:
    endpoint = Endpoint(coap_device.url)
    yield endpoint
    endpoint.close()


def res(role: RoleConfig, name: str, default: str) -> str:
    return role.resources.get(name, default)


def get(
    ep: Endpoint,
    path: str,
    *,
    mtype: int = CON,
    token: bytes = b"\x01",
    extra: list[tuple[int, bytes]] | None = None,
) -> Message:
    msg = Message(mtype, GET, ep.next_mid(), token, path_options(path) + (extra or []))
    return ep.request(msg)


@case("R197-COAP-01", "GET /.well-known/core returns 2.05 in link-format (ct 40)",
      clauses=["RFC 6690 4", "RFC 7252 7.2"], theme="interoperability", pics=["coap.link-format"])  # fmt: skip
def test_wkc(ep: Endpoint) -> None:
    answer = get(ep, "/.well-known/core")
    assert answer.code == CONTENT, answer.code_text
    assert answer.option(CONTENT_FORMAT) == uint(40), "Content-Format is not 40"
    assert answer.payload.startswith(b"<"), answer.payload[:60]


@case("R197-COAP-02", "A CON GET is answered by a piggybacked ACK with the same Message ID",
      clauses=["RFC 7252 5.2.1", "RFC 7252 4.2"], theme="interoperability")  # fmt: skip
def test_con_piggybacked(ep: Endpoint, coap_device: RoleConfig) -> None:
    msg = Message(
        CON, GET, ep.next_mid(), b"\x07", path_options(res(coap_device, "observable", "/sensors"))
    )
    answer = ep.request(msg)
    assert answer.type == ACK, f"type {answer.type}"
    assert answer.mid == msg.mid
    assert answer.code == CONTENT, answer.code_text


@case("R197-COAP-03", "A NON GET is answered by a NON response",
      clauses=["RFC 7252 5.2.3"], theme="energy-efficiency")  # fmt: skip
def test_non(ep: Endpoint, coap_device: RoleConfig) -> None:
    answer = get(ep, res(coap_device, "observable", "/sensors"), mtype=NON)
    assert answer.type == NON, f"type {answer.type}"
    assert answer.code == CONTENT, answer.code_text


@pytest.mark.parametrize("length", [0, 1, 4, 8])
@case("R197-COAP-04", "Tokens of 0 to 8 bytes are echoed unchanged",
      clauses=["RFC 7252 5.3.1", "RFC 7252 5.3.2"], theme="interoperability")  # fmt: skip
def test_token_echo(ep: Endpoint, coap_device: RoleConfig, length: int) -> None:
    token = bytes(range(1, length + 1))
    answer = get(ep, res(coap_device, "observable", "/sensors"), token=token)
    assert answer.token == token, f"sent {token.hex()}, got {answer.token.hex()}"


@case("R197-COAP-05", "An unrecognized critical option is rejected with 4.02 Bad Option",
      clauses=["RFC 7252 5.4.1"], theme="interoperability")  # fmt: skip
def test_bad_option(ep: Endpoint, coap_device: RoleConfig) -> None:
    answer = get(ep, res(coap_device, "observable", "/sensors"), extra=[(65001, b"x")])
    assert answer.code == BAD_OPTION, answer.code_text


@case("R197-COAP-06", "A GET of an unknown path is 4.04",
      clauses=["RFC 7252 5.9.2.5"], theme="interoperability")  # fmt: skip
def test_not_found(ep: Endpoint) -> None:
    answer = get(ep, "/r197-no-such-resource")
    assert answer.code == NOT_FOUND, answer.code_text


@case("R197-COAP-07", "A DELETE on a read-only sensor resource is 4.05",
      clauses=["RFC 7252 5.9.2.6"], theme="interoperability")  # fmt: skip
def test_method_not_allowed(ep: Endpoint, coap_device: RoleConfig) -> None:
    path = res(coap_device, "readonly", res(coap_device, "observable", "/sensors"))
    answer = ep.request(Message(CON, DELETE, ep.next_mid(), b"\x02", path_options(path)))
    assert answer.code == NOT_ALLOWED, answer.code_text


@case("R197-COAP-08", "An empty CON (CoAP ping) is answered with RST",
      clauses=["RFC 7252 4.3", "RFC 7252 1.2"], theme="resilience")  # fmt: skip
def test_ping(ep: Endpoint) -> None:
    msg = Message(CON, 0, ep.next_mid())
    answer = ep.request(msg)
    assert answer.type == RST, f"type {answer.type}"
    assert answer.mid == msg.mid


@case("R197-COAP-09", "An Accept the resource cannot serve is 4.06",
      clauses=["RFC 7252 5.10.4"], theme="interoperability", pics=["coap.accept"])  # fmt: skip
def test_not_acceptable(ep: Endpoint, coap_device: RoleConfig) -> None:
    answer = get(ep, res(coap_device, "observable", "/sensors"), extra=[(ACCEPT, uint(41))])
    assert answer.code == NOT_ACCEPTABLE, answer.code_text


@case("R197-COAP-10", "Accept 112 gives SenML CBOR with integer labels",
      clauses=["RFC 8428 6", "RFC 7252 5.10.4"], theme="energy-efficiency", pics=["senml.cbor", "coap.accept"])  # fmt: skip
def test_cbor(ep: Endpoint, coap_device: RoleConfig) -> None:
    answer = get(ep, res(coap_device, "observable", "/sensors"), extra=[(ACCEPT, uint(112))])
    assert answer.option(CONTENT_FORMAT) == uint(112)
    pack = cbor2.loads(answer.payload)
    assert isinstance(pack, list)
    assert all(isinstance(k, int) for record in pack for k in record)


@case("R197-COAP-11", "Observe registration is confirmed and followed by a notification",
      clauses=["RFC 7641 3.1", "RFC 7641 4.2", "RFC 7641 3.4"], theme="energy-efficiency", pics=["coap.observe"])  # fmt: skip
def test_observe(ep: Endpoint, coap_device: RoleConfig) -> None:
    path = res(coap_device, "observable", "/sensors")
    ep.sock.settimeout(15)
    first = get(ep, path, token=b"\x0b", extra=[(OBSERVE, b"")])
    assert first.option(OBSERVE) is not None, "no Observe option: not registered"
    try:
        notification = ep.receive()
    except TimeoutError:
        raise AssertionError("no notification within 15 s") from None
    if notification.type == CON:
        ep.send(Message(ACK, 0, notification.mid))
    assert notification.token == b"\x0b"
    assert notification.option(OBSERVE) is not None
    first_seq = int.from_bytes(first.option(OBSERVE) or b"", "big")
    assert int.from_bytes(notification.option(OBSERVE) or b"", "big") != first_seq
    ep.request(Message(CON, GET, ep.next_mid(), b"\x0b", [*path_options(path), (OBSERVE, uint(1))]))


@case("R197-COAP-12", "An observation cancelled with RST gets no further notifications",
      clauses=["RFC 7641 3.6"], theme="energy-efficiency", pics=["coap.observe"])  # fmt: skip
def test_observe_cancel(ep: Endpoint, coap_device: RoleConfig) -> None:
    path = res(coap_device, "observable", "/sensors")
    ep.sock.settimeout(15)
    get(ep, path, token=b"\x0c", extra=[(OBSERVE, b"")])
    try:
        notification = ep.receive()
    except TimeoutError:
        raise Inconclusive("no notification arrived to reject") from None
    ep.send(Message(RST, 0, notification.mid))  # reject it: cancels the observation
    ep.sock.settimeout(4)
    late = []
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        try:
            late.append(ep.receive())
        except OSError:
            break
    assert not [m for m in late if m.token == b"\x0c" and m.type != RST], "notified after RST"


@case("R197-COAP-13", "A large resource is transferred in Block2 blocks that reassemble",
      clauses=["RFC 7959 2.2", "RFC 7959 2.4"], theme="interoperability", pics=["coap.block2"])  # fmt: skip
def test_block2(ep: Endpoint, coap_device: RoleConfig) -> None:
    path = res(coap_device, "large", "/log")
    body, num = b"", 0
    while True:
        answer = get(ep, path, extra=[(BLOCK2, uint((num << 4) | 2))])  # 64-byte blocks
        block = answer.option(BLOCK2)
        assert block is not None, f"no Block2 option in block {num}"
        value = int.from_bytes(block, "big")
        assert value >> 4 == num
        body += answer.payload
        if not value & 0x08:
            break
        num += 1
        assert num < 1000
    assert num >= 1, "the resource fit in one block"
    assert len(body) > 64


@case("R197-COAP-14", "/.well-known/core?rt= returns only links with that resource type",
      clauses=["RFC 6690 4.1"], theme="interoperability", pics=["coap.link-format"])  # fmt: skip
def test_wkc_filter(ep: Endpoint) -> None:
    everything = get(ep, "/.well-known/core").payload.decode()
    rts = sorted(
        {
            part.split("=", 1)[1].strip('"')
            for link in everything.split(",")
            for part in link.split(";")
            if part.startswith("rt=")
        }
    )
    if not rts:
        raise Inconclusive("no link with an rt attribute to filter on")
    answer = get(ep, "/.well-known/core", extra=[(URI_QUERY, f"rt={rts[0]}".encode())])
    links = [link for link in answer.payload.decode().split(",") if link]
    assert links, "the filter returned nothing"
    assert all(rts[0] in link for link in links), links


@case("R197-COAP-15", "The device answers on an IPv6 literal and its datagrams fit the IPv6 minimum MTU",
      clauses=["RFC 8200 5", "RFC 7252 4.6", "ITU-T Y.4200 8.2"], theme="ipv6")  # fmt: skip
def test_ipv6_mtu(ep: Endpoint, coap_device: RoleConfig, figures: dict[str, float]) -> None:
    assert ep.sock.family == socket.AF_INET6, f"{coap_device.url} is not an IPv6 literal"
    sizes = []
    for path in ("/.well-known/core", res(coap_device, "observable", "/sensors")):
        ep.send(Message(CON, GET, ep.next_mid(), b"\x01", path_options(path)))
        data, _ = ep.sock.recvfrom(65535)
        sizes.append(len(data))
    figures["largest_datagram_bytes"] = max(sizes)
    assert max(sizes) + 48 <= 1280, (
        f"a {max(sizes)}-byte CoAP message exceeds 1280 bytes with IPv6+UDP"
    )
