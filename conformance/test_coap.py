"""R197-COAP: a CoAP device seen on the wire (RFC 7252, RFC 7641, RFC 7959, RFC 6690)."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator

import pytest

from conformance.coap_raw import (
    ACCEPT,
    ACK,
    BLOCK1,
    BLOCK2,
    CON,
    CONTENT_FORMAT,
    DELETE,
    ETAG,
    GET,
    NON,
    OBSERVE,
    PUT,
    RST,
    URI_PATH,
    URI_QUERY,
    CoapCode,
    Endpoint,
    Message,
    path_options,
    uint,
)
from conformance.iut import RoleConfig
from conformance.model import Inconclusive, case, time_left
from conformance.observed import iut_cbor

CONTENT, NOT_FOUND, BAD_OPTION, NOT_ACCEPTABLE = (
    CoapCode.CONTENT, CoapCode.NOT_FOUND, CoapCode.BAD_OPTION, CoapCode.NOT_ACCEPTABLE
)  # fmt: skip
NOT_ALLOWED, UNSUPPORTED_FORMAT = CoapCode.METHOD_NOT_ALLOWED, CoapCode.UNSUPPORTED_CONTENT_FORMAT
VALID, CHANGED, CONTINUE = CoapCode.VALID, CoapCode.CHANGED, CoapCode.CONTINUE


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
      verifies=["RFC6690-4", "RFC7252-7.2"], theme="interoperability", pics=["coap.link-format"])  # fmt: skip
def test_wkc(ep: Endpoint) -> None:
    answer = get(ep, "/.well-known/core")
    assert answer.code == CONTENT, answer.code_text
    assert answer.option(CONTENT_FORMAT) == uint(40), "Content-Format is not 40"
    assert answer.payload.startswith(b"<"), answer.payload[:60]


@case("R197-COAP-02", "A CON GET is answered by a piggybacked ACK with the same Message ID",
      verifies=["RFC7252-5.2.1", "RFC7252-4.2"], theme="interoperability")  # fmt: skip
def test_con_piggybacked(ep: Endpoint, coap_device: RoleConfig) -> None:
    msg = Message(
        CON, GET, ep.next_mid(), b"\x07", path_options(res(coap_device, "observable", "/sensors"))
    )
    answer = ep.request(msg)
    assert answer.type == ACK, f"type {answer.type}"
    assert answer.mid == msg.mid
    assert answer.code == CONTENT, answer.code_text


@case("R197-COAP-03", "A NON GET is answered by a NON response",
      verifies=["RFC7252-5.2.3"], theme="energy-efficiency")  # fmt: skip
def test_non(ep: Endpoint, coap_device: RoleConfig) -> None:
    answer = get(ep, res(coap_device, "observable", "/sensors"), mtype=NON)
    assert answer.type == NON, f"type {answer.type}"
    assert answer.code == CONTENT, answer.code_text


@pytest.mark.parametrize("length", [0, 1, 4, 8])
@case("R197-COAP-04", "Tokens of 0 to 8 bytes are echoed unchanged",
      verifies=["RFC7252-5.3.1", "RFC7252-5.3.2"], theme="interoperability")  # fmt: skip
def test_token_echo(ep: Endpoint, coap_device: RoleConfig, length: int) -> None:
    token = bytes(range(1, length + 1))
    answer = get(ep, res(coap_device, "observable", "/sensors"), token=token)
    assert answer.token == token, f"sent {token.hex()}, got {answer.token.hex()}"


@case("R197-COAP-05", "An unrecognized critical option is rejected with 4.02 Bad Option",
      verifies=["RFC7252-5.4.1"], theme="interoperability")  # fmt: skip
def test_bad_option(ep: Endpoint, coap_device: RoleConfig) -> None:
    answer = get(ep, res(coap_device, "observable", "/sensors"), extra=[(65001, b"x")])
    assert answer.code == BAD_OPTION, answer.code_text


@case("R197-COAP-06", "A GET of an unknown path is 4.04",
      verifies=["RFC7252-5.9.2.5"], theme="interoperability")  # fmt: skip
def test_not_found(ep: Endpoint) -> None:
    answer = get(ep, "/r197-no-such-resource")
    assert answer.code == NOT_FOUND, answer.code_text


@case("R197-COAP-07", "A DELETE on a read-only sensor resource is 4.05",
      verifies=["RFC7252-5.9.2.6"], theme="interoperability")  # fmt: skip
def test_method_not_allowed(ep: Endpoint, coap_device: RoleConfig) -> None:
    path = res(coap_device, "readonly", res(coap_device, "observable", "/sensors"))
    answer = ep.request(Message(CON, DELETE, ep.next_mid(), b"\x02", path_options(path)))
    assert answer.code == NOT_ALLOWED, answer.code_text


@case("R197-COAP-08", "An empty CON (CoAP ping) is answered with RST",
      verifies=["RFC7252-4.3", "RFC7252-1.2"], theme="resilience")  # fmt: skip
def test_ping(ep: Endpoint) -> None:
    msg = Message(CON, 0, ep.next_mid())
    answer = ep.request(msg)
    assert answer.type == RST, f"type {answer.type}"
    assert answer.mid == msg.mid


@case("R197-COAP-09", "An Accept the resource cannot serve is 4.06",
      verifies=["RFC7252-5.10.4"], theme="interoperability", pics=["coap.accept"])  # fmt: skip
def test_not_acceptable(ep: Endpoint, coap_device: RoleConfig) -> None:
    answer = get(ep, res(coap_device, "observable", "/sensors"), extra=[(ACCEPT, uint(41))])
    assert answer.code == NOT_ACCEPTABLE, answer.code_text


@case("R197-COAP-10", "Accept 112 gives SenML CBOR with integer labels",
      verifies=["RFC8428-6", "RFC7252-5.10.4"], theme="energy-efficiency", pics=["senml.cbor", "coap.accept"])  # fmt: skip
def test_cbor(ep: Endpoint, coap_device: RoleConfig) -> None:
    answer = get(ep, res(coap_device, "observable", "/sensors"), extra=[(ACCEPT, uint(112))])
    assert answer.option(CONTENT_FORMAT) == uint(112)
    pack = iut_cbor(answer.payload, "the Accept 112 answer")
    assert isinstance(pack, list)
    assert all(isinstance(k, int) for record in pack for k in record)


@case("R197-COAP-11", "Observe registration is confirmed and followed by a notification",
      verifies=["RFC7641-3.1", "RFC7641-4.2", "RFC7641-3.4"], theme="energy-efficiency", pics=["coap.observe"])  # fmt: skip
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
      verifies=["RFC7641-3.6"], theme="energy-efficiency", pics=["coap.observe"])  # fmt: skip
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
      verifies=["RFC7959-2.2", "RFC7959-2.4"], theme="interoperability", pics=["coap.block2"])  # fmt: skip
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
      verifies=["RFC6690-4.1"], theme="interoperability", pics=["coap.link-format"])  # fmt: skip
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
      verifies=["RFC8200-5", "RFC7252-4.6", "Y4200-8.2"], theme="ipv6")  # fmt: skip
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


def links_of(answer: Message) -> list[str]:
    return [link for link in answer.payload.decode().split(",") if link]


def wkc_query(ep: Endpoint, *queries: str) -> list[str]:
    answer = get(ep, "/.well-known/core", extra=[(URI_QUERY, q.encode()) for q in queries])
    assert answer.code == CONTENT, answer.code_text
    return links_of(answer)


@case("R197-COAP-16", "/.well-known/core filters on if= and on href= (exact and prefix*)",
      verifies=["RFC6690-4.1", "RFC6690-3.1"], theme="interoperability", pics=["coap.link-format"])  # fmt: skip
def test_wkc_if_href(ep: Endpoint) -> None:
    everything = wkc_query(ep)
    hrefs = [link[link.index("<") + 1 : link.index(">")] for link in everything]
    target = hrefs[0]
    only = wkc_query(ep, f"href={target}")
    assert [link.split(">")[0] + ">" for link in only] == [f"<{target}>"], only
    prefix = target[: max(2, len(target) // 2)]
    by_prefix = wkc_query(ep, f"href={prefix}*")
    assert by_prefix, f"href={prefix}* matched nothing"
    assert all(link.startswith(f"<{prefix}") for link in by_prefix), by_prefix
    ifs = sorted({p.split("=", 1)[1].strip('"') for link in everything for p in link.split(";")
                  if p.startswith("if=")})  # fmt: skip
    if not ifs:
        raise Inconclusive("no link carries an if= attribute to filter on")
    by_if = wkc_query(ep, f"if={ifs[0]}")
    assert by_if, f"if={ifs[0]} matched nothing"
    assert all(f"if={ifs[0]}" in link or f'if="{ifs[0]}' in link for link in by_if), by_if


@case("R197-COAP-17", "Two Uri-Query filters both apply: the links match rt= and if=",
      verifies=["RFC7252-5.10.1", "RFC7252-6.5", "RFC9176-7"], theme="interoperability",
      pics=["coap.link-format", "coap.multi-filter"])  # fmt: skip
def test_wkc_two_filters(ep: Endpoint) -> None:
    everything = wkc_query(ep)

    def attr(link: str, key: str) -> str | None:
        found = [p.split("=", 1)[1].strip('"') for p in link.split(";") if p.startswith(f"{key}=")]
        return found[0] if found else None

    pairs = [(attr(link, "rt"), attr(link, "if")) for link in everything]
    pairs = [(rt, if_) for rt, if_ in pairs if rt and if_]
    if not pairs:
        raise Inconclusive("no link carries both rt= and if=")
    rt, if_ = pairs[0]
    # A second interface that the rt= link does not have: the intersection must then be empty.
    other = next((i for _, i in pairs if i != if_), None)
    both = wkc_query(ep, f"rt={rt}", f"if={if_}")
    assert both, f"rt={rt}&if={if_} matched nothing"
    assert all(attr(link, "rt") == rt and attr(link, "if") == if_ for link in both), both
    if other is not None:
        none = wkc_query(ep, f"rt={rt}", f"if={other}")
        assert none == [], f"rt={rt}&if={other} should match nothing, got {none}"


@case("R197-COAP-18", "Each Uri-Path option is one segment: a '/' inside one option is not a separator",
      verifies=["RFC7252-5.10.1", "RFC7252-6.4", "RFC7252-6.5"], theme="interoperability")  # fmt: skip
def test_uri_path_segments(ep: Endpoint, coap_device: RoleConfig) -> None:
    # Every CoAP server with link-format has a two-segment path: /.well-known/core.
    path = res(coap_device, "nested", "/.well-known/core")
    segments = [p for p in path.strip("/").split("/") if p]
    if len(segments) < 2:
        raise Inconclusive(f"{path} has one segment; name a nested resource in the PIXIT")
    right = get(ep, path)
    assert right.code == CONTENT, f"{path} in {len(segments)} options: {right.code_text}"
    joined = get(ep, "", extra=[(URI_PATH, "/".join(segments).encode())])
    assert joined.code == NOT_FOUND, f"one option {'/'.join(segments)!r}: {joined.code_text}"


@case("R197-COAP-19", "A PUT in a Content-Format the resource does not take is 4.15",
      verifies=["RFC7252-5.9.2.9", "RFC7252-5.10.3"], theme="interoperability",
      pics=["coap.actuator", "coap.format-check"])  # fmt: skip
def test_unsupported_content_format(ep: Endpoint, coap_device: RoleConfig) -> None:
    path = res(coap_device, "actuator", "/actuators/powerState")
    msg = Message(CON, PUT, ep.next_mid(), b"\x09",
                  [*path_options(path), (CONTENT_FORMAT, uint(41))], b"<on/>")  # fmt: skip
    answer = ep.request(msg)
    assert answer.code == UNSUPPORTED_FORMAT, answer.code_text


@case("R197-COAP-20", "A GET carrying the current ETag is 2.03 Valid, without payload",
      verifies=["RFC7252-5.10.6", "RFC7252-5.9.1.3"], theme="energy-efficiency",
      pics=["coap.etag"])  # fmt: skip
def test_etag_valid(ep: Endpoint, coap_device: RoleConfig) -> None:
    path = res(coap_device, "stable", res(coap_device, "actuator", "/actuators/powerState"))
    first = get(ep, path)
    assert first.code == CONTENT, first.code_text
    tag = first.option(ETAG)
    assert tag is not None, "the 2.05 response carries no ETag"
    again = get(ep, path, extra=[(ETAG, tag)])
    assert again.code == VALID, f"GET with the current ETag answered {again.code_text}"
    assert again.payload == b"", "2.03 Valid carried a payload"
    assert again.option(ETAG) == tag, "2.03 Valid does not name the ETag it validates"
    stale = get(ep, path, extra=[(ETAG, bytes(x ^ 0xFF for x in tag))])
    assert stale.code == CONTENT, f"GET with a stale ETag answered {stale.code_text}"
    assert stale.payload == first.payload


@case("R197-COAP-21", "A request body sent in Block1 blocks gets 2.31 Continue, then the final response",
      verifies=["RFC7959-2.3", "RFC7959-2.5", "RFC7959-2.9.1"], theme="interoperability",
      pics=["coap.block1", "coap.actuator"])  # fmt: skip
def test_block1(ep: Endpoint, coap_device: RoleConfig) -> None:
    path = res(coap_device, "actuator", "/actuators/powerState")
    body = b'[{"n":"powerState","vs":"on"}]'.ljust(150)  # trailing spaces: still valid JSON
    blocks = [body[i : i + 64] for i in range(0, len(body), 64)]
    answers = []
    for num, chunk in enumerate(blocks):
        more = 0x08 if num < len(blocks) - 1 else 0
        options = [*path_options(path), (CONTENT_FORMAT, uint(110)),
                   (BLOCK1, uint((num << 4) | more | 2))]  # fmt: skip
        answers.append(ep.request(Message(CON, PUT, ep.next_mid(), b"\x0e", options, chunk)))
    for num, answer in enumerate(answers[:-1]):
        assert answer.code == CONTINUE, f"block {num}: {answer.code_text}, expected 2.31"
        echoed = answer.option(BLOCK1)
        assert echoed is not None, f"block {num}: no Block1 option in the answer"
        assert int.from_bytes(echoed, "big") >> 4 == num, f"block {num}: Block1 not echoed"
    assert answers[-1].code == CHANGED, f"last block: {answers[-1].code_text}, expected 2.04"


@case("R197-COAP-22", "A retransmitted CON request (same Message ID) is acknowledged again, in the same exchange",
      verifies=["RFC7252-4.2", "RFC7252-4.5"], theme="resilience")  # fmt: skip
def test_duplicate_con(ep: Endpoint, coap_device: RoleConfig, figures: dict[str, float]) -> None:
    msg = Message(
        CON, GET, ep.next_mid(), b"\x0d", path_options(res(coap_device, "observable", "/sensors"))
    )
    first = ep.request(msg)
    time.sleep(1.2)  # as if our ACK was lost: the retransmission comes ACK_TIMEOUT later
    second = ep.request(msg)
    assert second.mid == msg.mid, f"answered with MID {second.mid}, sent {msg.mid}"
    assert second.type == first.type, f"first answer {first.type}, duplicate's {second.type}"
    assert second.token == first.token, "the duplicate's answer is not in the same exchange"
    assert second.code == first.code, f"{first.code_text}, then {second.code_text}"
    # RFC 7252 4.5: a server SHOULD process a request once, but MAY process an idempotent GET
    # again; so an answer from the exchange cache is reported, not required.
    figures["duplicate_answered_from_cache"] = float(second.payload == first.payload)


def observe_notifications(
    ep: Endpoint, path: str, token: bytes, count: int, *, ack: bool = True
) -> tuple[Message, list[Message]]:
    """The registration's answer and the first ``count`` notifications with ``token``.

    The wait is bounded in all (15 s, less near the case's deadline), not per datagram: a
    device sending notifications with other tokens would otherwise keep it going forever.
    Those are a fail (RFC 7252 5.3.2: a response echoes the request's token) with what came.
    """
    ep.sock.settimeout(time_left(15))
    first = get(ep, path, token=token, extra=[(OBSERVE, b"")])
    if first.option(OBSERVE) is None:
        raise Inconclusive("the registration was not accepted (no Observe option)")
    seen: list[Message] = []
    others: list[Message] = []
    window = time_left(15)
    until = time.monotonic() + window
    while len(seen) < count:
        left = until - time.monotonic()
        if left <= 0:
            break
        ep.sock.settimeout(left)
        try:
            note = ep.receive()
        except TimeoutError:
            break
        if note.token != token:
            others.append(note)
            continue
        if any(n.mid == note.mid for n in seen):
            continue
        if note.type == CON and ack:
            ep.send(Message(ACK, 0, note.mid))
        seen.append(note)
    if len(seen) < count:
        said = (
            f"{len(seen)} of {count} notifications with token {token.hex()} within {window:.0f} s"
        )
        if others:
            tokens = sorted({m.token.hex() or "<none>" for m in others})[:5]
            raise AssertionError(f"{said}, but {len(others)} with other tokens {tokens}")
        raise Inconclusive(said)
    return first, seen


@case("R197-COAP-23", "An unacknowledged CON notification is retransmitted with the same Message ID after ACK_TIMEOUT",
      verifies=["RFC7252-4.2", "RFC7252-4.8", "RFC7641-4.5"], theme="resilience", pics=["coap.observe"])  # fmt: skip
def test_retransmission(ep: Endpoint, coap_device: RoleConfig) -> None:
    path = res(coap_device, "observable", "/sensors")
    ep.sock.settimeout(20)
    get(ep, path, token=b"\x17", extra=[(OBSERVE, b"")])
    deadline = time.monotonic() + time_left(20)
    con = None
    while con is None and time.monotonic() < deadline:
        try:
            note = ep.receive()
        except TimeoutError:
            break
        if note.token != b"\x17":
            continue
        if note.type == CON:
            con = note
    if con is None:
        raise Inconclusive("the device sent no CON notification to leave unacknowledged")
    sent_at = time.monotonic()
    ep.sock.settimeout(6)
    again = None
    try:
        while again is None:
            note = ep.receive()
            if note.mid == con.mid:
                again = note
    except TimeoutError:
        pass
    waited = time.monotonic() - sent_at
    ep.send(Message(RST, 0, con.mid))  # cancels the observation (RFC 7641 3.6)
    assert again is not None, f"no retransmission of MID {con.mid} within 6 s"
    assert again.payload == con.payload, "the retransmission differs from the original"
    assert again.token == con.token
    # First timeout is ACK_TIMEOUT x [1, ACK_RANDOM_FACTOR] = 2 to 3 s (RFC 7252 4.8).
    assert 1.5 <= waited <= 4.0, f"retransmitted after {waited:.1f} s, expected 2 to 3 s"


@case("R197-COAP-24", "Notifications carry increasing Observe sequence numbers",
      verifies=["RFC7641-3.4", "RFC7641-4.4"], theme="interoperability", pics=["coap.observe"])  # fmt: skip
def test_notification_order(ep: Endpoint, coap_device: RoleConfig) -> None:
    path = res(coap_device, "observable", "/sensors")
    first, notes = observe_notifications(ep, path, b"\x18", 3)
    seqs = [int.from_bytes(m.option(OBSERVE) or b"", "big") for m in [first, *notes]]
    # Deregister (RFC 7641 3.6): an observation left behind on a closed socket makes the
    # device's later sends fail with ICMP errors, which aiocoap 0.4.17 can pin on another peer.
    get(ep, path, token=b"\x18", extra=[(OBSERVE, uint(1))])
    for earlier, later in itertools.pairwise(seqs):
        # RFC 7641 3.4: later if V1 < V2 and V2 - V1 < 2^23, or V1 > V2 and V1 - V2 > 2^23.
        newer = (earlier < later and later - earlier < 2**23) or (
            earlier > later and earlier - later > 2**23
        )
        assert newer, f"Observe sequence {seqs} is not increasing"


@case("R197-COAP-25", "An observation cancelled by a GET with Observe=1 gets no further notifications",
      verifies=["RFC7641-3.6"], theme="energy-efficiency", pics=["coap.observe"])  # fmt: skip
def test_observe_cancel_by_get(ep: Endpoint, coap_device: RoleConfig) -> None:
    path = res(coap_device, "observable", "/sensors")
    _, notes = observe_notifications(ep, path, b"\x19", 1)
    cancel = get(ep, path, token=b"\x19", extra=[(OBSERVE, uint(1))])
    assert cancel.code == CONTENT, cancel.code_text
    assert cancel.option(OBSERVE) is None, "the deregistration answer still carries Observe"
    known = {m.mid for m in notes}
    late = []
    ep.sock.settimeout(4)
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        try:
            note = ep.receive()
        except OSError:
            break
        if note.token == b"\x19" and note.mid not in known and note.type != ACK:
            late.append(note)
            if note.type == CON:
                ep.send(Message(ACK, 0, note.mid))
    assert not late, f"{len(late)} notifications after the deregistration"
