"""R197-SEC-30..32: the gateway between a secured broker and a secured platform.

Against the IUT's ``gateway`` ``security`` block (its /notify URL), or the reference gateway
started on the secure broker (TLS, its own account) and the secure platform (a write token),
its /notify requiring the city's notify token, which its subscription's receiverInfo carries.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from conformance.model import Inconclusive, case
from conformance.observed import iut_json
from conformance.security import connected, need, probe
from conformance.security_pixit import SecurityPixit

T = 1_795_579_200  # 2026-11-25T04:00:00Z


def notification(entity_id: str) -> dict[str, object]:
    """A well-formed NGSI-LD Notification (CIM 009 5.3.1) switching a streetlight off."""
    return {
        "id": f"urn:ngsi-ld:Notification:r197sec-{uuid.uuid4().hex[:8]}",
        "type": "Notification",
        "subscriptionId": "urn:ngsi-ld:Subscription:r197sec-forged",
        "notifiedAt": "2026-11-25T04:00:00.000Z",
        "data": [{"id": entity_id, "type": "Streetlight", "powerState": "off"}],
    }


def answer(r: httpx.Response) -> str:
    challenge = r.headers.get("www-authenticate")
    return (
        f"{r.status_code}"
        + (f" WWW-Authenticate: {challenge}" if challenge else "")
        + f" {r.text[:120]!r}"
    )


@case("R197-SEC-30", "A notification to the gateway without its token, or with another, is 401 with a Bearer challenge",
      verifies=["CIM009-5.2.15-receiverInfo", "RFC6750-3", "RFC6750-3.1", "X1361"],
      theme="security", pics=["sec.gateway-notify"])  # fmt: skip
def test_forged_notification(request: pytest.FixtureRequest, secure_gateway: SecurityPixit) -> None:
    need(request, secure_gateway, "url")
    assert secure_gateway.url is not None
    body = notification(f"urn:ngsi-ld:Streetlight:r197sec-{uuid.uuid4().hex[:6]}")
    with httpx.Client(timeout=10) as c:
        bare = c.post(secure_gateway.url, json=body)
        wrong = c.post(
            secure_gateway.url, json=body, headers={"Authorization": "Bearer r197-forged"}
        )
        right = None
        if "notify" in secure_gateway.tokens:  # the control, when the PIXIT gives the token
            auth = {"Authorization": f"Bearer {secure_gateway.tokens['notify']}"}
            right = c.post(secure_gateway.url, json={**body, "data": []}, headers=auth)
    if right is not None and not 200 <= right.status_code < 300:
        raise Inconclusive(f"the gateway refuses its own token too: {answer(right)}")
    for what, r in (("no token", bare), ("another token", wrong)):
        assert r.status_code == 401, f"{what}: {answer(r)}"
        challenge = r.headers.get("www-authenticate", "")
        assert challenge.lower().startswith("bearer"), f"{what}: no Bearer challenge: {answer(r)}"


def _entity(
    platform: SecurityPixit, entity_id: str, attr: str, within: float = 15
) -> dict[str, object]:
    assert platform.url is not None
    url = f"{platform.url.rstrip('/')}/ngsi-ld/v1/entities/{entity_id}"
    headers = {"Authorization": f"Bearer {platform.tokens['read']}"}
    deadline = time.monotonic() + within
    last = ""
    while time.monotonic() < deadline:
        r = httpx.get(url, headers=headers, timeout=5)
        if r.status_code == 200 and attr in (got := iut_json(r.content, f"GET {url}")):
            return dict(got)
        last = f"{r.status_code} {r.text[:160]!r}"
        time.sleep(0.2)
    raise AssertionError(
        f"{entity_id}.{attr} did not reach the secured platform in {within} s (last: {last})"
    )


@case("R197-SEC-31", "A reading published over TLS with a device's password reaches the token-protected platform through the gateway",
      verifies=["MQTT5-5.4.1", "RFC6750-3", "Y4806", "X1361"], theme="security",
      pics=["sec.gateway-uplink", "sec.mqtt-tls", "sec.ngsild-auth"])  # fmt: skip
def test_reading_end_to_end(
    request: pytest.FixtureRequest,
    uplink_broker: SecurityPixit,
    secure_gateway: SecurityPixit,
    secure_platform: SecurityPixit,
) -> None:
    need(request, uplink_broker, "url", "ca_file", "accounts")
    need(request, secure_platform, "url", "tokens.read")
    account = uplink_broker.accounts[0]
    value = float(40 + uuid.uuid4().int % 50)
    reading = [
        {"bn": f"urn:dev:r197:{account.device}:", "bt": T, "n": "LAeq", "u": "dB", "v": value}
    ]
    dev = connected(probe(uplink_broker, account), account.username)
    try:
        dev.publish(uplink_broker.topic("up", account.device), json.dumps(reading).encode(), qos=1)
    finally:
        dev.disconnect()
    entity_id = f"urn:ngsi-ld:NoiseLevelObserved:{account.device}"
    deadline = time.monotonic() + 15
    got = _entity(secure_platform, entity_id, "LAeq")
    while got["LAeq"]["value"] != value and time.monotonic() < deadline:  # type: ignore[index]
        time.sleep(0.2)  # an earlier run's reading may be there first
        got = _entity(secure_platform, entity_id, "LAeq")
    assert got["LAeq"]["value"] == value, f"LAeq {got['LAeq']} on the platform, sent {value}"  # type: ignore[index]


@case("R197-SEC-32", "A command written on the secured platform reaches the device: the notification carries receiverInfo the gateway accepts",
      verifies=["CIM009-5.2.15-receiverInfo", "MQTT5-5.4.2", "X1361"], theme="security",
      pics=["sec.gateway-notify", "sec.gateway-uplink", "ngsild.subscriptions"])  # fmt: skip
def test_command_through_receiver_info(
    request: pytest.FixtureRequest,
    uplink_broker: SecurityPixit,
    secure_gateway: SecurityPixit,
    secure_platform: SecurityPixit,
) -> None:
    need(request, uplink_broker, "url", "ca_file", "actuator")
    need(request, secure_platform, "url", "tokens.write")
    assert uplink_broker.actuator is not None
    assert secure_platform.url is not None
    light = uplink_broker.actuator
    entity_id = f"urn:ngsi-ld:Streetlight:{light.device}"
    api = secure_platform.url.rstrip("/") + "/ngsi-ld/v1"
    auth = {"Authorization": f"Bearer {secure_platform.tokens['write']}"}
    device = connected(probe(uplink_broker, light), light.username)
    got = None
    try:
        device.subscribe(uplink_broker.topic("actuator_cmd", light.device), qos=1)
        with httpx.Client(base_url=api, headers=auth, timeout=10) as c:
            c.delete(f"/entities/{entity_id}")
            made = c.post("/entities", json={"id": entity_id, "type": "Streetlight",
                                             "powerState": {"type": "Property", "value": "on"}})  # fmt: skip
            if made.status_code != 201:
                raise Inconclusive(
                    f"the write token cannot create {entity_id}: {made.status_code} {made.text[:160]!r}"
                )
            # The gateway subscribes when it starts; alternate until one change gets through.
            deadline = time.monotonic() + 15
            state = "on"
            while got is None and time.monotonic() < deadline:
                state = "off" if state == "on" else "on"
                c.patch(
                    f"/entities/{entity_id}/attrs",
                    json={"powerState": {"type": "Property", "value": state}},
                )
                message = device.receive(timeout=1.5)
                got = None if message is None else bytes(message.payload)
    finally:
        device.disconnect()
    assert got is not None, (
        f"no command on {uplink_broker.topic('actuator_cmd', light.device)} within 15 s"
    )
    assert b"powerState" in got, f"the device got {got!r}"
