"""The devices' own decoders of what the gateway sends them: MQTT cmd payloads (JSON objects,
docs/wire-formats.md) and CoAP PUTs to /actuators/<name> (text, SenML JSON or CBOR).  Any
payload is a command, ignored, or 4.00/4.15; never an exception that ends a device's loop
(an MQTT command task) or a 5.00."""

from __future__ import annotations

import asyncio
import json

import aiocoap
import cbor2
from hypothesis import example, given
from hypothesis import strategies as st

from devices.coap import Actuator, rd_path
from devices.device import SimDevice
from devices.mqtt import command_of
from devices.scenario import Scenario
from tests.fuzz.strategies import SCALARS, json_values

DEEP = b"[" * 5000 + b"]" * 5000  # past json's recursion limit: a RecursionError before


def _streetlight() -> SimDevice:
    spec = Scenario.model_validate(
        {"groups": [{"kind": "streetlight", "count": 1, "protocol": "coap", "interval": 1}]}
    ).devices()[0]
    return SimDevice(spec)


COMMANDS = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "powerState": st.one_of(st.sampled_from(["on", "off", "dim"]), SCALARS),
            "dimmingLevel": st.one_of(st.floats(-10, 200), SCALARS),
        },
    ),
    json_values(leaves=6),
)


@given(payload=st.one_of(COMMANDS.map(lambda c: json.dumps(c, default=bytes.hex).encode()),
                         st.binary(max_size=30)))  # fmt: skip
@example(payload=DEEP)
def test_mqtt_commands_parse_to_an_object_or_none(payload: bytes) -> None:
    command = command_of(payload)
    if command is not None:
        assert isinstance(command, dict)
        _streetlight().state.apply_command(command)


def _senml(value: object, cbor: bool) -> bytes:
    if cbor:
        return cbor2.dumps([{2: value}] if not isinstance(value, str) else [{3: value}])
    key = "vs" if isinstance(value, str) else "v"
    return json.dumps([{key: value}], default=bytes.hex).encode()


@given(
    name=st.sampled_from(["powerState", "dimmingLevel"]),
    content_format=st.sampled_from([None, 0, 110, 112, 50, 60]),
    payload=st.one_of(
        st.tuples(st.one_of(st.sampled_from(["on", "off"]), st.floats(-10, 200), SCALARS),
                  st.booleans()).map(lambda p: _senml(*p)),
        st.sampled_from([b"on", b"off", b"50", b"nan", b"inf", b"1e999", b"\xff", b""]),
        json_values(leaves=4).map(lambda v: json.dumps(v, default=bytes.hex).encode()),
        st.binary(max_size=20),
    ),
)  # fmt: skip
@example(name="dimmingLevel", content_format=110, payload=DEEP)  # RecursionError: 5.00
@example(name="powerState", content_format=110, payload=b"{}")  # KeyError {}[0]: 5.00
@example(name="powerState", content_format=112, payload=b"\x81" * 5000 + b"\xa0")
def test_actuator_puts_answer_2_04_or_4_xx(
    name: str, content_format: int | None, payload: bytes
) -> None:
    request = aiocoap.Message(code=aiocoap.PUT, payload=payload)
    if content_format is not None:
        request.opt.content_format = content_format
    resource = Actuator(_streetlight(), name, lambda: None)
    answer = asyncio.run(resource.render_put(request))
    assert answer.code == aiocoap.CHANGED or 128 <= answer.code < 160, answer


@given(
    payload=st.one_of(
        st.lists(st.sampled_from(["</rd>;rt=core.rd", "<", ">", "</x>", ";ct=40", ","]),
                 max_size=4).map(lambda p: "".join(p).encode()),
        st.binary(max_size=20),
    )
)  # fmt: skip
@example(payload=b"<")  # a '<' without its '>': ValueError
@example(payload=b"</rd>\xff")  # not UTF-8: UnicodeDecodeError
def test_directory_answers_give_a_registration_path_or_an_aiocoap_error(payload: bytes) -> None:
    """What CoapDevice._register's loop catches (aiocoap errors, OSError) is all that comes
    out of reading the directory's /.well-known/core answer."""
    try:
        path = rd_path(payload)
    except aiocoap.error.Error:
        return
    assert f"<{path}>" in payload.decode()
