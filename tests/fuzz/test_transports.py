"""What the gateway's transports parse before the normalizer: MQTT topics and content types
(gateway/transports/mqtt.py), CoAP pushes' path and Content-Format (gateway/transports/coap.py),
RFC 6690 link-format from the resource directory.  Every message ends as readings or as a
RejectedPayload (an MQTT reason code, a CoAP 4.xx), never as another exception."""

from __future__ import annotations

import asyncio
import json

import aiocoap
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.errors import RejectedPayload
from gateway.normalizer import FORMATS, MEDIA_TYPES, Inbound, format_for_media_type, normalize
from gateway.profiles import Profiles
from gateway.transports.coap import CoapObserver, _UpResource, parse_link_format
from gateway.transports.mqtt import inbound_from
from tests.fuzz.strategies import DEVICES, mostly, plausible_packs

PROFILES = Profiles()
LEVEL = st.one_of(st.sampled_from(["city", "up", "", "+", "#"]), st.text(max_size=6))
PAYLOADS = st.one_of(
    plausible_packs().map(lambda p: json.dumps(p, default=bytes.hex).encode()),
    st.binary(max_size=30),
)
CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from([*MEDIA_TYPES, "application/senml+json; charset=utf-8", "TEXT/CSV", ";", ""]),
    st.text(max_size=12),
)


@st.composite
def topics(draw: st.DrawFn) -> str:
    device = draw(mostly(st.sampled_from(DEVICES), st.text(max_size=90)))
    fmt = draw(mostly(st.sampled_from(FORMATS), st.text(max_size=10)))
    kind = device.split("-")[0]
    levels = ["city", kind, device, "up", fmt]
    if draw(st.integers(0, 9)) == 5:
        levels.insert(draw(st.integers(0, 5)), draw(LEVEL))
    return "/".join(levels) if draw(st.integers(0, 9)) != 5 else draw(st.text(max_size=30))


def _handle(inbound: Inbound) -> RejectedPayload | None:
    try:
        normalize(inbound, PROFILES)
    except RejectedPayload as exc:
        rejected = exc
    else:
        return None
    assert 0x80 <= rejected.mqtt_reason_code <= 0xA2  # an MQTT 5 error reason code (2.4)
    assert rejected.coap_code[0] == 4  # a client error (RFC 7252 5.9.2)
    return rejected


@given(topic=topics(), payload=PAYLOADS, content_type=CONTENT_TYPES)
@example(topic="city/weather/" + "w" * 300 + "/up/senml-json", payload=b"[]", content_type=None)
def test_mqtt_messages_become_readings_or_reason_codes(
    topic: str, payload: bytes, content_type: str | None
) -> None:
    inbound = inbound_from(topic, payload, content_type, 1.8e9)
    if inbound is not None:
        _handle(inbound)


@given(media=CONTENT_TYPES)
def test_media_types_map_to_a_format_or_none(media: str | None) -> None:
    assert format_for_media_type(media) in (None, *FORMATS)


async def _no_wait(inbound: Inbound) -> RejectedPayload | None:
    return _handle(inbound)


@given(
    path=st.lists(mostly(st.sampled_from(DEVICES), st.text(max_size=90)), max_size=3),
    content_format=st.one_of(st.none(), st.sampled_from([0, 50, 110, 112, 60, 65535])),
    payload=PAYLOADS,
)
def test_coap_pushes_answer_2_04_or_4_xx(
    path: list[str], content_format: int | None, payload: bytes
) -> None:
    request = aiocoap.Message(code=aiocoap.POST, payload=payload, uri_path=path)
    if content_format is not None:
        request.opt.content_format = content_format
    answer = asyncio.run(_UpResource(_no_wait).render_post(request))
    # 2.04 Changed, or a client error (RFC 7252 5.9.2): never 5.00 for what a device sent.
    assert answer.code == aiocoap.CHANGED or 128 <= answer.code < 160, answer


@given(
    text=st.one_of(
        st.lists(
            st.tuples(
                st.text(alphabet='/abc<>;=,"', max_size=8),
                st.lists(st.text(alphabet='abc=";,', max_size=6), max_size=3),
            ).map(lambda link: f"<{link[0]}>" + "".join(";" + a for a in link[1])),
            max_size=4,
        ).map(",".join),
        st.text(max_size=40),
    )
)
@example(text='</up/a>;ep="weather-1";rt=core.rd-ep,<x')
def test_link_format_parses_to_links(text: str) -> None:
    for target, attrs in parse_link_format(text):
        assert isinstance(target, str)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in attrs.items())


LINKS = st.lists(
    st.tuples(
        st.sampled_from(["/rd-lookup/ep", "coap://[::1]:5700", "", "/x"]),
        st.lists(st.sampled_from(['ep="streetlight-1"', "ep=noise-7", 'base="coap://[::1]:5701"',
                                  "base=http://x", "rt=core.rd-lookup-ep", "ep", ""]), max_size=3),
    ).map(lambda link: f"<{link[0]}>" + "".join(";" + a for a in link[1])),
    max_size=3,
).map(",".join)  # fmt: skip


@given(
    answers=st.lists(
        st.one_of(LINKS.map(str.encode), st.binary(max_size=20), st.just(b"</ep>;ep=\xff")),
        min_size=2,
        max_size=2,
    )
)
@example(answers=[b"</rd-lookup/ep>;rt=core.rd-lookup-ep", b"<coap://[::1]:5700>;ep=\xfe\xff"])
def test_directory_answers_give_endpoints_or_an_aiocoap_error(answers: list[bytes]) -> None:
    """CoapObserver._endpoints on whatever a resource directory answers: endpoints, or an
    aiocoap error that the scan loop logs and retries (a UnicodeDecodeError ended it)."""
    observer = CoapObserver(rd_url="coap://[::1]:5683", handler=_no_wait)
    replies = iter(answers)

    async def get(uri: str) -> aiocoap.Message:
        return aiocoap.Message(code=aiocoap.CONTENT, payload=next(replies))

    observer._get = get  # type: ignore[method-assign]  # the directory, answering
    try:
        found = asyncio.run(observer._endpoints())
    except aiocoap.error.Error:
        return
    for device, base in found:
        assert device
        assert base.startswith("coap://")
