"""Readings end to end over MQTT with TLS: device fleet -> Mosquitto (TLS only) -> the gateway
process (``testbed gateway --broker mqtts://... --broker-ca``) -> the platform process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from devices.fleet import Fleet
from devices.scenario import Scenario
from testbed.brokers import BrokerTls, MosquittoBroker, city_accounts, find_mosquitto
from testbed.credentials import CityCredentials
from testbed.parts import GatewayOptions, gateway_spec
from testbed.processes import ManagedProcess
from tests.conftest import PlatformProcess, free_port

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto")


async def entity_ids(api: str) -> set[str]:
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{api}/entities", params={"type": "NoiseLevelObserved"})
    assert r.status_code == 200, r.text
    return {e["id"] for e in r.json()}


async def test_readings_reach_the_platform_over_mqtt_with_tls(tmp_path: Path) -> None:
    scenario = Scenario.model_validate(
        {"groups": [{"kind": "noise", "count": 2, "protocol": "mqtt", "interval": 0.2, "qos": 1}]}
    )
    ids = [d.device_id for d in scenario.devices()]
    creds = CityCredentials(tmp_path / "security")
    creds.ensure()
    users = city_accounts(creds, ids, observers=0)
    platform = PlatformProcess(db=str(tmp_path / "p.db"))
    async with MosquittoBroker(
        port=free_port(), users=users, tls=BrokerTls.of(creds), workdir=tmp_path / "m"
    ) as broker:
        assert broker.url.startswith("mqtts://[::1]:")
        await asyncio.to_thread(platform.start)
        options = GatewayOptions(
            platform_url=platform.base, broker_url=broker.url, http_port=free_port(),
            coap_port=free_port("udp"), queue=tmp_path / "queue.db", broker_user="gateway",
            broker_password=users["gateway"], broker_ca=creds.ca_file, southbound=False,
        )  # fmt: skip
        # Ready only once /health says MQTT is up: the TLS session and subscription work.
        gateway = ManagedProcess(gateway_spec(options, verbose=1), log_path=tmp_path / "gw.log")
        await gateway.astart()
        try:
            async with Fleet(
                scenario, broker=broker.url, use_rd=False, passwords=users,
                broker_ca=creds.ca_file,
            ):  # fmt: skip
                wanted = {f"urn:ngsi-ld:NoiseLevelObserved:{d}" for d in ids}
                async with asyncio.timeout(20):
                    while not wanted <= await entity_ids(platform.api):  # noqa: ASYNC110  # polling the platform
                        await asyncio.sleep(0.2)
            log = gateway.output()
            assert "mqtts://" in log
            assert "certificate verify failed" not in log
        finally:
            await gateway.astop()
            await asyncio.to_thread(platform.stop)
