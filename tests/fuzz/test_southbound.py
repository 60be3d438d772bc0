"""Notifications the gateway's /notify receives (CIM 009 5.3.1) into device commands
(gateway/southbound.py): any body answers 204, 400 or 413, and a command names a device by
an id that is one MQTT topic level of a device id's characters (no '/', '+' or '#': a PUBLISH
to a wildcard topic is a protocol error, MQTT-3.3.2-2, and the broker drops the gateway)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.http import build_app
from gateway.metrics import Metrics
from gateway.normalizer import DEVICE_ID
from gateway.profiles import Profiles
from gateway.southbound import Actuators
from tests.fuzz.strategies import SCALARS, json_values, mostly

PROFILES = Profiles()
ID_TAILS = st.one_of(
    st.sampled_from(["streetlight-1", "streetlight-2", "#", "+", "a/b", "x/cmd/../y", "", " "]),
    st.text(max_size=12),
)
ENTITIES = st.fixed_dictionaries(
    {
        "id": mostly(ID_TAILS.map(lambda t: "urn:ngsi-ld:Streetlight:" + t), SCALARS),
        "type": mostly(st.just("Streetlight"), st.one_of(st.sampled_from(["Device", ""]), SCALARS)),
    },
    optional={
        "powerState": st.one_of(st.sampled_from(["on", "off", "dim"]), json_values(leaves=3)),
        "illuminanceLevel": st.one_of(st.floats(-1, 2), json_values(leaves=3)),
    },
)


def _commands(actuators: Actuators, body: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for entity in body.get("data", []):  # as Gateway._on_notification walks them
        if isinstance(entity, dict):
            found = actuators.commands(entity)
            if found is not None:
                out.append(found)
    return out


@given(
    body=st.one_of(
        st.fixed_dictionaries({"data": st.lists(ENTITIES, max_size=3)}),
        st.fixed_dictionaries({"data": json_values(leaves=4)}),
        json_values(leaves=4),
    ),
)
@example(body={"data": [{"id": "urn:ngsi-ld:Streetlight:#", "type": "Streetlight",
                         "powerState": "on"}]})  # fmt: skip
def test_notifications_become_commands_for_valid_device_ids(body: Any) -> None:
    actuators = Actuators(PROFILES)
    found: list[tuple[str, str, dict[str, Any]]] = []

    async def on_notification(doc: dict[str, Any]) -> None:
        found.extend(_commands(actuators, doc))

    async def post() -> int:
        app = build_app(Metrics(), on_notification, lambda _: {})
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            raw = json.dumps(body, default=bytes.hex).encode()
            return (await http.post("/notify", content=raw)).status_code

    assert asyncio.run(post()) in (204, 400)
    for kind, device, command in found:
        assert DEVICE_ID.fullmatch(device), device
        assert len(f"city/{kind}/{device}/cmd".split("/")) == 4
        assert command


def test_no_command_for_an_entity_id_that_is_no_device_id() -> None:
    """Regression: urn:ngsi-ld:Streetlight:# (a valid URI the platform stores) made the
    gateway publish to city/streetlight/#/cmd; now only ids of DEVICE_ID's form get one."""
    actuators = Actuators(PROFILES)
    for tail in ("#", "+", "a/b", "x" * 81, "-lead"):
        entity = {"id": f"urn:ngsi-ld:Streetlight:{tail}", "type": "Streetlight"}
        assert actuators.commands(entity | {"powerState": "on"}) is None
    good = {"id": "urn:ngsi-ld:Streetlight:streetlight-1", "type": "Streetlight"}
    found = actuators.commands(good | {"powerState": "on"})
    assert found == ("streetlight", "streetlight-1", {"powerState": "on"})
