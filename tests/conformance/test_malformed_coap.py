"""Strict CoAP decoding in the suite: a malformed answer is the IUT's fail, with the reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiocoap.numbers.codes import Code

from conformance.coap_raw import (
    ACK,
    CON,
    CONTENT_FORMAT,
    GET,
    URI_PATH,
    CoapCode,
    Endpoint,
    MalformedAnswer,
    MalformedCoap,
    Message,
    decode,
    encode,
)
from tests.conformance.test_catches_faults import FakeCoapServer, run_suite

HEADER = bytes([0x40 | ACK << 4, 0x45, 0x12, 0x34])  # version 1, ACK, 2.05, MID 0x1234, no token


@pytest.mark.parametrize("size", [0, 1, 12, 13, 14, 268, 269, 270, 1024])
def test_options_and_payloads_round_trip_across_the_extension_boundaries(size: int) -> None:
    """RFC 7252 3.1: deltas and lengths of 0-12, 13-268 (one extra byte) and 269+ (two)."""
    value = bytes(range(256)) * (size // 256) + b"v" * (size % 256)
    msg = Message(CON, GET, 7, b"\x01\x02", [(URI_PATH, b"a"), (URI_PATH + size, value)], b"p")
    assert decode(encode(msg)) == msg


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (b"\x60\x45\x12", "shorter than the 4-byte header"),
        (b"\xa0\x45\x12\x34", "version 2"),
        (b"\x20\x45\x12\x34", "version 0"),
        (bytes([0x69]) + HEADER[1:] + b"\x00" * 9, "token length 9 is reserved"),
        (bytes([0x6C]) + HEADER[1:] + b"\x00" * 12, "token length 12 is reserved"),
        (bytes([0x6F]) + HEADER[1:] + b"\x00" * 15, "token length 15 is reserved"),
        (bytes([0x64]) + HEADER[1:] + b"\x00\x01", "4-byte token runs past the end"),
        (HEADER + b"\xf1a", "option delta nibble 15 is reserved for the payload marker"),
        (HEADER + b"\xcf", "option length nibble 15 is reserved"),
        (HEADER + b"\xd1", "extended option delta is cut short"),
        (HEADER + b"\xe1\x00", "extended option delta is cut short"),
        (HEADER + b"\x1d", "extended option length is cut short"),
        (HEADER + b"\x1e\x01", "extended option length is cut short"),
        (HEADER + b"\xc3ab", "option 12 of 3 bytes runs past the end"),
        (HEADER + b"\x1d\x05abc", "option 1 of 18 bytes runs past the end"),
        (HEADER + b"\xe0\xff\xff", "option number 65804 above 65535"),
        (HEADER + b"\xff", "a payload marker with no payload"),
        (HEADER + b"\xc0\xff", "a payload marker with no payload"),
        (b"\x60\x00\x12\x34\xff\x01", "an Empty message (0.00) with bytes after the header"),
        (b"\x61\x00\x12\x34\x01", "an Empty message (0.00) with bytes after the header"),
    ],
)
def test_message_format_errors_raise_malformed_coap_with_the_reason(
    datagram: bytes, reason: str
) -> None:
    """RFC 7252 3 and 3.1; the exception keeps the datagram and shows it in hex."""
    with pytest.raises(MalformedCoap) as caught:
        decode(datagram)
    assert reason in caught.value.reason
    assert caught.value.data == datagram
    assert datagram.hex() in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_payload_marker_is_not_an_option() -> None:
    """0xFF ends the options (delta 15 and length 15 in one byte is the marker, RFC 7252 3.1)."""
    msg = decode(HEADER + b"\xc1\x28\xff\x00")
    assert (msg.options, msg.payload) == ([(CONTENT_FORMAT, b"\x28")], b"\x00")


def test_response_codes_are_an_int_enum_written_as_the_rfc_writes_them() -> None:
    """Each code is aiocoap's of the same number and dotted form (an independent table)."""
    for code in CoapCode:
        assert str(code) == f"{code}" == Code(int(code)).dotted
        assert code.name == Code(int(code)).name.upper()  # aiocoap writes iPATCH
    assert CoapCode.CONTENT == 0x45
    assert f"{CoapCode.NOT_FOUND:#04x}" == "0x84"
    assert decode(HEADER).code is CoapCode.CONTENT
    unnamed = decode(b"\x60\x5e\x00\x01")  # 2.30: no RFC names it
    assert (unnamed.code, type(unnamed.code), unnamed.code_text) == (0x5E, int, "2.30")


class MalformedDevice(FakeCoapServer):
    """A 'CoAP device' that answers /.well-known/core with option length nibble 15 and every
    other request with token length 12 (both reserved, RFC 7252 3 and 3.1)."""

    def answer(self, request: Message) -> bytes:
        head = bytes([0x40 | ACK << 4, 0x45]) + request.mid.to_bytes(2, "big")
        path = [v for n, v in request.options if n == URI_PATH]
        if path == [b".well-known", b"core"]:
            return bytes([head[0] | len(request.token)]) + head[1:] + request.token + b"\xcf"
        return bytes([head[0] | 12]) + head[1:] + b"\x00" * 12


@pytest.fixture
def malformed_device() -> Iterator[MalformedDevice]:
    device = MalformedDevice()
    yield device
    device.close()


def test_the_endpoint_reports_a_malformed_answer_as_an_assertion(
    malformed_device: MalformedDevice,
) -> None:
    """What the cases read goes through Endpoint.receive: a fail, not an error."""
    ep = Endpoint(f"coap://[::1]:{malformed_device.port}")
    try:
        with pytest.raises(MalformedAnswer, match="token length 12 is reserved") as caught:
            ep.request(Message(CON, GET, ep.next_mid(), b"\x01", [(URI_PATH, b"x")]))
    finally:
        ep.close()
    assert isinstance(caught.value, AssertionError)
    assert isinstance(caught.value.__cause__, MalformedCoap)


@pytest.mark.slow
def test_the_suite_fails_a_device_that_answers_malformed_datagrams(
    tmp_path: Path, malformed_device: MalformedDevice
) -> None:
    """Nibble 15 -> R197-COAP-01 fail, token length 12 -> R197-COAP-04/06 fail, each with the
    reason in the report, none an error."""
    iut = {"implementation": "malformed CoAP",
           "roles": {"coap-device": {"url": f"coap://[::1]:{malformed_device.port}"}}}  # fmt: skip
    verdicts = run_suite(tmp_path, iut, "test_wkc or test_token_echo or test_not_found")
    details: dict[str, set[str]] = {}
    for result in json.loads((tmp_path / "report" / "report.json").read_text())["results"]:
        details.setdefault(result["id"], set()).add(f"{result['verdict']}: {result['detail']}")
    assert verdicts["R197-COAP-01"] == "fail"
    assert verdicts["R197-COAP-04"] == "fail"
    assert verdicts["R197-COAP-06"] == "fail"
    assert all(d.startswith("fail: ") for found in details.values() for d in found), details
    assert any("option length nibble 15 is reserved" in d for d in details["R197-COAP-01"])
    assert all("token length 12 is reserved" in d for d in details["R197-COAP-04"])
    assert all("token length 12 is reserved" in d for d in details["R197-COAP-06"])
