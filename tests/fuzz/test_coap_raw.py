"""CoAP message decoding (conformance/coap_raw.py, RFC 7252 3) from arbitrary datagrams: a
message or MalformedCoap, never IndexError; encode -> decode gives the message back.

conformance/mqtt_client.py has no decoder of its own (it drives paho-mqtt), so there is
nothing of it to fuzz here."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from conformance import coap_raw
from conformance.coap_raw import MalformedCoap, Message

# Option numbers around the delta boundaries (RFC 7252 3.1: 13 and 269 take extension bytes).
OPTION_NUMBERS = st.one_of(
    st.integers(0, 300), st.sampled_from([12, 13, 14, 268, 269, 270, 65535]), st.integers(0, 65535)
)
OPTIONS = st.lists(
    st.tuples(
        OPTION_NUMBERS, st.one_of(st.binary(max_size=20), st.binary(min_size=260, max_size=300))
    ),
    max_size=5,
)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    code = draw(st.integers(1, 255))  # 0.00 (Empty) carries nothing after the header (4.1)
    return Message(
        type=draw(st.integers(0, 3)),
        code=code,
        mid=draw(st.integers(0, 65535)),
        token=draw(st.binary(max_size=8)),
        options=draw(OPTIONS),
        payload=draw(st.binary(max_size=40)),
    )


@given(msg=messages())
def test_encode_then_decode_gives_the_message(msg: Message) -> None:
    got = coap_raw.decode(coap_raw.encode(msg))
    assert (got.type, got.code, got.mid, got.token, got.payload) == (
        msg.type, msg.code, msg.mid, msg.token, msg.payload
    )  # fmt: skip
    # Options come back in number order; options of one number keep their order (RFC 7252 5.4.5).
    assert got.options == sorted(msg.options, key=lambda o: o[0])


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """An encoded message with bytes changed, cut or added: deep in the option parser."""
    data = bytearray(coap_raw.encode(draw(messages())))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        what = draw(st.integers(0, 2))
        if what == 0 and at < len(data):
            data[at] = draw(st.sampled_from([0xD0, 0xE0, 0xF0, 0x0D, 0x0E, 0x0F, 0xFF, 0x00]))
        elif what == 1:
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=3))
    return bytes(data)


@given(data=st.one_of(mangled(), st.binary(max_size=60)))
@example(data=b"\x40\x01\x00\x01\xd0")  # a delta of 13 without its extension byte
@example(data=b"\x40\x01\x00\x01\xe1\xff\xff")  # option number past 65535
@example(data=b"\x40\x01\x00\x01\xff")  # a payload marker and no payload
@example(data=b"\x48\x01\x00\x01")  # an 8-byte token that is not there
def test_any_datagram_is_a_message_or_malformed(data: bytes) -> None:
    try:
        msg = coap_raw.decode(data)
    except MalformedCoap as exc:
        fault = exc
    else:
        assert all(0 <= n <= 65535 for n, _ in msg.options)
        assert len(msg.token) <= 8
        assert msg.code_text.count(".") == 1
        return
    assert fault.data == data
    assert fault.offset is None or 0 <= fault.offset <= len(data)
