"""CoAP with OSCORE end to end, every part its own process: ``testbed devices --oscore`` (an
observed streetlight, a push noise sensor) -> ``testbed rd --oscore`` and ``testbed gateway
--oscore`` -> the platform process; then the fleet restarts and keeps being accepted (its
sequence numbers persisted, RFC 8613 7.5)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from devices.scenario import Scenario
from testbed.credentials import CityCredentials
from testbed.parts import GatewayOptions, devices_spec, gateway_spec, rd_spec
from testbed.processes import ManagedProcess
from tests.conftest import PlatformProcess, free_port

SCENARIO = """
seed = 197
[endpoints]
rd = "{rd}"
gateway = "{gateway}"
coap_base_port = {base}

[[groups]]
kind = "streetlight"
count = 1
protocol = "coap"
interval = 0.3

[[groups]]
kind = "noise"
count = 1
protocol = "coap-push"
interval = 0.3
"""


async def observed_at(api: str, entity: str) -> str | None:
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{api}/entities/{entity}")
    if r.status_code != 200:
        return None
    values = [v for v in r.json().values() if isinstance(v, dict) and "observedAt" in v]
    return max(str(v["observedAt"]) for v in values) if values else None


async def fresh_readings(api: str, entities: list[str], after: dict[str, str | None]) -> None:
    """Wait until every entity has a reading newer than ``after`` says."""
    async with asyncio.timeout(25):
        while True:
            now = {e: await observed_at(api, e) for e in entities}
            if all(now[e] is not None and now[e] != after.get(e) for e in entities):
                after.update(now)
                return
            await asyncio.sleep(0.3)


@pytest.mark.slow
async def test_oscore_readings_reach_the_platform_across_a_fleet_restart(tmp_path: Path) -> None:
    """Observed and pushed readings arrive over OSCORE only, before and after the devices
    restart; the gateway refused nothing."""
    rd_port, gw_coap, base = free_port("udp"), free_port("udp"), free_port("udp")
    rd, gateway_url = f"coap://[::1]:{rd_port}", f"coap://[::1]:{gw_coap}"
    text = SCENARIO.format(rd=rd, gateway=gateway_url, base=base)
    scenario_file = tmp_path / "oscore.toml"
    scenario_file.write_text(text)
    devices = Scenario.model_validate(
        {"endpoints": {"coap_base_port": base}, "groups": [
            {"kind": "streetlight", "count": 1, "protocol": "coap"},
            {"kind": "noise", "count": 1, "protocol": "coap-push"},
        ]}
    ).devices()  # fmt: skip
    light, noise = (d.device_id for d in devices)
    creds = CityCredentials(tmp_path / "security")
    creds.ensure(oscore_devices=[light, noise])
    platform = PlatformProcess(db=str(tmp_path / "p.db"))
    await asyncio.to_thread(platform.start)
    options = GatewayOptions(
        platform_url=platform.base, broker_url=None, http_port=free_port(), coap_port=gw_coap,
        queue=tmp_path / "queue.db", rd=rd, southbound=False, oscore_file=creds.oscore_file,
    )  # fmt: skip
    rd_process = ManagedProcess(rd_spec(port=rd_port, oscore=creds.oscore_file))
    gateway = ManagedProcess(gateway_spec(options), log_path=tmp_path / "gw.log")
    entities = [f"urn:ngsi-ld:Streetlight:{light}", f"urn:ngsi-ld:NoiseLevelObserved:{noise}"]
    seen: dict[str, str | None] = {}
    try:
        await asyncio.to_thread(rd_process.start)
        await gateway.astart()
        for run in range(2):
            fleet = ManagedProcess(
                devices_spec(
                    scenario=scenario_file, rd=rd, ready_port=base, name=f"devices-{run}",
                    extra=("--gateway", gateway_url, "--oscore", str(creds.oscore_file)),
                ),
                log_path=tmp_path / f"devices-{run}.log",
            )  # fmt: skip
            await fleet.astart()
            try:
                await fresh_readings(platform.api, entities, seen)
            finally:
                await fleet.astop()
            devices_log = fleet.output()
            assert "gateway answered" not in devices_log, devices_log[-2000:]
        log = gateway.output()
        assert "refused" not in log, log[-2000:]
        assert "has no OSCORE context" not in log
    finally:
        await gateway.astop()
        await asyncio.to_thread(rd_process.stop)
        await asyncio.to_thread(platform.stop)
    # Both sides persisted their sequence numbers per device (RFC 8613 7.5).
    contexts = creds.oscore_file.parent / "contexts"
    for side in (f"devices/{light}/gateway", f"devices/{noise}/gateway", f"gateway/{noise}"):
        assert (contexts / side / "sequence.json").exists(), side
