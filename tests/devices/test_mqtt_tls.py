"""Devices over TLS with passwords of their own, against a real Mosquitto TLS listener on [::1]."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import aiomqtt
import pytest

from devices.device import SimDevice
from devices.fleet import Fleet
from devices.mqtt import MqttDevice, broker_tls
from devices.scenario import Scenario
from testbed.brokers import BrokerTls, MosquittoBroker, city_accounts, find_mosquitto
from testbed.cli import build_parser
from testbed.credentials import CityCredentials
from testbed.devices_cmd import read_passwords
from testbed.pki import new_ca
from tests.conftest import free_port

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto")


def weather(count: int) -> Scenario:
    return Scenario.model_validate(
        {"groups": [{"kind": "weather", "count": count, "interval": 0.2, "qos": 1}]}
    )


async def readings_by_device(sub: aiomqtt.Client, devices: int) -> set[str]:
    """Device ids of the readings the subscriber gets, until every device was heard."""
    heard: set[str] = set()
    async with asyncio.timeout(10):
        async for message in sub.messages:
            heard.add(str(message.topic).split("/")[2])
            if len(heard) == devices:
                break
    return heard


async def test_a_fleet_publishes_over_tls_each_device_with_its_own_password(
    tmp_path: Path,
) -> None:
    """Three devices, three distinct passwords (none the scenario's shared one), one TLS
    context; the gateway account hears every one of them."""
    scenario = weather(3)
    ids = [d.device_id for d in scenario.devices()]
    creds = CityCredentials(tmp_path / "security")
    creds.ensure()
    users = city_accounts(creds, ids, observers=0)
    assert scenario.password not in users.values()
    async with MosquittoBroker(
        port=free_port(), users=users, tls=BrokerTls.of(creds), workdir=tmp_path / "m"
    ) as broker:
        sub = aiomqtt.Client(
            "::1", broker.port, username="gateway", password=users["gateway"],
            tls_context=ssl.create_default_context(cafile=str(creds.ca_file)),
        )  # fmt: skip
        async with sub:
            await sub.subscribe("city/+/+/up/#", qos=1)
            async with Fleet(
                scenario, broker=broker.url, use_rd=False, passwords=users,
                broker_ca=creds.ca_file,
            ) as fleet:  # fmt: skip
                assert await readings_by_device(sub, len(ids)) == set(ids)
                assert fleet.status().mqtt_online == len(ids)


async def test_a_device_refuses_a_broker_its_ca_did_not_sign(tmp_path: Path) -> None:
    creds = CityCredentials(tmp_path / "security")
    creds.ensure()
    other = tmp_path / "other.pem"
    other.write_bytes(new_ca("another CA").cert_pem)
    spec = weather(1).devices()[0]
    users = city_accounts(creds, [spec.device_id], observers=0)
    async with MosquittoBroker(
        port=free_port(), users=users, tls=BrokerTls.of(creds), workdir=tmp_path / "m"
    ) as broker:
        device = MqttDevice(
            SimDevice(spec), broker=broker.url, password=users[spec.device_id],
            tls=broker_tls(broker.url, other),
        )  # fmt: skip
        with pytest.raises(aiomqtt.MqttError, match="certificate verify failed"):
            async with device._client():
                pass


def test_tls_settings_of_a_fleet(tmp_path: Path) -> None:
    """mqtts:// defaults to port 8883; a CA file with mqtt:// is an error, not a silent
    plain connection; the devices command reads the passwords file."""
    creds = CityCredentials(tmp_path / "security")
    creds.ensure(mqtt_users=["weather-0001"])
    fleet = Fleet(weather(1), broker="mqtts://[::1]", broker_ca=creds.ca_file)
    assert fleet.tls is not None
    assert fleet.tls.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(ValueError, match="mqtts://"):
        Fleet(weather(1), broker="mqtt://[::1]:1883", broker_ca=creds.ca_file)
    args = build_parser().parse_args(
        ["devices", "--broker-ca", str(creds.ca_file), "--passwords", str(creds.passwords_file)]
    )
    assert args.broker_ca == creds.ca_file
    assert read_passwords(args.passwords) == json.loads(creds.passwords_file.read_text())
    bad = tmp_path / "bad.json"
    bad.write_text("[1]")
    with pytest.raises(SystemExit, match="not a JSON object"):
        read_passwords(bad)
