"""R197-IPV6 and R197-RES: IPv6-only operation of the reference parts, and broker restarts."""

from __future__ import annotations

import subprocess
import time
import uuid
from typing import Any

import cbor2
import httpx

from conformance.conftest import wait_until
from conformance.iut import IutConfig, RoleConfig
from conformance.model import Inconclusive, case
from conformance.mqtt_client import ProbeClient
from conformance.observed import iut_json
from conformance.stack import ReferenceStack


@case("R197-IPV6-01", "Every role under test is addressed by an IPv6 literal",
      verifies=["RFC3986-3.2.2", "RFC8200", "Y4200-8.2"], theme="ipv6")  # fmt: skip
def test_ipv6_urls(
    mqtt_broker: RoleConfig,
    ngsild_platform: RoleConfig,
    coap_device: RoleConfig,
    gateway: RoleConfig,
) -> None:
    for role in (mqtt_broker, ngsild_platform, coap_device, gateway):
        assert "[" in role.url, f"{role.url} is not an IPv6 literal URL"
        assert "]" in role.url, f"{role.url} is not an IPv6 literal URL"


@case("R197-IPV6-02", "The reference parts open no IPv4 socket (an IPv6-only run)",
      verifies=["RFC8200", "Y4200-8.2", "RES197-IPV6"], theme="ipv6", pics=["ipv6.only"])  # fmt: skip
def test_no_ipv4_sockets(iut: IutConfig, stack: ReferenceStack, mqtt_broker: RoleConfig,
                         ngsild_platform: RoleConfig, coap_device: RoleConfig, gateway: RoleConfig) -> None:  # fmt: skip
    pids = stack.pids()
    if not pids:
        raise Inconclusive("no reference part runs: every role is filled by the IUT")
    listing = subprocess.run(
        ["ss", "-H", "-tuanp"], capture_output=True, text=True, check=True
    ).stdout
    ipv4 = [line for line in listing.splitlines()
            if any(f"pid={pid}," in line for pid in pids) and " [" not in line and "*:" not in line
            and not line.split()[4].startswith("[")]  # fmt: skip
    assert not ipv4, "IPv4 sockets: " + "; ".join(ipv4[:3])


@case("R197-RES-01", "QoS 1 messages queued for a persistent session survive a broker restart",
      verifies=["MQTT311-4.1.0-1", "Y4200-8.3"], theme="resilience",
      pics=["mqtt.persistent-sessions"])  # fmt: skip
def test_broker_restart(iut: IutConfig, stack: ReferenceStack, mqtt_broker: RoleConfig) -> None:
    if "mqtt-broker" in iut.roles:
        raise Inconclusive("the suite cannot restart an IUT broker; restart it by hand and rerun")
    topic = f"r197test/{uuid.uuid4().hex[:8]}"
    client_id = f"r197-res-{uuid.uuid4().hex[:6]}"
    away = ProbeClient(mqtt_broker, client_id=client_id, clean=False)
    away.connect()
    away.subscribe(topic, 1)
    away.disconnect()
    pub = ProbeClient(mqtt_broker)
    pub.connect()
    pub.publish(topic, b"before restart", qos=1)
    pub.disconnect()
    time.sleep(0.5)
    stack.restart_broker()
    back = ProbeClient(mqtt_broker, client_id=client_id, clean=False)
    back.connect()
    message = back.receive()
    back.disconnect()
    assert message is not None, "the queued message was lost in the restart"
    assert message.payload == b"before restart"


def _history(platform: RoleConfig, entity_id: str, attr: str) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{platform.url.rstrip('/')}/ngsi-ld/v1/temporal/entities/{entity_id}",
        params={"attrs": attr, "lastN": "1000"},
        timeout=5,
    )
    if r.status_code != 200:
        return []
    return list(iut_json(r.content, "the temporal answer").get(attr, []))


@case("R197-RES-02", "Readings accepted during a platform outage all reach the platform, in order, once it returns",
      verifies=["Y4200-8.3", "Y4201-7", "CIM009-5.6.7"], theme="resilience",
      pics=["senml.cbor"])  # fmt: skip
def test_platform_outage(
    iut: IutConfig,
    stack: ReferenceStack,
    mqtt_broker: RoleConfig,
    gateway: RoleConfig,
    ngsild_platform: RoleConfig,
) -> None:
    if "ngsild-platform" in iut.roles:
        raise Inconclusive("the suite can only take down a platform it started itself")
    dev = f"noise-o{uuid.uuid4().hex[:8]}"
    entity_id = f"urn:ngsi-ld:NoiseLevelObserved:{dev}"
    client = ProbeClient(mqtt_broker)
    client.connect()
    t0 = int(time.time()) - 100

    def reading(n: int) -> bytes:
        return cbor2.dumps(
            [{-2: f"urn:dev:r197:{dev}:", -3: t0 + n, 0: "LAeq", 1: "dB", 2: 40 + n}]
        )

    # The gateway may still be reconnecting (after R197-RES-01's broker restart, say): readings
    # published before it is back are the broker's to keep, not the gateway's. Warm up with a
    # separate device until one of its readings comes through.
    warm = f"noise-w{uuid.uuid4().hex[:8]}"
    warm_id = f"urn:ngsi-ld:NoiseLevelObserved:{warm}"
    deadline = time.monotonic() + 60
    while not _history(ngsild_platform, warm_id, "LAeq"):
        assert time.monotonic() < deadline, "no reading reached the platform within 60 s"
        body = cbor2.dumps([{-2: f"urn:dev:r197:{warm}:", -3: t0, 0: "LAeq", 1: "dB", 2: 50}])
        client.publish(f"city/noise/{warm}/up/senml-cbor", body, qos=1)
        wait_until(lambda: bool(_history(ngsild_platform, warm_id, "LAeq")), 3, 0.2)
    client.publish(f"city/noise/{dev}/up/senml-cbor", reading(0), qos=1)
    assert wait_until(lambda: len(_history(ngsild_platform, entity_id, "LAeq")) == 1, 15), (
        "the first reading did not reach the platform before the outage"
    )
    stack.stop_platform()
    try:
        for n in range(1, 31):
            client.publish(f"city/noise/{dev}/up/senml-cbor", reading(n), qos=1)
        time.sleep(5)  # the platform stays down while the gateway keeps accepting
    finally:
        stack.start_platform()
    client.disconnect()
    wait_until(lambda: len(_history(ngsild_platform, entity_id, "LAeq")) >= 31, 60, 0.5)
    time.sleep(1)
    values = [i["value"] for i in _history(ngsild_platform, entity_id, "LAeq")]
    assert len(values) == 31, f"{len(values)} of 31 readings in the platform after the outage"
    assert values == [40 + n for n in range(31)], "readings out of order after the outage"


@case("R197-RES-03", "A gateway observing a CoAP device resumes the observation after the device restarts",
      verifies=["RFC7641-3.3.1", "RFC7641-4.1", "RFC9176-5.3", "Y4200-8.3"], theme="resilience",
      pics=["coap.observe"])  # fmt: skip
def test_observer_recovers(
    stack: ReferenceStack,
    gateway: RoleConfig,
    ngsild_platform: RoleConfig,
    figures: dict[str, float],
) -> None:
    rd = gateway.resources.get("rd")
    if not rd:
        raise Inconclusive("name the gateway's resource directory in its PIXIT resources.rd")
    dev = stack.directory_device(rd)
    entity_id = f"urn:ngsi-ld:Streetlight:{dev}"

    def count() -> int:
        return len(_history(ngsild_platform, entity_id, "illuminanceLevel"))

    assert wait_until(lambda: count() >= 2, 40, 0.5), (
        f"{dev}, registered in {rd}, was not observed into the platform within 40 s"
    )
    stack.restart_directory_device()
    restarted = time.monotonic()
    before = count()
    recovered = wait_until(lambda: count() >= before + 3, 40, 0.5)
    assert recovered, (
        f"no new reading of {dev} within 40 s of its restart: the observation was lost"
    )
    figures["recovery_s"] = round(time.monotonic() - restarted, 1)
