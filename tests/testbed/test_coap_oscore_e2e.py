"""CoAP with OSCORE end to end, every part its own process: ``testbed devices --oscore`` (an
observed streetlight, a push noise sensor) -> ``testbed rd --oscore`` and ``testbed gateway
--oscore`` -> the platform process; then the fleet is killed, restarted, stopped, restarted,
and keeps being accepted (its sequence numbers persisted, RFC 8613 7.5, Appendix B.1)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiocoap
import httpx
import pytest

from devices.scenario import Scenario
from testbed.credentials import CityCredentials
from testbed.oscore_client import (
    answer_of,
    credentials_for,
    device_context,
    exchange,
    protected_datagram,
    read_answer,
    with_message_id,
)
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
    crash and restart; the gateway refused nothing."""
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
        # Run 0 ends in SIGKILL (sequence numbers persisted only in chunks, windows unknown:
        # RFC 8613 B.1.1/B.1.2), run 1 in SIGTERM (written back), run 2 must still be accepted.
        for run in range(3):
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
                if run == 0:
                    fleet.signal(signal.SIGKILL)
                    assert fleet.proc is not None
                    await asyncio.to_thread(fleet.proc.wait)
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


async def received(http_port: int) -> float:
    """Readings the gateway process took in (its /health)."""
    async with httpx.AsyncClient() as client:
        r = await client.get(f"http://[::1]:{http_port}/health")
    return float(r.json()["received"])


async def test_gateway_killed_mid_run_still_refuses_a_replay(tmp_path: Path) -> None:
    """SIGKILL leaves the gateway's replay window unknown; the restarted gateway refuses the
    same datagram again (4.01 with Echo, RFC 8613 B.1.2) and takes a freshly protected push."""
    creds = CityCredentials(tmp_path / "security")
    creds.ensure(oscore_devices=["noise-0001"])
    keys = creds.oscore()["noise-0001"]
    port = free_port("udp")
    options = GatewayOptions(
        platform_url="http://[::1]:9", broker_url=None, http_port=free_port(), coap_port=port,
        queue=tmp_path / "queue.db", southbound=False, oscore_file=creds.oscore_file,
    )  # fmt: skip
    context = device_context(keys)
    request = aiocoap.Message(
        code=aiocoap.POST, uri_path=("up", "noise-0001"), content_format=110,
        payload=b'[{"bn":"urn:dev:r197:noise-0001:","n":"LAeq","u":"dB","v":55.0}]',
    )  # fmt: skip
    datagram, request_id = protected_datagram(context, request, mid=1)
    first = ManagedProcess(gateway_spec(options), log_path=tmp_path / "gw-1.log")
    await first.astart()
    try:
        answer = await asyncio.to_thread(exchange, "::1", port, datagram)
        inner = read_answer(context, answer, request_id)
        assert inner.code == aiocoap.CHANGED, (inner, inner.payload)
        again = await asyncio.to_thread(exchange, "::1", port, with_message_id(datagram, 2))
        assert again.code == aiocoap.UNAUTHORIZED, (again, again.payload)  # Replay detected
        first.signal(signal.SIGKILL)
        assert first.proc is not None
        await asyncio.to_thread(first.proc.wait)
    finally:
        await first.astop()
    second = ManagedProcess(gateway_spec(options), log_path=tmp_path / "gw-2.log")
    await second.astart()
    client = await aiocoap.Context.create_client_context(transports=["oscore", "udp6"])
    try:
        raw = await asyncio.to_thread(exchange, "::1", port, with_message_id(datagram, 3))
        # B.1.2: not processed; a protected 4.01 with an Echo the client must send back.
        replay = read_answer(context, raw, request_id)
        assert replay.code == aiocoap.UNAUTHORIZED, (replay, replay.payload)
        assert replay.opt.echo is not None
        assert await received(options.http_port) == 0
        client.client_credentials.update(credentials_for(f"coap://[::1]:{port}/*", context))
        fresh = await answer_of(
            client, aiocoap.Message(code=aiocoap.POST, uri=f"coap://[::1]:{port}/up/noise-0001",
                                    payload=request.payload, content_format=110),
        )  # fmt: skip
        assert fresh.code == aiocoap.CHANGED, (fresh, fresh.payload)  # aiocoap answers the Echo
        assert await received(options.http_port) == 1
    finally:
        await client.shutdown()
        await second.astop()
