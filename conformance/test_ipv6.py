"""R197-IPV6 and R197-RES: IPv6-only operation of the reference parts, and broker restarts."""

from __future__ import annotations

import subprocess
import time
import uuid

from conformance.iut import IutConfig, RoleConfig
from conformance.model import Inconclusive, case
from conformance.mqtt_client import ProbeClient
from conformance.stack import ReferenceStack


@case("R197-IPV6-01", "Every role under test is addressed by an IPv6 literal",
      clauses=["RFC 3986 3.2.2", "RFC 8200", "ITU-T Y.4200 8.2"], theme="ipv6")  # fmt: skip
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
      clauses=["RFC 8200", "ITU-T Y.4200 8.2", "ITU PP Res. 197 (IPv6)"], theme="ipv6", pics=["ipv6.only"])  # fmt: skip
def test_no_ipv4_sockets(iut: IutConfig, stack: ReferenceStack, mqtt_broker: RoleConfig,
                         ngsild_platform: RoleConfig, coap_device: RoleConfig, gateway: RoleConfig) -> None:  # fmt: skip
    pids = {p.pid for p in stack._procs.values()}
    if stack._broker is not None and stack._broker.proc is not None:
        pids.add(stack._broker.proc.pid)
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
      clauses=["MQTT 3.1.1 4.1", "[MQTT-4.1.0-1]", "ITU-T Y.4200 8.3"], theme="resilience",
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
