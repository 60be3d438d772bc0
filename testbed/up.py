"""``testbed up``: a whole city on one machine, offline, IPv6 loopback.

Starts the MQTT broker (Mosquitto when installed, else the embedded amqtt), the platform, a
CoRE resource directory (aiocoap-rd), the gateway (each as a child process with its log under
the data directory) and the scenario's devices (in this process), prints where everything
listens, shows a live one-line summary, and stops it all on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
import platformdirs

from testbed.brokers import OBSERVER_USER, Broker, MosquittoBroker, choose_broker
from testbed.settings import Settings

OBSERVER_PASSWORD = "observer"  # noqa: S105  # read-only lab account, printed at start

DESCRIPTION = """\
Start a whole smart city on this machine: MQTT broker, NGSI-LD platform, CoAP resource
directory, gateway and the devices of a scenario, all on IPv6 loopback [::1]. Prints where each
part listens and a live summary; Ctrl-C stops everything cleanly. Works offline.
"""


@dataclass
class Ports:
    platform: int = 8000
    broker: int = 1883
    rd: int = 5783
    gateway_coap: int = 5684
    gateway_http: int = 8081


@dataclass
class City:
    """The running parts, for the summary and for a clean stop."""

    ports: Ports
    data: Path
    broker: Broker | None = None
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, TextIO] = field(default_factory=dict)

    @property
    def platform_url(self) -> str:
        return f"http://[::1]:{self.ports.platform}"

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.data / "logs" / f"{name}.log").open("ab")
        self.logs[name] = log  # type: ignore[assignment]
        self.children[name] = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )

    def check_alive(self) -> None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}; see {self.data / 'logs' / name}.log"
                )

    def stop(self) -> None:
        for proc in reversed(list(self.children.values())):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.children.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in self.logs.values():
            log.close()


def register(sub: Any, epilog: str) -> None:
    parser = sub.add_parser(
        "up",
        help="start a whole city: broker, platform, resource directory, gateway, devices",
        description=DESCRIPTION,
        epilog=epilog + "\nExample: testbed up --scenario workshop",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scenario", default="workshop", help="scenario file or shipped name (workshop)"
    )
    parser.add_argument(
        "--broker", choices=["auto", "mosquitto", "amqtt"], default="auto",
        help="MQTT broker: Mosquitto if installed (auto), or the embedded amqtt",
    )  # fmt: skip
    parser.add_argument("--data-dir", type=Path, help="databases, queue and logs (user data dir)")
    parser.add_argument("--fresh", action="store_true", help="start with an empty city database")
    parser.add_argument("--platform-port", type=int, default=8000)
    parser.add_argument("--broker-port", type=int, default=1883)
    parser.add_argument("--rd-port", type=int, default=5783)
    parser.add_argument("--gateway-coap-port", type=int, default=5684)
    parser.add_argument("--gateway-http-port", type=int, default=8081)
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.set_defaults(func=run_up)


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


async def _summary(city: City, fleet: Any, client: httpx.AsyncClient, last: list[float]) -> str:
    status = fleet.status()
    health: dict[str, Any] = {}
    entities = "?"
    try:
        health = (await client.get(f"http://[::1]:{city.ports.gateway_http}/health")).json()
        r = await client.get(
            f"{city.platform_url}/ngsi-ld/v1/entities",
            params={"type": "Device", "count": "true", "limit": "0"},
        )
        entities = str(2 * int(r.headers.get("NGSILD-Results-Count", "0")))
    except (httpx.HTTPError, ValueError):
        pass
    forwarded = float(health.get("forwarded", 0))
    now = time.monotonic()
    rate = (forwarded - last[1]) / (now - last[0]) if now > last[0] else 0.0
    last[:] = [now, forwarded]
    online = status.mqtt_online + status.coap_servers + len(fleet.push)
    return (
        f"devices online {online}/{status.devices} | readings/s {rate:6.1f} | "
        f"entities {entities} | rejected {health.get('rejected', 0):.0f} | "
        f"queued {health.get('queued', 0)} | platform {health.get('platform', '?')}"
    )


def run_up(args: argparse.Namespace, settings: Settings) -> int:
    from devices.scenario import ScenarioError, load_scenario  # noqa: PLC0415
    from testbed.devices_cmd import resolve_scenario  # noqa: PLC0415

    try:
        scenario = load_scenario(resolve_scenario(args.scenario))
    except (FileNotFoundError, ScenarioError) as exc:
        print(f"testbed up: {exc}", file=sys.stderr)
        return 2
    data = args.data_dir or Path(platformdirs.user_data_dir("r197-testbed")) / "city"
    if args.fresh and data.exists():
        shutil.rmtree(data)
    (data / "logs").mkdir(parents=True, exist_ok=True)
    ports = Ports(
        platform=args.platform_port,
        broker=args.broker_port,
        rd=args.rd_port,
        gateway_coap=args.gateway_coap_port,
        gateway_http=args.gateway_http_port,
    )
    try:
        return asyncio.run(_run(args, scenario, City(ports=ports, data=data)))
    except RuntimeError as exc:
        print(f"testbed up: {exc}", file=sys.stderr)
        return 1


def gateway_args(city: City, broker_url: str, password: str) -> list[str]:
    """The ``testbed`` arguments that start the city's gateway."""
    ports = city.ports
    return [
        *("-v", "gateway", "--platform", city.platform_url),
        # "=": a generated password may begin with "-", which argparse takes for an option
        # (the gateway then refused to start, about once in 64 starts).
        *("--broker", broker_url, f"--broker-password={password}"),
        *("--rd", f"coap://[::1]:{ports.rd}", "--coap-port", str(ports.gateway_coap)),
        *("--http-port", str(ports.gateway_http)),
        *("--queue", str(city.data / "gateway-queue.db")),
    ]


async def _run(args: argparse.Namespace, scenario: Any, city: City) -> int:
    from devices.fleet import Fleet  # noqa: PLC0415
    from testbed.daemon import run_until_signal  # noqa: PLC0415

    ports = city.ports
    gateway_password = secrets.token_urlsafe(12)
    mqtt_ids = [s.device_id for s in scenario.devices() if s.group.protocol == "mqtt"]
    users = {
        "gateway": gateway_password,
        OBSERVER_USER: OBSERVER_PASSWORD,
        **dict.fromkeys(mqtt_ids, scenario.password),
    }
    broker = choose_broker(prefer=args.broker, port=ports.broker, users=users)
    if broker.name == "amqtt":
        for group in scenario.groups:
            group.mqtt_version = "3.1.1"  # amqtt speaks MQTT 3.1.1 only
    py = sys.executable
    out = sys.stderr
    fleet: Any = None
    client = httpx.AsyncClient(timeout=2)
    last = [time.monotonic(), 0.0]
    interactive = out.isatty()

    async def start() -> None:
        nonlocal fleet
        await broker.__aenter__()
        city.broker = broker
        note = "" if isinstance(broker, MosquittoBroker) else " (embedded, MQTT 3.1.1 only)"
        print(f"broker    {broker.name}{note} at {broker.url}", file=out)
        if isinstance(broker, MosquittoBroker):
            print(
                f"          read-only user {OBSERVER_USER!r}, password {OBSERVER_PASSWORD!r}: "
                f"mosquitto_sub -h ::1 -p {ports.broker} -u {OBSERVER_USER} "
                f"-P {OBSERVER_PASSWORD} -t 'city/#' -v",
                file=out,
            )
        city.spawn(
            "platform",
            [
                *(py, "-m", "testbed", "-v", "platform", "--host", "::1"),
                *("--port", str(ports.platform), "--db", str(city.data / "platform.db")),
            ],
        )
        await asyncio.to_thread(
            _wait_http, f"{city.platform_url}/health", city.children["platform"]
        )
        print(f"platform  NGSI-LD at {city.platform_url}/ngsi-ld/v1 (docs /docs)", file=out)
        city.spawn(
            "rd",
            [str(Path(py).with_name("aiocoap-rd")), "--bind", f"[::1]:{ports.rd}"],
            env={"AIOCOAP_SERVER_TRANSPORT": "udp6"},
        )
        print(f"directory CoRE RD (RFC 9176) at coap://[::1]:{ports.rd}", file=out)
        city.spawn(
            "gateway", [py, "-m", "testbed", *gateway_args(city, broker.url, gateway_password)]
        )
        await asyncio.to_thread(
            _wait_http, f"http://[::1]:{ports.gateway_http}/health", city.children["gateway"]
        )
        print(
            f"gateway   CoAP push at coap://[::1]:{ports.gateway_coap}/up/<device>, "
            f"metrics at http://[::1]:{ports.gateway_http}/metrics",
            file=out,
        )
        fleet = Fleet(
            scenario,
            broker=broker.url,
            rd=f"coap://[::1]:{ports.rd}",
            gateway=f"coap://[::1]:{ports.gateway_coap}",
        )
        await fleet.__aenter__()
        coap = ", ".join(c.uri for c in fleet.coap[:3]) + (" ..." if len(fleet.coap) > 3 else "")
        print(
            f"devices   {len(fleet.devices)} from {args.scenario}: {len(fleet.mqtt)} MQTT, "
            f"{len(fleet.coap)} CoAP servers ({coap or 'none'}), {len(fleet.push)} CoAP push",
            file=out,
        )
        print(f"logs      {city.data / 'logs'}; Ctrl-C stops the city", file=out, flush=True)

    async def stop() -> None:
        if interactive:
            print(file=out)
        if fleet is not None:
            await fleet.__aexit__()
        await asyncio.to_thread(city.stop)
        await broker.__aexit__()
        await client.aclose()
        print("city stopped", file=out, flush=True)

    ticks = 0

    def tick() -> None:
        nonlocal ticks
        ticks += 1
        city.check_alive()
        task = asyncio.get_running_loop().create_task(_summary(city, fleet, client, last))

        def show(done: asyncio.Task[str]) -> None:
            if done.cancelled() or done.exception() is not None:
                return
            if interactive:
                print("\r" + done.result().ljust(110), end="", file=out, flush=True)
            elif ticks % 10 == 1:
                print(done.result(), file=out, flush=True)

        task.add_done_callback(show)

    if args.duration is None:
        await run_until_signal(start, stop, tick=tick, interval=1.0)
        return 0
    await start()
    try:
        deadline = time.monotonic() + args.duration
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            tick()
        print(await _summary(city, fleet, client, last), file=out, flush=True)
    finally:
        await stop()
    return 0
