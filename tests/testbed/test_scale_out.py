"""Scale-out (issue 19): three gateways in one MQTT 5 shared subscription, one killed midway.

Real processes on [::1]: a TLS Mosquitto with the secure city's accounts (gateway, gateway-2,
gateway-3 from testbed up --gateways 3), the platform with bearer tokens, and the three gateways
as StackLayout starts them.  K readings with distinct observedAt go in while gateway-2 is
killed with SIGKILL and started again; the platform's temporal API must then hold exactly K
instances: none lost (QoS 1, each gateway acknowledges once on disk) and none twice (what the
killed gateway had queued or had in flight comes again, from the broker, MQTT 5 4.3.2 / 4.8.2,
or from its queue, and the platform stores a repeat once: city_platform/storage/repeats.py).
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from benchmarks.gateway import payload
from benchmarks.loadgen import publish
from testbed.brokers import BrokerTls, MosquittoBroker, acl_text, city_accounts
from testbed.city_security import CitySecurity, stack_security
from testbed.parts import StackLayout, StackPorts
from testbed.processes import ManagedProcess, ProcessError, check_ports

DEVICES = 20
PER_DEVICE = 100  # K = 2,000 readings
LOADGEN = "loadgen"  # one account that publishes for every device (MosquittoBroker writers)
FORWARDED = re.compile(r"^r197_gateway_forwarded_total (\S+)$", re.M)


def layout_at(
    tmp: Path, security: CitySecurity, platforms: int = 1, db_url: str | None = None
) -> StackLayout:
    """Three gateways on free ports (gateway k's HTTP port is the base + k - 1)."""
    for _ in range(20):
        layout = StackLayout(
            data=tmp, ports=StackPorts.free(), rd=False, southbound=False, verbose=0,
            security=stack_security(security, [], gateways=3), gateways=3,
            platforms=platforms, db_url=db_url,
        )  # fmt: skip
        try:
            check_ports(layout.claims())
        except ProcessError:
            continue
        return layout
    raise AssertionError("no free ports for three gateways")


def test_acl_gives_every_gateway_account_the_gateway_block(tmp_path: Path) -> None:
    security = CitySecurity.at(tmp_path)
    accounts = security.prepare([], [], gateways=3)
    assert [u for u in accounts if u.startswith("gateway")] == ["gateway", "gateway-2", "gateway-3"]
    assert len(set(accounts.values())) == len(accounts)  # a password each
    acl = acl_text(accounts)
    for user in ("gateway", "gateway-2", "gateway-3"):
        assert f"user {user}\ntopic read city/#\ntopic read $share/#\n" in acl
    # Fewer gateways next time: the extra accounts are not the broker's any more.
    assert "gateway-3" not in city_accounts(security.credentials, [], gateways=2)


async def history(client: httpx.AsyncClient, api: str, device: int) -> list[str]:
    r = await client.get(
        f"{api}/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:NoiseLevelObserved:noise-b{device}",
        params={"attrs": "LAeq", "lastN": "100000"},
    )
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    return [i["observedAt"] for i in r.json().get("LAeq", [])]


async def counts(client: httpx.AsyncClient, api: str) -> list[int]:
    return [len(await history(client, api, d)) for d in range(DEVICES)]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """None: SQLite (one platform); else a fresh PostgreSQL database (outside the event loop:
    the cluster fixture runs asyncio.run)."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.mark.slow  # 9-14 s: real broker, platform(s), three gateways, a kill
async def test_three_gateways_one_killed_store_every_reading_once(
    tmp_path: Path, db_url: str | None
) -> None:
    """SQLite: one platform; PostgreSQL: two platforms on one database, the gateways spread
    over them (gateway 1 and 3 on platform 1, gateway 2 on platform 2)."""
    security = CitySecurity.at(tmp_path)
    accounts = security.prepare([], [], gateways=3)
    layout = layout_at(tmp_path, security, 1 if db_url is None else 2, db_url)
    creds = security.credentials
    loadgen_password = creds.mqtt_password(LOADGEN)
    broker = MosquittoBroker(
        port=layout.ports.broker, users={**accounts, LOADGEN: loadgen_password},
        tls=BrokerTls.of(creds), writers=[LOADGEN], workdir=tmp_path / "mosquitto",
    )  # fmt: skip
    logs = tmp_path / "logs"
    procs = [ManagedProcess(s, log_path=logs / f"{s.name}.log") for s in layout.specs()]
    gateways = procs[layout.platforms :]  # after the platforms
    assert [g.name for g in gateways] == ["gateway", "gateway-2", "gateway-3"]
    base = int(time.time()) - 3600  # distinct observedAt: device d's reading i at base + i s

    def message(n: int, _now: float) -> tuple[str, bytes]:
        device, i = n % DEVICES, n // DEVICES
        name = f"noise-b{device}"
        body = payload("senml-json", name, base + i, 40 + n % 100)  # LAeq within 0..160 dB
        return f"city/noise/{name}/up/senml-json", body

    reader = {"Authorization": f"Bearer {security.token('reader')}"}
    async with broker:
        try:
            for proc in procs:
                await proc.astart()
            await wait_subscribed(gateways)
            total = DEVICES * PER_DEVICE
            half = total // 2
            await publish(
                broker.port, half, message, rate=2000, ca_file=str(creds.ca_file),
                username=LOADGEN, password=loadgen_password,
            )  # fmt: skip
            gateways[1].signal(signal.SIGKILL)  # in flight and queued readings are its own
            await asyncio.to_thread(gateways[1].stop)

            def rest(n: int, now: float) -> tuple[str, bytes]:
                return message(half + n, now)

            await publish(
                broker.port, total - half, rest, rate=2000, ca_file=str(creds.ca_file),
                username=LOADGEN, password=loadgen_password,
            )  # fmt: skip
            await gateways[1].astart()  # its session and queue file come back with it
            async with httpx.AsyncClient(timeout=10, headers=reader) as client:
                deadline = time.monotonic() + 90
                found = await counts(client, layout.platform_url)
                while sum(found) < total and time.monotonic() < deadline:
                    await asyncio.sleep(1)
                    found = await counts(client, layout.platform_url)
                await drained(client, gateways)
                forwarded = [await forwarded_of(client, g) for g in gateways]
                for device in range(DEVICES):
                    times = await history(client, layout.platform_url, device)
                    assert len(times) == PER_DEVICE, (device, len(times), forwarded)
                    assert len(set(times)) == PER_DEVICE, (device, "a repeated observedAt")
            # Every gateway took a share (the shared subscription), and together they
            # forwarded at least K (more when the killed one's readings came again).
            assert all(f > 0 for f in forwarded[::2]), forwarded
            print(f"forwarded per gateway {forwarded}, sum {sum(forwarded)} for {total}")
        finally:
            for proc in reversed(procs):
                await proc.astop()


async def wait_subscribed(gateways: list[ManagedProcess], within: float = 30) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=5) as client:
        for gateway in gateways:
            url = f"http://[::1]:{gateway.spec.ports[0].port}/health"
            while True:
                health = (await client.get(url)).json()
                if health.get("mqtt") is True:
                    break
                assert time.monotonic() < deadline, (gateway.name, health)
                await asyncio.sleep(0.2)


async def drained(client: httpx.AsyncClient, gateways: list[ManagedProcess]) -> None:
    """Until every gateway's queue is empty (what it holds is not yet in the platform)."""
    deadline = time.monotonic() + 60
    for gateway in gateways:
        url = f"http://[::1]:{gateway.spec.ports[0].port}/health"
        while (await client.get(url)).json().get("queued") != 0:
            assert time.monotonic() < deadline, gateway.name
            await asyncio.sleep(0.5)


async def forwarded_of(client: httpx.AsyncClient, gateway: ManagedProcess) -> float:
    text = (await client.get(f"http://[::1]:{gateway.spec.ports[0].port}/metrics")).text
    m = FORWARDED.search(text)
    return float(m.group(1)) if m else 0.0
